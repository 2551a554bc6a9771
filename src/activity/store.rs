//! The activity log's reads: a customer's log, page by page, and the back
//! office's feed of what clients do across customers. Entries are written by
//! the changes they record, in the same transaction (mostly by the database
//! functions that make those changes).

use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};

/// An entry of a customer's own log.
pub struct Entry {
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub ip: Option<String>,
}

/// How many entries the customer's log has.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn count(scope: &Scope, customer: Uuid) -> Result<i64, DbError> {
    Ok(scope.query_one("SELECT count(*) FROM activity_log WHERE customer_id = $1", &[&customer]).await?.try_get(0)?)
}

/// `limit` entries of the customer's log from `offset`, newest first. Entries can be
/// recorded after the fact (imports, other systems), so the order is by when it
/// happened, not by when it was written.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn entries(scope: &Scope, customer: Uuid, limit: i64, offset: i64) -> Result<Vec<Entry>, DbError> {
    scope
        .query(
            "SELECT created_at, actor_label, action, host(ip) AS ip FROM activity_log \
             WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            &[&customer, &limit, &offset],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Entry {
                at: r.try_get("created_at")?,
                actor: r.try_get("actor_label")?,
                action: r.try_get("action")?,
                ip: r.try_get("ip")?,
            })
        })
        .collect()
}

/// An entry of the back office's feed.
pub struct ActivityItem {
    pub at: OffsetDateTime,
    pub customer: Option<String>,
    pub actor: String,
    pub action: String,
    /// The order it concerns, as (id, number), when it concerns one.
    pub order: Option<(Uuid, String)>,
    /// The customer's own words (a change request), when there are any.
    pub note: Option<String>,
    /// The document it concerns, as (id, title), when it concerns one.
    pub document: Option<(Uuid, String)>,
}

impl ActivityItem {
    pub fn describe(&self) -> &str {
        super::describe(&self.action)
    }

    /// Answers from customers are what staff act on next: they stand out.
    pub fn needs_attention(&self) -> bool {
        self.action == "order.changes_requested"
    }
}

fn item(r: &Row) -> Result<ActivityItem, DbError> {
    let order_id: Option<Uuid> = r.try_get("order_id")?;
    let number: Option<String> = r.try_get("number")?;
    let document_id: Option<Uuid> = r.try_get("document_id")?;
    let document_title: Option<String> = r.try_get("document_title")?;
    Ok(ActivityItem {
        at: r.try_get("created_at")?,
        customer: r.try_get("customer")?,
        actor: r.try_get("actor_label")?,
        action: r.try_get("action")?,
        order: order_id.zip(number),
        note: r.try_get("note")?,
        document: document_id.zip(document_title),
    })
}

/// The latest things clients did across customers (staff's own changes are on
/// the pages they made them on): approvals, change requests, uploads, tickets, sign-ins.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn staff_feed(scope: &Scope) -> Result<Vec<ActivityItem>, DbError> {
    scope
        .query(
            "SELECT a.created_at, c.name AS customer, a.actor_label, a.action, a.details->>'note' AS note, \
                    CASE WHEN a.subject_type = 'order' THEN a.subject_id END AS order_id, \
                    a.details->>'number' AS number, \
                    CASE WHEN a.subject_type = 'document' THEN a.subject_id END AS document_id, \
                    a.details->>'title' AS document_title \
             FROM activity_log a LEFT JOIN customers c ON c.id = a.customer_id \
             WHERE a.customer_id IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.actor_user_id AND u.customer_id IS NULL) \
             ORDER BY a.id DESC LIMIT 25",
            &[],
        )
        .await?
        .iter()
        .map(item)
        .collect()
}
