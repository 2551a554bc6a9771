//! The page shell: navigation, error pages, security headers, health, static files, escaping.

use crate::support::spawn_app;

const CUSTOMER_PAGES: &[&str] = &[
    "/",
    "/orders",
    "/invoices",
    "/documents",
    "/tickets",
    "/notifications",
    "/reports",
    "/activity",
    "/team",
    "/settings",
];

#[tokio::test]
async fn every_customer_page_renders_inside_the_shell() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    for path in CUSTOMER_PAGES {
        let html = alice.get_html(path).await;
        assert!(html.contains("<nav class=\"mainnav\""), "{path} lacks the navigation");
        assert!(html.contains("aria-current=\"page\""), "{path} does not mark its section");
        assert!(html.contains("action=\"/logout\""), "{path} lacks sign-out");
        assert!(html.contains("Acme Manufacturing"), "{path} lacks the customer's name");
    }
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    for path in ["/", "/login", "/no-such-page"] {
        let response = alice.get(path).await;
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("cache-control"), "no-store", "{path}");
    }
}

#[tokio::test]
async fn unknown_pages_get_a_helpful_404_page() {
    let app = spawn_app().await;
    let response = app.client().get("/no-such-page").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let html = response.text().await.unwrap();
    assert!(html.contains("Page not found"));
    assert!(
        html.contains(&format!("Reference: <span class=\"mono\">{request_id}</span>")),
        "the page quotes the request id"
    );
}

#[tokio::test]
async fn api_errors_are_json() {
    let app = spawn_app().await;
    let response = app.client().get("/api/v1/nothing").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Outside the versioned API, the site-wide handler still answers JSON under /api/.
    let response = app.client().get("/api/v0/nothing").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], 404);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let client = app.client();
    assert_eq!(client.get("/healthz").await.text().await.unwrap(), "ok");
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn static_files_are_content_hashed_and_cached_forever() {
    let app = spawn_app().await;
    let client = app.client();
    let login = client.get_html("/login").await;
    let href = login.split("rel=\"stylesheet\" href=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
    assert!(href.starts_with("/static/app.") && href.ends_with(".css"));
    let css = client.get(href).await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    assert_eq!(client.get("/static/app.000000000000.css").await.status(), 404);
}

#[tokio::test]
async fn data_is_escaped_wherever_it_is_shown() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1044").await;
    app.sql()
        .await
        .execute("UPDATE orders SET title = '<script>alert(1)</script>' WHERE id = $1", &[&order])
        .await
        .unwrap();
    let alice = app.signed_in("alice@acme.example").await;
    for path in ["/orders".to_owned(), format!("/orders/{order}"), "/".to_owned()] {
        let html = alice.get_html(&path).await;
        assert!(!html.contains("<script>alert(1)</script>"), "{path} rendered markup from data");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path} lost the title");
    }
}

/// `<%-` writes raw HTML; templates must never use it on data, so they never use it at all.
#[test]
fn templates_never_write_unescaped_output() {
    let mut offenders = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/views"))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).unwrap().contains("<%-") {
                offenders.push(path);
            }
        }
    }
    assert!(offenders.is_empty(), "unescaped output in {offenders:?}");
}

#[tokio::test]
async fn the_order_page_shows_the_timeline_but_never_internal_notes() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("Printing has started."));
    assert!(html.contains("aria-current=\"step\">In production"));
    assert!(!html.contains("Paper stock delayed"), "an internal note reached a customer");
}
