//! The customer's orders list: filters, sorts and keyset pages that cost the
//! same on page 1 and page 4,000, however many orders the customer has.
//!
//! A page is found from the last row of the one before (`after`) or the first
//! row of the one after (`before`), never by counting rows to skip; the sort key
//! and the id ride in the link. The total is counted only up to a cap.

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::db::{DbError, Query, Scope};
use crate::orders::OrderRow;

pub const PAGE_SIZE: usize = 25;
/// Totals above this show as "1,000+": counting 100,000 rows on every page view buys nothing.
pub const COUNT_CAP: i64 = 1000;

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

/// Where a page starts: after a row, before a row, or at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    First,
    After(String, Uuid),
    Before(String, Uuid),
}

impl Cursor {
    /// `key~id`, as the links carry it. Anything malformed starts at the top.
    pub fn parse(after: Option<&str>, before: Option<&str>) -> Cursor {
        let split = |s: &str| {
            let (key, id) = s.rsplit_once('~')?;
            let id = Uuid::try_parse(id).ok()?;
            (!key.is_empty() && key.len() <= 64).then(|| (key.to_owned(), id))
        };
        if let Some((key, id)) = after.and_then(split) {
            Cursor::After(key, id)
        } else if let Some((key, id)) = before.and_then(split) {
            Cursor::Before(key, id)
        } else {
            Cursor::First
        }
    }
}

pub fn encode(key: &str, id: Uuid) -> String {
    format!("{key}~{id}")
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
    let ids: Vec<Uuid> = db
        .query("SELECT portal_order_search($1, $2)", &[&pattern, &(SEARCH_IDS_MAX + 1)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(if ids.len() > SEARCH_IDS_MAX as usize { Search::Pattern(pattern) } else { Search::Ids(ids) })
}

/// The WHERE clause every part of the page shares. The customer_id condition
/// repeats what row-level security enforces, so the planner picks the indexes.
fn filtered(filters: &Filters, search: &Search) -> Query {
    let mut q = Query::default();
    let customer = q.bind(filters.customer);
    q.sql = format!(" WHERE o.customer_id = {customer}");
    if filters.status != "all" {
        let status = q.bind(filters.status.to_owned());
        q.sql.push_str(&format!(" AND o.status = {status}"));
    }
    if let Some(stage) = filters.stage {
        let stage = q.bind(stage);
        q.sql.push_str(&format!(" AND o.stage_id = {stage}"));
    }
    match search {
        Search::None => {}
        Search::Ids(ids) => {
            let ids = q.bind(ids.clone());
            q.sql.push_str(&format!(" AND o.id = ANY({ids})"));
        }
        Search::Pattern(pattern) => {
            let pattern = q.bind(pattern.clone());
            q.sql.push_str(&format!(" AND portal_order_search_text(o.number, o.title, o.reference) ILIKE {pattern}"));
        }
    }
    q
}

pub async fn load(db: &Scope, filters: &Filters, cursor: &Cursor) -> Result<Page, DbError> {
    let sort = filters.sort;
    let search = search(db, &filters.search).await?;
    let unfiltered = filters.status == "all" && filters.stage.is_none();
    // Thousands match and nothing else narrows them: more than the cap, without counting.
    let uncounted = matches!(search, Search::Pattern(_)) && unfiltered;
    let mut count = filtered(filters, &search);
    count.sql = format!("SELECT count(*) FROM (SELECT 1 FROM orders o{} LIMIT {}) capped", count.sql, COUNT_CAP + 1);
    let total = async {
        if uncounted {
            return Ok(COUNT_CAP + 1);
        }
        Ok::<i64, DbError>(db.query_one(&count.sql, &count.refs()).await?.get(0))
    };

    let mut q = filtered(filters, &search);
    // Reading backwards (towards newer pages) flips the comparison and the order; rows are reversed after.
    let backwards = matches!(cursor, Cursor::Before(..));
    let edge = match cursor {
        Cursor::First => None,
        // A key that does not parse for this sort (tampered, or from another sort) starts at the top.
        Cursor::After(key, id) | Cursor::Before(key, id) => sort.parse_key(key).map(|key| (key, *id)),
    };
    if let Some((key, id)) = edge {
        let forward_less = sort.descending() != backwards;
        let op = if forward_less { "<" } else { ">" };
        let key = match key {
            Key::Time(at) => q.bind(at),
            Key::Date(date) => format!("coalesce({}::date, 'infinity'::date)", q.bind(date)),
            Key::Text(text) => q.bind(text),
        };
        if sort.tie_break() {
            let id = q.bind(id);
            q.sql.push_str(&format!(" AND ({}, o.id) {op} ({key}, {id})", sort.key()));
        } else {
            q.sql.push_str(&format!(" AND {} {op} {key}", sort.key()));
        }
    }
    let direction = if sort.descending() != backwards { "DESC" } else { "ASC" };
    let order = if sort.tie_break() {
        format!("{} {direction}, o.id {direction}", sort.key())
    } else {
        format!("{} {direction}", sort.key())
    };
    let sql = format!("{}{} ORDER BY {order} LIMIT {}", OrderRow::SELECT, q.sql, PAGE_SIZE + 1);
    // The count and the page are sent together: one round trip to the database, not two.
    let params = q.refs();
    let (total, mut rows) = tokio::try_join!(total, db.query(&sql, &params))?;
    let more = rows.len() > PAGE_SIZE;
    rows.truncate(PAGE_SIZE);
    if backwards {
        rows.reverse();
    }
    let rows: Vec<OrderRow> = rows.iter().map(OrderRow::from_row).collect();
    let cursor_of = |row: &OrderRow| encode(&sort.key_of(row), row.id);
    let (has_newer, has_older) = match cursor {
        Cursor::First => (false, more),
        Cursor::After(..) => (true, more),
        Cursor::Before(..) => (more, true),
    };
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
        let workflow: Uuid = row.get("workflow_id");
        if groups.last().is_none_or(|(id, _)| *id != workflow) {
            groups.push((workflow, StageGroup { workflow: row.get("workflow"), stages: Vec::new() }));
        }
        if let Some((_, group)) = groups.last_mut() {
            group.stages.push((row.get("id"), row.get("name")));
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
