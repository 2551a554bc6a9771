//! Orders as the business's other systems (ERP, shop) read and write them through
//! `/api/v1/orders`: every customer's orders, internal notes included, as JSON
//! models; lookups by external reference; the writes of an upsert. Stage moves go
//! through [`crate::orders::moves`] like the staff pages' do.

use serde::Serialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::orders::moves::{Actor, Target};

#[derive(Serialize)]
pub struct TrackingJson {
    pub carrier: Option<String>,
    pub number: Option<String>,
    pub url: Option<String>,
}

#[derive(Serialize)]
pub struct StageJson {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub awaits_customer: bool,
    pub terminal: bool,
    /// `done`, `current` or `upcoming`, as the order pages' steppers show it.
    pub state: &'static str,
}

#[derive(Serialize)]
pub struct TimelineJson {
    pub id: Uuid,
    pub stage_id: Option<Uuid>,
    pub stage: String,
    /// What the customer reads on the timeline.
    pub customer_note: Option<String>,
    /// Staff only: customers never see it.
    pub internal_note: Option<String>,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub reached_at: String,
}

#[derive(Serialize)]
pub struct OrderJson {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub number: String,
    pub title: String,
    pub reference: Option<String>,
    pub external_ref: Option<String>,
    pub workflow: String,
    pub workflow_id: Uuid,
    /// The current stage.
    pub stage: String,
    pub stage_id: Uuid,
    pub awaits_customer: bool,
    pub status: String,
    pub expected_on: Option<String>,
    pub tracking: Option<TrackingJson>,
    pub created_at: String,
    pub updated_at: String,
    /// The workflow's stages (single orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageJson>>,
    /// The stage history, oldest first (single orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineJson>>,
}

const SELECT: &str = "SELECT o.id, o.customer_id, c.name AS customer_name, o.number, o.title, o.reference, \
    o.external_ref, o.workflow_id, w.name AS workflow, o.stage_id, s.name AS stage, s.position AS stage_position, \
    s.awaits_customer, o.status, o.expected_on, o.tracking_carrier, o.tracking_number, o.tracking_url, \
    o.created_at, o.updated_at \
    FROM orders o JOIN customers c ON c.id = o.customer_id JOIN workflows w ON w.id = o.workflow_id \
    JOIN workflow_stages s ON s.id = o.stage_id";

fn order_json(row: &Row) -> Result<OrderJson, DbError> {
    let carrier: Option<String> = row.try_get("tracking_carrier")?;
    let number: Option<String> = row.try_get("tracking_number")?;
    let url: Option<String> = row.try_get("tracking_url")?;
    let tracking =
        (carrier.is_some() || number.is_some() || url.is_some()).then_some(TrackingJson { carrier, number, url });
    Ok(OrderJson {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        customer_name: row.try_get("customer_name")?,
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        reference: row.try_get("reference")?,
        external_ref: row.try_get("external_ref")?,
        workflow: row.try_get("workflow")?,
        workflow_id: row.try_get("workflow_id")?,
        stage: row.try_get("stage")?,
        stage_id: row.try_get("stage_id")?,
        awaits_customer: row.try_get("awaits_customer")?,
        status: row.try_get("status")?,
        expected_on: row.try_get::<_, Option<Date>>("expected_on")?.map(|d| d.to_string()),
        tracking,
        created_at: crate::format::iso(row.try_get("created_at")?),
        updated_at: crate::format::iso(row.try_get("updated_at")?),
        stages: None,
        timeline: None,
    })
}

pub fn step_state(position: i32, current: i32, status: &str) -> &'static str {
    match position.cmp(&current) {
        std::cmp::Ordering::Less => "done",
        std::cmp::Ordering::Equal if status == "completed" => "done",
        std::cmp::Ordering::Equal => "current",
        std::cmp::Ordering::Greater => "upcoming",
    }
}

/// One order with its stages and its whole timeline, internal notes included.
#[tracing::instrument(level = "debug", skip_all, fields(order = %id))]
pub async fn get(db: &Scope, id: Uuid) -> Result<Option<OrderJson>, DbError> {
    let Some(row) = db.query_opt(&format!("{SELECT} WHERE o.id = $1"), &[&id]).await? else {
        return Ok(None);
    };
    let mut order = order_json(&row)?;
    let current: i32 = row.try_get("stage_position")?;
    let stages = db
        .query(
            "SELECT id, name, position, awaits_customer, terminal FROM workflow_stages WHERE workflow_id = $1 \
             ORDER BY position",
            &[&order.workflow_id],
        )
        .await?
        .iter()
        .map(|s| {
            let position: i32 = s.try_get("position")?;
            Ok(StageJson {
                id: s.try_get("id")?,
                name: s.try_get("name")?,
                position,
                awaits_customer: s.try_get("awaits_customer")?,
                terminal: s.try_get("terminal")?,
                state: step_state(position, current, &order.status),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let timeline = db
        .query(
            "SELECT h.id, h.stage_id, h.stage_name, h.customer_note, n.note AS internal_note, h.actor_user_id, \
             u.name AS actor, h.reached_at FROM order_stage_history h \
             LEFT JOIN order_internal_notes n ON n.history_id = h.id \
             LEFT JOIN users u ON u.id = h.actor_user_id \
             WHERE h.order_id = $1 ORDER BY h.reached_at, h.id",
            &[&id],
        )
        .await?
        .iter()
        .map(|h| {
            Ok(TimelineJson {
                id: h.try_get("id")?,
                stage_id: h.try_get("stage_id")?,
                stage: h.try_get("stage_name")?,
                customer_note: h.try_get("customer_note")?,
                internal_note: h.try_get("internal_note")?,
                actor_id: h.try_get("actor_user_id")?,
                actor: h.try_get("actor")?,
                reached_at: crate::format::iso(h.try_get("reached_at")?),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    order.stages = Some(stages);
    order.timeline = Some(timeline);
    Ok(Some(order))
}

/// What a list request asks for; every part optional but the limit.
pub struct ListFilter<'a> {
    pub customer: Option<Uuid>,
    pub status: Option<&'a str>,
    pub updated_since: Option<OffsetDateTime>,
    /// The `(updated_at, id)` the previous page ended at.
    pub after: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
}

/// A page of the list, ascending by `(updated_at, id)`, and where the next one starts (if any follows).
pub struct ListPage {
    pub orders: Vec<OrderJson>,
    pub next: Option<(OffsetDateTime, Uuid)>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(db: &Scope, filter: &ListFilter<'_>) -> Result<ListPage, DbError> {
    let after_at = filter.after.map(|(at, _)| at);
    let after_id = filter.after.map(|(_, id)| id);
    // One more than asked, to know whether another page follows.
    let rows = db
        .query(
            &format!(
                "{SELECT} WHERE ($1::uuid IS NULL OR o.customer_id = $1) AND ($2::text IS NULL OR o.status = $2) \
                 AND ($3::timestamptz IS NULL OR o.updated_at >= $3) \
                 AND ($4::timestamptz IS NULL OR (o.updated_at, o.id) > ($4::timestamptz, $5::uuid)) \
                 ORDER BY o.updated_at, o.id LIMIT $6"
            ),
            &[&filter.customer, &filter.status, &filter.updated_since, &after_at, &after_id, &(filter.limit + 1)],
        )
        .await?;
    let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    let page = &rows[..rows.len().min(limit)];
    let next = match page.last() {
        Some(last) if more => Some((last.try_get("updated_at")?, last.try_get("id")?)),
        _ => None,
    };
    let orders = page.iter().map(order_json).collect::<Result<Vec<_>, _>>()?;
    Ok(ListPage { orders, next })
}

/// The order with this external reference.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn by_ref(db: &Scope, external_ref: &str) -> Result<Option<Uuid>, DbError> {
    let row = db.query_opt("SELECT id FROM orders WHERE external_ref = $1", &[&external_ref]).await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

pub struct Workflow {
    pub id: Uuid,
    pub name: String,
}

/// The workflow with this name (case-insensitive; an exact match first).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn workflow_named(db: &Scope, name: &str) -> Result<Option<Workflow>, DbError> {
    let row = db
        .query_opt(
            "SELECT id, name FROM workflows WHERE lower(name) = lower($1) ORDER BY name = $1 DESC, name LIMIT 1",
            &[&name],
        )
        .await?;
    row.map(|r| Ok(Workflow { id: r.try_get("id")?, name: r.try_get("name")? })).transpose()
}

/// Every workflow's name, comma-separated, for the message naming an unknown one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn workflow_names(db: &Scope) -> Result<Option<String>, DbError> {
    Ok(db.query_one("SELECT string_agg(name, ', ' ORDER BY name) FROM workflows", &[]).await?.try_get(0)?)
}

/// The workflow with this id (the order's own).
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %id))]
pub async fn workflow(db: &Scope, id: Uuid) -> Result<Workflow, DbError> {
    let name = db.query_one("SELECT name FROM workflows WHERE id = $1", &[&id]).await?.try_get(0)?;
    Ok(Workflow { id, name })
}

/// The workflow's stage names in order, comma-separated, for the message naming an unknown stage.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %workflow))]
pub async fn stage_names(db: &Scope, workflow: Uuid) -> Result<Option<String>, DbError> {
    Ok(db
        .query_one(
            "SELECT string_agg(name, ', ' ORDER BY position) FROM workflow_stages WHERE workflow_id = $1",
            &[&workflow],
        )
        .await?
        .try_get(0)?)
}

/// The stage a new order of `workflow` starts at; `None` for a workflow without stages.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %workflow))]
pub async fn first_stage(db: &Scope, workflow: Uuid) -> Result<Option<Target>, DbError> {
    let row = db
        .query_opt(
            "SELECT id, name, terminal FROM workflow_stages WHERE workflow_id = $1 ORDER BY position LIMIT 1",
            &[&workflow],
        )
        .await?;
    row.map(|r| Ok(Target { id: r.try_get("id")?, name: r.try_get("name")?, terminal: r.try_get("terminal")? }))
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all, fields(customer = %id))]
pub async fn customer_exists(db: &Scope, id: Uuid) -> Result<bool, DbError> {
    Ok(db.query_opt("SELECT 1 FROM customers WHERE id = $1", &[&id]).await?.is_some())
}

/// A shipment as the API sets it: a carrier and a number, perhaps a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracking {
    pub carrier: String,
    pub number: String,
    pub url: Option<String>,
}

fn columns(tracking: Option<&Tracking>) -> (Option<&str>, Option<&str>, Option<&str>) {
    match tracking {
        Some(t) => (Some(t.carrier.as_str()), Some(t.number.as_str()), t.url.as_deref()),
        None => (None, None, None),
    }
}

/// An order's fields as an upsert writes them (after merging with what is stored).
pub struct Fields<'a> {
    pub number: &'a str,
    pub title: &'a str,
    pub reference: Option<&'a str>,
    pub expected_on: Option<Date>,
    pub tracking: Option<&'a Tracking>,
}

/// Creates the order at `stage` with its first timeline entry and activity entry; returns its id.
/// A duplicate number for the customer is the database's unique violation.
#[tracing::instrument(level = "debug", skip_all, fields(customer = %customer))]
pub async fn create(
    db: &Scope,
    actor: &Actor<'_>,
    customer: Uuid,
    external_ref: &str,
    workflow: Uuid,
    stage: &Target,
    fields: &Fields<'_>,
) -> Result<Uuid, DbError> {
    let status = crate::orders::moves::status_after(stage.terminal, "open");
    let (carrier, tracking_number, url) = columns(fields.tracking);
    let id: Uuid = db
        .query_one(
            "INSERT INTO orders (customer_id, number, title, reference, external_ref, workflow_id, stage_id, status, \
             expected_on, tracking_carrier, tracking_number, tracking_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &[
                &customer,
                &fields.number,
                &fields.title,
                &fields.reference,
                &external_ref,
                &workflow,
                &stage.id,
                &status,
                &fields.expected_on,
                &carrier,
                &tracking_number,
                &url,
            ],
        )
        .await?
        .try_get("id")?;
    db.execute(
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, actor_user_id, reached_at) \
         VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
        &[&id, &customer, &stage.id, &stage.name, &actor.user_id],
    )
    .await?;
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, \
         details) VALUES ($1, $2, $3, 'order.created', 'order', $4, \
         jsonb_build_object('number', $5::text, 'stage', $6::text))",
        &[&customer, &actor.user_id, &actor.label, &id, &fields.number, &stage.name],
    )
    .await?;
    Ok(id)
}

/// The fields of a (locked) order an upsert compares with.
pub struct Stored {
    pub number: String,
    pub title: String,
    pub reference: Option<String>,
    pub expected_on: Option<Date>,
    /// Only a complete shipment (carrier and number) counts as one.
    pub tracking: Option<Tracking>,
}

#[tracing::instrument(level = "debug", skip_all, fields(order = %id))]
pub async fn stored(db: &Scope, id: Uuid) -> Result<Stored, DbError> {
    let row = db
        .query_one(
            "SELECT number, title, reference, expected_on, tracking_carrier, tracking_number, tracking_url \
             FROM orders WHERE id = $1",
            &[&id],
        )
        .await?;
    let carrier: Option<String> = row.try_get("tracking_carrier")?;
    let number: Option<String> = row.try_get("tracking_number")?;
    let tracking = match (carrier, number) {
        (Some(carrier), Some(number)) => Some(Tracking { carrier, number, url: row.try_get("tracking_url")? }),
        _ => None,
    };
    Ok(Stored {
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        reference: row.try_get("reference")?,
        expected_on: row.try_get("expected_on")?,
        tracking,
    })
}

/// Writes the `changed` fields of a locked order (tracking only when `changed` names it) and logs them.
#[tracing::instrument(level = "debug", skip_all, fields(order = %id))]
pub async fn update(
    db: &Scope,
    actor: &Actor<'_>,
    id: Uuid,
    customer: Uuid,
    fields: &Fields<'_>,
    changed: &[&'static str],
) -> Result<(), DbError> {
    let (carrier, tracking_number, url) = columns(fields.tracking);
    let tracking_changed = changed.contains(&"tracking");
    db.execute(
        "UPDATE orders SET number = $2, title = $3, reference = $4, expected_on = $5, \
         tracking_carrier = CASE WHEN $9 THEN $6 ELSE tracking_carrier END, \
         tracking_number = CASE WHEN $9 THEN $7 ELSE tracking_number END, \
         tracking_url = CASE WHEN $9 THEN $8 ELSE tracking_url END \
         WHERE id = $1",
        &[
            &id,
            &fields.number,
            &fields.title,
            &fields.reference,
            &fields.expected_on,
            &carrier,
            &tracking_number,
            &url,
            &tracking_changed,
        ],
    )
    .await?;
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, \
         details) VALUES ($1, $2, $3, 'order.updated', 'order', $4, \
         jsonb_build_object('number', $5::text, 'fields', $6::text[]))",
        &[&customer, &actor.user_id, &actor.label, &id, &fields.number, &changed],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::step_state;

    #[test]
    fn steps_read_like_the_pages() {
        assert_eq!(step_state(0, 1, "open"), "done");
        assert_eq!(step_state(1, 1, "open"), "current");
        assert_eq!(step_state(1, 1, "completed"), "done");
        assert_eq!(step_state(2, 1, "open"), "upcoming");
    }
}
