//! What a valid email address, mailbox and SMTP URL are: one answer for the
//! configuration, the mail worker and every form that takes an address.
//!
//! A leaf module (it imports nothing of the portal), so `config` and `mail`
//! can both use it without depending on each other.

use std::str::FromStr;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

/// Normalises an email address for lookup and storage: trimmed, lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An address that is not one, with the sentence to show for it.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an email address")]
pub struct NotAnAddress(pub String);

/// The normalised address, if `email` looks like one a person could receive mail at.
pub fn check_email(email: &str) -> Result<String, NotAnAddress> {
    let email = normalize_email(email);
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid { Ok(email) } else { Err(NotAnAddress(email)) }
}

/// Whether `url` is an SMTP URL lettre accepts (`smtp://`, `smtp://…?tls=required|opportunistic`, `smtps://`).
pub fn smtp_url_is_valid(url: &str) -> bool {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url).is_ok()
}

/// Whether `s` is one mailbox, e.g. `Portal <portal@example.com>` or `portal@example.com`.
pub fn mailbox_is_valid(s: &str) -> bool {
    !s.chars().any(char::is_control) && Mailbox::from_str(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(normalize_email("  Alice@ACME.example "), "alice@acme.example");
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(check_email(" Ann@Example.COM ").ok().as_deref(), Some("ann@example.com"));
        assert!(check_email("ann").is_err());
        assert!(check_email("ann@localhost").is_err());
        assert!(check_email("a nn@example.com").is_err());
        assert!(check_email("@example.com").is_err());
    }

    #[test]
    fn mail_settings_are_checked() {
        assert!(smtp_url_is_valid("smtp://127.0.0.1:2525"));
        assert!(smtp_url_is_valid("smtps://u:p@mail.example.com"));
        assert!(!smtp_url_is_valid("mail.example.com"));
        assert!(mailbox_is_valid("Portal <portal@localhost>"));
        assert!(!mailbox_is_valid("Portal\r\nBcc: x@example.com <portal@localhost>"));
    }
}
