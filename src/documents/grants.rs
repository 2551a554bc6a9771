//! Download grants: how a file leaves the portal.
//!
//! A click on Download creates a grant for one version, one user and one
//! session: a random 256-bit token of which only the SHA-256 is stored, valid
//! for a few minutes and for one use. Redeeming it checks all of that in one
//! UPDATE under the requester's scope, records the download, and only then
//! hands out the file (streamed from disk, or a presigned S3 URL of 60 seconds).

use std::net::IpAddr;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{self, ContentEncoding};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::content;
use crate::auth::Viewer;
use crate::auth::session::{random_token, token_hash};
use crate::db::{DbError, Scope};
use crate::storage::{BlobKey, BlobStore, Fetched, ResponseHeaders};
use crate::web::AppError;

/// Creates a grant for `version` (the latest when `None`) of a document the scope
/// can see. `None` when there is no such document or version for this viewer.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    db: &Scope,
    viewer: &Viewer,
    document: Uuid,
    version: Option<i32>,
    ip: Option<IpAddr>,
    ttl: Duration,
) -> Result<Option<String>, DbError> {
    let Some(found) = db
        .query_opt(
            "SELECT id, customer_id FROM document_versions WHERE document_id = $1 AND ($2::int IS NULL OR version = $2) \
             ORDER BY version DESC LIMIT 1",
            &[&document, &version],
        )
        .await?
    else {
        return Ok(None);
    };
    let token = random_token();
    // The database's clock decides, as it does when the grant is redeemed.
    let ttl_secs = ttl.as_secs_f64();
    let customer: Uuid = found.try_get("customer_id")?;
    let version_id: Uuid = found.try_get("id")?;
    db.execute(
        "INSERT INTO download_grants (token_hash, customer_id, document_id, version_id, user_id, session_id, ip, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))",
        &[&token_hash(&token), &customer, &document, &version_id, &viewer.user_id, &viewer.session_id, &ip, &ttl_secs],
    )
    .await?;
    Ok(Some(token))
}

/// What a redeemed grant hands out.
pub struct Redeemed {
    key: String,
    file_name: String,
    content_type: String,
}

/// Redeems `token` for this viewer's session and records the download. A token
/// of another session, user or customer is unknown (404); this session's own
/// used, expired or revoked one is gone (410).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn redeem(
    db: &Scope,
    viewer: &Viewer,
    token: &str,
    ip: Option<IpAddr>,
    user_agent: &str,
) -> Result<Redeemed, AppError> {
    let hash = token_hash(token);
    let grant = db
        .query_opt(
            "UPDATE download_grants SET used_at = now() \
             WHERE token_hash = $1 AND session_id = $2 AND user_id = $3 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now() \
             RETURNING id, customer_id, document_id, version_id",
            &[&hash, &viewer.session_id, &viewer.user_id],
        )
        .await?;
    let Some(grant) = grant else {
        let ours = db
            .query_opt(
                "SELECT 1 FROM download_grants WHERE token_hash = $1 AND session_id = $2 AND user_id = $3",
                &[&hash, &viewer.session_id, &viewer.user_id],
            )
            .await?;
        return Err(if ours.is_some() { AppError::Gone } else { AppError::NotFound });
    };
    let grant_id: Uuid = grant.try_get("id")?;
    let version_id: Uuid = grant.try_get("version_id")?;
    let customer_id: Uuid = grant.try_get("customer_id")?;
    let document_id: Uuid = grant.try_get("document_id")?;
    // Read through the scope: a document the viewer can no longer see is not handed out.
    let version = db
        .query_opt("SELECT storage_key, file_name, content_type FROM document_versions WHERE id = $1", &[&version_id])
        .await?
        .ok_or(AppError::NotFound)?;
    let key: String = version.try_get("storage_key")?;
    let file_name: String = version.try_get("file_name")?;
    let content_type: String = version.try_get("content_type")?;
    let user_agent: String = user_agent.chars().take(300).collect();
    db.execute(
        "INSERT INTO document_downloads (customer_id, document_id, version_id, user_id, grant_id, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&customer_id, &document_id, &version_id, &viewer.user_id, &grant_id, &ip, &user_agent],
    )
    .await?;
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip, details) \
         SELECT d.customer_id, $2, $3, 'document.downloaded', 'document', d.id, $4, \
                jsonb_build_object('title', d.title, 'file_name', $5::text, 'staff', $6::boolean) \
         FROM documents d WHERE d.id = $1",
        &[
            &document_id,
            &viewer.user_id,
            &viewer.email,
            &ip,
            &file_name,
            &viewer.is_staff(),
        ],
    )
    .await?;
    Ok(Redeemed { key, file_name, content_type })
}

impl Redeemed {
    /// The file as a response: an attachment that never renders, is never cached
    /// and never tells another site where it came from.
    pub async fn respond(self, blobs: &BlobStore) -> Result<HttpResponse, AppError> {
        let key = BlobKey::parse(&self.key).map_err(|_| AppError::NotFound)?;
        let disposition = content::attachment(&self.file_name);
        let headers =
            ResponseHeaders { content_type: self.content_type.clone(), content_disposition: disposition.clone() };
        let fetched = match blobs.fetch(&key, &headers).await {
            Ok(fetched) => fetched,
            Err(e) if e.is_not_found() => {
                tracing::error!(key = self.key, "a version's file is missing from storage");
                return Err(AppError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        let mut response = match &fetched {
            Fetched::Redirect(url) => {
                let mut r = HttpResponse::SeeOther();
                r.insert_header((header::LOCATION, url.as_str()));
                r
            }
            Fetched::File { .. } => {
                let mut r = HttpResponse::Ok();
                r.insert_header((header::CONTENT_TYPE, self.content_type.as_str()))
                    .insert_header((header::CONTENT_DISPOSITION, disposition))
                    // Binary or already compressed; a gzip stream would also lose the length.
                    .insert_header(ContentEncoding::Identity);
                r
            }
        };
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            // Should anything render it after all: no script, no origin, no requests.
            .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'"));
        Ok(match fetched {
            Fetched::Redirect(_) => response.finish(),
            Fetched::File { file, len } => {
                response.no_chunking(len).streaming(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
            }
        })
    }
}

/// A grant not yet used, for the lists where staff and customer admins revoke them.
pub struct ActiveGrant {
    pub id: Uuid,
    pub document_id: Uuid,
    pub document_title: String,
    pub version: i32,
    pub user_name: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl ActiveGrant {
    const SELECT: &'static str = "SELECT g.id, g.document_id, d.title, v.version, coalesce(u.name, 'Our team') AS user_name, g.created_at, \
        g.expires_at FROM download_grants g JOIN documents d ON d.id = g.document_id \
        JOIN document_versions v ON v.id = g.version_id LEFT JOIN users u ON u.id = g.user_id \
        WHERE g.used_at IS NULL AND g.revoked_at IS NULL AND g.expires_at > now()";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(ActiveGrant {
            id: row.try_get("id")?,
            document_id: row.try_get("document_id")?,
            document_title: row.try_get("title")?,
            version: row.try_get("version")?,
            user_name: row.try_get("user_name")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// Live grants of one document, or of every document the scope sees when `None`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn active(db: &Scope, document: Option<Uuid>) -> Result<Vec<ActiveGrant>, DbError> {
    let rows = db
        .query(
            &format!(
                "{} AND ($1::uuid IS NULL OR g.document_id = $1) ORDER BY g.expires_at LIMIT 200",
                ActiveGrant::SELECT
            ),
            &[&document],
        )
        .await?;
    Ok(rows.iter().map(ActiveGrant::from_row).collect::<Result<Vec<_>, tokio_postgres::Error>>()?)
}

/// Revokes a live grant of `document` the scope can see; `false` when there is
/// none (another document's, foreign, used, expired).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(db: &Scope, document: Uuid, grant: Uuid, by: Uuid) -> Result<bool, DbError> {
    let n = db
        .execute(
            "UPDATE download_grants SET revoked_at = now(), revoked_by = $3 \
             WHERE id = $1 AND document_id = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
            &[&grant, &document, &by],
        )
        .await?;
    Ok(n == 1)
}

/// Grants a day past their expiry are of no use to anyone; the download records keep what happened.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sweep(db: &crate::db::Db) -> Result<u64, DbError> {
    let scope = db.staff_scope(None).await?;
    let n = scope.execute("DELETE FROM download_grants WHERE expires_at < now() - interval '1 day'", &[]).await?;
    scope.commit().await?;
    Ok(n)
}
