//! The single-use tokens of emailed links (invitations, registrations, resets,
//! email changes): the database keeps only their SHA-256, in `account_tokens`.

use super::AuthError;
use crate::db::Db;

/// Deletes links used or expired more than a day ago; returns how many. They
/// are refused as soon as they expire regardless; this only keeps the table small.
pub async fn sweep(db: &Db) -> Result<i32, AuthError> {
    Ok(db.door().await?.account_tokens_sweep().await?)
}
