//! Receiving a file: a multipart form read as a stream, the file spooled to disk
//! chunk by chunk (never whole in memory), judged by its bytes, then stored under
//! a random key before any row points at it.
//!
//! Orphans: the key is recorded in `blob_uploads` (committed) before the object
//! is written, and removed by the transaction that records the version. If that
//! transaction fails the object is deleted at once; if the process dies in
//! between, [`sweep`] deletes it later. Either way no object outlives its row.

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_web::HttpRequest;
use actix_web::http::header;
use futures_util::TryStreamExt;

use super::content::{self, Detected, Refusal};
use crate::db::{Db, DbError, Scope};
use crate::storage::{BlobKey, BlobStore, Spooled, StorageError};
use crate::web::{AppError, Uploader};
use uuid::Uuid;

const MAX_TEXT_FIELD: usize = 16 * 1024;
const MAX_FIELDS: usize = 32;
/// Room for the form's other fields and the multipart framing around the file.
const FRAMING_ALLOWANCE: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("The file is larger than the limit of {}.", crate::format::bytes(*max as i64))]
    TooLarge { max: u64 },
    #[error("Choose a file to upload.")]
    NoFile,
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the upload could not be read: {0}")]
    Malformed(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl UploadError {
    /// Whether the form should be shown again with this message (the user can fix it).
    pub fn is_the_users(&self) -> bool {
        matches!(self, UploadError::TooLarge { .. } | UploadError::NoFile | UploadError::Refused(_))
    }

    pub fn status(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl From<UploadError> for AppError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::App(e) => e,
            UploadError::Storage(e) => AppError::Storage(e),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

impl From<DbError> for UploadError {
    fn from(e: DbError) -> Self {
        UploadError::App(e.into())
    }
}

/// A file that arrived whole and passed the content check, still in the spool.
pub struct Incoming {
    spooled: Spooled,
    pub detected: Detected,
}

/// The form's text fields and its file, if it had one the checks accepted.
pub struct Received {
    pub fields: BTreeMap<String, String>,
    pub file: Result<Incoming, UploadError>,
}

impl Received {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Reads a multipart form with one `file` field. The CSRF token must come before
/// the file (the forms put it first), so a forged upload is refused before a
/// byte of it is written. Errors in the file itself (too large, refused type,
/// none chosen) come back in [`Received::file`] with the other fields, so the
/// form can be shown again as the user filled it in.
pub async fn receive(
    req: &HttpRequest,
    mut payload: Multipart,
    blobs: &BlobStore,
    max_bytes: u64,
) -> Result<Received, UploadError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut fields = BTreeMap::new();
    let mut file: Option<Result<Incoming, UploadError>> = None;
    let mut csrf_checked = false;
    let mut count = 0;
    while let Some(mut field) = payload.try_next().await.map_err(|e| UploadError::Malformed(e.to_string()))? {
        count += 1;
        if count > MAX_FIELDS {
            return Err(UploadError::Malformed("too many fields".into()));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if !csrf_checked {
                crate::web::extract::check_csrf(req, None).await?;
            }
            if file.is_some() {
                return Err(UploadError::Malformed("one file per upload".into()));
            }
            // A browser sends an empty file name when no file was chosen.
            let sent_name = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .filter(|name| !name.trim().is_empty())
                .map(content::sanitize_file_name)
                .unwrap_or_default();
            if sent_name.is_empty() || declared.is_some_and(|len| len > max_bytes + FRAMING_ALLOWANCE) {
                let too_large = !sent_name.is_empty();
                drain(&mut field, max_bytes).await?;
                file =
                    Some(Err(if too_large { UploadError::TooLarge { max: max_bytes } } else { UploadError::NoFile }));
                continue;
            }
            file = Some(spool(&mut field, blobs, max_bytes, sent_name).await?);
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(|e| UploadError::Malformed(e.to_string()))? {
            if value.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(UploadError::Malformed(format!("the field {name} is too long")));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| UploadError::Malformed(format!("{name} is not text")))?;
        if name == "csrf_token" {
            crate::web::extract::check_csrf(req, Some(value)).await?;
            csrf_checked = true;
        } else {
            fields.insert(name, value);
        }
    }
    if !csrf_checked {
        crate::web::extract::check_csrf(req, None).await?;
    }
    Ok(Received { fields, file: file.unwrap_or(Err(UploadError::NoFile)) })
}

/// Writes the file part to the spool. A file over the limit is read to its end
/// and thrown away, so the browser receives the answer instead of a reset
/// connection; the bytes never reach storage.
async fn spool(
    field: &mut actix_multipart::Field,
    blobs: &BlobStore,
    max_bytes: u64,
    sent_name: String,
) -> Result<Result<Incoming, UploadError>, UploadError> {
    let mut spool = blobs.spool().await?;
    while let Some(chunk) = field.try_next().await.map_err(|e| UploadError::Malformed(e.to_string()))? {
        if spool.len() + chunk.len() as u64 > max_bytes {
            drop(spool);
            drain(field, max_bytes).await?;
            return Ok(Err(UploadError::TooLarge { max: max_bytes }));
        }
        spool.write(&chunk).await?;
    }
    let spooled = spool.finish().await?;
    Ok(match content::detect(spooled.head(), &sent_name) {
        Ok(detected) => Ok(Incoming { spooled, detected }),
        Err(refusal) => Err(refusal.into()),
    })
}

/// Reads a refused file part to its end, so the answer reaches the browser, but
/// no further than `limit` more bytes: past that the connection is dropped.
async fn drain(field: &mut actix_multipart::Field, limit: u64) -> Result<(), UploadError> {
    let mut read = 0u64;
    while let Some(chunk) = field.try_next().await.map_err(|e| UploadError::Malformed(e.to_string()))? {
        read += chunk.len() as u64;
        if read > limit {
            return Err(UploadError::App(AppError::TooLarge));
        }
    }
    Ok(())
}

/// An object in storage that no version row points to yet.
pub struct Stored {
    pub key: BlobKey,
    pub file_name: String,
    pub content_type: &'static str,
    pub size: i64,
    pub sha256: String,
}

impl Incoming {
    /// Stores the file under a new random key for `customer`'s document, recorded
    /// first (in the uploader's own scope) as an upload in progress.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn store(self, uploader: &Uploader, blobs: &BlobStore, customer: Uuid) -> Result<Stored, UploadError> {
        let key = BlobKey::random();
        let scope = uploader.open().await?;
        scope
            .execute("INSERT INTO blob_uploads (storage_key, customer_id) VALUES ($1, $2)", &[&key.as_str(), &customer])
            .await?;
        scope.commit().await?;
        let size = self.spooled.len() as i64;
        let sha256 = self.spooled.sha256().to_owned();
        if let Err(e) = blobs.put(&key, self.spooled, self.detected.content_type).await {
            // Nothing may have been written; the sweeper retries the delete if this one fails too.
            discard(uploader.open().await.ok(), blobs, &key).await;
            return Err(e.into());
        }
        Ok(Stored { key, file_name: self.detected.file_name, content_type: self.detected.content_type, size, sha256 })
    }
}

impl Stored {
    /// Inserts the version row in `db`'s transaction and marks the upload finished there.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn record_version(&self, db: &Scope, document: Uuid, customer: Uuid, by: Uuid) -> Result<i32, DbError> {
        // Exactly one in-progress row: none means the sweeper took it (and the object) already.
        let claimed = db.execute("DELETE FROM blob_uploads WHERE storage_key = $1", &[&self.key.as_str()]).await?;
        if claimed != 1 {
            return Err(DbError::Invariant("the upload was swept before it was recorded".into()));
        }
        let row = db
            .query_one(
                "INSERT INTO document_versions (document_id, customer_id, file_name, content_type, size_bytes, \
                 storage_key, sha256, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING version",
                &[
                    &document,
                    &customer,
                    &self.file_name,
                    &self.content_type,
                    &self.size,
                    &self.key.as_str(),
                    &self.sha256,
                    &by,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The transaction that was to record it failed: the object goes at once.
    pub async fn abandon(self, uploader: &Uploader, blobs: &BlobStore) {
        discard(uploader.open().await.ok(), blobs, &self.key).await;
    }
}

/// Deletes the object, then (in `scope`, when there is one) its in-progress row.
async fn discard(scope: Option<Scope>, blobs: &BlobStore, key: &BlobKey) {
    if let Err(e) = blobs.delete(key).await {
        tracing::warn!(error = %e, key = key.as_str(), "an abandoned upload could not be deleted yet");
        return;
    }
    let Some(scope) = scope else { return };
    let forgotten = async {
        scope.execute("DELETE FROM blob_uploads WHERE storage_key = $1", &[&key.as_str()]).await?;
        scope.commit().await
    };
    if let Err(e) = forgotten.await {
        tracing::warn!(error = %e, "an abandoned upload stays listed; the sweeper will clear it");
    }
}

/// Uploads still unfinished after an hour died half-way: their objects are deleted.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sweep(db: &Db, blobs: &BlobStore) -> Result<usize, UploadError> {
    let scope = db.staff_scope(None).await?;
    let rows = scope
        .query(
            "SELECT b.storage_key FROM blob_uploads b WHERE b.started_at < now() - interval '1 hour' \
             AND NOT EXISTS (SELECT 1 FROM document_versions v WHERE v.storage_key = b.storage_key) \
             ORDER BY b.started_at LIMIT 500 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut removed = 0;
    for row in rows {
        let raw: String = row.try_get(0).map_err(DbError::from)?;
        let Ok(key) = BlobKey::parse(&raw) else {
            tracing::warn!(key = raw, "blob_uploads holds a key of unknown shape; left alone");
            continue;
        };
        match blobs.delete(&key).await {
            Ok(()) => {
                scope.execute("DELETE FROM blob_uploads WHERE storage_key = $1", &[&raw]).await?;
                removed += 1;
            }
            Err(e) => tracing::warn!(error = %e, key = raw, "an abandoned upload could not be deleted yet"),
        }
    }
    scope.commit().await?;
    Ok(removed)
}
