//! Orders and projects: the list, the order page with its stage timeline.

pub mod detail;
pub mod edit;
pub mod list;
pub mod moves;
pub mod staff_list;
pub mod sync;
pub mod workflows;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::format;
use crate::web::{AppError, AppState, CsrfForm, CustomerScope, Flash, Section, Shell, html, redirect_with_flash};

/// One order as lists show it: shared by the orders page and the dashboard.
pub struct OrderRow {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub reference: Option<String>,
    pub stage: String,
    pub stage_position: i32,
    pub stage_count: i64,
    pub awaits_customer: bool,
    pub status: String,
    pub expected_on: Option<Date>,
    pub updated_at: OffsetDateTime,
}

impl OrderRow {
    pub const SELECT: &'static str = "SELECT o.id, o.number, o.title, o.reference, o.status, o.expected_on, o.updated_at, \
         o.workflow_id, o.tracking_carrier, o.tracking_number, o.tracking_url, \
         s.name AS stage, s.position AS stage_position, s.awaits_customer, \
         (SELECT count(*) FROM workflow_stages ws WHERE ws.workflow_id = o.workflow_id) AS stage_count \
         FROM orders o JOIN workflow_stages s ON s.id = o.stage_id";

    /// A row of [`OrderRow::SELECT`]; a column missing or of another type is an error, not a panic.
    pub fn try_from_row(row: &Row) -> Result<Self, DbError> {
        Ok(OrderRow {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            title: row.try_get("title")?,
            reference: row.try_get("reference")?,
            stage: row.try_get("stage")?,
            stage_position: row.try_get("stage_position")?,
            stage_count: row.try_get("stage_count")?,
            awaits_customer: row.try_get("awaits_customer")?,
            status: row.try_get("status")?,
            expected_on: row.try_get("expected_on")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Share of the workflow reached, as a bar width class.
    pub fn progress_class(&self) -> &'static str {
        format::width_class(i64::from(self.stage_position) + 1, self.stage_count)
    }

    pub fn progress_label(&self) -> String {
        format!("Stage {} of {}", self.stage_position + 1, self.stage_count)
    }

    /// How the stepper shows the stage at `position`: reached, current, or ahead.
    pub fn step_state(&self, position: i32) -> &'static str {
        match position.cmp(&self.stage_position) {
            std::cmp::Ordering::Less => "done",
            std::cmp::Ordering::Equal if self.status == "completed" => "done",
            std::cmp::Ordering::Equal => "current",
            std::cmp::Ordering::Greater => "",
        }
    }

    /// Carrier, number and link of the shipment, from a row of [`OrderRow::SELECT`].
    pub fn try_tracking(row: &Row) -> Result<Option<(String, String, Option<String>)>, DbError> {
        let carrier: Option<String> = row.try_get("tracking_carrier")?;
        let number: Option<String> = row.try_get("tracking_number")?;
        Ok(match (carrier, number) {
            (Some(carrier), Some(number)) => Some((carrier, number, row.try_get("tracking_url")?)),
            _ => None,
        })
    }

    /// The status as staff put it ("waiting on the customer", not "needs your action").
    pub fn staff_badge(&self) -> (&'static str, &'static str) {
        match self.status.as_str() {
            "completed" => ("badge badge-success", "Completed"),
            "cancelled" => ("badge badge-muted", "Cancelled"),
            _ if self.awaits_customer => ("badge badge-warning", "Waiting on customer"),
            _ => ("badge", "Open"),
        }
    }

    pub fn status_badge(&self) -> (&'static str, &'static str) {
        match self.status.as_str() {
            "completed" => ("badge badge-success", "Completed"),
            "cancelled" => ("badge badge-muted", "Cancelled"),
            _ if self.awaits_customer => ("badge badge-warning", "Needs your action"),
            _ => ("badge", "Open"),
        }
    }
}

/// The list row partial; the live layer pushes the same template.
#[derive(TemplateSimple)]
#[template(path = "orders/_row.stpl")]
pub struct RowPartial<'a> {
    pub order: &'a OrderRow,
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    stage: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

#[derive(TemplateSimple)]
#[template(path = "orders/index.stpl")]
struct IndexPage {
    shell: Shell,
    page: list::Page,
    status: &'static str,
    stage: Option<Uuid>,
    stages: Vec<list::StageGroup>,
    q: String,
    sort: list::Sort,
    newer_href: Option<String>,
    older_href: Option<String>,
    total_label: String,
}

/// The list's address with these filters and a cursor parameter (`after=…`), for the page links.
fn list_link(filters: &list::Filters, cursor: (&str, &str)) -> String {
    let mut url = format!("/orders?status={}&sort={}", filters.status, filters.sort.param());
    if let Some(stage) = filters.stage {
        url.push_str(&format!("&stage={stage}"));
    }
    if !filters.search.is_empty() {
        url.push_str(&format!("&q={}", crate::web::encode_query_value(&filters.search)));
    }
    url.push_str(&format!("&{}={}", cursor.0, crate::web::encode_query_value(cursor.1)));
    url
}

fn total_label(total: i64, filtered: bool) -> String {
    let count = if total > list::COUNT_CAP {
        format!("More than {} orders", format::group(list::COUNT_CAP as usize))
    } else if total == 1 {
        "1 order".to_owned()
    } else {
        format!("{} orders", format::group(usize::try_from(total).unwrap_or(0)))
    };
    match (filtered, total == 1) {
        (false, _) => count,
        (true, true) => format!("{count} matches"),
        (true, false) => format!("{count} match"),
    }
}

/// The status filter of every order list: `open`, `completed`, `cancelled` or `all`; `None` for anything else.
pub fn status_filter(s: &str) -> Option<&'static str> {
    match s {
        "open" => Some("open"),
        "completed" => Some("completed"),
        "cancelled" => Some("cancelled"),
        "all" => Some("all"),
        _ => None,
    }
}

pub async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let asked_stage = query.stage.as_deref().and_then(|s| Uuid::try_parse(s.trim()).ok());
    let mut filters = list::Filters {
        customer,
        status: query.status.as_deref().and_then(status_filter).unwrap_or("open"),
        stage: None,
        search: query.q.as_deref().unwrap_or("").trim().chars().take(100).collect(),
        sort: list::Sort::parse(query.sort.as_deref()),
    };
    let cursor = crate::db::keyset::Cursor::parse(query.after.as_deref(), query.before.as_deref());
    // Without a stage filter the page does not depend on the stage list: both are read in one round trip.
    let (stages, page) = match asked_stage {
        None => tokio::try_join!(list::stage_groups(&cx.db, customer), list::load(&cx.db, &filters, &cursor))?,
        Some(asked) => {
            let stages = list::stage_groups(&cx.db, customer).await?;
            // A stage that is not one of this customer's workflows filters nothing rather than everything.
            filters.stage = Some(asked).filter(|id| stages.iter().any(|g| g.stages.iter().any(|(s, _)| s == id)));
            let page = list::load(&cx.db, &filters, &cursor).await?;
            (stages, page)
        }
    };
    let stage = filters.stage;
    let live = cx.db.live_cursor();
    cx.db.commit().await?;
    let filtered = !filters.search.is_empty() || stage.is_some();
    html(IndexPage {
        shell: Shell::page(&cx.viewer, "Orders", Section::Orders, cx.flash).live(live),
        newer_href: page.newer.as_deref().map(|c| list_link(&filters, ("before", c))),
        older_href: page.older.as_deref().map(|c| list_link(&filters, ("after", c))),
        total_label: total_label(page.total, filtered),
        page,
        status: filters.status,
        stage,
        stages,
        q: filters.search,
        sort: filters.sort,
    })
}

pub struct StageStep {
    pub name: String,
    pub state: &'static str,
}

pub struct TimelineEntry {
    pub stage: String,
    pub note: Option<String>,
    pub reached_at: OffsetDateTime,
}

pub struct Linked {
    pub href: String,
    pub label: String,
    pub detail: String,
}

/// Everything the order page shows; its regions render from it, on the page and when pushed live.
pub struct OrderView {
    pub order: OrderRow,
    pub tracking: Option<(String, String, Option<String>)>,
    pub steps: Vec<StageStep>,
    pub timeline: Vec<TimelineEntry>,
    pub invoices: Vec<Linked>,
    pub documents: Vec<Linked>,
    pub answer: AnswerForm,
}

/// The form a customer answers a waiting stage with, as shown.
///
/// Pushed regions are shared by every session of a customer, so a pushed copy
/// carries no CSRF token (`csrf` is empty) and `static/live.js` fills in the
/// page's own token when it inserts the form.
#[derive(Default)]
pub struct AnswerForm {
    pub csrf: String,
    pub note: String,
    pub error: Option<String>,
}

impl OrderView {
    /// Whether the order waits for the customer's answer.
    pub fn awaits_answer(&self) -> bool {
        self.order.awaits_customer && self.order.status == "open"
    }
}

crate::partial!(StatusPart, "orders/_status.stpl", OrderView);
crate::partial!(AnswerPart, "orders/_answer.stpl", OrderView);
crate::partial!(DetailsPart, "orders/_details.stpl", OrderView);
crate::partial!(TimelinePart, "orders/_timeline.stpl", OrderView);
crate::partial!(InvoicesPart, "orders/_invoices.stpl", OrderView);
crate::partial!(DocumentsPart, "orders/_documents.stpl", OrderView);

/// The live regions of the order page, each the id suffix of its element (`order-<id>-status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Status,
    Answer,
    Details,
    Timeline,
    Invoices,
    Documents,
}

impl Part {
    pub const ALL: [Part; 6] =
        [Part::Status, Part::Answer, Part::Details, Part::Timeline, Part::Invoices, Part::Documents];

    pub fn suffix(self) -> &'static str {
        match self {
            Part::Status => "status",
            Part::Answer => "answer",
            Part::Details => "details",
            Part::Timeline => "timeline",
            Part::Invoices => "invoices",
            Part::Documents => "documents",
        }
    }

    pub fn parse(suffix: &str) -> Option<Self> {
        Part::ALL.into_iter().find(|p| p.suffix() == suffix)
    }

    /// Which changed tables this part shows.
    pub fn shows(self, topic: &str) -> bool {
        match self {
            Part::Status | Part::Answer | Part::Details => topic == "orders",
            Part::Timeline => topic == "order_stage_history",
            Part::Invoices => topic == "invoices",
            Part::Documents => matches!(topic, "documents" | "document_versions"),
        }
    }

    pub fn render(self, view: &OrderView) -> Result<String, sailfish::RenderError> {
        match self {
            Part::Status => StatusPart { view }.render_once(),
            Part::Answer => AnswerPart { view }.render_once(),
            Part::Details => DetailsPart { view }.render_once(),
            Part::Timeline => TimelinePart { view }.render_once(),
            Part::Invoices => InvoicesPart { view }.render_once(),
            Part::Documents => DocumentsPart { view }.render_once(),
        }
    }
}

#[derive(TemplateSimple)]
#[template(path = "orders/show.stpl")]
struct ShowPage {
    shell: Shell,
    view: OrderView,
}

/// The `?order=` filter. An id that is malformed, missing or another customer's is
/// `Unknown`: all three show the same empty list.
pub enum OrderFilter {
    None,
    Found { id: Uuid, number: String },
    Unknown,
}

impl OrderFilter {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn resolve(db: &Scope, customer: Uuid, param: Option<&str>) -> Result<Self, AppError> {
        let Some(param) = param.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(OrderFilter::None);
        };
        let Ok(id) = Uuid::parse_str(param) else {
            return Ok(OrderFilter::Unknown);
        };
        let row =
            db.query_opt("SELECT number FROM orders WHERE id = $1 AND customer_id = $2", &[&id, &customer]).await?;
        let number = row.map(|r| r.try_get("number")).transpose()?;
        Ok(number.map_or(OrderFilter::Unknown, |number| OrderFilter::Found { id, number }))
    }

    pub fn is_set(&self) -> bool {
        !matches!(self, OrderFilter::None)
    }

    pub fn id(&self) -> Option<Uuid> {
        match self {
            OrderFilter::Found { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Looks an order up through the scope: a foreign id is simply not found.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(db: &Scope, id: Uuid) -> Result<Option<Row>, DbError> {
    db.query_opt(&format!("{} WHERE o.id = $1", OrderRow::SELECT), &[&id]).await
}

pub async fn show(cx: CustomerScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)?;
    let mut view = OrderView::load(&cx.db, id).await?.ok_or(AppError::NotFound)?;
    view.answer.csrf = cx.viewer.csrf_token.clone();
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    let title = format!("{} {}", view.order.number, view.order.title);
    html(ShowPage { shell: Shell::page(&cx.viewer, title, Section::Orders, cx.flash).live(cursor), view })
}

#[derive(Deserialize)]
pub struct AnswerInput {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
    /// `dashboard` when answered from the dashboard, which is where the customer goes back to.
    #[serde(default)]
    from: String,
}

/// A customer approves a waiting stage or asks for changes: one database
/// function checks the order is theirs and waiting, moves it, and logs it.
pub async fn respond(
    state: web::Data<AppState>,
    req: HttpRequest,
    cx: CustomerScope,
    path: web::Path<String>,
    CsrfForm(input): CsrfForm<AnswerInput>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)?;
    let approve = match input.decision.as_str() {
        "approve" => true,
        "changes" => false,
        _ => return Err(AppError::BadRequest("Choose Approve or Request changes.".into())),
    };
    let note = moves::clean_note(&input.note);
    let mut error = moves::too_long("message", &note, moves::CUSTOMER_NOTE_MAX);
    let mut outcome = String::new();
    if error.is_none() {
        let ip = crate::web::client_ip(&req);
        outcome = cx
            .db
            .query_one("SELECT portal_order_respond($1, $2, $3, $4)", &[&id, &approve, &note, &ip])
            .await?
            .try_get(0)?;
        if outcome == "note_required" {
            error = Some("Tell us what to change, so we can get it right.".to_owned());
        }
    }
    if let Some(error) = error {
        // Nothing was written: the order page again, with the message as typed.
        let mut view = OrderView::load(&cx.db, id).await?.ok_or(AppError::NotFound)?;
        cx.db.commit().await?;
        view.answer = AnswerForm { csrf: cx.viewer.csrf_token.clone(), note: input.note, error: Some(error) };
        let title = format!("{} {}", view.order.number, view.order.title);
        let page = ShowPage { shell: Shell::page(&cx.viewer, title, Section::Orders, None), view };
        return crate::web::html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    }
    let order = find(&cx.db, id).await?.as_ref().map(OrderRow::try_from_row).transpose()?;
    cx.db.commit().await?;
    let back = if input.from == "dashboard" { "/".to_owned() } else { format!("/orders/{id}") };
    let flash = match (outcome.as_str(), order) {
        ("not_found", _) | (_, None) => return Err(AppError::NotFound),
        ("not_waiting", Some(order)) => Flash::error(format!(
            "{} no longer waits for your answer: it is at “{}” now. Nothing was changed.",
            order.number, order.stage
        )),
        ("approved", Some(order)) => {
            Flash::success(format!("Thank you: {} is approved and now at “{}”.", order.number, order.stage))
        }
        (_, Some(order)) => Flash::success(format!(
            "Thank you: we have your requested changes for {} and it is back at “{}”.",
            order.number, order.stage
        )),
    };
    Ok(redirect_with_flash(&state, &back, flash))
}

impl OrderView {
    /// The order as the scope sees it: `None` when it is missing or another customer's.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn load(db: &Scope, id: Uuid) -> Result<Option<Self>, DbError> {
        let Some(row) = find(db, id).await? else { return Ok(None) };
        let order = OrderRow::try_from_row(&row)?;
        let workflow: Uuid = row.try_get("workflow_id")?;
        let tracking = OrderRow::try_tracking(&row)?;
        let steps = db
            .query("SELECT name, position FROM workflow_stages WHERE workflow_id = $1 ORDER BY position", &[&workflow])
            .await?
            .iter()
            .map(|s| Ok(StageStep { name: s.try_get("name")?, state: order.step_state(s.try_get("position")?) }))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let timeline = db
            .query(
                "SELECT stage_name, customer_note, reached_at FROM order_stage_history \
                 WHERE order_id = $1 ORDER BY reached_at DESC, id DESC",
                &[&id],
            )
            .await?
            .iter()
            .map(|h| {
                Ok(TimelineEntry {
                    stage: h.try_get("stage_name")?,
                    note: h.try_get("customer_note")?,
                    reached_at: h.try_get("reached_at")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let invoices = db
            .query(
                "SELECT id, number, total_cents, currency, status FROM invoices WHERE order_id = $1 \
                 ORDER BY issued_on DESC",
                &[&id],
            )
            .await?
            .iter()
            .map(|i| {
                Ok(Linked {
                    href: format!("/invoices/{}", i.try_get::<_, Uuid>("id")?),
                    label: i.try_get("number")?,
                    detail: format::money(i.try_get("total_cents")?, i.try_get("currency")?),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let documents = db
            .query("SELECT id, title, doc_type FROM documents WHERE order_id = $1 ORDER BY updated_at DESC", &[&id])
            .await?
            .iter()
            .map(|d| {
                Ok(Linked {
                    href: format!("/documents/{}", d.try_get::<_, Uuid>("id")?),
                    label: d.try_get("title")?,
                    detail: crate::format::doc_type(d.try_get("doc_type")?).to_owned(),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        Ok(Some(OrderView { order, tracking, steps, timeline, invoices, documents, answer: AnswerForm::default() }))
    }
}
