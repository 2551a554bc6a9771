//! Staff → Integrations: the other systems (ERP, shop) that keep orders in sync
//! through the JSON API, each a staff user of its own with bearer tokens.
//!
//! A token is shown once, in the answer to the POST that made it (status 200,
//! `Cache-Control: no-store`): never in a redirect, a flash cookie or a later
//! page, and the database keeps only its SHA-256 and its first characters.
//! Every staff member sees the list; only staff admins create and revoke (the
//! database functions check that too).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Role;
use crate::auth::api_tokens::{self, IntegrationRow, new_token};
use crate::web::client_ip;
use crate::web::{AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, redirect_with_flash};

pub const PAGE: &str = "/staff/integrations";
const NAME_MAX: usize = 100;

/// A token just made: shown on this one page, then never again.
pub struct NewlyMade {
    pub integration: String,
    pub token: String,
}

#[derive(TemplateSimple)]
#[template(path = "staff/integrations.stpl")]
struct IntegrationsPage {
    shell: Shell,
    csrf_token: String,
    may_change: bool,
    integrations: Vec<IntegrationRow>,
    made: Option<NewlyMade>,
    /// The create form as typed, and what is wrong with it.
    name: String,
    name_error: Option<String>,
}

fn page(cx: &StaffScope, flash: Option<Flash>, integrations: Vec<IntegrationRow>) -> IntegrationsPage {
    IntegrationsPage {
        shell: Shell::page(&cx.viewer, "Integrations", Section::StaffIntegrations, flash),
        csrf_token: cx.viewer.csrf_token.clone(),
        may_change: cx.viewer.role == Role::StaffAdmin,
        integrations,
        made: None,
        name: String::new(),
        name_error: None,
    }
}

/// The page with the new token on it: this response is the only place it ever appears.
fn once(status: StatusCode, page: IntegrationsPage) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render_once()?))
}

pub async fn show(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let list = api_tokens::integrations(&cx.db).await?;
    let flash = cx.flash.clone();
    let page = page(&cx, flash, list);
    cx.db.commit().await?;
    html(page)
}

fn require_admin(cx: &StaffScope) -> Result<(), AppError> {
    if cx.viewer.role == Role::StaffAdmin { Ok(()) } else { Err(AppError::Forbidden) }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
}

pub async fn create(
    req: HttpRequest,
    cx: StaffScope,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let name = form.name.trim();
    let problem = match name.chars().count() {
        0 => Some("Name the system this integration is for, e.g. \u{201c}ERP\u{201d}.".to_owned()),
        n if n > NAME_MAX => Some(format!("The name is {n} characters long; at most {NAME_MAX} are allowed.")),
        _ => None,
    };
    if let Some(problem) = problem {
        let list = api_tokens::integrations(&cx.db).await?;
        let mut refused = page(&cx, None, list);
        refused.name = form.name.clone();
        refused.name_error = Some(problem);
        cx.db.commit().await?;
        return once(StatusCode::UNPROCESSABLE_ENTITY, refused);
    }
    let made = new_token();
    if api_tokens::create_integration(&cx.db, name, &made, client_ip(&req)).await?.is_none() {
        return Err(AppError::Forbidden);
    }
    let list = api_tokens::integrations(&cx.db).await?;
    let mut shown = page(&cx, None, list);
    shown.made = Some(NewlyMade { integration: name.to_owned(), token: made.token });
    cx.db.commit().await?;
    once(StatusCode::OK, shown)
}

#[derive(Deserialize)]
pub struct NoFields {}

fn parse_id(path: web::Path<String>) -> Result<Uuid, AppError> {
    Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)
}

pub async fn add_token(
    req: HttpRequest,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let user = parse_id(path)?;
    let made = new_token();
    if !api_tokens::add_token(&cx.db, user, &made, client_ip(&req)).await? {
        // Not an enabled integration (or, though checked above, not an admin asking).
        return Err(AppError::NotFound);
    }
    let list = api_tokens::integrations(&cx.db).await?;
    let integration = list.iter().find(|i| i.id == user).map(|i| i.name.clone()).unwrap_or_default();
    let mut shown = page(&cx, None, list);
    shown.made = Some(NewlyMade { integration, token: made.token });
    cx.db.commit().await?;
    once(StatusCode::OK, shown)
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let id = parse_id(path)?;
    let Some(prefix) = api_tokens::token_prefix(&cx.db, id).await? else { return Err(AppError::NotFound) };
    let revoked = api_tokens::revoke(&cx.db, id, client_ip(&req)).await?;
    cx.db.commit().await?;
    let flash = if revoked {
        Flash::success(format!("Token {prefix}\u{2026} is revoked: requests with it are refused from now on."))
    } else {
        Flash::info(format!("Token {prefix}\u{2026} was already revoked."))
    };
    Ok(redirect_with_flash(&state, PAGE, flash))
}
