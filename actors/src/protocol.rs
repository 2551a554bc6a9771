//! The JSON a live page receives: `{"id": <stream position>, "ops": [...]}`,
//! and what it sends back.
//!
//! Every op replaces a region with its current rendering (or adds a feed
//! entry), so applying a message twice, or out of order, is harmless.
//!
//! `id` is the page's position in the event stream: every change committed by
//! a transaction older than it is reflected on the page. It is a transaction
//! watermark rather than the last event id, because ids are taken when a row is
//! written and transactions commit in another order; resuming from "the last
//! id applied" could skip an event that committed late.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Replace the element `target` with `html`.
    Replace,
    /// Insert `html` as the first child of `target` (feeds, newest first).
    Prepend,
    /// Insert `html` as the last child of `target`.
    Append,
    /// Remove the element `target`.
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub op: OpKind,
    /// An element id on the page.
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub html: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The stream position the page reaches once it applies these ops.
    pub id: i64,
    pub ops: Vec<Op>,
}

/// What a page sends: first a `hello` naming its live regions and the position
/// it was rendered at, then an `ack` for every push it applied.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    Hello { cursor: i64, regions: Vec<String> },
    Ack { id: i64 },
}

/// Regions a page may hold, and how long a region id may be.
pub const MAX_REGIONS: usize = 200;
pub const MAX_REGION_LEN: usize = 120;

/// A region id as pages use them: element ids made of ASCII letters, digits, `-` and `_`.
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= MAX_REGION_LEN
        && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Close codes a page acts on (4000-4999 are the application's own).
pub mod close {
    /// The session ended or lost access: do not reconnect, sign in again.
    pub const REVOKED: u16 = 4001;
    /// Reconnect and resume (the page fell behind, or the server asks it to).
    pub const RESUME: u16 = 4008;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn op(op: OpKind, target: &str, html: &str) -> Op {
        Op { op, target: target.into(), html: html.into() }
    }

    #[test]
    fn serialises_as_designed() {
        let push = Push { id: 42, ops: vec![op(OpKind::Replace, "order-1", "<tr></tr>"), op(OpKind::Remove, "x", "")] };
        assert_eq!(
            serde_json::to_string(&push).unwrap(),
            r#"{"id":42,"ops":[{"op":"replace","target":"order-1","html":"<tr></tr>"},{"op":"remove","target":"x"}]}"#
        );
        assert_eq!(serde_json::from_str::<Push>(&serde_json::to_string(&push).unwrap()).unwrap(), push);
    }

    #[test]
    fn reads_what_pages_send() {
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"hello","cursor":12,"regions":["order-1","feed"]}"#)
                .unwrap(),
            ClientMessage::Hello { cursor: 12, regions: vec!["order-1".into(), "feed".into()] }
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"ack","id":3}"#).unwrap(),
            ClientMessage::Ack { id: 3 }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"other"}"#).is_err());
        assert!(valid_region("order-6f1c_x"));
        assert!(!valid_region("a b") && !valid_region("") && !valid_region("<x>") && !valid_region(&"a".repeat(121)));
    }
}
