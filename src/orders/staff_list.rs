//! Every customer's orders for staff: filters, keyset pages newest first, the
//! capped count, and what the list's forms offer (customers, workflows' stages).

use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::keyset::Cursor;
use crate::db::{DbError, Query, Scope};
use crate::orders::OrderRow;
use crate::orders::detail::Stage;
use crate::web::encode_query_value;

/// Orders per page of the list.
pub const PAGE_SIZE: usize = 50;
/// Beyond this many matches the list says "more than 1,000" instead of counting them all.
pub const COUNT_CAP: i64 = 1000;

/// Where in the workflows the list looks: anywhere, one workflow, or one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Any,
    Workflow(Uuid),
    Stage(Uuid),
}

impl At {
    /// `w:<workflow id>` or `s:<stage id>`; anything else is no filter.
    pub fn parse(value: &str) -> Self {
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

impl Filters {
    /// The filters from a link's `customer`, `stage`, `status` and `q`.
    pub fn from_params(customer: Option<&str>, stage: Option<&str>, status: Option<&str>, q: Option<&str>) -> Self {
        Filters {
            customer: customer.and_then(|c| Uuid::parse_str(c.trim()).ok()),
            at: stage.map_or(At::Any, At::parse),
            status: status.map(str::trim).and_then(crate::orders::status_filter).unwrap_or("open"),
            q: q.unwrap_or("").trim().chars().take(100).collect(),
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

    /// ` WHERE TRUE AND …`: the conditions of the set filters, every value a parameter.
    fn apply(&self, q: &mut Query) {
        q.push_sql(" WHERE TRUE");
        if let Some(customer) = self.customer {
            q.and("o.customer_id =", customer);
        }
        match self.at {
            At::Any => {}
            At::Workflow(id) => {
                q.and("o.workflow_id =", id);
            }
            At::Stage(id) => {
                q.and("o.stage_id =", id);
            }
        }
        if self.status != "all" {
            q.and("o.status =", self.status);
        }
        if !self.q.is_empty() {
            // The expression of the trigram index `orders_search_idx`, so the index serves it.
            q.and("portal_order_search_text(o.number, o.title, o.reference) ILIKE", crate::db::like_pattern(&self.q));
        }
    }
}

/// A position in the list: the `(updated_at, id)` of an order.
pub type Position = (OffsetDateTime, Uuid);

fn position(row: &ListRow) -> Position {
    (row.row.updated_at, row.row.id)
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

fn list_row(row: &Row) -> Result<ListRow, DbError> {
    Ok(ListRow {
        row: OrderRow::try_from_row(row)?,
        customer_id: row.try_get("customer_id")?,
        customer_name: row.try_get("customer_name")?,
    })
}

fn list_rows(rows: &[Row]) -> Result<Vec<ListRow>, DbError> {
    rows.iter().map(list_row).collect()
}

/// Which side of a position: older (further down the list) or newer.
#[derive(Clone, Copy)]
enum Side {
    Older,
    Newer,
}

fn beyond(q: &mut Query, side: Side, (at, id): Position) {
    q.push_sql(match side {
        Side::Older => " AND (o.updated_at, o.id) < (",
        Side::Newer => " AND (o.updated_at, o.id) > (",
    });
    q.bind(at).push_sql(", ").bind(id).push_sql(")");
}

/// Up to `limit` orders matching `filters` beyond `bound`, newest first (or oldest first, `ascending`).
async fn fetch(
    db: &Scope,
    filters: &Filters,
    bound: Option<(Side, Position)>,
    ascending: bool,
    limit: usize,
) -> Result<Vec<ListRow>, DbError> {
    let mut q = Query::new(LIST_SELECT);
    filters.apply(&mut q);
    if let Some((side, at)) = bound {
        beyond(&mut q, side, at);
    }
    // Served by `orders_updated_idx (updated_at, id)`, read forwards or backwards.
    q.push_sql(if ascending {
        " ORDER BY o.updated_at ASC, o.id ASC LIMIT "
    } else {
        " ORDER BY o.updated_at DESC, o.id DESC LIMIT "
    });
    q.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    list_rows(&q.fetch(db).await?)
}

/// Whether an order matching `filters` lies beyond `at`.
async fn any_beyond(db: &Scope, filters: &Filters, side: Side, at: Position) -> Result<bool, DbError> {
    let mut q = Query::new("SELECT EXISTS (SELECT 1 FROM orders o");
    filters.apply(&mut q);
    beyond(&mut q, side, at);
    q.push_sql(")");
    Ok(q.fetch_one(db).await?.try_get(0)?)
}

/// How many orders match, counting no further than just past the cap.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn count_capped(db: &Scope, filters: &Filters) -> Result<i64, DbError> {
    let mut q = Query::new("SELECT count(*) FROM (SELECT 1 FROM orders o");
    filters.apply(&mut q);
    q.push_sql(" LIMIT ").bind(COUNT_CAP + 1).push_sql(") AS matching");
    Ok(q.fetch_one(db).await?.try_get(0)?)
}

/// One page of the list and where its neighbours start.
pub struct Listing {
    pub orders: Vec<ListRow>,
    pub newer: Option<Position>,
    pub older: Option<Position>,
    pub first: bool,
}

/// The page at `at`, in the list's order (newest first): `After` a position is older, `Before` it newer.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn listing(db: &Scope, filters: &Filters, at: &Cursor<OffsetDateTime>) -> Result<Listing, DbError> {
    let older_of = |rows: &mut Vec<ListRow>| {
        if rows.len() > PAGE_SIZE {
            rows.truncate(PAGE_SIZE);
            rows.last().map(position)
        } else {
            None
        }
    };
    match *at {
        Cursor::First => {
            let mut orders = fetch(db, filters, None, false, PAGE_SIZE + 1).await?;
            let older = older_of(&mut orders);
            Ok(Listing { orders, newer: None, older, first: true })
        }
        Cursor::After(updated_at, id) => {
            let cursor = (updated_at, id);
            let mut orders = fetch(db, filters, Some((Side::Older, cursor)), false, PAGE_SIZE + 1).await?;
            let older = older_of(&mut orders);
            let top = orders.first().map_or(cursor, position);
            let newer = any_beyond(db, filters, Side::Newer, top).await?.then_some(top);
            Ok(Listing { orders, newer, older, first: false })
        }
        Cursor::Before(updated_at, id) => {
            let cursor = (updated_at, id);
            let mut orders = fetch(db, filters, Some((Side::Newer, cursor)), true, PAGE_SIZE + 1).await?;
            if orders.len() <= PAGE_SIZE {
                // Nothing newer beyond this page: that is the first page, shown full.
                return Box::pin(listing(db, filters, &Cursor::First)).await;
            }
            orders.truncate(PAGE_SIZE);
            orders.reverse();
            let newer = orders.first().map(position);
            let bottom = orders.last().map_or(cursor, position);
            let older = any_beyond(db, filters, Side::Older, bottom).await?.then_some(bottom);
            Ok(Listing { orders, newer, older, first: false })
        }
    }
}

/// These orders (ticked, but not on the page shown), newest first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rows_by_id(db: &Scope, ids: &[Uuid]) -> Result<Vec<ListRow>, DbError> {
    let mut q = Query::new(LIST_SELECT);
    q.push_sql(" WHERE o.id = ANY(").bind(ids.to_vec()).push_sql(") ORDER BY o.updated_at DESC, o.id DESC");
    list_rows(&q.fetch(db).await?)
}

/// Every customer, for the customer filter.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn customers(db: &Scope) -> Result<Vec<(Uuid, String)>, DbError> {
    db.query("SELECT id, name FROM customers ORDER BY lower(name), id", &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect()
}

/// A workflow and its stages, for the grouped stage `<select>`s.
pub struct WorkflowStages {
    pub id: Uuid,
    pub name: String,
    pub stages: Vec<Stage>,
}

#[tracing::instrument(level = "debug", skip_all)]
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
        let workflow: Uuid = r.try_get("workflow_id")?;
        let stage = Stage::try_from_row(r)?;
        match out.last_mut() {
            Some(last) if last.id == workflow => last.stages.push(stage),
            _ => out.push(WorkflowStages { id: workflow, name: r.try_get("workflow")?, stages: vec![stage] }),
        }
    }
    Ok(out)
}

/// The stage a bulk move names, with its workflow's name: `(stage name, workflow name)`.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %id))]
pub async fn stage_with_workflow(db: &Scope, id: Uuid) -> Result<Option<(String, String)>, DbError> {
    let row = db
        .query_opt(
            "SELECT s.name, w.name AS workflow FROM workflow_stages s JOIN workflows w ON w.id = s.workflow_id \
             WHERE s.id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| Ok((r.try_get("name")?, r.try_get("workflow")?))).transpose()
}
