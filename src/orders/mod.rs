//! Orders and projects: the list, the order page with its stage timeline.

pub mod moves;

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::format;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::get().to(index)).route("/orders/{id}", web::get().to(show));
}

const PAGE_SIZE: i64 = 25;

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

    pub fn from_row(row: &Row) -> Self {
        OrderRow {
            id: row.get("id"),
            number: row.get("number"),
            title: row.get("title"),
            reference: row.get("reference"),
            stage: row.get("stage"),
            stage_position: row.get("stage_position"),
            stage_count: row.get("stage_count"),
            awaits_customer: row.get("awaits_customer"),
            status: row.get("status"),
            expected_on: row.get("expected_on"),
            updated_at: row.get("updated_at"),
        }
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
    pub fn tracking(row: &Row) -> Option<(String, String, Option<String>)> {
        match (row.get::<_, Option<String>>("tracking_carrier"), row.get::<_, Option<String>>("tracking_number")) {
            (Some(carrier), Some(number)) => Some((carrier, number, row.get("tracking_url"))),
            _ => None,
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
    q: Option<String>,
    page: Option<i64>,
}

#[derive(TemplateSimple)]
#[template(path = "orders/index.stpl")]
struct IndexPage {
    shell: Shell,
    orders: Vec<OrderRow>,
    status: &'static str,
    q: String,
    page: i64,
    pages: i64,
    total: i64,
}

fn status_filter(s: Option<&str>) -> &'static str {
    match s {
        Some("completed") => "completed",
        Some("cancelled") => "cancelled",
        Some("all") => "all",
        _ => "open",
    }
}

async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let status = status_filter(query.status.as_deref());
    let q = query.q.as_deref().unwrap_or("").trim().chars().take(100).collect::<String>();
    let pattern = crate::db::like_pattern(&q);
    let customer = cx.customer.id;
    // The customer_id filter repeats what row-level security enforces, so the planner uses the index.
    let filter = "o.customer_id = $1 AND ($2 = 'all' OR o.status = $2) \
                  AND ($3 = '%%' OR o.number ILIKE $3 OR o.title ILIKE $3 OR o.reference ILIKE $3)";
    let total: i64 = cx
        .db
        .query_one(&format!("SELECT count(*) FROM orders o WHERE {filter}"), &[&customer, &status, &pattern])
        .await?
        .get(0);
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let rows = cx
        .db
        .query(
            &format!("{} WHERE {filter} ORDER BY o.updated_at DESC, o.id LIMIT $4 OFFSET $5", OrderRow::SELECT),
            &[&customer, &status, &pattern, &PAGE_SIZE, &((page - 1) * PAGE_SIZE)],
        )
        .await?;
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    html(IndexPage {
        shell: Shell::page(&cx.viewer, "Orders", Section::Orders, cx.flash).live(cursor),
        orders: rows.iter().map(OrderRow::from_row).collect(),
        status,
        q,
        page,
        pages,
        total,
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
}

crate::partial!(StatusPart, "orders/_status.stpl", OrderView);
crate::partial!(DetailsPart, "orders/_details.stpl", OrderView);
crate::partial!(TimelinePart, "orders/_timeline.stpl", OrderView);
crate::partial!(InvoicesPart, "orders/_invoices.stpl", OrderView);
crate::partial!(DocumentsPart, "orders/_documents.stpl", OrderView);

/// The live regions of the order page, each the id suffix of its element (`order-<id>-status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Status,
    Details,
    Timeline,
    Invoices,
    Documents,
}

impl Part {
    pub const ALL: [Part; 5] = [Part::Status, Part::Details, Part::Timeline, Part::Invoices, Part::Documents];

    pub fn suffix(self) -> &'static str {
        match self {
            Part::Status => "status",
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
            Part::Status | Part::Details => topic == "orders",
            Part::Timeline => topic == "order_stage_history",
            Part::Invoices => topic == "invoices",
            Part::Documents => matches!(topic, "documents" | "document_versions"),
        }
    }

    pub fn render(self, view: &OrderView) -> Result<String, sailfish::RenderError> {
        match self {
            Part::Status => StatusPart { view }.render_once(),
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
    pub async fn resolve(db: &Scope, customer: Uuid, param: Option<&str>) -> Result<Self, AppError> {
        let Some(param) = param.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(OrderFilter::None);
        };
        let Ok(id) = Uuid::parse_str(param) else {
            return Ok(OrderFilter::Unknown);
        };
        let row =
            db.query_opt("SELECT number FROM orders WHERE id = $1 AND customer_id = $2", &[&id, &customer]).await?;
        Ok(row.map_or(OrderFilter::Unknown, |r| OrderFilter::Found { id, number: r.get("number") }))
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
pub async fn find(db: &Scope, id: Uuid) -> Result<Option<Row>, DbError> {
    db.query_opt(&format!("{} WHERE o.id = $1", OrderRow::SELECT), &[&id]).await
}

async fn show(cx: CustomerScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)?;
    let view = OrderView::load(&cx.db, id).await?.ok_or(AppError::NotFound)?;
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    let title = format!("{} {}", view.order.number, view.order.title);
    html(ShowPage { shell: Shell::page(&cx.viewer, title, Section::Orders, cx.flash).live(cursor), view })
}

impl OrderView {
    /// The order as the scope sees it: `None` when it is missing or another customer's.
    pub async fn load(db: &Scope, id: Uuid) -> Result<Option<Self>, DbError> {
        let Some(row) = find(db, id).await? else { return Ok(None) };
        let order = OrderRow::from_row(&row);
        let workflow: Uuid = row.get("workflow_id");
        let tracking = OrderRow::tracking(&row);
        let steps = db
            .query("SELECT name, position FROM workflow_stages WHERE workflow_id = $1 ORDER BY position", &[&workflow])
            .await?
            .iter()
            .map(|s| StageStep { name: s.get("name"), state: order.step_state(s.get("position")) })
            .collect();
        let timeline = db
            .query(
                "SELECT stage_name, customer_note, reached_at FROM order_stage_history \
                 WHERE order_id = $1 ORDER BY reached_at DESC, id DESC",
                &[&id],
            )
            .await?
            .iter()
            .map(|h| TimelineEntry {
                stage: h.get("stage_name"),
                note: h.get("customer_note"),
                reached_at: h.get("reached_at"),
            })
            .collect();
        let invoices = db
            .query(
                "SELECT id, number, total_cents, currency, status FROM invoices WHERE order_id = $1 \
                 ORDER BY issued_on DESC",
                &[&id],
            )
            .await?
            .iter()
            .map(|i| Linked {
                href: format!("/invoices/{}", i.get::<_, Uuid>("id")),
                label: i.get("number"),
                detail: format::money(i.get("total_cents"), i.get("currency")),
            })
            .collect();
        let documents = db
            .query("SELECT id, title, doc_type FROM documents WHERE order_id = $1 ORDER BY updated_at DESC", &[&id])
            .await?
            .iter()
            .map(|d| Linked {
                href: format!("/documents?order={id}"),
                label: d.get("title"),
                detail: crate::format::doc_type(d.get("doc_type")).to_owned(),
            })
            .collect();
        Ok(Some(OrderView { order, tracking, steps, timeline, invoices, documents }))
    }
}
