//! Spending a [`Limit`]'s budget inside the caller's transaction, so a request
//! that already holds its scope needs no second pooled connection for it.
//!
//! The same SQL function as [`throttle::spend`](super::throttle::spend)
//! (`portal_rate_limit_spend`, which the customer and staff roles may call): one
//! upsert per spend on the budget's own row, exact sliding windows. The spend
//! commits with the change it allows; a transaction that rolls back (nothing
//! was sent) gives the unit back.

use super::normalize_email;
use super::throttle::{Limit, Throttled};
use crate::db::{DbError, Scope};

/// Spends one unit of `limit`'s budget for `key` in `scope`'s transaction.
/// `Ok(Err(Throttled))` when the budget is used up (nothing was spent).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn spend(scope: &Scope, limit: Limit, key: &str) -> Result<Result<(), Throttled>, DbError> {
    let (count, window) = limit.budget();
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let window_secs = i32::try_from(window.as_secs()).unwrap_or(i32::MAX);
    let wait_ms: i64 = scope
        .query_one(
            "SELECT portal_rate_limit_spend($1, $2, $3, $4)",
            &[&limit.bucket(), &normalize_email(key), &count, &window_secs],
        )
        .await?
        .try_get(0)?;
    Ok(super::throttle::spent(limit, wait_ms))
}
