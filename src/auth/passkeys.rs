//! Passkeys: the WebAuthn relying party, the ceremony store, and signing in
//! with a passkey.
//!
//! A ceremony has two requests: *start* sends the browser a challenge, *finish*
//! checks what the authenticator signed. Between them the challenge state is a
//! row in PostgreSQL keyed by the SHA-256 of a random token the browser holds,
//! taken with `DELETE ... RETURNING`: any process can finish a ceremony another
//! began, and no ceremony finishes twice. Registration and confirmation
//! ceremonies also belong to the session that began them.
//!
//! The relying party's id and origin come from the portal's public origin, so
//! an assertion made for any other site (or scheme, or port) is refused.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PublicKeyCredential, RequestChallengeResponse, Url, Webauthn, WebauthnBuilder,
    WebauthnError,
};

use super::forms::client_ip;
use super::redirect::safe_next;
use super::session::{self, Lifetimes, SignIn, random_token, token_hash};
use super::throttle::{self, Limit};
use super::{AuthError, Role};
use crate::db::{Db, Scope};
use crate::web::extract::CsrfJson;
use crate::web::{AppError, AppState};

/// How long a browser has to finish a ceremony (the authenticator's own prompt included).
pub const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);

/// The relying party: this portal, as its public origin names it.
pub struct Passkeys {
    webauthn: Webauthn,
}

impl Passkeys {
    /// `None` (with the reason) when the origin cannot be a relying party: browsers
    /// only accept a domain name as its id, never an IP address.
    pub fn for_origin(origin: &str) -> Result<Self, String> {
        let url = Url::parse(origin).map_err(|e| format!("{origin} is not a URL: {e}"))?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Err(format!(
                "passkeys need the portal to be reached by a domain name, not {origin}: set PORTAL_PUBLIC_URL"
            ));
        };
        let host = host.to_owned();
        let webauthn = WebauthnBuilder::new(&host, &url)
            .and_then(|b| b.rp_name("Portal").timeout(CEREMONY_TTL).build())
            .map_err(|e| format!("passkeys cannot use {origin}: {e}"))?;
        Ok(Passkeys { webauthn })
    }

    pub fn webauthn(&self) -> &Webauthn {
        &self.webauthn
    }
}

/// What a ceremony is for; a token of one kind never finishes another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Register,
    SignIn,
    Confirm,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::SignIn => "sign_in",
            Purpose::Confirm => "confirm",
        }
    }
}

fn ttl_seconds() -> i32 {
    i32::try_from(CEREMONY_TTL.as_secs()).unwrap_or(300)
}

fn to_json<S: Serialize>(state: &S) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(state).map_err(|e| AppError::BadRequest(format!("ceremony state: {e}")))
}

/// Stores the state of a ceremony the session began; returns the browser's token.
pub async fn put_for_session<S: Serialize>(
    db: &Scope,
    purpose: Purpose,
    session: Uuid,
    state: &S,
) -> Result<String, AppError> {
    let token = random_token();
    db.execute(
        "SELECT portal_ceremony_put($1, $2, $3, $4, $5)",
        &[&token, &purpose.as_str(), &Some(session), &to_json(state)?, &ttl_seconds()],
    )
    .await?;
    Ok(token)
}

/// Takes (once) the state of a ceremony this session began.
pub async fn take_for_session<S: DeserializeOwned>(
    db: &Scope,
    purpose: Purpose,
    session: Uuid,
    token: &str,
) -> Result<Option<S>, AppError> {
    let row =
        db.query_one("SELECT portal_ceremony_take($1, $2, $3)", &[&token, &purpose.as_str(), &Some(session)]).await?;
    Ok(row.get::<_, Option<serde_json::Value>>(0).and_then(|v| serde_json::from_value(v).ok()))
}

/// The JSON a browser needs to start a ceremony.
#[derive(Serialize)]
pub struct Started<T: Serialize> {
    pub ceremony: String,
    pub options: T,
}

/// A refusal the page shows as it is (the browser's script puts it next to the button).
pub fn refuse(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// Where the page goes once a ceremony has finished.
pub fn go(to: &str) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "redirect": to }))
}

pub const EXPIRED: &str = "That took too long, or the page was used twice. Try again.";
pub const NOT_ACCEPTED: &str = "That passkey was not accepted. Try again, or use another way to sign in.";

/// A stored passkey, as webauthn-rs keeps it.
pub fn parse(credential: serde_json::Value) -> Option<Passkey> {
    serde_json::from_value(credential).ok()
}

pub fn passkeys_for(state: &AppState) -> Result<&Passkeys, AppError> {
    state.passkeys.as_ref().ok_or(AppError::NotFound)
}

// Signing in ---------------------------------------------------------------------

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login/passkey/start", web::post().to(sign_in_start))
        .route("/login/passkey/finish", web::post().to(sign_in_finish));
}

#[derive(Deserialize)]
pub struct Nothing {}

async fn sign_in_start(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfJson(_): CsrfJson<Nothing>,
) -> Result<HttpResponse, AppError> {
    let passkeys = passkeys_for(&state)?;
    // Every visit to the sign-in page starts one (for autofill): generous, but bounded.
    if let Err(throttled) =
        throttle::spend(&state.db, Limit::PasskeyCeremonyIp, &throttle::ip_key(client_ip(&req))).await?
    {
        return Err(AppError::Throttled(throttled.retry_after));
    }
    let (options, ceremony): (RequestChallengeResponse, DiscoverableAuthentication) =
        passkeys.webauthn.start_discoverable_authentication().map_err(webauthn_failed)?;
    let token = random_token();
    let conn = state.db.unscoped().await?;
    conn.execute(
        "SELECT portal_ceremony_put($1, 'sign_in', NULL, $2, $3)",
        &[&token, &to_json(&ceremony)?, &ttl_seconds()],
    )
    .await?;
    Ok(HttpResponse::Ok().json(Started { ceremony: token, options }))
}

#[derive(Deserialize)]
pub struct SignInFinish {
    ceremony: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    remember: bool,
    #[serde(default)]
    next: Option<String>,
}

async fn sign_in_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    CsrfJson(form): CsrfJson<SignInFinish>,
) -> Result<HttpResponse, AppError> {
    let passkeys = passkeys_for(&state)?;
    let ip = client_ip(&req);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let outcome = finish_sign_in(
        &state.db,
        passkeys.webauthn(),
        &form,
        SessionRequest { lifetimes: state.lifetimes, ip, user_agent },
    )
    .await?;
    let signed_in = match outcome {
        Ok(signed_in) => signed_in,
        Err(refusal) => return Ok(refuse(refusal.status(), refusal.message())),
    };
    // As with a password: a session that came with the request ends here.
    if let Some(old) = state.cookies.session_token(&req) {
        session::sign_out(&state.db, &old, ip).await?;
    }
    let to = super::pages::home_for(signed_in.is_staff, form.next.as_deref().and_then(safe_next));
    let max_age = signed_in.remember.then_some(state.lifetimes.remember);
    let mut response = go(&to);
    response
        .add_cookie(&state.cookies.session(signed_in.token, max_age))
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(response)
}

pub struct SessionRequest<'a> {
    pub lifetimes: Lifetimes,
    pub ip: Option<IpAddr>,
    pub user_agent: &'a str,
}

/// Why a passkey sign-in was refused. All but `Expired` read the same to the user.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Unknown,
    Invalid,
    Cloned,
    Unusable,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Expired => StatusCode::GONE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Refusal::Expired => EXPIRED,
            _ => NOT_ACCEPTED,
        }
    }
}

async fn finish_sign_in(
    db: &Db,
    webauthn: &Webauthn,
    form: &SignInFinish,
    request: SessionRequest<'_>,
) -> Result<Result<SignIn, Refusal>, AppError> {
    let mut conn = db.unscoped().await?;
    let row = conn.query_one("SELECT portal_ceremony_take($1, 'sign_in', NULL)", &[&form.ceremony]).await?;
    let Some(ceremony) = row
        .get::<_, Option<serde_json::Value>>(0)
        .and_then(|v| serde_json::from_value::<DiscoverableAuthentication>(v).ok())
    else {
        return Ok(Err(Refusal::Expired));
    };
    let Ok((user_handle, credential_id)) = webauthn.identify_discoverable_authentication(&form.credential) else {
        return Ok(Err(Refusal::Unknown));
    };
    let Some(row) = conn
        .query_opt(
            "SELECT passkey_id, user_id, role, credential, usable FROM portal_passkey_lookup($1)",
            &[&credential_id],
        )
        .await?
    else {
        return Ok(Err(Refusal::Unknown));
    };
    let passkey_id: Uuid = row.get("passkey_id");
    let user_id: Uuid = row.get("user_id");
    // The authenticator says whose key it is; it must be the account the key was registered to.
    if user_id != user_handle {
        return Ok(Err(Refusal::Unknown));
    }
    let Some(mut passkey) = parse(row.get("credential")) else {
        tracing::error!(%passkey_id, "stored passkey does not parse");
        return Ok(Err(Refusal::Invalid));
    };
    let result = match webauthn.finish_discoverable_authentication_v2(&form.credential, ceremony, &passkey) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(%passkey_id, %user_id, "passkey signature counter went backwards: possible clone");
            conn.execute("SELECT portal_passkey_clone_suspected($1, $2)", &[&passkey_id, &request.ip]).await?;
            return Ok(Err(Refusal::Cloned));
        }
        Err(e) => {
            tracing::info!(%passkey_id, error = %e, "passkey assertion refused");
            return Ok(Err(Refusal::Invalid));
        }
    };
    if !row.get::<_, bool>("usable") {
        return Ok(Err(Refusal::Unusable));
    }
    let updated = after_use(&mut passkey, &result)?;
    let token = random_token();
    let remember = form.remember;
    let lifetimes = request.lifetimes;
    let (idle, absolute) =
        if remember { (lifetimes.remember, lifetimes.remember) } else { (lifetimes.idle, lifetimes.absolute) };
    let tx = conn.transaction().await.map_err(AuthError::from)?;
    tx.execute("SELECT portal_passkey_used($1, $2)", &[&passkey_id, &updated]).await.map_err(AuthError::from)?;
    tx.query_one(
        "SELECT portal_session_create($1, $2, $3, $4, $5, $6, $7, $8, 'passkey')",
        &[
            &user_id,
            &token_hash(&token),
            &random_token(),
            &remember,
            &session::seconds(idle),
            &session::seconds(absolute),
            &request.ip,
            &request.user_agent,
        ],
    )
    .await
    .map_err(AuthError::from)?;
    tx.commit().await.map_err(AuthError::from)?;
    let is_staff = Role::parse(row.get("role")).is_some_and(Role::is_staff);
    Ok(Ok(SignIn { token, remember, is_staff }))
}

/// The key's new stored form after a successful use (counter, backup flags), or `None` when nothing changed.
pub fn after_use(
    passkey: &mut Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<Option<serde_json::Value>, AppError> {
    match passkey.update_credential(result) {
        Some(true) => Ok(Some(to_json(passkey)?)),
        _ => Ok(None),
    }
}

/// A webauthn-rs failure where none should happen (starting a ceremony).
pub fn webauthn_failed(e: WebauthnError) -> AppError {
    tracing::error!(error = %e, "webauthn");
    AppError::BadRequest(format!("passkeys are unavailable: {e}"))
}

/// Deletes ceremonies nobody finished; returns how many.
pub async fn sweep(db: &Db) -> Result<i32, AuthError> {
    let conn = db.unscoped().await?;
    Ok(conn.query_one("SELECT portal_ceremonies_sweep()", &[]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::Passkeys;

    #[test]
    fn the_relying_party_is_a_domain_name() {
        assert!(Passkeys::for_origin("https://portal.example.com").is_ok());
        assert!(Passkeys::for_origin("http://localhost:8080").is_ok());
        let refused = Passkeys::for_origin("http://127.0.0.1:8080").err().unwrap_or_default();
        assert!(refused.contains("domain name"), "{refused}");
    }
}
