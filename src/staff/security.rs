//! Staff → Security: whether staff must sign in with passkeys, and who has one.
//!
//! With the requirement on, a staff member who has a passkey can no longer
//! sign in with a password, and one who has none is sent to add one before
//! anything else in the back office opens.

use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{Role, staff_passkeys};
use crate::web::client_ip;
use crate::web::{AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, redirect_with_flash};

pub struct StaffMember {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub passkeys: i64,
    pub password_sign_in: bool,
}

#[derive(TemplateSimple)]
#[template(path = "staff/security.stpl")]
struct SecurityPage {
    shell: Shell,
    csrf_token: String,
    required: bool,
    may_change: bool,
    staff: Vec<StaffMember>,
}

pub async fn show(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let required = staff_passkeys::required(&cx.db).await?;
    let staff = staff_passkeys::staff(&cx.db)
        .await?
        .into_iter()
        .map(|m| StaffMember {
            role: Role::parse(&m.role).map_or("Staff", Role::label),
            id: m.id,
            name: m.name,
            email: m.email,
            passkeys: m.passkeys,
            password_sign_in: m.password_sign_in,
        })
        .collect();
    let page = SecurityPage {
        shell: Shell::page(&cx.viewer, "Security", Section::StaffSecurity, cx.flash.clone()),
        csrf_token: cx.viewer.csrf_token.clone(),
        required,
        may_change: cx.viewer.role == Role::StaffAdmin,
        staff,
    };
    html(page)
}

#[derive(Deserialize)]
pub struct RequireForm {
    required: String,
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    CsrfForm(form): CsrfForm<RequireForm>,
) -> Result<HttpResponse, AppError> {
    let required = match form.required.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(AppError::BadRequest("required must be on or off".into())),
    };
    if !staff_passkeys::set_required(&cx.db, required, client_ip(&req)).await? {
        return Err(AppError::Forbidden);
    }
    cx.db.commit().await?;
    let said = if required {
        "Staff must now sign in with a passkey. Staff without one will be asked to add one when they next sign in."
    } else {
        "Passkeys are optional for staff again."
    };
    Ok(redirect_with_flash(&state, "/staff/security", Flash::success(said)))
}
