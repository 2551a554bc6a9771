//! The notification relay: the one place per database that sends `c_<customer>`
//! and `staff` notifications.
//!
//! A NOTIFY in a writing transaction takes a cluster-wide lock held through its
//! commit's WAL flush, which serialised every writer of a live table. So the row
//! triggers only append to `events` (migrations/V8), and one elected process
//! reads the outbox and sends, per read, one notification per channel that has
//! new events, all in one small transaction. Listeners treat a notification as a
//! wake-up and read the events themselves, so nothing else changes for them.
//!
//! Election: every process runs a candidate on a dedicated connection; the one
//! that holds a session-level advisory lock is the relay. The lock goes with the
//! connection, so when the relay's connection or process dies, another candidate
//! (they retry every second or so) takes over. It starts from the position the
//! last relay stored in `live_relay`, so what committed in between is announced.
//!
//! Awake and asleep: polling the outbox every millisecond costs the database a
//! query per millisecond, worth it while writes are flowing and waste when
//! nothing happens. After [`IDLE_BEFORE_SLEEP`] without events the relay sleeps
//! (see [`Leader::fall_asleep`] for why no event can slip through) and waits on
//! `portal_events`, which writers notify only while `live_relay.awake` is false.
//!
//! Stopping: nothing is done on the way out. A relay cannot clear the flag when
//! it loses its connection (that is when it has no way to), and a clean stop has
//! no reason to: the flag left awake only means writers stay silent until the
//! next relay, which catches up from the stored position anyway, and any portal
//! process is a candidate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::{FutureExt, StreamExt, stream};
use tokio::sync::{Notify, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use crate::cursor::{self, Cursor};
use crate::metrics::Metrics;

/// The advisory lock whose holder is the relay ("portal relay" in ASCII). Advisory
/// locks are per database, so each database elects its own relay.
const LEADER_LOCK: i64 = 0x706f_7274_616c_7265;
/// What writers notify to wake a sleeping relay (V8's trigger).
const WAKE_CHANNEL: &str = "portal_events";
/// Between reads of the outbox while awake. It bounds the delay the relay adds to
/// a live update (the old trigger notified at commit), and at 1 ms that stays
/// well below what a page's render and push take; a read is an index range scan
/// of the few events past the position, and the relay only polls while events
/// are flowing, so the price is paid when it buys something.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Quiet this long and the relay goes to sleep: long enough that a steady trickle
/// of writes keeps it awake (each sleep and wake costs a few small commits, a
/// NOTIFY for the waking writer and an extra hop for that write's push), short
/// enough that an idle portal stops polling at once. Measured at 10,000 sessions
/// and 100 changes/s: 5 ms (sleep as soon as polling costs what a sleep would)
/// made p50 commit → fragment 39 ms instead of 13 ms and slowed everything else on
/// the machine with sleep/wake cycles; the price of 250 ms is polling the outbox
/// while changes trickle in (about 460 small reads a second at 17 changes/s).
const IDLE_BEFORE_SLEEP: Duration = Duration::from_millis(250);
/// How often a candidate that is not the relay tries to become it (jittered).
const ELECTION_RETRY: Duration = Duration::from_secs(1);
/// How often an awake relay stores its position for the next relay.
const STORE_POSITION_EVERY: Duration = Duration::from_secs(1);
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One read of the outbox and its notifications, in one statement (one
/// transaction): the position of its snapshot, the events read that the next
/// read will return again (by id, with their xids, for the cursor), how many
/// events it found, and how many channels it notified. The channels are the old
/// trigger's: `c_<customer>` for an event with a customer_id, `staff` for every
/// topic but notifications.
fn poll_sql() -> String {
    format!(
        "WITH here AS (SELECT {position} AS position), \
         fresh AS (SELECT id, xid, customer_id, topic FROM events WHERE {unseen}), \
         channels AS ( \
           SELECT DISTINCT channel FROM fresh \
           CROSS JOIN LATERAL (VALUES ('c_' || customer_id::text), \
                                      (CASE WHEN topic <> 'notifications' THEN 'staff' END)) c (channel) \
           WHERE channel IS NOT NULL) \
         SELECT h.position, \
           ARRAY(SELECT id FROM fresh WHERE xid >= h.position ORDER BY id) AS ids, \
           ARRAY(SELECT xid FROM fresh WHERE xid >= h.position ORDER BY id) AS xids, \
           (SELECT count(*) FROM fresh) AS found, \
           (SELECT count(pg_notify(channel, '')) FROM channels) AS notified \
         FROM here h",
        position = cursor::POSITION,
        unseen = cursor::UNSEEN,
    )
}

/// Whether every transaction that may have read `live_relay.awake` as true has
/// ended, given `$1`, an xid assigned after `awake = false` committed (see
/// [`Leader::fall_asleep`]). Only sessions with a user count: autovacuum has none
/// (it never writes live tables, and would keep the relay polling through a long
/// vacuum). `backend_type` cannot tell them apart: it is hidden from the relay's
/// role for other users' sessions, while `usesysid`, `backend_xid` and
/// `backend_xmin` are shown to everyone.
const DRAINED: &str = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity \
       WHERE datname = current_database() AND pid <> pg_backend_pid() AND usesysid IS NOT NULL \
         AND (age(backend_xid) >= age(($1::bigint % 4294967296)::text::xid) \
              OR age(backend_xmin) >= age(($1::bigint % 4294967296)::text::xid)))";

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error("the relay's database connection closed")]
    Closed,
}

/// The relay candidate of this process: runs for as long as the live layer does.
pub(crate) struct Relay {
    config: tokio_postgres::Config,
    /// Switched to on every connection: reading all customers' events is the staff role's right.
    role: String,
    metrics: Arc<Metrics>,
}

impl Relay {
    pub(crate) fn new(mut config: tokio_postgres::Config, role: String, metrics: Arc<Metrics>) -> Self {
        // Operators (and the fail-over test) find the relay's connection by this name.
        config.application_name("portal-relay");
        Relay { config, role, metrics }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (config, role, metrics) = (self.config.clone(), self.role.clone(), self.metrics.clone());
        ctx.spawn(run(config, role, metrics).into_actor(self));
    }
}

/// Candidate, relay, lost connection, again; forever.
async fn run(config: tokio_postgres::Config, role: String, metrics: Arc<Metrics>) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let error = match candidate(&config, &role, &metrics, &mut backoff).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        metrics.relay_leader.store(false, Ordering::Relaxed);
        metrics.relay_awake.store(false, Ordering::Relaxed);
        let delay = jittered(backoff);
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "the live relay lost its database connection");
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::time::sleep(delay).await;
    }
}

/// Between half and all of `base`, so a fleet of processes does not retry in step.
fn jittered(base: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

/// One connection: stands for election until it wins, then relays until the connection fails.
async fn candidate(
    config: &tokio_postgres::Config,
    role: &str,
    metrics: &Arc<Metrics>,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, RelayError> {
    let mut link = Link::connect(config, role).await?;
    *backoff = INITIAL_BACKOFF;
    loop {
        let won: bool = link.client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await?.try_get(0)?;
        if won {
            break;
        }
        link.pause(jittered(ELECTION_RETRY * 2)).await?;
    }
    tracing::info!("this process is the live relay");
    metrics.relay_leader.store(true, Ordering::Relaxed);
    Metrics::add(&metrics.relay_takeovers, 1);
    Leader::take_over(&mut link, metrics.clone()).await?.run().await
}

/// The relay's connection: its client, the wake-ups it receives, and whether it ended.
struct Link {
    client: Client,
    woken: Arc<Notify>,
    /// Resolves when the connection ends; never polled again after that.
    closed: oneshot::Receiver<()>,
}

impl Link {
    async fn connect(config: &tokio_postgres::Config, role: &str) -> Result<Link, RelayError> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let woken = Arc::new(Notify::new());
        let (ended, closed) = oneshot::channel();
        let wake = woken.clone();
        // Polling the connection drives the client too; notifications come out of it. The
        // connection ends (and this task with it) when the client is dropped or the server goes.
        actix::spawn(async move {
            let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(_) = message {
                    wake.notify_one();
                }
            }
            let _ = ended.send(());
        });
        // The relay's transactions need no durability: a notification is sent at commit either
        // way, and a stored position lost in a crash only means announcing a little again. Not
        // waiting for the WAL flush keeps the relay's commits off the writers' flush queue.
        client.batch_execute(&format!("SET ROLE {role}; SET synchronous_commit = off")).await?;
        Ok(Link { client, woken, closed })
    }

    /// Waits `wait`, or fails at once if the connection ends meanwhile.
    async fn pause(&mut self, wait: Duration) -> Result<(), RelayError> {
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            _ = &mut self.closed => Err(RelayError::Closed),
        }
    }

    /// Waits for a notification on the wake channel (or one already received).
    async fn woken(&mut self) -> Result<(), RelayError> {
        tokio::select! {
            () = self.woken.notified() => Ok(()),
            _ = &mut self.closed => Err(RelayError::Closed),
        }
    }
}

/// The relay, while its connection holds the election lock.
struct Leader<'a> {
    link: &'a mut Link,
    metrics: Arc<Metrics>,
    poll: Statement,
    drained: Statement,
    cursor: Cursor,
    stored: i64,
    stored_at: Instant,
}

impl<'a> Leader<'a> {
    /// Listens for wake-ups, marks the relay awake, and starts from where the last relay got to.
    async fn take_over(link: &'a mut Link, metrics: Arc<Metrics>) -> Result<Leader<'a>, RelayError> {
        link.client.batch_execute(&format!("LISTEN {WAKE_CHANNEL}")).await?;
        let poll = link.client.prepare(&poll_sql()).await?;
        let drained = link.client.prepare(DRAINED).await?;
        let stored: i64 =
            link.client.query_one("UPDATE live_relay SET awake = true RETURNING position", &[]).await?.try_get(0)?;
        metrics.relay_awake.store(true, Ordering::Relaxed);
        Ok(Leader { link, metrics, poll, drained, cursor: Cursor::at(stored), stored, stored_at: Instant::now() })
    }

    async fn run(mut self) -> Result<std::convert::Infallible, RelayError> {
        loop {
            // Awake: poll until the outbox has been quiet for a while.
            let mut last_found = Instant::now();
            loop {
                if self.poll().await? > 0 {
                    last_found = Instant::now();
                } else if last_found.elapsed() >= IDLE_BEFORE_SLEEP {
                    break;
                }
                self.link.pause(POLL_INTERVAL).await?;
            }
            if !self.fall_asleep().await? {
                continue;
            }
            // Asleep, until a writer (one that read `awake = false`) notifies.
            self.link.woken().await?;
            self.link.client.execute("UPDATE live_relay SET awake = true", &[]).await?;
            self.metrics.relay_awake.store(true, Ordering::Relaxed);
            Metrics::add(&self.metrics.relay_wakeups, 1);
        }
    }

    /// Reads what is new in the outbox and notifies its channels; how many events it found.
    async fn poll(&mut self) -> Result<i64, RelayError> {
        let position = self.cursor.position().unwrap_or(self.stored);
        let row = self.link.client.query_one(&self.poll, &[&position, &self.cursor.seen()]).await?;
        let now: i64 = row.try_get("position")?;
        let ids: Vec<i64> = row.try_get("ids")?;
        let xids: Vec<i64> = row.try_get("xids")?;
        let found: i64 = row.try_get("found")?;
        let notified: i64 = row.try_get("notified")?;
        let position = self.cursor.advance(now, ids.into_iter().zip(xids));
        Metrics::add(&self.metrics.relay_polls, 1);
        Metrics::add(&self.metrics.relay_notifications, notified.unsigned_abs());
        // Every event older than `position` has been notified (by this statement or an
        // earlier one), so a relay that takes over from here misses nothing.
        if position != self.stored && self.stored_at.elapsed() >= STORE_POSITION_EVERY {
            self.store(position).await?;
        }
        Ok(found)
    }

    async fn store(&mut self, position: i64) -> Result<(), RelayError> {
        self.link.client.execute("UPDATE live_relay SET position = $1", &[&position]).await?;
        self.stored = position;
        self.stored_at = Instant::now();
        Ok(())
    }

    /// Clears the flag and polls until no writer can still be relying on it; false
    /// when events came meanwhile (the relay is awake again then).
    ///
    /// Why nothing slips through: a writer stays silent only if its trigger read
    /// `awake = true`. Its xid was assigned when it wrote the row, before that
    /// AFTER trigger read the flag, and (reading committed data with a fresh
    /// snapshot, as READ COMMITTED does for every statement of a trigger) it read
    /// the flag before `awake = false` committed. So its xid is older than `bound`,
    /// an xid assigned after that commit, and once no transaction at or before
    /// `bound` is running, every silent writer has ended and its events are
    /// visible to the poll that follows. A REPEATABLE READ or SERIALIZABLE writer
    /// reads the flag in a snapshot taken when its transaction began, possibly
    /// before the commit, and may take its xid after `bound`; such a snapshot's
    /// xmin is at or before `bound`, so waiting for every snapshot (`backend_xmin`)
    /// at or before `bound` to go covers it too. Writers that read `awake = false`
    /// notify `portal_events` as they commit, which wakes the relay (a wake-up that
    /// arrives while it drains is kept and wakes it at once).
    async fn fall_asleep(&mut self) -> Result<bool, RelayError> {
        // Wake-ups from before this point are for events the polls below read anyway.
        let _ = self.link.woken.notified().now_or_never();
        let position = self.cursor.position().unwrap_or(self.stored);
        self.link.client.execute("UPDATE live_relay SET awake = false, position = $1", &[&position]).await?;
        self.stored = position;
        self.stored_at = Instant::now();
        let bound: i64 =
            self.link.client.query_one("SELECT pg_current_xact_id()::text::bigint", &[]).await?.try_get(0)?;
        loop {
            // In this order: a writer that ended before the check is visible to the poll after it.
            let drained: bool = self.link.client.query_one(&self.drained, &[&bound]).await?.try_get(0)?;
            if self.poll().await? > 0 {
                self.link.client.execute("UPDATE live_relay SET awake = true", &[]).await?;
                return Ok(false);
            }
            if drained {
                // Only now does the relay stop polling: what the gauge shows.
                self.metrics.relay_awake.store(false, Ordering::Relaxed);
                return Ok(true);
            }
            self.link.pause(POLL_INTERVAL).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_between_half_and_all() {
        let base = std::time::Duration::from_millis(1000);
        let d = super::jittered(base);
        assert!(d >= base / 2 && d <= base, "{d:?}");
    }
}
