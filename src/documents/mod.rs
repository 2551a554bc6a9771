//! Documents: the customer's library (filters, search, keyset pages), each
//! document's versions, uploads by customers, and downloads through
//! single-use grants. Staff pages (`staff::documents`) use the same parts: the
//! reads in `store`, `list` and `view`, the writes in `form` and `grants`, and
//! one flow for adding a version ([`receive_version`]).

pub mod content;
pub mod form;
pub mod grants;
pub mod list;
pub mod store;
pub mod upload;
pub mod view;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::Date;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::Scope;
use crate::db::keyset::Cursor;
use crate::web::client_ip;
use crate::web::{
    AccountScope, AppError, AppState, CsrfForm, CustomerScope, Flash, Section, Shell, Uploader, html, html_with_status,
    redirect_with_flash,
};
use form::{DocumentForm, TYPES};
use list::{DocumentRow, Filters, Page};
use view::DocumentView;

/// The live region of the library's first page, shared by every user of a customer.
pub const LATEST_REGION: &str = "documents-latest";

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(rename = "type")]
    doc_type: Option<String>,
    order: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// The filters as the page shows them back, and as they go into page links.
pub struct Shown {
    pub doc_type: &'static str,
    pub q: String,
    pub tag: String,
    pub from: String,
    pub to: String,
    pub order: crate::orders::OrderFilter,
}

impl Shown {
    /// The query string of these filters (without the page cursor).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if self.doc_type != "all" {
            parts.push(format!("type={}", self.doc_type));
        }
        if let Some(id) = self.order.id() {
            parts.push(format!("order={id}"));
        }
        for (name, value) in [("q", &self.q), ("tag", &self.tag), ("from", &self.from), ("to", &self.to)] {
            if !value.is_empty() {
                parts.push(format!("{name}={}", crate::web::encode_query_value(value)));
            }
        }
        parts.join("&")
    }

    pub fn is_filtered(&self) -> bool {
        self.doc_type != "all"
            || self.order.is_set()
            || !self.q.is_empty()
            || !self.tag.is_empty()
            || !self.from.is_empty()
            || !self.to.is_empty()
    }

    fn href(&self, cursor: &str, value: &str) -> String {
        let query = self.query();
        let sep = if query.is_empty() { "" } else { "&" };
        format!("/documents?{query}{sep}{cursor}={}", crate::web::encode_query_value(value))
    }
}

pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s.trim(), time::macros::format_description!("[year]-[month]-[day]")).ok()
}

pub fn total_label(total: i64) -> String {
    match total {
        0 => "No documents".into(),
        1 => "1 document".into(),
        n if n > list::COUNT_CAP => {
            format!("More than {} documents", crate::format::group(list::COUNT_CAP as usize))
        }
        n => format!("{} documents", crate::format::group(n as usize)),
    }
}

#[derive(TemplateSimple)]
#[template(path = "documents/index.stpl")]
struct IndexPage {
    shell: Shell,
    shown: Shown,
    types: [&'static str; 7],
    table: TablePart,
    newer_href: Option<String>,
    older_href: Option<String>,
}

/// Why a list is empty, for the words of its empty state.
pub enum Empty {
    Nothing,
    NoMatch(String),
    Filtered,
    UnknownOrder,
}

/// The results of a library page; on the customer's unfiltered first page it is
/// the live region [`LATEST_REGION`], re-rendered for every user of the customer.
#[derive(TemplateSimple)]
#[template(path = "documents/_table.stpl")]
pub struct TablePart {
    pub rows: Vec<DocumentRow>,
    pub live: bool,
    pub total_label: String,
    pub empty: Empty,
    pub nothing_text: &'static str,
    pub list_href: &'static str,
    pub link_prefix: &'static str,
    pub order_prefix: &'static str,
    pub tag_prefix: &'static str,
    pub origin_label: &'static str,
    pub show_customer: bool,
}

impl TablePart {
    /// The customer's side of the table.
    pub fn customer(page: Page, live: bool, empty: Empty) -> Self {
        TablePart {
            total_label: total_label(page.total),
            rows: page.rows,
            live,
            empty,
            nothing_text: "Contracts, certificates, reports and artwork we share with you appear here, \
                           and so does everything you upload.",
            list_href: "/documents",
            link_prefix: "/documents/",
            order_prefix: "/orders/",
            tag_prefix: "/documents?tag=",
            origin_label: "Uploaded by you",
            show_customer: false,
        }
    }

    /// The live region's current markup for a customer.
    pub async fn latest(db: &Scope, customer: Uuid) -> Result<Self, AppError> {
        let filters = Filters { customer: Some(customer), ..Filters::default() };
        let page = list::load(db, &filters, &Cursor::First).await?;
        Ok(TablePart::customer(page, true, Empty::Nothing))
    }
}

pub async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let doc_type = TYPES.into_iter().find(|t| query.doc_type.as_deref() == Some(*t));
    let q: String = query.q.as_deref().unwrap_or("").trim().chars().take(100).collect();
    let tag: String = query.tag.as_deref().unwrap_or("").trim().chars().take(40).collect::<String>().to_lowercase();
    let from = query.from.as_deref().and_then(parse_date);
    let to = query.to.as_deref().and_then(parse_date);
    let order = crate::orders::OrderFilter::resolve(&cx.db, customer, query.order.as_deref()).await?;
    let cursor = Cursor::parse(query.after.as_deref(), query.before.as_deref());
    let filters = Filters {
        customer: Some(customer),
        doc_type,
        order: order.id(),
        from,
        to,
        tag: (!tag.is_empty()).then(|| tag.clone()),
        search: q.clone(),
    };
    let page = if matches!(order, crate::orders::OrderFilter::Unknown) {
        Page { rows: Vec::new(), newer: None, older: None, total: 0 }
    } else {
        list::load(&cx.db, &filters, &cursor).await?
    };
    let live_cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    let shown = Shown {
        doc_type: doc_type.unwrap_or("all"),
        q,
        tag,
        from: from.map(|d| d.to_string()).unwrap_or_default(),
        to: to.map(|d| d.to_string()).unwrap_or_default(),
        order,
    };
    let title = match &shown.order {
        crate::orders::OrderFilter::Found { number, .. } => format!("Documents for {number}"),
        _ => "Documents".to_owned(),
    };
    let live_latest = !shown.is_filtered() && cursor == Cursor::First;
    let mut shell = Shell::page(&cx.viewer, title, Section::Documents, cx.flash);
    if live_latest {
        shell = shell.live(live_cursor);
    }
    let empty = if matches!(shown.order, crate::orders::OrderFilter::Unknown) {
        Empty::UnknownOrder
    } else if !shown.q.is_empty() {
        Empty::NoMatch(shown.q.clone())
    } else if shown.is_filtered() {
        Empty::Filtered
    } else {
        Empty::Nothing
    };
    html(IndexPage {
        shell,
        newer_href: page.newer.as_deref().map(|c| shown.href("before", c)),
        older_href: page.older.as_deref().map(|c| shown.href("after", c)),
        table: TablePart::customer(page, live_latest, empty),
        shown,
        types: TYPES,
    })
}

/// The upload form's page, for a new document or a new version.
#[derive(TemplateSimple)]
#[template(path = "documents/new.stpl")]
pub struct NewPage {
    pub shell: Shell,
    pub csrf: String,
    pub form: DocumentForm,
    pub error: Option<String>,
    pub orders: Vec<(Uuid, String)>,
    pub types: [&'static str; 7],
    pub limits: UploadLimits,
    pub cancel_href: String,
}

/// What the upload widgets tell the user before they send anything.
pub struct UploadLimits {
    pub accept: String,
    pub accepted: &'static str,
    pub max_bytes: u64,
    pub max_label: String,
}

impl UploadLimits {
    pub fn new(max_bytes: u64) -> Self {
        UploadLimits {
            accept: content::accept_attribute(),
            accepted: content::ACCEPTED_SUMMARY,
            max_bytes,
            max_label: crate::format::bytes(max_bytes as i64),
        }
    }
}

pub use store::order_choices;

#[derive(Deserialize)]
pub struct NewQuery {
    order: Option<String>,
}

pub async fn new_form(
    cx: CustomerScope,
    state: web::Data<AppState>,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, AppError> {
    let orders = order_choices(&cx.db, cx.customer.id).await?;
    cx.db.commit().await?;
    let order = query.order.clone().filter(|o| orders.iter().any(|(id, _)| id.to_string() == *o)).unwrap_or_default();
    html(NewPage {
        shell: Shell::page(&cx.viewer, "Upload a document", Section::Documents, cx.flash),
        csrf: cx.viewer.csrf_token.clone(),
        form: DocumentForm { doc_type: "artwork".into(), order, ..DocumentForm::default() },
        error: None,
        orders,
        types: TYPES,
        limits: UploadLimits::new(state.upload_max_bytes),
        cancel_href: "/documents".into(),
    })
}

pub async fn create(
    req: HttpRequest,
    uploader: Uploader,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let Some(customer) = uploader.viewer.customer.clone() else {
        return Err(AppError::Redirect("/staff/documents/new".into()));
    };
    let received = upload::receive(&req, payload, &state.blobs, state.upload_max_bytes).await?;
    let form = DocumentForm::from_received(&received);
    let refuse = |error: String, status, orders| {
        let page = NewPage {
            shell: Shell::page(&uploader.viewer, "Upload a document", Section::Documents, None),
            csrf: uploader.viewer.csrf_token.clone(),
            form: form.clone(),
            error: Some(error),
            orders,
            types: TYPES,
            limits: UploadLimits::new(state.upload_max_bytes),
            cancel_href: "/documents".into(),
        };
        html_with_status(status, page.render_once()?)
    };
    let file = match received.file {
        Ok(file) => file,
        Err(e) if e.is_the_users() => {
            let db = uploader.open().await?;
            let orders = order_choices(&db, customer.id).await?;
            db.commit().await?;
            return refuse(e.to_string(), e.status(), orders);
        }
        Err(e) => return Err(e.into()),
    };
    let valid = match form.validate(Some(&file.detected.file_name)) {
        Ok(valid) => valid,
        Err(message) => {
            let db = uploader.open().await?;
            let orders = order_choices(&db, customer.id).await?;
            db.commit().await?;
            return refuse(message, actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, orders);
        }
    };
    let stored = file.store(&uploader, &state.blobs, customer.id).await?;
    let viewer = &uploader.viewer;
    let written = async {
        let db = uploader.open().await?;
        let id = form::create(&db, customer.id, &valid, &stored, viewer.user_id, &viewer.email, "customer").await?;
        if id.is_some() {
            db.commit().await?;
        }
        Ok::<_, AppError>(id)
    }
    .await;
    match written {
        Ok(Some(id)) => Ok(uploaded(
            &req,
            &state,
            &format!("/documents/{id}"),
            Flash::success(format!("“{}” is uploaded. We have been notified.", valid.title)),
        )),
        Ok(None) => {
            stored.abandon(&uploader, &state.blobs).await;
            let db = uploader.open().await?;
            let orders = order_choices(&db, customer.id).await?;
            db.commit().await?;
            refuse("Choose an order from the list.".into(), actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, orders)
        }
        Err(e) => {
            stored.abandon(&uploader, &state.blobs).await;
            Err(e)
        }
    }
}

#[derive(TemplateSimple)]
#[template(path = "documents/show.stpl")]
struct ShowPage {
    shell: Shell,
    view: DocumentView,
    csrf: String,
    is_admin: bool,
    may_add_version: bool,
    limits: UploadLimits,
    version_error: Option<String>,
}

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound)
}

async fn show_page(
    db: Scope,
    viewer: &crate::auth::Viewer,
    state: &AppState,
    id: Uuid,
    flash: Option<Flash>,
    version_error: Option<String>,
) -> Result<String, AppError> {
    let is_admin = viewer.role == Role::CustomerAdmin;
    let mut view = DocumentView::load(&db, id).await?.ok_or(AppError::NotFound)?;
    if is_admin {
        view = view.with_audit(&db).await?;
    }
    db.commit().await?;
    let title = view.document.title.clone();
    Ok(ShowPage {
        shell: Shell::page(viewer, title, Section::Documents, flash),
        may_add_version: view.customer_may_add_version(),
        view,
        csrf: viewer.csrf_token.clone(),
        is_admin,
        limits: UploadLimits::new(state.upload_max_bytes),
        version_error,
    }
    .render_once()?)
}

pub async fn show(
    cx: CustomerScope,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let body = show_page(cx.db, &cx.viewer, &state, id, cx.flash, None).await?;
    html_with_status(actix_web::http::StatusCode::OK, body)
}

pub async fn add_version(
    req: HttpRequest,
    uploader: Uploader,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    if uploader.viewer.customer.is_none() {
        return Err(AppError::NotFound);
    }
    let id = parse_id(&path)?;
    // Known and theirs before a byte is stored: a foreign id is a 404 like any other.
    let may_add = |view: &DocumentView| {
        if view.customer_may_add_version() { Ok(()) } else { Err(AppError::Forbidden) }
    };
    let page = format!("/documents/{id}");
    match receive_version(&req, &uploader, &state, id, may_add, payload, &page).await? {
        VersionUpload::Done(response) => Ok(response),
        VersionUpload::Refused(status, error) => {
            let body = show_page(uploader.open().await?, &uploader.viewer, &state, id, None, Some(error)).await?;
            html_with_status(status, body)
        }
    }
}

/// How an upload of a new version ended.
pub enum VersionUpload {
    /// Stored and recorded: the answer to send (to the document's page, with a flash).
    Done(HttpResponse),
    /// The file was refused (too large, not an allowed type …): the status and why,
    /// for the caller's page of the document.
    Refused(StatusCode, String),
}

/// Adding a version, for customers and staff alike: the document must be visible
/// in the uploader's scope and pass `may_add` before a byte is stored; then the
/// file is received, stored as the next version and recorded (or deleted again),
/// and the answer goes to `page`.
pub async fn receive_version(
    req: &HttpRequest,
    uploader: &Uploader,
    state: &AppState,
    document: Uuid,
    may_add: impl FnOnce(&DocumentView) -> Result<(), AppError>,
    payload: Multipart,
    page: &str,
) -> Result<VersionUpload, AppError> {
    let customer = {
        let db = uploader.open().await?;
        let view = DocumentView::load(&db, document).await?.ok_or(AppError::NotFound)?;
        db.commit().await?;
        may_add(&view)?;
        view.document.customer_id
    };
    let received = upload::receive(req, payload, &state.blobs, state.upload_max_bytes).await?;
    let file = match received.file {
        Ok(file) => file,
        Err(e) if e.is_the_users() => return Ok(VersionUpload::Refused(e.status(), e.to_string())),
        Err(e) => return Err(e.into()),
    };
    store_version(req, uploader, state, document, customer, file, page).await.map(VersionUpload::Done)
}

/// Stores a received file as the next version of `document` and records it (or
/// deletes the object again), then answers with `page`.
async fn store_version(
    req: &HttpRequest,
    uploader: &Uploader,
    state: &AppState,
    document: Uuid,
    customer: Uuid,
    file: upload::Incoming,
    page: &str,
) -> Result<HttpResponse, AppError> {
    let stored = file.store(uploader, &state.blobs, customer).await?;
    let viewer = &uploader.viewer;
    let written = async {
        let db = uploader.open().await?;
        let view = DocumentView::load(&db, document).await?.ok_or(AppError::NotFound)?;
        let version =
            form::add_version(&db, customer, document, &view.document.title, &stored, viewer.user_id, &viewer.email)
                .await?;
        db.commit().await?;
        Ok::<_, AppError>(version)
    }
    .await;
    match written {
        Ok(version) => Ok(uploaded(req, state, page, Flash::success(format!("Version {version} is uploaded.")))),
        Err(e) => {
            stored.abandon(uploader, &state.blobs).await;
            Err(e)
        }
    }
}

#[derive(Deserialize)]
pub struct DownloadForm {
    #[serde(default)]
    pub version: Option<i32>,
}

pub async fn download(
    req: HttpRequest,
    cx: CustomerScope,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: CsrfForm<DownloadForm>,
) -> Result<HttpResponse, AppError> {
    grant_for(cx.db, &cx.viewer, &req, &state, parse_id(&path)?, form.0.version).await
}

/// Creates a download grant in `db` (customer or staff scope) and sends the browser to it.
pub async fn grant_for(
    db: Scope,
    viewer: &crate::auth::Viewer,
    req: &HttpRequest,
    state: &AppState,
    document: Uuid,
    version: Option<i32>,
) -> Result<HttpResponse, AppError> {
    let token = grants::create(&db, viewer, document, version, client_ip(req), state.download_grant_ttl)
        .await?
        .ok_or(AppError::NotFound)?;
    db.commit().await?;
    Ok(grant_redirect(&token))
}

/// The answer to an accepted upload: a redirect for a plain form post; for
/// `upload.js` (which cannot stop an XMLHttpRequest from following redirects,
/// and would spend the flash on the hidden request) the address as JSON.
/// Either way the flash cookie rides along.
pub fn uploaded(req: &HttpRequest, state: &AppState, to: &str, flash: Flash) -> HttpResponse {
    if req.headers().contains_key("x-portal-upload") {
        HttpResponse::Ok().cookie(state.cookies.flash(&flash)).json(serde_json::json!({ "location": to }))
    } else {
        redirect_with_flash(state, to, flash)
    }
}

/// Where a fresh grant is redeemed. The token is in the path; the response
/// carries `Referrer-Policy: no-referrer` so it never travels further.
pub fn grant_redirect(token: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, format!("/downloads/{token}")))
        .insert_header((actix_web::http::header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// Redeems a grant: customers and staff alike, each in their own scope.
pub async fn fetch(
    req: HttpRequest,
    cx: AccountScope,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    if token.len() != 43 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(AppError::NotFound);
    }
    let user_agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let redeemed = grants::redeem(&cx.db, &cx.viewer, &token, client_ip(&req), user_agent).await;
    let redeemed = match redeemed {
        Ok(redeemed) => redeemed,
        Err(AppError::Gone) => {
            // The refusal is the answer; nothing else happened in this transaction.
            cx.db.commit().await?;
            return Err(AppError::Gone);
        }
        Err(e) => return Err(e),
    };
    // The file is opened (or the URL signed) before the download is recorded as done.
    let response = redeemed.respond(&state.blobs).await?;
    cx.db.commit().await?;
    Ok(response)
}

pub async fn revoke_link(
    cx: CustomerScope,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _form: CsrfForm<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    if cx.viewer.role != Role::CustomerAdmin {
        return Err(AppError::Forbidden);
    }
    let (id, grant) = path.into_inner();
    let (id, grant) = (parse_id(&id)?, parse_id(&grant)?);
    DocumentView::load(&cx.db, id).await?.ok_or(AppError::NotFound)?;
    let revoked = grants::revoke(&cx.db, id, grant, cx.viewer.user_id).await?;
    cx.db.commit().await?;
    let flash = if revoked {
        Flash::success("The download link is revoked; it no longer works.")
    } else {
        Flash::info("That link had already been used, revoked or expired.")
    };
    Ok(redirect_with_flash(&state, &format!("/documents/{id}"), flash))
}
