//! The API's one error type, and the one place it becomes a response.
//!
//! Every error is JSON: `{"error": {"code": "...", "message": "...", "field": "<json field or null>"}}`,
//! with a status that fits (400 malformed, 401 no valid token, 404, 409 conflict,
//! 413 too large, 415 not JSON, 422 a field's value, 429 throttled). Internal
//! causes go to the log with the request id (the `X-Request-Id` header), never
//! into the body.

use std::time::Duration;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use tokio_postgres::error::SqlState;

use crate::auth::AuthError;
use crate::auth::throttle;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token (`presented: false`), or one that is not a live token of an enabled integration.
    #[error("no valid bearer token")]
    Unauthorized { presented: bool },
    /// Too many failed token attempts from this network.
    #[error("too many failed token attempts; retry in {0:?}")]
    Throttled(Duration),
    /// The request could not be read: not JSON, an unknown parameter, a value of the wrong JSON type.
    #[error("malformed request: {message}")]
    Malformed { message: String, field: Option<String> },
    /// A field's value is not acceptable.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// Missing, or (for ids) not even well-formed.
    #[error("not found")]
    NotFound,
    /// The request is valid but clashes with what is stored (a duplicate number, an order already there).
    #[error("conflict ({code}): {message}")]
    Conflict { code: &'static str, field: Option<String>, message: String },
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NoRoute,
    /// A body the scope's `JsonConfig` refused; it wraps the `ApiError` its handler made,
    /// and is passed to the handler so that authentication answers first.
    #[error("{0}")]
    Rejected(actix_web::Error),
    #[error("internal: {0}")]
    Internal(&'static str),
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Malformed { message: message.into(), field: field.map(str::to_owned) }
    }

    pub fn conflict(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, field: Some(field.to_owned()), message: message.into() }
    }

    /// The API error inside a refused body.
    fn inner(&self) -> Option<&ApiError> {
        match self {
            ApiError::Rejected(e) => e.as_error::<ApiError>(),
            _ => None,
        }
    }

    /// The machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        if let Some(inner) = self.inner() {
            return inner.code();
        }
        match self {
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Throttled(_) => "rate_limited",
            ApiError::Malformed { .. } | ApiError::Rejected(_) => "malformed",
            ApiError::Invalid { .. } => "invalid",
            ApiError::NotFound | ApiError::NoRoute => "not_found",
            ApiError::Conflict { code, .. } => code,
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) | ApiError::Db(_) | ApiError::Auth(_) => "internal",
        }
    }

    /// The JSON field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        if let Some(inner) = self.inner() {
            return inner.field();
        }
        match self {
            ApiError::Malformed { field, .. } | ApiError::Conflict { field, .. } => field.as_deref(),
            ApiError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// What a person reading the integration's log should be told.
    pub fn message(&self) -> String {
        if let Some(inner) = self.inner() {
            return inner.message();
        }
        match self {
            ApiError::Unauthorized { presented: false } => {
                "This API needs an integration token: send `Authorization: Bearer <token>`.".to_owned()
            }
            ApiError::Unauthorized { presented: true } => {
                "The bearer token is not valid (mistyped, revoked, or its integration is disabled).".to_owned()
            }
            ApiError::Throttled(wait) => format!(
                "Too many requests with invalid tokens from your network; retry in {}.",
                throttle::wait_phrase(*wait)
            ),
            ApiError::Malformed { message, .. }
            | ApiError::Invalid { message, .. }
            | ApiError::Conflict { message, .. } => message.clone(),
            ApiError::NotFound => "No such order.".to_owned(),
            ApiError::NoRoute => "No such endpoint.".to_owned(),
            ApiError::TooLarge { limit } => format!("The body is larger than {limit} bytes."),
            ApiError::UnsupportedMediaType => {
                "Send the body as JSON, with `Content-Type: application/json`.".to_owned()
            }
            ApiError::MethodNotAllowed => "This endpoint does not accept that method.".to_owned(),
            ApiError::Rejected(e) => format!("The body could not be read: {e}."),
            ApiError::Internal(_) | ApiError::Db(_) | ApiError::Auth(_) => {
                "Something went wrong on our side. It has been logged; quote the X-Request-Id header to support."
                    .to_owned()
            }
        }
    }
}

/// Constraint violations are the client's to fix (a duplicate number, a value the schema refuses);
/// anything else from the database is ours.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let constraint = match &e {
            DbError::Postgres(pg) => pg.as_db_error().and_then(|db| db.constraint()).map(str::to_owned),
            _ => None,
        };
        match (e.code(), constraint.as_deref()) {
            (Some(&SqlState::UNIQUE_VIOLATION), Some("orders_customer_id_number_key")) => ApiError::conflict(
                "duplicate_number",
                "number",
                "This customer already has another order with this number.",
            ),
            (Some(&SqlState::UNIQUE_VIOLATION), Some("orders_external_ref_key")) => ApiError::conflict(
                "duplicate_external_ref",
                "external_ref",
                "Another request created an order with this reference at the same time; repeat the request.",
            ),
            (Some(&SqlState::CHECK_VIOLATION), Some(name)) => {
                let field = name.strip_prefix("orders_").and_then(|n| n.strip_suffix("_check")).unwrap_or(name);
                ApiError::invalid(field, "The value is not accepted.")
            }
            _ => ApiError::Db(e),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Rejected(e) => e.as_response_error().status_code(),
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) | ApiError::Db(_) | ApiError::Auth(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Rejected(e) = self {
            return e.error_response();
        }
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "API request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "API request refused");
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unauthorized { presented: false } => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"portal\""));
            }
            ApiError::Unauthorized { presented: true } => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"portal\", error=\"invalid_token\""));
            }
            ApiError::Throttled(wait) => {
                response.insert_header((header::RETRY_AFTER, throttle::retry_after_secs(*wait)));
            }
            _ => {}
        }
        response.json(serde_json::json!({
            "error": { "code": self.code(), "message": self.message(), "field": self.field() }
        }))
    }
}

/// The field a serde message names (`missing field `title``, `unknown field `x``), if any.
fn field_in(message: &str) -> Option<&str> {
    let rest = message.split_once("field `")?.1;
    Some(&rest[..rest.find('`')?])
}

/// Bodies the `JsonConfig` of the API scope refuses, in the API's shape.
pub fn from_json_payload(e: JsonPayloadError) -> ApiError {
    match e {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::TooLarge { limit }
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => {
            let message = format!("The body is not valid JSON: {e}.");
            let field = field_in(&message).map(str::to_owned);
            ApiError::Malformed { message, field }
        }
        other => ApiError::malformed(None, format!("The body could not be read: {other}.")),
    }
}

pub fn json_error_handler(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    from_json_payload(e).into()
}

/// A query string the handlers could not read (an unknown parameter, say).
pub fn from_query_payload(e: QueryPayloadError) -> ApiError {
    let message = match e {
        QueryPayloadError::Deserialize(e) => format!("The query string is not valid: {e}."),
        other => format!("The query string is not valid: {other}."),
    };
    let field = field_in(&message).map(str::to_owned);
    ApiError::Malformed { message, field }
}

pub fn query_error_handler(e: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    from_query_payload(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_json_with_code_message_and_field() {
        let invalid = ApiError::invalid("title", "Give the order a title.").error_response();
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(invalid.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        let missing = ApiError::Unauthorized { presented: false }.error_response();
        assert_eq!(missing.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer realm=\"portal\"");
        let throttled = ApiError::Throttled(Duration::from_millis(1500)).error_response();
        assert_eq!(throttled.headers().get(header::RETRY_AFTER).unwrap(), "2");
        assert_eq!(ApiError::NotFound.code(), "not_found");
    }

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(field_in("missing field `title` at line 1 column 2"), Some("title"));
        assert_eq!(field_in("unknown field `stauts`, expected one of `status`"), Some("stauts"));
        assert_eq!(field_in("expected value at line 1 column 1"), None);
    }
}
