//! The extractor that turns a bearer token of an integration user into a staff
//! scope. The tokens themselves (their shape, resolving one, the integrations'
//! store) are `auth::api_tokens`. Cookies play no part here: a browser session,
//! even a staff one, is not an API credential.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::error::ApiError;
pub use crate::auth::api_tokens::Integration;
use crate::auth::api_tokens::{self, well_formed};
use crate::auth::throttle::{self, Limit};
use crate::db::Scope;
use crate::web::AppState;
use crate::web::client_ip;

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
        Credentials::Token(token) => api_tokens::resolve(&state.db, token).await?,
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
