//! What each queued email says: the outbox row's `template` and `params`, rendered
//! into a subject (here) and a plain-text and an HTML body (`views/email/`).
//!
//! Params come from SQL that anyone with the staff role can write, so they are
//! read strictly: an unknown template or a missing param is an error that fails
//! the row (it would fail the same way on every retry), and every string that
//! can reach a header is reduced to one line first.

use sailfish::TemplateSimple;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A rendered email, ready to be put into a MIME message.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The absolute link the email carries, if any (logged in file mode, for local runs).
    pub link: Option<String>,
}

/// What every email's layout needs.
pub(crate) struct Frame {
    /// The portal's public origin, e.g. `https://portal.example.com`.
    origin: String,
    /// The heading (the subject, as the reader sees it first).
    title: String,
    /// `Hello Alice,` or `Hello,`.
    greeting: String,
}

/// Renders `template` with `params` for a recipient called `to_name`; links become `<origin><path>`.
/// The error is a reason for the row's `last_error`: retrying would not help.
pub(crate) fn render(template: &str, params: &Value, to_name: &str, origin: &str) -> Result<Rendered, String> {
    let origin = origin.trim_end_matches('/');
    match template {
        "invitation" => {
            let mut p: Invitation = read(template, params)?;
            p.link = absolute(origin, &p.link)?;
            let subject = format!("{} invited you to {}'s portal", p.inviter_name, p.customer_name);
            let f = frame(origin, &subject, to_name);
            finish(subject, Some(&p.link), InvitationHtml { f: &f, p: &p }, InvitationText { f: &f, p: &p })
        }
        "account_exists" => {
            let mut p: AccountExists = read(template, params)?;
            p.link = absolute(origin, &p.link)?;
            p.forgot = absolute(origin, "/password/forgot")?;
            let subject = "You already have a Portal account".to_owned();
            let f = frame(origin, &subject, to_name);
            finish(subject, Some(&p.link), AccountExistsHtml { f: &f, p: &p }, AccountExistsText { f: &f, p: &p })
        }
        "registration" => {
            let mut p: Registration = read(template, params)?;
            p.link = absolute(origin, &p.link)?;
            let subject = format!("Confirm your email to join {}", p.customer_name);
            let f = frame(origin, &subject, to_name);
            finish(subject, Some(&p.link), RegistrationHtml { f: &f, p: &p }, RegistrationText { f: &f, p: &p })
        }
        "registration_unavailable" => {
            let _: Nothing = read(template, params)?;
            let subject = "About your Portal registration".to_owned();
            let f = frame(origin, &subject, to_name);
            finish(subject, None, UnavailableHtml { f: &f }, UnavailableText { f: &f })
        }
        "password_reset" => {
            let mut p: PasswordReset = read(template, params)?;
            p.link = absolute(origin, &p.link)?;
            let subject = "Reset your Portal password".to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            finish(subject, Some(&p.link), PasswordResetHtml { f: &f, p: &p }, PasswordResetText { f: &f, p: &p })
        }
        "password_changed" => {
            let mut p: PasswordChanged = read(template, params)?;
            // No link param: the way to a reset is still the forgot-password page.
            let link = p.link.take().unwrap_or_else(|| "/password/forgot".to_owned());
            p.link = Some(absolute(origin, &link)?);
            p.at = readable_time(&p.at);
            let subject = "Your Portal password was changed".to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            let link = p.link.clone();
            finish(subject, link.as_deref(), PasswordChangedHtml { f: &f, p: &p }, PasswordChangedText { f: &f, p: &p })
        }
        "email_change" => {
            let mut p: EmailChange = read(template, params)?;
            p.link = absolute(origin, &p.link)?;
            let subject = "Confirm your new email address".to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            finish(subject, Some(&p.link), EmailChangeHtml { f: &f, p: &p }, EmailChangeText { f: &f, p: &p })
        }
        "email_changed" => {
            let p: EmailChanged = read(template, params)?;
            let subject = "Your sign-in email was changed".to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            finish(subject, None, EmailChangedHtml { f: &f, p: &p }, EmailChangedText { f: &f, p: &p })
        }
        "sign_in_attack" => {
            let p: SignInAttack = read(template, params)?;
            let subject = "Failed sign-in attempts on your Portal account".to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            finish(subject, None, SignInAttackHtml { f: &f, p: &p }, SignInAttackText { f: &f, p: &p })
        }
        "passkey_changed" => {
            let mut p: PasskeyChanged = read(template, params)?;
            p.at = readable_time(&p.at);
            p.link = absolute(origin, "/settings/passkeys")?;
            let subject = if p.added() {
                "A passkey was added to your Portal account"
            } else {
                "A passkey was removed from your Portal account"
            }
            .to_owned();
            let f = frame(origin, &subject, pick(&p.name, to_name));
            finish(subject, None, PasskeyChangedHtml { f: &f, p: &p }, PasskeyChangedText { f: &f, p: &p })
        }
        other => Err(format!("unknown email template {:?}", one_line(other))),
    }
}

fn frame(origin: &str, title: &str, name: &str) -> Frame {
    let name = one_line(name);
    let greeting = if name.is_empty() { "Hello,".to_owned() } else { format!("Hello {name},") };
    Frame { origin: origin.to_owned(), title: one_line(title), greeting }
}

fn pick<'a>(name: &'a str, to_name: &'a str) -> &'a str {
    if name.trim().is_empty() { to_name } else { name }
}

fn finish(
    subject: String,
    link: Option<&str>,
    html: impl TemplateSimple,
    text: impl TemplateSimple,
) -> Result<Rendered, String> {
    let html = html.render_once().map_err(|e| format!("rendering the HTML part: {e}"))?;
    let text = text.render_once().map_err(|e| format!("rendering the text part: {e}"))?;
    Ok(Rendered { subject: one_line(&subject), text: tidy_text(&text), html, link: link.map(str::to_owned) })
}

fn read<T: DeserializeOwned>(template: &str, params: &Value) -> Result<T, String> {
    T::deserialize(params).map_err(|e| format!("template {template}: bad params: {e}"))
}

/// `/invitation/abc` → `https://portal.example.com/invitation/abc`. Only paths on this portal:
/// a param cannot make an email point elsewhere.
pub(crate) fn absolute(origin: &str, path: &str) -> Result<String, String> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 2000
        && !path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if ok {
        Ok(format!("{origin}{path}"))
    } else {
        Err(format!("link {:?} is not a path on this portal", one_line(path)))
    }
}

/// One line of at most 200 characters: control characters (CR, LF, tab...) and Unicode line
/// separators become spaces, runs of spaces collapse. Everything that can reach a header
/// (subject, recipient name) goes through this, so no value can start a header of its own.
pub(crate) fn one_line(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect();
    let mut out = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = out.char_indices().nth(200) {
        out.truncate(cut);
    }
    out
}

/// Trailing spaces go, and blank lines left by template code collapse to one.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = true;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
        } else {
            out.push_str(line);
            out.push('\n');
            blank = false;
        }
    }
    // The blank line before the signature separator stays; a final blank line does not.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// `2026-11-12T14:05:00Z` → `12 Nov 2026, 14:05 UTC`; anything else is shown as given.
fn readable_time(at: &str) -> String {
    match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
        Ok(t) => format!("{} UTC", crate::format::datetime(t.to_offset(time::UtcOffset::UTC))),
        Err(_) => one_line(at),
    }
}

/// `1 hour`, `24 hours` (used by the templates).
fn plural(n: i64, unit: &str) -> String {
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

// Params, as the SQL that queues each email writes them. Strings are one line each.

fn line<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(one_line(&String::deserialize(d)?))
}

fn opt_line<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| one_line(&s)).filter(|s| !s.is_empty()))
}

#[derive(Deserialize)]
struct Invitation {
    #[serde(deserialize_with = "line")]
    inviter_name: String,
    #[serde(deserialize_with = "line")]
    customer_name: String,
    link: String,
    expires_hours: i64,
}

#[derive(Deserialize)]
struct AccountExists {
    link: String,
    #[serde(skip)]
    forgot: String,
}

#[derive(Deserialize)]
struct Registration {
    #[serde(deserialize_with = "line")]
    customer_name: String,
    link: String,
    expires_hours: i64,
}

#[derive(Deserialize)]
struct Nothing {}

#[derive(Deserialize)]
struct PasswordReset {
    #[serde(deserialize_with = "line")]
    name: String,
    link: String,
    expires_minutes: i64,
}

#[derive(Deserialize)]
struct PasswordChanged {
    #[serde(deserialize_with = "line")]
    name: String,
    #[serde(deserialize_with = "line")]
    at: String,
    #[serde(default, deserialize_with = "opt_line")]
    ip: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

#[derive(Deserialize)]
struct EmailChange {
    #[serde(deserialize_with = "line")]
    name: String,
    #[serde(deserialize_with = "line")]
    new_email: String,
    link: String,
    expires_hours: i64,
}

#[derive(Deserialize)]
struct EmailChanged {
    #[serde(deserialize_with = "line")]
    name: String,
    #[serde(deserialize_with = "line")]
    new_email: String,
}

#[derive(Deserialize)]
struct SignInAttack {
    #[serde(deserialize_with = "line")]
    name: String,
    failures: i64,
    #[serde(default, deserialize_with = "opt_line")]
    ip: Option<String>,
}

#[derive(Deserialize)]
struct PasskeyChanged {
    #[serde(deserialize_with = "line")]
    name: String,
    /// `added` or `removed`.
    change: String,
    #[serde(deserialize_with = "line")]
    passkey_name: String,
    #[serde(deserialize_with = "line")]
    at: String,
    #[serde(default, deserialize_with = "opt_line")]
    ip: Option<String>,
    #[serde(skip)]
    link: String,
}

impl PasskeyChanged {
    fn added(&self) -> bool {
        self.change == "added"
    }
}

/// One HTML and one plain-text template per email, both given the frame `f` and the params `p`.
macro_rules! email_views {
    ($html:ident, $text:ident, $params:ty, $html_path:literal, $text_path:literal) => {
        #[derive(TemplateSimple)]
        #[template(path = $html_path)]
        struct $html<'a> {
            f: &'a Frame,
            p: &'a $params,
        }

        #[derive(TemplateSimple)]
        #[template(path = $text_path, escape = false)]
        struct $text<'a> {
            f: &'a Frame,
            p: &'a $params,
        }
    };
}

email_views!(InvitationHtml, InvitationText, Invitation, "email/invitation.html.stpl", "email/invitation.txt.stpl");
email_views!(
    AccountExistsHtml,
    AccountExistsText,
    AccountExists,
    "email/account_exists.html.stpl",
    "email/account_exists.txt.stpl"
);
email_views!(
    RegistrationHtml,
    RegistrationText,
    Registration,
    "email/registration.html.stpl",
    "email/registration.txt.stpl"
);
// No params to show.
#[derive(TemplateSimple)]
#[template(path = "email/registration_unavailable.html.stpl")]
struct UnavailableHtml<'a> {
    f: &'a Frame,
}

#[derive(TemplateSimple)]
#[template(path = "email/registration_unavailable.txt.stpl", escape = false)]
struct UnavailableText<'a> {
    f: &'a Frame,
}
email_views!(
    PasswordResetHtml,
    PasswordResetText,
    PasswordReset,
    "email/password_reset.html.stpl",
    "email/password_reset.txt.stpl"
);
email_views!(
    PasswordChangedHtml,
    PasswordChangedText,
    PasswordChanged,
    "email/password_changed.html.stpl",
    "email/password_changed.txt.stpl"
);
email_views!(
    EmailChangeHtml,
    EmailChangeText,
    EmailChange,
    "email/email_change.html.stpl",
    "email/email_change.txt.stpl"
);
email_views!(
    EmailChangedHtml,
    EmailChangedText,
    EmailChanged,
    "email/email_changed.html.stpl",
    "email/email_changed.txt.stpl"
);
email_views!(
    PasskeyChangedHtml,
    PasskeyChangedText,
    PasskeyChanged,
    "email/passkey_changed.html.stpl",
    "email/passkey_changed.txt.stpl"
);
email_views!(
    SignInAttackHtml,
    SignInAttackText,
    SignInAttack,
    "email/sign_in_attack.html.stpl",
    "email/sign_in_attack.txt.stpl"
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: &str = "https://portal.example.com";

    fn all_templates() -> Vec<(&'static str, Value)> {
        vec![
            (
                "invitation",
                json!({"inviter_name": "Alice Admin", "customer_name": "Acme Manufacturing",
                       "link": "/invitation/tok1", "expires_hours": 72}),
            ),
            ("account_exists", json!({"link": "/login"})),
            (
                "registration",
                json!({"customer_name": "Acme Manufacturing", "link": "/register/tok2", "expires_hours": 24}),
            ),
            ("registration_unavailable", json!({})),
            ("password_reset", json!({"name": "Dave", "link": "/password/reset/tok3", "expires_minutes": 30})),
            (
                "password_changed",
                json!({"name": "Dave", "at": "2026-11-12T14:05:00Z", "ip": "203.0.113.9", "link": "/password/forgot"}),
            ),
            (
                "email_change",
                json!({"name": "Dave", "new_email": "dave@new.example", "link": "/settings/email/tok4", "expires_hours": 24}),
            ),
            ("email_changed", json!({"name": "Dave", "new_email": "dave@new.example"})),
            ("sign_in_attack", json!({"name": "Dave", "failures": 25, "ip": null})),
            (
                "passkey_changed",
                json!({"name": "Dave", "change": "added", "passkey_name": "Work laptop",
                       "at": "2026-11-24T10:00:00Z", "ip": "203.0.113.9"}),
            ),
        ]
    }

    #[test]
    fn every_template_renders_both_parts_and_names_the_sender() {
        for (name, params) in all_templates() {
            let r = render(name, &params, "Dave Example", ORIGIN).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!r.subject.is_empty(), "{name}");
            assert!(r.html.starts_with("<!DOCTYPE html>"), "{name}");
            assert!(r.html.contains(&format!("<title>{}</title>", r.subject.replace('\'', "&#039;"))), "{name}");
            for part in [&r.text, &r.html] {
                assert!(part.contains("Sent by Portal"), "{name} says who sent it");
                assert!(part.contains(ORIGIN), "{name} names the portal");
                assert!(!part.contains("<%"), "{name}");
            }
            assert!(!r.text.contains("&#"), "{name}: the text part is not HTML-escaped");
            if let Some(link) = &r.link {
                assert!(link.starts_with(ORIGIN), "{name}");
                assert!(r.text.contains(link.as_str()) && r.html.contains(link.as_str()), "{name} shows its link");
                let first_url = r.text.split_whitespace().find(|w| w.starts_with("https://")).unwrap();
                assert_eq!(first_url, link, "{name}: the action link is the first URL of the text");
            }
        }
    }

    #[test]
    fn links_say_how_long_they_work() {
        let params = all_templates().into_iter().collect::<std::collections::HashMap<_, _>>();
        let text = |name: &str| render(name, &params[name], "", ORIGIN).unwrap().text;
        assert!(text("invitation").contains("72 hours"));
        assert!(text("registration").contains("24 hours"));
        assert!(text("password_reset").contains("30 minutes"));
        assert!(text("password_reset").contains("once"));
        assert!(text("email_change").contains("24 hours"));
        let invitation = render("invitation", &params["invitation"], "", ORIGIN).unwrap();
        assert_eq!(invitation.subject, "Alice Admin invited you to Acme Manufacturing's portal");
        assert!(invitation.html.contains("Accept invitation"));
        assert!(invitation.html.contains("Acme Manufacturing&#039;s portal"), "HTML is escaped");
        assert!(invitation.text.contains("Alice Admin has invited you to join Acme Manufacturing on Portal"));
        assert!(invitation.text.contains("company's orders"), "the text part is not escaped");
        assert!(invitation.text.starts_with("Hello,\n"));
        let changed = text("password_changed");
        assert!(changed.contains("12 Nov 2026, 14:05 UTC") && changed.contains("203.0.113.9"));
        assert!(changed.contains("https://portal.example.com/password/forgot"));
        assert!(text("email_changed").contains("dave@new.example"));
        assert!(text("sign_in_attack").contains("25 failed"));
    }

    #[test]
    fn password_changed_without_a_link_points_to_the_forgot_page() {
        let r =
            render("password_changed", &json!({"name": "", "at": "yesterday", "ip": null}), "Dave", ORIGIN).unwrap();
        assert_eq!(r.link.as_deref(), Some("https://portal.example.com/password/forgot"));
        assert!(r.text.starts_with("Hello Dave,"));
    }

    #[test]
    fn markup_in_params_is_escaped_in_html() {
        let r = render(
            "invitation",
            &json!({"inviter_name": "<script>x</script>", "customer_name": "A&B", "link": "/i/t", "expires_hours": 1}),
            "",
            ORIGIN,
        )
        .unwrap();
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;") && r.html.contains("A&amp;B"));
        assert!(r.text.contains("1 hour."), "{}", r.text);
    }

    #[test]
    fn control_characters_never_reach_the_subject() {
        let r = render(
            "invitation",
            &json!({"inviter_name": "Mallory\r\nBcc: evil@example.com", "customer_name": "Acme\u{2028}X",
                    "link": "/i/t", "expires_hours": 1}),
            "Eve\r\nCc: x@example.com",
            ORIGIN,
        )
        .unwrap();
        assert_eq!(r.subject, "Mallory Bcc: evil@example.com invited you to Acme X's portal");
        assert!(!r.subject.contains(['\r', '\n']));
        assert!(r.text.starts_with("Hello Eve Cc: x@example.com,\n"));
    }

    #[test]
    fn bad_rows_fail_with_a_reason() {
        let unknown = render("newsletter", &json!({}), "", ORIGIN).unwrap_err();
        assert!(unknown.contains("unknown email template \"newsletter\""), "{unknown}");
        let missing = render("password_reset", &json!({"name": "D", "expires_minutes": 5}), "", ORIGIN).unwrap_err();
        assert!(missing.contains("password_reset") && missing.contains("missing field `link`"), "{missing}");
        let wrong_type = render("sign_in_attack", &json!({"name": "D", "failures": "many"}), "", ORIGIN).unwrap_err();
        assert!(wrong_type.contains("failures") || wrong_type.contains("invalid type"), "{wrong_type}");
        for link in ["https://evil.example/x", "//evil.example/x", "/a b", "/a\r\nb", "relative"] {
            let err = render("account_exists", &json!({ "link": link }), "", ORIGIN).unwrap_err();
            assert!(err.contains("not a path on this portal"), "{link}: {err}");
        }
    }

    #[test]
    fn one_line_strips_controls_and_caps_length() {
        assert_eq!(one_line("  a\r\n\tb\u{0}c\u{2029}d  "), "a b c d");
        assert_eq!(one_line(&"é".repeat(300)).chars().count(), 200);
    }
}
