//! The customer's orders list: filters, sorts and keyset pages that cost the
//! same on page 1 and page 4,000, however many orders the customer has.
//!
//! A page is found from the last row of the one before (`after`) or the first
//! row of the one after (`before`), never by counting rows to skip; the sort key
//! and the id ride in the link. The total is counted only up to a cap.

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::keyset::{self, Spelling};
use crate::db::{DbError, Query, Scope};
use crate::orders::OrderRow;

pub const PAGE_SIZE: usize = 25;
/// Totals above this show as "1,000+": counting 100,000 rows on every page view buys nothing.
pub const COUNT_CAP: i64 = 1000;
/// How far the count reads: one row past the cap.
const COUNT_CAP_ROWS: usize = COUNT_CAP as usize + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Updated,
    Expected,
    Number,
}

impl Sort {
    pub const ALL: [Sort; 3] = [Sort::Updated, Sort::Expected, Sort::Number];

    pub fn parse(s: Option<&str>) -> Sort {
        match s {
            Some("expected") => Sort::Expected,
            Some("number") => Sort::Number,
            _ => Sort::Updated,
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Sort::Updated => "updated",
            Sort::Expected => "expected",
            Sort::Number => "number",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Updated => "Last update, newest first",
            Sort::Expected => "Expected date, soonest first",
            Sort::Number => "Order number",
        }
    }

    /// The key as SQL, each matching an index that starts with `customer_id`.
    fn key(self) -> &'static str {
        match self {
            Sort::Updated => "o.updated_at",
            Sort::Expected => "coalesce(o.expected_on, 'infinity'::date)",
            Sort::Number => "o.number",
        }
    }

    /// The edge row's sort key as a page link carries it: typed values written by
    /// us, so a tampered one fails to parse here instead of in PostgreSQL.
    fn key_of(self, row: &OrderRow) -> String {
        match self {
            Sort::Updated => row.updated_at.unix_timestamp_nanos().to_string(),
            Sort::Expected => row.expected_on.map_or_else(|| "none".to_owned(), |d| d.to_julian_day().to_string()),
            Sort::Number => row.number.clone(),
        }
    }

    fn parse_key(self, key: &str) -> Option<Key> {
        match self {
            Sort::Updated => {
                key.parse::<i128>().ok().and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok()).map(Key::Time)
            }
            Sort::Expected if key == "none" => Some(Key::Date(None)),
            Sort::Expected => {
                key.parse::<i32>().ok().and_then(|n| Date::from_julian_day(n).ok()).map(|d| Key::Date(Some(d)))
            }
            Sort::Number => Some(Key::Text(key.to_owned())),
        }
    }

    fn descending(self) -> bool {
        self == Sort::Updated
    }

    /// Order numbers are unique per customer, so the id adds nothing and would
    /// keep the planner from reading the (customer_id, number) index in order.
    fn tie_break(self) -> bool {
        self != Sort::Number
    }
}

/// A sort key, typed for binding.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Time(OffsetDateTime),
    /// `None`: no expected date, which sorts after every date.
    Date(Option<Date>),
    Text(String),
}

impl Key {
    /// Binds the key as the sort's SQL expression compares it.
    fn bind(self, q: &mut Query) {
        match self {
            Key::Time(at) => {
                q.bind(at);
            }
            Key::Date(date) => {
                q.push_sql("coalesce(").bind(date).push_sql("::date, 'infinity'::date)");
            }
            Key::Text(text) => {
                q.bind(text);
            }
        }
    }
}

/// Where a page starts: the one keyset cursor, spelled `key~id` in links.
use crate::db::keyset::Cursor;

/// A row's position as the page links carry it.
pub fn encode(key: &str, id: Uuid) -> String {
    keyset::encode(Spelling::Tilde, &key.to_owned(), id)
}

pub struct Filters {
    pub customer: Uuid,
    /// `open`, `completed`, `cancelled` or `all`.
    pub status: &'static str,
    pub stage: Option<Uuid>,
    pub search: String,
    pub sort: Sort,
}

/// A page of rows, with the cursors of the pages either side (when they exist).
pub struct Page {
    pub rows: Vec<OrderRow>,
    pub newer: Option<String>,
    pub older: Option<String>,
    /// How many orders match, up to [`COUNT_CAP`] + 1.
    pub total: i64,
}

/// How a search is applied. Under a customer's row-level security the trigram
/// index is only reachable through `portal_order_search` (see V6__orders.sql),
/// which is the fast way when few orders match; when thousands match, reading
/// the list in order and filtering as it goes finds a page after a few rows.
enum Search {
    None,
    /// These orders, and no others, match.
    Ids(Vec<Uuid>),
    /// More than [`SEARCH_IDS_MAX`] match: filter in line.
    Pattern(String),
}

/// The most matching ids fetched before switching to filtering in line.
const SEARCH_IDS_MAX: i32 = 2000;

async fn search(db: &Scope, text: &str) -> Result<Search, DbError> {
    if text.is_empty() {
        return Ok(Search::None);
    }
    let pattern = crate::db::like_pattern(text);
    let mut ids: Vec<Uuid> = Vec::new();
    for row in db.query("SELECT portal_order_search($1, $2)", &[&pattern, &(SEARCH_IDS_MAX + 1)]).await? {
        ids.push(row.try_get(0)?);
    }
    Ok(if ids.len() > SEARCH_IDS_MAX as usize { Search::Pattern(pattern) } else { Search::Ids(ids) })
}

/// The WHERE clause every part of the page shares, appended to `q`. The customer_id
/// condition repeats what row-level security enforces, so the planner picks the indexes.
fn filtered(q: &mut Query, filters: &Filters, search: &Search) {
    q.push_sql(" WHERE o.customer_id = ").bind(filters.customer);
    if filters.status != "all" {
        q.and("o.status =", filters.status.to_owned());
    }
    if let Some(stage) = filters.stage {
        q.and("o.stage_id =", stage);
    }
    match search {
        Search::None => {}
        Search::Ids(ids) => {
            q.push_sql(" AND o.id = ANY(").bind(ids.clone()).push_sql(")");
        }
        Search::Pattern(pattern) => {
            q.and("portal_order_search_text(o.number, o.title, o.reference) ILIKE", pattern.clone());
        }
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn load(db: &Scope, filters: &Filters, cursor: &Cursor) -> Result<Page, DbError> {
    let sort = filters.sort;
    let search = search(db, &filters.search).await?;
    let unfiltered = filters.status == "all" && filters.stage.is_none();
    // Thousands match and nothing else narrows them: more than the cap, without counting.
    let uncounted = matches!(search, Search::Pattern(_)) && unfiltered;
    let mut count = Query::new("SELECT count(*) FROM (SELECT 1 FROM orders o");
    filtered(&mut count, filters, &search);
    count.limit(COUNT_CAP_ROWS).push_sql(") capped");
    let total = async {
        if uncounted {
            return Ok(COUNT_CAP + 1);
        }
        Ok::<i64, DbError>(count.fetch_one(db).await?.try_get(0)?)
    };

    let mut q = Query::new(OrderRow::SELECT);
    filtered(&mut q, filters, &search);
    // Reading backwards (towards newer pages) flips the comparison and the order; rows are reversed after.
    let backwards = cursor.backwards();
    let edge = match cursor {
        Cursor::First => None,
        // A key that does not parse for this sort (tampered, or from another sort) starts at the top.
        Cursor::After(key, id) | Cursor::Before(key, id) => sort.parse_key(key).map(|key| (key, *id)),
    };
    if let Some((key, id)) = edge {
        // Ascending sorts read forwards with `>`, descending ones with `<`; backwards flips it.
        let forward_less = sort.descending() != backwards;
        let op = if forward_less { " < " } else { " > " };
        if sort.tie_break() {
            q.push_sql(" AND (").push_sql(sort.key()).push_sql(", o.id)").push_sql(op).push_sql("(");
            key.bind(&mut q);
            q.push_sql(", ").bind(id).push_sql(")");
        } else {
            q.push_sql(" AND ").push_sql(sort.key()).push_sql(op);
            key.bind(&mut q);
        }
    }
    let direction = if sort.descending() != backwards { " DESC" } else { " ASC" };
    q.push_sql(" ORDER BY ").push_sql(sort.key()).push_sql(direction);
    if sort.tie_break() {
        q.push_sql(", o.id").push_sql(direction);
    }
    q.limit(PAGE_SIZE + 1);
    // The count and the page are sent together: one round trip to the database, not two.
    let (total, mut rows) = tokio::try_join!(total, q.fetch(db))?;
    let more = rows.len() > PAGE_SIZE;
    rows.truncate(PAGE_SIZE);
    if backwards {
        rows.reverse();
    }
    let rows = rows.iter().map(OrderRow::try_from_row).collect::<Result<Vec<_>, _>>()?;
    let cursor_of = |row: &OrderRow| encode(&sort.key_of(row), row.id);
    let (has_newer, has_older) = cursor.neighbours(more);
    Ok(Page {
        newer: rows.first().filter(|_| has_newer).map(cursor_of),
        older: rows.last().filter(|_| has_older).map(cursor_of),
        rows,
        total,
    })
}

/// A workflow the customer has orders in, with its stages, for the stage filter.
pub struct StageGroup {
    pub workflow: String,
    pub stages: Vec<(Uuid, String)>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn stage_groups(db: &Scope, customer: Uuid) -> Result<Vec<StageGroup>, DbError> {
    let rows = db
        .query(
            "SELECT w.id AS workflow_id, w.name AS workflow, s.id, s.name FROM workflows w \
             JOIN workflow_stages s ON s.workflow_id = w.id \
             WHERE w.id IN (SELECT s2.workflow_id FROM workflow_stages s2 WHERE EXISTS \
                            (SELECT 1 FROM orders o WHERE o.customer_id = $1 AND o.stage_id = s2.id)) \
             ORDER BY w.name, w.id, s.position",
            &[&customer],
        )
        .await?;
    let mut groups: Vec<(Uuid, StageGroup)> = Vec::new();
    for row in &rows {
        let workflow: Uuid = row.try_get("workflow_id")?;
        if groups.last().is_none_or(|(id, _)| *id != workflow) {
            groups.push((workflow, StageGroup { workflow: row.try_get("workflow")?, stages: Vec::new() }));
        }
        if let Some((_, group)) = groups.last_mut() {
            group.stages.push((row.try_get("id")?, row.try_get("name")?));
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = Uuid::from_u128(9);
        let key = "2026-11-24 10:00:00.123456+00";
        assert_eq!(Cursor::parse(Some(&encode(key, id)), None), Cursor::After(key.into(), id));
        assert_eq!(Cursor::parse(None, Some(&encode("ORD-1~x", id))), Cursor::Before("ORD-1~x".into(), id));
        for bad in ["", "~", "abc", &format!("~{id}"), "key~not-a-uuid", &format!("{}~{id}", "k".repeat(65))] {
            assert_eq!(Cursor::parse(Some(bad), None), Cursor::First, "{bad}");
        }
    }

    #[test]
    fn keys_parse_only_as_their_sort_writes_them() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000).unwrap();
        assert_eq!(Sort::Updated.parse_key("1764000000123456000"), Some(Key::Time(at)));
        let date = Date::from_julian_day(2_461_000).unwrap();
        assert_eq!(Sort::Expected.parse_key("2461000"), Some(Key::Date(Some(date))));
        assert_eq!(Sort::Expected.parse_key("none"), Some(Key::Date(None)));
        for bad in ["x", "2025-08-10 11:23:20+00", "99999999999999999999999999999999999999"] {
            assert_eq!(Sort::Updated.parse_key(bad), None, "{bad}");
            assert_eq!(Sort::Expected.parse_key(bad), None, "{bad}");
        }
        assert_eq!(Sort::Number.parse_key("ORD-1~x"), Some(Key::Text("ORD-1~x".into())));
    }

    #[test]
    fn sorts_parse_with_a_default() {
        assert_eq!(Sort::parse(None), Sort::Updated);
        assert_eq!(Sort::parse(Some("nonsense")), Sort::Updated);
        for sort in Sort::ALL {
            assert_eq!(Sort::parse(Some(sort.param())), sort);
        }
    }
}
