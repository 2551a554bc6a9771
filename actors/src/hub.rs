//! Routes events to the live sessions of a process.
//!
//! Sessions are grouped in rooms, one per customer and one for staff. A room
//! renders one job at a time: the events that arrived since its last job, and
//! the sessions that joined since (which first catch up from the position
//! their page was rendered at). Within a job, each region is rendered once per
//! share key (customer, role, user... as the renderer decides) and the markup
//! is shared by every socket of that key. Delivery never waits: a session whose
//! queue is full is dropped and resumes when it reconnects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::event::{Audience, Event};
use crate::listener::{Listen, Listener, Unlisten};
use crate::metrics::Metrics;
use crate::protocol::close;
use crate::renderer::{Catchup, Renderer};

/// A customer's room, or the staff room (`None`).
pub(crate) type RoomKey = Option<Uuid>;

/// How often every session is re-checked even when nothing happens (idle expiry).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What the hub sends a session.
#[derive(Debug)]
pub enum Outbound {
    Push(Arc<str>),
    Close(u16),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Joined; catches up in the room's next job.
    Joining,
    /// Catching up in the running job.
    Resuming,
    Ready,
}

struct Member {
    audience: Arc<Audience>,
    regions: Arc<[String]>,
    tx: mpsc::Sender<Outbound>,
    cursor: i64,
    stage: Stage,
    /// Re-render every region in the next job (cursor too old, or a resync).
    full: bool,
}

#[derive(Default)]
struct Room {
    members: HashMap<u64, Member>,
    listening: bool,
    busy: bool,
    events: Vec<Arc<Event>>,
    position: i64,
    resync: bool,
}

impl Room {
    fn has_work(&self) -> bool {
        !self.events.is_empty() || self.resync || self.members.values().any(|m| m.stage == Stage::Joining)
    }
}

pub struct Hub {
    renderer: Arc<dyn Renderer>,
    listener: Option<Addr<Listener>>,
    listener_config: Option<(tokio_postgres::Config, String)>,
    metrics: Arc<Metrics>,
    rooms: HashMap<RoomKey, Room>,
    member_room: HashMap<u64, RoomKey>,
    by_session: HashMap<Uuid, HashSet<u64>>,
    next_id: u64,
}

impl Hub {
    pub(crate) fn new(
        renderer: Arc<dyn Renderer>,
        database: tokio_postgres::Config,
        role: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hub {
            renderer,
            listener: None,
            listener_config: Some((database, role)),
            metrics,
            rooms: HashMap::new(),
            member_room: HashMap::new(),
            by_session: HashMap::new(),
            next_id: 1,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Member> {
        let key = self.member_room.remove(&id)?;
        let room = self.rooms.get_mut(&key)?;
        let member = room.members.remove(&id)?;
        self.metrics.sessions.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(ids) = self.by_session.get_mut(&member.audience.session_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_session.remove(&member.audience.session_id);
            }
        }
        if room.members.is_empty() {
            self.rooms.remove(&key);
            if let Some(listener) = &self.listener {
                listener.do_send(Unlisten(key));
            }
        }
        Some(member)
    }

    fn close(&mut self, id: u64, code: u16) {
        if let Some(member) = self.remove(id) {
            // If its queue is full the session is gone soon anyway: dropping `tx` ends its stream.
            let _ = member.tx.try_send(Outbound::Close(code));
        }
    }

    fn kick(&mut self, key: RoomKey, ctx: &mut Context<Self>) {
        let Some(room) = self.rooms.get_mut(&key) else { return };
        if room.busy || !room.listening || !room.has_work() {
            return;
        }
        room.busy = true;
        let events = std::mem::take(&mut room.events);
        let position = room.position;
        let resync = std::mem::take(&mut room.resync);
        let members: Vec<JobMember> = room
            .members
            .iter_mut()
            .map(|(id, m)| {
                if m.stage == Stage::Joining {
                    m.stage = Stage::Resuming;
                }
                let full = std::mem::take(&mut m.full) || resync;
                JobMember {
                    id: *id,
                    audience: m.audience.clone(),
                    regions: m.regions.clone(),
                    cursor: m.cursor,
                    resuming: m.stage == Stage::Resuming,
                    full,
                }
            })
            .collect();
        let job = run_job(self.renderer.clone(), self.metrics.clone(), members, events, position);
        job.into_actor(self).map(move |outcomes, hub, ctx| hub.finish(key, outcomes, ctx)).spawn(ctx);
    }

    fn finish(&mut self, key: RoomKey, outcomes: Vec<Outcome>, ctx: &mut Context<Self>) {
        for outcome in outcomes {
            let Some(member) = self.rooms.get_mut(&key).and_then(|room| room.members.get_mut(&outcome.id)) else {
                continue;
            };
            match outcome.result {
                Deliver::Close(code) => {
                    if code == close::REVOKED {
                        Metrics::add(&self.metrics.sessions_revoked, 1);
                    }
                    self.close(outcome.id, code);
                }
                Deliver::Position(cursor) => {
                    member.cursor = member.cursor.max(cursor);
                    member.stage = Stage::Ready;
                }
                Deliver::Push(json, cursor) => {
                    member.cursor = member.cursor.max(cursor);
                    member.stage = Stage::Ready;
                    match member.tx.try_send(Outbound::Push(json)) {
                        Ok(()) => Metrics::add(&self.metrics.pushes, 1),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            Metrics::add(&self.metrics.sessions_refused_slow, 1);
                            // Dropping the sender ends the session's stream: it closes and resumes later.
                            self.remove(outcome.id);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.remove(outcome.id);
                        }
                    }
                }
            }
        }
        if let Some(room) = self.rooms.get_mut(&key) {
            room.busy = false;
        }
        self.kick(key, ctx);
    }

    /// Re-checks every session (expiry, disabled users) without waiting for an event.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let sessions: Vec<Uuid> = self.by_session.keys().copied().collect();
        if sessions.is_empty() {
            return;
        }
        self.renderer
            .alive(sessions.clone())
            .into_actor(self)
            .map(move |result, hub, _| match result {
                Ok(alive) => {
                    let mut closing = Vec::new();
                    for session in &sessions {
                        let Some(ids) = hub.by_session.get(session) else { continue };
                        for id in ids {
                            let role = hub
                                .member_room
                                .get(id)
                                .and_then(|k| hub.rooms.get(k))
                                .and_then(|r| r.members.get(id))
                                .map(|m| m.audience.role.clone());
                            match (alive.get(session), role) {
                                (None, _) => closing.push((*id, close::REVOKED)),
                                (Some(now), Some(then)) if *now != then => closing.push((*id, close::RESUME)),
                                _ => {}
                            }
                        }
                    }
                    for (id, code) in closing {
                        if code == close::REVOKED {
                            Metrics::add(&hub.metrics.sessions_revoked, 1);
                        }
                        hub.close(id, code);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "re-checking live sessions failed"),
            })
            .spawn(ctx);
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((config, role)) = self.listener_config.take() {
            self.listener = Some(Listener::new(config, role, ctx.address(), self.metrics.clone()).start());
        }
        ctx.run_interval(SWEEP_EVERY, |hub, ctx| hub.sweep(ctx));
    }
}

/// A session asks to receive pushes for `regions`, rendered at `cursor`.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Join {
    pub audience: Arc<Audience>,
    pub regions: Arc<[String]>,
    pub cursor: i64,
    pub tx: mpsc::Sender<Outbound>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub u64);

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Batch {
    pub events: Vec<Arc<Event>>,
    pub position: i64,
}

/// Too much happened to catch up event by event: re-render every live region.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resync {
    pub position: i64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Revoked {
    pub session: Uuid,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ListenerUp {
    pub reconnected: bool,
}

impl Handler<Join> for Hub {
    type Result = MessageResult<Join>;

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) -> Self::Result {
        let id = self.next_id;
        self.next_id += 1;
        let key = join.audience.customer_id;
        self.by_session.entry(join.audience.session_id).or_default().insert(id);
        self.member_room.insert(id, key);
        let room = self.rooms.entry(key).or_default();
        let new_room = room.members.is_empty();
        room.members.insert(
            id,
            Member {
                audience: join.audience,
                regions: join.regions,
                tx: join.tx,
                cursor: join.cursor,
                stage: Stage::Joining,
                full: false,
            },
        );
        self.metrics.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Metrics::add(&self.metrics.sessions_opened, 1);
        if new_room {
            match self.listener.clone() {
                // The room renders only once its channel is listened to, so nothing
                // committed after its catch-up can go unnoticed.
                Some(listener) => {
                    listener
                        .send(Listen(key))
                        .into_actor(self)
                        .map(move |_, hub, ctx| {
                            if let Some(room) = hub.rooms.get_mut(&key) {
                                room.listening = true;
                            }
                            hub.kick(key, ctx);
                        })
                        .spawn(ctx);
                }
                None => room.listening = true,
            }
        }
        self.kick(key, ctx);
        MessageResult(id)
    }
}

impl Handler<Leave> for Hub {
    type Result = ();

    fn handle(&mut self, Leave(id): Leave, _: &mut Self::Context) {
        self.remove(id);
    }
}

impl Handler<Batch> for Hub {
    type Result = ();

    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        let mut touched = HashSet::new();
        for event in batch.events {
            if let Some(customer) = event.customer_id
                && let Some(room) = self.rooms.get_mut(&Some(customer))
            {
                room.events.push(event.clone());
                touched.insert(Some(customer));
            }
            if event.topic != "notifications"
                && let Some(room) = self.rooms.get_mut(&None)
            {
                room.events.push(event);
                touched.insert(None);
            }
        }
        for key in touched {
            if let Some(room) = self.rooms.get_mut(&key) {
                room.position = room.position.max(batch.position);
            }
            self.kick(key, ctx);
        }
    }
}

impl Handler<Resync> for Hub {
    type Result = ();

    fn handle(&mut self, resync: Resync, ctx: &mut Self::Context) {
        let keys: Vec<RoomKey> = self.rooms.keys().copied().collect();
        for key in keys {
            if let Some(room) = self.rooms.get_mut(&key) {
                room.resync = true;
                room.position = room.position.max(resync.position);
            }
            self.kick(key, ctx);
        }
    }
}

impl Handler<Revoked> for Hub {
    type Result = ();

    fn handle(&mut self, revoked: Revoked, _: &mut Self::Context) {
        let ids: Vec<u64> =
            self.by_session.get(&revoked.session).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in ids {
            Metrics::add(&self.metrics.sessions_revoked, 1);
            self.close(id, close::REVOKED);
        }
    }
}

impl Handler<ListenerUp> for Hub {
    type Result = ();

    fn handle(&mut self, up: ListenerUp, ctx: &mut Self::Context) {
        // Revocations announced while the connection was down were missed: check now.
        if up.reconnected {
            self.sweep(ctx);
        }
    }
}

struct JobMember {
    id: u64,
    audience: Arc<Audience>,
    regions: Arc<[String]>,
    cursor: i64,
    resuming: bool,
    full: bool,
}

enum Deliver {
    Push(Arc<str>, i64),
    /// Nothing to show, but the member is current to this position.
    Position(i64),
    Close(u16),
}

struct Outcome {
    id: u64,
    result: Deliver,
}

/// A member's regions to deliver: (share key, index into its regions), and its new position.
type Need = (usize, Vec<(String, usize)>, i64);

/// One room's job: decide which regions each member needs, render each
/// (share key, region) once, re-check the sessions, and build the messages.
#[tracing::instrument(
    level = "debug",
    skip_all,
    fields(members = members.len(), events = events.len(), position = position)
)]
async fn run_job(
    renderer: Arc<dyn Renderer>,
    metrics: Arc<Metrics>,
    members: Vec<JobMember>,
    events: Vec<Arc<Event>>,
    position: i64,
) -> Vec<Outcome> {
    // Members that just joined catch up from their page's position.
    let resuming: Vec<&JobMember> = members.iter().filter(|m| m.resuming && !m.full).collect();
    let mut catchup_failed = false;
    let catchup: Option<Catchup> = match resuming.iter().min_by_key(|m| m.cursor) {
        Some(oldest) => match renderer.events_since((*oldest.audience).clone(), oldest.cursor).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "catching up a live session failed");
                catchup_failed = true;
                None
            }
        },
        None => None,
    };
    Metrics::add(&metrics.resumes, members.iter().filter(|m| m.resuming).count() as u64);

    let mut outcomes = Vec::with_capacity(members.len());
    // What each member needs, by (share key, region).
    let mut needs: Vec<Need> = Vec::new();
    let mut units: HashMap<String, (Arc<Audience>, BTreeSet<String>)> = HashMap::new();
    // A thousand sockets on one page are a handful of users: whether this batch
    // touches a region, and who shares its rendering, is worked out once per
    // (user, role, region), not once per socket.
    let mut decided: HashMap<(Uuid, &str, &str), Option<String>> = HashMap::new();
    for (index, member) in members.iter().enumerate() {
        if member.resuming && catchup_failed && !member.full {
            outcomes.push(Outcome { id: member.id, result: Deliver::Close(close::RESUME) });
            continue;
        }
        let mut cursor = member.cursor.max(position);
        let full = member.full || (member.resuming && catchup.is_none());
        let caught_up: Vec<&Event> = match (&catchup, member.resuming) {
            (Some(c), true) => {
                cursor = cursor.max(c.position);
                c.events.iter().filter(|e| e.xid >= member.cursor).collect()
            }
            _ => Vec::new(),
        };
        let mut wanted = Vec::new();
        for (r, region) in member.regions.iter().enumerate() {
            let audience = &member.audience;
            let decide = || {
                let affected = full
                    || events
                        .iter()
                        .map(|e| &**e)
                        .chain(caught_up.iter().copied())
                        .any(|e| renderer.affects(audience, region, e));
                affected.then(|| renderer.share_key(audience, region))
            };
            // Only the steady state is the same for every socket of a user: a full
            // render or a catch-up depends on the socket's own position.
            let share = if full || !caught_up.is_empty() {
                decide()
            } else {
                decided
                    .entry((audience.user_id, audience.role.as_str(), region.as_str()))
                    .or_insert_with(decide)
                    .clone()
            };
            if let Some(key) = share {
                units
                    .entry(key.clone())
                    .or_insert_with(|| (member.audience.clone(), BTreeSet::new()))
                    .1
                    .insert(region.clone());
                wanted.push((key, r));
            }
        }
        if wanted.is_empty() && !member.resuming {
            outcomes.push(Outcome { id: member.id, result: Deliver::Position(cursor) });
        } else {
            needs.push((index, wanted, cursor));
        }
    }
    if needs.is_empty() {
        return outcomes;
    }

    // Render every unit and re-check the sessions about to receive something, concurrently.
    let keys: Vec<String> = units.keys().cloned().collect();
    let renders = join_all(keys.iter().map(|key| {
        let (audience, regions) = &units[key];
        renderer.render((**audience).clone(), regions.iter().cloned().collect())
    }));
    let sessions: Vec<Uuid> =
        needs.iter().map(|(i, _, _)| members[*i].audience.session_id).collect::<HashSet<_>>().into_iter().collect();
    let (rendered, alive) = futures_util::future::join(renders, renderer.alive(sessions)).await;
    Metrics::add(&metrics.renders, keys.len() as u64);
    let mut markup: HashMap<&str, HashMap<String, String>> = HashMap::new();
    for (key, result) in keys.iter().zip(rendered) {
        match result {
            Ok(ops) => {
                let fragments = ops
                    .into_iter()
                    .map(|(region, ops)| {
                        (
                            region,
                            ops.iter().filter_map(|op| serde_json::to_string(op).ok()).collect::<Vec<_>>().join(","),
                        )
                    })
                    .collect();
                markup.insert(key.as_str(), fragments);
            }
            Err(e) => {
                Metrics::add(&metrics.render_errors, 1);
                tracing::warn!(error = %e, "rendering a live region failed");
            }
        }
    }
    let alive = match alive {
        Ok(alive) => Some(alive),
        Err(e) => {
            tracing::warn!(error = %e, "re-checking live sessions failed");
            None
        }
    };

    // Members with the same position and regions get the very same message. The
    // fragments are told apart by address (each rendering is one allocation),
    // not by hashing kilobytes of markup per socket.
    let mut messages: HashMap<(i64, Vec<usize>), Arc<str>> = HashMap::new();
    for (index, wanted, cursor) in needs {
        let member = &members[index];
        let result = match alive.as_ref().map(|a| a.get(&member.audience.session_id)) {
            None => Deliver::Close(close::RESUME),
            Some(None) => Deliver::Close(close::REVOKED),
            Some(Some(role)) if *role != member.audience.role => Deliver::Close(close::RESUME),
            Some(Some(_)) => {
                let mut parts: Vec<&str> = Vec::with_capacity(wanted.len());
                let mut failed = false;
                for (key, r) in &wanted {
                    match markup.get(key.as_str()).map(|m| m.get(&member.regions[*r])) {
                        Some(Some(fragment)) if !fragment.is_empty() => parts.push(fragment.as_str()),
                        Some(_) => {}
                        None => failed = true,
                    }
                }
                if failed {
                    // Its page would be left stale: let it reconnect and resume.
                    Deliver::Close(close::RESUME)
                } else {
                    let message = messages
                        .entry((cursor, parts.iter().map(|p| p.as_ptr() as usize).collect()))
                        .or_insert_with(|| format!(r#"{{"id":{cursor},"ops":[{}]}}"#, parts.join(",")).into())
                        .clone();
                    Deliver::Push(message, cursor)
                }
            }
        };
        outcomes.push(Outcome { id: member.id, result });
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_has_work_for_events_joins_and_resyncs() {
        let mut room = Room::default();
        assert!(!room.has_work());
        room.resync = true;
        assert!(room.has_work());
        room.resync = false;
        let (tx, _rx) = mpsc::channel(1);
        let audience = Arc::new(Audience {
            session_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            customer_id: None,
            role: "staff".into(),
        });
        room.members.insert(
            1,
            Member { audience, regions: Arc::from(vec![]), tx, cursor: 0, stage: Stage::Ready, full: false },
        );
        assert!(!room.has_work());
        if let Some(m) = room.members.get_mut(&1) {
            m.stage = Stage::Joining;
        }
        assert!(room.has_work());
    }
}
