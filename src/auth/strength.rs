//! Which new passwords are accepted (OWASP ASVS 2.1): at least 8 characters,
//! long ones welcome and never truncated, any Unicode, and nothing a cracker
//! would guess early. Guessability is judged by zxcvbn, which knows common
//! passwords, words, names, keyboard patterns, dates and l33t substitutions,
//! and is told the user's own name and email so those count as guessable too.

use zxcvbn::{Score, zxcvbn};

pub const MIN_CHARS: usize = 8;
/// Far above what ASVS requires us to accept (64); the cap only bounds the
/// work of hashing a hostile multi-megabyte "password".
pub const MAX_CHARS: usize = 1024;

/// Why a password was refused, worded for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weak(pub String);

/// Checks a new password; `context` holds what the user's own details are (name, email).
/// zxcvbn can take a few milliseconds on long input, so it runs on the blocking pool.
pub async fn check(password: &str, context: &[&str]) -> Result<(), Weak> {
    let password = password.to_owned();
    let context: Vec<String> = context
        .iter()
        .flat_map(|c| c.split(|ch: char| !ch.is_alphanumeric()).map(str::to_owned).chain([c.to_string()]))
        .filter(|c| c.chars().count() >= 3)
        .chain(["portal".to_owned()])
        .collect();
    tokio::task::spawn_blocking(move || judge(&password, &context))
        .await
        .unwrap_or_else(|_| Err(Weak("The password could not be checked. Please try again.".into())))
}

fn judge(password: &str, context: &[String]) -> Result<(), Weak> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(Weak(format!("Use at least {MIN_CHARS} characters; a few words together are easy to remember.")));
    }
    if chars > MAX_CHARS {
        return Err(Weak(format!("Use at most {MAX_CHARS} characters.")));
    }
    let inputs: Vec<&str> = context.iter().map(String::as_str).collect();
    let estimate = zxcvbn(password, &inputs);
    if estimate.score() >= Score::Three {
        return Ok(());
    }
    let mut message = String::from("That password is too easy to guess.");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push(' ');
            message.push_str(&warning.to_string());
        }
        for suggestion in feedback.suggestions().iter().take(2) {
            message.push(' ');
            message.push_str(&suggestion.to_string());
        }
    }
    if !message.ends_with('.') {
        message.push('.');
    }
    Err(Weak(message))
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn judged(password: &str) -> Result<(), Weak> {
        judge(password, &["alice".into(), "acme".into(), "alice@acme.example".into(), "portal".into()])
    }

    #[test]
    fn short_passwords_are_refused_with_the_rule() {
        let Err(Weak(why)) = judged("x7#Qa") else { panic!("accepted a 5-character password") };
        assert!(why.contains("at least 8"), "{why}");
    }

    #[test]
    fn common_and_personal_passwords_are_refused() {
        for weak in ["password1", "12345678", "qwertyuiop", "alice2024!", "acme-portal", "iloveyou123"] {
            assert!(judged(weak).is_err(), "{weak} should be refused");
        }
    }

    #[test]
    fn long_and_unicode_passwords_are_accepted() {
        assert_eq!(judged("correct horse battery staple"), Ok(()));
        assert_eq!(judged("grüne Äpfel schmecken 🍏 säuerlich"), Ok(()));
        assert_eq!(judged(&"vMq4-tX9z-".repeat(20)), Ok(()));
        assert!(judged(&"a".repeat(MAX_CHARS + 1)).is_err());
    }
}
