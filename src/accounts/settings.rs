//! The user's own settings: their profile, and Security: changing the
//! password and the sign-in address, ending sessions on other devices, and the
//! account's recent sign-in activity.
//!
//! The address only changes once the new address has proven it receives mail:
//! the request sends a link there, and opening the link shows a button whose
//! POST makes the change. A GET never changes anything, because mail scanners
//! fetch links before people do.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::admin::check_email;
use crate::auth::session::{self, random_token};
use crate::auth::strength::{self, Weak};
use crate::auth::throttle::{self, Limit};
use crate::auth::{AuthError, Viewer, password};
use crate::db::Scope;
use crate::web::client_ip;
use crate::web::{AppError, AppState, CsrfForm, CustomerScope, Flash, Section, Shell, Unopened, redirect_with_flash};

/// How long the link sent to a new address works.
const EMAIL_CHANGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many sign-in events the page shows; the activity page has the rest.
const RECENT_EVENTS: i64 = 10;

pub struct SessionRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub this_device: bool,
}

/// One sign-in related event of this user, as the page lists it.
pub struct AuthEvent {
    pub at: OffsetDateTime,
    pub label: String,
    pub ip: Option<String>,
}

/// Cuts `s` to at most `max` characters, marking the cut with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[derive(Default)]
pub struct PasswordErrors {
    pub current: Option<String>,
    pub new: Option<String>,
    pub confirm: Option<String>,
}

impl PasswordErrors {
    pub fn any(&self) -> bool {
        self.current.is_some() || self.new.is_some() || self.confirm.is_some()
    }
}

#[derive(Default)]
pub struct EmailErrors {
    pub new_email: Option<&'static str>,
    pub current: Option<&'static str>,
}

impl EmailErrors {
    pub fn any(&self) -> bool {
        self.new_email.is_some() || self.current.is_some()
    }
}

/// The "change email" form as shown: the address as typed, and why it was refused.
#[derive(Default)]
pub struct EmailForm {
    pub new_email: String,
    pub errors: EmailErrors,
    /// Set when too many links were asked for: the form is fine, the timing is not.
    pub throttled: Option<String>,
}

#[derive(TemplateSimple)]
#[template(path = "accounts/settings.stpl")]
struct SettingsPage {
    shell: Shell,
    csrf_token: String,
    name: String,
    email: String,
    role: &'static str,
    company: String,
    sessions: Vec<SessionRow>,
    /// Sessions other than this one: whether "Sign out everywhere else" has anything to do.
    others: usize,
    activity: Vec<AuthEvent>,
    password: PasswordErrors,
    email_form: EmailForm,
}

/// What the page reads besides the viewer: sessions and recent sign-in activity.
struct Loaded {
    sessions: Vec<SessionRow>,
    activity: Vec<AuthEvent>,
}

async fn load(db: &Scope, customer: Uuid, viewer: &Viewer) -> Result<Loaded, AppError> {
    // The same conditions as sign-in uses to accept a session: expired ones are not "active".
    let sessions = db
        .query(
            "SELECT id, created_at, last_seen_at, host(ip) AS ip, user_agent FROM sessions \
             WHERE customer_id = $1 AND user_id = $2 \
             AND expires_at > now() AND last_seen_at > now() - idle_timeout \
             ORDER BY last_seen_at DESC, created_at DESC",
            &[&customer, &viewer.user_id],
        )
        .await?
        .iter()
        .map(|r| {
            let id: Uuid = r.try_get("id")?;
            Ok(SessionRow {
                id,
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
                ip: r.try_get("ip")?,
                user_agent: r
                    .try_get::<_, Option<String>>("user_agent")?
                    .map(|ua| shorten(&ua, 60))
                    .filter(|ua| !ua.is_empty()),
                this_device: id == viewer.session_id,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    // Failed attempts are recorded without an actor (nobody proved who they
    // were) against the account as subject, so both columns are matched.
    let activity = db
        .query(
            "SELECT created_at, action, host(ip) AS ip FROM activity_log \
             WHERE customer_id = $1 AND action LIKE 'auth.%' AND (actor_user_id = $2 OR subject_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3",
            &[&customer, &viewer.user_id, &RECENT_EVENTS],
        )
        .await?
        .iter()
        .map(|r| {
            let action: &str = r.try_get("action")?;
            Ok(AuthEvent {
                at: r.try_get("created_at")?,
                label: crate::activity::describe(action).to_owned(),
                ip: r.try_get("ip")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(Loaded { sessions, activity })
}

fn page(
    viewer: &Viewer,
    company: &str,
    flash: Option<Flash>,
    loaded: Loaded,
    password: PasswordErrors,
    email_form: EmailForm,
) -> SettingsPage {
    SettingsPage {
        shell: Shell::page(viewer, "Settings", Section::Settings, flash),
        csrf_token: viewer.csrf_token.clone(),
        name: viewer.name.clone(),
        email: viewer.email.clone(),
        role: viewer.role.label(),
        company: company.to_owned(),
        others: loaded.sessions.iter().filter(|s| !s.this_device).count(),
        sessions: loaded.sessions,
        activity: loaded.activity,
        password,
        email_form,
    }
}

fn respond(status: StatusCode, page: impl TemplateSimple) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(page.render_once()?))
}

pub async fn show(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    let loaded = load(&cx.db, cx.customer.id, &cx.viewer).await?;
    cx.db.commit().await?;
    let page = page(&cx.viewer, &cx.customer.name, cx.flash, loaded, PasswordErrors::default(), EmailForm::default());
    respond(StatusCode::OK, page)
}

/// Shows the page again after a refused form, with what the form needs to say.
async fn refuse(
    status: StatusCode,
    cx: CustomerScope,
    password: PasswordErrors,
    email_form: EmailForm,
) -> Result<HttpResponse, AppError> {
    let loaded = load(&cx.db, cx.customer.id, &cx.viewer).await?;
    cx.db.commit().await?;
    // A flash waiting for the next page stays for it: a refused form does not show it.
    respond(status, page(&cx.viewer, &cx.customer.name, None, loaded, password, email_form))
}

/// Whether `typed` is the viewer's current password. Counted like a sign-in
/// attempt: wrong guesses lock the account as they would on the sign-in page
/// (a 429 once locked), so a stolen session cannot guess faster.
async fn is_current_password(
    state: &AppState,
    viewer: &Viewer,
    typed: &str,
    ip: Option<IpAddr>,
) -> Result<bool, AppError> {
    let account =
        session::check_credentials(&state.db, &viewer.email, SecretString::from(typed.to_owned()), ip).await?;
    Ok(account.is_some_and(|(user, _)| user == viewer.user_id))
}

#[derive(Deserialize)]
pub struct PasswordInput {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

async fn check_password_change(
    state: &AppState,
    viewer: &Viewer,
    input: &PasswordInput,
    ip: Option<IpAddr>,
) -> Result<PasswordErrors, AppError> {
    let mut errors = PasswordErrors::default();
    if input.current_password.is_empty() {
        errors.current = Some("Enter your current password.".into());
    } else if !is_current_password(state, viewer, &input.current_password, ip).await? {
        errors.current = Some("That is not your current password.".into());
    }
    if let Err(Weak(why)) = strength::check(&input.new_password, &[&viewer.name, &viewer.email]).await {
        errors.new = Some(why);
    } else if errors.current.is_none() && input.new_password == input.current_password {
        errors.new = Some("That is your current password. Choose a new one.".into());
    } else if input.confirm_password != input.new_password {
        errors.confirm = Some("The two new passwords are not the same.".into());
    }
    Ok(errors)
}

pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    unopened: Unopened<CustomerScope>,
    CsrfForm(input): CsrfForm<PasswordInput>,
) -> Result<HttpResponse, AppError> {
    // The current password is checked before the scope opens: a request holds one connection.
    let errors = check_password_change(&state, &unopened.viewer, &input, client_ip(&req)).await?;
    let cx = unopened.open().await?;
    if errors.any() {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, cx, errors, EmailForm::default()).await;
    }
    let hash = password::hash(SecretString::from(input.new_password)).await.map_err(AuthError::from)?;
    let ip = client_ip(&req);
    // Ends every other session of the user (and their live sockets), kills
    // outstanding reset links, emails the owner and logs the change.
    cx.db.execute("SELECT portal_password_change($1, $2, $3)", &[&hash, &cx.viewer.session_id, &ip]).await?;
    cx.db.commit().await?;
    let flash = Flash::success("Your password has been changed. You were signed out on every other device.");
    Ok(redirect_with_flash(&state, "/settings", flash))
}

#[derive(Deserialize)]
pub struct EmailInput {
    #[serde(default)]
    new_email: String,
    #[serde(default)]
    current_password: String,
}

pub async fn request_email_change(
    req: HttpRequest,
    state: web::Data<AppState>,
    unopened: Unopened<CustomerScope>,
    CsrfForm(input): CsrfForm<EmailInput>,
) -> Result<HttpResponse, AppError> {
    // The password check and the budget take connections of their own: the scope opens after them.
    let viewer = &unopened.viewer;
    let mut errors = EmailErrors::default();
    let new_email = match check_email(&input.new_email) {
        Ok(email) if email == viewer.email => {
            errors.new_email = Some("That is already your email address.");
            None
        }
        Ok(email) => Some(email),
        Err(_) => {
            errors.new_email = Some("Enter an email address, like name@example.com.");
            None
        }
    };
    if input.current_password.is_empty() {
        errors.current = Some("Enter your current password.");
    } else if !is_current_password(&state, viewer, &input.current_password, client_ip(&req)).await? {
        errors.current = Some("That is not your current password.");
    }
    let Some(new_email) = new_email.filter(|_| !errors.any()) else {
        let form = EmailForm { new_email: input.new_email.trim().to_owned(), errors, throttled: None };
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, unopened.open().await?, PasswordErrors::default(), form).await;
    };

    // Spent only by forms that would send: a typo does not use up the budget.
    let spent = throttle::spend(&state.db, Limit::EmailChange, &viewer.user_id.to_string()).await?;
    let cx = unopened.open().await?;
    if let Err(throttled) = spent {
        let message = format!(
            "You have asked for several confirmation links in a short time. Check the inbox (and spam folder) \
             of the new address, or try again in {}.",
            throttle::wait_phrase(throttled.retry_after)
        );
        let form = EmailForm { new_email, errors, throttled: Some(message) };
        let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, cx, PasswordErrors::default(), form).await?;
        response.headers_mut().insert(header::RETRY_AFTER, throttled.retry_after_secs().into());
        return Ok(response);
    }

    let token = random_token();
    let ttl = i32::try_from(EMAIL_CHANGE_TTL.as_secs()).unwrap_or(i32::MAX);
    // Whether or not the address already has an account, the function answers
    // nothing and the page says the same: the form must not reveal who has an account.
    cx.db
        .execute("SELECT portal_email_change_request($1, $2, $3, $4)", &[&new_email, &token, &ttl, &client_ip(&req)])
        .await?;
    cx.db.commit().await?;
    let flash =
        Flash::info(format!("We sent a confirmation link to {new_email}. Your address changes when you open it."));
    Ok(redirect_with_flash(&state, "/settings", flash))
}

#[derive(TemplateSimple)]
#[template(path = "accounts/email_confirm.stpl")]
struct EmailConfirmPage {
    shell: Shell,
    csrf_token: String,
    action: String,
    /// The address the link would switch to; `None` when the link does not work.
    new_email: Option<String>,
}

fn confirm_page(viewer: &Viewer, token: &str, new_email: Option<String>) -> Result<HttpResponse, AppError> {
    let (status, title) = match new_email {
        Some(_) => (StatusCode::OK, "Confirm your new email address"),
        // Used, expired, replaced, unknown and someone else's all look the same.
        None => (StatusCode::GONE, "This link no longer works"),
    };
    let page = EmailConfirmPage {
        shell: Shell::page(viewer, title, Section::Settings, None),
        csrf_token: viewer.csrf_token.clone(),
        action: format!("/settings/email/{token}"),
        new_email,
    };
    // The address holds a working token; the site-wide `Referrer-Policy: same-origin` keeps it here.
    respond(status, page)
}

/// Tokens we issue are 43 characters; anything else cannot match, so skip the query.
fn plausible(token: &str) -> bool {
    token.len() == 43
}

pub async fn confirm_email_page(cx: CustomerScope, token: web::Path<String>) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let new_email = if plausible(&token) {
        cx.db
            .query_opt("SELECT email FROM portal_token_peek('email_change', $1)", &[&token])
            .await?
            .map(|row| row.try_get::<_, String>("email"))
            .transpose()?
    } else {
        None
    };
    cx.db.commit().await?;
    confirm_page(&cx.viewer, &token, new_email)
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn confirm_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    token: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let changed: Option<String> = if plausible(&token) {
        // Only the account that asked may confirm: in anyone else's scope this answers NULL and changes nothing.
        cx.db.query_one("SELECT portal_email_change_confirm($1, $2)", &[&token, &client_ip(&req)]).await?.try_get(0)?
    } else {
        None
    };
    // Also when NULL: a link spent on an address taken meanwhile stays spent.
    cx.db.commit().await?;
    match changed {
        Some(email) => {
            let flash = Flash::success(format!("Your email address is now {email}. Use it the next time you sign in."));
            Ok(redirect_with_flash(&state, "/settings", flash))
        }
        None => confirm_page(&cx.viewer, &token, None),
    }
}

/// Ends the viewer's live sessions matching `which` (never the current one)
/// and logs each in the same statement; returns how many ended.
async fn end_sessions(cx: &CustomerScope, ip: Option<IpAddr>, which: Option<Uuid>) -> Result<u64, AppError> {
    // Row-level security already limits this to the viewer's own sessions; the
    // user_id condition keeps it so on a connection that bypasses it.
    Ok(cx
        .db
        .execute(
            "WITH gone AS ( \
                 DELETE FROM sessions \
                 WHERE user_id = $2 AND id <> $4 AND ($5::uuid IS NULL OR id = $5) \
                   AND expires_at > now() AND last_seen_at > now() - idle_timeout \
                 RETURNING id) \
             INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip) \
             SELECT $1, $2, $3, 'auth.session_revoked', 'session', id, $6 FROM gone",
            &[&cx.customer.id, &cx.viewer.user_id, &cx.viewer.email, &cx.viewer.session_id, &which, &ip],
        )
        .await?)
}

pub async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    id: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&id.into_inner()).map_err(|_| AppError::NotFound)?;
    // Someone else's session, an unknown one and this one are all "not found":
    // this one ends with "Sign out", and the others are not ours to end.
    if end_sessions(&cx, client_ip(&req), Some(id)).await? == 0 {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, "/settings", Flash::success("That session has been signed out.")))
}

pub async fn end_other_sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: CustomerScope,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let ended = end_sessions(&cx, client_ip(&req), None).await?;
    cx.db.commit().await?;
    let flash = match ended {
        0 => Flash::info("You were not signed in anywhere else."),
        1 => Flash::success("Signed out of 1 other session."),
        n => Flash::success(format!("Signed out of {n} other sessions.")),
    };
    Ok(redirect_with_flash(&state, "/settings", flash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_to_length() {
        assert_eq!(shorten("curl/8.5.0", 60), "curl/8.5.0");
        let long = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let short = shorten(long, 60);
        assert_eq!(short, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML,…");
        assert!(short.chars().count() <= 60);
        assert_eq!(shorten("ééééé", 3), "éé…");
    }

    #[test]
    fn only_tokens_of_our_length_are_looked_up() {
        assert!(plausible(&random_token()));
        assert!(!plausible("short"));
    }
}
