//! Counters of the live layer, shown at `/metrics` in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub sessions: AtomicI64,
    pub sessions_opened: AtomicU64,
    pub sessions_refused_slow: AtomicU64,
    pub sessions_revoked: AtomicU64,
    pub events_received: AtomicU64,
    pub renders: AtomicU64,
    pub render_errors: AtomicU64,
    pub pushes: AtomicU64,
    pub resumes: AtomicU64,
    pub listener_connected: AtomicBool,
    pub listener_reconnects: AtomicU64,
    pub listener_channels: AtomicI64,
    listener_error: Mutex<Option<String>>,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_listener(&self, connected: bool, error: Option<String>) {
        self.listener_connected.store(connected, Ordering::Relaxed);
        if let Ok(mut last) = self.listener_error.lock() {
            *last = error;
        }
    }

    /// Whether the process receives database changes right now, and if not, why.
    pub fn listener(&self) -> (bool, Option<String>) {
        let error = self.listener_error.lock().ok().and_then(|e| e.clone());
        (self.listener_connected.load(Ordering::Relaxed), error)
    }

    pub fn connected_sessions(&self) -> i64 {
        self.sessions.load(Ordering::Relaxed)
    }

    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP portal_live_{name} {help}\n# TYPE portal_live_{name} {kind}\nportal_live_{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric(
            "sessions",
            "gauge",
            "Live WebSocket sessions connected now.",
            self.sessions.load(Ordering::Relaxed).to_string(),
        );
        metric("sessions_opened_total", "counter", "Live sessions opened.", get(&self.sessions_opened));
        metric(
            "sessions_dropped_slow_total",
            "counter",
            "Sessions closed because they could not keep up.",
            get(&self.sessions_refused_slow),
        );
        metric(
            "sessions_revoked_total",
            "counter",
            "Sessions closed because their access ended.",
            get(&self.sessions_revoked),
        );
        metric("events_received_total", "counter", "Events read from the outbox.", get(&self.events_received));
        metric(
            "renders_total",
            "counter",
            "Region renderings (each shared by every socket of its class).",
            get(&self.renders),
        );
        metric("render_errors_total", "counter", "Renderings that failed.", get(&self.render_errors));
        metric("pushes_total", "counter", "Messages pushed to sockets.", get(&self.pushes));
        metric("resumes_total", "counter", "Sessions that caught up after connecting.", get(&self.resumes));
        metric(
            "listener_connected",
            "gauge",
            "1 when the LISTEN connection is up.",
            u8::from(self.listener_connected.load(Ordering::Relaxed)).to_string(),
        );
        metric(
            "listener_reconnects_total",
            "counter",
            "Times the LISTEN connection was re-established.",
            get(&self.listener_reconnects),
        );
        metric(
            "listener_channels",
            "gauge",
            "Channels listened to.",
            self.listener_channels.load(Ordering::Relaxed).to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::Metrics::default();
        super::Metrics::add(&m.pushes, 3);
        let text = m.prometheus();
        assert!(text.contains("# TYPE portal_live_pushes_total counter\nportal_live_pushes_total 3\n"));
        assert!(text.contains("portal_live_listener_connected 0\n"));
    }
}
