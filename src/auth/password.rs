//! Password hashing with Argon2id at OWASP's recommended cost, always on the
//! blocking pool (one hash is ~20 ms of CPU that must not stall a worker), and
//! never more at once than the machine has cores but one.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password worker stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Every hashing slot stayed busy for too long: the server is flooded with sign-ins.
    #[error("too many password checks at once")]
    Busy,
}

/// Limits how many Argon2 computations run at once. Each takes 19 MiB and a
/// core for ~20 ms; without a cap, a flood of sign-in posts would start one
/// blocking thread each and exhaust memory. Excess callers queue, and give up
/// with `Busy` (429) after `wait`.
pub struct HashSlots {
    slots: Semaphore,
    wait: Duration,
}

impl HashSlots {
    pub fn new(slots: usize, wait: Duration) -> Self {
        HashSlots { slots: Semaphore::new(slots), wait }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let _slot = match tokio::time::timeout(self.wait, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(PasswordError::Busy),
        };
        let span = tracing::Span::current();
        Ok(tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            work()
        })
        .await?)
    }
}

/// One slot per core but one, for the whole process: a rush of sign-ins then
/// leaves a core to the pages of everyone already signed in. Measured on 2
/// cores (`portal-loadtest signin`): with a slot per core, `/orders` p99 rose to
/// 3-4x its idle value during sustained sign-ins, for 40-47 sign-ins/s.
static SLOTS: LazyLock<HashSlots> = LazyLock::new(|| HashSlots::new(slots_for(cores()), Duration::from_secs(5)));

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn slots_for(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1.
fn hasher() -> Argon2<'static> {
    match Params::new(19 * 1024, 2, 1, None) {
        Ok(params) => Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        // The constants above are valid; this arm only satisfies the type.
        Err(_) => Argon2::default(),
    }
}

/// Verified when an account does not exist, so an unknown email costs the
/// same time as a wrong password and cannot be told apart by timing.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    hasher().hash_password(b"no account has this password", &salt).map(|h| h.to_string()).unwrap_or_default()
});

pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    SLOTS
        .run(move || {
            let salt = SaltString::generate(&mut OsRng);
            hasher()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await?
}

/// Checks `password` against `stored`; with no stored hash (unknown account,
/// or an account without a password) it does the same work and says no.
pub async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, PasswordError> {
    SLOTS.run(move || check(&password, stored)).await
}

fn check(password: &SecretString, stored: Option<String>) -> bool {
    let (phc, real) = match stored {
        Some(hash) => (hash, true),
        None => (DUMMY_HASH.clone(), false),
    };
    let ok = match PasswordHash::new(&phc) {
        Ok(parsed) => hasher().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "stored password hash is malformed");
            false
        }
    };
    ok && real
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashing_leaves_a_core_to_the_pages_but_always_has_a_slot() {
        assert_eq!(slots_for(1), 1);
        assert_eq!(slots_for(2), 1);
        assert_eq!(slots_for(8), 7);
    }

    #[tokio::test]
    async fn hashes_verify_and_reject() {
        let stored = hash(SecretString::from("correct horse battery staple")).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(SecretString::from("correct horse battery staple"), Some(stored.clone())).await.unwrap());
        assert!(!verify(SecretString::from("correct horse battery stapl"), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn a_flood_waits_for_a_slot_then_gives_up() {
        let slots = HashSlots::new(1, Duration::from_millis(50));
        let held = slots.slots.acquire().await.unwrap();
        assert!(matches!(slots.run(|| 1).await, Err(PasswordError::Busy)));
        drop(held);
        assert_eq!(slots.run(|| 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        assert!(!verify(SecretString::from("no account has this password"), None).await.unwrap());
    }

    #[tokio::test]
    async fn long_unicode_passwords_are_not_truncated() {
        let long = "pässwörd-🔑-".repeat(20);
        let stored = hash(SecretString::from(long.clone())).await.unwrap();
        assert!(verify(SecretString::from(long.clone()), Some(stored.clone())).await.unwrap());
        let mut shorter = long;
        shorter.pop();
        assert!(!verify(SecretString::from(shorter), Some(stored)).await.unwrap());
    }
}
