//! Orders in the back office: every customer's orders in one list (filters,
//! keyset pages, a bulk move), one order as staff see it (with the internal notes
//! customers never see) and moving it, creating an order for a customer, editing
//! its details, cancelling and reopening it.
//!
//! Every stage move, one order or a bulk of them, is written by
//! `crate::orders::moves`; this module only decides which moves to make.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::{DbError, Scope};
use crate::orders::moves::{self, MoveErrors};
use crate::orders::{OrderRow, StageStep};
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, encode_query_value, html, html_with_status,
    redirect_with_flash,
};

/// A stage of the order's workflow, as the form offers it.
pub struct Stage {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub terminal: bool,
}

/// The status as staff put it ("waiting on the customer", not "needs your action").
pub fn staff_badge(row: &OrderRow) -> (&'static str, &'static str) {
    match row.status.as_str() {
        "completed" => ("badge badge-success", "Completed"),
        "cancelled" => ("badge badge-muted", "Cancelled"),
        _ if row.awaits_customer => ("badge badge-warning", "Waiting on customer"),
        _ => ("badge", "Open"),
    }
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
    pub fn status_badge(&self) -> (&'static str, &'static str) {
        staff_badge(&self.row)
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

fn page(viewer: &Viewer, flash: Option<Flash>, loaded: Loaded, form: MoveForm) -> OrderPage {
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
        let loaded = load(&db, id).await?.ok_or(AppError::NotFound)?;
        db.commit().await?;
        let selected = Uuid::parse_str(input.stage_id.trim())
            .ok()
            .filter(|s| loaded.stages.iter().any(|stage| stage.id == *s))
            .unwrap_or(loaded.order.stage_id);
        let form =
            MoveForm { selected, customer_note: input.customer_note, internal_note: input.internal_note, errors };
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page(&viewer, None, loaded, form).render_once()?);
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

// ---------------------------------------------------------------------------
// Every customer's orders: filters, keyset pages, bulk move.

/// Orders per page of the list.
const PAGE_SIZE: usize = 50;
/// Beyond this many matches the list says "more than 1,000" instead of counting them all.
const COUNT_CAP: i64 = 1000;
/// The most orders one bulk move takes.
pub const BULK_MAX: usize = 200;
/// How many order numbers a message names before it says "and N more".
const NAMED_MAX: usize = 20;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    customer: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    q: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

/// Where in the workflows the list looks: anywhere, one workflow, or one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Any,
    Workflow(Uuid),
    Stage(Uuid),
}

impl At {
    /// `w:<workflow id>` or `s:<stage id>`; anything else is no filter.
    fn parse(value: &str) -> Self {
        let value = value.trim();
        if let Some(id) = value.strip_prefix("w:") {
            Uuid::parse_str(id).map_or(At::Any, At::Workflow)
        } else if let Some(id) = value.strip_prefix("s:") {
            Uuid::parse_str(id).map_or(At::Any, At::Stage)
        } else {
            At::Any
        }
    }

    pub fn value(self) -> String {
        match self {
            At::Any => String::new(),
            At::Workflow(id) => format!("w:{id}"),
            At::Stage(id) => format!("s:{id}"),
        }
    }
}

/// The list's filters. Malformed values are simply not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters {
    pub customer: Option<Uuid>,
    pub at: At,
    pub status: &'static str,
    pub q: String,
}

fn status_filter(s: Option<&str>) -> &'static str {
    match s.map(str::trim) {
        Some("completed") => "completed",
        Some("cancelled") => "cancelled",
        Some("all") => "all",
        _ => "open",
    }
}

impl Filters {
    fn parse(query: &ListQuery) -> Self {
        Filters {
            customer: query.customer.as_deref().and_then(|c| Uuid::parse_str(c.trim()).ok()),
            at: query.stage.as_deref().map_or(At::Any, At::parse),
            status: status_filter(query.status.as_deref()),
            q: query.q.as_deref().unwrap_or("").trim().chars().take(100).collect(),
        }
    }

    /// The filters as a query string, for links and for the bulk form's way back.
    pub fn query(&self) -> String {
        let mut parts = vec![format!("status={}", self.status)];
        if let Some(customer) = self.customer {
            parts.push(format!("customer={customer}"));
        }
        if self.at != At::Any {
            parts.push(format!("stage={}", encode_query_value(&self.at.value())));
        }
        if !self.q.is_empty() {
            parts.push(format!("q={}", encode_query_value(&self.q)));
        }
        parts.join("&")
    }

    /// Whether anything narrows the list beyond the default (open orders).
    pub fn narrowed(&self) -> bool {
        self.customer.is_some() || self.at != At::Any || self.status != "open" || !self.q.is_empty()
    }

    fn apply(&self, w: &mut Where) {
        if let Some(customer) = self.customer {
            let p = w.param(customer);
            w.and(format!("o.customer_id = {p}"));
        }
        match self.at {
            At::Any => {}
            At::Workflow(id) => {
                let p = w.param(id);
                w.and(format!("o.workflow_id = {p}"));
            }
            At::Stage(id) => {
                let p = w.param(id);
                w.and(format!("o.stage_id = {p}"));
            }
        }
        if self.status != "all" {
            let p = w.param(self.status);
            w.and(format!("o.status = {p}"));
        }
        if !self.q.is_empty() {
            // The expression of the trigram index `orders_search_idx`, so the index serves it.
            let p = w.param(crate::db::like_pattern(&self.q));
            w.and(format!("portal_order_search_text(o.number, o.title, o.reference) ILIKE {p}"));
        }
    }
}

/// A WHERE clause built from fixed fragments whose values are all parameters.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Where {
    /// Adds a parameter and returns its placeholder (`$n`).
    fn param(&mut self, value: impl ToSql + Sync + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn and(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() { "TRUE".to_owned() } else { self.conditions.join(" AND ") }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// A position in the list: the `(updated_at, id)` of an order, as `<microseconds>_<id>` in links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    updated_at: OffsetDateTime,
    id: Uuid,
}

impl Cursor {
    fn of(row: &OrderRow) -> Self {
        Cursor { updated_at: row.updated_at, id: row.id }
    }

    fn parse(value: &str) -> Option<Self> {
        let (micros, id) = value.trim().split_once('_')?;
        let micros: i64 = micros.parse().ok()?;
        let updated_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()?;
        Some(Cursor { updated_at, id: Uuid::parse_str(id).ok()? })
    }

    /// PostgreSQL keeps microseconds, so this is exact.
    fn encode(self) -> String {
        format!("{}_{}", self.updated_at.unix_timestamp_nanos().div_euclid(1000), self.id)
    }
}

/// Which page of the list: the newest, the one before (older than) or after (newer than) a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageAt {
    First,
    Before(Cursor),
    After(Cursor),
}

impl PageAt {
    fn parse(query: &ListQuery) -> Self {
        if let Some(c) = query.before.as_deref().and_then(Cursor::parse) {
            PageAt::Before(c)
        } else if let Some(c) = query.after.as_deref().and_then(Cursor::parse) {
            PageAt::After(c)
        } else {
            PageAt::First
        }
    }

    fn query(self) -> String {
        match self {
            PageAt::First => String::new(),
            PageAt::Before(c) => format!("&before={}", c.encode()),
            PageAt::After(c) => format!("&after={}", c.encode()),
        }
    }
}

/// One order in the list, with its customer.
pub struct ListRow {
    pub row: OrderRow,
    pub customer_id: Uuid,
    pub customer_name: String,
}

const LIST_SELECT: &str = "SELECT o.id, o.number, o.title, o.reference, o.status, o.expected_on, o.updated_at, \
     o.customer_id, c.name AS customer_name, s.name AS stage, s.position AS stage_position, s.awaits_customer, \
     (SELECT count(*) FROM workflow_stages ws WHERE ws.workflow_id = o.workflow_id) AS stage_count \
     FROM orders o JOIN workflow_stages s ON s.id = o.stage_id JOIN customers c ON c.id = o.customer_id";

fn list_row(row: &Row) -> ListRow {
    ListRow {
        row: OrderRow::from_row(row),
        customer_id: row.get("customer_id"),
        customer_name: row.get("customer_name"),
    }
}

/// Up to `limit` orders matching `filters` beyond `bound`, newest first (or oldest first, `ascending`).
async fn fetch(
    db: &Scope,
    filters: &Filters,
    bound: Option<(&'static str, Cursor)>,
    ascending: bool,
    limit: usize,
) -> Result<Vec<ListRow>, DbError> {
    let mut w = Where::default();
    filters.apply(&mut w);
    if let Some((op, cursor)) = bound {
        let (at, id) = (w.param(cursor.updated_at), w.param(cursor.id));
        w.and(format!("(o.updated_at, o.id) {op} ({at}, {id})"));
    }
    let limit = w.param(i64::try_from(limit).unwrap_or(i64::MAX));
    // Served by `orders_updated_idx (updated_at, id)`, read forwards or backwards.
    let order = if ascending { "ASC" } else { "DESC" };
    let sql = format!("{LIST_SELECT} WHERE {} ORDER BY o.updated_at {order}, o.id {order} LIMIT {limit}", w.sql());
    Ok(db.query(&sql, &w.params()).await?.iter().map(list_row).collect())
}

/// Whether an order matching `filters` lies beyond `cursor` (`<`: older, `>`: newer).
async fn any_beyond(db: &Scope, filters: &Filters, op: &'static str, cursor: Cursor) -> Result<bool, DbError> {
    let mut w = Where::default();
    filters.apply(&mut w);
    let (at, id) = (w.param(cursor.updated_at), w.param(cursor.id));
    w.and(format!("(o.updated_at, o.id) {op} ({at}, {id})"));
    let sql = format!("SELECT EXISTS (SELECT 1 FROM orders o WHERE {})", w.sql());
    Ok(db.query_one(&sql, &w.params()).await?.get(0))
}

/// How many orders match, counting no further than just past the cap.
async fn count_capped(db: &Scope, filters: &Filters) -> Result<i64, DbError> {
    let mut w = Where::default();
    filters.apply(&mut w);
    let cap = w.param(COUNT_CAP + 1);
    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM orders o WHERE {} LIMIT {cap}) AS matching", w.sql());
    Ok(db.query_one(&sql, &w.params()).await?.get(0))
}

/// One page of the list and where its neighbours start.
struct Listing {
    orders: Vec<ListRow>,
    newer: Option<Cursor>,
    older: Option<Cursor>,
    first: bool,
}

async fn listing(db: &Scope, filters: &Filters, at: PageAt) -> Result<Listing, DbError> {
    let older_of = |rows: &mut Vec<ListRow>| {
        if rows.len() > PAGE_SIZE {
            rows.truncate(PAGE_SIZE);
            rows.last().map(|r| Cursor::of(&r.row))
        } else {
            None
        }
    };
    match at {
        PageAt::First => {
            let mut orders = fetch(db, filters, None, false, PAGE_SIZE + 1).await?;
            let older = older_of(&mut orders);
            Ok(Listing { orders, newer: None, older, first: true })
        }
        PageAt::Before(cursor) => {
            let mut orders = fetch(db, filters, Some(("<", cursor)), false, PAGE_SIZE + 1).await?;
            let older = older_of(&mut orders);
            let top = orders.first().map_or(cursor, |r| Cursor::of(&r.row));
            let newer = any_beyond(db, filters, ">", top).await?.then_some(top);
            Ok(Listing { orders, newer, older, first: false })
        }
        PageAt::After(cursor) => {
            let mut orders = fetch(db, filters, Some((">", cursor)), true, PAGE_SIZE + 1).await?;
            if orders.len() <= PAGE_SIZE {
                // Nothing newer beyond this page: that is the first page, shown full.
                return Box::pin(listing(db, filters, PageAt::First)).await;
            }
            orders.truncate(PAGE_SIZE);
            orders.reverse();
            let newer = orders.first().map(|r| Cursor::of(&r.row));
            let bottom = orders.last().map_or(cursor, |r| Cursor::of(&r.row));
            let older = any_beyond(db, filters, "<", bottom).await?.then_some(bottom);
            Ok(Listing { orders, newer, older, first: false })
        }
    }
}

/// A workflow and its stages, for the grouped stage `<select>`s.
pub struct WorkflowStages {
    pub id: Uuid,
    pub name: String,
    pub stages: Vec<Stage>,
}

pub async fn workflows_with_stages(db: &Scope) -> Result<Vec<WorkflowStages>, DbError> {
    let rows = db
        .query(
            "SELECT w.id AS workflow_id, w.name AS workflow, s.id, s.name, s.position, s.terminal \
             FROM workflows w JOIN workflow_stages s ON s.workflow_id = w.id ORDER BY lower(w.name), w.id, s.position",
            &[],
        )
        .await?;
    let mut out: Vec<WorkflowStages> = Vec::new();
    for r in &rows {
        let workflow: Uuid = r.get("workflow_id");
        let stage =
            Stage { id: r.get("id"), name: r.get("name"), position: r.get("position"), terminal: r.get("terminal") };
        match out.last_mut() {
            Some(last) if last.id == workflow => last.stages.push(stage),
            _ => out.push(WorkflowStages { id: workflow, name: r.get("workflow"), stages: vec![stage] }),
        }
    }
    Ok(out)
}

/// The stages of every workflow as `<option>`s grouped by workflow: for the filter
/// (`all_stages` adds "All stages of …", values `w:`/`s:` ids) or the bulk move (stage ids).
#[derive(TemplateSimple)]
#[template(path = "staff/_stage_options.stpl")]
pub struct StageOptions<'a> {
    pub workflows: &'a [WorkflowStages],
    pub all_stages: bool,
    pub selected: String,
}

/// One row of the list, with its checkbox for the bulk move.
#[derive(TemplateSimple)]
#[template(path = "staff/_order_row.stpl")]
pub struct OrderRowPart<'a> {
    pub order: &'a ListRow,
    pub checked: bool,
    pub flagged: bool,
}

/// What is wrong with a bulk move; nothing was written when any is set.
#[derive(Default)]
pub struct BulkErrors {
    /// About the ticked orders as a whole (none, too many, some that do not fit).
    pub orders: Vec<String>,
    /// The ticked orders the messages are about, marked in the list.
    pub flagged: Vec<Uuid>,
    pub stage: Option<&'static str>,
    pub customer_note: Option<String>,
    pub internal_note: Option<String>,
}

impl BulkErrors {
    pub fn any(&self) -> bool {
        !self.orders.is_empty() || self.stage.is_some() || self.customer_note.is_some() || self.internal_note.is_some()
    }
}

/// The bulk move form as shown: what is ticked and typed, and what was wrong with it.
#[derive(Default)]
pub struct BulkForm {
    pub selected: Vec<Uuid>,
    pub stage: Option<Uuid>,
    pub customer_note: String,
    pub internal_note: String,
    pub errors: BulkErrors,
}

#[derive(TemplateSimple)]
#[template(path = "staff/orders.stpl")]
struct OrdersPage {
    shell: Shell,
    csrf_token: String,
    script: &'static str,
    filters: Filters,
    customers: Vec<(Uuid, String)>,
    workflows: Vec<WorkflowStages>,
    orders: Vec<ListRow>,
    /// Ticked orders that are not on this page (a refused bulk move keeps them ticked).
    extra: Vec<ListRow>,
    total: String,
    first: bool,
    newer: Option<String>,
    older: Option<String>,
    back: String,
    bulk: BulkForm,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{} {many}", moves::group(n)) }
}

fn total_label(count: i64) -> String {
    if count > COUNT_CAP {
        format!("More than {} orders", moves::group(usize::try_from(COUNT_CAP).unwrap_or_default()))
    } else {
        plural(usize::try_from(count).unwrap_or_default(), "order", "orders")
    }
}

async fn list_page(
    db: &Scope,
    viewer: &Viewer,
    flash: Option<Flash>,
    filters: Filters,
    at: PageAt,
    bulk: BulkForm,
) -> Result<OrdersPage, AppError> {
    let listing = listing(db, &filters, at).await?;
    let total = count_capped(db, &filters).await?;
    let customers = db
        .query("SELECT id, name FROM customers ORDER BY lower(name), id", &[])
        .await?
        .iter()
        .map(|r| (r.get("id"), r.get("name")))
        .collect();
    let workflows = workflows_with_stages(db).await?;
    let shown: HashSet<Uuid> = listing.orders.iter().map(|o| o.row.id).collect();
    let missing: Vec<Uuid> = bulk.selected.iter().copied().filter(|id| !shown.contains(id)).collect();
    let extra = if missing.is_empty() {
        Vec::new()
    } else {
        db.query(&format!("{LIST_SELECT} WHERE o.id = ANY($1) ORDER BY o.updated_at DESC, o.id DESC"), &[&missing])
            .await?
            .iter()
            .map(list_row)
            .collect()
    };
    let base = filters.query();
    Ok(OrdersPage {
        shell: Shell::page(viewer, "Orders", Section::StaffOrders, flash),
        csrf_token: viewer.csrf_token.clone(),
        script: crate::web::assets::url("staff-orders.js"),
        total: total_label(total),
        first: listing.first,
        newer: listing.newer.map(|c| format!("/staff/orders?{base}&after={}", c.encode())),
        older: listing.older.map(|c| format!("/staff/orders?{base}&before={}", c.encode())),
        back: format!("{base}{}", at.query()),
        filters,
        customers,
        workflows,
        orders: listing.orders,
        extra,
        bulk,
    })
}

pub async fn index(cx: StaffScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let filters = Filters::parse(&query);
    let at = PageAt::parse(&query);
    let page = list_page(&cx.db, &cx.viewer, cx.flash, filters, at, BulkForm::default()).await?;
    cx.db.commit().await?;
    html(page)
}

/// The bulk move form as sent: `order_id` repeats, so it is read as pairs.
struct BulkInput {
    orders: Vec<Uuid>,
    stage_id: String,
    customer_note: String,
    internal_note: String,
    back: String,
}

impl BulkInput {
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, AppError> {
        let mut input = BulkInput {
            orders: Vec::new(),
            stage_id: String::new(),
            customer_note: String::new(),
            internal_note: String::new(),
            back: String::new(),
        };
        let mut seen = HashSet::new();
        for (key, value) in pairs {
            match key.as_str() {
                "order_id" => {
                    // Only a tampered form sends something that is not an order id.
                    let id = Uuid::parse_str(value.trim()).map_err(|_| AppError::NotFound)?;
                    if seen.insert(id) {
                        input.orders.push(id);
                    }
                }
                "stage_id" => input.stage_id = value,
                "customer_note" => input.customer_note = value,
                "internal_note" => input.internal_note = value,
                "back" => input.back = value,
                _ => {}
            }
        }
        Ok(input)
    }
}

/// "ORD-1, ORD-2 and 3 more".
fn numbers(mut list: Vec<String>) -> String {
    list.sort();
    let more = list.len().saturating_sub(NAMED_MAX);
    list.truncate(NAMED_MAX);
    let named = list.join(", ");
    if more > 0 { format!("{named} and {more} more") } else { named }
}

pub const BULK_NO_STAGE: &str = "Choose the stage to move the ticked orders to.";

pub async fn bulk_move(
    state: web::Data<AppState>,
    cx: StaffScope,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let input = BulkInput::parse(pairs)?;
    let back: ListQuery = serde_urlencoded::from_str(&input.back).unwrap_or_default();
    let (filters, at) = (Filters::parse(&back), PageAt::parse(&back));
    let StaffScope { viewer, db, .. } = cx;
    let customer_note = moves::clean_note(&input.customer_note);
    let internal_note = moves::clean_note(&input.internal_note);
    let stage_id = Uuid::parse_str(input.stage_id.trim()).ok();
    let target = match stage_id {
        Some(id) => db
            .query_opt(
                "SELECT s.name, w.name AS workflow FROM workflow_stages s JOIN workflows w ON w.id = s.workflow_id \
                 WHERE s.id = $1",
                &[&id],
            )
            .await?
            .map(|r| (id, r.get::<_, String>("name"), r.get::<_, String>("workflow"))),
        None => None,
    };
    let mut errors = BulkErrors {
        stage: target.is_none().then_some(BULK_NO_STAGE),
        customer_note: moves::too_long("note for the customer", &customer_note, moves::CUSTOMER_NOTE_MAX),
        internal_note: moves::too_long("internal note", &internal_note, moves::INTERNAL_NOTE_MAX),
        ..BulkErrors::default()
    };
    if input.orders.is_empty() {
        errors.orders.push("Tick the orders to move.".to_owned());
    } else if input.orders.len() > BULK_MAX {
        errors.orders.push(format!(
            "A bulk move takes at most {BULK_MAX} orders; {} are ticked. Move them in smaller batches.",
            moves::group(input.orders.len())
        ));
    }

    let mut locked = Vec::new();
    let mut targets: HashMap<Uuid, Option<moves::Target>> = HashMap::new();
    if let (false, Some((stage, stage_name, workflow))) = (errors.any(), &target) {
        // Locked in one order, so two bulk moves over the same orders cannot deadlock.
        let mut ids = input.orders.clone();
        ids.sort();
        let mut missing = 0usize;
        for id in ids {
            match moves::lock(&db, id).await? {
                Some(current) => locked.push(current),
                None => missing += 1,
            }
        }
        let (mut unfit, mut already) = (Vec::new(), Vec::new());
        for current in &locked {
            if let Entry::Vacant(slot) = targets.entry(current.workflow_id) {
                slot.insert(moves::stage(&db, current.workflow_id, *stage).await?);
            }
            let t = targets.get(&current.workflow_id).and_then(Option::as_ref);
            match moves::check(current, t, &customer_note, &internal_note).stage {
                Some(moves::UNKNOWN_STAGE) => unfit.push(current),
                Some(_) => already.push(current),
                None => {}
            }
        }
        if missing > 0 {
            errors.orders.push(format!(
                "{} no longer {}. Reload the page and tick the orders again.",
                plural(missing, "ticked order", "ticked orders"),
                if missing == 1 { "exists" } else { "exist" }
            ));
        }
        if !unfit.is_empty() {
            errors.orders.push(format!(
                "{} {} not use the workflow “{workflow}” that “{stage_name}” belongs to: {}. Untick {}, or choose \
                 a stage of their workflow.",
                plural(unfit.len(), "ticked order", "ticked orders"),
                if unfit.len() == 1 { "does" } else { "do" },
                numbers(unfit.iter().map(|c| c.number.clone()).collect()),
                if unfit.len() == 1 { "it" } else { "them" },
            ));
        }
        if !already.is_empty() {
            errors.orders.push(format!(
                "Already at “{stage_name}”: {}. Untick {}, or add a note to post an update.",
                numbers(already.iter().map(|c| c.number.clone()).collect()),
                if already.len() == 1 { "it" } else { "them" },
            ));
        }
        errors.flagged = unfit.iter().chain(already.iter()).map(|c| c.id).collect();
    }

    if errors.any() {
        // Nothing has been written: show the list again with the ticks and the notes as they were.
        let bulk = BulkForm {
            selected: input.orders,
            stage: target.as_ref().map(|(id, _, _)| *id),
            customer_note: input.customer_note,
            internal_note: input.internal_note,
            errors,
        };
        let page = list_page(&db, &viewer, None, filters, at, bulk).await?;
        db.commit().await?;
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    }

    let actor = moves::Actor { user_id: viewer.user_id, label: &viewer.email };
    let mut moved = 0usize;
    let mut stage_name = String::new();
    for current in &locked {
        if let Some(t) = targets.get(&current.workflow_id).and_then(Option::as_ref) {
            moves::apply(&db, &actor, current, t, &customer_note, &internal_note).await?;
            stage_name.clone_from(&t.name);
            moved += 1;
        }
    }
    db.commit().await?;
    let message = format!("Moved {} to {stage_name}.", plural(moved, "order", "orders"));
    let back = format!("/staff/orders?{}{}", filters.query(), at.query());
    Ok(redirect_with_flash(&state, &back, Flash::success(message)))
}

// ---------------------------------------------------------------------------
// Creating and editing an order.

pub const NUMBER_MAX: usize = 40;
pub const TITLE_MAX: usize = 200;
pub const REFERENCE_MAX: usize = 100;
pub const TRACKING_MAX: usize = 100;
pub const TRACKING_URL_MAX: usize = 2000;

/// The order form as sent (and shown again when refused).
#[derive(Deserialize, Default)]
pub struct OrderFields {
    #[serde(default)]
    pub number: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub workflow_id: String,
    #[serde(default)]
    pub expected_on: String,
    #[serde(default)]
    pub external_ref: String,
    #[serde(default)]
    pub tracking_carrier: String,
    #[serde(default)]
    pub tracking_number: String,
    #[serde(default)]
    pub tracking_url: String,
}

/// What is wrong with the order form, field by field.
#[derive(Default)]
pub struct OrderErrors {
    pub number: Option<String>,
    pub title: Option<String>,
    pub reference: Option<String>,
    pub workflow_id: Option<String>,
    pub expected_on: Option<String>,
    pub external_ref: Option<String>,
    pub tracking_carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
}

impl OrderErrors {
    fn all(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("number", &self.number),
            ("title", &self.title),
            ("reference", &self.reference),
            ("workflow_id", &self.workflow_id),
            ("expected_on", &self.expected_on),
            ("external_ref", &self.external_ref),
            ("tracking_carrier", &self.tracking_carrier),
            ("tracking_number", &self.tracking_number),
            ("tracking_url", &self.tracking_url),
        ]
    }

    pub fn any(&self) -> bool {
        self.all().iter().any(|(_, e)| e.is_some())
    }

    /// The first field with an error, which gets the focus.
    pub fn first(&self) -> Option<&'static str> {
        self.all().iter().find(|(_, e)| e.is_some()).map(|(name, _)| *name)
    }
}

/// A one-line text field: trimmed, on one line, at most `max` characters; empty is `None`.
fn optional_text(what: &str, typed: &str, max: usize) -> Result<Option<String>, String> {
    let value = typed.trim();
    if value.chars().any(char::is_control) {
        return Err(format!("The {what} must fit on one line."));
    }
    if let Some(e) = moves::too_long(what, value, max) {
        return Err(e);
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn required_text(what: &str, typed: &str, max: usize) -> Result<String, String> {
    optional_text(what, typed, max)?.ok_or_else(|| format!("Enter the {what}."))
}

/// `YYYY-MM-DD`, as `<input type="date">` sends it; empty is `None`.
fn optional_date(typed: &str) -> Result<Option<Date>, String> {
    let value = typed.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, &format).map(Some).map_err(|_| "Enter a date such as 2026-06-30.".to_owned())
}

/// Splits each check into its value and its error.
fn take<T: Default>(result: Result<T, String>, error: &mut Option<String>) -> T {
    result.unwrap_or_else(|e| {
        *error = Some(e);
        T::default()
    })
}

/// The details every order has, checked.
struct Details {
    title: String,
    reference: Option<String>,
    expected_on: Option<Date>,
}

fn check_details(fields: &OrderFields, errors: &mut OrderErrors) -> Details {
    Details {
        title: take(required_text("title", &fields.title, TITLE_MAX), &mut errors.title),
        reference: take(optional_text("customer reference", &fields.reference, REFERENCE_MAX), &mut errors.reference),
        expected_on: take(optional_date(&fields.expected_on), &mut errors.expected_on),
    }
}

pub const TRACKING_URL_HTTPS: &str = "The tracking link must start with https://";

struct Tracking {
    carrier: Option<String>,
    number: Option<String>,
    url: Option<String>,
}

fn check_tracking(fields: &OrderFields, errors: &mut OrderErrors) -> Tracking {
    let carrier = take(optional_text("carrier", &fields.tracking_carrier, TRACKING_MAX), &mut errors.tracking_carrier);
    let number =
        take(optional_text("tracking number", &fields.tracking_number, TRACKING_MAX), &mut errors.tracking_number);
    let mut url =
        take(optional_text("tracking link", &fields.tracking_url, TRACKING_URL_MAX), &mut errors.tracking_url);
    if let Some(u) = &url
        && !moves::tracking_url_ok(u)
    {
        errors.tracking_url = Some(TRACKING_URL_HTTPS.to_owned());
        url = None;
    }
    // Customers see a shipment only with both a carrier and a number.
    if errors.tracking_carrier.is_none() && errors.tracking_number.is_none() {
        match (&carrier, &number) {
            (None, Some(_)) => errors.tracking_carrier = Some("Enter the carrier of this tracking number.".into()),
            (Some(_), None) => errors.tracking_number = Some("Enter the tracking number too.".into()),
            (None, None) if url.is_some() || errors.tracking_url.is_some() => {
                errors.tracking_number = Some("A tracking link needs a carrier and a tracking number.".into());
            }
            _ => {}
        }
    }
    Tracking { carrier, number, url }
}

/// A workflow a new order may start in, with the stage it starts at.
pub struct WorkflowChoice {
    pub id: Uuid,
    pub name: String,
    pub first_stage: String,
}

/// Whose order it is and what the form is for.
pub enum FormMode {
    New { customer_id: Uuid, customer_name: String, workflows: Vec<WorkflowChoice> },
    Edit { order: EditedOrder },
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

impl EditedOrder {
    fn fields(&self) -> OrderFields {
        OrderFields {
            title: self.title.clone(),
            reference: self.reference.clone().unwrap_or_default(),
            expected_on: self.expected_on.map(|d| d.to_string()).unwrap_or_default(),
            tracking_carrier: self.tracking_carrier.clone().unwrap_or_default(),
            tracking_number: self.tracking_number.clone().unwrap_or_default(),
            tracking_url: self.tracking_url.clone().unwrap_or_default(),
            ..OrderFields::default()
        }
    }
}

/// One labelled text input with its hint and error, as the forms here draw it.
#[derive(TemplateSimple)]
#[template(path = "staff/_field.stpl")]
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub max: usize,
    pub hint: Option<&'a str>,
    pub error: Option<&'a str>,
    pub required: bool,
    pub autofocus: bool,
}

#[derive(TemplateSimple)]
#[template(path = "staff/order_form.stpl")]
struct OrderFormPage {
    shell: Shell,
    csrf_token: String,
    mode: FormMode,
    fields: OrderFields,
    errors: OrderErrors,
}

/// The field `name` of the order form, with what was typed and its error.
pub fn field<'a>(
    fields: &'a OrderFields,
    errors: &'a OrderErrors,
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    max: usize,
    hint: Option<&'a str>,
) -> Field<'a> {
    let (value, error) = match name {
        "number" => (&fields.number, &errors.number),
        "title" => (&fields.title, &errors.title),
        "reference" => (&fields.reference, &errors.reference),
        "expected_on" => (&fields.expected_on, &errors.expected_on),
        "external_ref" => (&fields.external_ref, &errors.external_ref),
        "tracking_carrier" => (&fields.tracking_carrier, &errors.tracking_carrier),
        "tracking_number" => (&fields.tracking_number, &errors.tracking_number),
        _ => (&fields.tracking_url, &errors.tracking_url),
    };
    Field {
        name,
        label,
        kind,
        value,
        max,
        hint,
        error: error.as_deref(),
        required: matches!(name, "number" | "title"),
        autofocus: errors.first() == Some(name),
    }
}

fn form_page(
    viewer: &Viewer,
    flash: Option<Flash>,
    mode: FormMode,
    fields: OrderFields,
    errors: OrderErrors,
) -> OrderFormPage {
    let title = match &mode {
        FormMode::New { customer_name, .. } => format!("New order for {customer_name}"),
        FormMode::Edit { order } => format!("Edit {}", order.number),
    };
    OrderFormPage {
        shell: Shell::page(viewer, title, Section::StaffOrders, flash),
        csrf_token: viewer.csrf_token.clone(),
        mode,
        fields,
        errors,
    }
}

/// The customer a new order is for, and the workflows it may start in; `None` if there is no such customer.
async fn new_mode(db: &Scope, customer: Uuid) -> Result<Option<FormMode>, DbError> {
    let Some(row) = db.query_opt("SELECT name FROM customers WHERE id = $1", &[&customer]).await? else {
        return Ok(None);
    };
    let workflows = db
        .query(
            "SELECT DISTINCT ON (lower(w.name), w.id) w.id, w.name, s.name AS first_stage \
             FROM workflows w JOIN workflow_stages s ON s.workflow_id = w.id \
             ORDER BY lower(w.name), w.id, s.position",
            &[],
        )
        .await?
        .iter()
        .map(|r| WorkflowChoice { id: r.get("id"), name: r.get("name"), first_stage: r.get("first_stage") })
        .collect();
    Ok(Some(FormMode::New { customer_id: customer, customer_name: row.get("name"), workflows }))
}

/// `ORD-1044` → (`ORD-`, `1044`); `None` when the number does not end in digits.
fn split_number(number: &str) -> Option<(&str, &str)> {
    let digits = number.len() - number.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    (digits > 0 && digits <= 30).then(|| number.split_at(number.len() - digits))
}

/// The next free number in the style of the customer's latest order (`ORD-1044` → `ORD-1045`,
/// `SHP-0099` → `SHP-0100`), or `ORD-1001` for a customer without numbered orders.
async fn suggest_number(db: &Scope, customer: Uuid) -> Result<String, DbError> {
    let latest: Option<String> = db
        .query_opt(
            "SELECT number FROM orders WHERE customer_id = $1 AND number ~ '[0-9]$' \
             ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&customer],
        )
        .await?
        .map(|r| r.get(0));
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
        .get(0);
    let next = highest.and_then(|h| h.parse::<u128>().ok()).unwrap_or(0).saturating_add(1);
    let suggestion = format!("{prefix}{next:0width$}", width = digits.len());
    Ok(if suggestion.chars().count() <= NUMBER_MAX { suggestion } else { String::new() })
}

pub async fn new_form(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let customer = parse_id(path)?;
    let mode = new_mode(&cx.db, customer).await?.ok_or(AppError::NotFound)?;
    // The workflow of the customer's latest order is the likeliest.
    let workflow: Option<Uuid> = cx
        .db
        .query_opt(
            "SELECT workflow_id FROM orders WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&customer],
        )
        .await?
        .map(|r| r.get(0));
    let fields = OrderFields {
        number: suggest_number(&cx.db, customer).await?,
        workflow_id: workflow.map(|w| w.to_string()).unwrap_or_default(),
        ..OrderFields::default()
    };
    cx.db.commit().await?;
    html(form_page(&cx.viewer, cx.flash, mode, fields, OrderErrors::default()))
}

pub const DUPLICATE_NUMBER: &str = "This customer already has an order with this number.";
pub const DUPLICATE_EXTERNAL_REF: &str = "Another order already has this external reference.";

/// Marks the number and external reference that are taken.
async fn check_unique(
    db: &Scope,
    customer: Uuid,
    number: &str,
    external_ref: Option<&str>,
    errors: &mut OrderErrors,
) -> Result<(), DbError> {
    if errors.number.is_none()
        && db
            .query_opt("SELECT 1 FROM orders WHERE customer_id = $1 AND number = $2", &[&customer, &number])
            .await?
            .is_some()
    {
        errors.number = Some(DUPLICATE_NUMBER.to_owned());
    }
    if let Some(external_ref) = external_ref.filter(|_| errors.external_ref.is_none())
        && db.query_opt("SELECT 1 FROM orders WHERE external_ref = $1", &[&external_ref]).await?.is_some()
    {
        errors.external_ref = Some(DUPLICATE_EXTERNAL_REF.to_owned());
    }
    Ok(())
}

pub async fn create(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(fields): CsrfForm<OrderFields>,
) -> Result<HttpResponse, AppError> {
    let customer = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let mode = new_mode(&db, customer).await?.ok_or(AppError::NotFound)?;
    let mut errors = OrderErrors::default();
    let number = take(required_text("order number", &fields.number, NUMBER_MAX), &mut errors.number);
    let details = check_details(&fields, &mut errors);
    let external_ref =
        take(optional_text("external reference", &fields.external_ref, REFERENCE_MAX), &mut errors.external_ref);
    let workflow = match &mode {
        FormMode::New { workflows, .. } => Uuid::parse_str(fields.workflow_id.trim())
            .ok()
            .and_then(|id| workflows.iter().find(|w| w.id == id))
            .map(|w| w.id),
        FormMode::Edit { .. } => None,
    };
    if workflow.is_none() {
        errors.workflow_id = Some("Choose the workflow this order goes through.".to_owned());
    }
    check_unique(&db, customer, &number, external_ref.as_deref(), &mut errors).await?;

    let mut created = None;
    if let (false, Some(workflow)) = (errors.any(), workflow) {
        let first = db
            .query_one(
                "SELECT id, name FROM workflow_stages WHERE workflow_id = $1 ORDER BY position LIMIT 1",
                &[&workflow],
            )
            .await?;
        let (stage_id, stage_name): (Uuid, String) = (first.get("id"), first.get("name"));
        // A number or external reference taken since the check above is refused like one taken before it.
        let row = db
            .query_opt(
                "INSERT INTO orders (customer_id, number, title, reference, external_ref, workflow_id, stage_id, \
                 expected_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &customer,
                    &number,
                    &details.title,
                    &details.reference,
                    &external_ref,
                    &workflow,
                    &stage_id,
                    &details.expected_on,
                ],
            )
            .await?;
        match row {
            Some(row) => created = Some((row.get::<_, Uuid>("id"), stage_id, stage_name)),
            None => check_unique(&db, customer, &number, external_ref.as_deref(), &mut errors).await?,
        }
    }
    let Some((id, stage_id, stage_name)) = created else {
        let page = form_page(&viewer, None, mode, fields, errors);
        db.commit().await?;
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    };
    db.execute(
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, actor_user_id, reached_at) \
         VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
        &[&id, &customer, &stage_id, &stage_name, &viewer.user_id],
    )
    .await?;
    log_order(&db, &viewer, customer, id, "order.created", serde_json::json!({ "number": number })).await?;
    db.commit().await?;
    let customer_name = match &mode {
        FormMode::New { customer_name, .. } => customer_name.as_str(),
        FormMode::Edit { .. } => "",
    };
    let message = format!("{number} created for {customer_name}, at {stage_name}.");
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), Flash::success(message)))
}

/// An activity entry about an order, which the order's customer may read: never a value staff keep to themselves.
async fn log_order(
    db: &Scope,
    viewer: &Viewer,
    customer: Uuid,
    order: Uuid,
    action: &str,
    details: serde_json::Value,
) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES ($1, $2, $3, $4, 'order', $5, $6)",
        &[&customer, &viewer.user_id, &viewer.email, &action, &order, &details],
    )
    .await?;
    Ok(())
}

/// The order as the edit form needs it; `lock` holds it until the transaction ends.
async fn edited(db: &Scope, id: Uuid, lock: bool) -> Result<Option<EditedOrder>, DbError> {
    let sql = format!(
        "SELECT o.id, o.number, o.customer_id, c.name AS customer_name, o.title, o.reference, o.expected_on, \
         o.tracking_carrier, o.tracking_number, o.tracking_url, o.status, s.name AS stage, s.terminal \
         FROM orders o JOIN customers c ON c.id = o.customer_id JOIN workflow_stages s ON s.id = o.stage_id \
         WHERE o.id = $1{}",
        if lock { " FOR UPDATE OF o" } else { "" }
    );
    Ok(db.query_opt(&sql, &[&id]).await?.map(|r| EditedOrder {
        id: r.get("id"),
        number: r.get("number"),
        customer_id: r.get("customer_id"),
        customer_name: r.get("customer_name"),
        title: r.get("title"),
        reference: r.get("reference"),
        expected_on: r.get("expected_on"),
        tracking_carrier: r.get("tracking_carrier"),
        tracking_number: r.get("tracking_number"),
        tracking_url: r.get("tracking_url"),
        status: r.get("status"),
        stage: r.get("stage"),
        terminal: r.get("terminal"),
    }))
}

pub async fn edit_form(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let order = edited(&cx.db, id, false).await?.ok_or(AppError::NotFound)?;
    cx.db.commit().await?;
    let fields = order.fields();
    html(form_page(&cx.viewer, cx.flash, FormMode::Edit { order }, fields, OrderErrors::default()))
}

pub async fn update(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(fields): CsrfForm<OrderFields>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let order = edited(&db, id, true).await?.ok_or(AppError::NotFound)?;
    let mut errors = OrderErrors::default();
    let details = check_details(&fields, &mut errors);
    let tracking = check_tracking(&fields, &mut errors);
    if errors.any() {
        db.commit().await?;
        let page = form_page(&viewer, None, FormMode::Edit { order }, fields, errors);
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    }
    let changed: Vec<&str> = [
        ("title", order.title != details.title),
        ("reference", order.reference != details.reference),
        ("expected_on", order.expected_on != details.expected_on),
        ("tracking_carrier", order.tracking_carrier != tracking.carrier),
        ("tracking_number", order.tracking_number != tracking.number),
        ("tracking_url", order.tracking_url != tracking.url),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    let to = format!("/staff/orders/{id}");
    if changed.is_empty() {
        db.commit().await?;
        return Ok(redirect_with_flash(&state, &to, Flash::info(format!("Nothing changed on {}.", order.number))));
    }
    db.execute(
        "UPDATE orders SET title = $2, reference = $3, expected_on = $4, tracking_carrier = $5, \
         tracking_number = $6, tracking_url = $7 WHERE id = $1",
        &[
            &id,
            &details.title,
            &details.reference,
            &details.expected_on,
            &tracking.carrier,
            &tracking.number,
            &tracking.url,
        ],
    )
    .await?;
    let log = serde_json::json!({ "number": order.number, "fields": changed });
    log_order(&db, &viewer, order.customer_id, id, "order.updated", log).await?;
    db.commit().await?;
    Ok(redirect_with_flash(&state, &to, Flash::success(format!("{} updated.", order.number))))
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusChange {
    Cancel,
    Reopen,
}

pub async fn cancel(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    change_status(state, cx, path, StatusChange::Cancel).await
}

pub async fn reopen(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    change_status(state, cx, path, StatusChange::Reopen).await
}

async fn change_status(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    change: StatusChange,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let order = edited(&db, id, true).await?.ok_or(AppError::NotFound)?;
    let number = &order.number;
    let flash = match (change, order.status.as_str()) {
        (StatusChange::Cancel, "open") => {
            db.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", &[&id]).await?;
            let details = serde_json::json!({ "number": number });
            log_order(&db, &viewer, order.customer_id, id, "order.cancelled", details).await?;
            Flash::success(format!("{number} cancelled."))
        }
        (StatusChange::Cancel, "cancelled") => Flash::info(format!("{number} was already cancelled.")),
        (StatusChange::Cancel, _) => Flash::error(format!(
            "{number} is completed; only open orders can be cancelled. Move it back to an earlier stage first."
        )),
        (StatusChange::Reopen, "cancelled") => {
            // An order at a stage that completes it is completed, not open.
            let status = if order.terminal { "completed" } else { "open" };
            db.execute("UPDATE orders SET status = $2 WHERE id = $1", &[&id, &status]).await?;
            let details = serde_json::json!({ "number": number, "status": status });
            log_order(&db, &viewer, order.customer_id, id, "order.reopened", details).await?;
            Flash::success(format!("{number} reopened ({status}, at {}).", order.stage))
        }
        (StatusChange::Reopen, _) => Flash::info(format!("{number} is not cancelled; nothing to reopen.")),
    };
    db.commit().await?;
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), flash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(1_781_234_567_123_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let cursor = Cursor { updated_at: at, id: Uuid::from_u128(7) };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::parse("nonsense"), None);
        assert_eq!(Cursor::parse("12_not-a-uuid"), None);
    }

    #[test]
    fn filters_read_what_links_write() {
        let query = ListQuery {
            customer: Some(Uuid::from_u128(1).to_string()),
            stage: Some(format!("s:{}", Uuid::from_u128(2))),
            status: Some("all".into()),
            q: Some("  50%_off ".into()),
            ..ListQuery::default()
        };
        let filters = Filters::parse(&query);
        assert_eq!(filters.at, At::Stage(Uuid::from_u128(2)));
        assert_eq!(filters.q, "50%_off");
        let again: ListQuery = serde_urlencoded::from_str(&filters.query()).unwrap_or_default();
        assert_eq!(Filters::parse(&again), filters);
        assert_eq!(At::parse("w:nope"), At::Any);
        assert_eq!(status_filter(Some("weird")), "open");
    }

    #[test]
    fn numbers_continue_the_customers_style() {
        assert_eq!(split_number("ORD-1044"), Some(("ORD-", "1044")));
        assert_eq!(split_number("1044"), Some(("", "1044")));
        assert_eq!(split_number("ORD-"), None);
        assert_eq!(numbers(vec!["B".into(), "A".into()]), "A, B");
        let many: Vec<String> = (0..25).map(|i| format!("N{i:02}")).collect();
        assert!(numbers(many).ends_with("and 5 more"));
    }

    #[test]
    fn tracking_links_must_be_https() {
        let mut errors = OrderErrors::default();
        let fields = OrderFields {
            tracking_carrier: "DHL".into(),
            tracking_number: "JD01".into(),
            tracking_url: "http://dhl.example/track".into(),
            ..OrderFields::default()
        };
        check_tracking(&fields, &mut errors);
        assert_eq!(errors.tracking_url.as_deref(), Some(TRACKING_URL_HTTPS));
        let mut errors = OrderErrors::default();
        let fields = OrderFields { tracking_number: "JD01".into(), ..OrderFields::default() };
        check_tracking(&fields, &mut errors);
        assert!(errors.tracking_carrier.is_some());
        assert_eq!(optional_date("2026-02-30"), Err("Enter a date such as 2026-06-30.".to_owned()));
        assert!(matches!(optional_date("2026-02-28"), Ok(Some(_))));
    }
}
