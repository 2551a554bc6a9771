//! Structured logs. `RUST_LOG` filters (default `info`); `PORTAL_LOG_FORMAT=json` emits JSON lines.
//!
//! Store functions and the live hub's jobs are `debug` spans. To see where a slow
//! request spent its time, run with `RUST_LOG=info,portal=debug,portal_actors=debug`
//! and `PORTAL_LOG_SPANS=1`: each span then logs its busy and idle time as it closes,
//! nested under the request's span (which carries the request id).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
    let spans = match std::env::var("PORTAL_LOG_SPANS").as_deref() {
        Ok("1" | "true" | "close") => FmtSpan::CLOSE,
        _ => FmtSpan::NONE,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_span_events(spans);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
