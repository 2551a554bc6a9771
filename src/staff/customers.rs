//! Customers in the back office: creating one with its first contact, a
//! customer's page with its people and orders, inviting more people, the email
//! domains whose owners may register themselves, and disabling accounts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::accounts::customers::{self, CustomerSummary};
use crate::accounts::invite::{InviteErrors, InviteFields};
use crate::accounts::team_store::{self, MemberOrder, Outcome};
use crate::auth::Role;
use crate::orders::OrderRow;
use crate::web::client_ip;
use crate::web::{AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, redirect_with_flash};

pub struct Member {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub disabled: bool,
    pub invited: bool,
}

#[derive(TemplateSimple)]
#[template(path = "staff/customer.stpl")]
struct CustomerPage {
    shell: Shell,
    csrf_token: String,
    customer: CustomerSummary,
    members: Vec<Member>,
    domains: Vec<String>,
    orders: Vec<OrderRow>,
    invite: InviteFields,
    invite_errors: InviteErrors,
    domain: String,
    domain_error: Option<&'static str>,
}

/// What a refused form on the customer page brings back.
#[derive(Default)]
struct Refused {
    invite: InviteFields,
    invite_errors: InviteErrors,
    domain: String,
    domain_error: Option<&'static str>,
}

fn customer_id(path: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(path).map_err(|_| AppError::NotFound)
}

async fn render(cx: StaffScope, id: Uuid, status: StatusCode, refused: Refused) -> Result<HttpResponse, AppError> {
    let customer = customers::find(&cx.db, id).await?.ok_or(AppError::NotFound)?;
    let members = team_store::members(&cx.db, id, MemberOrder::Staff)
        .await?
        .into_iter()
        .map(|m| Member {
            role: Role::parse(&m.role).map_or("Unknown", Role::label),
            id: m.id,
            name: m.name,
            email: m.email,
            disabled: m.disabled,
            invited: m.invited,
        })
        .collect();
    let domains = customers::domains(&cx.db, id).await?;
    let orders = customers::recent_orders(&cx.db, id).await?;
    cx.db.commit().await?;
    let mut response = html(CustomerPage {
        shell: Shell::page(&cx.viewer, customer.name.clone(), Section::StaffCustomers, cx.flash),
        csrf_token: cx.viewer.csrf_token.clone(),
        customer,
        members,
        domains,
        orders,
        invite: refused.invite,
        invite_errors: refused.invite_errors,
        domain: refused.domain,
        domain_error: refused.domain_error,
    })?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn show(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path)?;
    render(cx, id, StatusCode::OK, Refused::default()).await
}

pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<InviteFields>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path)?;
    let invitee = match form.check() {
        Ok(invitee) => invitee,
        Err(errors) => {
            let refused = Refused { invite: form, invite_errors: errors, ..Refused::default() };
            return render(cx, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
        }
    };
    if !customers::exists(&cx.db, id, true).await? {
        return Err(AppError::NotFound);
    }
    if let Some(wait) = team_store::over_budget(&cx.db, cx.viewer.user_id, &invitee.email).await? {
        return Err(AppError::Throttled(wait));
    }
    let outcome = team_store::invite(&cx.db, id, &invitee, client_ip(&req)).await?;
    if let Outcome::AlreadyMember = outcome {
        let invite_errors = InviteErrors {
            email: Some(format!("{} already has an account here.", invitee.email)),
            ..Default::default()
        };
        return render(
            cx,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            Refused { invite: form, invite_errors, ..Refused::default() },
        )
        .await;
    }
    cx.db.commit().await?;
    let flash = Flash::success(format!("Invitation sent to {}.", invitee.email));
    Ok(redirect_with_flash(&state, &format!("/staff/customers/{id}"), flash))
}

#[derive(Deserialize)]
pub struct DomainForm {
    #[serde(default)]
    domain: String,
}

/// A plain host name such as `acme.example`: what a self-registering address must end in.
fn check_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_start_matches('@').to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    valid.then_some(domain)
}

pub async fn add_domain(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path)?;
    let refuse =
        |error: &'static str| Refused { domain: form.domain.clone(), domain_error: Some(error), ..Refused::default() };
    let Some(domain) = check_domain(&form.domain) else {
        return render(cx, id, StatusCode::UNPROCESSABLE_ENTITY, refuse("Enter a domain such as acme.example.")).await;
    };
    if !customers::exists(&cx.db, id, false).await? {
        return Err(AppError::NotFound);
    }
    if !customers::add_domain(&cx.db, id, &domain, &cx.viewer, client_ip(&req)).await? {
        return render(
            cx,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            refuse("That domain already lets people join a customer."),
        )
        .await;
    }
    cx.db.commit().await?;
    let flash = Flash::success(format!("People with an @{domain} address can now register themselves as members."));
    Ok(redirect_with_flash(&state, &format!("/staff/customers/{id}"), flash))
}

pub async fn remove_domain(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path)?;
    if !customers::remove_domain(&cx.db, id, &form.domain, &cx.viewer, client_ip(&req)).await? {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, &format!("/staff/customers/{id}"), Flash::success("The domain was removed.")))
}

#[derive(Deserialize)]
pub struct Empty {}

async fn set_disabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    disabled: bool,
) -> Result<HttpResponse, AppError> {
    let user = customer_id(&path)?;
    let customer = team_store::customer_of(&cx.db, user).await?.ok_or(AppError::NotFound)?;
    if !team_store::set_disabled(&cx.db, user, disabled, client_ip(&req)).await? {
        return Err(AppError::NotFound);
    }
    cx.db.commit().await?;
    let text =
        if disabled { "The account was disabled and signed out everywhere." } else { "The account was enabled." };
    Ok(redirect_with_flash(&state, &format!("/staff/customers/{customer}"), Flash::success(text)))
}

pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    set_disabled(req, state, cx, path, true).await
}

pub async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<HttpResponse, AppError> {
    set_disabled(req, state, cx, path, false).await
}

// Creating a customer ---------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct NewCustomer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    contact_email: String,
}

#[derive(Default)]
pub struct NewCustomerErrors {
    name: Option<&'static str>,
    slug: Option<&'static str>,
    contact: Option<String>,
}

#[derive(TemplateSimple)]
#[template(path = "staff/customer_new.stpl")]
struct NewCustomerPage {
    shell: Shell,
    csrf_token: String,
    form: NewCustomer,
    errors: NewCustomerErrors,
}

/// A URL-safe short name from the company name ("Initech Ltd." → "initech-ltd").
fn slug_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(63);
    slug.trim_end_matches('-').to_owned()
}

fn valid_slug(slug: &str) -> bool {
    (1..=63).contains(&slug.len())
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
}

pub async fn new_form(cx: StaffScope) -> Result<HttpResponse, AppError> {
    cx.db.commit().await?;
    html(NewCustomerPage {
        shell: Shell::page(&cx.viewer, "New customer", Section::StaffCustomers, cx.flash),
        csrf_token: cx.viewer.csrf_token.clone(),
        form: NewCustomer::default(),
        errors: NewCustomerErrors::default(),
    })
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    cx: StaffScope,
    CsrfForm(mut form): CsrfForm<NewCustomer>,
) -> Result<HttpResponse, AppError> {
    let mut errors = NewCustomerErrors::default();
    let name = form.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        errors.name = Some("Enter the company's name (up to 200 characters).");
    }
    if form.slug.trim().is_empty() {
        form.slug = slug_from(&name);
    }
    let slug = form.slug.trim().to_owned();
    if errors.name.is_none() && !valid_slug(&slug) {
        errors.slug = Some("Use lower-case letters, digits and dashes.");
    }
    let wants_contact = !form.contact_email.trim().is_empty() || !form.contact_name.trim().is_empty();
    let invitee = if wants_contact {
        let fields = InviteFields {
            name: form.contact_name.clone(),
            email: form.contact_email.clone(),
            role: "customer_admin".into(),
        };
        match fields.check() {
            Ok(invitee) => Some(invitee),
            Err(e) => {
                errors.contact =
                    Some(e.name.map(str::to_owned).or(e.email).unwrap_or_else(|| "Check the first contact.".into()));
                None
            }
        }
    } else {
        None
    };
    let refuse = |cx: StaffScope, form: NewCustomer, errors: NewCustomerErrors| {
        let page = NewCustomerPage {
            shell: Shell::page(&cx.viewer, "New customer", Section::StaffCustomers, None),
            csrf_token: cx.viewer.csrf_token.clone(),
            form,
            errors,
        };
        let mut response = html(page)?;
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, AppError>(response)
    };
    if errors.name.is_some() || errors.slug.is_some() || errors.contact.is_some() {
        return refuse(cx, form, errors);
    }
    let ip = client_ip(&req);
    let Some(id) = customers::create(&cx.db, &name, &slug, &cx.viewer, ip).await? else {
        errors.slug = Some("Another customer already has this short name. Choose another.");
        return refuse(cx, form, errors);
    };
    let mut text = format!("{name} was created.");
    if let Some(invitee) = &invitee {
        team_store::invite(&cx.db, id, invitee, ip).await?;
        text = format!("{name} was created and {} was invited as its admin.", invitee.email);
    }
    cx.db.commit().await?;
    Ok(redirect_with_flash(&state, &format!("/staff/customers/{id}"), Flash::success(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_come_from_names() {
        assert_eq!(slug_from("Initech Ltd."), "initech-ltd");
        assert_eq!(slug_from("  Ünïcode & Co "), "n-code-co");
        assert!(valid_slug(&slug_from("Acme 2")));
    }

    #[test]
    fn domains_are_host_names() {
        assert_eq!(check_domain("@Acme.Example ").as_deref(), Some("acme.example"));
        assert_eq!(check_domain("mail.acme.co.uk").as_deref(), Some("mail.acme.co.uk"));
        for bad in ["acme", "acme.", "-acme.example", "acme..example", "acme.example/x", "acme.123", "a b.example"] {
            assert_eq!(check_domain(bad), None, "{bad}");
        }
    }
}
