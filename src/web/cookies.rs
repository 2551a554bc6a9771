//! The portal's cookies, all `HttpOnly` and `SameSite=Lax`. Behind TLS they are
//! `Secure` and carry the `__Host-` prefix, which also pins them to this host.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    fn name(self, base: &'static str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_owned() }
    }

    fn build(self, base: &'static str, value: String) -> Cookie<'static> {
        Cookie::build(self.name(base), value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .finish()
    }

    fn removal(self, base: &'static str) -> Cookie<'static> {
        let mut cookie = self.build(base, String::new());
        cookie.make_removal();
        cookie
    }

    fn read(self, req: &HttpRequest, base: &'static str) -> Option<String> {
        req.cookie(&self.name(base)).map(|c| c.value().to_owned())
    }

    pub fn session(self, token: String, remember_for: Option<std::time::Duration>) -> Cookie<'static> {
        let mut cookie = self.build("portal_session", token);
        if let Some(age) = remember_for {
            cookie.set_max_age(CookieDuration::seconds(i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
        }
        cookie
    }

    pub fn session_removal(self) -> Cookie<'static> {
        self.removal("portal_session")
    }

    pub fn session_token(self, req: &HttpRequest) -> Option<String> {
        self.read(req, "portal_session")
    }

    /// The CSRF token of forms shown before sign-in (double-submit: cookie and hidden field must match).
    pub fn anonymous_csrf(self, token: String) -> Cookie<'static> {
        self.build("portal_csrf", token)
    }

    pub fn anonymous_csrf_token(self, req: &HttpRequest) -> Option<String> {
        self.read(req, "portal_csrf")
    }

    pub fn flash(self, flash: &super::shell::Flash) -> Cookie<'static> {
        let raw = format!("{}\n{}", flash.kind.as_str(), flash.text);
        self.build("portal_flash", URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn flash_removal(self) -> Cookie<'static> {
        self.removal("portal_flash")
    }

    pub fn read_flash(self, req: &HttpRequest) -> Option<super::shell::Flash> {
        let raw = URL_SAFE_NO_PAD.decode(self.read(req, "portal_flash")?).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (kind, text) = raw.split_once('\n')?;
        let kind = super::shell::FlashKind::parse(kind)?;
        Some(super::shell::Flash { kind, text: text.chars().take(300).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_use_the_host_prefix() {
        let cookie = CookiePolicy { secure: true }.session("t".into(), None);
        assert_eq!(cookie.name(), "__Host-portal_session");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        let plain = CookiePolicy { secure: false }.session("t".into(), None);
        assert_eq!(plain.name(), "portal_session");
    }
}
