//! HTTP: routing, middleware, extractors and the mapping of errors to responses.

pub mod assets;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod security;
pub mod shell;

use actix_web::http::header;
use actix_web::middleware::{self, ErrorHandlers, from_fn};
use actix_web::{HttpResponse, web};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sailfish::TemplateSimple;

use crate::auth::session::Lifetimes;
use crate::db::Db;
pub use error::AppError;
pub use extract::{AccountScope, CsrfForm, CsrfJson, CustomerScope, StaffScope, Uploader};
pub use shell::{Flash, Section, Shell};

/// Shared by every request.
pub struct AppState {
    pub db: Db,
    /// The portal's public origin, e.g. `https://portal.example.com`.
    pub origin: String,
    pub cookies: cookies::CookiePolicy,
    pub lifetimes: Lifetimes,
    pub live: crate::live::Live,
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::live))
        .route("/readyz", web::get().to(health::ready))
        .route("/static/{file}", web::get().to(assets::serve))
        .configure(crate::auth::pages::routes)
        .configure(crate::auth::passkeys::routes)
        .configure(crate::auth::links::routes)
        .configure(crate::auth::self_service::routes)
        .configure(crate::dashboard::routes)
        .configure(crate::orders::routes)
        .configure(crate::invoices::routes)
        .configure(crate::documents::routes)
        .configure(crate::tickets::routes)
        .configure(crate::notifications::routes)
        .configure(crate::reports::routes)
        .configure(crate::activity::routes)
        .configure(crate::accounts::routes)
        .configure(crate::staff::routes)
        .configure(crate::live::routes);
}

/// Builds the actix `App` with every middleware, in the order they must run.
pub fn app(
    state: web::Data<AppState>,
    secure: bool,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let headers = security::headers(secure, &state.origin);
    actix_web::App::new()
        .app_data(state)
        .app_data(web::FormConfig::default().limit(64 * 1024))
        .app_data(web::PayloadConfig::new(64 * 1024))
        .configure(configure)
        .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
        .wrap(from_fn(security::consume_flash))
        .wrap(from_fn(request_id_header))
        .wrap(from_fn(security::same_origin))
        .wrap(ErrorHandlers::new().default_handler(error::error_pages))
        .wrap(headers)
        .wrap(middleware::Compress::default())
        .wrap(tracing_actix_web::TracingLogger::default())
}

/// Echoes the request id that every log line of this request carries, so a
/// user or an operator can find them from any response. Also tells the
/// request logger that a redirect (to sign in, or to the staff side) is not a
/// failure, though extractors express it as an `AppError`.
async fn request_id_header(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let id = req.extensions().get::<tracing_actix_web::RequestId>().map(|id| id.to_string());
    let res = next.call(req).await?;
    let mut res = if res.status().is_redirection() && res.response().error().is_some() {
        let (req, response) = res.into_parts();
        let mut plain = HttpResponse::new(response.status());
        *plain.headers_mut() = response.headers().clone();
        actix_web::dev::ServiceResponse::new(req, plain.set_body(response.into_body()))
    } else {
        res
    };
    if let Some(value) = id.and_then(|id| header::HeaderValue::from_str(&id).ok()) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
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

pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

mod health {
    use actix_web::{HttpResponse, web};

    use super::AppState;

    /// The process is up.
    pub async fn live() -> HttpResponse {
        HttpResponse::Ok().content_type("text/plain").body("ok")
    }

    /// The process can serve: its database answers.
    pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
        let database = match state.db.unscoped().await {
            Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        let pool = state.db.state();
        // Pages work without the live layer, so a lost listener degrades readiness but does not fail it.
        let (listening, error) = state.live.metrics().listener();
        let body = serde_json::json!({
            "database": if database { "ok" } else { "unreachable" },
            "pool": { "connections": pool.connections, "idle": pool.idle_connections },
            "live": {
                "listener": if listening { "connected" } else { "reconnecting" },
                "error": error,
                "sessions": state.live.metrics().connected_sessions(),
            },
        });
        if database { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
    }
}
