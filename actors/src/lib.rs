//! The live layer: one LISTEN connection per process, a hub that routes events
//! to the sessions of each customer, one actor per WebSocket, and a candidate
//! for the database's notification relay (one process at a time sends the
//! notifications the listeners wake up on).
//!
//! This crate knows nothing about orders or templates: the web crate renders
//! fragments through [`Renderer`], this crate decides who needs what and moves
//! it. It runs on a thread of its own, so rendering and fan-out never compete
//! with the request workers' event loops for the same thread.

mod cursor;
mod event;
mod hub;
mod listener;
mod metrics;
pub mod protocol;
mod relay;
mod renderer;
mod session;

use std::sync::Arc;

use actix::{Actor, Addr, System};
use actix_web::{HttpRequest, HttpResponse, web};

pub use event::{Audience, EVENT_COLUMNS, Event};
use hub::Hub;
pub use metrics::Metrics;
use relay::Relay;
pub use renderer::{Catchup, RenderError, RenderFuture, Renderer};
use session::Session;

/// Largest message a page may send (a hello with its region ids).
const MAX_FRAME: usize = 64 * 1024;

/// Where the listener and the relay candidate connect, and the role they switch to (one that may
/// read every customer's events).
pub struct ListenerConfig {
    pub database: tokio_postgres::Config,
    pub role: String,
}

/// The running live layer of this process. It stops when the last handle is
/// dropped (an application torn down without a clean shutdown, as in tests),
/// closing its database connection.
#[derive(Clone)]
pub struct Live {
    hub: Addr<Hub>,
    /// Held so the relay candidate lives as long as the live layer.
    _relay: Addr<Relay>,
    metrics: Arc<Metrics>,
    system: Arc<StopOnDrop>,
}

struct StopOnDrop(System);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Live {
    /// Starts the hub, the listener and the relay candidate on a thread of their own.
    pub fn start(listener: ListenerConfig, renderer: Arc<dyn Renderer>) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = metrics.clone();
        std::thread::Builder::new().name("portal-live".into()).spawn(move || {
            let system = System::new();
            system.block_on(async {
                let relay = Relay::new(listener.database.clone(), listener.role.clone(), shared.clone()).start();
                let hub = Hub::new(renderer, listener.database, listener.role, shared).start();
                let _ = tx.send((hub, relay, System::current()));
            });
            if let Err(e) = system.run() {
                tracing::error!(error = %e, "the live layer stopped with an error");
            }
        })?;
        let (hub, relay, system) = rx.recv().map_err(|_| std::io::Error::other("the live layer did not start"))?;
        Ok(Live { hub, _relay: relay, metrics, system: Arc::new(StopOnDrop(system)) })
    }

    /// Upgrades an authenticated request to a live socket for `audience`.
    pub fn connect(
        &self,
        audience: Audience,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, actix_web::Error> {
        let session = Session::new(self.hub.clone(), audience, self.metrics.clone());
        actix_web_actors::ws::WsResponseBuilder::new(session, req, payload).frame_size(MAX_FRAME).start()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops the hub, the listener and the relay (the sockets close with the HTTP server).
    pub fn stop(&self) {
        self.system.0.stop();
    }
}
