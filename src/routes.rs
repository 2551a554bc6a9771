//! The one map of the site: every route, the JSON API included, and the
//! middleware stack they all run behind.
//!
//! Areas own their handlers; this file only says which URL reaches which.
//! Literal segments come before `{id}` patterns beside them (`/staff/orders/bulk-move`
//! before `/staff/orders/{id}`), so a literal is never taken for an id.

use actix_web::http::header;
use actix_web::middleware::{self, ErrorHandlers, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::web::{AppState, CsrfForm, assets, error, security};
use crate::{
    accounts, activity, api, dashboard, documents, health, invoices, live, notifications, orders, reports, signin,
    staff, tickets,
};

/// Builds the actix `App` with every route and middleware, in the order they must run.
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
        .configure(pages)
        .configure(api_v1)
        .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
        .wrap(from_fn(security::consume_flash))
        .wrap(from_fn(request_id_header))
        .wrap(from_fn(security::same_origin))
        .wrap(ErrorHandlers::new().default_handler(error::error_pages))
        .wrap(headers)
        .wrap(middleware::Compress::default())
        .wrap(tracing_actix_web::TracingLogger::default())
}

/// The server-rendered site: operators, getting in, the customer portal, the back office.
pub fn pages(cfg: &mut web::ServiceConfig) {
    use web::{get, post};

    // Operators and static files.
    cfg.route("/healthz", get().to(health::live))
        .route("/readyz", get().to(health::ready))
        .route("/static/{file}", get().to(assets::serve))
        .route("/metrics", get().to(live::metrics))
        .route("/live", get().to(live::socket));

    // Getting in.
    cfg.route("/login", get().to(signin::login::show))
        .route("/login", post().to(signin::login::submit))
        .route("/logout", post().to(signin::login::sign_out))
        .route("/login/passkey/start", post().to(signin::passkey::sign_in_start))
        .route("/login/passkey/finish", post().to(signin::passkey::sign_in_finish))
        .route("/password/forgot", get().to(signin::self_service::forgot_form))
        .route("/password/forgot", post().to(signin::self_service::forgot))
        .route("/register", get().to(signin::self_service::register_form))
        .route("/register", post().to(signin::self_service::register));
    // The pages behind emailed links: /invite/{token}, /register/{token}, /password/reset/{token}.
    for kind in [&signin::links::INVITATION, &signin::links::REGISTRATION, &signin::links::RESET] {
        let path = format!("{}/{{token}}", kind.prefix);
        cfg.route(
            &path,
            get().to(move |req: HttpRequest, state: web::Data<AppState>, token: web::Path<String>| {
                signin::links::show(kind, req, state, token)
            }),
        )
        .route(
            &path,
            post().to(
                move |req: HttpRequest,
                      state: web::Data<AppState>,
                      token: web::Path<String>,
                      form: CsrfForm<signin::forms::PasswordForm>| {
                    signin::links::submit(kind, req, state, token, form)
                },
            ),
        );
    }

    // The customer portal.
    cfg.route("/", get().to(dashboard::show))
        .route("/orders", get().to(orders::index))
        .route("/orders/{id}", get().to(orders::show))
        .route("/orders/{id}/respond", post().to(orders::respond))
        .route("/invoices", get().to(invoices::index))
        .route("/invoices/{id}", get().to(invoices::show))
        .route("/documents", get().to(documents::index))
        .route("/documents", post().to(documents::create))
        .route("/documents/new", get().to(documents::new_form))
        .route("/documents/{id}", get().to(documents::show))
        .route("/documents/{id}/versions", post().to(documents::add_version))
        .route("/documents/{id}/download", post().to(documents::download))
        .route("/documents/{id}/links/{grant}/revoke", post().to(documents::revoke_link))
        .route("/downloads/{token}", get().to(documents::fetch))
        .route("/tickets", get().to(tickets::index))
        .route("/tickets/{id}", get().to(tickets::show))
        .route("/notifications", get().to(notifications::index))
        .route("/reports", get().to(reports::index))
        .route("/activity", get().to(activity::index));

    // The account: team (customer admins), settings and passkeys (everyone, staff included).
    cfg.route("/team", get().to(accounts::team::index))
        .route("/team/invite", post().to(accounts::team::invite))
        .route("/team/{id}/resend", post().to(accounts::team::resend))
        .route("/team/{id}/withdraw", post().to(accounts::team::withdraw))
        .route("/team/{id}/disable", post().to(accounts::team::disable))
        .route("/team/{id}/enable", post().to(accounts::team::enable))
        .route("/settings", get().to(accounts::settings::show))
        .route("/settings/password", post().to(accounts::settings::change_password))
        .route("/settings/email", post().to(accounts::settings::request_email_change))
        .route("/settings/email/{token}", get().to(accounts::settings::confirm_email_page))
        .route("/settings/email/{token}", post().to(accounts::settings::confirm_email))
        .route("/settings/sessions/end-others", post().to(accounts::settings::end_other_sessions))
        .route("/settings/sessions/{id}/end", post().to(accounts::settings::end_session))
        .route(accounts::passkeys::PAGE, get().to(accounts::passkeys::show))
        .route("/settings/passkeys/register/start", post().to(accounts::passkeys::register_start))
        .route("/settings/passkeys/register/finish", post().to(accounts::passkeys::register_finish))
        .route("/settings/passkeys/password", post().to(accounts::passkeys::set_password_sign_in))
        .route("/settings/passkeys/{id}/rename", post().to(accounts::passkeys::rename))
        .route("/settings/passkeys/{id}/remove", post().to(accounts::passkeys::remove))
        .route("/settings/confirm", get().to(accounts::passkeys::confirm_page))
        .route("/settings/confirm", post().to(accounts::passkeys::confirm_with_password))
        .route("/settings/confirm/passkey/start", post().to(accounts::passkeys::confirm_start))
        .route("/settings/confirm/passkey/finish", post().to(accounts::passkeys::confirm_finish));

    // The back office.
    cfg.route("/staff", get().to(staff::overview))
        .route("/staff/customers", get().to(staff::customers))
        .route("/staff/customers/new", get().to(staff::customers::new_form))
        .route("/staff/customers", post().to(staff::customers::create))
        .route("/staff/customers/{id}", get().to(staff::customers::show))
        .route("/staff/customers/{id}/invite", post().to(staff::customers::invite))
        .route("/staff/customers/{id}/domains", post().to(staff::customers::add_domain))
        .route("/staff/customers/{id}/domains/remove", post().to(staff::customers::remove_domain))
        .route("/staff/users/{id}/disable", post().to(staff::customers::disable))
        .route("/staff/users/{id}/enable", post().to(staff::customers::enable))
        .route("/staff/orders", get().to(staff::orders::index))
        .route("/staff/orders/bulk-move", post().to(staff::orders::bulk_move))
        .route("/staff/customers/{id}/orders/new", get().to(staff::orders::new_form))
        .route("/staff/customers/{id}/orders/new", post().to(staff::orders::create))
        .route("/staff/orders/{id}", get().to(staff::orders::show))
        .route("/staff/orders/{id}/stage", post().to(staff::orders::move_stage))
        .route("/staff/orders/{id}/edit", get().to(staff::orders::edit_form))
        .route("/staff/orders/{id}/edit", post().to(staff::orders::update))
        .route("/staff/orders/{id}/cancel", post().to(staff::orders::cancel))
        .route("/staff/orders/{id}/reopen", post().to(staff::orders::reopen))
        .route("/staff/documents", get().to(staff::documents::index))
        .route("/staff/documents", post().to(staff::documents::create))
        .route("/staff/documents/new", get().to(staff::documents::new_form))
        .route("/staff/documents/{id}", get().to(staff::documents::show))
        .route("/staff/documents/{id}/versions", post().to(staff::documents::add_version))
        .route("/staff/documents/{id}/download", post().to(staff::documents::download))
        .route("/staff/documents/{id}/links/{grant}/revoke", post().to(staff::documents::revoke_link))
        .route("/staff/workflows", get().to(staff::workflows::index))
        .route("/staff/workflows", post().to(staff::workflows::create))
        .route("/staff/workflows/{id}", get().to(staff::workflows::show))
        .route("/staff/workflows/{id}/rename", post().to(staff::workflows::rename))
        .route("/staff/workflows/{id}/stages", post().to(staff::workflows::add_stage))
        .route("/staff/workflows/{id}/stages/{stage}", post().to(staff::workflows::change_stage))
        .route("/staff/workflows/{id}/stages/{stage}/move", post().to(staff::workflows::move_stage))
        .route("/staff/workflows/{id}/stages/{stage}/remove", post().to(staff::workflows::remove_stage))
        .route("/staff/security", get().to(staff::security::show))
        .route("/staff/security", post().to(staff::security::update))
        .route(staff::integrations::PAGE, get().to(staff::integrations::show))
        .route(staff::integrations::PAGE, post().to(staff::integrations::create))
        .route("/staff/integrations/{user}/tokens", post().to(staff::integrations::add_token))
        .route("/staff/integrations/tokens/{id}/revoke", post().to(staff::integrations::revoke));
}

/// The JSON API for the business's other systems: bearer tokens, JSON errors
/// (an unknown route or method included), bodies up to [`api::BODY_LIMIT`].
pub fn api_v1(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default().limit(api::BODY_LIMIT).error_handler(api::error::json_error_handler);
    let resource = |path: &str| web::resource(path).default_service(web::to(api::not_allowed));
    cfg.service(
        web::scope("/api/v1")
            .app_data(json)
            .service(resource("/orders").route(web::get().to(api::orders::list)))
            .service(
                resource("/orders/by-ref/{external_ref}")
                    .route(web::get().to(api::orders::show_by_ref))
                    .route(web::put().to(api::orders::upsert)),
            )
            .service(resource("/orders/{id}").route(web::get().to(api::orders::show)))
            .service(resource("/orders/{id}/stage").route(web::post().to(api::orders::move_stage)))
            .default_service(web::to(api::no_route)),
    );
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
