//! The company's team: everyone who can use the portal, and for the company's
//! admins, inviting colleagues, withdrawing or renewing invitations, and
//! disabling or re-enabling accounts. Disabling ends every session of the
//! account, live connections included, at once (a database trigger does it).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use super::invite::{InviteErrors, InviteFields};
use super::team_store::{self, MemberOrder, Outcome};
use crate::auth::{Role, throttle};
use crate::web::client_ip;
use crate::web::{AppError, AppState, CsrfForm, CustomerScope, Flash, Section, Shell, redirect_with_flash};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Invited,
    Disabled,
}

pub struct Member {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub status: Status,
    pub is_viewer: bool,
}

#[derive(TemplateSimple)]
#[template(path = "accounts/team.stpl")]
struct TeamPage {
    shell: Shell,
    members: Vec<Member>,
    /// Admins manage the team; members only see it.
    manage: bool,
    csrf_token: String,
    form: InviteFields,
    errors: InviteErrors,
}

async fn members(cx: &CustomerScope) -> Result<Vec<Member>, AppError> {
    Ok(team_store::members(&cx.db, cx.customer.id, MemberOrder::Team)
        .await?
        .into_iter()
        .map(|m| Member {
            is_viewer: m.id == cx.viewer.user_id,
            id: m.id,
            name: m.name,
            email: m.email,
            role: Role::parse(&m.role).map_or("Unknown role", Role::label),
            status: if m.disabled {
                Status::Disabled
            } else if m.invited {
                Status::Invited
            } else {
                Status::Active
            },
        })
        .collect())
}

async fn render(
    cx: CustomerScope,
    status: StatusCode,
    form: InviteFields,
    errors: InviteErrors,
) -> Result<HttpResponse, AppError> {
    let members = members(&cx).await?;
    cx.db.commit().await?;
    let page = TeamPage {
        shell: Shell::page(&cx.viewer, "Team", Section::Team, cx.flash),
        members,
        manage: cx.viewer.role == Role::CustomerAdmin,
        csrf_token: cx.viewer.csrf_token.clone(),
        form,
        errors,
    };
    let mut response = crate::web::html(page)?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn index(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    render(cx, StatusCode::OK, InviteFields::default(), InviteErrors::default()).await
}

fn require_admin(cx: &CustomerScope) -> Result<(), AppError> {
    if cx.viewer.role == Role::CustomerAdmin { Ok(()) } else { Err(AppError::Forbidden) }
}

pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    CsrfForm(form): CsrfForm<InviteFields>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let invitee = match form.check() {
        Ok(invitee) => invitee,
        Err(errors) => return render(cx, StatusCode::UNPROCESSABLE_ENTITY, form, errors).await,
    };
    if let Some(wait) = team_store::over_budget(&cx.db, cx.viewer.user_id, &invitee.email).await? {
        let errors = InviteErrors {
            email: Some(format!(
                "Too many invitations were sent just now. Try again in {}.",
                throttle::wait_phrase(wait)
            )),
            ..InviteErrors::default()
        };
        let mut response = render(cx, StatusCode::TOO_MANY_REQUESTS, form, errors).await?;
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(throttle::retry_after_secs(wait)),
        );
        return Ok(response);
    }
    match team_store::invite(&cx.db, cx.customer.id, &invitee, client_ip(&req)).await? {
        Outcome::AlreadyMember => {
            let errors = InviteErrors {
                email: Some(format!("{} is already on your team.", invitee.email)),
                ..InviteErrors::default()
            };
            render(cx, StatusCode::UNPROCESSABLE_ENTITY, form, errors).await
        }
        Outcome::Sent => {
            cx.db.commit().await?;
            let flash =
                Flash::success(format!("Invitation sent to {}. The link in it works for 7 days.", invitee.email));
            Ok(redirect_with_flash(&state, "/team", flash))
        }
    }
}

#[derive(Deserialize)]
pub struct Empty {}

fn member_id(path: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(path).map_err(|_| AppError::NotFound)
}

/// Sends a pending invitation again with a fresh link (the old one stops working).
pub async fn resend(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let id = member_id(&path)?;
    let fields = team_store::pending_invitation(&cx.db, cx.customer.id, id).await?.ok_or(AppError::NotFound)?;
    let invitee = fields.check().map_err(|_| AppError::NotFound)?;
    if let Some(wait) = team_store::over_budget(&cx.db, cx.viewer.user_id, &invitee.email).await? {
        return Err(AppError::Throttled(wait));
    }
    team_store::invite(&cx.db, cx.customer.id, &invitee, client_ip(&req)).await?;
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, "/team", Flash::success(format!("A new invitation was sent to {}.", invitee.email))))
}

pub async fn withdraw(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let id = member_id(&path)?;
    if !team_store::withdraw(&cx.db, id, client_ip(&req)).await? {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, "/team", Flash::success("The invitation was withdrawn; its link no longer works.")))
}

async fn set_disabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    path: web::Path<String>,
    disabled: bool,
) -> Result<HttpResponse, AppError> {
    require_admin(&cx)?;
    let id = member_id(&path)?;
    if !team_store::set_disabled(&cx.db, id, disabled, client_ip(&req)).await? {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    let text = if disabled {
        "The account was disabled and signed out everywhere. It can be enabled again at any time."
    } else {
        "The account was enabled; its owner can sign in again."
    };
    Ok(redirect_with_flash(&state, "/team", Flash::success(text)))
}

pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    set_disabled(req, state, cx, path, true).await
}

pub async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    set_disabled(req, state, cx, path, false).await
}
