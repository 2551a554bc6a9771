//! The document library: newest first, filtered by type, order, date and tag,
//! searched by words, in keyset pages that cost the same at 50,000 documents.
//!
//! Customers' pages and the staff's share this; a customer's filter carries its
//! customer id (repeating row-level security, so the planner picks the index),
//! the staff's may leave it out.

use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::keyset::{self, Cursor, Spelling};
use crate::db::{DbError, Query, Scope};

pub const PAGE_SIZE: usize = 25;
pub const COUNT_CAP: i64 = 1000;
/// The most matching ids fetched through the search function before filtering in line instead.
const SEARCH_IDS_MAX: i32 = 2000;

/// One row of the library, with its latest version.
pub struct DocumentRow {
    pub id: Uuid,
    pub customer: String,
    pub title: String,
    pub doc_type: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub order: Option<(Uuid, String)>,
    pub latest: Option<LatestVersion>,
    pub updated_at: OffsetDateTime,
}

pub struct LatestVersion {
    pub version: i32,
    pub file_name: String,
    pub size_bytes: i64,
}

impl DocumentRow {
    pub const SELECT: &'static str = "SELECT d.id, c.name AS customer_name, d.title, d.doc_type, d.tags, d.origin, \
        d.updated_at, d.order_id, o.number AS order_number, v.version, v.file_name, v.size_bytes \
        FROM documents d \
        JOIN customers c ON c.id = d.customer_id \
        LEFT JOIN orders o ON o.id = d.order_id \
        LEFT JOIN LATERAL (SELECT version, file_name, size_bytes FROM document_versions dv \
          WHERE dv.document_id = d.id ORDER BY dv.version DESC LIMIT 1) v ON true";

    pub fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let order =
            match (row.try_get::<_, Option<Uuid>>("order_id")?, row.try_get::<_, Option<String>>("order_number")?) {
                (Some(id), Some(number)) => Some((id, number)),
                _ => None,
            };
        let latest = match row.try_get::<_, Option<i32>>("version")? {
            Some(version) => Some(LatestVersion {
                version,
                file_name: row.try_get("file_name")?,
                size_bytes: row.try_get("size_bytes")?,
            }),
            None => None,
        };
        Ok(DocumentRow {
            id: row.try_get("id")?,
            customer: row.try_get("customer_name")?,
            title: row.try_get("title")?,
            doc_type: row.try_get("doc_type")?,
            tags: row.try_get("tags")?,
            origin: row.try_get("origin")?,
            order,
            latest,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[derive(Default)]
pub struct Filters {
    /// Always set for a customer; for staff, one customer or all of them.
    pub customer: Option<Uuid>,
    pub doc_type: Option<&'static str>,
    pub order: Option<Uuid>,
    /// Updated on or after / on or before these days (UTC).
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub tag: Option<String>,
    /// Words typed in the search box; see [`tsquery`].
    pub search: String,
}

pub struct Page {
    pub rows: Vec<DocumentRow>,
    pub newer: Option<String>,
    pub older: Option<String>,
    /// How many documents match, up to [`COUNT_CAP`] + 1.
    pub total: i64,
}

/// A prefix query over the words of what was typed: `sleeve art` finds
/// "Packaging sleeve artwork". Only letters and digits reach `to_tsquery`, so
/// nothing typed can be tsquery syntax. `None` when there is no word.
pub fn tsquery(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| format!("{}:*", w.chars().take(40).collect::<String>().to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

enum Search {
    None,
    Ids(Vec<Uuid>),
    Inline(String),
}

async fn search(db: &Scope, filters: &Filters) -> Result<Search, DbError> {
    let Some(query) = tsquery(&filters.search) else { return Ok(Search::None) };
    // Under a customer's row-level security the index is reachable only through
    // portal_document_search (see V7__documents.sql); staff search in line.
    if db.customer_id().is_none() {
        return Ok(Search::Inline(query));
    }
    let ids: Vec<Uuid> = db
        .query("SELECT portal_document_search($1, $2)", &[&query, &(SEARCH_IDS_MAX + 1)])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(if ids.len() > SEARCH_IDS_MAX as usize { Search::Inline(query) } else { Search::Ids(ids) })
}

/// The WHERE clause the count and the page share, appended to `q`.
fn filtered(q: &mut Query, filters: &Filters, search: &Search) {
    q.push_sql(" WHERE true");
    if let Some(customer) = filters.customer {
        q.and("d.customer_id =", customer);
    }
    if let Some(doc_type) = filters.doc_type {
        q.and("d.doc_type =", doc_type.to_owned());
    }
    if let Some(order) = filters.order {
        q.and("d.order_id =", order);
    }
    if let Some(from) = filters.from {
        q.and("d.updated_at >=", from.midnight().assume_utc());
    }
    if let Some(to) = filters.to.and_then(|d| d.next_day()) {
        q.and("d.updated_at <", to.midnight().assume_utc());
    }
    if let Some(tag) = &filters.tag {
        q.and("d.tags @>", vec![tag.clone()]).push_sql("::text[]");
    }
    match search {
        Search::None => {}
        Search::Ids(ids) => {
            q.push_sql(" AND d.id = ANY(").bind(ids.clone()).push_sql(")");
        }
        Search::Inline(query) => {
            q.push_sql(" AND d.search @@ to_tsquery('english', ").bind(query.clone()).push_sql(")");
        }
    }
}

fn key_of(row: &DocumentRow) -> String {
    row.updated_at.unix_timestamp_nanos().to_string()
}

fn parse_key(key: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(key.parse().ok()?).ok()
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn load(db: &Scope, filters: &Filters, cursor: &Cursor) -> Result<Page, DbError> {
    let search = search(db, filters).await?;
    let mut count = Query::new("SELECT count(*) FROM (SELECT 1 FROM documents d");
    filtered(&mut count, filters, &search);
    count.limit(COUNT_CAP as usize + 1).push_sql(") capped");
    let total: i64 = count.fetch_one(db).await?.try_get(0)?;

    let mut q = Query::new(DocumentRow::SELECT);
    filtered(&mut q, filters, &search);
    let backwards = cursor.backwards();
    let edge = match cursor {
        Cursor::First => None,
        Cursor::After(key, id) | Cursor::Before(key, id) => parse_key(key).map(|at| (at, *id)),
    };
    if let Some((at, id)) = edge {
        let op = if backwards { " > " } else { " < " };
        q.push_sql(" AND (d.updated_at, d.id)")
            .push_sql(op)
            .push_sql("(")
            .bind(at)
            .push_sql(", ")
            .bind(id)
            .push_sql(")");
    }
    let direction = if backwards { " ASC" } else { " DESC" };
    q.push_sql(" ORDER BY d.updated_at").push_sql(direction).push_sql(", d.id").push_sql(direction);
    q.limit(PAGE_SIZE + 1);
    let mut rows = q.fetch(db).await?;
    let more = rows.len() > PAGE_SIZE;
    rows.truncate(PAGE_SIZE);
    if backwards {
        rows.reverse();
    }
    let rows: Vec<DocumentRow> =
        rows.iter().map(DocumentRow::from_row).collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let (has_newer, has_older) = cursor.neighbours(more);
    let cursor_of = |row: &DocumentRow| keyset::encode(Spelling::Tilde, &key_of(row), row.id);
    Ok(Page {
        newer: rows.first().filter(|_| has_newer).map(cursor_of),
        older: rows.last().filter(|_| has_older).map(cursor_of),
        rows,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_become_prefix_terms_and_nothing_else() {
        assert_eq!(tsquery("sleeve art"), Some("sleeve:* & art:*".into()));
        assert_eq!(tsquery("ISO-9001"), Some("iso:* & 9001:*".into()));
        assert_eq!(tsquery("a' | !b & (c:*)"), Some("a:* & b:* & c:*".into()));
        assert_eq!(tsquery("  --  "), None);
        assert_eq!(tsquery("Größe"), Some("größe:*".into()));
    }

    #[test]
    fn keys_round_trip_and_garbage_is_refused() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_780_000_000_123_456_000).unwrap();
        assert_eq!(parse_key(&at.unix_timestamp_nanos().to_string()), Some(at));
        assert_eq!(parse_key("yesterday"), None);
        assert_eq!(parse_key("99999999999999999999999999999"), None);
    }
}
