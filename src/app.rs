//! The running portal: the HTTP server and its sibling background tasks.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{HttpServer, web};

use crate::auth::session::{self, Lifetimes};
use crate::config::Config;
use crate::db::Db;
use crate::web::AppState;
use crate::web::cookies::CookiePolicy;

pub struct Application {
    server: Server,
    port: u16,
    origin: String,
    db: Db,
    live: crate::live::Live,
    events_retention: Duration,
    mailer: crate::mail::Mailer,
    blobs: crate::storage::BlobStore,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and prepares the server without running it.
    /// `blobs` is opened by the caller (`BlobStore::open`), as it may need the network.
    pub fn build(config: &Config, db: Db, blobs: crate::storage::BlobStore) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr)?;
        let bound = listener.local_addr()?;
        // Without a public URL, a portal on this machine is `localhost`: a name, not an
        // address, because browsers only allow passkeys for a domain name.
        let origin = config.public_url.clone().unwrap_or_else(|| {
            if bound.ip().is_unspecified() || bound.ip().is_loopback() {
                format!("http://localhost:{}", bound.port())
            } else {
                format!("http://{}", std::net::SocketAddr::new(bound.ip(), bound.port()))
            }
        });
        let passkeys = match crate::auth::passkeys::Passkeys::for_origin(&origin) {
            Ok(passkeys) => Some(passkeys),
            Err(why) => {
                tracing::warn!("{why}; passkeys are off");
                None
            }
        };
        let secure = origin.starts_with("https://");
        let live = crate::live::start(&db)?;
        // Checked now, so a bad mail setting stops the start rather than the first email.
        let mailer = crate::mail::Mailer::new(&db, crate::mail::Settings::new(config, &origin))
            .map_err(std::io::Error::other)?;
        let state = web::Data::new(AppState {
            db: db.clone(),
            origin: origin.clone(),
            cookies: CookiePolicy { secure },
            lifetimes: Lifetimes {
                idle: config.session_idle,
                absolute: config.session_absolute,
                remember: config.remember_for,
            },
            live: live.clone(),
            metrics_token: config.metrics_token.clone(),
            passkeys,
            blobs: blobs.clone(),
            upload_max_bytes: config.upload_max_bytes,
            download_grant_ttl: config.download_grant_ttl,
        });
        let server = HttpServer::new(move || crate::routes::app(state.clone(), secure))
            .workers(config.workers)
            .shutdown_timeout(10)
            .listen(listener)?
            .run();
        Ok(Self {
            server,
            port: bound.port(),
            origin,
            db,
            live,
            events_retention: config.events_retention,
            mailer,
            blobs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where users reach this portal, e.g. `http://127.0.0.1:8080`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Stops the server gracefully from elsewhere (tests, signal handlers).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (Ctrl-C / SIGTERM finish in-flight requests first).
    pub async fn run(self) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep(self.db.clone(), self.blobs.clone(), self.events_retention));
        let mail = self.mailer.start();
        let result = self.server.await;
        sweeper.abort();
        mail.stop().await;
        self.live.stop();
        tracing::info!("HTTP server stopped");
        result
    }
}

/// Every ten minutes: expired sessions are deleted (they are refused as soon as they expire
/// regardless, and deleting them closes their live sockets), and so are events past retention
/// and sign-in / rate-limit counters that no longer count, download links a day past expiry,
/// and the files of uploads that died half-way.
async fn sweep(db: Db, blobs: crate::storage::BlobStore, events_retention: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match session::sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
        match crate::live::prune(&db, events_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "old events pruned"),
            Err(e) => tracing::warn!(error = %e, "event pruning failed"),
        }
        match crate::auth::throttle::sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "stale sign-in and rate-limit counters removed"),
            Err(e) => tracing::warn!(error = %e, "throttle sweep failed"),
        }
        match crate::auth::tokens::sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "spent account links removed"),
            Err(e) => tracing::warn!(error = %e, "account link sweep failed"),
        }
        match crate::auth::passkeys::sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "unfinished passkey ceremonies removed"),
            Err(e) => tracing::warn!(error = %e, "passkey ceremony sweep failed"),
        }
        match crate::documents::upload::sweep(&db, &blobs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "files of abandoned uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
        }
        match crate::documents::grants::sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired download links removed"),
            Err(e) => tracing::warn!(error = %e, "download link sweep failed"),
        }
    }
}
