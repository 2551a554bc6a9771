//! How far a reader of the `events` outbox has read.
//!
//! Event ids are taken when a row is written, not when it commits, so neither
//! id order nor `xid` order is commit order: "everything after the last id"
//! would miss an event whose transaction commits late. A reader instead keeps
//! the oldest transaction that was still running when it last looked (its
//! `position`) and next reads every event from a transaction at or after it; the
//! events it has already read there (`seen`) are left out by id. Once the
//! position passes a transaction, every event of it has been read, so `seen`
//! only holds events of the few transactions around the position.
//!
//! The listener (what a process's sessions need) and the relay (which channels
//! to notify) read the outbox through this same cursor.

use std::collections::HashMap;

/// The position of a statement's snapshot: every transaction older than this
/// has ended, so its events are all visible to that statement.
pub(crate) const POSITION: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// The condition on `events` for what is not read yet, given the cursor's
/// position as `$1` and its seen ids as `$2` (see [`Cursor::position`] and [`Cursor::seen`]).
pub(crate) const UNSEEN: &str = "xid >= $1 AND NOT (id = ANY($2))";

#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Every event from a transaction older than this has been read.
    position: Option<i64>,
    /// Events read whose transaction is not older than `position`, by id: a read
    /// from the position returns them again.
    seen: HashMap<i64, i64>,
}

impl Cursor {
    /// A cursor that has read everything older than `position`.
    pub(crate) fn at(position: i64) -> Self {
        Cursor { position: Some(position), seen: HashMap::new() }
    }

    pub(crate) fn position(&self) -> Option<i64> {
        self.position
    }

    /// Starts at `now` unless it has a position already (a reader that reconnects
    /// keeps its place and catches up). Whether it had one.
    pub(crate) fn start(&mut self, now: i64) -> bool {
        let started = self.position.is_some();
        self.position = Some(self.position.unwrap_or(now));
        started
    }

    /// The ids to leave out of the next read.
    pub(crate) fn seen(&self) -> Vec<i64> {
        self.seen.keys().copied().collect()
    }

    /// Records a read made at snapshot position `now` that returned `read` (id, xid)
    /// pairs; the new position.
    pub(crate) fn advance(&mut self, now: i64, read: impl IntoIterator<Item = (i64, i64)>) -> i64 {
        let position = self.position.unwrap_or(now).max(now);
        self.position = Some(position);
        self.seen.extend(read);
        self.seen.retain(|_, xid| *xid >= position);
        position
    }

    /// Moves to `now` forgetting what was read, when what lies between is not
    /// wanted event by event (too much of it); the new position.
    pub(crate) fn skip_to(&mut self, now: i64) -> i64 {
        self.seen.clear();
        let position = self.position.unwrap_or(now).max(now);
        self.position = Some(position);
        position
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn keeps_only_what_a_read_from_its_position_returns_again() {
        let mut cursor = Cursor::default();
        assert!(!cursor.start(100));
        assert!(cursor.start(90), "a started cursor keeps its place");
        assert_eq!(cursor.position(), Some(100));
        // Transaction 105 is still running: the position stays at 100.
        assert_eq!(cursor.advance(100, [(1, 101), (2, 103)]), 100);
        let mut seen = cursor.seen();
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2]);
        // 105 ended: everything below 104 is behind the position now, and forgotten.
        assert_eq!(cursor.advance(104, [(3, 105), (4, 104)]), 104);
        let mut seen = cursor.seen();
        seen.sort_unstable();
        assert_eq!(seen, vec![3, 4]);
        // A read never moves the position back.
        assert_eq!(cursor.advance(99, []), 104);
        assert_eq!(cursor.skip_to(200), 200);
        assert!(cursor.seen().is_empty());
        assert_eq!(Cursor::at(7).position(), Some(7));
    }
}
