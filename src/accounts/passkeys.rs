//! Settings → Passkeys, for customers and staff alike: add a passkey, rename
//! or remove one, switch password sign-in off, and the "confirm it's you" page
//! that sensitive changes ask for when the session has not proven its user in
//! the last few minutes (a password or a passkey, whichever the user has).
//!
//! The recent-confirmation rule is also checked by the database functions that
//! make those changes, so no handler can forget it.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::auth::passkeys::{self, Purpose, Started};
use crate::auth::redirect::safe_next;
use crate::auth::{AuthError, session, throttle};
use crate::db::Scope;
use crate::signin::passkey::{EXPIRED, NOT_ACCEPTED, go, passkeys_for, refuse};
use crate::web::client_ip;
use crate::web::{
    AccountScope, AppError, AppState, CsrfForm, CsrfJson, Flash, Section, Shell, Unopened, redirect_with_flash,
};

/// The settings page for passkeys (staff reach it from their account menu).
pub const PAGE: &str = crate::web::shell::PASSKEYS_PAGE;
/// How long a confirmation lets sensitive changes through.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(10 * 60);

fn window_seconds() -> i32 {
    i32::try_from(CONFIRM_WINDOW.as_secs()).unwrap_or(600)
}

pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(TemplateSimple)]
#[template(path = "accounts/passkeys.stpl")]
struct PasskeysPage {
    shell: Shell,
    csrf_token: String,
    keys: Vec<KeyRow>,
    password_sign_in: bool,
    /// Why passkeys cannot be added here (the portal is reached by an IP address).
    unavailable: bool,
    /// Staff, with the staff requirement on.
    staff_required: bool,
    needs_passkey: bool,
    /// A rename that was refused: which passkey, what was typed, why.
    rename_error: Option<(Uuid, String, String)>,
    script: &'static str,
}

async fn load_keys(db: &Scope) -> Result<Vec<KeyRow>, AppError> {
    let rows = db.query("SELECT id, name, created_at, last_used_at FROM passkeys ORDER BY created_at, id", &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(KeyRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?)
}

async fn password_sign_in(db: &Scope, user: Uuid) -> Result<bool, AppError> {
    Ok(db.query_one("SELECT password_sign_in FROM users WHERE id = $1", &[&user]).await?.try_get(0)?)
}

/// Whether the viewer is staff and staff must sign in with passkeys.
async fn staff_passkeys_required(cx: &AccountScope) -> Result<bool, AppError> {
    if !cx.viewer.is_staff() {
        return Ok(false);
    }
    Ok(cx.db.query_one("SELECT staff_passkeys_required FROM portal_settings", &[]).await?.try_get(0)?)
}

async fn render_page(
    state: &AppState,
    cx: AccountScope,
    status: StatusCode,
    rename_error: Option<(Uuid, String, String)>,
) -> Result<HttpResponse, AppError> {
    let keys = load_keys(&cx.db).await?;
    let password_sign_in = password_sign_in(&cx.db, cx.viewer.user_id).await?;
    let staff_required = staff_passkeys_required(&cx).await?;
    let section = if cx.viewer.is_staff() { Section::StaffSecurity } else { Section::Settings };
    let page = PasskeysPage {
        shell: Shell::page(&cx.viewer, "Passkeys", section, cx.flash.clone()),
        csrf_token: cx.viewer.csrf_token.clone(),
        keys,
        password_sign_in,
        unavailable: state.passkeys.is_none(),
        staff_required,
        needs_passkey: cx.viewer.needs_passkey,
        rename_error,
        script: crate::web::assets::url("passkeys.js"),
    };
    crate::web::html_with_status(status, page.render_once()?)
}

pub async fn show(state: web::Data<AppState>, cx: AccountScope) -> Result<HttpResponse, AppError> {
    render_page(&state, cx, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct Nothing {}

/// Begins adding a passkey: the options for `navigator.credentials.create`.
pub async fn register_start(
    state: web::Data<AppState>,
    cx: AccountScope,
    CsrfJson(_): CsrfJson<Nothing>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    // A new way into the account: a session that has not proven its user lately confirms first.
    if !recently_verified(&cx).await? {
        return Ok(go(&confirm_url(PAGE)));
    }
    let existing = mine(&cx.db).await?;
    // The same authenticator cannot be added twice: the browser says so before asking.
    let exclude = existing.iter().map(|(_, key)| key.cred_id().clone()).collect::<Vec<_>>();
    let (mut options, registration): (CreationChallengeResponse, PasskeyRegistration) = relying_party
        .webauthn()
        .start_passkey_registration(cx.viewer.user_id, &cx.viewer.email, &cx.viewer.name, Some(exclude))
        .map_err(passkeys::webauthn_failed)?;
    // A passkey that signs in without an email must live on the authenticator
    // (a discoverable credential); webauthn-rs leaves that choice to the caller.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.require_resident_key = true;
        selection.resident_key = Some(ResidentKeyRequirement::Required);
    }
    let ceremony = passkeys::put_for_session(&cx.db, Purpose::Register, cx.viewer.session_id, &registration).await?;
    cx.db.commit().await?;
    Ok(HttpResponse::Ok().json(Started { ceremony, options }))
}

#[derive(Deserialize)]
pub struct RegisterFinish {
    ceremony: String,
    #[serde(default)]
    name: String,
    credential: RegisterPublicKeyCredential,
}

/// Checks a passkey's name; `Err` is what the user is told.
fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.chars().count() > 100 {
        return Err("Use at most 100 characters.".into());
    }
    if name.chars().any(char::is_control) {
        return Err("Use letters, digits, spaces and punctuation only.".into());
    }
    Ok(name.to_owned())
}

pub async fn register_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: AccountScope,
    CsrfJson(form): CsrfJson<RegisterFinish>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    let name = match check_name(&form.name) {
        Ok(name) => name,
        Err(why) => return Ok(refuse(StatusCode::UNPROCESSABLE_ENTITY, &why)),
    };
    let Some(registration) = passkeys::take_for_session::<PasskeyRegistration>(
        &cx.db,
        Purpose::Register,
        cx.viewer.session_id,
        &form.ceremony,
    )
    .await?
    else {
        // The take is committed, so the token is spent even though nothing was added.
        cx.db.commit().await?;
        return Ok(refuse(StatusCode::GONE, EXPIRED));
    };
    let key = match relying_party.webauthn().finish_passkey_registration(&form.credential, &registration) {
        Ok(key) => key,
        Err(e) => {
            tracing::info!(error = %e, "passkey registration refused");
            cx.db.commit().await?;
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                "Your device's answer could not be verified, so no passkey was added. Try again.",
            ));
        }
    };
    let count = load_keys(&cx.db).await?.len();
    let name = if name.is_empty() { format!("Passkey {}", count + 1) } else { name };
    let credential = serde_json::to_value(&key).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let outcome: String = cx
        .db
        .query_one(
            "SELECT portal_passkey_add($1, $2, $3, $4, $5, $6)",
            &[
                &cx.viewer.session_id,
                &window_seconds(),
                &key.cred_id().as_slice(),
                &credential,
                &name,
                &client_ip(&req),
            ],
        )
        .await?
        .try_get(0)?;
    cx.db.commit().await?;
    match outcome.as_str() {
        "added" => {}
        "unconfirmed" => return Ok(go(&confirm_url(PAGE))),
        _ => return Ok(refuse(StatusCode::CONFLICT, "That passkey is already registered.")),
    }
    let mut response = go(PAGE);
    response
        .add_cookie(
            &state.cookies.flash(&Flash::success(format!("Passkey “{name}” added. You can sign in with it now."))),
        )
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}

/// The current user's passkeys, with their ids.
async fn mine(db: &Scope) -> Result<Vec<(Uuid, Passkey)>, AppError> {
    let rows = db.query("SELECT id, credential FROM portal_passkeys_mine()", &[]).await?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        if let Some(key) = passkeys::parse(r.try_get("credential")?) {
            keys.push((id, key));
        }
    }
    Ok(keys)
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

pub async fn rename(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: AccountScope,
    id: web::Path<Uuid>,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let name = match check_name(&form.name) {
        Ok(name) if !name.is_empty() => name,
        Ok(_) => return refuse_rename(&state, cx, id, form.name, "Enter a name.".into()).await,
        Err(why) => return refuse_rename(&state, cx, id, form.name, why).await,
    };
    let renamed: bool = cx
        .db
        .query_one("SELECT portal_passkey_rename($1, $2, $3)", &[&id, &name, &client_ip(&req)])
        .await?
        .try_get(0)?;
    if !renamed {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, PAGE, Flash::success(format!("Renamed to “{name}”."))))
}

async fn refuse_rename(
    state: &AppState,
    cx: AccountScope,
    id: Uuid,
    typed: String,
    why: String,
) -> Result<HttpResponse, AppError> {
    if !load_keys(&cx.db).await?.iter().any(|k| k.id == id) {
        return Err(AppError::NotFound);
    }
    render_page(state, cx, StatusCode::UNPROCESSABLE_ENTITY, Some((id, typed, why))).await
}

fn confirm_url(back: &str) -> String {
    format!("/settings/confirm?next={}", crate::web::encode_query_value(back))
}

/// Whether this session proved its user within the confirmation window.
async fn recently_verified(cx: &AccountScope) -> Result<bool, AppError> {
    let row = cx
        .db
        .query_one("SELECT portal_session_recently_verified($1, $2)", &[&cx.viewer.session_id, &window_seconds()])
        .await?;
    Ok(row.try_get(0)?)
}

/// Sends the user to confirm who they are, then back to `back`.
fn ask_to_confirm(state: &AppState, back: &str, why: &str) -> HttpResponse {
    redirect_with_flash(state, &confirm_url(back), Flash::info(why))
}

pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: AccountScope,
    id: web::Path<Uuid>,
    CsrfForm(_): CsrfForm<Nothing>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let outcome: String = cx
        .db
        .query_one(
            "SELECT portal_passkey_remove($1, $2, $3, $4)",
            &[&id, &cx.viewer.session_id, &window_seconds(), &client_ip(&req)],
        )
        .await?
        .try_get(0)?;
    match outcome.as_str() {
        "removed" => {
            cx.db.commit().await?;
            Ok(redirect_with_flash(&state, PAGE, Flash::success("Passkey removed. It can no longer sign in.")))
        }
        "unconfirmed" => Ok(ask_to_confirm(&state, PAGE, "Confirm it's you, then remove the passkey again.")),
        "last" => Ok(redirect_with_flash(
            &state,
            PAGE,
            Flash::error("This is your only passkey and password sign-in is off. Turn password sign-in on first."),
        )),
        _ => Err(AppError::NotFound),
    }
}

#[derive(Deserialize)]
pub struct PasswordSignInForm {
    enabled: String,
}

pub async fn set_password_sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: AccountScope,
    CsrfForm(form): CsrfForm<PasswordSignInForm>,
) -> Result<HttpResponse, AppError> {
    let enabled = match form.enabled.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(AppError::BadRequest("enabled must be on or off".into())),
    };
    let outcome: String = cx
        .db
        .query_one(
            "SELECT portal_password_sign_in_set($1, $2, $3, $4)",
            &[&enabled, &cx.viewer.session_id, &window_seconds(), &client_ip(&req)],
        )
        .await?
        .try_get(0)?;
    match outcome.as_str() {
        "done" => {
            cx.db.commit().await?;
            let said = if enabled {
                "Password sign-in is on: your password works again, as well as your passkeys."
            } else {
                "Password sign-in is off: only your passkeys can sign in to this account, and every other session \
                 was signed out."
            };
            Ok(redirect_with_flash(&state, PAGE, Flash::success(said)))
        }
        "unconfirmed" => Ok(ask_to_confirm(&state, PAGE, "Confirm it's you, then change the setting again.")),
        _ => Ok(redirect_with_flash(&state, PAGE, Flash::error("Add a passkey before you turn password sign-in off."))),
    }
}

// Confirming who you are ----------------------------------------------------------

#[derive(TemplateSimple)]
#[template(path = "accounts/confirm.stpl")]
struct ConfirmPage {
    shell: Shell,
    csrf_token: String,
    next: String,
    password: bool,
    passkey: bool,
    error: Option<String>,
    script: &'static str,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn back_to(next: Option<&str>) -> String {
    next.and_then(safe_next).unwrap_or(PAGE).to_owned()
}

async fn render_confirm(
    state: &AppState,
    cx: AccountScope,
    status: StatusCode,
    next: String,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let has_keys = !load_keys(&cx.db).await?.is_empty();
    // The password is offered only where it can sign in (see portal_password_allowed).
    let staff_required = staff_passkeys_required(&cx).await?;
    let password = password_sign_in(&cx.db, cx.viewer.user_id).await? && !(staff_required && has_keys);
    let passkey = state.passkeys.is_some() && has_keys;
    let section = if cx.viewer.is_staff() { Section::StaffSecurity } else { Section::Settings };
    let page = ConfirmPage {
        shell: Shell::page(&cx.viewer, "Confirm it's you", section, cx.flash.clone()),
        csrf_token: cx.viewer.csrf_token.clone(),
        next,
        password,
        passkey,
        error,
        script: crate::web::assets::url("passkeys.js"),
    };
    crate::web::html_with_status(status, page.render_once()?)
}

pub async fn confirm_page(
    state: web::Data<AppState>,
    cx: AccountScope,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let next = back_to(query.next.as_deref());
    render_confirm(&state, cx, StatusCode::OK, next, None).await
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn confirmed_flash() -> Flash {
    let minutes = CONFIRM_WINDOW.as_secs() / 60;
    Flash::success(format!("Confirmed. For the next {minutes} minutes you won't be asked again."))
}

fn confirmed(state: &AppState, next: &str) -> HttpResponse {
    redirect_with_flash(state, next, confirmed_flash())
}

pub async fn confirm_with_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    unopened: Unopened<AccountScope>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, AppError> {
    let next = back_to(form.next.as_deref());
    if form.password.is_empty() {
        let cx = unopened.open().await?;
        return render_confirm(&state, cx, StatusCode::UNPROCESSABLE_ENTITY, next, Some("Enter your password.".into()))
            .await;
    }
    let ip = client_ip(&req);
    // A sign-in attempt like any other: the same lockout applies. It runs before
    // the scope opens, so the request holds one connection and none while hashing.
    let checked =
        session::check_credentials(&state.db, &unopened.viewer.email, SecretString::from(form.password.clone()), ip)
            .await;
    let cx = unopened.open().await?;
    match checked {
        Ok(Some((user, _))) if user == cx.viewer.user_id => {
            cx.db.execute("SELECT portal_session_verify($1, 'password', $2)", &[&cx.viewer.session_id, &ip]).await?;
            cx.db.commit().await?;
            Ok(confirmed(&state, &next))
        }
        Ok(_) => {
            render_confirm(&state, cx, StatusCode::UNAUTHORIZED, next, Some("That password is not right.".into())).await
        }
        Err(AuthError::Throttled(throttled)) => {
            let why =
                format!("Too many failed attempts. Try again in {}.", throttle::wait_phrase(throttled.retry_after));
            let mut response = render_confirm(&state, cx, StatusCode::TOO_MANY_REQUESTS, next, Some(why)).await?;
            response.headers_mut().insert(header::RETRY_AFTER, throttled.retry_after_secs().into());
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn confirm_start(
    state: web::Data<AppState>,
    cx: AccountScope,
    CsrfJson(_): CsrfJson<Nothing>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    let keys: Vec<Passkey> = mine(&cx.db).await?.into_iter().map(|(_, key)| key).collect();
    if keys.is_empty() {
        return Ok(refuse(StatusCode::CONFLICT, "You have no passkey yet. Confirm with your password."));
    }
    let (options, authentication) =
        relying_party.webauthn().start_passkey_authentication(&keys).map_err(passkeys::webauthn_failed)?;
    let ceremony = passkeys::put_for_session(&cx.db, Purpose::Confirm, cx.viewer.session_id, &authentication).await?;
    cx.db.commit().await?;
    Ok(HttpResponse::Ok().json(Started { ceremony, options }))
}

#[derive(Deserialize)]
pub struct ConfirmFinish {
    ceremony: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    next: Option<String>,
}

pub async fn confirm_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: AccountScope,
    CsrfJson(form): CsrfJson<ConfirmFinish>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    let ip = client_ip(&req);
    let Some(authentication) = passkeys::take_for_session::<PasskeyAuthentication>(
        &cx.db,
        Purpose::Confirm,
        cx.viewer.session_id,
        &form.ceremony,
    )
    .await?
    else {
        cx.db.commit().await?;
        return Ok(refuse(StatusCode::GONE, EXPIRED));
    };
    let keys = mine(&cx.db).await?;
    let used = keys.iter().find(|(_, key)| key.cred_id().as_slice() == form.credential.get_credential_id());
    // A key removed since the ceremony began no longer proves anything.
    if used.is_none() {
        cx.db.commit().await?;
        return Ok(refuse(StatusCode::UNAUTHORIZED, NOT_ACCEPTED));
    }
    let result = match relying_party.webauthn().finish_passkey_authentication(&form.credential, &authentication) {
        Ok(result) => result,
        Err(e) => {
            if let (WebauthnError::CredentialPossibleCompromise, Some((id, _))) = (&e, used) {
                tracing::warn!(passkey_id = %id, "passkey signature counter went backwards: possible clone");
                cx.db.execute("SELECT portal_passkey_clone_suspected($1, $2)", &[id, &ip]).await?;
            }
            cx.db.commit().await?;
            return Ok(refuse(StatusCode::UNAUTHORIZED, NOT_ACCEPTED));
        }
    };
    if let Some((id, key)) = used {
        let updated = passkeys::after_use(&mut key.clone(), &result)?;
        cx.db.execute("SELECT portal_passkey_used($1, $2)", &[id, &updated]).await?;
    }
    cx.db.execute("SELECT portal_session_verify($1, 'passkey', $2)", &[&cx.viewer.session_id, &ip]).await?;
    cx.db.commit().await?;
    let next = back_to(form.next.as_deref());
    let mut response = go(&next);
    response.add_cookie(&state.cookies.flash(&confirmed_flash())).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_short_single_lines() {
        assert_eq!(check_name("  Work laptop "), Ok("Work laptop".to_owned()));
        assert_eq!(check_name(""), Ok(String::new()));
        assert!(check_name(&"x".repeat(101)).is_err());
        assert!(check_name("a\nb").is_err());
    }
}
