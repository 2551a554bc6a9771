//! Creating an order for a customer, editing its details and shipment,
//! cancelling and reopening it: the forms, their checks and the pages; the
//! writes are the orders store's (`crate::orders::edit`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::Date;
use uuid::Uuid;

use super::{actor, parse_id};
use crate::auth::Viewer;
use crate::db::{DbError, Scope};
use crate::orders::edit::{self, Details, NewOrder, Tracking};
pub use crate::orders::edit::{EditedOrder, NUMBER_MAX, WorkflowChoice};
use crate::orders::moves;
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html, html_with_status, redirect_with_flash,
};

pub const TITLE_MAX: usize = 200;
pub const REFERENCE_MAX: usize = 100;
pub const TRACKING_MAX: usize = 100;
pub const TRACKING_URL_MAX: usize = 2000;

/// The order form as sent (and shown again when refused).
#[derive(Deserialize, Default)]
pub struct OrderFields {
    #[serde(default)]
    pub number: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub workflow_id: String,
    #[serde(default)]
    pub expected_on: String,
    #[serde(default)]
    pub external_ref: String,
    #[serde(default)]
    pub tracking_carrier: String,
    #[serde(default)]
    pub tracking_number: String,
    #[serde(default)]
    pub tracking_url: String,
}

/// What is wrong with the order form, field by field.
#[derive(Default)]
pub struct OrderErrors {
    pub number: Option<String>,
    pub title: Option<String>,
    pub reference: Option<String>,
    pub workflow_id: Option<String>,
    pub expected_on: Option<String>,
    pub external_ref: Option<String>,
    pub tracking_carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
}

impl OrderErrors {
    fn all(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("number", &self.number),
            ("title", &self.title),
            ("reference", &self.reference),
            ("workflow_id", &self.workflow_id),
            ("expected_on", &self.expected_on),
            ("external_ref", &self.external_ref),
            ("tracking_carrier", &self.tracking_carrier),
            ("tracking_number", &self.tracking_number),
            ("tracking_url", &self.tracking_url),
        ]
    }

    pub fn any(&self) -> bool {
        self.all().iter().any(|(_, e)| e.is_some())
    }

    /// The first field with an error, which gets the focus.
    pub fn first(&self) -> Option<&'static str> {
        self.all().iter().find(|(_, e)| e.is_some()).map(|(name, _)| *name)
    }
}

/// A one-line text field: trimmed, on one line, at most `max` characters; empty is `None`.
fn optional_text(what: &str, typed: &str, max: usize) -> Result<Option<String>, String> {
    let value = typed.trim();
    if value.chars().any(char::is_control) {
        return Err(format!("The {what} must fit on one line."));
    }
    if let Some(e) = moves::too_long(what, value, max) {
        return Err(e);
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn required_text(what: &str, typed: &str, max: usize) -> Result<String, String> {
    optional_text(what, typed, max)?.ok_or_else(|| format!("Enter the {what}."))
}

/// `YYYY-MM-DD`, as `<input type="date">` sends it; empty is `None`.
fn optional_date(typed: &str) -> Result<Option<Date>, String> {
    let value = typed.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, &format).map(Some).map_err(|_| "Enter a date such as 2026-06-30.".to_owned())
}

/// Splits each check into its value and its error.
fn take<T: Default>(result: Result<T, String>, error: &mut Option<String>) -> T {
    result.unwrap_or_else(|e| {
        *error = Some(e);
        T::default()
    })
}

fn check_details(fields: &OrderFields, errors: &mut OrderErrors) -> Details {
    Details {
        title: take(required_text("title", &fields.title, TITLE_MAX), &mut errors.title),
        reference: take(optional_text("customer reference", &fields.reference, REFERENCE_MAX), &mut errors.reference),
        expected_on: take(optional_date(&fields.expected_on), &mut errors.expected_on),
    }
}

pub const TRACKING_URL_HTTPS: &str = "The tracking link must start with https://";

fn check_tracking(fields: &OrderFields, errors: &mut OrderErrors) -> Tracking {
    let carrier = take(optional_text("carrier", &fields.tracking_carrier, TRACKING_MAX), &mut errors.tracking_carrier);
    let number =
        take(optional_text("tracking number", &fields.tracking_number, TRACKING_MAX), &mut errors.tracking_number);
    let mut url =
        take(optional_text("tracking link", &fields.tracking_url, TRACKING_URL_MAX), &mut errors.tracking_url);
    if let Some(u) = &url
        && !moves::tracking_url_ok(u)
    {
        errors.tracking_url = Some(TRACKING_URL_HTTPS.to_owned());
        url = None;
    }
    // Customers see a shipment only with both a carrier and a number.
    if errors.tracking_carrier.is_none() && errors.tracking_number.is_none() {
        match (&carrier, &number) {
            (None, Some(_)) => errors.tracking_carrier = Some("Enter the carrier of this tracking number.".into()),
            (Some(_), None) => errors.tracking_number = Some("Enter the tracking number too.".into()),
            (None, None) if url.is_some() || errors.tracking_url.is_some() => {
                errors.tracking_number = Some("A tracking link needs a carrier and a tracking number.".into());
            }
            _ => {}
        }
    }
    Tracking { carrier, number, url }
}

/// Whose order it is and what the form is for.
pub enum FormMode {
    New { customer_id: Uuid, customer_name: String, workflows: Vec<WorkflowChoice> },
    Edit { order: EditedOrder },
}

impl EditedOrder {
    fn fields(&self) -> OrderFields {
        OrderFields {
            title: self.title.clone(),
            reference: self.reference.clone().unwrap_or_default(),
            expected_on: self.expected_on.map(|d| d.to_string()).unwrap_or_default(),
            tracking_carrier: self.tracking_carrier.clone().unwrap_or_default(),
            tracking_number: self.tracking_number.clone().unwrap_or_default(),
            tracking_url: self.tracking_url.clone().unwrap_or_default(),
            ..OrderFields::default()
        }
    }
}

/// One labelled text input with its hint and error, as the forms here draw it.
#[derive(TemplateSimple)]
#[template(path = "staff/_field.stpl")]
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub max: usize,
    pub hint: Option<&'a str>,
    pub error: Option<&'a str>,
    pub required: bool,
    pub autofocus: bool,
}

#[derive(TemplateSimple)]
#[template(path = "staff/order_form.stpl")]
struct OrderFormPage {
    shell: Shell,
    csrf_token: String,
    mode: FormMode,
    fields: OrderFields,
    errors: OrderErrors,
}

/// The field `name` of the order form, with what was typed and its error.
pub fn field<'a>(
    fields: &'a OrderFields,
    errors: &'a OrderErrors,
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    max: usize,
    hint: Option<&'a str>,
) -> Field<'a> {
    let (value, error) = match name {
        "number" => (&fields.number, &errors.number),
        "title" => (&fields.title, &errors.title),
        "reference" => (&fields.reference, &errors.reference),
        "expected_on" => (&fields.expected_on, &errors.expected_on),
        "external_ref" => (&fields.external_ref, &errors.external_ref),
        "tracking_carrier" => (&fields.tracking_carrier, &errors.tracking_carrier),
        "tracking_number" => (&fields.tracking_number, &errors.tracking_number),
        _ => (&fields.tracking_url, &errors.tracking_url),
    };
    Field {
        name,
        label,
        kind,
        value,
        max,
        hint,
        error: error.as_deref(),
        required: matches!(name, "number" | "title"),
        autofocus: errors.first() == Some(name),
    }
}

fn form_page(
    viewer: &Viewer,
    flash: Option<Flash>,
    mode: FormMode,
    fields: OrderFields,
    errors: OrderErrors,
) -> OrderFormPage {
    let title = match &mode {
        FormMode::New { customer_name, .. } => format!("New order for {customer_name}"),
        FormMode::Edit { order } => format!("Edit {}", order.number),
    };
    OrderFormPage {
        shell: Shell::page(viewer, title, Section::StaffOrders, flash),
        csrf_token: viewer.csrf_token.clone(),
        mode,
        fields,
        errors,
    }
}

/// The customer a new order is for, and the workflows it may start in; `None` if there is no such customer.
async fn new_mode(db: &Scope, customer: Uuid) -> Result<Option<FormMode>, DbError> {
    let Some(customer_name) = edit::customer_name(db, customer).await? else {
        return Ok(None);
    };
    let workflows = edit::workflow_choices(db).await?;
    Ok(Some(FormMode::New { customer_id: customer, customer_name, workflows }))
}

pub async fn new_form(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let customer = parse_id(path)?;
    let mode = new_mode(&cx.db, customer).await?.ok_or(AppError::NotFound)?;
    // The workflow of the customer's latest order is the likeliest.
    let workflow = edit::latest_workflow(&cx.db, customer).await?;
    let fields = OrderFields {
        number: edit::suggest_number(&cx.db, customer).await?,
        workflow_id: workflow.map(|w| w.to_string()).unwrap_or_default(),
        ..OrderFields::default()
    };
    cx.db.commit().await?;
    html(form_page(&cx.viewer, cx.flash, mode, fields, OrderErrors::default()))
}

pub const DUPLICATE_NUMBER: &str = "This customer already has an order with this number.";
pub const DUPLICATE_EXTERNAL_REF: &str = "Another order already has this external reference.";

/// Marks the number and external reference that are taken.
async fn check_unique(
    db: &Scope,
    customer: Uuid,
    number: &str,
    external_ref: Option<&str>,
    errors: &mut OrderErrors,
) -> Result<(), DbError> {
    if errors.number.is_none() && edit::number_taken(db, customer, number).await? {
        errors.number = Some(DUPLICATE_NUMBER.to_owned());
    }
    if let Some(external_ref) = external_ref.filter(|_| errors.external_ref.is_none())
        && edit::external_ref_taken(db, external_ref).await?
    {
        errors.external_ref = Some(DUPLICATE_EXTERNAL_REF.to_owned());
    }
    Ok(())
}

pub async fn create(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(fields): CsrfForm<OrderFields>,
) -> Result<HttpResponse, AppError> {
    let customer = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let mode = new_mode(&db, customer).await?.ok_or(AppError::NotFound)?;
    let mut errors = OrderErrors::default();
    let number = take(required_text("order number", &fields.number, NUMBER_MAX), &mut errors.number);
    let details = check_details(&fields, &mut errors);
    let external_ref =
        take(optional_text("external reference", &fields.external_ref, REFERENCE_MAX), &mut errors.external_ref);
    let workflow = match &mode {
        FormMode::New { workflows, .. } => Uuid::parse_str(fields.workflow_id.trim())
            .ok()
            .and_then(|id| workflows.iter().find(|w| w.id == id))
            .map(|w| w.id),
        FormMode::Edit { .. } => None,
    };
    if workflow.is_none() {
        errors.workflow_id = Some("Choose the workflow this order goes through.".to_owned());
    }
    check_unique(&db, customer, &number, external_ref.as_deref(), &mut errors).await?;

    let mut created = None;
    if let (false, Some(workflow)) = (errors.any(), workflow) {
        let order =
            NewOrder { customer, number: &number, details: &details, external_ref: external_ref.as_deref(), workflow };
        created = edit::create(&db, &actor(&viewer), &order).await?;
        if created.is_none() {
            check_unique(&db, customer, &number, external_ref.as_deref(), &mut errors).await?;
        }
    }
    let Some(edit::Created { id, stage_name, .. }) = created else {
        let page = form_page(&viewer, None, mode, fields, errors);
        db.commit().await?;
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    };
    db.commit().await?;
    let customer_name = match &mode {
        FormMode::New { customer_name, .. } => customer_name.as_str(),
        FormMode::Edit { .. } => "",
    };
    let message = format!("{number} created for {customer_name}, at {stage_name}.");
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), Flash::success(message)))
}

pub async fn edit_form(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let order = edit::edited(&cx.db, id, false).await?.ok_or(AppError::NotFound)?;
    cx.db.commit().await?;
    let fields = order.fields();
    html(form_page(&cx.viewer, cx.flash, FormMode::Edit { order }, fields, OrderErrors::default()))
}

pub async fn update(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(fields): CsrfForm<OrderFields>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let order = edit::edited(&db, id, true).await?.ok_or(AppError::NotFound)?;
    let mut errors = OrderErrors::default();
    let details = check_details(&fields, &mut errors);
    let tracking = check_tracking(&fields, &mut errors);
    if errors.any() {
        db.commit().await?;
        let page = form_page(&viewer, None, FormMode::Edit { order }, fields, errors);
        return html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page.render_once()?);
    }
    let changed: Vec<&str> = [
        ("title", order.title != details.title),
        ("reference", order.reference != details.reference),
        ("expected_on", order.expected_on != details.expected_on),
        ("tracking_carrier", order.tracking_carrier != tracking.carrier),
        ("tracking_number", order.tracking_number != tracking.number),
        ("tracking_url", order.tracking_url != tracking.url),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    let to = format!("/staff/orders/{id}");
    if changed.is_empty() {
        db.commit().await?;
        return Ok(redirect_with_flash(&state, &to, Flash::info(format!("Nothing changed on {}.", order.number))));
    }
    edit::update(&db, &actor(&viewer), &order, &details, &tracking, &changed).await?;
    db.commit().await?;
    Ok(redirect_with_flash(&state, &to, Flash::success(format!("{} updated.", order.number))))
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusChange {
    Cancel,
    Reopen,
}

pub async fn cancel(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    change_status(state, cx, path, StatusChange::Cancel).await
}

pub async fn reopen(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    change_status(state, cx, path, StatusChange::Reopen).await
}

async fn change_status(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    change: StatusChange,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(path)?;
    let StaffScope { viewer, db, .. } = cx;
    let order = edit::edited(&db, id, true).await?.ok_or(AppError::NotFound)?;
    let number = &order.number;
    let flash = match (change, order.status.as_str()) {
        (StatusChange::Cancel, "open") => {
            edit::cancel(&db, &actor(&viewer), &order).await?;
            Flash::success(format!("{number} cancelled."))
        }
        (StatusChange::Cancel, "cancelled") => Flash::info(format!("{number} was already cancelled.")),
        (StatusChange::Cancel, _) => Flash::error(format!(
            "{number} is completed; only open orders can be cancelled. Move it back to an earlier stage first."
        )),
        (StatusChange::Reopen, "cancelled") => {
            // An order at a stage that completes it is completed, not open.
            let status = edit::reopen(&db, &actor(&viewer), &order).await?;
            Flash::success(format!("{number} reopened ({status}, at {}).", order.stage))
        }
        (StatusChange::Reopen, _) => Flash::info(format!("{number} is not cancelled; nothing to reopen.")),
    };
    db.commit().await?;
    Ok(redirect_with_flash(&state, &format!("/staff/orders/{id}"), flash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_links_must_be_https() {
        let mut errors = OrderErrors::default();
        let fields = OrderFields {
            tracking_carrier: "DHL".into(),
            tracking_number: "JD01".into(),
            tracking_url: "http://dhl.example/track".into(),
            ..OrderFields::default()
        };
        check_tracking(&fields, &mut errors);
        assert_eq!(errors.tracking_url.as_deref(), Some(TRACKING_URL_HTTPS));
        let mut errors = OrderErrors::default();
        let fields = OrderFields { tracking_number: "JD01".into(), ..OrderFields::default() };
        check_tracking(&fields, &mut errors);
        assert!(errors.tracking_carrier.is_some());
        assert_eq!(optional_date("2026-02-30"), Err("Enter a date such as 2026-06-30.".to_owned()));
        assert!(matches!(optional_date("2026-02-28"), Ok(Some(_))));
    }
}
