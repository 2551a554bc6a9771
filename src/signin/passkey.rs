//! Signing in with a passkey (the two requests of a discoverable ceremony), and
//! the answers every passkey page's script understands.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use webauthn_rs::prelude::PublicKeyCredential;

use crate::auth::passkeys::{self, Passkeys, Refusal, SessionRequest, SignInAnswer};
use crate::auth::redirect::safe_next;
use crate::auth::session;
use crate::auth::throttle::{self, Limit};
use crate::web::extract::CsrfJson;
use crate::web::{AppError, AppState, client_ip};

/// A refusal the page shows as it is (the browser's script puts it next to the button).
pub fn refuse(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// Where the page goes once a ceremony has finished.
pub fn go(to: &str) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "redirect": to }))
}

pub const EXPIRED: &str = "That took too long, or the page was used twice. Try again.";
pub const NOT_ACCEPTED: &str = "That passkey was not accepted. Try again, or use another way to sign in.";

pub fn passkeys_for(state: &AppState) -> Result<&Passkeys, AppError> {
    state.passkeys.as_ref().ok_or(AppError::NotFound)
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn sign_in_start(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfJson(_): CsrfJson<Nothing>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    // Every visit to the sign-in page starts one (for autofill): generous, but bounded.
    if let Err(throttled) =
        throttle::spend(&state.db, Limit::PasskeyCeremonyIp, &throttle::ip_key(client_ip(&req))).await?
    {
        return Err(AppError::Throttled(throttled.retry_after));
    }
    Ok(HttpResponse::Ok().json(passkeys::start_sign_in(&state.db, relying_party.webauthn()).await?))
}

#[derive(Deserialize)]
pub struct SignInFinish {
    ceremony: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    remember: bool,
    #[serde(default)]
    next: Option<String>,
}

pub async fn sign_in_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfJson(form): CsrfJson<SignInFinish>,
) -> Result<HttpResponse, AppError> {
    let relying_party = passkeys_for(&state)?;
    let ip = client_ip(&req);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let answer = SignInAnswer { ceremony: form.ceremony, credential: form.credential, remember: form.remember };
    let outcome = passkeys::finish_sign_in(
        &state.db,
        relying_party.webauthn(),
        &answer,
        SessionRequest { lifetimes: state.lifetimes, ip, user_agent },
    )
    .await?;
    let signed_in = match outcome {
        Ok(signed_in) => signed_in,
        Err(refusal) => return Ok(refuse(status(&refusal), message(&refusal))),
    };
    // As with a password: a session that came with the request ends here.
    if let Some(old) = state.cookies.session_token(&req) {
        session::sign_out(&state.db, &old, ip).await?;
    }
    let to = super::login::home_for(signed_in.is_staff, form.next.as_deref().and_then(safe_next));
    let max_age = signed_in.remember.then_some(state.lifetimes.remember);
    let mut response = go(&to);
    response
        .add_cookie(&state.cookies.session(signed_in.token, max_age))
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}

fn status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::Expired => StatusCode::GONE,
        _ => StatusCode::UNAUTHORIZED,
    }
}

fn message(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Expired => EXPIRED,
        _ => NOT_ACCEPTED,
    }
}
