//! Orders in the back office: every customer's orders in one list (filters,
//! keyset pages, a bulk move: `list`), one order as staff see it (with the internal
//! notes customers never see) and moving it (here), creating an order for a
//! customer, editing its details, cancelling and reopening it (`form`).
//!
//! Everything read and written goes through the orders store (`crate::orders`);
//! every stage move, one order or a bulk of them, is written by
//! `crate::orders::moves`. These handlers only decide which moves to make and show
//! the pages.

mod form;
mod list;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::orders::detail::{self, StaffDetail};
pub use crate::orders::detail::{StaffOrder, Stage, TimelineEntry};
use crate::orders::moves::{self, MoveErrors};
pub use crate::orders::staff_list::{At, Filters, ListRow, WorkflowStages, workflows_with_stages};
use crate::orders::{OrderRow, StageStep};
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, html_with_status, redirect_with_flash,
};
pub use form::{
    DUPLICATE_EXTERNAL_REF, DUPLICATE_NUMBER, EditedOrder, Field, FormMode, NUMBER_MAX, NoFields, OrderErrors,
    OrderFields, REFERENCE_MAX, TITLE_MAX, TRACKING_MAX, TRACKING_URL_HTTPS, TRACKING_URL_MAX, WorkflowChoice, cancel,
    create, edit_form, field, new_form, reopen, update,
};
pub use list::{
    BULK_MAX, BULK_NO_STAGE, BulkErrors, BulkForm, ListQuery, OrderRowPart, StageOptions, bulk_move, index,
};

/// The status as staff put it ("waiting on the customer", not "needs your action").
pub fn staff_badge(row: &OrderRow) -> (&'static str, &'static str) {
    row.staff_badge()
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

fn parse_id(path: web::Path<String>) -> Result<Uuid, AppError> {
    Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)
}

/// Who a staff change is written as: the signed-in user, by email.
fn actor(viewer: &Viewer) -> moves::Actor<'_> {
    moves::Actor { user_id: viewer.user_id, label: &viewer.email }
}

fn page(viewer: &Viewer, flash: Option<Flash>, loaded: StaffDetail, form: MoveForm) -> OrderPage {
    let title = format!("{} {}", loaded.order.row.number, loaded.order.row.title);
    OrderPage {
        shell: Shell::page(viewer, title, Section::StaffOrders, flash),
        csrf_token: viewer.csrf_token.clone(),
        order: loaded.order,
        steps: loaded.steps,
        stages: loaded.stages,
        timeline: loaded.timeline,
        form,
    }
}

pub async fn show(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let loaded = detail::staff_detail(&cx.db, id).await?.ok_or(AppError::NotFound)?;
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

pub async fn move_stage(
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
        let loaded = detail::staff_detail(&db, id).await?.ok_or(AppError::NotFound)?;
        db.commit().await?;
        let selected = Uuid::parse_str(input.stage_id.trim())
            .ok()
            .filter(|s| loaded.stages.iter().any(|stage| stage.id == *s))
            .unwrap_or(loaded.order.stage_id);
        let form =
            MoveForm { selected, customer_note: input.customer_note, internal_note: input.internal_note, errors };
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page(&viewer, None, loaded, form).render_once()?);
    };
    moves::apply(&db, &actor(&viewer), &current, &target, &customer_note, &internal_note).await?;
    db.commit().await?;

    let message = if target.id == current.stage_id {
        format!("Update posted on {} ({}).", current.number, target.name)
    } else {
        format!("{} moved to {}.", current.number, target.name)
    };
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), Flash::success(message)))
}
