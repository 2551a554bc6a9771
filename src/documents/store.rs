//! The documents area's reads for its forms and pages that are not the library
//! list (`list.rs`) or one document's page (`view.rs`): what a document can be
//! for (customers, their orders), checks made before a byte is stored, whether
//! the client got a document, and which document a download link belongs to.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{DbError, Scope};

fn choices(rows: &[tokio_postgres::Row]) -> Result<Vec<(Uuid, String)>, DbError> {
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Every customer, for the filter and the upload form: `(id, name)`, inactive ones marked.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn customer_choices(scope: &Scope) -> Result<Vec<(Uuid, String)>, DbError> {
    let rows = scope
        .query(
            "SELECT id, name || CASE WHEN active THEN '' ELSE ' (inactive)' END FROM customers \
             ORDER BY lower(name), id",
            &[],
        )
        .await?;
    choices(&rows)
}

/// Open orders of every customer, labelled with the customer: the order choices
/// before a customer is chosen.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn open_orders(scope: &Scope) -> Result<Vec<(Uuid, String)>, DbError> {
    let rows = scope
        .query(
            "SELECT o.id, c.name || ' · ' || o.number || ' · ' || o.title FROM orders o \
             JOIN customers c ON c.id = o.customer_id WHERE o.status = 'open' \
             ORDER BY lower(c.name), o.updated_at DESC LIMIT 500",
            &[],
        )
        .await?;
    choices(&rows)
}

/// The customer's orders that a document can be attached to: open ones first, then recent.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn order_choices(scope: &Scope, customer: Uuid) -> Result<Vec<(Uuid, String)>, DbError> {
    let rows = scope
        .query(
            "SELECT id, number || ' · ' || title FROM orders WHERE customer_id = $1 \
             ORDER BY (status = 'open') DESC, updated_at DESC LIMIT 200",
            &[&customer],
        )
        .await?;
    choices(&rows)
}

/// The customer an order belongs to, if the scope sees the order.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn order_customer(scope: &Scope, order: Uuid) -> Result<Option<Uuid>, DbError> {
    match scope.query_opt("SELECT customer_id FROM orders WHERE id = $1", &[&order]).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// A customer's name, if the customer exists.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn customer_name(scope: &Scope, customer: Uuid) -> Result<Option<String>, DbError> {
    match scope.query_opt("SELECT name FROM customers WHERE id = $1", &[&customer]).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// Whether `order` is one of `customer`'s.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn is_order_of(scope: &Scope, order: Uuid, customer: Uuid) -> Result<bool, DbError> {
    Ok(scope
        .query_opt("SELECT 1 FROM orders WHERE id = $1 AND customer_id = $2", &[&order, &customer])
        .await?
        .is_some())
}

/// Whether the download link `grant` is one of `document`'s.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn is_grant_of(scope: &Scope, grant: Uuid, document: Uuid) -> Result<bool, DbError> {
    Ok(scope
        .query_opt("SELECT 1 FROM download_grants WHERE id = $1 AND document_id = $2", &[&grant, &document])
        .await?
        .is_some())
}

/// Whether the client got the document: their downloads, not the staff's.
pub struct ClientDownloads {
    pub count: i64,
    /// Of the latest version.
    pub latest_count: i64,
    /// When, who and which version, for the most recent one.
    pub last: Option<(OffsetDateTime, String, i32)>,
}

impl ClientDownloads {
    /// A download by one of the customer's users. One by an account deleted since is
    /// not counted: it may have been a colleague's, and "not yet" prompts a follow-up
    /// where a wrong "yes" would not.
    const CLIENT: &'static str = "FROM document_downloads dl JOIN document_versions v ON v.id = dl.version_id \
        JOIN users u ON u.id = dl.user_id WHERE dl.document_id = $1 AND u.customer_id IS NOT NULL";

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn load(scope: &Scope, document: Uuid) -> Result<Self, DbError> {
        let counts = scope
            .query_one(
                &format!(
                    "SELECT count(*) AS n, count(*) FILTER (WHERE v.version = \
                     (SELECT max(version) FROM document_versions WHERE document_id = $1)) AS latest_n {}",
                    Self::CLIENT
                ),
                &[&document],
            )
            .await?;
        let last = scope
            .query_opt(
                &format!(
                    "SELECT dl.downloaded_at, u.name, v.version {} \
                     ORDER BY dl.downloaded_at DESC, dl.id DESC LIMIT 1",
                    Self::CLIENT
                ),
                &[&document],
            )
            .await?;
        let last = match last {
            Some(r) => Some((r.try_get("downloaded_at")?, r.try_get("name")?, r.try_get("version")?)),
            None => None,
        };
        Ok(ClientDownloads { count: counts.try_get("n")?, latest_count: counts.try_get("latest_n")?, last })
    }

    /// "Downloaded by the client 3 times, last on …" or "Not yet downloaded by the client".
    pub fn summary(&self) -> String {
        match &self.last {
            Some((at, name, version)) if self.count > 0 => format!(
                "Downloaded by the client {}, last on {} by {name} (v{version})",
                if self.count == 1 { "once".to_owned() } else { format!("{} times", self.count) },
                crate::format::datetime(*at)
            ),
            _ => "Not yet downloaded by the client".to_owned(),
        }
    }
}
