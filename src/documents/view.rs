//! One document as its page shows it: details, every version, and for those
//! who may see it the download audit and the links still live.

use time::OffsetDateTime;
use uuid::Uuid;

use super::grants::{self, ActiveGrant};
use crate::db::{DbError, Scope};

pub struct Document {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer: String,
    pub title: String,
    pub description: String,
    pub doc_type: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub order: Option<(Uuid, String)>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub struct Version {
    pub version: i32,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub uploaded_by: String,
    pub uploaded_by_staff: bool,
    pub created_at: OffsetDateTime,
    pub downloads: i64,
}

pub struct Download {
    pub version: i32,
    pub user_name: String,
    pub by_staff: bool,
    pub ip: String,
    pub at: OffsetDateTime,
}

pub struct DocumentView {
    pub document: Document,
    /// Newest first; the first is what Download gives.
    pub versions: Vec<Version>,
    /// Filled only by [`DocumentView::with_audit`].
    pub downloads: Vec<Download>,
    pub download_count: i64,
    pub grants: Vec<ActiveGrant>,
}

/// How many download records the page lists (the count covers all).
const DOWNLOADS_SHOWN: i64 = 50;

impl DocumentView {
    /// Through the scope: another customer's document is `None`, exactly like a missing one.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn load(db: &Scope, id: Uuid) -> Result<Option<Self>, DbError> {
        let Some(row) = db
            .query_opt(
                "SELECT d.id, d.customer_id, c.name AS customer_name, d.title, d.description, d.doc_type, d.tags, \
                 d.origin, d.order_id, o.number AS order_number, d.created_at, d.updated_at \
                 FROM documents d JOIN customers c ON c.id = d.customer_id \
                 LEFT JOIN orders o ON o.id = d.order_id WHERE d.id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let order =
            match (row.try_get::<_, Option<Uuid>>("order_id")?, row.try_get::<_, Option<String>>("order_number")?) {
                (Some(id), Some(number)) => Some((id, number)),
                _ => None,
            };
        let document = Document {
            id,
            customer_id: row.try_get("customer_id")?,
            customer: row.try_get("customer_name")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            doc_type: row.try_get("doc_type")?,
            tags: row.try_get("tags")?,
            origin: row.try_get("origin")?,
            order,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        };
        let versions = db
            .query(
                "SELECT v.version, v.file_name, v.content_type, v.size_bytes, v.created_at, \
                 CASE WHEN u.id IS NOT NULL THEN u.name WHEN v.uploaded_by IS NOT NULL THEN 'Our team' \
                 ELSE 'A former user' END AS uploaded_by, \
                 (u.id IS NULL AND v.uploaded_by IS NOT NULL) OR (u.id IS NOT NULL AND u.customer_id IS NULL) AS by_staff, \
                 (SELECT count(*) FROM document_downloads dl WHERE dl.version_id = v.id) AS downloads \
                 FROM document_versions v LEFT JOIN users u ON u.id = v.uploaded_by \
                 WHERE v.document_id = $1 ORDER BY v.version DESC",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Version {
                version: r.try_get("version")?,
                file_name: r.try_get("file_name")?,
                content_type: r.try_get("content_type")?,
                size_bytes: r.try_get("size_bytes")?,
                uploaded_by: r.try_get("uploaded_by")?,
                uploaded_by_staff: r.try_get("by_staff")?,
                created_at: r.try_get("created_at")?,
                downloads: r.try_get("downloads")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let download_count = versions.iter().map(|v| v.downloads).sum();
        Ok(Some(DocumentView { document, versions, downloads: Vec::new(), download_count, grants: Vec::new() }))
    }

    /// Adds who downloaded what and the live download links: for staff and customer admins.
    /// A customer sees a staff download as "Our team", without its IP address.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn with_audit(mut self, db: &Scope) -> Result<Self, DbError> {
        self.downloads = db
            .query(
                "SELECT v.version, CASE WHEN u.id IS NOT NULL THEN u.name WHEN dl.user_id IS NOT NULL THEN 'Our team' \
                 ELSE 'A former user' END AS user_name, \
                 (u.id IS NULL AND dl.user_id IS NOT NULL) OR (u.id IS NOT NULL AND u.customer_id IS NULL) AS by_staff, \
                 CASE WHEN u.id IS NULL AND dl.user_id IS NOT NULL THEN '' ELSE coalesce(host(dl.ip), '') END AS ip, \
                 dl.downloaded_at \
                 FROM document_downloads dl JOIN document_versions v ON v.id = dl.version_id \
                 LEFT JOIN users u ON u.id = dl.user_id \
                 WHERE dl.document_id = $1 ORDER BY dl.downloaded_at DESC LIMIT $2",
                &[&self.document.id, &DOWNLOADS_SHOWN],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Download {
                version: r.try_get("version")?,
                user_name: r.try_get("user_name")?,
                by_staff: r.try_get("by_staff")?,
                ip: r.try_get("ip")?,
                at: r.try_get("downloaded_at")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        self.grants = grants::active(db, Some(self.document.id)).await?;
        Ok(self)
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.first()
    }

    /// Whether a customer user may add a version: only to what their company uploaded.
    pub fn customer_may_add_version(&self) -> bool {
        self.document.origin == "customer"
    }
}
