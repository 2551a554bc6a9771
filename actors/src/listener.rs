//! The one LISTEN connection of a process.
//!
//! It listens on `c_<customer>` for customers with at least one live session
//! here, on `staff` while staff are connected, and on `portal_revoked` always.
//! The database's relay (see relay.rs), not the writing transactions, sends the
//! `c_<customer>` and `staff` notifications.
//! A notification is only a wake-up: the listener then reads every event it has
//! not seen from the outbox, from the oldest transaction that was still running
//! when it last looked, so an event that commits late, or while the connection
//! was down, is still read. On connection loss it reconnects with backoff,
//! listens again and catches up the same way.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::stream;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use uuid::Uuid;

use crate::cursor::{self, Cursor};
use crate::event::{EVENT_COLUMNS, Event};
use crate::hub::{Batch, Hub, ListenerUp, Resync, Revoked, RoomKey};
use crate::metrics::Metrics;

/// More unseen events than this in one read (after a long outage) and pages
/// are re-rendered whole instead of caught up event by event.
const MAX_BATCH: i64 = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const REVOKED_CHANNEL: &str = "portal_revoked";

/// Events the cursor has not read (`$1`, `$2`) of the wanted customers (`$3`) and,
/// if staff are wanted (`$4`), staff's; the position of this statement's
/// snapshot comes first, once.
fn fetch_sql() -> String {
    format!(
        "WITH position AS (SELECT {position} AS position) \
         SELECT p.position, e.* FROM position p LEFT JOIN LATERAL ( \
           SELECT {EVENT_COLUMNS} FROM events \
           WHERE {unseen} \
             AND (customer_id = ANY($3) OR ($4 AND topic <> 'notifications')) \
           ORDER BY id LIMIT $5) e ON true",
        position = cursor::POSITION,
        unseen = cursor::UNSEEN,
    )
}

pub(crate) struct Listener {
    config: tokio_postgres::Config,
    /// Set on every connection: reading all customers' events is the staff role's right.
    role: String,
    hub: Addr<Hub>,
    metrics: Arc<Metrics>,
    client: Option<Rc<Client>>,
    /// Bumped per connection attempt, so messages of an older connection are ignored.
    generation: u64,
    ready: bool,
    wanted: HashSet<RoomKey>,
    cursor: Cursor,
    fetch_sql: Rc<str>,
    /// `fetch_sql` prepared on the current connection: parsed and planned once, not per wake-up.
    fetch_statement: Option<Statement>,
    fetching: bool,
    dirty: bool,
    backoff: Duration,
}

impl Listener {
    pub(crate) fn new(config: tokio_postgres::Config, role: String, hub: Addr<Hub>, metrics: Arc<Metrics>) -> Self {
        Listener {
            config,
            role,
            hub,
            metrics,
            client: None,
            generation: 0,
            ready: false,
            wanted: HashSet::new(),
            cursor: Cursor::default(),
            fetch_sql: fetch_sql().into(),
            fetch_statement: None,
            fetching: false,
            dirty: false,
            backoff: Duration::from_millis(250),
        }
    }

    fn channel(key: &RoomKey) -> String {
        match key {
            Some(customer) => format!("\"c_{customer}\""),
            None => "staff".to_owned(),
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let config = self.config.clone();
        async move { config.connect(NoTls).await }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if generation != act.generation {
                    return;
                }
                match result {
                    Ok((client, mut connection)) => {
                        // Polling the connection drives the client too; notifications come out of it.
                        let messages = stream::poll_fn(move |cx| connection.poll_message(cx))
                            .map(move |m| Connection::Message(generation, Box::new(m)))
                            .chain(stream::once(async move { Connection::Ended(generation) }));
                        ctx.add_stream(messages);
                        act.client = Some(Rc::new(client));
                        act.set_up(ctx);
                    }
                    Err(e) => act.lost(ctx, e.to_string()),
                }
            })
            .spawn(ctx);
    }

    /// Switches role, listens on every wanted channel, then catches up.
    fn set_up(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        let generation = self.generation;
        let mut sql =
            format!("SET ROLE {}; SET application_name = 'portal-live'; LISTEN {REVOKED_CHANNEL};", self.role);
        for key in &self.wanted {
            sql.push_str(&format!(" LISTEN {};", Self::channel(key)));
        }
        let fetch_sql = self.fetch_sql.clone();
        async move {
            client.batch_execute(&sql).await?;
            let statement = client.prepare(&fetch_sql).await?;
            let row = client.query_one(&format!("SELECT {}", cursor::POSITION), &[]).await?;
            Ok::<_, tokio_postgres::Error>((row.get::<_, i64>(0), statement))
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            if generation != act.generation {
                return;
            }
            match result {
                Ok((now, statement)) => {
                    act.fetch_statement = Some(statement);
                    let reconnected = act.cursor.start(now);
                    act.ready = true;
                    act.backoff = Duration::from_millis(250);
                    act.metrics.set_listener(true, None);
                    act.metrics
                        .listener_channels
                        .store(act.wanted.len() as i64 + 1, std::sync::atomic::Ordering::Relaxed);
                    if reconnected {
                        Metrics::add(&act.metrics.listener_reconnects, 1);
                        tracing::info!("live listener reconnected; catching up");
                        act.fetch(ctx);
                    } else {
                        tracing::info!("live listener connected");
                    }
                    act.hub.do_send(ListenerUp { reconnected });
                }
                Err(e) => act.lost(ctx, e.to_string()),
            }
        })
        .spawn(ctx);
    }

    fn lost(&mut self, ctx: &mut Context<Self>, error: String) {
        self.generation += 1;
        self.client = None;
        self.fetch_statement = None;
        self.ready = false;
        self.fetching = false;
        self.metrics.set_listener(false, Some(error.clone()));
        // Full jitter keeps a fleet of processes from reconnecting in step.
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let delay = self.backoff.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0);
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "live listener lost its database connection");
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    fn fetch(&mut self, ctx: &mut Context<Self>) {
        let (Some(client), Some(statement), Some(position), true) =
            (self.client.clone(), self.fetch_statement.clone(), self.cursor.position(), self.ready)
        else {
            return;
        };
        if self.fetching {
            self.dirty = true;
            return;
        }
        self.fetching = true;
        self.dirty = false;
        let generation = self.generation;
        let seen = self.cursor.seen();
        let customers: Vec<Uuid> = self.wanted.iter().flatten().copied().collect();
        let staff = self.wanted.contains(&None);
        async move {
            let rows = client.query(&statement, &[&position, &seen, &customers, &staff, &(MAX_BATCH + 1)]).await?;
            let now: i64 = rows.first().map_or(Ok(position), |r| r.try_get("position"))?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if row.try_get::<_, Option<i64>>("id")?.is_some() {
                    events.push(Event::from_row(row)?);
                }
            }
            Ok::<_, tokio_postgres::Error>((now, events))
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            if generation != act.generation {
                return;
            }
            act.fetching = false;
            match result {
                Ok((now, events)) => act.deliver(now, events),
                Err(e) => tracing::warn!(error = %e, "reading the events outbox failed"),
            }
            if act.dirty {
                act.fetch(ctx);
            }
        })
        .spawn(ctx);
    }

    fn deliver(&mut self, now: i64, events: Vec<Event>) {
        if events.len() as i64 > MAX_BATCH {
            tracing::warn!(events = events.len(), "too many events to catch up one by one; re-rendering live pages");
            let position = self.cursor.skip_to(now);
            self.hub.do_send(Resync { position });
            return;
        }
        Metrics::add(&self.metrics.events_received, events.len() as u64);
        let position = self.cursor.advance(now, events.iter().map(|e| (e.id, e.xid)));
        if !events.is_empty() {
            self.hub.do_send(Batch { events: events.into_iter().map(Arc::new).collect(), position });
        }
    }
}

enum Connection {
    Message(u64, Box<Result<AsyncMessage, tokio_postgres::Error>>),
    Ended(u64),
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.connect(ctx);
    }
}

impl StreamHandler<Connection> for Listener {
    fn handle(&mut self, item: Connection, ctx: &mut Self::Context) {
        match item {
            Connection::Message(generation, _) | Connection::Ended(generation) if generation != self.generation => {}
            Connection::Message(_, message) => match *message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == REVOKED_CHANNEL => {
                    if let Ok(session) = Uuid::parse_str(n.payload()) {
                        self.hub.do_send(Revoked { session });
                    }
                }
                Ok(AsyncMessage::Notification(_)) => self.fetch(ctx),
                Ok(_) => {}
                Err(e) => self.lost(ctx, e.to_string()),
            },
            Connection::Ended(_) => self.lost(ctx, "connection closed".into()),
        }
    }

    /// Each connection's stream ends when it is lost; the actor lives on and reconnects.
    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Start receiving a room's events (answers once the LISTEN is in place, if connected).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Listen(pub RoomKey);

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Unlisten(pub RoomKey);

impl Handler<Listen> for Listener {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Listen(key): Listen, _: &mut Self::Context) -> Self::Result {
        let sql = format!("LISTEN {}", Self::channel(&key));
        self.wanted.insert(key);
        self.metrics.listener_channels.store(self.wanted.len() as i64 + 1, std::sync::atomic::Ordering::Relaxed);
        // Not connected: the next connection listens on everything wanted, and catches up.
        let client = self.client.clone().filter(|_| self.ready);
        Box::pin(
            async move {
                if let Some(client) = client
                    && let Err(e) = client.batch_execute(&sql).await
                {
                    tracing::warn!(error = %e, "LISTEN failed");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<Unlisten> for Listener {
    type Result = ();

    fn handle(&mut self, Unlisten(key): Unlisten, ctx: &mut Self::Context) {
        self.wanted.remove(&key);
        self.metrics.listener_channels.store(self.wanted.len() as i64 + 1, std::sync::atomic::Ordering::Relaxed);
        if let Some(client) = self.client.clone().filter(|_| self.ready) {
            let sql = format!("UNLISTEN {}", Self::channel(&key));
            ctx.spawn(
                async move {
                    if let Err(e) = client.batch_execute(&sql).await {
                        tracing::warn!(error = %e, "UNLISTEN failed");
                    }
                }
                .into_actor(self),
            );
        }
    }
}
