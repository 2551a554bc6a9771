//! What the pages reached from an emailed link share: the CSRF token of a form
//! that may be shown before sign-in, the "choose a password" form, and the
//! page for a link that no longer works.

use actix_web::cookie::Cookie;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use sailfish::TemplateSimple;
use serde::Deserialize;

use crate::auth::{session, strength};
use crate::web::extract::current_viewer;
use crate::web::{AppError, AppState, Shell};

/// The CSRF token a form must carry: the session's when signed in, otherwise
/// the double-submit cookie's (set here when the browser has none yet).
pub struct FormToken {
    pub token: String,
    cookie: Option<Cookie<'static>>,
}

pub async fn form_token(state: &AppState, req: &HttpRequest) -> Result<FormToken, AppError> {
    if let Some(viewer) = current_viewer(req).await? {
        return Ok(FormToken { token: viewer.csrf_token, cookie: None });
    }
    match state.cookies.anonymous_csrf_token(req).filter(|t| t.len() == 43) {
        Some(token) => Ok(FormToken { token, cookie: None }),
        None => {
            let token = session::random_token();
            Ok(FormToken { cookie: Some(state.cookies.anonymous_csrf(token.clone())), token })
        }
    }
}

/// Renders a page holding a form. Pages whose address carries a secret token
/// rely on the site-wide `Referrer-Policy: same-origin`: the token never leaves
/// with a link to another site. (`no-referrer` would be stricter but makes
/// Chromium send `Origin: null` on the form's own POST, which the origin check
/// rightly refuses.)
pub fn respond(status: StatusCode, token: FormToken, page: impl TemplateSimple) -> Result<HttpResponse, AppError> {
    let mut response = HttpResponse::build(status);
    if let Some(cookie) = token.cookie {
        response.cookie(cookie);
    }
    Ok(response.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(page.render_once()?))
}

/// The form that turns an emailed link into a working account: invitations,
/// registrations and password resets.
#[derive(TemplateSimple)]
#[template(path = "auth/choose_password.stpl")]
pub struct ChoosePassword {
    pub shell: Shell,
    pub csrf_token: String,
    pub heading: &'static str,
    pub intro: String,
    pub action: String,
    pub email: String,
    /// `Some` when the form asks for the user's name (with what was typed).
    pub name: Option<String>,
    pub submit: &'static str,
    pub errors: PasswordErrors,
}

#[derive(Default)]
pub struct PasswordErrors {
    pub name: Option<String>,
    pub password: Option<String>,
    pub confirm: Option<String>,
}

impl PasswordErrors {
    pub fn any(&self) -> bool {
        self.name.is_some() || self.password.is_some() || self.confirm.is_some()
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub confirm: String,
}

/// Checks a chosen password (and the name, when the form asks for one) against
/// the rules; `context` is what an attacker would know of the user.
pub async fn check_choice(form: &PasswordForm, ask_name: bool, context: &[&str]) -> PasswordErrors {
    let mut errors = PasswordErrors::default();
    if ask_name {
        let name = form.name.as_deref().unwrap_or("").trim();
        if name.is_empty() {
            errors.name = Some("Enter your name, as colleagues would know you.".into());
        } else if name.chars().count() > 200 {
            errors.name = Some("Use at most 200 characters.".into());
        }
    }
    let mut context: Vec<&str> = context.to_vec();
    if let Some(name) = form.name.as_deref() {
        context.push(name);
    }
    if let Err(strength::Weak(why)) = strength::check(&form.password, &context).await {
        errors.password = Some(why);
    } else if form.password != form.confirm {
        errors.confirm = Some("The two passwords are not the same.".into());
    }
    errors
}

#[derive(TemplateSimple)]
#[template(path = "auth/link_dead.stpl")]
struct LinkDead {
    shell: Shell,
    what: &'static str,
    again_href: &'static str,
    again_label: &'static str,
}

/// A used, expired, withdrawn or unknown link: all four look the same (410 Gone).
pub fn link_dead(
    what: &'static str,
    again_href: &'static str,
    again_label: &'static str,
) -> Result<HttpResponse, AppError> {
    let page = LinkDead { shell: Shell::anonymous("Link expired"), what, again_href, again_label };
    Ok(HttpResponse::Gone().insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(page.render_once()?))
}

/// The page that follows a form which sent an email, whatever happened: it
/// never says whether an account exists.
#[derive(TemplateSimple)]
#[template(path = "auth/sent.stpl")]
pub struct Sent {
    pub shell: Shell,
    pub heading: &'static str,
    pub message: String,
    pub hint: &'static str,
}
