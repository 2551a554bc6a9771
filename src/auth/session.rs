//! Server-side sessions. The cookie carries 256 random bits; PostgreSQL keeps
//! only their SHA-256, so a leaked database dump signs nobody in.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AuthError, CustomerRef, Role, normalize_email, password, throttle};
use crate::db::{Db, Door, NewSession};

/// The signed-in user behind a request.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub customer: Option<CustomerRef>,
    pub csrf_token: String,
    /// When this session last proved its user (sign-in or confirmation).
    pub verified_at: time::OffsetDateTime,
    /// A staff member who must add a passkey before anything else.
    pub needs_passkey: bool,
}

impl Viewer {
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }

    /// Up to two initials for the avatar.
    pub fn initials(&self) -> String {
        self.name.split_whitespace().filter_map(|w| w.chars().next()).take(2).flat_map(char::to_uppercase).collect()
    }
}

/// A fresh random token, URL-safe, 43 characters.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// How long a new session lives.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle: Duration,
    pub absolute: Duration,
    pub remember: Duration,
}

/// What a successful sign-in hands back: the cookie value and where the user belongs.
pub struct SignIn {
    pub token: String,
    pub remember: bool,
    pub is_staff: bool,
}

pub struct Attempt<'a> {
    pub email: &'a str,
    pub password: SecretString,
    pub remember: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: &'a str,
}

/// The account `email` names, when `password` is its password and it may sign
/// in; `None` for an unknown email, a wrong password or a disabled account,
/// after the same work. Every call is a sign-in attempt for brute-force
/// protection (re-entering the password in Settings too), so a stolen session
/// cannot be used to guess the password faster than the sign-in page allows.
/// Call it before opening a scope: it takes a connection of its own, and none
/// is held while Argon2 runs.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn check_credentials(
    db: &Db,
    email: &str,
    password: SecretString,
    ip: Option<IpAddr>,
) -> Result<Option<(Uuid, Option<Role>)>, AuthError> {
    let email = normalize_email(email);
    let account = {
        let door = db.door().await?;
        // Before any hashing: a locked attempt costs one query, and an allowed one is counted now.
        if let Err(throttled) = throttle::begin_sign_in(&door, &email, ip).await? {
            return Err(AuthError::Throttled(throttled));
        }
        door.login_lookup(&email).await?
    };
    let stored: Option<String> = match &account {
        Some(row) => row.try_get("password_hash")?,
        None => None,
    };
    let matches = match password::verify(password, stored).await {
        Ok(matches) => matches,
        Err(e) => {
            // The password was never checked (the server is flooded): the attempt is given back.
            let released = match db.door().await {
                Ok(door) => throttle::release_sign_in(&door, &email, ip, false).await,
                Err(db_error) => Err(db_error.into()),
            };
            if let Err(release) = released {
                tracing::warn!(error = %release, "could not give back an unchecked sign-in attempt");
            }
            return Err(e.into());
        }
    };
    let account = match account {
        Some(row) if matches && row.try_get::<_, bool>("usable")? => Some(row),
        _ => None,
    };

    let door = db.door().await?;
    let Some(row) = account else {
        door.sign_in_failed(&email, ip).await?;
        return Ok(None);
    };
    // The right password: the account's failures are forgotten (the network's are not).
    throttle::release_sign_in(&door, &email, ip, true).await?;
    Ok(Some((row.try_get("user_id")?, Role::parse(row.try_get("role")?))))
}

/// Checks the credentials and opens a new session (`None` when they do not match).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sign_in(db: &Db, attempt: Attempt<'_>, lifetimes: Lifetimes) -> Result<Option<SignIn>, AuthError> {
    let Some((user_id, role)) = check_credentials(db, attempt.email, attempt.password, attempt.ip).await? else {
        return Ok(None);
    };
    let door = db.door().await?;
    let signed_in =
        open(&door, user_id, attempt.remember, lifetimes, attempt.ip, attempt.user_agent, "password").await?;
    Ok(Some(SignIn { is_staff: role.is_some_and(Role::is_staff), ..signed_in }))
}

pub(crate) fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Opens a session for a user whose identity was just proven, through `door`
/// (inside its transaction when one is open, so the proof and the session commit together).
pub(crate) async fn open(
    door: &Door,
    user_id: Uuid,
    remember: bool,
    lifetimes: Lifetimes,
    ip: Option<IpAddr>,
    user_agent: &str,
    method: &'static str,
) -> Result<SignIn, AuthError> {
    let (idle, absolute) =
        if remember { (lifetimes.remember, lifetimes.remember) } else { (lifetimes.idle, lifetimes.absolute) };
    let token = random_token();
    let hash = token_hash(&token);
    door.session_create(&NewSession {
        user_id,
        token_hash: &hash,
        csrf_token: &random_token(),
        remember,
        idle_seconds: seconds(idle),
        absolute_seconds: seconds(absolute),
        ip,
        user_agent,
        method,
    })
    .await?;
    Ok(SignIn { token, remember, is_staff: false })
}

/// The viewer a session token belongs to, if the session is alive.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn resolve(db: &Db, token: &str) -> Result<Option<Viewer>, AuthError> {
    // Tokens we issue are 43 characters; anything else cannot match, so skip the query.
    if token.len() != 43 {
        return Ok(None);
    }
    let Some(row) = db.door().await?.session_resolve(&token_hash(token)).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(row.try_get("role")?) else {
        return Ok(None);
    };
    let customer = match row.try_get::<_, Option<Uuid>>("customer_id")? {
        Some(id) => match row.try_get::<_, Option<String>>("customer_name")? {
            Some(name) => Some(CustomerRef { id, name }),
            None => return Ok(None),
        },
        None => None,
    };
    Ok(Some(Viewer {
        session_id: row.try_get("session_id")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role,
        customer,
        csrf_token: row.try_get("csrf_token")?,
        verified_at: row.try_get("verified_at")?,
        needs_passkey: row.try_get("needs_passkey")?,
    }))
}

/// Ends the session server-side: the token is dead even if the cookie survives.
pub async fn sign_out(db: &Db, token: &str, ip: Option<IpAddr>) -> Result<(), AuthError> {
    db.door().await?.session_end(&token_hash(token), ip).await?;
    Ok(())
}

/// Deletes expired sessions; returns how many.
pub async fn sweep(db: &Db) -> Result<i32, AuthError> {
    Ok(db.door().await?.sessions_sweep().await?)
}

/// Opens a session for a user whose identity another step has just proven (an
/// accepted invitation, a finished registration), inside that step's
/// transaction on `door`, so the account and its first session commit together.
/// These flows only ever make customer users.
pub async fn open_for(
    door: &Door,
    user_id: Uuid,
    lifetimes: Lifetimes,
    ip: Option<IpAddr>,
    user_agent: &str,
) -> Result<SignIn, AuthError> {
    open(door, user_id, false, lifetimes, ip, user_agent, "password").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert_eq!(token_hash(&a).len(), 32);
    }
}
