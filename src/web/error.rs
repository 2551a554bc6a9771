//! The web layer's one error type, and the one place errors become responses.
//!
//! Handlers return `Result<_, AppError>`. Status codes are decided here; the
//! pages for them are rendered by `error_pages`, which also covers responses
//! actix produces itself (an unknown route, a malformed path). Internal causes
//! go to the log with the request id, never into the page.

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use sailfish::TemplateSimple;
use tracing_actix_web::RequestId;

use crate::auth::AuthError;
use crate::auth::password::PasswordError;
use crate::auth::throttle::{self, Throttled};
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing, or belongs to someone else: the two are deliberately indistinguishable.
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// No valid credentials where a redirect to the sign-in page makes no sense (sockets, scrapers).
    #[error("unauthorized")]
    Unauthorized,
    /// Not signed in; `next` is where to come back to.
    #[error("sign-in required")]
    SignInRequired { next: String },
    /// The request belongs on another page (e.g. staff asking for the customer dashboard).
    #[error("see {0}")]
    Redirect(String),
    #[error("the form has expired")]
    Csrf,
    #[error("cross-site request refused")]
    CrossSite,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A request body past every limit; the connection is not read further.
    #[error("payload too large")]
    TooLarge,
    /// A link that worked once (a download grant): used, expired or revoked.
    #[error("gone")]
    Gone,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("template: {0}")]
    Render(#[from] sailfish::RenderError),
    /// Over a rate limit: 429 with `Retry-After` (whole seconds, rounded up) and the 429 page.
    #[error("too many requests; retry in {0:?}")]
    Throttled(std::time::Duration),
    /// The blob store failed (S3 unreachable, a full disk): the request is refused whole.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl From<Throttled> for AppError {
    fn from(t: Throttled) -> Self {
        AppError::Throttled(t.retry_after)
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        AppError::Db(e.into())
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden | AppError::Csrf | AppError::CrossSite => StatusCode::FORBIDDEN,
            AppError::SignInRequired { .. } | AppError::Redirect(_) => StatusCode::SEE_OTHER,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Gone => StatusCode::GONE,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Auth(AuthError::Password(PasswordError::Busy))
            | AppError::Auth(AuthError::Throttled(_))
            | AppError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Db(_) | AppError::Auth(_) | AppError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            AppError::SignInRequired { next } => {
                let location = if next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", super::encode_query_value(next))
                };
                return HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish();
            }
            AppError::Redirect(to) => {
                return HttpResponse::SeeOther().insert_header((header::LOCATION, to.as_str())).finish();
            }
            _ => {}
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        // The body is filled in by `error_pages`, which knows the request.
        let mut response = HttpResponse::build(status);
        if status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = match self {
                AppError::Throttled(wait) => throttle::retry_after_secs(*wait),
                AppError::Auth(AuthError::Throttled(throttled)) => throttled.retry_after_secs(),
                _ => 5,
            };
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        response.finish()
    }
}

#[derive(TemplateSimple)]
#[template(path = "errors/page.stpl")]
struct ErrorPage<'a> {
    shell: super::shell::Shell,
    code: u16,
    heading: &'a str,
    message: &'a str,
    request_id: String,
}

fn describe(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        401 => ("Please sign in", "This address needs a signed-in session or a valid token."),
        400 => ("That request did not make sense", "Something in the address or the form was not valid."),
        403 => (
            "You can't do that here",
            "Your account does not have access to this page, or the form you sent had expired. \
             Go back, reload the page and try again.",
        ),
        404 => ("Page not found", "There is nothing here. It may have moved, or the link may be wrong."),
        405 => ("That action is not available here", "This address does not accept that kind of request."),
        410 => (
            "This download link has been used or has expired",
            "Download links work once, for a few minutes, in the browser that asked for them. \
             Go back to the document and choose Download again.",
        ),
        413 => ("That was too large", "The request was larger than this portal accepts."),
        429 => ("Too many attempts", "Please wait a little and try again."),
        503 => (
            "Files are unavailable right now",
            "The file store could not be reached. Nothing was changed; please try again in a moment.",
        ),
        _ => (
            "Something went wrong on our side",
            "The problem has been logged. Please try again in a moment; if it keeps happening, \
             contact support and quote the reference below.",
        ),
    }
}

/// Gives every error response without a body a proper page (HTML) or a JSON
/// object (under `/api/`), with the request id to quote to support.
pub fn error_pages<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let status = res.status();
    let already_has_body = res.response().headers().get(header::CONTENT_TYPE).is_some();
    if !(status.is_client_error() || status.is_server_error()) || already_has_body {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let request_id = res.request().extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
    let (heading, message) = describe(status);
    let is_api = res.request().path().starts_with("/api/");
    let (req, mut response) = res.into_parts();
    let (content_type, body) = if is_api {
        let body =
            serde_json::json!({ "error": { "status": status.as_u16(), "message": heading, "request_id": request_id } });
        ("application/json", body.to_string())
    } else {
        let page = ErrorPage {
            shell: super::shell::Shell { main_class: "error-page", ..super::shell::Shell::anonymous(heading) },
            code: status.as_u16(),
            heading,
            message,
            request_id,
        };
        let html = page.render_once().unwrap_or_else(|_| heading.to_owned());
        ("text/html; charset=utf-8", html)
    };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let response = response.set_body(BoxBody::new(body));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error() {
        let busy = AppError::Auth(AuthError::Password(PasswordError::Busy)).error_response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(busy.headers().contains_key(header::RETRY_AFTER));
        let throttled = AppError::Throttled(std::time::Duration::from_millis(61_200)).error_response();
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.headers().get(header::RETRY_AFTER).unwrap(), "62");
        let wait = Throttled { retry_after: std::time::Duration::from_millis(10) };
        let locked = AppError::Auth(AuthError::Throttled(wait)).error_response();
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(locked.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(AppError::from(wait).status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(AppError::NotFound.status_code(), StatusCode::NOT_FOUND);
        assert_eq!(AppError::Csrf.status_code(), StatusCode::FORBIDDEN);
        let sign_in = AppError::SignInRequired { next: "/orders?x=1".into() }.error_response();
        assert_eq!(sign_in.headers().get(header::LOCATION).unwrap(), "/login?next=%2Forders%3Fx%3D1");
    }
}
