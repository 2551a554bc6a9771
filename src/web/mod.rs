//! What every area stands on: extractors (who is asking, the scope they may use,
//! CSRF), the one error type and its pages, the shell, cookies, security headers
//! and static assets. It imports no area; `routes.rs` puts the areas on the map.

pub mod assets;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod security;
pub mod shell;

use actix_web::HttpResponse;
use actix_web::http::header;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sailfish::TemplateSimple;

use crate::auth::session::Lifetimes;
use crate::db::Db;
pub use error::AppError;
pub use extract::{AccountScope, CsrfForm, CsrfJson, CustomerScope, StaffScope, Unopened, Uploader};
pub use shell::{Flash, Section, Shell};

/// Shared by every request.
pub struct AppState {
    pub db: Db,
    /// The portal's public origin, e.g. `https://portal.example.com`.
    pub origin: String,
    pub cookies: cookies::CookiePolicy,
    pub lifetimes: Lifetimes,
    pub live: portal_actors::Live,
    pub metrics_token: Option<secrecy::SecretString>,
    /// The WebAuthn relying party; `None` when the origin is an IP address (browsers refuse those).
    pub passkeys: Option<crate::auth::passkeys::Passkeys>,
    /// Where document files live (S3 or the local data dir).
    pub blobs: crate::storage::BlobStore,
    /// Uploads larger than this are refused (`PORTAL_UPLOAD_MAX_MB`).
    pub upload_max_bytes: u64,
    /// How long a download link works, once (`PORTAL_DOWNLOAD_LINK_MINUTES`).
    pub download_grant_ttl: std::time::Duration,
}

/// Declares a partial: a template rendering one live region from a page's view,
/// used by the page itself (`<%+ … %>`) and by the live renderer.
#[macro_export]
macro_rules! partial {
    ($name:ident, $path:literal, $view:ty) => {
        #[derive(sailfish::TemplateSimple)]
        #[template(path = $path)]
        pub struct $name<'a> {
            pub view: &'a $view,
        }
    };
}

/// Renders a page.
pub fn html(page: impl TemplateSimple) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(page.render_once()?))
}

/// Renders a page with another status than 200 (a refused form, shown again).
pub fn html_with_status(status: actix_web::http::StatusCode, body: String) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status).insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(body))
}

/// Redirects after a successful form (303, so a reload does not resubmit) with a message for the next page.
pub fn redirect_with_flash(state: &AppState, to: &str, flash: Flash) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).cookie(state.cookies.flash(&flash)).finish()
}

/// Where the request came from, for the activity log and rate limits.
pub fn client_ip(req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}
