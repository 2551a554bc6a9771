//! One order as staff see it (with the internal notes customers never see), and
//! moving it to a stage of its workflow.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::Scope;
use crate::orders::{OrderRow, StageStep};
use crate::web::{AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, redirect_with_flash};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/staff/orders/{id}", web::get().to(show)).route("/staff/orders/{id}/stage", web::post().to(move_stage));
}

/// The longest note customers see on the timeline (the column allows 2,000).
pub const CUSTOMER_NOTE_MAX: usize = 2000;
/// The longest internal note (the column allows 4,000).
pub const INTERNAL_NOTE_MAX: usize = 4000;

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

/// What went wrong with a submitted form, field by field.
#[derive(Default)]
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

/// A note as stored: line breaks as browsers count them (one character each), no surrounding blanks.
fn clean_note(note: &str) -> String {
    note.replace("\r\n", "\n").replace('\r', "\n").trim().to_owned()
}

fn too_long(what: &str, note: &str, max: usize) -> Option<String> {
    let length = note.chars().count();
    (length > max)
        .then(|| format!("The {what} is {} characters long; shorten it to at most {}.", group(length), group(max)))
}

/// 2000 → "2,000".
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The order as it is before the move, locked until the transaction ends.
struct Current {
    customer_id: Uuid,
    number: String,
    workflow_id: Uuid,
    stage_id: Uuid,
    stage_name: String,
    status: String,
}

impl Current {
    fn from_row(row: &Row) -> Self {
        Current {
            customer_id: row.get("customer_id"),
            number: row.get("number"),
            workflow_id: row.get("workflow_id"),
            stage_id: row.get("stage_id"),
            stage_name: row.get("stage_name"),
            status: row.get("status"),
        }
    }
}

/// The status an order has after reaching a stage: a final stage completes it,
/// a cancelled order stays cancelled otherwise, anything else is open.
fn status_after(terminal: bool, status: &str) -> &'static str {
    if terminal {
        "completed"
    } else if status == "cancelled" {
        "cancelled"
    } else {
        "open"
    }
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
    // Locked first, so the stage it is "already at" and the "from" of the log
    // are what this move replaces, even with two staff members at it at once.
    let current = db
        .query_opt(
            "SELECT o.customer_id, o.number, o.workflow_id, o.stage_id, o.status, s.name AS stage_name \
             FROM orders o JOIN workflow_stages s ON s.id = o.stage_id WHERE o.id = $1 FOR UPDATE OF o",
            &[&id],
        )
        .await?
        .map(|r| Current::from_row(&r))
        .ok_or(AppError::NotFound)?;

    let customer_note = clean_note(&input.customer_note);
    let internal_note = clean_note(&input.internal_note);
    let target = match Uuid::parse_str(input.stage_id.trim()) {
        Ok(stage) => {
            db.query_opt(
                "SELECT id, name, terminal FROM workflow_stages WHERE id = $1 AND workflow_id = $2",
                &[&stage, &current.workflow_id],
            )
            .await?
        }
        Err(_) => None,
    };
    let mut errors = MoveErrors {
        stage: None,
        customer_note: too_long("note for the customer", &customer_note, CUSTOMER_NOTE_MAX),
        internal_note: too_long("internal note", &internal_note, INTERNAL_NOTE_MAX),
    };
    match &target {
        None => errors.stage = Some("Choose one of the stages of this order's workflow."),
        Some(t)
            if t.get::<_, Uuid>("id") == current.stage_id && customer_note.is_empty() && internal_note.is_empty() =>
        {
            errors.stage =
                Some("The order is already at this stage. Choose another stage, or add a note to post an update.");
        }
        Some(_) => {}
    }
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

    let stage_id: Uuid = target.get("id");
    let stage_name: String = target.get("name");
    let status = status_after(target.get("terminal"), &current.status);
    db.execute("UPDATE orders SET stage_id = $2, status = $3 WHERE id = $1", &[&id, &stage_id, &status]).await?;
    // Taken now, after the lock: moves that waited for each other keep their order on the timeline.
    let history: Uuid = db
        .query_one(
            "INSERT INTO order_stage_history \
             (order_id, customer_id, stage_id, stage_name, customer_note, actor_user_id, reached_at) \
             VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp()) RETURNING id",
            &[
                &id,
                &current.customer_id,
                &stage_id,
                &stage_name,
                &Some(customer_note.as_str()).filter(|n| !n.is_empty()),
                &viewer.user_id,
            ],
        )
        .await?
        .get("id");
    if !internal_note.is_empty() {
        db.execute("INSERT INTO order_internal_notes (history_id, note) VALUES ($1, $2)", &[&history, &internal_note])
            .await?;
    }
    // The customer can read this row (their activity page): it carries no note and no staff IP.
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES ($1, $2, $3, 'order.stage_changed', 'order', $4, \
                 jsonb_build_object('from', $5::text, 'to', $6::text, 'number', $7::text))",
        &[&current.customer_id, &viewer.user_id, &viewer.email, &id, &current.stage_name, &stage_name, &current.number],
    )
    .await?;
    db.commit().await?;

    let message = if stage_id == current.stage_id {
        format!("Update posted on {} ({stage_name}).", current.number)
    } else {
        format!("{} moved to {stage_name}.", current.number)
    };
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), Flash::success(message)))
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
    fn numbers_are_grouped() {
        assert_eq!(group(7), "7");
        assert_eq!(group(999), "999");
        assert_eq!(group(4000), "4,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn status_follows_the_stage_and_keeps_cancellations() {
        assert_eq!(status_after(true, "open"), "completed");
        assert_eq!(status_after(true, "cancelled"), "completed");
        assert_eq!(status_after(false, "completed"), "open");
        assert_eq!(status_after(false, "open"), "open");
        assert_eq!(status_after(false, "cancelled"), "cancelled");
    }
}
