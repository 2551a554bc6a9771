//! Passkeys: the WebAuthn relying party, the ceremony store, and the check
//! behind signing in with a passkey (the pages and endpoints are `signin::passkey`
//! and `accounts::passkeys`).
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

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PublicKeyCredential, RequestChallengeResponse, Url, Webauthn, WebauthnBuilder,
    WebauthnError,
};

use super::session::{self, Lifetimes, SignIn, random_token};
use super::{AuthError, Role};
use crate::db::{Db, Scope};

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

fn to_json<S: Serialize>(state: &S) -> Result<serde_json::Value, AuthError> {
    serde_json::to_value(state).map_err(|e| AuthError::Ceremony(e.to_string()))
}

/// Stores the state of a ceremony the session began; returns the browser's token.
pub async fn put_for_session<S: Serialize>(
    db: &Scope,
    purpose: Purpose,
    session: Uuid,
    state: &S,
) -> Result<String, AuthError> {
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
) -> Result<Option<S>, AuthError> {
    let row =
        db.query_one("SELECT portal_ceremony_take($1, $2, $3)", &[&token, &purpose.as_str(), &Some(session)]).await?;
    Ok(row.try_get::<_, Option<serde_json::Value>>(0)?.and_then(|v| serde_json::from_value(v).ok()))
}

/// Starts a discoverable sign-in (no account named yet): its state waits in the
/// database under a new token, which the browser returns with its answer.
pub async fn start_sign_in(db: &Db, webauthn: &Webauthn) -> Result<Started<RequestChallengeResponse>, AuthError> {
    let (options, ceremony): (RequestChallengeResponse, DiscoverableAuthentication) =
        webauthn.start_discoverable_authentication().map_err(webauthn_failed)?;
    let token = random_token();
    db.door().await?.ceremony_put(&token, Purpose::SignIn.as_str(), None, &to_json(&ceremony)?, ttl_seconds()).await?;
    Ok(Started { ceremony: token, options })
}

/// The JSON a browser needs to start a ceremony.
#[derive(Serialize)]
pub struct Started<T: Serialize> {
    pub ceremony: String,
    pub options: T,
}

/// What the browser answers a sign-in ceremony with.
pub struct SignInAnswer {
    pub ceremony: String,
    pub credential: PublicKeyCredential,
    pub remember: bool,
}

/// A stored passkey, as webauthn-rs keeps it.
pub fn parse(credential: serde_json::Value) -> Option<Passkey> {
    serde_json::from_value(credential).ok()
}

/// A webauthn-rs failure where none should happen (starting a ceremony).
pub fn webauthn_failed(e: WebauthnError) -> AuthError {
    tracing::error!(error = %e, "webauthn");
    AuthError::Ceremony(format!("passkeys are unavailable: {e}"))
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

/// Checks a discoverable sign-in: the ceremony is taken (once), the key must be its
/// owner's and its assertion valid; then the key's counter and a new session commit together.
pub async fn finish_sign_in(
    db: &Db,
    webauthn: &Webauthn,
    answer: &SignInAnswer,
    request: SessionRequest<'_>,
) -> Result<Result<SignIn, Refusal>, AuthError> {
    let mut door = db.door().await?;
    let taken = door.ceremony_take(&answer.ceremony, Purpose::SignIn.as_str(), None).await?;
    let Some(ceremony) = taken.and_then(|v| serde_json::from_value::<DiscoverableAuthentication>(v).ok()) else {
        return Ok(Err(Refusal::Expired));
    };
    let Ok((user_handle, credential_id)) = webauthn.identify_discoverable_authentication(&answer.credential) else {
        return Ok(Err(Refusal::Unknown));
    };
    let Some(row) = door.passkey_lookup(credential_id).await? else {
        return Ok(Err(Refusal::Unknown));
    };
    let passkey_id: Uuid = row.try_get("passkey_id")?;
    let user_id: Uuid = row.try_get("user_id")?;
    // The authenticator says whose key it is; it must be the account the key was registered to.
    if user_id != user_handle {
        return Ok(Err(Refusal::Unknown));
    }
    let Some(mut passkey) = parse(row.try_get("credential")?) else {
        tracing::error!(%passkey_id, "stored passkey does not parse");
        return Ok(Err(Refusal::Invalid));
    };
    let result = match webauthn.finish_discoverable_authentication_v2(&answer.credential, ceremony, &passkey) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(%passkey_id, %user_id, "passkey signature counter went backwards: possible clone");
            door.passkey_clone_suspected(passkey_id, request.ip).await?;
            return Ok(Err(Refusal::Cloned));
        }
        Err(e) => {
            tracing::info!(%passkey_id, error = %e, "passkey assertion refused");
            return Ok(Err(Refusal::Invalid));
        }
    };
    if !row.try_get::<_, bool>("usable")? {
        return Ok(Err(Refusal::Unusable));
    }
    let updated = after_use(&mut passkey, &result)?;
    door.begin().await?;
    door.passkey_used(passkey_id, &updated).await?;
    let signed_in =
        session::open(&door, user_id, answer.remember, request.lifetimes, request.ip, request.user_agent, "passkey")
            .await?;
    door.commit().await?;
    let is_staff = Role::parse(row.try_get("role")?).is_some_and(Role::is_staff);
    Ok(Ok(SignIn { is_staff, ..signed_in }))
}

/// The key's new stored form after a successful use (counter, backup flags), or `None` when nothing changed.
pub fn after_use(
    passkey: &mut Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<Option<serde_json::Value>, AuthError> {
    match passkey.update_credential(result) {
        Some(true) => Ok(Some(to_json(passkey)?)),
        _ => Ok(None),
    }
}

/// Deletes ceremonies nobody finished; returns how many.
pub async fn sweep(db: &Db) -> Result<i32, AuthError> {
    Ok(db.door().await?.ceremonies_sweep().await?)
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
