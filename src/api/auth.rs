//! Bearer tokens of integration users, and the extractor that turns one into a staff scope.
//!
//! A token is `portal_` and 43 characters of base64url (256 random bits); the
//! database keeps only its SHA-256 (`api_tokens`) and its first 12 characters,
//! so a leaked token can be recognised in the list. Cookies play no part here:
//! a browser session, even a staff one, is not an API credential.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::session::{random_token, token_hash};
use crate::auth::throttle::{self, Limit};
use crate::db::{Db, Scope};
use crate::web::AppState;
use crate::web::client_ip;

pub const TOKEN_PREFIX: &str = "portal_";
/// `portal_` + 43 characters.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
/// How much of a token the lists show.
pub const SHOWN_PREFIX_LEN: usize = 12;

/// A new token: what to show once, what to store (its SHA-256), and the prefix to list it by.
pub struct NewToken {
    pub token: String,
    pub hash: Vec<u8>,
    pub prefix: String,
}

pub fn new_token() -> NewToken {
    let token = format!("{TOKEN_PREFIX}{}", random_token());
    let prefix = token.chars().take(SHOWN_PREFIX_LEN).collect();
    NewToken { hash: token_hash(&token), prefix, token }
}

/// Could `token` be one of ours? Anything else is refused without a query.
fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the `Authorization` header carries.
enum Credentials<'a> {
    None,
    /// A header that is not `Bearer <token>`, or a token that cannot be ours.
    Unusable,
    Token(&'a str),
}

fn credentials(req: &HttpRequest) -> Credentials<'_> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Unusable;
    };
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && well_formed(token.trim()) => {
            Credentials::Token(token.trim())
        }
        _ => Credentials::Unusable,
    }
}

/// The integration user a request acts as.
#[derive(Clone, Debug)]
pub struct Integration {
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
}

/// A live token's integration (marking the token used), or `None`.
pub async fn resolve(db: &Db, token: &str) -> Result<Option<Integration>, ApiError> {
    // Before any scope exists: the one function bearer requests may call unscoped.
    let Some(row) = db.door().await?.api_token_resolve(&token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(Some(Integration {
        token_id: row.try_get("token_id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
    }))
}

/// An authenticated API request: the integration and a staff scope in its name
/// (`portal.user_id` is the integration user, so row-level security, triggers and
/// the activity log attribute every change to it). One transaction per request.
pub struct ApiScope {
    pub integration: Integration,
    pub db: Scope,
}

impl FromRequest for ApiScope {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

async fn authenticate(req: &HttpRequest) -> Result<ApiScope, ApiError> {
    let state =
        req.app_data::<web::Data<AppState>>().cloned().ok_or(ApiError::Internal("application state missing"))?;
    let found = match credentials(req) {
        // Nothing guessed, nothing counted (a browser wandering here with its cookies, say).
        Credentials::None => return Err(ApiError::Unauthorized { presented: false }),
        Credentials::Unusable => None,
        Credentials::Token(token) => resolve(&state.db, token).await?,
    };
    let Some(integration) = found else {
        // Only failures count, so a valid token keeps working next to someone guessing from
        // the same network; guessing 256 random bits is hopeless anyway, this caps the noise.
        let key = throttle::ip_key(client_ip(req));
        if let Err(throttled) = throttle::spend(&state.db, Limit::ApiTokenIp, &key).await? {
            return Err(ApiError::Throttled(throttled.retry_after));
        }
        return Err(ApiError::Unauthorized { presented: true });
    };
    let db = state.db.staff_scope(Some(integration.user_id)).await?;
    Ok(ApiScope { integration, db })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_recognisable_shape() {
        let new = new_token();
        assert_eq!(new.token.len(), TOKEN_LEN);
        assert!(well_formed(&new.token));
        assert_eq!(new.prefix.len(), SHOWN_PREFIX_LEN);
        assert!(new.token.starts_with(&new.prefix) && new.prefix.starts_with(TOKEN_PREFIX));
        assert_eq!(new.hash, token_hash(&new.token));
        assert_ne!(new.token, new_token().token);
        assert!(!well_formed(&new.token[1..]));
        assert!(!well_formed(&format!("portal_{}a", "é".repeat(21))), "43 bytes, but not base64url");
        assert!(!well_formed(&format!("portal_{}", "a".repeat(42) + "=")));
    }
}
