//! Response headers that make the browser enforce our rules, and the origin
//! check that refuses state-changing requests sent from other sites.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{Error, web};

use super::AppState;
use super::error::AppError;

/// No inline script or style anywhere: the CSP allows only our own files, and
/// connections only to our own origin and its live socket (named explicitly:
/// not every browser counts `ws:` as `'self'`).
pub fn content_security_policy(origin: &str) -> String {
    let socket = origin.replacen("http", "ws", 1);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; \
         connect-src 'self' {socket}/live; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

pub fn headers(secure: bool, origin: &str) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, content_security_policy(origin)))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add(("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        // Pages show private data: never keep them in shared or back-forward caches
        // unless a handler says otherwise (static assets do).
        .add((header::CACHE_CONTROL, "no-store"));
    if secure {
        headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"))
    } else {
        headers
    }
}

/// Refuses unsafe methods whose `Origin` is not the portal's own, or that the
/// browser labels cross-site. A second wall behind the CSRF token and
/// `SameSite` cookies. The bearer-token API carries no ambient credentials and is exempt.
pub async fn same_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !req.path().starts_with("/api/") {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let fetch_site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let expected = req.app_data::<web::Data<AppState>>().map(|s| s.origin.clone()).unwrap_or_default();
        let allowed = match origin {
            Some(origin) => origin.eq_ignore_ascii_case(&expected),
            None => fetch_site != Some("cross-site"),
        };
        if !allowed {
            // A response, not an Err: errors skip the outer middleware that adds the
            // security headers and renders the error page.
            let refused = req.error_response(AppError::CrossSite);
            return Ok(refused.map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Clears the flash cookie once a page has shown it.
pub async fn consume_flash(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let policy = req.app_data::<web::Data<AppState>>().map(|s| s.cookies);
    let had_flash = policy.is_some_and(|p| p.read_flash(req.request()).is_some());
    let mut res = next.call(req).await?;
    if let (true, Some(policy)) = (had_flash, policy)
        && res.status().is_success()
    {
        res.response_mut().add_cookie(&policy.flash_removal())?;
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_names_the_live_socket_and_allows_no_inline_code() {
        let csp = super::content_security_policy("https://portal.example.com");
        assert!(csp.contains("connect-src 'self' wss://portal.example.com/live;"));
        assert!(super::content_security_policy("http://127.0.0.1:8080").contains("ws://127.0.0.1:8080/live"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    }
}
