//! Brute-force protection and rate limits, counted in PostgreSQL
//! (`migrations/V4__throttle.sql`) so every process of the portal sees the
//! same attempts.
//!
//! * Sign-in: [`begin_sign_in`] runs before any password is hashed. It refuses
//!   while the account (its normalized email, whether or not it exists) or the
//!   client's network is locked, and otherwise counts the attempt as a failure
//!   until [`release_sign_in`] gives it back. 5 failures lock an account, 30 a
//!   network; each further failure doubles the wait (1 s, 2 s, 4 s ... at most
//!   15 minutes) counted from the last failure. Refused attempts count nothing.
//! * Endpoints that send email: [`spend`] one unit of a [`Limit`]'s budget.
//!
//! Either way a refusal is a [`Throttled`], which the web layer answers with
//! 429 and `Retry-After`.

use std::net::IpAddr;
use std::time::Duration;

use super::{AuthError, normalize_email};
use crate::db::{Db, Door};

/// Refused for now: the same request may succeed after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// The `Retry-After` value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.retry_after)
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// How long to wait, for people: "about 40 seconds", "about 1 minute".
pub fn wait_phrase(wait: Duration) -> String {
    let secs = retry_after_secs(wait);
    let (n, unit) = if secs < 60 { (secs, "second") } else { (secs.div_ceil(60), "minute") };
    format!("about {n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The budgets of the endpoints that send email. Each is a sliding window: at
/// most `count` spends in any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// "Forgot password", per address.
    PasswordResetEmail,
    /// "Forgot password", per client network ([`ip_key`]).
    PasswordResetIp,
    /// Invitations, per inviting user.
    InvitationSender,
    /// Invitations, per invited address.
    InvitationAddress,
    /// Self-registration, per client network ([`ip_key`]).
    RegistrationIp,
    /// Self-registration, per address.
    RegistrationAddress,
    /// Email-change confirmations, per user.
    EmailChange,
    /// Passkey sign-in ceremonies begun, per client network ([`ip_key`]).
    PasskeyCeremonyIp,
    /// Failed API bearer tokens, per client network ([`ip_key`]).
    ApiTokenIp,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Limit {
    /// How many spends per window.
    pub fn budget(self) -> (u32, Duration) {
        match self {
            Limit::PasswordResetEmail => (3, HOUR),
            Limit::PasswordResetIp => (20, HOUR),
            Limit::InvitationSender => (50, HOUR),
            Limit::InvitationAddress => (3, HOUR),
            Limit::RegistrationIp => (10, HOUR),
            Limit::RegistrationAddress => (3, HOUR),
            Limit::EmailChange => (5, HOUR),
            Limit::PasskeyCeremonyIp => (600, HOUR),
            Limit::ApiTokenIp => (60, Duration::from_secs(600)),
        }
    }

    /// The bucket's name in `rate_limits`.
    pub(crate) fn bucket(self) -> &'static str {
        match self {
            Limit::PasswordResetEmail => "password_reset_email",
            Limit::PasswordResetIp => "password_reset_ip",
            Limit::InvitationSender => "invitation_sender",
            Limit::InvitationAddress => "invitation_address",
            Limit::RegistrationIp => "registration_ip",
            Limit::RegistrationAddress => "registration_address",
            Limit::EmailChange => "email_change",
            Limit::PasskeyCeremonyIp => "passkey_ceremony_ip",
            Limit::ApiTokenIp => "api_token_ip",
        }
    }
}

/// Spends one unit of `limit`'s budget for `key` (an address, a user id, an
/// [`ip_key`]; trimmed and lower-cased here, so `Bob@X` and `bob@x` are one key).
/// `Ok(Err(Throttled))` when the budget is used up: nothing was spent, and
/// `retry_after` says when a unit comes free. `Err` only for database failures.
/// Atomic across processes: concurrent spends never exceed the budget.
pub async fn spend(db: &Db, limit: Limit, key: &str) -> Result<Result<(), Throttled>, AuthError> {
    let (count, window) = limit.budget();
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let window_secs = i32::try_from(window.as_secs()).unwrap_or(i32::MAX);
    let wait_ms = db.door().await?.rate_limit_spend(limit.bucket(), &normalize_email(key), count, window_secs).await?;
    Ok(spent(limit, wait_ms))
}

/// What `portal_rate_limit_spend` answered: spent (0 or less), or the milliseconds until a unit comes free.
pub(crate) fn spent(limit: Limit, wait_ms: i64) -> Result<(), Throttled> {
    if wait_ms <= 0 {
        return Ok(());
    }
    let retry_after = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
    // The key may be an address: it stays out of the log.
    tracing::info!(limit = limit.bucket(), retry_after_secs = retry_after_secs(retry_after), "rate limit reached");
    Err(Throttled { retry_after })
}

/// The network a client counts against: the IPv4 address (also when it arrives
/// IPv4-mapped), the IPv6 /64, or `unknown`. Agrees with SQL's `portal_ip_key`.
pub fn ip_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let network = std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1));
            format!("{network}/64")
        }
    }
}

/// Before a sign-in checks any password: `Ok(Err(Throttled))` while the account
/// or the client's network is locked (nothing counted), otherwise the attempt is
/// counted as a failure until [`release_sign_in`] gives it back. `email` is normalized.
pub(crate) async fn begin_sign_in(
    door: &Door,
    email: &str,
    ip: Option<IpAddr>,
) -> Result<Result<(), Throttled>, AuthError> {
    let wait = door.sign_in_begin(email, ip.map(|ip| ip.to_canonical())).await?;
    if wait <= 0 {
        return Ok(Ok(()));
    }
    let retry_after = Duration::from_secs(u64::try_from(wait).unwrap_or(1));
    tracing::info!(retry_after_secs = wait, "sign-in refused while locked");
    Ok(Err(Throttled { retry_after }))
}

/// Gives back an attempt [`begin_sign_in`] counted: the password was right
/// (`reset`: the account's counter starts over; the network's keeps its other
/// failures), or it was never checked.
pub(crate) async fn release_sign_in(
    door: &Door,
    email: &str,
    ip: Option<IpAddr>,
    reset: bool,
) -> Result<(), AuthError> {
    door.sign_in_release(email, ip.map(|ip| ip.to_canonical()), reset).await?;
    Ok(())
}

/// Deletes sign-in counters quiet for a day and rate-limit windows that have passed; returns how many.
pub async fn sweep(db: &Db) -> Result<i32, AuthError> {
    Ok(db.door().await?.throttle_sweep().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_count_by_address_or_ipv6_network() {
        assert_eq!(ip_key(None), "unknown");
        assert_eq!(ip_key(Some("203.0.113.7".parse().unwrap())), "203.0.113.7");
        assert_eq!(ip_key(Some("::ffff:203.0.113.7".parse().unwrap())), "203.0.113.7");
        let a = ip_key(Some("2001:db8:aa:bb:1:2:3:4".parse().unwrap()));
        assert_eq!(a, "2001:db8:aa:bb::/64");
        assert_eq!(a, ip_key(Some("2001:db8:aa:bb:ffff::9".parse().unwrap())), "one /64, one key");
        assert_ne!(a, ip_key(Some("2001:db8:aa:bc::1".parse().unwrap())));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(900)), 900);
        assert_eq!(wait_phrase(Duration::from_millis(300)), "about 1 second");
        assert_eq!(wait_phrase(Duration::from_secs(59)), "about 59 seconds");
        assert_eq!(wait_phrase(Duration::from_secs(60)), "about 1 minute");
        assert_eq!(wait_phrase(Duration::from_secs(61)), "about 2 minutes");
        assert_eq!(wait_phrase(Duration::from_secs(900)), "about 15 minutes");
    }

    #[test]
    fn budgets_are_small_and_buckets_distinct() {
        let all = [
            Limit::PasswordResetEmail,
            Limit::PasswordResetIp,
            Limit::InvitationSender,
            Limit::InvitationAddress,
            Limit::RegistrationIp,
            Limit::RegistrationAddress,
            Limit::EmailChange,
        ];
        let mut buckets: Vec<_> = all.iter().map(|l| l.bucket()).collect();
        buckets.sort_unstable();
        buckets.dedup();
        assert_eq!(buckets.len(), all.len());
        for limit in all {
            let (count, window) = limit.budget();
            assert!((1..=50).contains(&count) && window <= HOUR, "{limit:?}");
            assert!(limit.bucket().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(Limit::PasswordResetEmail.budget(), (3, HOUR));
        assert!(!buckets.contains(&Limit::ApiTokenIp.bucket()));
        assert_eq!(Limit::ApiTokenIp.budget(), (60, Duration::from_secs(600)));
    }
}
