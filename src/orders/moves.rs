//! Moving an order to a stage of its workflow: the one place a staff move is
//! written, whether it comes from the order page, a bulk move or the JSON API.
//!
//! The caller holds a staff scope and commits; every function here only adds to
//! that transaction, so a bulk move of fifty orders is still one change.

use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::format;

/// The longest note customers see on the timeline (the column allows a little
/// more, for the "Approved by …" prefix of a customer's own answer).
pub const CUSTOMER_NOTE_MAX: usize = 2000;
/// The longest internal note (the column allows 4,000).
pub const INTERNAL_NOTE_MAX: usize = 4000;

/// Who moves the order, as the timeline and the activity log name them.
pub struct Actor<'a> {
    pub user_id: Uuid,
    pub label: &'a str,
}

/// The order as it is before the move, locked until the transaction ends.
pub struct Current {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub number: String,
    pub workflow_id: Uuid,
    pub stage_id: Uuid,
    pub stage_name: String,
    pub status: String,
}

/// A stage of the order's workflow that the order may move to.
pub struct Target {
    pub id: Uuid,
    pub name: String,
    pub terminal: bool,
}

/// What is wrong with a move, field by field; nothing was written when any is set.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct MoveErrors {
    pub stage: Option<&'static str>,
    pub customer_note: Option<String>,
    pub internal_note: Option<String>,
}

impl MoveErrors {
    pub fn any(&self) -> bool {
        self.stage.is_some() || self.customer_note.is_some() || self.internal_note.is_some()
    }
}

pub const UNKNOWN_STAGE: &str = "Choose one of the stages of this order's workflow.";
pub const ALREADY_THERE: &str =
    "The order is already at this stage. Choose another stage, or add a note to post an update.";

/// Locks the order, so the stage it is "already at" and the "from" of the log
/// are what this move replaces, even with two people moving it at once.
pub async fn lock(db: &Scope, id: Uuid) -> Result<Option<Current>, DbError> {
    let row = db
        .query_opt(
            "SELECT o.id, o.customer_id, o.number, o.workflow_id, o.stage_id, o.status, s.name AS stage_name \
             FROM orders o JOIN workflow_stages s ON s.id = o.stage_id WHERE o.id = $1 FOR UPDATE OF o",
            &[&id],
        )
        .await?;
    let current = |r: Row| {
        Ok::<_, tokio_postgres::Error>(Current {
            id: r.try_get("id")?,
            customer_id: r.try_get("customer_id")?,
            number: r.try_get("number")?,
            workflow_id: r.try_get("workflow_id")?,
            stage_id: r.try_get("stage_id")?,
            stage_name: r.try_get("stage_name")?,
            status: r.try_get("status")?,
        })
    };
    Ok(row.map(current).transpose()?)
}

fn target(row: &Row) -> Result<Target, tokio_postgres::Error> {
    Ok(Target { id: row.try_get("id")?, name: row.try_get("name")?, terminal: row.try_get("terminal")? })
}

/// The stage with this id, if it belongs to `workflow`.
pub async fn stage(db: &Scope, workflow: Uuid, stage: Uuid) -> Result<Option<Target>, DbError> {
    Ok(db
        .query_opt(
            "SELECT id, name, terminal FROM workflow_stages WHERE id = $1 AND workflow_id = $2",
            &[&stage, &workflow],
        )
        .await?
        .as_ref()
        .map(target)
        .transpose()?)
}

/// The stage of `workflow` with this name (case-insensitive), for callers that name stages.
pub async fn stage_named(db: &Scope, workflow: Uuid, name: &str) -> Result<Option<Target>, DbError> {
    Ok(db
        .query_opt(
            "SELECT id, name, terminal FROM workflow_stages WHERE workflow_id = $1 AND lower(name) = lower($2) \
             ORDER BY position LIMIT 1",
            &[&workflow, &name.trim()],
        )
        .await?
        .as_ref()
        .map(target)
        .transpose()?)
}

/// A note as stored: line breaks as browsers count them (one character each), no surrounding blanks.
pub fn clean_note(note: &str) -> String {
    note.replace("\r\n", "\n").replace('\r', "\n").trim().to_owned()
}

pub fn too_long(what: &str, note: &str, max: usize) -> Option<String> {
    let length = note.chars().count();
    (length > max).then(|| {
        format!(
            "The {what} is {} characters long; shorten it to at most {}.",
            format::group(length),
            format::group(max)
        )
    })
}

/// Whether a shipment's tracking link may be shown to customers as a link:
/// https only (the column says so too), something after the scheme, no blanks.
pub fn tracking_url_ok(url: &str) -> bool {
    url.starts_with("https://") && url.len() > "https://".len() && !url.contains(char::is_whitespace)
}

/// Checks a move of `current` to `target` with these (cleaned) notes.
pub fn check(current: &Current, target: Option<&Target>, customer_note: &str, internal_note: &str) -> MoveErrors {
    let mut errors = MoveErrors {
        stage: None,
        customer_note: too_long("note for the customer", customer_note, CUSTOMER_NOTE_MAX),
        internal_note: too_long("internal note", internal_note, INTERNAL_NOTE_MAX),
    };
    match target {
        None => errors.stage = Some(UNKNOWN_STAGE),
        Some(t) if t.id == current.stage_id && customer_note.is_empty() && internal_note.is_empty() => {
            errors.stage = Some(ALREADY_THERE);
        }
        Some(_) => {}
    }
    errors
}

/// The status an order has after reaching a stage: a final stage completes it,
/// a cancelled order stays cancelled otherwise, anything else is open.
pub fn status_after(terminal: bool, status: &str) -> &'static str {
    if terminal {
        "completed"
    } else if status == "cancelled" {
        "cancelled"
    } else {
        "open"
    }
}

/// Writes a checked move: the order's stage and status, a timeline entry with
/// the customer's note, the internal note in its staff-only table, and an
/// activity entry the customer may read (it carries no note and no staff IP).
pub async fn apply(
    db: &Scope,
    actor: &Actor<'_>,
    current: &Current,
    target: &Target,
    customer_note: &str,
    internal_note: &str,
) -> Result<(), DbError> {
    let status = status_after(target.terminal, &current.status);
    db.execute("UPDATE orders SET stage_id = $2, status = $3 WHERE id = $1", &[&current.id, &target.id, &status])
        .await?;
    // Taken now, after the lock: moves that waited for each other keep their order on the timeline.
    let history: Uuid = db
        .query_one(
            "INSERT INTO order_stage_history \
             (order_id, customer_id, stage_id, stage_name, customer_note, actor_user_id, reached_at) \
             VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp()) RETURNING id",
            &[
                &current.id,
                &current.customer_id,
                &target.id,
                &target.name,
                &Some(customer_note).filter(|n| !n.is_empty()),
                &actor.user_id,
            ],
        )
        .await?
        .try_get("id")?;
    if !internal_note.is_empty() {
        db.execute("INSERT INTO order_internal_notes (history_id, note) VALUES ($1, $2)", &[&history, &internal_note])
            .await?;
    }
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES ($1, $2, $3, 'order.stage_changed', 'order', $4, \
                 jsonb_build_object('from', $5::text, 'to', $6::text, 'number', $7::text))",
        &[
            &current.customer_id,
            &actor.user_id,
            &actor.label,
            &current.id,
            &current.stage_name,
            &target.name,
            &current.number,
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_trimmed_and_count_line_breaks_once() {
        assert_eq!(clean_note("  hello\r\nworld \r\n"), "hello\nworld");
        assert_eq!(clean_note(" \t\r\n "), "");
        assert!(too_long("note", &"é".repeat(2000), 2000).is_none());
        assert_eq!(
            too_long("note", &"a".repeat(2001), 2000).as_deref(),
            Some("The note is 2,001 characters long; shorten it to at most 2,000.")
        );
    }

    #[test]
    fn tracking_links_are_https_with_an_address() {
        assert!(tracking_url_ok("https://track.example/1"));
        for bad in ["http://track.example/1", "https://", "https://a b", "javascript:alert(1)"] {
            assert!(!tracking_url_ok(bad), "{bad}");
        }
    }

    #[test]
    fn status_follows_the_stage_and_keeps_cancellations() {
        assert_eq!(status_after(true, "open"), "completed");
        assert_eq!(status_after(true, "cancelled"), "completed");
        assert_eq!(status_after(false, "completed"), "open");
        assert_eq!(status_after(false, "open"), "open");
        assert_eq!(status_after(false, "cancelled"), "cancelled");
    }

    fn current() -> Current {
        Current {
            id: Uuid::from_u128(1),
            customer_id: Uuid::from_u128(2),
            number: "ORD-1".into(),
            workflow_id: Uuid::from_u128(3),
            stage_id: Uuid::from_u128(4),
            stage_name: "Printing".into(),
            status: "open".into(),
        }
    }

    #[test]
    fn staying_put_needs_a_note() {
        let here = Target { id: Uuid::from_u128(4), name: "Printing".into(), terminal: false };
        let there = Target { id: Uuid::from_u128(5), name: "Dispatched".into(), terminal: true };
        assert_eq!(check(&current(), Some(&here), "", "").stage, Some(ALREADY_THERE));
        assert!(!check(&current(), Some(&here), "Half done", "").any());
        assert!(!check(&current(), Some(&there), "", "").any());
        assert_eq!(check(&current(), None, "", "").stage, Some(UNKNOWN_STAGE));
        assert!(check(&current(), Some(&there), "", &"x".repeat(4001)).internal_note.is_some());
    }
}
