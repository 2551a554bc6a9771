//! Request extractors: who is asking, and the database scope they may use.
//!
//! `CustomerScope` and `StaffScope` are the only way a handler gets at data:
//! they authenticate the request and open a `Scope` limited to what the viewer
//! may see. `CsrfForm` parses a form only after its CSRF token checks out.

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::AppError;
use super::shell::Flash;
use crate::auth::{CustomerRef, Viewer, session};
use crate::db::Scope;

/// The session is resolved once per request, whichever extractors ask, even
/// when they ask at the same time: actix runs a handler's extractors side by
/// side, and a second lookup waiting for a pooled connection while the first
/// extractor already holds the scope's would make one request need two.
#[derive(Clone, Default)]
struct ResolvedViewer(std::rc::Rc<tokio::sync::OnceCell<Option<Viewer>>>);

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::BadRequest("application state missing".into()))
}

pub async fn current_viewer(req: &HttpRequest) -> Result<Option<Viewer>, AppError> {
    let resolved = {
        let mut extensions = req.extensions_mut();
        match extensions.get::<ResolvedViewer>() {
            Some(resolved) => resolved.clone(),
            None => {
                let resolved = ResolvedViewer::default();
                extensions.insert(resolved.clone());
                resolved
            }
        }
    };
    let viewer = resolved
        .0
        .get_or_try_init(|| async {
            let state = state(req)?;
            Ok::<_, AppError>(match state.cookies.session_token(req) {
                Some(token) => session::resolve(&state.db, &token).await?,
                None => None,
            })
        })
        .await?;
    Ok(viewer.clone())
}

/// Where to return after signing in: the page asked for, if it was a plain GET.
fn return_path(req: &HttpRequest) -> String {
    if req.method() == Method::GET {
        req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned()
    } else {
        "/".to_owned()
    }
}

async fn require_viewer(req: &HttpRequest) -> Result<Viewer, AppError> {
    current_viewer(req).await?.ok_or_else(|| AppError::SignInRequired { next: return_path(req) })
}

impl FromRequest for Viewer {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { require_viewer(&req).await })
    }
}

/// What a scope extractor checks of the viewer before it takes a connection,
/// and how it then opens its scope. Implemented by the three scope extractors,
/// so [`Unopened`] can run the same checks and open the same scope later.
pub trait OpensScope: Sized {
    /// Refuses (or redirects) a viewer this kind of page is not for.
    fn admit(viewer: &Viewer) -> Result<(), AppError>;
    /// Takes a pooled connection and begins the scope's transaction.
    fn open(req: &HttpRequest, viewer: Viewer) -> impl std::future::Future<Output = Result<Self, AppError>>;
}

fn scope_extractor<S: OpensScope + 'static>(req: &HttpRequest) -> LocalBoxFuture<'static, Result<S, AppError>> {
    let req = req.clone();
    Box::pin(async move {
        let viewer = require_viewer(&req).await?;
        S::admit(&viewer)?;
        S::open(&req, viewer).await
    })
}

/// A scope extractor's checks, with the scope not yet opened: for handlers that
/// must first do work that takes a connection of its own (checking a password,
/// spending a rate-limit budget), so that a request never holds two pooled
/// connections, and no transaction stays open while a password is hashed.
pub struct Unopened<S> {
    pub viewer: Viewer,
    req: HttpRequest,
    kind: std::marker::PhantomData<S>,
}

impl<S: OpensScope + 'static> FromRequest for Unopened<S> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let viewer = require_viewer(&req).await?;
            S::admit(&viewer)?;
            Ok(Unopened { viewer, req, kind: std::marker::PhantomData })
        })
    }
}

impl<S: OpensScope> Unopened<S> {
    /// The scope the extractor `S` would have given.
    pub async fn open(self) -> Result<S, AppError> {
        S::open(&self.req, self.viewer).await
    }
}

/// A signed-in customer user and a scope limited to their customer.
pub struct CustomerScope {
    pub viewer: Viewer,
    pub customer: CustomerRef,
    pub db: Scope,
    pub flash: Option<Flash>,
}

impl OpensScope for CustomerScope {
    fn admit(viewer: &Viewer) -> Result<(), AppError> {
        match viewer.customer {
            Some(_) => Ok(()),
            // Staff have their own side of the portal.
            None => Err(AppError::Redirect("/staff".into())),
        }
    }

    async fn open(req: &HttpRequest, viewer: Viewer) -> Result<Self, AppError> {
        let customer = viewer.customer.clone().ok_or_else(|| AppError::Redirect("/staff".into()))?;
        let state = state(req)?;
        let db = state.db.customer_scope(customer.id, viewer.user_id).await?;
        let flash = state.cookies.read_flash(req);
        Ok(CustomerScope { viewer, customer, db, flash })
    }
}

impl FromRequest for CustomerScope {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        scope_extractor(req)
    }
}

/// A signed-in staff user and a staff scope. Customers are refused.
pub struct StaffScope {
    pub viewer: Viewer,
    pub db: Scope,
    pub flash: Option<Flash>,
}

impl OpensScope for StaffScope {
    fn admit(viewer: &Viewer) -> Result<(), AppError> {
        if !viewer.is_staff() {
            return Err(AppError::Forbidden);
        }
        // Staff must sign in with passkeys and this one has none yet: adding one comes first.
        if viewer.needs_passkey {
            return Err(AppError::Redirect(super::shell::PASSKEYS_PAGE.into()));
        }
        Ok(())
    }

    async fn open(req: &HttpRequest, viewer: Viewer) -> Result<Self, AppError> {
        let state = state(req)?;
        let db = state.db.staff_scope(Some(viewer.user_id)).await?;
        let flash = state.cookies.read_flash(req);
        Ok(StaffScope { viewer, db, flash })
    }
}

impl FromRequest for StaffScope {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        scope_extractor(req)
    }
}

/// A signed-in user of either side and a scope for their own account (their
/// customer's scope, or the staff scope): the pages about the account itself,
/// which staff and customers share.
pub struct AccountScope {
    pub viewer: Viewer,
    pub db: Scope,
    pub flash: Option<Flash>,
}

impl OpensScope for AccountScope {
    fn admit(_: &Viewer) -> Result<(), AppError> {
        Ok(())
    }

    async fn open(req: &HttpRequest, viewer: Viewer) -> Result<Self, AppError> {
        let state = state(req)?;
        let db = own_scope(&state, &viewer).await?;
        let flash = state.cookies.read_flash(req);
        Ok(AccountScope { viewer, db, flash })
    }
}

/// The scope of the viewer's own side: their customer's, or the staff scope.
async fn own_scope(state: &AppState, viewer: &Viewer) -> Result<Scope, AppError> {
    Ok(match &viewer.customer {
        Some(customer) => state.db.customer_scope(customer.id, viewer.user_id).await?,
        None => state.db.staff_scope(Some(viewer.user_id)).await?,
    })
}

impl FromRequest for AccountScope {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        scope_extractor(req)
    }
}

/// A signed-in user of either side who is sending a file, with no transaction
/// open yet: an upload can take minutes and must not hold a pooled connection
/// and an open transaction meanwhile. `open` then gives exactly the scope
/// `CustomerScope` or `StaffScope` would have.
pub struct Uploader {
    pub viewer: Viewer,
    state: web::Data<AppState>,
}

impl FromRequest for Uploader {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let viewer = require_viewer(&req).await?;
            if viewer.is_staff() && viewer.needs_passkey {
                return Err(AppError::Redirect(super::shell::PASSKEYS_PAGE.into()));
            }
            Ok(Uploader { viewer, state: state(&req)? })
        })
    }
}

impl Uploader {
    /// The scope, once the session is seen to be still alive: a user signed out or
    /// disabled while the file was on its way records nothing.
    pub async fn open(&self) -> Result<Scope, AppError> {
        let scope = own_scope(&self.state, &self.viewer).await?;
        let alive = scope
            .query_opt(
                "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND expires_at > now()",
                &[&self.viewer.session_id, &self.viewer.user_id],
            )
            .await?;
        match alive {
            Some(_) => Ok(scope),
            None => Err(AppError::SignInRequired { next: "/".into() }),
        }
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf_token: String,
}

/// An urlencoded form whose `csrf_token` matched the session's (or, before
/// sign-in, the `portal_csrf` cookie's). Anything else is refused with 403
/// before the handler runs.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let body = body.await.map_err(|_| AppError::BadRequest("the form could not be read".into()))?;
            let sent = serde_urlencoded::from_bytes::<CsrfField>(&body).ok().map(|f| f.csrf_token);
            check_csrf(&req, sent).await?;
            serde_urlencoded::from_bytes::<T>(&body)
                .map(CsrfForm)
                .map_err(|e| AppError::BadRequest(format!("the form was incomplete: {e}")))
        })
    }
}

/// A JSON body (the passkey ceremonies' `fetch` calls) whose `csrf_token` field
/// matched, exactly as for [`CsrfForm`].
pub struct CsrfJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfJson<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let body = body.await.map_err(|_| AppError::BadRequest("the request could not be read".into()))?;
            let sent = serde_json::from_slice::<CsrfField>(&body).ok().map(|f| f.csrf_token);
            check_csrf(&req, sent).await?;
            serde_json::from_slice::<T>(&body)
                .map(CsrfJson)
                .map_err(|e| AppError::BadRequest(format!("the request was incomplete: {e}")))
        })
    }
}

/// The token a request sent against the session's (or, before sign-in, the `portal_csrf` cookie's).
pub(crate) async fn check_csrf(req: &HttpRequest, sent: Option<String>) -> Result<(), AppError> {
    let expected = match current_viewer(req).await? {
        Some(viewer) => Some(viewer.csrf_token),
        None => state(req)?.cookies.anonymous_csrf_token(req),
    };
    match (expected, sent) {
        (Some(expected), Some(sent)) if tokens_match(&expected, &sent) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}

fn tokens_match(expected: &str, sent: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(sent.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(super::tokens_match("abc", "abc"));
        assert!(!super::tokens_match("abc", "abd"));
        assert!(!super::tokens_match("abc", "ab"));
        assert!(!super::tokens_match("", ""));
    }
}
