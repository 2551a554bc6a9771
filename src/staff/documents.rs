//! Documents in the back office: every customer's library in one list, uploading
//! a document for a customer (optionally about one of their orders), a document
//! as staff see it (versions, who downloaded what, whether the client got it,
//! the links still live), new versions, downloads and revoking links.
//!
//! The work is done by the customer side's parts (`crate::documents`); this
//! module decides what staff may do with them. Staff may add a version to any
//! document, whoever uploaded it.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::Scope;
use crate::db::keyset::Cursor;
use crate::documents::form::{self, DocumentForm, TYPES};
use crate::documents::list::{self, Filters};
use crate::documents::store::{self, ClientDownloads, customer_choices, open_orders, order_choices};
use crate::documents::view::DocumentView;
use crate::documents::{DownloadForm, Empty, TablePart, UploadLimits, VersionUpload, grants, upload};
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, Uploader, encode_query_value, html,
    html_with_status, redirect_with_flash,
};

const LIST_HREF: &str = "/staff/documents";
const NO_CUSTOMER: &str = "Choose the customer this document is for.";
const FOREIGN_ORDER: &str = "Choose an order of this customer, or none.";

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw.trim()).map_err(|_| AppError::NotFound)
}

fn parse_optional(raw: Option<&str>) -> Option<Uuid> {
    raw.and_then(|s| Uuid::parse_str(s.trim()).ok())
}

// ---------------------------------------------------------------------------
// Every customer's documents.

#[derive(Deserialize, Default)]
pub struct ListQuery {
    customer: Option<String>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// The filters as the page shows them back, and as they go into page links.
pub struct Shown {
    pub customer: Option<Uuid>,
    pub doc_type: &'static str,
    pub q: String,
    pub tag: String,
}

impl Shown {
    /// The query string of these filters (without the page cursor).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(customer) = self.customer {
            parts.push(format!("customer={customer}"));
        }
        if self.doc_type != "all" {
            parts.push(format!("type={}", self.doc_type));
        }
        for (name, value) in [("q", &self.q), ("tag", &self.tag)] {
            if !value.is_empty() {
                parts.push(format!("{name}={}", encode_query_value(value)));
            }
        }
        parts.join("&")
    }

    pub fn is_filtered(&self) -> bool {
        self.customer.is_some() || self.doc_type != "all" || !self.q.is_empty() || !self.tag.is_empty()
    }

    fn href(&self, cursor: &str, value: &str) -> String {
        let query = self.query();
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{LIST_HREF}?{query}{sep}{cursor}={}", encode_query_value(value))
    }
}

#[derive(TemplateSimple)]
#[template(path = "staff/documents/index.stpl")]
struct IndexPage {
    shell: Shell,
    shown: Shown,
    customers: Vec<(Uuid, String)>,
    types: [&'static str; 7],
    table: TablePart,
    upload_href: String,
    newer_href: Option<String>,
    older_href: Option<String>,
}

pub async fn index(cx: StaffScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customers = customer_choices(&cx.db).await?;
    let customer = parse_optional(query.customer.as_deref());
    let doc_type = TYPES.into_iter().find(|t| query.doc_type.as_deref() == Some(*t));
    let q: String = query.q.as_deref().unwrap_or("").trim().chars().take(100).collect();
    let tag: String = query.tag.as_deref().unwrap_or("").trim().chars().take(40).collect::<String>().to_lowercase();
    let cursor = Cursor::parse(query.after.as_deref(), query.before.as_deref());
    let filters = Filters {
        customer,
        doc_type,
        tag: (!tag.is_empty()).then(|| tag.clone()),
        search: q.clone(),
        ..Filters::default()
    };
    let page = list::load(&cx.db, &filters, &cursor).await?;
    cx.db.commit().await?;

    let shown = Shown { customer, doc_type: doc_type.unwrap_or("all"), q, tag };
    let customer_name = customer.and_then(|id| customers.iter().find(|(c, _)| *c == id)).map(|(_, name)| name.clone());
    let title = match &customer_name {
        Some(name) => format!("Documents of {name}"),
        None => "Documents".to_owned(),
    };
    let only_customer = customer.is_some() && shown.doc_type == "all" && shown.q.is_empty() && shown.tag.is_empty();
    let empty = if cursor != Cursor::First {
        Empty::Filtered
    } else if !shown.q.is_empty() {
        Empty::NoMatch(shown.q.clone())
    } else if shown.is_filtered() && !only_customer {
        Empty::Filtered
    } else {
        Empty::Nothing
    };
    let nothing_text = if only_customer {
        "Nothing has been shared with this customer, and they have uploaded nothing. \
         Upload the first document with “Upload a document”."
    } else {
        "Documents you share with customers appear here, and so does everything customers upload."
    };
    let table = TablePart {
        total_label: crate::documents::total_label(page.total),
        rows: page.rows,
        live: false,
        empty,
        nothing_text,
        list_href: LIST_HREF,
        link_prefix: "/staff/documents/",
        order_prefix: "/staff/orders/",
        tag_prefix: "/staff/documents?tag=",
        origin_label: "Uploaded by the client",
        show_customer: true,
    };
    html(IndexPage {
        shell: Shell::page(&cx.viewer, title, Section::StaffDocuments, cx.flash),
        upload_href: match customer {
            Some(id) => format!("/staff/documents/new?customer={id}"),
            None => "/staff/documents/new".to_owned(),
        },
        newer_href: page.newer.as_deref().map(|c| shown.href("before", c)),
        older_href: page.older.as_deref().map(|c| shown.href("after", c)),
        shown,
        customers,
        types: TYPES,
        table,
    })
}

// ---------------------------------------------------------------------------
// Uploading a document for a customer.

#[derive(TemplateSimple)]
#[template(path = "staff/documents/new.stpl")]
struct NewPage {
    shell: Shell,
    csrf: String,
    form: DocumentForm,
    error: Option<String>,
    customers: Vec<(Uuid, String)>,
    /// Whether `form.customer` is a known customer (the order list is then theirs).
    customer_chosen: bool,
    orders: Vec<(Uuid, String)>,
    types: [&'static str; 7],
    limits: UploadLimits,
    cancel_href: String,
}

/// The upload form as typed, with the choices it offers.
async fn form_page(
    db: &Scope,
    viewer: &Viewer,
    state: &AppState,
    form: DocumentForm,
    error: Option<String>,
    flash: Option<Flash>,
) -> Result<String, AppError> {
    let customers = customer_choices(db).await?;
    let chosen = Uuid::parse_str(form.customer.trim()).ok().and_then(|id| customers.iter().find(|(c, _)| *c == id));
    let (orders, title, cancel_href) = match chosen {
        Some((id, name)) => (
            order_choices(db, *id).await?,
            format!("Upload a document for {name}"),
            format!("/staff/documents?customer={id}"),
        ),
        None => (open_orders(db).await?, "Upload a document".to_owned(), LIST_HREF.to_owned()),
    };
    Ok(NewPage {
        shell: Shell::page(viewer, title, Section::StaffDocuments, flash),
        csrf: viewer.csrf_token.clone(),
        customer_chosen: chosen.is_some(),
        form,
        error,
        customers,
        orders,
        types: TYPES,
        limits: UploadLimits::new(state.upload_max_bytes),
        cancel_href,
    }
    .render_once()?)
}

#[derive(Deserialize)]
pub struct NewQuery {
    customer: Option<String>,
    order: Option<String>,
}

pub async fn new_form(
    cx: StaffScope,
    state: web::Data<AppState>,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, AppError> {
    let order = parse_optional(query.order.as_deref());
    let mut customer = parse_optional(query.customer.as_deref());
    if customer.is_none()
        && let Some(order) = order
    {
        // Coming from an order: its customer is the one.
        customer = store::order_customer(&cx.db, order).await?;
    }
    let form = DocumentForm {
        doc_type: "report".into(),
        customer: customer.map(|c| c.to_string()).unwrap_or_default(),
        order: order.map(|o| o.to_string()).unwrap_or_default(),
        ..DocumentForm::default()
    };
    let body = form_page(&cx.db, &cx.viewer, &state, form, None, cx.flash).await?;
    cx.db.commit().await?;
    html_with_status(StatusCode::OK, body)
}

/// The upload form again, with what was typed and why it was refused.
async fn refuse(
    uploader: &Uploader,
    state: &AppState,
    form: DocumentForm,
    error: String,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let db = uploader.open().await?;
    let body = form_page(&db, &uploader.viewer, state, form, Some(error), None).await?;
    db.commit().await?;
    html_with_status(status, body)
}

/// The customer named in the form, if it exists: `(id, name)`.
async fn known_customer(uploader: &Uploader, raw: &str) -> Result<Option<(Uuid, String)>, AppError> {
    let Ok(id) = Uuid::parse_str(raw.trim()) else { return Ok(None) };
    let db = uploader.open().await?;
    let found = store::customer_name(&db, id).await?.map(|name| (id, name));
    db.commit().await?;
    Ok(found)
}

async fn order_of_customer(uploader: &Uploader, order: Uuid, customer: Uuid) -> Result<bool, AppError> {
    let db = uploader.open().await?;
    let found = store::is_order_of(&db, order, customer).await?;
    db.commit().await?;
    Ok(found)
}

pub async fn create(
    req: HttpRequest,
    uploader: Uploader,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    if !uploader.viewer.is_staff() {
        return Err(AppError::Forbidden);
    }
    let received = upload::receive(&req, payload, &state.blobs, state.upload_max_bytes).await?;
    let form = DocumentForm::from_received(&received);
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let file = match received.file {
        Ok(file) => file,
        Err(e) if e.is_the_users() => {
            let status = e.status();
            return refuse(&uploader, &state, form, e.to_string(), status).await;
        }
        Err(e) => return Err(e.into()),
    };
    let valid = match form.validate(Some(&file.detected.file_name)) {
        Ok(valid) => valid,
        Err(message) => return refuse(&uploader, &state, form, message, unprocessable).await,
    };
    let Some((customer, customer_name)) = known_customer(&uploader, &form.customer).await? else {
        return refuse(&uploader, &state, form, NO_CUSTOMER.into(), unprocessable).await;
    };
    // Checked before a byte is stored; `form::create` checks again in its transaction.
    if let Some(order) = valid.order
        && !order_of_customer(&uploader, order, customer).await?
    {
        return refuse(&uploader, &state, form, FOREIGN_ORDER.into(), unprocessable).await;
    }

    let stored = file.store(&uploader, &state.blobs, customer).await?;
    let viewer = &uploader.viewer;
    let written = async {
        let db = uploader.open().await?;
        let id = form::create(&db, customer, &valid, &stored, viewer.user_id, &viewer.email, "staff").await?;
        if id.is_some() {
            db.commit().await?;
        }
        Ok::<_, AppError>(id)
    }
    .await;
    match written {
        Ok(Some(id)) => Ok(crate::documents::uploaded(
            &req,
            &state,
            &format!("/staff/documents/{id}"),
            Flash::success(format!("“{}” is uploaded for {customer_name}.", valid.title)),
        )),
        Ok(None) => {
            stored.abandon(&uploader, &state.blobs).await;
            refuse(&uploader, &state, form, FOREIGN_ORDER.into(), unprocessable).await
        }
        Err(e) => {
            stored.abandon(&uploader, &state.blobs).await;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------
// One document.

#[derive(TemplateSimple)]
#[template(path = "staff/documents/show.stpl")]
struct ShowPage {
    shell: Shell,
    view: DocumentView,
    client: ClientDownloads,
    csrf: String,
    limits: UploadLimits,
    version_error: Option<String>,
}

async fn show_page(
    db: Scope,
    viewer: &Viewer,
    state: &AppState,
    id: Uuid,
    flash: Option<Flash>,
    version_error: Option<String>,
) -> Result<String, AppError> {
    let view = DocumentView::load(&db, id).await?.ok_or(AppError::NotFound)?.with_audit(&db).await?;
    let client = ClientDownloads::load(&db, id).await?;
    db.commit().await?;
    let title = view.document.title.clone();
    Ok(ShowPage {
        shell: Shell::page(viewer, title, Section::StaffDocuments, flash),
        view,
        client,
        csrf: viewer.csrf_token.clone(),
        limits: UploadLimits::new(state.upload_max_bytes),
        version_error,
    }
    .render_once()?)
}

pub async fn show(
    cx: StaffScope,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let body = show_page(cx.db, &cx.viewer, &state, id, cx.flash, None).await?;
    html_with_status(StatusCode::OK, body)
}

pub async fn add_version(
    req: HttpRequest,
    uploader: Uploader,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    if !uploader.viewer.is_staff() {
        return Err(AppError::Forbidden);
    }
    let id = parse_id(&path)?;
    // Staff may add a version to any document they can see, whoever uploaded it.
    let page = format!("/staff/documents/{id}");
    match crate::documents::receive_version(&req, &uploader, &state, id, |_| Ok(()), payload, &page).await? {
        VersionUpload::Done(response) => Ok(response),
        VersionUpload::Refused(status, error) => {
            let body = show_page(uploader.open().await?, &uploader.viewer, &state, id, None, Some(error)).await?;
            html_with_status(status, body)
        }
    }
}

pub async fn download(
    req: HttpRequest,
    cx: StaffScope,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: CsrfForm<DownloadForm>,
) -> Result<HttpResponse, AppError> {
    crate::documents::grant_for(cx.db, &cx.viewer, &req, &state, parse_id(&path)?, form.0.version).await
}

pub async fn revoke_link(
    cx: StaffScope,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _form: CsrfForm<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let (id, grant) = path.into_inner();
    let (id, grant) = (parse_id(&id)?, parse_id(&grant)?);
    // A link of another document is not this page's to revoke.
    if !store::is_grant_of(&cx.db, grant, id).await? {
        return Err(AppError::NotFound);
    }
    let revoked = grants::revoke(&cx.db, id, grant, cx.viewer.user_id).await?;
    cx.db.commit().await?;
    let flash = if revoked {
        Flash::success("The download link is revoked; it no longer works.")
    } else {
        Flash::info("That link had already been used, revoked or expired.")
    };
    Ok(redirect_with_flash(&state, &format!("/staff/documents/{id}"), flash))
}
