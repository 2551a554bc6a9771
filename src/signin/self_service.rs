//! Forms anyone may use without signing in, each of which sends an email:
//! "forgot password" and self-registration. Whatever the address, the answer
//! is the same page, so neither reveals which accounts or customers exist;
//! what differs is only what the address's owner receives.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;

use super::forms::{self, Sent};
use crate::address::check_email;
use crate::auth::normalize_email;
use crate::auth::session::random_token;
use crate::auth::throttle::{self, Limit};
use crate::web::{AppError, AppState, CsrfForm, Shell};

/// Reset links work for 30 minutes; confirmation links for a day.
const RESET_TTL: Duration = Duration::from_secs(30 * 60);
const REGISTRATION_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(TemplateSimple)]
#[template(path = "auth/email_form.stpl")]
struct EmailForm {
    shell: Shell,
    csrf_token: String,
    heading: &'static str,
    intro: &'static str,
    action: &'static str,
    submit: &'static str,
    /// `Some` when the form asks for a name too (registration).
    name: Option<String>,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct EmailFields {
    #[serde(default)]
    email: String,
    name: Option<String>,
}

fn forgot_page(email: String, error: Option<String>) -> EmailForm {
    EmailForm {
        shell: Shell::anonymous("Forgot your password?"),
        csrf_token: String::new(),
        heading: "Forgot your password?",
        intro: "Enter the email address you sign in with. We will send you a link to choose a new password.",
        action: "/password/forgot",
        submit: "Send me a link",
        name: None,
        email,
        error,
    }
}

fn register_page(name: String, email: String, error: Option<String>) -> EmailForm {
    EmailForm {
        shell: Shell::anonymous("Create an account"),
        csrf_token: String::new(),
        heading: "Create an account",
        intro: "If your company uses this portal, enter your name and work email. We will send you a link to confirm \
                the address and choose a password.",
        action: "/register",
        submit: "Send me a link",
        name: Some(name),
        email,
        error,
    }
}

async fn render(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    mut page: EmailForm,
    retry_after: Option<Duration>,
) -> Result<HttpResponse, AppError> {
    let csrf = forms::form_token(state, req).await?;
    page.csrf_token = csrf.token.clone();
    let mut response = forms::respond(status, csrf, page)?;
    if let Some(wait) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(throttle::retry_after_secs(wait)));
    }
    Ok(response)
}

fn sent(heading: &'static str, message: String, hint: &'static str) -> Result<HttpResponse, AppError> {
    crate::web::html(Sent { shell: Shell::anonymous(heading), heading, message, hint })
}

/// How long to wait before this request may send another email, if it must.
async fn spend_all(state: &AppState, budgets: &[(Limit, &str)]) -> Result<Option<Duration>, AppError> {
    for (limit, key) in budgets {
        if let Err(throttled) = throttle::spend(&state.db, *limit, key).await? {
            return Ok(Some(throttled.retry_after));
        }
    }
    Ok(None)
}

fn too_many(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!(
        "We have sent several emails already. Please check your inbox (and spam folder), or try again in about {minutes} {unit}."
    )
}

pub async fn forgot_form(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render(&state, &req, StatusCode::OK, forgot_page(String::new(), None), None).await
}

pub async fn forgot(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<EmailFields>,
) -> Result<HttpResponse, AppError> {
    let typed = form.email.trim().to_owned();
    let Ok(email) = check_email(&typed) else {
        let page = forgot_page(typed, Some("Enter an email address such as name@company.com.".into()));
        return render(&state, &req, StatusCode::UNPROCESSABLE_ENTITY, page, None).await;
    };
    let ip = crate::web::client_ip(&req);
    let ip_key = throttle::ip_key(ip);
    if let Some(wait) =
        spend_all(&state, &[(Limit::PasswordResetIp, &ip_key), (Limit::PasswordResetEmail, &email)]).await?
    {
        let page = forgot_page(typed, Some(too_many(wait)));
        return render(&state, &req, StatusCode::TOO_MANY_REQUESTS, page, Some(wait)).await;
    }
    let ttl = i32::try_from(RESET_TTL.as_secs()).unwrap_or(1800);
    state.db.door().await?.password_reset_request(&email, &random_token(), ttl, ip).await?;
    sent(
        "Check your email",
        format!(
            "If {email} belongs to an account, we have sent it a link to choose a new password. The link works once, for 30 minutes."
        ),
        "Nothing arrived after a few minutes? Check your spam folder, make sure you typed the address you sign in with, or ask your company's portal admin.",
    )
}

pub async fn register_form(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render(&state, &req, StatusCode::OK, register_page(String::new(), String::new(), None), None).await
}

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<EmailFields>,
) -> Result<HttpResponse, AppError> {
    let typed = form.email.trim().to_owned();
    let name = form.name.as_deref().unwrap_or("").trim().to_owned();
    let problem = if name.is_empty() || name.chars().count() > 200 {
        Some("Enter your name (up to 200 characters).")
    } else if check_email(&typed).is_err() {
        Some("Enter your work email address, such as name@company.com.")
    } else {
        None
    };
    if let Some(problem) = problem {
        let page = register_page(name, typed, Some(problem.into()));
        return render(&state, &req, StatusCode::UNPROCESSABLE_ENTITY, page, None).await;
    }
    let email = normalize_email(&typed);
    let ip = crate::web::client_ip(&req);
    let ip_key = throttle::ip_key(ip);
    if let Some(wait) =
        spend_all(&state, &[(Limit::RegistrationIp, &ip_key), (Limit::RegistrationAddress, &email)]).await?
    {
        let page = register_page(name, typed, Some(too_many(wait)));
        return render(&state, &req, StatusCode::TOO_MANY_REQUESTS, page, Some(wait)).await;
    }
    let ttl = i32::try_from(REGISTRATION_TTL.as_secs()).unwrap_or(86_400);
    state.db.door().await?.register_request(&email, &name, &random_token(), ttl, ip).await?;
    sent(
        "Check your email",
        format!(
            "We have sent a message to {email}. Open the link in it within 24 hours to finish creating your account."
        ),
        "Nothing arrived after a few minutes? Check your spam folder. If your company has not set up self-registration, the message explains how to get invited instead.",
    )
}
