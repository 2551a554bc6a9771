//! One order as staff see it (with the internal notes customers never see), and
//! moving it to a stage of its workflow.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::Scope;
use crate::orders::moves::{self, MoveErrors};
use crate::orders::{OrderRow, StageStep};
use crate::web::{AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, redirect_with_flash};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/staff/orders/{id}", web::get().to(show)).route("/staff/orders/{id}/stage", web::post().to(move_stage));
}

/// A stage of the order's workflow, as the form offers it.
pub struct Stage {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub terminal: bool,
}

/// The order with what only staff need: whose it is and the stage's id.
pub struct StaffOrder {
    pub row: OrderRow,
    pub stage_id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub tracking: Option<(String, String, Option<String>)>,
}

impl StaffOrder {
    /// The status as staff put it ("waiting on the customer", not "needs your action").
    pub fn status_badge(&self) -> (&'static str, &'static str) {
        match self.row.status.as_str() {
            "completed" => ("badge badge-success", "Completed"),
            "cancelled" => ("badge badge-muted", "Cancelled"),
            _ if self.row.awaits_customer => ("badge badge-warning", "Waiting on customer"),
            _ => ("badge", "Open"),
        }
    }
}

/// One step of the timeline; `internal_note` is for staff eyes only.
pub struct TimelineEntry {
    pub stage: String,
    pub customer_note: Option<String>,
    pub internal_note: Option<String>,
    pub actor: Option<String>,
    pub reached_at: OffsetDateTime,
}

/// The "Move to stage" form as shown: the selected stage, the notes as typed, the errors.
pub struct MoveForm {
    pub selected: Uuid,
    pub customer_note: String,
    pub internal_note: String,
    pub errors: MoveErrors,
}

#[derive(TemplateSimple)]
#[template(path = "staff/order.stpl")]
struct OrderPage {
    shell: Shell,
    csrf_token: String,
    order: StaffOrder,
    steps: Vec<StageStep>,
    stages: Vec<Stage>,
    timeline: Vec<TimelineEntry>,
    form: MoveForm,
}

/// Everything the page shows, read through the staff scope.
struct Loaded {
    order: StaffOrder,
    steps: Vec<StageStep>,
    stages: Vec<Stage>,
    timeline: Vec<TimelineEntry>,
}

fn parse_id(path: web::Path<String>) -> Result<Uuid, AppError> {
    Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)
}

async fn load(db: &Scope, id: Uuid) -> Result<Option<Loaded>, AppError> {
    let Some(row) = crate::orders::find(db, id).await? else {
        return Ok(None);
    };
    let Some(owner) = db
        .query_opt(
            "SELECT o.stage_id, o.customer_id, c.name AS customer_name FROM orders o \
             JOIN customers c ON c.id = o.customer_id WHERE o.id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let workflow: Uuid = row.get("workflow_id");
    let tracking = OrderRow::tracking(&row);
    let order = StaffOrder {
        row: OrderRow::from_row(&row),
        stage_id: owner.get("stage_id"),
        customer_id: owner.get("customer_id"),
        customer_name: owner.get("customer_name"),
        tracking,
    };
    let stages: Vec<Stage> = db
        .query(
            "SELECT id, name, position, terminal FROM workflow_stages WHERE workflow_id = $1 ORDER BY position",
            &[&workflow],
        )
        .await?
        .iter()
        .map(|s| Stage {
            id: s.get("id"),
            name: s.get("name"),
            position: s.get("position"),
            terminal: s.get("terminal"),
        })
        .collect();
    // The same states as the customer's order page, so both steppers agree.
    let steps =
        stages.iter().map(|s| StageStep { name: s.name.clone(), state: order.row.step_state(s.position) }).collect();
    let timeline = db
        .query(
            "SELECT h.stage_name, h.customer_note, h.reached_at, n.note AS internal_note, u.name AS actor \
             FROM order_stage_history h \
             LEFT JOIN order_internal_notes n ON n.history_id = h.id \
             LEFT JOIN users u ON u.id = h.actor_user_id \
             WHERE h.order_id = $1 ORDER BY h.reached_at DESC, h.id DESC",
            &[&id],
        )
        .await?
        .iter()
        .map(|h| TimelineEntry {
            stage: h.get("stage_name"),
            customer_note: h.get("customer_note"),
            internal_note: h.get("internal_note"),
            actor: h.get("actor"),
            reached_at: h.get("reached_at"),
        })
        .collect();
    Ok(Some(Loaded { order, steps, stages, timeline }))
}

fn page(viewer: &crate::auth::Viewer, flash: Option<Flash>, loaded: Loaded, form: MoveForm) -> OrderPage {
    let title = format!("{} {}", loaded.order.row.number, loaded.order.row.title);
    OrderPage {
        shell: Shell::page(viewer, title, Section::StaffCustomers, flash),
        csrf_token: viewer.csrf_token.clone(),
        order: loaded.order,
        steps: loaded.steps,
        stages: loaded.stages,
        timeline: loaded.timeline,
        form,
    }
}

async fn show(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let loaded = load(&cx.db, id).await?.ok_or(AppError::NotFound)?;
    cx.db.commit().await?;
    let form = MoveForm {
        selected: loaded.order.stage_id,
        customer_note: String::new(),
        internal_note: String::new(),
        errors: MoveErrors::default(),
    };
    html(page(&cx.viewer, cx.flash, loaded, form))
}

#[derive(Deserialize)]
pub struct MoveInput {
    #[serde(default)]
    stage_id: String,
    #[serde(default)]
    customer_note: String,
    #[serde(default)]
    internal_note: String,
}

async fn move_stage(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(input): CsrfForm<MoveInput>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    // A flash waiting for the next page stays for it: a 422 does not consume the cookie.
    let StaffScope { viewer, db, .. } = cx;
    let current = moves::lock(&db, id).await?.ok_or(AppError::NotFound)?;
    let customer_note = moves::clean_note(&input.customer_note);
    let internal_note = moves::clean_note(&input.internal_note);
    let target = match Uuid::parse_str(input.stage_id.trim()) {
        Ok(stage) => moves::stage(&db, current.workflow_id, stage).await?,
        Err(_) => None,
    };
    let errors = moves::check(&current, target.as_ref(), &customer_note, &internal_note);
    let Some(target) = target.filter(|_| !errors.any()) else {
        // Nothing has been written: show the page again with what was typed.
        let loaded = load(&db, id).await?.ok_or(AppError::NotFound)?;
        db.commit().await?;
        let selected = Uuid::parse_str(input.stage_id.trim())
            .ok()
            .filter(|s| loaded.stages.iter().any(|stage| stage.id == *s))
            .unwrap_or(loaded.order.stage_id);
        let form =
            MoveForm { selected, customer_note: input.customer_note, internal_note: input.internal_note, errors };
        let body = page(&viewer, None, loaded, form).render_once()?;
        return Ok(HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(body));
    };
    let actor = moves::Actor { user_id: viewer.user_id, label: &viewer.email };
    moves::apply(&db, &actor, &current, &target, &customer_note, &internal_note).await?;
    db.commit().await?;

    let message = if target.id == current.stage_id {
        format!("Update posted on {} ({}).", current.number, target.name)
    } else {
        format!("{} moved to {}.", current.number, target.name)
    };
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), Flash::success(message)))
}
