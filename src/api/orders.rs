//! `/api/v1/orders`: what the business's other systems (ERP, shop) use to keep
//! orders in sync. Staff-side: every customer's orders, internal notes included.
//!
//! Every request is one transaction in the integration user's staff scope;
//! stage moves go through [`crate::orders::moves`] like the staff pages' do, and
//! the tables' triggers turn every write into live updates.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::auth::ApiScope;
use super::body::{Body, Given};
use super::error::{ApiError, from_query_payload};
use crate::db::Scope;
use crate::db::keyset::{self, Spelling};
use crate::orders::moves::{self, MoveErrors};
use crate::orders::sync::{self, Fields, Tracking, Workflow};
pub use crate::orders::sync::{OrderJson, StageJson, TimelineJson, TrackingJson};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// A body as the scope's `JsonConfig` read it; its refusal is answered only after authentication.
pub type JsonBody = Result<web::Json<Value>, actix_web::Error>;

fn body(body: JsonBody) -> Result<Value, ApiError> {
    body.map(web::Json::into_inner).map_err(ApiError::Rejected)
}

/// Answers with the order as it now is, then commits.
async fn respond(cx: ApiScope, id: Uuid, created: bool) -> Result<HttpResponse, ApiError> {
    let order = sync::get(&cx.db, id).await?.ok_or(ApiError::NotFound)?;
    cx.db.commit().await?;
    Ok(if created {
        HttpResponse::Created().insert_header((header::LOCATION, format!("/api/v1/orders/{id}"))).json(order)
    } else {
        HttpResponse::Ok().json(order)
    })
}

// Reading -----------------------------------------------------------------------------------

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
        // The lists' one status filter, without `all` (leaving the status out is all).
        Some(s) => match crate::orders::status_filter(s).filter(|s| *s != "all") {
            Some(s) => Some(s),
            None => return Err(ApiError::invalid("status", "`status` must be open, completed or cancelled.")),
        },
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
        Some(a) => Some(keyset::decode::<OffsetDateTime>(Spelling::Opaque, a).ok_or_else(|| {
            ApiError::invalid("after", "`after` must be the `next` value of an earlier page, unchanged.")
        })?),
    };
    let filter = sync::ListFilter { customer, status, updated_since: since, after, limit };
    let page = sync::list(&cx.db, &filter).await?;
    cx.db.commit().await?;
    let next = page.next.map(|(at, id)| keyset::encode(Spelling::Opaque, &at, id));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": page.orders, "next": next })))
}

/// `GET /api/v1/orders/{id}`.
pub async fn show(cx: ApiScope, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(path.trim()).map_err(|_| ApiError::NotFound)?;
    respond(cx, id, false).await
}

async fn by_ref(db: &Scope, external_ref: &str) -> Result<Option<Uuid>, ApiError> {
    Ok(sync::by_ref(db, external_ref).await?)
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

/// The workflow with this name (case-insensitive; an exact match first).
async fn workflow_named(db: &Scope, name: &str) -> Result<Workflow, ApiError> {
    if let Some(workflow) = sync::workflow_named(db, name).await? {
        return Ok(workflow);
    }
    let known = sync::workflow_names(db).await?;
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
    Ok(sync::stage_names(db, workflow).await?)
}

async fn first_stage(db: &Scope, workflow: &Workflow) -> Result<moves::Target, ApiError> {
    sync::first_stage(db, workflow.id)
        .await?
        .ok_or_else(|| ApiError::invalid("workflow", format!("The workflow {:?} has no stages.", workflow.name)))
}

/// Who the API writes as: the integration, by its name (the timelines and the activity log show it).
fn actor(cx: &ApiScope) -> moves::Actor<'_> {
    moves::Actor { user_id: cx.integration.user_id, label: &cx.integration.name }
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
    if !sync::customer_exists(&cx.db, input.customer_id).await? {
        return Err(ApiError::invalid("customer_id", "No customer has this id."));
    }
    let stage = match &input.stage {
        Some(name) => stage_named(&cx.db, &workflow, name).await?,
        None => first_stage(&cx.db, &workflow).await?,
    };
    let tracking = input.tracking.or_keep(None);
    let reference = input.reference.or_keep(None);
    let fields = Fields {
        number: &input.number,
        title: &input.title,
        reference: reference.as_deref(),
        expected_on: input.expected_on.or_keep(None),
        tracking: tracking.as_ref(),
    };
    // A duplicate number for this customer is a 409 (see `ApiError::from(DbError)`).
    let id = sync::create(&cx.db, &actor(&cx), input.customer_id, &external_ref, workflow.id, &stage, &fields).await?;
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
    let stored = sync::stored(&cx.db, id).await?;
    let stored_tracking = stored.tracking.clone();
    let stored_reference = stored.reference.clone();
    let stored_expected = stored.expected_on;
    let reference = input.reference.or_keep(stored_reference.clone());
    let expected_on = input.expected_on.or_keep(stored_expected);
    let tracking = input.tracking.clone().or_keep(stored_tracking.clone());

    let mut changed: Vec<&'static str> = Vec::new();
    if stored.number != input.number {
        changed.push("number");
    }
    if stored.title != input.title {
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
        let fields = Fields {
            number: &input.number,
            title: &input.title,
            reference: reference.as_deref(),
            expected_on,
            tracking: tracking.as_ref(),
        };
        sync::update(&cx.db, &actor, id, current.customer_id, &fields, &changed).await?;
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
    let workflow = sync::workflow(&cx.db, current.workflow_id).await?;
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
}
