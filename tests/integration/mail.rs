//! Email end to end: rows queued in the outbox, the worker, a real SMTP server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::Row;

use crate::support::{TestApp, spawn_app, spawn_app_with};

const DAVE: &str = "dave@acme.example";

/// Queues an email as the account functions do: a plain INSERT (here as the superuser).
async fn queue(sql: &tokio_postgres::Client, to: &str, to_name: &str, template: &str, params: Value) -> i64 {
    sql.query_one(
        "INSERT INTO outbox (to_address, to_name, template, params) VALUES ($1, $2, $3, $4) RETURNING id",
        &[&to, &to_name, &template, &params],
    )
    .await
    .unwrap()
    .get(0)
}

async fn row(sql: &tokio_postgres::Client, id: i64) -> Row {
    sql.query_one(
        "SELECT attempts, last_error, params, sent_at IS NOT NULL AS sent, failed_at IS NOT NULL AS failed, \
                next_attempt_at > now() AS later \
         FROM outbox WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
}

/// Polls the row until `done` holds (up to 10 s).
async fn until(sql: &tokio_postgres::Client, id: i64, what: &str, done: impl Fn(&Row) -> bool) -> Row {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = row(sql, id).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "outbox row {id} never became {what}: attempts {}, last_error {:?}",
            r.get::<_, i32>("attempts"),
            r.get::<_, Option<String>>("last_error")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reset_params(minutes: i64) -> Value {
    json!({"name": "Dave", "link": "/password/reset/secret-token-123", "expires_minutes": minutes})
}

/// Settings for an extra worker on `app`'s database, sending to `app`'s SMTP server.
fn worker_settings(app: &TestApp) -> portal::mail::Settings {
    portal::mail::Settings {
        smtp_url: Some(app.mail().url().into()),
        files: PathBuf::from("/nonexistent"),
        from: "Portal <portal@localhost>".into(),
        origin: app.origin.clone(),
        poll: Duration::from_millis(50),
        retry_base: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn a_queued_email_is_delivered_with_both_parts_and_its_link_then_cleared() {
    let app = spawn_app_with(|c| c.public_url = Some("https://portal.example.com".into())).await;
    let sql = app.sql().await;

    let id = queue(&sql, DAVE, "Dave Example", "password_reset", reset_params(30)).await;

    let email = app.mail().wait_for(DAVE, "Reset your Portal password").await;
    assert_eq!(email.to, vec![DAVE.to_owned()]);
    assert!(email.from.contains("portal@localhost"), "{}", email.from);
    assert!(email.header("To").unwrap().contains("Dave Example"));
    assert_eq!(email.header("Message-ID"), Some(format!("<outbox-{id}@portal.example.com>").as_str()));
    assert!(email.header("Content-Type").unwrap().starts_with("multipart/alternative"));
    // The link is on the configured public origin, never the address the server happens to listen on.
    let link = "https://portal.example.com/password/reset/secret-token-123";
    assert!(email.text.contains(link), "{}", email.text);
    assert!(email.html.contains(&format!("href=\"{link}\"")), "{}", email.html);
    assert!(email.text.contains("30 minutes") && email.html.contains("30 minutes"));
    assert!(email.html.contains("Sent by Portal") && email.text.contains("Sent by Portal"));
    assert_eq!(email.link(), "/password/reset/secret-token-123");

    let sent = until(&sql, id, "sent", |r| r.get("sent")).await;
    assert_eq!(sent.get::<_, i32>("attempts"), 1);
    assert_eq!(sent.get::<_, Option<String>>("last_error"), None);
    // No working token stays in the table once the email is out.
    assert_eq!(sent.get::<_, Value>("params"), json!({"name": "Dave", "expires_minutes": 30}));
    assert_eq!(app.mail().all().len(), 1);
}

#[tokio::test]
async fn a_name_cannot_add_a_header_or_a_recipient() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    let params = json!({
        "inviter_name": "Mallory\r\nBcc: evil@example.com",
        "customer_name": "Acme\nX-Injected: yes",
        "link": "/invitation/tok",
        "expires_hours": 72,
    });
    queue(&sql, DAVE, "Dave", "invitation", params).await;
    // The recipient's own name cannot even be queued with a line break in it.
    let refused = sql
        .execute(
            "INSERT INTO outbox (to_address, to_name, template) VALUES ($1, $2, 'registration_unavailable')",
            &[&DAVE, &"Dave\r\nBcc: evil@example.com"],
        )
        .await;
    assert!(refused.is_err(), "the table refuses control characters in names");

    let email = app.mail().wait_for(DAVE, "invited you").await;
    assert_eq!(email.to, vec![DAVE.to_owned()], "the envelope has the one recipient");
    assert_eq!(email.subject, "Mallory Bcc: evil@example.com invited you to Acme X-Injected: yes's portal");
    for (name, _) in &email.headers {
        assert!(!name.eq_ignore_ascii_case("bcc") && !name.eq_ignore_ascii_case("x-injected"), "header {name}");
    }
    let head = &email.raw[..email.raw.find("\r\n\r\n").unwrap()];
    assert!(!head.to_ascii_lowercase().contains("\nbcc:"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("\nx-injected:"), "{head}");
    app.mail().expect_none_to("evil@example.com", Duration::from_millis(300)).await;
    assert_eq!(app.mail().all().len(), 1);
}

#[tokio::test]
async fn a_permanent_rejection_or_a_bad_row_fails_at_once() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    app.mail().reject("gone@acme.example");

    let rejected = queue(&sql, "gone@acme.example", "", "password_reset", reset_params(30)).await;
    let unknown = queue(&sql, DAVE, "", "newsletter", json!({})).await;
    let missing = queue(&sql, DAVE, "", "password_reset", json!({"name": "Dave", "expires_minutes": 30})).await;
    let foreign = queue(&sql, DAVE, "", "account_exists", json!({"link": "https://evil.example/login"})).await;

    let r = until(&sql, rejected, "failed", |r| r.get("failed")).await;
    assert_eq!(r.get::<_, i32>("attempts"), 1, "a 550 is not retried");
    assert!(r.get::<_, String>("last_error").contains("550"), "{:?}", r.get::<_, String>("last_error"));
    for (id, reason) in [
        (unknown, "unknown email template \"newsletter\""),
        (missing, "missing field `link`"),
        (foreign, "not a path on this portal"),
    ] {
        let r = until(&sql, id, "failed", |r| r.get("failed")).await;
        assert_eq!(r.get::<_, i32>("attempts"), 1);
        let error: String = r.get("last_error");
        assert!(error.contains(reason), "{error}");
    }
    app.mail().expect_none_to(DAVE, Duration::from_millis(300)).await;
    assert!(app.mail().all().is_empty());
}

#[tokio::test]
async fn a_temporary_failure_is_retried_with_backoff_until_delivered() {
    let app = spawn_app_with(|c| c.mail_retry_base = Duration::from_millis(300)).await;
    let sql = app.sql().await;
    app.mail().set_down(true);

    let id = queue(&sql, DAVE, "", "password_reset", reset_params(30)).await;
    let failing = until(&sql, id, "retried", |r| r.get::<_, i32>("attempts") >= 2).await;
    assert!(!failing.get::<_, bool>("sent") && !failing.get::<_, bool>("failed"));
    let error: String = failing.get("last_error");
    assert!(error.contains("421"), "{error}");
    assert!(app.mail().all().is_empty());

    app.mail().set_down(false);
    app.mail().wait_for(DAVE, "Reset your Portal password").await;
    let sent = until(&sql, id, "sent", |r| r.get("sent")).await;
    assert!(sent.get::<_, i32>("attempts") >= 3);
    assert_eq!(sent.get::<_, Option<String>>("last_error"), None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.mail().all().len(), 1, "delivered exactly once");
}

#[tokio::test]
async fn a_notification_wakes_the_worker_without_waiting_for_the_poll() {
    let app = spawn_app_with(|c| c.mail_poll = Duration::from_secs(120)).await;
    let sql = app.sql().await;
    // Past the first look the worker makes when it starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    queue(&sql, DAVE, "", "password_reset", reset_params(30)).await;
    app.mail().wait_for(DAVE, "Reset your Portal password").await;
}

#[tokio::test]
async fn the_outbox_survives_a_stopped_worker_and_a_crash_and_delivers_each_email_exactly_once() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    // The app (and its worker) stop; email keeps being queued meanwhile.
    app.stop().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(queue(&sql, &format!("user{i}@acme.example"), "", "password_reset", reset_params(30)).await);
    }
    // A worker that took one email and then crashed in the middle of sending it: its row is locked
    // by an open transaction, which a crash ends with a rollback.
    let crashed = app.sql().await;
    crashed.batch_execute("BEGIN").await.unwrap();
    crashed.query_one("SELECT id FROM outbox WHERE id = $1 FOR UPDATE", &[&ids[0]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.mail().all().is_empty(), "nothing is sent while no worker runs");

    // Two workers on the same database, racing for the same rows.
    let db = app.db().await;
    let first = portal::mail::start(&db, worker_settings(&app)).unwrap();
    let second = portal::mail::start(&db, worker_settings(&app)).unwrap();
    for id in &ids[1..] {
        until(&sql, *id, "sent", |r| r.get("sent")).await;
    }
    assert!(!row(&sql, ids[0]).await.get::<_, bool>("sent"), "a row held by another worker is skipped");

    drop(crashed);
    until(&sql, ids[0], "sent after the crash", |r| r.get("sent")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stop().await;
    second.stop().await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for email in app.mail().all() {
        *seen.entry(email.header("Message-ID").unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "every email arrived: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "and each exactly once: {seen:?}");
    for id in &ids {
        let r = row(&sql, *id).await;
        assert_eq!(r.get::<_, i32>("attempts"), 1, "row {id}");
    }
}

#[tokio::test]
async fn without_smtp_emails_are_written_as_files() {
    let dir = std::env::temp_dir().join(format!("portal-mail-test-{}", uuid::Uuid::new_v4().simple()));
    let data_dir = dir.clone();
    let app = spawn_app_with(move |c| {
        c.smtp_url = None;
        c.data_dir = data_dir;
    })
    .await;
    let sql = app.sql().await;
    let id = queue(&sql, DAVE, "Dave", "password_reset", reset_params(30)).await;
    until(&sql, id, "sent", |r| r.get("sent")).await;

    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().ends_with(&format!("-outbox-{id}.eml")));
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(raw.contains(&format!("Message-ID: <outbox-{id}@localhost>")), "{raw}");
    assert!(raw.contains("Subject: Reset your Portal password"));
    assert!(raw.contains("password/reset/secret-token-123"));
    assert!(app.mail().all().is_empty());
    assert!(row(&sql, id).await.get::<_, Value>("params").get("link").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
