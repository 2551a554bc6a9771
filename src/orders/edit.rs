//! Staff writes to an order's own record: creating it for a customer, editing its
//! details and shipment, cancelling and reopening it. Each write and its activity
//! entry go into the caller's transaction; the caller commits.

use time::Date;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::orders::moves::Actor;

/// The longest order number.
pub const NUMBER_MAX: usize = 40;

/// A workflow a new order may start in, with the stage it starts at.
pub struct WorkflowChoice {
    pub id: Uuid,
    pub name: String,
    pub first_stage: String,
}

/// The order being edited, as it is now.
pub struct EditedOrder {
    pub id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub title: String,
    pub reference: Option<String>,
    pub expected_on: Option<Date>,
    pub tracking_carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub status: String,
    pub stage: String,
    pub terminal: bool,
}

/// The details every order has, checked.
pub struct Details {
    pub title: String,
    pub reference: Option<String>,
    pub expected_on: Option<Date>,
}

/// A shipment as staff enter it, checked.
pub struct Tracking {
    pub carrier: Option<String>,
    pub number: Option<String>,
    pub url: Option<String>,
}

/// A new order, checked.
pub struct NewOrder<'a> {
    pub customer: Uuid,
    pub number: &'a str,
    pub details: &'a Details,
    pub external_ref: Option<&'a str>,
    pub workflow: Uuid,
}

/// The order created, and the stage it starts at.
pub struct Created {
    pub id: Uuid,
    pub stage_id: Uuid,
    pub stage_name: String,
}

/// The customer's name; `None` if there is no such customer.
#[tracing::instrument(level = "debug", skip_all, fields(customer = %customer))]
pub async fn customer_name(db: &Scope, customer: Uuid) -> Result<Option<String>, DbError> {
    let row = db.query_opt("SELECT name FROM customers WHERE id = $1", &[&customer]).await?;
    Ok(row.map(|r| r.try_get("name")).transpose()?)
}

/// Every workflow with a stage, with the stage it starts at.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn workflow_choices(db: &Scope) -> Result<Vec<WorkflowChoice>, DbError> {
    db.query(
        "SELECT DISTINCT ON (lower(w.name), w.id) w.id, w.name, s.name AS first_stage \
         FROM workflows w JOIN workflow_stages s ON s.workflow_id = w.id \
         ORDER BY lower(w.name), w.id, s.position",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(WorkflowChoice { id: r.try_get("id")?, name: r.try_get("name")?, first_stage: r.try_get("first_stage")? })
    })
    .collect()
}

/// The workflow of the customer's latest order (the likeliest for the next one).
#[tracing::instrument(level = "debug", skip_all, fields(customer = %customer))]
pub async fn latest_workflow(db: &Scope, customer: Uuid) -> Result<Option<Uuid>, DbError> {
    let row = db
        .query_opt(
            "SELECT workflow_id FROM orders WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&customer],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// `ORD-1044` → (`ORD-`, `1044`); `None` when the number does not end in digits.
pub fn split_number(number: &str) -> Option<(&str, &str)> {
    let digits = number.len() - number.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    (digits > 0 && digits <= 30).then(|| number.split_at(number.len() - digits))
}

/// The next free number in the style of the customer's latest order (`ORD-1044` → `ORD-1045`,
/// `SHP-0099` → `SHP-0100`), or `ORD-1001` for a customer without numbered orders.
#[tracing::instrument(level = "debug", skip_all, fields(customer = %customer))]
pub async fn suggest_number(db: &Scope, customer: Uuid) -> Result<String, DbError> {
    let latest: Option<String> = db
        .query_opt(
            "SELECT number FROM orders WHERE customer_id = $1 AND number ~ '[0-9]$' \
             ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&customer],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let Some((prefix, digits)) = latest.as_deref().and_then(split_number) else {
        return Ok("ORD-1001".to_owned());
    };
    let prefix_len = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    // The highest number with this prefix, so the suggestion is free whatever the order of creation.
    let highest: Option<String> = db
        .query_one(
            "SELECT max(substr(number, $2 + 1)::numeric)::text FROM orders \
             WHERE customer_id = $1 AND left(number, $2) = $3 AND substr(number, $2 + 1) ~ '^[0-9]{1,30}$'",
            &[&customer, &prefix_len, &prefix],
        )
        .await?
        .try_get(0)?;
    let next = highest.and_then(|h| h.parse::<u128>().ok()).unwrap_or(0).saturating_add(1);
    let suggestion = format!("{prefix}{next:0width$}", width = digits.len());
    Ok(if suggestion.chars().count() <= NUMBER_MAX { suggestion } else { String::new() })
}

/// Whether the customer has an order with this number.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn number_taken(db: &Scope, customer: Uuid, number: &str) -> Result<bool, DbError> {
    Ok(db
        .query_opt("SELECT 1 FROM orders WHERE customer_id = $1 AND number = $2", &[&customer, &number])
        .await?
        .is_some())
}

/// Whether an order has this external reference.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn external_ref_taken(db: &Scope, external_ref: &str) -> Result<bool, DbError> {
    Ok(db.query_opt("SELECT 1 FROM orders WHERE external_ref = $1", &[&external_ref]).await?.is_some())
}

/// Creates the order at the first stage of its workflow, with its first timeline entry and its
/// activity entry. `None`, with nothing written, when its number or external reference is taken.
#[tracing::instrument(level = "debug", skip_all, fields(customer = %order.customer))]
pub async fn create(db: &Scope, actor: &Actor<'_>, order: &NewOrder<'_>) -> Result<Option<Created>, DbError> {
    let first = db
        .query_one(
            "SELECT id, name FROM workflow_stages WHERE workflow_id = $1 ORDER BY position LIMIT 1",
            &[&order.workflow],
        )
        .await?;
    let (stage_id, stage_name): (Uuid, String) = (first.try_get("id")?, first.try_get("name")?);
    // A number or external reference taken since the caller's check is refused like one taken before it.
    let row = db
        .query_opt(
            "INSERT INTO orders (customer_id, number, title, reference, external_ref, workflow_id, stage_id, \
             expected_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
            &[
                &order.customer,
                &order.number,
                &order.details.title,
                &order.details.reference,
                &order.external_ref,
                &order.workflow,
                &stage_id,
                &order.details.expected_on,
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.try_get("id")?;
    db.execute(
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, actor_user_id, reached_at) \
         VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
        &[&id, &order.customer, &stage_id, &stage_name, &actor.user_id],
    )
    .await?;
    log(db, actor, order.customer, id, "order.created", serde_json::json!({ "number": order.number })).await?;
    Ok(Some(Created { id, stage_id, stage_name }))
}

/// An activity entry about an order, which the order's customer may read: never a value staff keep to themselves.
async fn log(
    db: &Scope,
    actor: &Actor<'_>,
    customer: Uuid,
    order: Uuid,
    action: &str,
    details: serde_json::Value,
) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES ($1, $2, $3, $4, 'order', $5, $6)",
        &[&customer, &actor.user_id, &actor.label, &action, &order, &details],
    )
    .await?;
    Ok(())
}

const EDITED: &str = "SELECT o.id, o.number, o.customer_id, c.name AS customer_name, o.title, o.reference, \
     o.expected_on, o.tracking_carrier, o.tracking_number, o.tracking_url, o.status, s.name AS stage, s.terminal \
     FROM orders o JOIN customers c ON c.id = o.customer_id JOIN workflow_stages s ON s.id = o.stage_id \
     WHERE o.id = $1";

const EDITED_LOCKED: &str = "SELECT o.id, o.number, o.customer_id, c.name AS customer_name, o.title, o.reference, \
     o.expected_on, o.tracking_carrier, o.tracking_number, o.tracking_url, o.status, s.name AS stage, s.terminal \
     FROM orders o JOIN customers c ON c.id = o.customer_id JOIN workflow_stages s ON s.id = o.stage_id \
     WHERE o.id = $1 FOR UPDATE OF o";

/// The order as the edit form needs it; `lock` holds it until the transaction ends.
#[tracing::instrument(level = "debug", skip_all, fields(order = %id))]
pub async fn edited(db: &Scope, id: Uuid, lock: bool) -> Result<Option<EditedOrder>, DbError> {
    let Some(r) = db.query_opt(if lock { EDITED_LOCKED } else { EDITED }, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(EditedOrder {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        customer_id: r.try_get("customer_id")?,
        customer_name: r.try_get("customer_name")?,
        title: r.try_get("title")?,
        reference: r.try_get("reference")?,
        expected_on: r.try_get("expected_on")?,
        tracking_carrier: r.try_get("tracking_carrier")?,
        tracking_number: r.try_get("tracking_number")?,
        tracking_url: r.try_get("tracking_url")?,
        status: r.try_get("status")?,
        stage: r.try_get("stage")?,
        terminal: r.try_get("terminal")?,
    }))
}

/// Writes the details and shipment of a locked order and logs which `changed`.
#[tracing::instrument(level = "debug", skip_all, fields(order = %order.id))]
pub async fn update(
    db: &Scope,
    actor: &Actor<'_>,
    order: &EditedOrder,
    details: &Details,
    tracking: &Tracking,
    changed: &[&str],
) -> Result<(), DbError> {
    db.execute(
        "UPDATE orders SET title = $2, reference = $3, expected_on = $4, tracking_carrier = $5, \
         tracking_number = $6, tracking_url = $7 WHERE id = $1",
        &[
            &order.id,
            &details.title,
            &details.reference,
            &details.expected_on,
            &tracking.carrier,
            &tracking.number,
            &tracking.url,
        ],
    )
    .await?;
    let details = serde_json::json!({ "number": order.number, "fields": changed });
    log(db, actor, order.customer_id, order.id, "order.updated", details).await
}

/// Cancels a locked open order.
#[tracing::instrument(level = "debug", skip_all, fields(order = %order.id))]
pub async fn cancel(db: &Scope, actor: &Actor<'_>, order: &EditedOrder) -> Result<(), DbError> {
    db.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", &[&order.id]).await?;
    let details = serde_json::json!({ "number": order.number });
    log(db, actor, order.customer_id, order.id, "order.cancelled", details).await
}

/// Reopens a locked cancelled order and returns its status: an order at a stage that completes it
/// is completed, not open.
#[tracing::instrument(level = "debug", skip_all, fields(order = %order.id))]
pub async fn reopen(db: &Scope, actor: &Actor<'_>, order: &EditedOrder) -> Result<&'static str, DbError> {
    let status = if order.terminal { "completed" } else { "open" };
    db.execute("UPDATE orders SET status = $2 WHERE id = $1", &[&order.id, &status]).await?;
    let details = serde_json::json!({ "number": order.number, "status": status });
    log(db, actor, order.customer_id, order.id, "order.reopened", details).await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::split_number;

    #[test]
    fn numbers_split_into_prefix_and_digits() {
        assert_eq!(split_number("ORD-1044"), Some(("ORD-", "1044")));
        assert_eq!(split_number("1044"), Some(("", "1044")));
        assert_eq!(split_number("ORD-"), None);
    }
}
