//! Signing in and out: credentials, sessions, CSRF, cookies and redirects.

use crate::support::{PASSWORD, csrf_in, location, spawn_app, spawn_app_with};

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(header: &str) -> String {
    header.split(';').next().and_then(|kv| kv.split_once('=')).map(|(_, v)| v.to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn the_right_password_signs_in_with_a_safe_session_cookie() {
    let app = spawn_app().await;
    let client = app.client();
    let response = client.sign_in("Alice@Acme.example ", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/");
    let cookie = set_cookie(&response, "portal_session").expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Max-Age"), "without remember-me the cookie ends with the browser: {cookie}");
    let dashboard = client.get_html("/").await;
    assert!(dashboard.contains("Acme Manufacturing") && dashboard.contains("Alice Lee"));
    // The database keeps only a hash of the token.
    let token = cookie_value(&cookie);
    let sql = app.sql().await;
    let plain: i64 = sql
        .query_one("SELECT count(*) FROM sessions WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'", &[&token])
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0);
    let signed_in: i64 =
        sql.query_one("SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in'", &[]).await.unwrap().get(0);
    assert_eq!(signed_in, 1);
}

#[tokio::test]
async fn behind_tls_the_cookie_is_secure_and_host_only() {
    let app = spawn_app_with(|c| c.public_url = Some("https://portal.example.com".into())).await;
    let client = app.client();
    // The CSRF cookie is Secure too; a plain-HTTP test client still receives the Set-Cookie header.
    let login = client.get("/login").await;
    let csrf_cookie = set_cookie(&login, "__Host-portal_csrf").expect("csrf cookie");
    assert!(csrf_cookie.contains("Secure"));
    let token = csrf_in(&login.text().await.unwrap()).unwrap();
    let response = client
        .http
        .post(client.url("/login"))
        .header("cookie", format!("__Host-portal_csrf={}", cookie_value(&csrf_cookie)))
        .form(&[("csrf_token", token.as_str()), ("email", "alice@acme.example"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = set_cookie(&response, "__Host-portal_session").expect("a __Host- session cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(response.headers().get("strict-transport-security").is_some());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    let client = app.client();
    let wrong = client.sign_in("alice@acme.example", "not-the-password").await;
    let wrong_status = wrong.status();
    let wrong_page = wrong.text().await.unwrap();
    let unknown = client.sign_in("nobody@acme.example", "not-the-password").await;
    assert_eq!(wrong_status, 401);
    assert_eq!(unknown.status(), 401);
    let unknown_page = unknown.text().await.unwrap();
    let message = "That email and password do not match an account.";
    assert!(wrong_page.contains(message) && unknown_page.contains(message));
    // What was typed is kept (the email), what is secret is not.
    assert!(wrong_page.contains("value=\"alice@acme.example\""));
    assert!(!wrong_page.contains("not-the-password"));
    assert!(set_cookie(&client.sign_in("alice@acme.example", "nope").await, "portal_session").is_none());
    // The account's owner can see the failed attempt; the unknown address leaves no trace.
    let failures: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in_failed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn an_empty_form_is_explained_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let client = app.client();
    let response = client.sign_in("alice@acme.example", "").await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("Enter your email address and your password."));
    assert!(page.contains("value=\"alice@acme.example\""));
}

#[tokio::test]
async fn a_missing_or_wrong_csrf_token_is_refused() {
    let app = spawn_app().await;
    let client = app.client();
    let _ = client.get("/login").await; // receives the CSRF cookie
    let form = [("email", "alice@acme.example"), ("password", PASSWORD)];
    let missing = client.post_form("/login", &form).await;
    assert_eq!(missing.status(), 403);
    let wrong = client
        .post_form("/login", &[("csrf_token", "forged"), ("email", "alice@acme.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(wrong.status(), 403);
    assert!(set_cookie(&wrong, "portal_session").is_none());

    // Signed in, the session's own token is required, not the pre-sign-in one.
    let alice = app.signed_in("alice@acme.example").await;
    let sign_out = alice.post_form("/logout", &[("csrf_token", "forged")]).await;
    assert_eq!(sign_out.status(), 403);
    assert_eq!(alice.get("/").await.status(), 200, "a refused sign-out leaves the session alone");
}

#[tokio::test]
async fn cross_site_posts_are_refused_even_with_a_valid_token() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    let response = client
        .http
        .post(client.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", token.as_str()), ("email", "alice@acme.example"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Refusals get the same headers and page as everything else.
    assert!(response.headers().contains_key("content-security-policy"));
    assert!(response.text().await.unwrap().contains("do that here"));
    let same_site = client
        .http
        .post(client.url("/login"))
        .header("origin", &app.origin)
        .form(&[("csrf_token", token.as_str()), ("email", "alice@acme.example"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 303);
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let client = app.client();
    let response = client.sign_in("alice@acme.example", PASSWORD).await;
    let token = cookie_value(&set_cookie(&response, "portal_session").unwrap());
    let out = client.sign_out("/").await;
    assert_eq!(out.status(), 303);
    assert_eq!(location(&out), "/login");
    assert!(client.get_html("/login").await.contains("You have signed out."));
    // Replaying the old cookie gets nowhere: the server forgot the session.
    let replay = app
        .client()
        .http
        .get(app.client().url("/orders"))
        .header("cookie", format!("portal_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    assert_eq!(location(&replay), "/login?next=%2Forders");
    let sessions: i64 = app.sql().await.query_one("SELECT count(*) FROM sessions", &[]).await.unwrap().get(0);
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn every_sign_in_issues_a_new_token_and_ends_the_session_it_replaces() {
    let app = spawn_app().await;
    let client = app.client();
    let first =
        cookie_value(&set_cookie(&client.sign_in("alice@acme.example", PASSWORD).await, "portal_session").unwrap());
    // Signing in again over a live session (another account, say) replaces it.
    let token = client.csrf_token("/").await;
    let again = client
        .post_form("/login", &[("csrf_token", &token), ("email", "dave@acme.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(again.status(), 303);
    let second = cookie_value(&set_cookie(&again, "portal_session").unwrap());
    assert_ne!(first, second);
    assert!(client.get_html("/").await.contains("Dave Park"));
    let old = app
        .client()
        .http
        .get(client.url("/"))
        .header("cookie", format!("portal_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303, "the replaced session must be dead server-side");
}

#[tokio::test]
async fn sessions_end_after_idle_and_absolute_timeouts() {
    let app = spawn_app().await;
    let idle = app.signed_in("alice@acme.example").await;
    let sql = app.sql().await;
    sql.execute("UPDATE sessions SET last_seen_at = now() - idle_timeout - interval '1 second'", &[]).await.unwrap();
    assert_eq!(idle.get("/").await.status(), 303);

    let absolute = app.signed_in("dave@acme.example").await;
    sql.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = (SELECT id FROM users WHERE email = 'dave@acme.example')", &[]).await.unwrap();
    assert_eq!(absolute.get("/").await.status(), 303);
}

#[tokio::test]
async fn remember_me_makes_a_lasting_cookie() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    let response = client
        .post_form(
            "/login",
            &[("csrf_token", &token), ("email", "alice@acme.example"), ("password", PASSWORD), ("remember", "on")],
        )
        .await;
    let cookie = set_cookie(&response, "portal_session").unwrap();
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
}

#[tokio::test]
async fn a_disabled_account_is_shut_out_at_once() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    app.sql()
        .await
        .execute("UPDATE users SET disabled_at = now() WHERE email = 'dave@acme.example'", &[])
        .await
        .unwrap();
    assert_eq!(dave.get("/").await.status(), 303, "the open session stops working");
    assert_eq!(app.client().sign_in("dave@acme.example", PASSWORD).await.status(), 401);
}

#[tokio::test]
async fn after_sign_in_the_user_returns_to_the_page_asked_for_but_never_off_site() {
    let app = spawn_app().await;
    let client = app.client();
    let asked = client.get("/orders?status=all").await;
    assert_eq!(asked.status(), 303);
    assert_eq!(location(&asked), "/login?next=%2Forders%3Fstatus%3Dall");
    let login = client.get_html("/login?next=%2Forders%3Fstatus%3Dall").await;
    assert!(login.contains("name=\"next\" value=\"/orders?status=all\""));
    for (next, expected) in [
        ("/orders?status=all", "/orders?status=all"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https:evil.example", "/"),
        ("https://evil.example/", "/"),
    ] {
        let client = app.client();
        let token = client.csrf_token("/login").await;
        let response = client
            .post_form(
                "/login",
                &[("csrf_token", &token), ("email", "alice@acme.example"), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(location(&response), expected, "next={next}");
    }
}

#[tokio::test]
async fn staff_land_in_the_back_office_and_see_every_customer() {
    let app = spawn_app().await;
    let client = app.client();
    let response = client.sign_in("staff@portal.example", PASSWORD).await;
    assert_eq!(location(&response), "/staff");
    let back_office = client.get_html("/staff").await;
    assert!(back_office.contains("Acme Manufacturing") && back_office.contains("Globex Logistics"));
    let home = client.get("/").await;
    assert_eq!((home.status().as_u16(), location(&home)), (303, "/staff".to_owned()));
    let acme = app.customer_id("acme").await;
    let customer = client.get_html(&format!("/staff/customers/{acme}")).await;
    assert!(customer.contains("alice@acme.example") && customer.contains("ORD-1042"));
    assert_eq!(client.sign_out("/staff").await.status(), 303);
}

#[tokio::test]
async fn the_sweeper_deletes_expired_sessions_and_only_those() {
    let app = spawn_app().await;
    let _alice = app.signed_in("alice@acme.example").await;
    let bob = app.signed_in("bob@globex.example").await;
    let sql = app.sql().await;
    sql.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second' \
         WHERE user_id = (SELECT id FROM users WHERE email = 'alice@acme.example')",
        &[],
    )
    .await
    .unwrap();
    let removed = portal::auth::session::sweep(&app.db().await).await.unwrap();
    assert_eq!(removed, 1);
    let left: i64 = sql.query_one("SELECT count(*) FROM sessions", &[]).await.unwrap().get(0);
    assert_eq!(left, 1);
    assert_eq!(bob.get("/").await.status(), 200, "a live session survives the sweep");
}
