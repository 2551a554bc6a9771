//! The JSON API under `/api/v1`, for the business's other systems.
//!
//! Bearer tokens of integration users only (`auth`): no cookies, no CSRF, and a
//! browser session is not a credential here. Every answer is JSON, errors
//! included (`error`), and each request is one transaction in the integration
//! user's staff scope.

pub mod auth;
pub mod body;
pub mod error;
pub mod orders;

use actix_web::HttpResponse;

use error::ApiError;

/// The largest body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub async fn not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn no_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute)
}
