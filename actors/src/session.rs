//! One actor per WebSocket: the page's side of the live layer.
//!
//! The socket is authenticated before it is upgraded (the web crate builds the
//! [`Audience`]). The page then says which regions it holds and the stream
//! position it was rendered at; the hub catches it up and from then on pushes
//! what changes. The session acknowledges nothing on the page's behalf: a page
//! that stops acknowledging pushes is closed and resumes when it can, so a slow
//! or stuck client never holds memory or the hub.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use futures_util::stream;
use tokio::sync::mpsc;

use crate::event::Audience;
use crate::hub::{Hub, Join, Leave, Outbound};
use crate::metrics::Metrics;
use crate::protocol::{ClientMessage, MAX_REGIONS, close, valid_region};

const HEARTBEAT: Duration = Duration::from_secs(10);
/// A socket silent this long (no pong, no message) is dead.
const SILENCE: Duration = Duration::from_secs(30);
/// A page must say hello this soon after connecting.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Pushes queued for this socket by the hub before it is considered too slow.
const QUEUE: usize = 16;
/// Pushes written to the socket and not yet acknowledged by the page.
const MAX_UNACKED: u32 = 32;

pub struct Session {
    hub: Addr<Hub>,
    audience: Arc<Audience>,
    metrics: Arc<Metrics>,
    member: Option<u64>,
    greeted: bool,
    last_heard: Instant,
    unacked: u32,
    closing: bool,
}

impl Session {
    pub(crate) fn new(hub: Addr<Hub>, audience: Audience, metrics: Arc<Metrics>) -> Self {
        Session {
            hub,
            audience: Arc::new(audience),
            metrics,
            member: None,
            greeted: false,
            last_heard: Instant::now(),
            unacked: 0,
            closing: false,
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, why: &str) {
        if std::mem::replace(&mut self.closing, true) {
            return;
        }
        ctx.close(Some(CloseReason { code: CloseCode::Other(code), description: Some(why.to_owned()) }));
        ctx.stop();
    }

    fn hello(&mut self, cursor: i64, regions: Vec<String>, ctx: &mut ws::WebsocketContext<Self>) {
        if self.greeted {
            return;
        }
        self.greeted = true;
        let mut regions: Vec<String> = regions.into_iter().filter(|r| valid_region(r)).collect();
        regions.sort();
        regions.dedup();
        regions.truncate(MAX_REGIONS);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        ctx.add_stream(stream::poll_fn(move |cx| rx.poll_recv(cx)));
        self.hub
            .send(Join { audience: self.audience.clone(), regions: regions.into(), cursor, tx })
            .into_actor(self)
            .map(|joined, session, ctx| match joined {
                Ok(id) => session.member = Some(id),
                Err(_) => session.close(ctx, close::RESUME, "the live service is restarting"),
            })
            .wait(ctx);
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(HEARTBEAT, |session, ctx| {
            if session.last_heard.elapsed() > SILENCE {
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        ctx.run_later(HELLO_WITHIN, |session, ctx| {
            if !session.greeted {
                session.close(ctx, 1008, "expected a hello");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(id) = self.member.take() {
            self.hub.do_send(Leave(id));
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match message {
            Ok(ws::Message::Text(text)) => match serde_json::from_str::<ClientMessage>(&text) {
                Ok(ClientMessage::Hello { cursor, regions }) => self.hello(cursor, regions, ctx),
                Ok(ClientMessage::Ack { .. }) => self.unacked = self.unacked.saturating_sub(1),
                Err(_) => self.close(ctx, 1003, "unknown message"),
            },
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(_)) => ctx.stop(),
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                self.close(ctx, 1003, "text messages only")
            }
            Err(_) => ctx.stop(),
        }
    }
}

impl StreamHandler<Outbound> for Session {
    fn handle(&mut self, outbound: Outbound, ctx: &mut Self::Context) {
        match outbound {
            Outbound::Push(json) => {
                if self.unacked >= MAX_UNACKED {
                    Metrics::add(&self.metrics.sessions_refused_slow, 1);
                    self.close(ctx, close::RESUME, "too far behind");
                    return;
                }
                self.unacked += 1;
                ctx.text(&*json);
            }
            Outbound::Close(code) => {
                let why = if code == close::REVOKED { "signed out" } else { "reconnect" };
                self.close(ctx, code, why);
            }
        }
    }

    /// The hub dropped this session (its queue was full, or the hub is gone).
    fn finished(&mut self, ctx: &mut Self::Context) {
        self.member = None;
        self.close(ctx, close::RESUME, "reconnect");
    }
}
