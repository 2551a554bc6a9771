//! Sign-in and sign-out pages.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::redirect::safe_next;
use crate::auth::session::{self, Attempt};
use crate::auth::{AuthError, throttle};
use crate::web::extract::current_viewer;
use crate::web::{AppError, AppState, CsrfForm, Flash, Shell, redirect_with_flash};

#[derive(TemplateSimple)]
#[template(path = "auth/login.stpl")]
struct LoginPage {
    shell: Shell,
    csrf_token: String,
    email: String,
    remember: bool,
    next: String,
    error: Option<&'static str>,
    /// Locked after too many failures: how long to wait ("about 2 minutes").
    retry_in: Option<String>,
    /// Whether this portal can offer passkeys (it is reached by a domain name).
    passkeys: bool,
    script: &'static str,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub(crate) fn home_for(is_staff: bool, next: Option<&str>) -> String {
    match next.and_then(safe_next) {
        // Staff land in the back office unless they asked for a staff page.
        Some(next) if !is_staff || next.starts_with("/staff") => next.to_owned(),
        _ if is_staff => "/staff".to_owned(),
        _ => "/".to_owned(),
    }
}

fn render(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    mut page: LoginPage,
) -> Result<HttpResponse, AppError> {
    let existing = state.cookies.anonymous_csrf_token(req).filter(|t| t.len() == 43);
    let token = existing.clone().unwrap_or_else(session::random_token);
    page.csrf_token = token.clone();
    page.passkeys = state.passkeys.is_some();
    page.script = crate::web::assets::url("passkeys.js");
    page.shell.flash = state.cookies.read_flash(req);
    let mut response = HttpResponse::build(status);
    if existing.is_none() {
        response.cookie(state.cookies.anonymous_csrf(token));
    }
    Ok(response.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(page.render_once()?))
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    if let Some(viewer) = current_viewer(&req).await? {
        let to = home_for(viewer.is_staff(), query.next.as_deref());
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish());
    }
    let page = LoginPage {
        shell: Shell::anonymous("Sign in"),
        csrf_token: String::new(),
        email: String::new(),
        remember: false,
        next: query.next.as_deref().and_then(safe_next).unwrap_or("").to_owned(),
        error: None,
        retry_in: None,
        passkeys: false,
        script: "",
    };
    render(&state, &req, StatusCode::OK, page)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    remember: Option<String>,
    next: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let remember = form.remember.is_some();
    let next = form.next.as_deref().and_then(safe_next).unwrap_or("").to_owned();
    let retry = |error: &'static str| LoginPage {
        shell: Shell::anonymous("Sign in"),
        csrf_token: String::new(),
        email: form.email.trim().to_owned(),
        remember,
        next: next.clone(),
        error: Some(error),
        retry_in: None,
        passkeys: false,
        script: "",
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        let page = retry("Enter your email address and your password.");
        return render(&state, &req, StatusCode::UNPROCESSABLE_ENTITY, page);
    }
    let ip = req.peer_addr().map(|a| a.ip());
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let attempt =
        Attempt { email: &form.email, password: SecretString::from(form.password.clone()), remember, ip, user_agent };
    let signed_in = match session::sign_in(&state.db, attempt, state.lifetimes).await {
        Ok(Some(signed_in)) => signed_in,
        Ok(None) => {
            let page = retry("That email and password do not match an account.");
            return render(&state, &req, StatusCode::UNAUTHORIZED, page);
        }
        // The same page whether or not the account exists, so a lock tells nothing.
        Err(AuthError::Throttled(throttled)) => {
            let page = LoginPage {
                retry_in: Some(throttle::wait_phrase(throttled.retry_after)),
                ..retry("Too many failed attempts.")
            };
            let mut response = render(&state, &req, StatusCode::TOO_MANY_REQUESTS, page)?;
            response.headers_mut().insert(header::RETRY_AFTER, throttled.retry_after_secs().into());
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    // A session that came with the request (another account, or a planted
    // token) ends here; the new one gets a token nobody has seen.
    if let Some(old) = state.cookies.session_token(&req) {
        session::sign_out(&state.db, &old, ip).await?;
    }
    let to = home_for(signed_in.is_staff, Some(&next));
    let max_age = signed_in.remember.then_some(state.lifetimes.remember);
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .cookie(state.cookies.session(signed_in.token, max_age))
        .finish())
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    if let Some(token) = state.cookies.session_token(&req) {
        session::sign_out(&state.db, &token, req.peer_addr().map(|a| a.ip())).await?;
    }
    let mut response = redirect_with_flash(&state, "/login", Flash::success("You have signed out."));
    response.add_removal_cookie(&state.cookies.session_removal()).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::home_for;

    #[test]
    fn users_land_on_their_side() {
        assert_eq!(home_for(false, None), "/");
        assert_eq!(home_for(false, Some("/orders/7")), "/orders/7");
        assert_eq!(home_for(false, Some("//evil.example")), "/");
        assert_eq!(home_for(true, None), "/staff");
        assert_eq!(home_for(true, Some("/orders")), "/staff");
        assert_eq!(home_for(true, Some("/staff/customers")), "/staff/customers");
    }
}
