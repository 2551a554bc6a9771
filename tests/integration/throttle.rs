//! Brute-force protection on sign-in, and the rate limits of the endpoints that send email.

use std::time::Duration;

use portal::auth::throttle::{self, Limit};

use crate::support::{Client, PASSWORD, TestApp, logins, spawn_app};

const WRONG: &str = "not-the-password";

/// Posts the sign-in form with a token fetched beforehand, so nothing but the
/// POST itself stands between the previous failure and this attempt.
async fn attempt(client: &Client, token: &str, email: &str, password: &str) -> reqwest::Response {
    client.post_form("/login", &[("csrf_token", token), ("email", email), ("password", password)]).await
}

async fn fail_times(client: &Client, token: &str, email: &str, n: usize) {
    for i in 0..n {
        let response = attempt(client, token, email, WRONG).await;
        assert_eq!(response.status(), 401, "failure {} of {email}", i + 1);
    }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response.headers().get("retry-after").expect("a Retry-After header");
    value.to_str().unwrap().parse().expect("Retry-After in whole seconds")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.sql().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// The counter kept for an address (keys are stored hashed).
async fn account_failures(app: &TestApp, email: &str) -> i32 {
    app.sql()
        .await
        .query_one(
            "SELECT failures FROM sign_in_throttle WHERE kind = 'account' AND key_hash = sha256(convert_to($1, 'UTF8'))",
            &[&email],
        )
        .await
        .unwrap()
        .get(0)
}

async fn ip_failures(app: &TestApp) -> i32 {
    app.sql()
        .await
        .query_one(
            "SELECT failures FROM sign_in_throttle WHERE kind = 'ip' AND key_hash = sha256(convert_to('127.0.0.1', 'UTF8'))",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Moves every recorded failure `secs` into the past (instead of sleeping through a lock);
/// a negative `secs` keeps a lock on for that much longer, so a check cannot outlast it.
async fn age_failures(app: &TestApp, secs: i32) {
    app.sql()
        .await
        .execute(
            "UPDATE sign_in_throttle SET last_failure_at = last_failure_at - make_interval(secs => $1)",
            &[&f64::from(secs)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn five_failures_lock_the_account_even_against_the_right_password_until_the_wait_is_over() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "alice@acme.example", 5).await;

    let locked = attempt(&client, &token, "Alice@Acme.example ", PASSWORD).await;
    assert_eq!(locked.status(), 429, "the right password is refused while locked");
    assert!((1..=2).contains(&retry_after(&locked)), "the first lock is a second long");
    assert!(locked.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap().contains("portal_session")));
    let page = locked.text().await.unwrap();
    assert!(page.contains("Too many failed attempts. Try again in about 1 second, or "), "{page}");
    assert!(page.contains("reset your password</a>."));
    assert!(page.contains("value=\"Alice@Acme.example\""), "the email is kept");
    assert!(page.contains("name=\"csrf_token\""), "the form is there to try again");

    // Refused attempts count nothing and extend nothing, and the lock is logged once.
    age_failures(&app, -60).await;
    for _ in 0..3 {
        assert_eq!(attempt(&client, &token, "alice@acme.example", WRONG).await.status(), 429);
    }
    assert_eq!(account_failures(&app, "alice@acme.example").await, 5);
    assert_eq!(count(&app, "SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in_failed'").await, 5);
    assert_eq!(count(&app, "SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in_throttled'").await, 1);

    // Once the wait is over the right password works, and the account starts over (the network does not).
    age_failures(&app, 70).await;
    let signed_in = attempt(&client, &token, "alice@acme.example", PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(account_failures(&app, "alice@acme.example").await, 0);
    assert_eq!(ip_failures(&app).await, 5);
    let other = app.client();
    let token = other.csrf_token("/login").await;
    for _ in 0..4 {
        assert_eq!(attempt(&other, &token, "alice@acme.example", WRONG).await.status(), 401, "the count restarted");
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_slip_past_the_limit() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    let guesses = (0..20).map(|i| {
        let (client, token) = (client.clone(), token.clone());
        tokio::spawn(
            async move { attempt(&client, &token, "alice@acme.example", &format!("guess-{i}")).await.status() },
        )
    });
    let statuses: Vec<_> = futures_util::future::join_all(guesses).await.into_iter().map(|s| s.unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "only five passwords were checked: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
    assert_eq!(account_failures(&app, "alice@acme.example").await, 5);
}

#[tokio::test]
async fn waits_double_and_stop_growing_at_fifteen_minutes() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    for (kind, failures, secs) in [
        ("account", 0, 0.0),
        ("account", 4, 0.0),
        ("account", 5, 1.0),
        ("account", 6, 2.0),
        ("account", 7, 4.0),
        ("account", 14, 512.0),
        ("account", 15, 900.0),
        ("account", i32::MAX, 900.0),
        ("ip", 29, 0.0),
        ("ip", 30, 1.0),
        ("ip", 40, 900.0),
    ] {
        let wait: f64 = sql
            .query_one("SELECT extract(epoch FROM portal_sign_in_backoff($1, $2))::float8", &[&kind, &failures])
            .await
            .unwrap()
            .get(0);
        assert_eq!(wait, secs, "{kind} after {failures} failures");
    }

    // However many failures an attacker piles up, the owner gets in 15 minutes after the last one.
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "bob@globex.example", 5).await;
    sql.execute("UPDATE sign_in_throttle SET failures = 100000 WHERE kind = 'account'", &[]).await.unwrap();
    let locked = attempt(&client, &token, "bob@globex.example", PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert!((899..=900).contains(&retry_after(&locked)), "capped at 15 minutes");
    assert!(locked.text().await.unwrap().contains("Try again in about 15 minutes"));
    age_failures(&app, 901).await;
    assert_eq!(attempt(&client, &token, "bob@globex.example", PASSWORD).await.status(), 303);
    let client = app.client();
    let token = client.csrf_token("/login").await;

    // A quiet day forgets the failures altogether, and the sweeper removes them.
    fail_times(&client, &token, "dave@acme.example", 5).await;
    age_failures(&app, 25 * 3600).await;
    assert_eq!(attempt(&client, &token, "dave@acme.example", WRONG).await.status(), 401);
    assert_eq!(account_failures(&app, "dave@acme.example").await, 1);
    age_failures(&app, 25 * 3600).await;
    let removed = throttle::sweep(&app.db().await).await.unwrap();
    assert!(removed >= 2, "stale rows swept, got {removed}");
    assert_eq!(count(&app, "SELECT count(*) FROM sign_in_throttle").await, 0);
}

#[tokio::test]
async fn a_locked_unknown_address_looks_exactly_like_a_locked_account() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    let mut answers = Vec::new();
    for email in ["alice@acme.example", "nobody@acme.example"] {
        fail_times(&client, &token, email, 5).await;
        let locked = attempt(&client, &token, email, PASSWORD).await;
        let status = locked.status();
        let wait = retry_after(&locked);
        let page = locked.text().await.unwrap().replace(email, "EMAIL");
        answers.push((status, wait, page));
    }
    assert_eq!(answers[0].0, 429);
    assert_eq!(answers[0], answers[1], "same status, Retry-After and page");
    // Only the real account's owner hears about it.
    assert_eq!(count(&app, "SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in_throttled'").await, 1);
}

#[tokio::test]
async fn one_network_is_locked_after_thirty_failures_across_many_addresses() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    for i in 0..30 {
        let email = format!("guess{i}@acme.example");
        assert_eq!(attempt(&client, &token, &email, WRONG).await.status(), 401, "{email}");
    }
    let fresh = attempt(&client, &token, "guess-new@acme.example", WRONG).await;
    assert_eq!(fresh.status(), 429, "a new address from the same network is refused");
    assert!(retry_after(&fresh) >= 1);
    age_failures(&app, -60).await;
    assert_eq!(attempt(&client, &token, "alice@acme.example", PASSWORD).await.status(), 429);
    assert_eq!(ip_failures(&app).await, 30);
    // No single address reached its own limit: it is the network that is locked.
    assert_eq!(count(&app, "SELECT max(failures)::int8 FROM sign_in_throttle WHERE kind = 'account'").await, 1);
    age_failures(&app, 70).await;
    assert_eq!(attempt(&client, &token, "alice@acme.example", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn the_owner_of_an_attacked_account_is_emailed_once() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    let attack_mails =
        "SELECT count(*) FROM outbox WHERE template = 'sign_in_attack' AND to_address = 'alice@acme.example'";
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "alice@acme.example", 4).await;
    assert_eq!(count(&app, attack_mails).await, 0, "not before the threshold");
    fail_times(&client, &token, "alice@acme.example", 1).await;
    assert_eq!(count(&app, attack_mails).await, 1);
    let row = sql.query_one("SELECT to_name, params FROM outbox WHERE template = 'sign_in_attack'", &[]).await.unwrap();
    let params: serde_json::Value = row.get("params");
    assert_eq!(row.get::<_, String>("to_name"), "Alice Lee");
    assert_eq!(params["name"], "Alice Lee");
    assert_eq!(params["failures"], 5);
    assert_eq!(params["ip"], "127.0.0.1");

    // The attack goes on: no more mail. The owner signs in, a new attack starts within the hour: still none.
    for _ in 0..2 {
        age_failures(&app, 60).await;
        fail_times(&client, &token, "alice@acme.example", 1).await;
    }
    age_failures(&app, 60).await;
    assert_eq!(attempt(&client, &token, "alice@acme.example", PASSWORD).await.status(), 303);
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "alice@acme.example", 5).await;
    assert_eq!(count(&app, attack_mails).await, 1, "at most one an hour");
    assert_eq!(count(&app, "SELECT count(*) FROM activity_log WHERE action = 'auth.sign_in_throttled'").await, 2);

    // An hour later, a new lock is worth a new email.
    sql.execute("UPDATE sign_in_throttle SET alerted_at = alerted_at - interval '61 minutes'", &[]).await.unwrap();
    sql.execute("UPDATE sign_in_throttle SET failures = 0, throttled_at = NULL WHERE kind = 'account'", &[])
        .await
        .unwrap();
    age_failures(&app, 10).await;
    fail_times(&client, &token, "alice@acme.example", 5).await;
    assert_eq!(count(&app, attack_mails).await, 2);

    // Unknown addresses and invitees who have not accepted are never emailed.
    sql.execute(
        "INSERT INTO users (customer_id, email, name, role, email_verified_at) \
         SELECT id, 'invitee@acme.example', 'Ivy Invitee', 'customer_member', NULL FROM customers WHERE slug = 'acme'",
        &[],
    )
    .await
    .unwrap();
    sql.execute("DELETE FROM sign_in_throttle WHERE kind = 'ip'", &[]).await.unwrap();
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "invitee@acme.example", 5).await;
    fail_times(&client, &token, "nobody@acme.example", 5).await;
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE template = 'sign_in_attack'").await, 2);
}

#[tokio::test]
async fn a_new_password_ends_the_lock() {
    let app = spawn_app().await;
    let client = app.client();
    let token = client.csrf_token("/login").await;
    fail_times(&client, &token, "dave@acme.example", 5).await;
    let sql = app.sql().await;
    sql.execute("UPDATE sign_in_throttle SET failures = 100 WHERE kind = 'account'", &[]).await.unwrap();
    assert_eq!(attempt(&client, &token, "dave@acme.example", PASSWORD).await.status(), 429);
    // As a reset does: a new hash (of the same demo password, with a new salt).
    let hash = portal::auth::password::hash(secrecy::SecretString::from(PASSWORD)).await.unwrap();
    sql.execute("UPDATE users SET password_hash = $1 WHERE email = 'dave@acme.example'", &[&hash]).await.unwrap();
    assert_eq!(account_failures(&app, "dave@acme.example").await, 0);
    assert_eq!(attempt(&client, &token, "dave@acme.example", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn spending_a_budget_is_exact_under_concurrency() {
    let app = spawn_app().await;
    let db = portal::db::Db::connect(logins(&app.db_url), 20).await.unwrap();
    let (budget, window) = Limit::PasswordResetEmail.budget();
    assert_eq!(budget, 3);
    let spends = (0..20).map(|_| {
        let db = db.clone();
        tokio::spawn(async move { throttle::spend(&db, Limit::PasswordResetEmail, "Carol@Example.com").await })
    });
    let results: Vec<_> =
        futures_util::future::join_all(spends).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3, "exactly the budget is spent");
    for refused in results.iter().filter_map(|r| r.err()) {
        assert!(refused.retry_after > window - Duration::from_secs(60) && refused.retry_after <= window);
    }

    // Keys are normalized; buckets and keys are independent.
    let again = throttle::spend(&db, Limit::PasswordResetEmail, " carol@example.com").await.unwrap();
    assert!(again.is_err());
    assert!(throttle::spend(&db, Limit::PasswordResetEmail, "dan@example.com").await.unwrap().is_ok());
    assert!(throttle::spend(&db, Limit::RegistrationAddress, "carol@example.com").await.unwrap().is_ok());

    // A sliding window: a unit comes free when the oldest spend leaves it, not before.
    let sql = app.sql().await;
    sql.execute(
        "UPDATE rate_limits SET spent_at = ARRAY[now() - interval '59 minutes', now() - interval '30 minutes', now()] \
         WHERE bucket = 'password_reset_email' AND key_hash = sha256(convert_to('carol@example.com', 'UTF8'))",
        &[],
    )
    .await
    .unwrap();
    let refused = throttle::spend(&db, Limit::PasswordResetEmail, "carol@example.com").await.unwrap().unwrap_err();
    assert!(refused.retry_after <= Duration::from_secs(60) && refused.retry_after > Duration::from_secs(50));
    sql.execute(
        "UPDATE rate_limits SET spent_at = array_replace(spent_at, spent_at[1], spent_at[1] - interval '2 minutes')",
        &[],
    )
    .await
    .unwrap();
    assert!(throttle::spend(&db, Limit::PasswordResetEmail, "carol@example.com").await.unwrap().is_ok());
    assert!(throttle::spend(&db, Limit::PasswordResetEmail, "carol@example.com").await.unwrap().is_err());

    // Keys are stored hashed; windows that have passed are swept.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM rate_limits WHERE key_hash = sha256(convert_to('carol@example.com', 'UTF8'))"
        )
        .await,
        2
    );
    sql.execute(
        "UPDATE rate_limits SET expires_at = now() - interval '1 second' WHERE bucket = 'registration_address'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(throttle::sweep(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn the_counters_are_out_of_the_application_roles_reach() {
    let app = spawn_app().await;
    let app_sql = app.app_role_sql().await;
    for table in ["sign_in_throttle", "rate_limits"] {
        let read = app_sql.query(&format!("SELECT * FROM {table}"), &[]).await;
        assert!(read.is_err(), "portal_app reads {table}");
        let wipe = app_sql.execute(&format!("DELETE FROM {table}"), &[]).await;
        assert!(wipe.is_err(), "portal_app deletes from {table}");
    }
    // Rust's ip_key and SQL's portal_ip_key agree.
    let sql = app.sql().await;
    for ip in ["203.0.113.9", "::ffff:203.0.113.9", "2001:db8:1:2:3:4:5:6", "2001:db8::1"] {
        let parsed: std::net::IpAddr = ip.parse().unwrap();
        let in_sql: String = sql.query_one("SELECT portal_ip_key($1::inet)", &[&parsed]).await.unwrap().get(0);
        assert_eq!(in_sql, throttle::ip_key(Some(parsed)), "{ip}");
    }
}
