//! The pages behind the links we email: accept an invitation, finish a
//! registration, reset a password. Each shows who the link is for and asks for
//! a password; a GET never spends the link (mail scanners fetch links), only
//! the form's POST does, in one transaction with everything it changes.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use uuid::Uuid;

use super::forms::{self, ChoosePassword, PasswordErrors, PasswordForm};
use crate::auth::{AuthError, password, session};
use crate::web::{AppError, AppState, CsrfForm, Flash, Shell, redirect_with_flash};

/// One kind of emailed link.
pub struct Kind {
    /// `account_tokens.purpose`.
    purpose: &'static str,
    pub prefix: &'static str,
    heading: &'static str,
    submit: &'static str,
    /// The name is asked for (and may be corrected) when the account is new.
    asks_name: bool,
    dead_what: &'static str,
    again_href: &'static str,
    again_label: &'static str,
}

pub static INVITATION: Kind = Kind {
    purpose: "invitation",
    prefix: "/invitation",
    heading: "Accept your invitation",
    submit: "Create my account",
    asks_name: true,
    dead_what: "invitation",
    again_href: "/login",
    again_label: "Go to sign in",
};

pub static REGISTRATION: Kind = Kind {
    purpose: "registration",
    prefix: "/register",
    heading: "Finish creating your account",
    submit: "Create my account",
    asks_name: true,
    dead_what: "confirmation",
    again_href: "/register",
    again_label: "Register again",
};

pub static RESET: Kind = Kind {
    purpose: "password_reset",
    prefix: "/password/reset",
    heading: "Choose a new password",
    submit: "Change my password",
    asks_name: false,
    dead_what: "password reset",
    again_href: "/password/forgot",
    again_label: "Send a new link",
};

/// Who the link is for, while it works.
struct Holder {
    email: String,
    name: String,
    customer: Option<String>,
}

async fn peek(state: &AppState, kind: &Kind, token: &str) -> Result<Option<Holder>, AppError> {
    // Tokens we issue are 43 characters; anything else cannot match.
    if token.len() != 43 {
        return Ok(None);
    }
    let Some(row) = state.db.door().await?.token_peek(kind.purpose, token).await? else {
        return Ok(None);
    };
    Ok(Some(Holder {
        email: row.try_get("email")?,
        name: row.try_get::<_, Option<String>>("name")?.unwrap_or_default(),
        customer: row.try_get("customer_name")?,
    }))
}

fn intro(kind: &Kind, holder: &Holder) -> String {
    let customer = holder.customer.as_deref().unwrap_or("your company");
    match kind.purpose {
        "invitation" => format!("You have been invited to {customer}'s portal. Check your name and choose a password."),
        "registration" => format!("Your address is confirmed. Choose a password to join {customer}'s portal."),
        _ => "Choose a new password. You will be signed out everywhere else.".to_owned(),
    }
}

fn page(
    kind: &Kind,
    holder: &Holder,
    token: &str,
    csrf: String,
    name: Option<String>,
    errors: PasswordErrors,
) -> ChoosePassword {
    ChoosePassword {
        shell: Shell::anonymous(kind.heading),
        csrf_token: csrf,
        heading: kind.heading,
        intro: intro(kind, holder),
        action: format!("{}/{token}", kind.prefix),
        email: holder.email.clone(),
        name: kind.asks_name.then(|| name.unwrap_or_else(|| holder.name.clone())),
        submit: kind.submit,
        errors,
    }
}

pub async fn show(
    kind: &'static Kind,
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let Some(holder) = peek(&state, kind, &token).await? else {
        return forms::link_dead(kind.dead_what, kind.again_href, kind.again_label);
    };
    let csrf = forms::form_token(&state, &req).await?;
    let page = page(kind, &holder, &token, csrf.token.clone(), None, PasswordErrors::default());
    forms::respond(StatusCode::OK, csrf, page)
}

pub async fn submit(
    kind: &'static Kind,
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let Some(holder) = peek(&state, kind, &token).await? else {
        return forms::link_dead(kind.dead_what, kind.again_href, kind.again_label);
    };
    let mut context = vec![holder.email.as_str(), holder.name.as_str()];
    if let Some(customer) = holder.customer.as_deref() {
        context.push(customer);
    }
    let errors = forms::check_choice(&form, kind.asks_name, &context).await;
    if errors.any() {
        let csrf = forms::form_token(&state, &req).await?;
        let page = page(kind, &holder, &token, csrf.token.clone(), form.name.clone(), errors);
        return forms::respond(StatusCode::UNPROCESSABLE_ENTITY, csrf, page);
    }
    let hash = password::hash(SecretString::from(form.password.clone())).await.map_err(AuthError::from)?;
    let name = form.name.as_deref().unwrap_or("").trim().to_owned();
    let ip = crate::web::client_ip(&req);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");

    let mut door = state.db.door().await?;
    door.begin().await?;
    let completed: Option<Uuid> = match kind.purpose {
        "invitation" => door.invitation_accept(&token, &name, &hash, ip).await?,
        "registration" => door.register_complete(&token, &name, &hash, ip).await?,
        _ => door.password_reset_complete(&token, &hash, ip).await?,
    };
    let Some(user_id) = completed else {
        // Spent by a concurrent request between the check above and here.
        return forms::link_dead(kind.dead_what, kind.again_href, kind.again_label);
    };
    if !kind.asks_name {
        door.commit().await?;
        let flash = Flash::success(
            "Your password has been changed and you were signed out everywhere. Sign in with your new password.",
        );
        return Ok(redirect_with_flash(&state, "/login", flash));
    }
    let signed_in = session::open_for(&door, user_id, state.lifetimes, ip, user_agent).await?;
    door.commit().await?;
    // Whoever was signed in in this browser before is not who is now.
    if let Some(old) = state.cookies.session_token(&req) {
        session::sign_out(&state.db, &old, ip).await?;
    }
    let welcome = Flash::success(format!("Welcome, {name}. Your account is ready."));
    let mut response = redirect_with_flash(&state, "/", welcome);
    response
        .add_cookie(&state.cookies.session(signed_in.token, None))
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}
