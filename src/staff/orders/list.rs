//! The staff order list: every customer's orders, filtered, in keyset pages
//! newest first, with a bulk move of the ticked ones.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::Scope;
use crate::db::keyset::{self, Cursor, Spelling};
use crate::format;
use crate::orders::moves;
use crate::orders::staff_list::{self, COUNT_CAP, Filters, ListRow, WorkflowStages};
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, html_with_status, redirect_with_flash,
};

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

fn parse_filters(query: &ListQuery) -> Filters {
    Filters::from_params(query.customer.as_deref(), query.stage.as_deref(), query.status.as_deref(), query.q.as_deref())
}

/// Which page: the list runs newest first, so `before=` (older than a position) is further
/// down the list, [`Cursor::After`] it, and `after=` (newer) is [`Cursor::Before`] it.
fn parse_page(query: &ListQuery) -> Cursor<OffsetDateTime> {
    Cursor::from_links(Spelling::Underscore, query.before.as_deref(), query.after.as_deref())
}

fn link(position: (OffsetDateTime, Uuid)) -> String {
    keyset::encode(Spelling::Underscore, &position.0, position.1)
}

/// The page's own parameter, for the bulk form's way back.
fn page_query(at: &Cursor<OffsetDateTime>) -> String {
    match at {
        Cursor::First => String::new(),
        Cursor::After(updated_at, id) => format!("&before={}", link((*updated_at, *id))),
        Cursor::Before(updated_at, id) => format!("&after={}", link((*updated_at, *id))),
    }
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
    if n == 1 { format!("1 {one}") } else { format!("{} {many}", format::group(n)) }
}

fn total_label(count: i64) -> String {
    if count > COUNT_CAP {
        format!("More than {} orders", format::group(usize::try_from(COUNT_CAP).unwrap_or_default()))
    } else {
        plural(usize::try_from(count).unwrap_or_default(), "order", "orders")
    }
}

async fn list_page(
    db: &Scope,
    viewer: &Viewer,
    flash: Option<Flash>,
    filters: Filters,
    at: Cursor<OffsetDateTime>,
    bulk: BulkForm,
) -> Result<OrdersPage, AppError> {
    let listing = staff_list::listing(db, &filters, &at).await?;
    let total = staff_list::count_capped(db, &filters).await?;
    let customers = staff_list::customers(db).await?;
    let workflows = staff_list::workflows_with_stages(db).await?;
    let shown: HashSet<Uuid> = listing.orders.iter().map(|o| o.row.id).collect();
    let missing: Vec<Uuid> = bulk.selected.iter().copied().filter(|id| !shown.contains(id)).collect();
    let extra = if missing.is_empty() { Vec::new() } else { staff_list::rows_by_id(db, &missing).await? };
    let base = filters.query();
    Ok(OrdersPage {
        shell: Shell::page(viewer, "Orders", Section::StaffOrders, flash),
        csrf_token: viewer.csrf_token.clone(),
        script: crate::web::assets::url("staff-orders.js"),
        total: total_label(total),
        first: listing.first,
        newer: listing.newer.map(|c| format!("/staff/orders?{base}&after={}", link(c))),
        older: listing.older.map(|c| format!("/staff/orders?{base}&before={}", link(c))),
        back: format!("{base}{}", page_query(&at)),
        filters,
        customers,
        workflows,
        orders: listing.orders,
        extra,
        bulk,
    })
}

pub async fn index(cx: StaffScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let filters = parse_filters(&query);
    let at = parse_page(&query);
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
    let (filters, at) = (parse_filters(&back), parse_page(&back));
    let StaffScope { viewer, db, .. } = cx;
    let customer_note = moves::clean_note(&input.customer_note);
    let internal_note = moves::clean_note(&input.internal_note);
    let stage_id = Uuid::parse_str(input.stage_id.trim()).ok();
    let target = match stage_id {
        Some(id) => staff_list::stage_with_workflow(&db, id).await?.map(|(name, workflow)| (id, name, workflow)),
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
            format::group(input.orders.len())
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

    let actor = super::actor(&viewer);
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
    let back = format!("/staff/orders?{}{}", filters.query(), page_query(&at));
    Ok(redirect_with_flash(&state, &back, Flash::success(message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::staff_list::At;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(1_781_234_567_123_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let cursor = Cursor::After(at, Uuid::from_u128(7));
        let query = ListQuery { before: Some(link((at, Uuid::from_u128(7)))), ..ListQuery::default() };
        assert_eq!(parse_page(&query), cursor);
        assert_eq!(parse_page(&ListQuery { before: Some("nonsense".into()), ..ListQuery::default() }), Cursor::First);
        assert_eq!(
            parse_page(&ListQuery { after: Some("12_not-a-uuid".into()), ..ListQuery::default() }),
            Cursor::First
        );
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
        let filters = parse_filters(&query);
        assert_eq!(filters.at, At::Stage(Uuid::from_u128(2)));
        assert_eq!(filters.q, "50%_off");
        let again: ListQuery = serde_urlencoded::from_str(&filters.query()).unwrap_or_default();
        assert_eq!(parse_filters(&again), filters);
        assert_eq!(At::parse("w:nope"), At::Any);
        let weird = ListQuery { status: Some("weird".into()), ..ListQuery::default() };
        assert_eq!(parse_filters(&weird).status, "open");
    }

    #[test]
    fn numbers_continue_the_customers_style() {
        assert_eq!(numbers(vec!["B".into(), "A".into()]), "A, B");
        let many: Vec<String> = (0..25).map(|i| format!("N{i:02}")).collect();
        assert!(numbers(many).ends_with("and 5 more"));
    }
}
