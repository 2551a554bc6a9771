//! `/api/v1/orders`: what the business's other systems (ERP, shop) use to keep
//! orders in sync. Staff-side: every customer's orders, internal notes included.
//!
//! Every request is one transaction in the integration user's staff scope;
//! stage moves go through [`crate::orders::moves`] like the staff pages' do, and
//! the tables' triggers turn every write into live updates.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use super::auth::ApiScope;
use super::body::{Body, Given};
use super::error::{ApiError, from_query_payload};
use crate::db::Scope;
use crate::orders::moves::{self, MoveErrors};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// A body as the scope's `JsonConfig` read it; its refusal is answered only after authentication.
pub type JsonBody = Result<web::Json<Value>, actix_web::Error>;

fn body(body: JsonBody) -> Result<Value, ApiError> {
    body.map(web::Json::into_inner).map_err(ApiError::Rejected)
}

// What the API answers ------------------------------------------------------------------------

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

fn order_json(row: &Row) -> OrderJson {
    let carrier: Option<String> = row.get("tracking_carrier");
    let number: Option<String> = row.get("tracking_number");
    let url: Option<String> = row.get("tracking_url");
    let tracking =
        (carrier.is_some() || number.is_some() || url.is_some()).then_some(TrackingJson { carrier, number, url });
    OrderJson {
        id: row.get("id"),
        customer_id: row.get("customer_id"),
        customer_name: row.get("customer_name"),
        number: row.get("number"),
        title: row.get("title"),
        reference: row.get("reference"),
        external_ref: row.get("external_ref"),
        workflow: row.get("workflow"),
        workflow_id: row.get("workflow_id"),
        stage: row.get("stage"),
        stage_id: row.get("stage_id"),
        awaits_customer: row.get("awaits_customer"),
        status: row.get("status"),
        expected_on: row.get::<_, Option<Date>>("expected_on").map(|d| d.to_string()),
        tracking,
        created_at: crate::format::iso(row.get("created_at")),
        updated_at: crate::format::iso(row.get("updated_at")),
        stages: None,
        timeline: None,
    }
}

fn step_state(position: i32, current: i32, status: &str) -> &'static str {
    match position.cmp(&current) {
        std::cmp::Ordering::Less => "done",
        std::cmp::Ordering::Equal if status == "completed" => "done",
        std::cmp::Ordering::Equal => "current",
        std::cmp::Ordering::Greater => "upcoming",
    }
}

/// One order with its stages and its whole timeline, internal notes included.
async fn load(db: &Scope, id: Uuid) -> Result<Option<OrderJson>, ApiError> {
    let Some(row) = db.query_opt(&format!("{SELECT} WHERE o.id = $1"), &[&id]).await? else {
        return Ok(None);
    };
    let mut order = order_json(&row);
    let current: i32 = row.get("stage_position");
    let stages = db
        .query(
            "SELECT id, name, position, awaits_customer, terminal FROM workflow_stages WHERE workflow_id = $1 \
             ORDER BY position",
            &[&order.workflow_id],
        )
        .await?
        .iter()
        .map(|s| StageJson {
            id: s.get("id"),
            name: s.get("name"),
            position: s.get("position"),
            awaits_customer: s.get("awaits_customer"),
            terminal: s.get("terminal"),
            state: step_state(s.get("position"), current, &order.status),
        })
        .collect();
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
        .map(|h| TimelineJson {
            id: h.get("id"),
            stage_id: h.get("stage_id"),
            stage: h.get("stage_name"),
            customer_note: h.get("customer_note"),
            internal_note: h.get("internal_note"),
            actor_id: h.get("actor_user_id"),
            actor: h.get("actor"),
            reached_at: crate::format::iso(h.get("reached_at")),
        })
        .collect();
    order.stages = Some(stages);
    order.timeline = Some(timeline);
    Ok(Some(order))
}

/// Answers with the order as it now is, then commits.
async fn respond(cx: ApiScope, id: Uuid, created: bool) -> Result<HttpResponse, ApiError> {
    let order = load(&cx.db, id).await?.ok_or(ApiError::NotFound)?;
    cx.db.commit().await?;
    Ok(if created {
        HttpResponse::Created().insert_header((header::LOCATION, format!("/api/v1/orders/{id}"))).json(order)
    } else {
        HttpResponse::Ok().json(order)
    })
}

// Reading -----------------------------------------------------------------------------------

/// Where a page ended: the `(updated_at, id)` of its last order, opaque to clients.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    at: OffsetDateTime,
    id: Uuid,
}

impl Cursor {
    fn encode(&self) -> String {
        // PostgreSQL keeps microseconds, so the round trip is exact.
        let micros = self.at.unix_timestamp_nanos() / 1000;
        URL_SAFE_NO_PAD.encode(format!("{micros}.{}", self.id))
    }

    fn decode(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('.')?;
        let micros: i128 = micros.parse().ok()?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?;
        Some(Cursor { at, id: Uuid::parse_str(id).ok()? })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    customer: Option<String>,
    status: Option<String>,
    updated_since: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

fn timestamp(field: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    let value = value.trim();
    OffsetDateTime::parse(value, &Rfc3339)
        // An unencoded `+` of an offset arrives as a space.
        .or_else(|_| OffsetDateTime::parse(&value.replace(' ', "+"), &Rfc3339))
        .map_err(|_| {
            ApiError::invalid(field, format!("`{field}` must be an RFC 3339 time, e.g. 2026-05-31T08:00:00Z."))
        })
}

/// `GET /api/v1/orders`: every customer's orders (or one customer's), oldest change first.
pub async fn list(cx: ApiScope, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<ListQuery>::from_query(req.query_string()).map_err(from_query_payload)?.into_inner();
    let customer = match query.customer.as_deref() {
        None => None,
        Some(c) => Some(
            Uuid::parse_str(c.trim())
                .map_err(|_| ApiError::invalid("customer", "`customer` must be a customer's id (a UUID)."))?,
        ),
    };
    let status = match query.status.as_deref().map(str::trim) {
        None => None,
        Some(s @ ("open" | "completed" | "cancelled")) => Some(s),
        Some(_) => return Err(ApiError::invalid("status", "`status` must be open, completed or cancelled.")),
    };
    let since = query.updated_since.as_deref().map(|s| timestamp("updated_since", s)).transpose()?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l.trim().parse::<i64>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
            ApiError::invalid("limit", format!("`limit` must be a whole number from 1 to {MAX_LIMIT}."))
        })?,
    };
    let after = match query.after.as_deref() {
        None => None,
        Some(a) => Some(Cursor::decode(a).ok_or_else(|| {
            ApiError::invalid("after", "`after` must be the `next` value of an earlier page, unchanged.")
        })?),
    };
    let after_at = after.as_ref().map(|c| c.at);
    let after_id = after.as_ref().map(|c| c.id);
    // One more than asked, to know whether another page follows.
    let rows = cx
        .db
        .query(
            &format!(
                "{SELECT} WHERE ($1::uuid IS NULL OR o.customer_id = $1) AND ($2::text IS NULL OR o.status = $2) \
                 AND ($3::timestamptz IS NULL OR o.updated_at >= $3) \
                 AND ($4::timestamptz IS NULL OR (o.updated_at, o.id) > ($4::timestamptz, $5::uuid)) \
                 ORDER BY o.updated_at, o.id LIMIT $6"
            ),
            &[&customer, &status, &since, &after_at, &after_id, &(limit + 1)],
        )
        .await?;
    cx.db.commit().await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let page = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let next = match page.last() {
        Some(last) if more => Some(Cursor { at: last.get("updated_at"), id: last.get("id") }.encode()),
        _ => None,
    };
    let orders: Vec<OrderJson> = page.iter().map(order_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": orders, "next": next })))
}

/// `GET /api/v1/orders/{id}`.
pub async fn show(cx: ApiScope, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(path.trim()).map_err(|_| ApiError::NotFound)?;
    respond(cx, id, false).await
}

async fn by_ref(db: &Scope, external_ref: &str) -> Result<Option<Uuid>, ApiError> {
    Ok(db.query_opt("SELECT id FROM orders WHERE external_ref = $1", &[&external_ref]).await?.map(|r| r.get("id")))
}

/// `GET /api/v1/orders/by-ref/{external_ref}`.
pub async fn show_by_ref(cx: ApiScope, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = by_ref(&cx.db, path.trim()).await?.ok_or(ApiError::NotFound)?;
    respond(cx, id, false).await
}

// Writing -----------------------------------------------------------------------------------

pub const NUMBER_MAX: usize = 40;
pub const TITLE_MAX: usize = 200;
pub const REFERENCE_MAX: usize = 100;
pub const EXTERNAL_REF_MAX: usize = 100;
pub const TRACKING_TEXT_MAX: usize = 100;
pub const TRACKING_URL_MAX: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tracking {
    carrier: String,
    number: String,
    url: Option<String>,
}

/// A `PUT` body, checked field by field (in this order) against what the schema accepts.
#[derive(Debug)]
struct OrderInput {
    customer_id: Uuid,
    number: String,
    title: String,
    reference: Given<String>,
    workflow: String,
    stage: Option<String>,
    expected_on: Given<Date>,
    tracking: Given<Tracking>,
}

/// Trimmed, not empty, at most `max` characters.
fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let length = value.chars().count();
    if length == 0 {
        return Err(ApiError::invalid(field, format!("`{field}` must not be empty.")));
    }
    if length > max {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` is {length} characters long; at most {max} are allowed."),
        ));
    }
    Ok(value.to_owned())
}

/// An optional text: an empty one clears it, like `null`.
fn optional_text(field: &str, given: Given<String>, max: usize) -> Result<Given<String>, ApiError> {
    match given {
        Given::Value(v) if v.trim().is_empty() => Ok(Given::Null),
        other => other.map(|v| text(field, &v, max)),
    }
}

fn date(value: &str) -> Result<Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let value = value.trim();
    Date::parse(value, &format).ok().filter(|_| value.len() == 10).ok_or_else(|| {
        ApiError::invalid("expected_on", "`expected_on` must be a date written YYYY-MM-DD, e.g. 2026-05-31.")
    })
}

fn tracking(mut body: Body) -> Result<Tracking, ApiError> {
    let carrier = text("tracking.carrier", &body.required::<String>("carrier")?, TRACKING_TEXT_MAX)?;
    let number = text("tracking.number", &body.required::<String>("number")?, TRACKING_TEXT_MAX)?;
    let url = match optional_text("tracking.url", body.take::<String>("url")?, TRACKING_URL_MAX)? {
        Given::Value(url) if !crate::orders::moves::tracking_url_ok(&url) => {
            return Err(ApiError::invalid("tracking.url", "`tracking.url` must be an https:// address."));
        }
        Given::Value(url) => Some(url),
        Given::Absent | Given::Null => None,
    };
    Ok(Tracking { carrier, number, url })
}

fn order_input(value: Value) -> Result<OrderInput, ApiError> {
    let mut body = Body::object(
        value,
        &["customer_id", "number", "title", "reference", "workflow", "stage", "expected_on", "tracking"],
    )?;
    let customer_id = body.required::<Uuid>("customer_id")?;
    let number = text("number", &body.required::<String>("number")?, NUMBER_MAX)?;
    let title = text("title", &body.required::<String>("title")?, TITLE_MAX)?;
    let reference = optional_text("reference", body.take("reference")?, REFERENCE_MAX)?;
    let workflow = text("workflow", &body.required::<String>("workflow")?, 100)?;
    let stage = match body.take::<String>("stage")? {
        Given::Value(s) => Some(text("stage", &s, 100)?),
        Given::Absent | Given::Null => None,
    };
    let expected_on = body.take::<String>("expected_on")?.map(|d| date(&d))?;
    let tracking = body.object_field("tracking", "tracking.", &["carrier", "number", "url"])?.map(tracking)?;
    Ok(OrderInput { customer_id, number, title, reference, workflow, stage, expected_on, tracking })
}

struct Workflow {
    id: Uuid,
    name: String,
}

/// The workflow with this name (case-insensitive; an exact match first).
async fn workflow_named(db: &Scope, name: &str) -> Result<Workflow, ApiError> {
    let row = db
        .query_opt(
            "SELECT id, name FROM workflows WHERE lower(name) = lower($1) ORDER BY name = $1 DESC, name LIMIT 1",
            &[&name],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Workflow { id: row.get("id"), name: row.get("name") });
    }
    let known: Option<String> =
        db.query_one("SELECT string_agg(name, ', ' ORDER BY name) FROM workflows", &[]).await?.get(0);
    Err(ApiError::invalid(
        "workflow",
        format!("There is no workflow named {name:?}. The workflows are: {}.", known.unwrap_or_default()),
    ))
}

fn unknown_stage(field: &str, workflow: &Workflow, stages: Option<String>, what: &str) -> ApiError {
    ApiError::invalid(
        field,
        format!(
            "The workflow {:?} has no stage {what}. Its stages are: {}.",
            workflow.name,
            stages.unwrap_or_default()
        ),
    )
}

/// The stage of `workflow` named `name`, through the move module's own lookup.
async fn stage_named(db: &Scope, workflow: &Workflow, name: &str) -> Result<moves::Target, ApiError> {
    if let Some(target) = moves::stage_named(db, workflow.id, name).await? {
        return Ok(target);
    }
    Err(unknown_stage("stage", workflow, stage_names(db, workflow.id).await?, &format!("named {name:?}")))
}

async fn stage_names(db: &Scope, workflow: Uuid) -> Result<Option<String>, ApiError> {
    Ok(db
        .query_one(
            "SELECT string_agg(name, ', ' ORDER BY position) FROM workflow_stages WHERE workflow_id = $1",
            &[&workflow],
        )
        .await?
        .get(0))
}

async fn first_stage(db: &Scope, workflow: &Workflow) -> Result<moves::Target, ApiError> {
    let row = db
        .query_opt(
            "SELECT id, name, terminal FROM workflow_stages WHERE workflow_id = $1 ORDER BY position LIMIT 1",
            &[&workflow.id],
        )
        .await?
        .ok_or_else(|| ApiError::invalid("workflow", format!("The workflow {:?} has no stages.", workflow.name)))?;
    Ok(moves::Target { id: row.get("id"), name: row.get("name"), terminal: row.get("terminal") })
}

/// Who the API writes as: the integration, by its name (the timelines and the activity log show it).
fn actor(cx: &ApiScope) -> moves::Actor<'_> {
    moves::Actor { user_id: cx.integration.user_id, label: &cx.integration.name }
}

fn columns(tracking: Option<&Tracking>) -> (Option<&str>, Option<&str>, Option<&str>) {
    match tracking {
        Some(t) => (Some(t.carrier.as_str()), Some(t.number.as_str()), t.url.as_deref()),
        None => (None, None, None),
    }
}

/// `PUT /api/v1/orders/by-ref/{external_ref}`: creates the order (201) or brings it up to date (200).
/// Fields left out of the body keep their stored value; `null` clears an optional one.
pub async fn upsert(cx: ApiScope, path: web::Path<String>, json: JsonBody) -> Result<HttpResponse, ApiError> {
    let external_ref = text("external_ref", &path, EXTERNAL_REF_MAX)?;
    let input = order_input(body(json)?)?;
    let workflow = workflow_named(&cx.db, &input.workflow).await?;
    match by_ref(&cx.db, &external_ref).await? {
        None => create(cx, external_ref, input, workflow).await,
        Some(id) => update(cx, id, input, workflow).await,
    }
}

async fn create(
    cx: ApiScope,
    external_ref: String,
    input: OrderInput,
    workflow: Workflow,
) -> Result<HttpResponse, ApiError> {
    if cx.db.query_opt("SELECT 1 FROM customers WHERE id = $1", &[&input.customer_id]).await?.is_none() {
        return Err(ApiError::invalid("customer_id", "No customer has this id."));
    }
    let stage = match &input.stage {
        Some(name) => stage_named(&cx.db, &workflow, name).await?,
        None => first_stage(&cx.db, &workflow).await?,
    };
    let status = moves::status_after(stage.terminal, "open");
    let tracking = input.tracking.or_keep(None);
    let (carrier, tracking_number, url) = columns(tracking.as_ref());
    let reference = input.reference.or_keep(None);
    let expected_on = input.expected_on.or_keep(None);
    // A duplicate number for this customer is a 409 (see `ApiError::from(DbError)`).
    let id: Uuid = cx
        .db
        .query_one(
            "INSERT INTO orders (customer_id, number, title, reference, external_ref, workflow_id, stage_id, status, \
             expected_on, tracking_carrier, tracking_number, tracking_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &[
                &input.customer_id,
                &input.number,
                &input.title,
                &reference,
                &external_ref,
                &workflow.id,
                &stage.id,
                &status,
                &expected_on,
                &carrier,
                &tracking_number,
                &url,
            ],
        )
        .await?
        .get("id");
    let actor = actor(&cx);
    cx.db
        .execute(
            "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, actor_user_id, reached_at) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
            &[&id, &input.customer_id, &stage.id, &stage.name, &actor.user_id],
        )
        .await?;
    cx.db
        .execute(
            "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, \
             details) VALUES ($1, $2, $3, 'order.created', 'order', $4, \
             jsonb_build_object('number', $5::text, 'stage', $6::text))",
            &[&input.customer_id, &actor.user_id, &actor.label, &id, &input.number, &stage.name],
        )
        .await?;
    respond(cx, id, true).await
}

async fn update(cx: ApiScope, id: Uuid, input: OrderInput, workflow: Workflow) -> Result<HttpResponse, ApiError> {
    // Locked first, so what this request compares with is what it replaces.
    let mut current = moves::lock(&cx.db, id).await?.ok_or(ApiError::NotFound)?;
    if current.customer_id != input.customer_id {
        return Err(ApiError::invalid(
            "customer_id",
            "An order cannot move to another customer; it belongs to the customer it was created for.",
        ));
    }
    if current.workflow_id != workflow.id {
        return Err(ApiError::invalid("workflow", "An order's workflow cannot change once it exists."));
    }
    // Checked before anything is written.
    let target = match &input.stage {
        Some(name) => Some(stage_named(&cx.db, &workflow, name).await?).filter(|t| t.id != current.stage_id),
        None => None,
    };
    let stored = cx
        .db
        .query_one(
            "SELECT number, title, reference, expected_on, tracking_carrier, tracking_number, tracking_url \
             FROM orders WHERE id = $1",
            &[&id],
        )
        .await?;
    let stored_tracking = match (stored.get::<_, Option<String>>("tracking_carrier"), stored.get("tracking_number")) {
        (Some(carrier), Some(number)) => Some(Tracking { carrier, number, url: stored.get("tracking_url") }),
        _ => None,
    };
    let stored_reference: Option<String> = stored.get("reference");
    let stored_expected: Option<Date> = stored.get("expected_on");
    let reference = input.reference.or_keep(stored_reference.clone());
    let expected_on = input.expected_on.or_keep(stored_expected);
    let tracking = input.tracking.clone().or_keep(stored_tracking.clone());

    let mut changed: Vec<&'static str> = Vec::new();
    if stored.get::<_, String>("number") != input.number {
        changed.push("number");
    }
    if stored.get::<_, String>("title") != input.title {
        changed.push("title");
    }
    if reference != stored_reference {
        changed.push("reference");
    }
    if expected_on != stored_expected {
        changed.push("expected_on");
    }
    // Tracking stored by other means (a number without a carrier) is replaced only when the body says so.
    if input.tracking != Given::Absent && tracking != stored_tracking {
        changed.push("tracking");
    }
    let actor = actor(&cx);
    if !changed.is_empty() {
        let (carrier, tracking_number, url) = columns(tracking.as_ref());
        let tracking_changed = changed.contains(&"tracking");
        cx.db
            .execute(
                "UPDATE orders SET number = $2, title = $3, reference = $4, expected_on = $5, \
                 tracking_carrier = CASE WHEN $9 THEN $6 ELSE tracking_carrier END, \
                 tracking_number = CASE WHEN $9 THEN $7 ELSE tracking_number END, \
                 tracking_url = CASE WHEN $9 THEN $8 ELSE tracking_url END \
                 WHERE id = $1",
                &[
                    &id,
                    &input.number,
                    &input.title,
                    &reference,
                    &expected_on,
                    &carrier,
                    &tracking_number,
                    &url,
                    &tracking_changed,
                ],
            )
            .await?;
        cx.db
            .execute(
                "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, \
                 details) VALUES ($1, $2, $3, 'order.updated', 'order', $4, \
                 jsonb_build_object('number', $5::text, 'fields', $6::text[]))",
                &[&current.customer_id, &actor.user_id, &actor.label, &id, &input.number, &changed],
            )
            .await?;
        current.number = input.number.clone();
    }
    if let Some(target) = target {
        if let Some(refused) = refusal(moves::check(&current, Some(&target), "", ""), "stage") {
            return Err(refused);
        }
        moves::apply(&cx.db, &actor, &current, &target, "", "").await?;
    }
    respond(cx, id, false).await
}

/// The first thing wrong with a move, as the API answers it.
fn refusal(errors: MoveErrors, stage_field: &str) -> Option<ApiError> {
    if let Some(message) = errors.stage {
        return Some(if message == moves::ALREADY_THERE {
            ApiError::conflict("already_at_stage", stage_field, message)
        } else {
            ApiError::invalid(stage_field, message)
        });
    }
    if let Some(message) = errors.customer_note {
        return Some(ApiError::invalid("customer_note", message));
    }
    errors.internal_note.map(|message| ApiError::invalid("internal_note", message))
}

/// `POST /api/v1/orders/{id}/stage`: moves the order (or, to its own stage, posts notes).
pub async fn move_stage(cx: ApiScope, path: web::Path<String>, json: JsonBody) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(path.trim()).map_err(|_| ApiError::NotFound)?;
    let mut body = Body::object(body(json)?, &["stage", "stage_id", "customer_note", "internal_note"])?;
    let by_name = match body.take::<String>("stage")? {
        Given::Value(s) => Some(text("stage", &s, 100)?),
        Given::Absent | Given::Null => None,
    };
    let by_id = match body.take::<Uuid>("stage_id")? {
        Given::Value(id) => Some(id),
        Given::Absent | Given::Null => None,
    };
    let customer_note = match body.take::<String>("customer_note")? {
        Given::Value(note) => moves::clean_note(&note),
        Given::Absent | Given::Null => String::new(),
    };
    let internal_note = match body.take::<String>("internal_note")? {
        Given::Value(note) => moves::clean_note(&note),
        Given::Absent | Given::Null => String::new(),
    };
    let current = moves::lock(&cx.db, id).await?.ok_or(ApiError::NotFound)?;
    let workflow_name: String =
        cx.db.query_one("SELECT name FROM workflows WHERE id = $1", &[&current.workflow_id]).await?.get(0);
    let workflow = Workflow { id: current.workflow_id, name: workflow_name };
    let (target, field) = match (by_name, by_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("stage", "Give either `stage` (a name) or `stage_id`, not both."));
        }
        (None, None) => {
            return Err(ApiError::invalid("stage", "`stage` (a stage's name) or `stage_id` is required."));
        }
        (Some(name), None) => (stage_named(&cx.db, &workflow, &name).await?, "stage"),
        (None, Some(stage)) => match moves::stage(&cx.db, workflow.id, stage).await? {
            Some(target) => (target, "stage_id"),
            None => {
                let stages = stage_names(&cx.db, workflow.id).await?;
                return Err(unknown_stage("stage_id", &workflow, stages, "with this id"));
            }
        },
    };
    if let Some(refused) = refusal(moves::check(&current, Some(&target), &customer_note, &internal_note), field) {
        return Err(refused);
    }
    moves::apply(&cx.db, &actor(&cx), &current, &target, &customer_note, &internal_note).await?;
    respond(cx, id, false).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor { at: time::macros::datetime!(2026-05-31 08:00:00.123456 UTC), id: Uuid::from_u128(7) };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("nonsense"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12.not-a-uuid")), None);
    }

    fn valid() -> Value {
        json!({"customer_id": Uuid::from_u128(1), "number": " ORD-9 ", "title": "Flyers", "workflow": "Print job"})
    }

    fn refused_field(mut body: Value, key: &str, value: Value) -> Option<String> {
        body[key] = value;
        order_input(body).err().and_then(|e| e.field().map(str::to_owned))
    }

    #[test]
    fn bodies_are_checked_like_the_schema() {
        let input = order_input(valid()).unwrap();
        assert_eq!(input.number, "ORD-9");
        assert_eq!((input.reference, input.expected_on, input.stage), (Given::Absent, Given::Absent, None));
        assert_eq!(refused_field(valid(), "number", json!("x".repeat(41))).as_deref(), Some("number"));
        assert_eq!(refused_field(valid(), "title", json!("   ")).as_deref(), Some("title"));
        assert_eq!(refused_field(valid(), "reference", json!("r".repeat(101))).as_deref(), Some("reference"));
        assert_eq!(refused_field(valid(), "expected_on", json!("31/05/2026")).as_deref(), Some("expected_on"));
        assert_eq!(refused_field(valid(), "expected_on", json!("2026-02-30")).as_deref(), Some("expected_on"));
        assert_eq!(refused_field(valid(), "customer_id", json!("acme")).as_deref(), Some("customer_id"));
        let http = json!({"carrier": "DHL", "number": "1", "url": "http://x.example"});
        assert_eq!(refused_field(valid(), "tracking", http).as_deref(), Some("tracking.url"));
        let ok = order_input({
            let mut b = valid();
            b["tracking"] = json!({"carrier": "DHL", "number": "1", "url": "https://x.example/t"});
            b["reference"] = json!("");
            b["expected_on"] = json!("2026-05-31");
            b
        })
        .unwrap();
        assert_eq!(ok.reference, Given::Null, "an empty reference clears it");
        assert_eq!(ok.expected_on, Given::Value(time::macros::date!(2026 - 05 - 31)));
        assert!(matches!(ok.tracking, Given::Value(Tracking { url: Some(_), .. })));
        let mut missing = valid();
        missing.as_object_mut().unwrap().remove("title");
        assert_eq!(order_input(missing).err().unwrap().field(), Some("title"));
    }

    #[test]
    fn steps_read_like_the_pages() {
        assert_eq!(step_state(0, 1, "open"), "done");
        assert_eq!(step_state(1, 1, "open"), "current");
        assert_eq!(step_state(1, 1, "completed"), "done");
        assert_eq!(step_state(2, 1, "open"), "upcoming");
    }
}
