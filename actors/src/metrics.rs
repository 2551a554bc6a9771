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
    /// This process holds the relay election (it sends the database's notifications).
    pub relay_leader: AtomicBool,
    /// The relay polls the outbox, rather than sleeping until a writer wakes it.
    pub relay_awake: AtomicBool,
    pub relay_takeovers: AtomicU64,
    pub relay_wakeups: AtomicU64,
    pub relay_polls: AtomicU64,
    pub relay_notifications: AtomicU64,
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

    /// Whether this process is the relay (and, if so, whether it is awake).
    pub fn relay(&self) -> (bool, bool) {
        (self.relay_leader.load(Ordering::Relaxed), self.relay_awake.load(Ordering::Relaxed))
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
        let flag = |b: &AtomicBool| u8::from(b.load(Ordering::Relaxed)).to_string();
        metric(
            "relay_leader",
            "gauge",
            "1 when this process is the database's notification relay.",
            flag(&self.relay_leader),
        );
        metric(
            "relay_awake",
            "gauge",
            "1 while the relay polls the outbox; 0 while it sleeps until a writer wakes it, or is not the relay.",
            flag(&self.relay_awake),
        );
        metric("relay_takeovers_total", "counter", "Times this process became the relay.", get(&self.relay_takeovers));
        metric("relay_wakeups_total", "counter", "Times a writer woke the sleeping relay.", get(&self.relay_wakeups));
        metric("relay_polls_total", "counter", "Reads of the outbox by the relay.", get(&self.relay_polls));
        metric(
            "relay_notifications_total",
            "counter",
            "Channel notifications the relay sent (one per channel per poll that found its events).",
            get(&self.relay_notifications),
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
        assert!(text.contains("# TYPE portal_live_relay_leader gauge\nportal_live_relay_leader 0\n"));
    }
}
