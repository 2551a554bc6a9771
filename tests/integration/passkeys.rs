//! Passkeys at the protocol level: a software authenticator from the
//! webauthn-rs project (`SoftPasskey`) drives the real endpoints over HTTP, as a
//! browser's WebAuthn API would.
//!
//! `SoftPasskey` keeps no resident keys, so for the email-less sign-in it is
//! given its credential id in `allowCredentials`, and the user handle a
//! resident key would return is filled in by the test. Neither is signed by an
//! authenticator, so the server sees exactly what a discoverable passkey sends.
//! (The browser test does the same with Chromium's virtual authenticator, where
//! the key really is discoverable.)

use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_proto::{AllowCredentials, CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse};

use crate::support::live::{Refusal, open};
use crate::support::{Client, PASSWORD, TestApp, csrf_in, location, spawn_app};

const ALICE: &str = "alice@acme.example";
const DAVE: &str = "dave@acme.example";
const STAFF: &str = "staff@portal.example";

/// One authenticator and the credential it created.
struct Device {
    soft: SoftPasskey,
    credential_id: Vec<u8>,
    user: Uuid,
}

impl Device {
    fn new() -> Self {
        Device { soft: SoftPasskey::new(true), credential_id: Vec::new(), user: Uuid::nil() }
    }
}

async fn post_json(client: &Client, path: &str, body: &Value) -> reqwest::Response {
    client.http.post(client.url(path)).json(body).send().await.expect("POST")
}

/// What the browser gets from a `start`: the ceremony token and the options.
async fn start<T: serde::de::DeserializeOwned>(client: &Client, path: &str, csrf: &str) -> (String, T) {
    let response = post_json(client, path, &json!({ "csrf_token": csrf })).await;
    assert_eq!(response.status(), 200, "start {path}");
    let body: Value = response.json().await.unwrap();
    let ceremony = body["ceremony"].as_str().unwrap().to_owned();
    (ceremony, serde_json::from_value(body["options"].clone()).unwrap())
}

/// Registers a passkey for the client's user, as made for `origin`; returns the finish response.
async fn register_for(client: &Client, device: &mut Device, name: &str, origin: &str) -> reqwest::Response {
    let csrf = client.csrf_token("/settings/passkeys").await;
    let (ceremony, mut options): (String, CreationChallengeResponse) =
        start(client, "/settings/passkeys/register/start", &csrf).await;
    let selection = options.public_key.authenticator_selection.as_mut().unwrap();
    // The portal asks for a discoverable key; the software authenticator cannot store one.
    assert!(selection.require_resident_key, "the portal asks for a discoverable credential");
    selection.require_resident_key = false;
    device.user = Uuid::from_slice(&options.public_key.user.id).unwrap();
    let credential = device.soft.do_registration(Url::parse(origin).unwrap(), options).unwrap();
    device.credential_id = credential.raw_id.to_vec();
    post_json(
        client,
        "/settings/passkeys/register/finish",
        &json!({ "csrf_token": csrf, "ceremony": ceremony, "name": name, "credential": credential }),
    )
    .await
}

async fn register(app: &TestApp, client: &Client, device: &mut Device, name: &str) {
    let response = register_for(client, device, name, &app.origin).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["redirect"], "/settings/passkeys");
}

/// An assertion by `device` for a sign-in ceremony, as a discoverable key would answer.
fn assert_with(device: &mut Device, options: RequestChallengeResponse, origin: &str) -> PublicKeyCredential {
    let mut options = options;
    assert!(options.public_key.allow_credentials.is_empty(), "sign-in asks for any discoverable key");
    options.public_key.allow_credentials =
        vec![AllowCredentials { type_: "public-key".into(), id: device.credential_id.clone(), transports: None }];
    let mut credential = device.soft.do_authentication(Url::parse(origin).unwrap(), options).unwrap();
    credential.response.user_handle = Some(device.user.as_bytes().to_vec());
    credential
}

/// The anonymous sign-in page's CSRF token (sets the double-submit cookie).
async fn login_csrf(client: &Client) -> String {
    csrf_in(&client.get_html("/login").await).unwrap()
}

/// Signs `client` in with `device`; returns the finish response.
async fn sign_in_with(app: &TestApp, client: &Client, device: &mut Device) -> reqwest::Response {
    let csrf = login_csrf(client).await;
    let (ceremony, options) = start(client, "/login/passkey/start", &csrf).await;
    let credential = assert_with(device, options, &app.origin);
    post_json(
        client,
        "/login/passkey/finish",
        &json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential }),
    )
    .await
}

async fn error_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

async fn passkey_id(app: &TestApp, name: &str) -> Uuid {
    app.sql().await.query_one("SELECT id FROM passkeys WHERE name = $1", &[&name]).await.unwrap().get(0)
}

#[tokio::test]
async fn alice_adds_a_passkey_and_signs_in_with_it_without_a_password() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Work laptop").await;

    let page = alice.get_html("/settings/passkeys").await;
    assert!(page.contains("Work laptop") && page.contains("Not used yet"), "{page}");
    let email = app.mail().wait_for(ALICE, "A passkey was added").await;
    assert!(email.text.contains("Work laptop"), "{}", email.text);

    let browser = app.client();
    let response = sign_in_with(&app, &browser, &mut device).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["redirect"], "/");
    let dashboard = browser.get_html("/").await;
    assert!(dashboard.contains("Acme Manufacturing"), "signed in as alice");

    // Logged like any sign-in, and the passkey shows its use.
    let sql = app.sql().await;
    let method: String = sql
        .query_one(
            "SELECT details->>'method' FROM activity_log WHERE action = 'auth.sign_in' AND actor_label = $1 \
             ORDER BY id DESC LIMIT 1",
            &[&ALICE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "passkey");
    let used: Option<time::OffsetDateTime> =
        sql.query_one("SELECT last_used_at FROM passkeys", &[]).await.unwrap().get(0);
    assert!(used.is_some());
    assert!(!alice.get_html("/settings/passkeys").await.contains("Not used yet"));
}

#[tokio::test]
async fn a_ceremony_for_another_origin_is_refused() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    // Another site the authenticator accepts for the relying party `localhost` (any port of
    // it, as browsers do), which the portal must not: only its own origin counts.
    let phishing = "http://localhost:1".to_owned();

    let mut device = Device::new();
    let response = register_for(&alice, &mut device, "Phished", &phishing).await;
    assert_eq!(response.status(), 400, "a registration made on another site");
    assert_eq!(app.sql().await.query_one("SELECT count(*) FROM passkeys", &[]).await.unwrap().get::<_, i64>(0), 0);

    register(&app, &alice, &mut device, "Real").await;
    let browser = app.client();
    let csrf = login_csrf(&browser).await;
    let (ceremony, options) = start(&browser, "/login/passkey/start", &csrf).await;
    let credential = assert_with(&mut device, options, &phishing);
    let response = post_json(
        &browser,
        "/login/passkey/finish",
        &json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential }),
    )
    .await;
    assert_eq!(response.status(), 401, "an assertion made on another site");
    assert_eq!(browser.get("/").await.status(), 303, "not signed in");
}

#[tokio::test]
async fn an_assertion_works_once_and_a_ceremony_once() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Laptop").await;

    let browser = app.client();
    let csrf = login_csrf(&browser).await;
    let (ceremony, options) = start(&browser, "/login/passkey/start", &csrf).await;
    let credential = assert_with(&mut device, options, &app.origin);
    let finish = json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential });
    assert_eq!(post_json(&browser, "/login/passkey/finish", &finish).await.status(), 200);

    // The same request again: its ceremony is spent.
    let replay = app.client();
    let csrf = login_csrf(&replay).await;
    let again = json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential });
    let response = post_json(&replay, "/login/passkey/finish", &again).await;
    assert_eq!(response.status(), 410);
    assert!(error_of(response).await.contains("Try again"));

    // The old assertion under a fresh ceremony: the challenge it signed is not this one.
    let (fresh, _) = start::<Value>(&replay, "/login/passkey/start", &csrf).await;
    let replayed = json!({ "csrf_token": csrf, "ceremony": fresh, "credential": credential });
    assert_eq!(post_json(&replay, "/login/passkey/finish", &replayed).await.status(), 401);
    assert_eq!(replay.get("/").await.status(), 303, "not signed in");
}

#[tokio::test]
async fn expired_ceremonies_and_other_sessions_ceremonies_are_refused() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Laptop").await;
    let sql = app.sql().await;

    // Expired: the ceremony is five minutes old.
    let browser = app.client();
    let csrf = login_csrf(&browser).await;
    let (ceremony, options) = start(&browser, "/login/passkey/start", &csrf).await;
    let expired =
        sql.execute("UPDATE webauthn_ceremonies SET expires_at = now() - interval '1 second'", &[]).await.unwrap();
    assert_eq!(expired, 1);
    let credential = assert_with(&mut device, options, &app.origin);
    let body = json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential });
    assert_eq!(post_json(&browser, "/login/passkey/finish", &body).await.status(), 410);

    // A registration begun in alice's session cannot be finished from another of her sessions.
    let csrf = alice.csrf_token("/settings/passkeys").await;
    let (ceremony, mut options): (String, CreationChallengeResponse) =
        start(&alice, "/settings/passkeys/register/start", &csrf).await;
    options.public_key.authenticator_selection.as_mut().unwrap().require_resident_key = false;
    let credential = Device::new().soft.do_registration(Url::parse(&app.origin).unwrap(), options).unwrap();
    let other = app.signed_in(ALICE).await;
    let other_csrf = other.csrf_token("/settings/passkeys").await;
    let body = json!({ "csrf_token": other_csrf, "ceremony": ceremony, "name": "Stolen", "credential": credential });
    assert_eq!(post_json(&other, "/settings/passkeys/register/finish", &body).await.status(), 410);
    assert_eq!(sql.query_one("SELECT count(*) FROM passkeys", &[]).await.unwrap().get::<_, i64>(0), 1);
    // Alice's own session finishes it, once.
    let body = json!({ "csrf_token": csrf, "ceremony": ceremony, "name": "Second", "credential": credential });
    assert_eq!(post_json(&alice, "/settings/passkeys/register/finish", &body).await.status(), 200);
    assert_eq!(post_json(&alice, "/settings/passkeys/register/finish", &body).await.status(), 410);
    assert_eq!(sql.query_one("SELECT count(*) FROM passkeys", &[]).await.unwrap().get::<_, i64>(0), 2);
}

#[tokio::test]
async fn a_removed_passkey_no_longer_signs_in() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Old phone").await;
    let id = passkey_id(&app, "Old phone").await;

    // Just signed in, so no confirmation is asked.
    let csrf = alice.csrf_token("/settings/passkeys").await;
    let response = alice.post_form(&format!("/settings/passkeys/{id}/remove"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings/passkeys");
    app.mail().wait_for(ALICE, "A passkey was removed").await;

    let response = sign_in_with(&app, &app.client(), &mut device).await;
    assert_eq!(response.status(), 401);
    assert!(error_of(response).await.contains("not accepted"));
}

#[tokio::test]
async fn a_passkey_never_signs_in_anyone_but_its_owner() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Alice's key").await;

    // Alice's key claiming to be dave's (the user handle is not signed, so it is checked against the key's owner).
    let dave_id: Uuid =
        app.sql().await.query_one("SELECT id FROM users WHERE email = $1", &[&DAVE]).await.unwrap().get(0);
    let real_owner = device.user;
    device.user = dave_id;
    let browser = app.client();
    assert_eq!(sign_in_with(&app, &browser, &mut device).await.status(), 401);
    assert_eq!(browser.get("/").await.status(), 303, "not signed in");
    device.user = real_owner;

    // Dave, signed in, cannot confirm his session with alice's key, nor rename or remove it.
    let dave = app.signed_in(DAVE).await;
    let id = passkey_id(&app, "Alice's key").await;
    let csrf = dave.csrf_token("/settings/passkeys").await;
    for action in ["remove", "rename"] {
        let response = dave
            .post_form(&format!("/settings/passkeys/{id}/{action}"), &[("csrf_token", &csrf), ("name", "Mine now")])
            .await;
        assert_eq!(response.status(), 404, "{action} of another user's passkey");
    }
    assert!(!dave.get_html("/settings/passkeys").await.contains("Alice's key"));
    let response = post_json(&dave, "/settings/confirm/passkey/start", &json!({ "csrf_token": csrf })).await;
    assert_eq!(response.status(), 409, "dave has no passkey to confirm with");
    assert_eq!(
        app.sql().await.query_one("SELECT name FROM passkeys", &[]).await.unwrap().get::<_, String>(0),
        "Alice's key"
    );
}

#[tokio::test]
async fn a_counter_that_goes_backwards_is_refused_and_logged() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "Key").await;
    let sql = app.sql().await;
    // The stored counter says the key has signed 5 times; this one says 0: a copy of the key.
    sql.execute("UPDATE passkeys SET credential = jsonb_set(credential, '{cred,counter}', '5')", &[]).await.unwrap();

    let response = sign_in_with(&app, &app.client(), &mut device).await;
    assert_eq!(response.status(), 401);
    let logged: i64 = sql
        .query_one("SELECT count(*) FROM activity_log WHERE action = 'auth.passkey_clone_suspected'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);
}

#[tokio::test]
async fn sensitive_changes_ask_to_confirm_after_ten_minutes() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut device = Device::new();
    register(&app, &alice, &mut device, "First").await;
    register(&app, &alice, &mut Device::new(), "Second").await;
    let sql = app.sql().await;
    sql.execute("UPDATE sessions SET verified_at = now() - interval '11 minutes'", &[]).await.unwrap();

    let id = passkey_id(&app, "Second").await;
    let csrf = alice.csrf_token("/settings/passkeys").await;
    // Adding a passkey is a new way in: it needs the confirmation too.
    let response = post_json(&alice, "/settings/passkeys/register/start", &json!({ "csrf_token": csrf })).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["redirect"], "/settings/confirm?next=%2Fsettings%2Fpasskeys");
    let response = alice.post_form(&format!("/settings/passkeys/{id}/remove"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings/confirm?next=%2Fsettings%2Fpasskeys");
    assert_eq!(sql.query_one("SELECT count(*) FROM passkeys", &[]).await.unwrap().get::<_, i64>(0), 2, "not removed");

    // A wrong password does not confirm; the right one does.
    let page = alice.get_html("/settings/confirm?next=%2Fsettings%2Fpasskeys").await;
    assert!(page.contains("Confirm with a passkey") && page.contains("Confirm with your password"));
    let form = [("csrf_token", csrf.as_str()), ("password", "not-her-password"), ("next", "/settings/passkeys")];
    assert_eq!(alice.post_form("/settings/confirm", &form).await.status(), 401);
    let form = [("csrf_token", csrf.as_str()), ("password", PASSWORD), ("next", "/settings/passkeys")];
    let response = alice.post_form("/settings/confirm", &form).await;
    assert_eq!(location(&response), "/settings/passkeys");
    let response = alice.post_form(&format!("/settings/passkeys/{id}/remove"), &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&response), "/settings/passkeys");
    assert_eq!(sql.query_one("SELECT count(*) FROM passkeys", &[]).await.unwrap().get::<_, i64>(0), 1, "removed");

    // Confirming with the passkey works the same, and an offsite `next` is not followed.
    sql.execute("UPDATE sessions SET verified_at = now() - interval '11 minutes'", &[]).await.unwrap();
    let (ceremony, options): (String, RequestChallengeResponse) =
        start(&alice, "/settings/confirm/passkey/start", &csrf).await;
    assert_eq!(options.public_key.allow_credentials.len(), 1, "only alice's own passkey is asked for");
    let credential = device.soft.do_authentication(Url::parse(&app.origin).unwrap(), options).unwrap();
    let body = json!({ "csrf_token": csrf, "ceremony": ceremony, "credential": credential, "next": "//evil.example" });
    let response = post_json(&alice, "/settings/confirm/passkey/finish", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["redirect"], "/settings/passkeys");
    let verified: bool = sql
        .query_one("SELECT bool_or(verified_at > now() - interval '1 minute') FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(verified);
}

#[tokio::test]
async fn with_password_sign_in_off_only_the_passkey_gets_in() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let csrf = alice.csrf_token("/settings/passkeys").await;
    let off = [("csrf_token", csrf.as_str()), ("enabled", "off")];

    // Not without a passkey.
    let response = alice.post_form("/settings/passkeys/password", &off).await;
    assert_eq!(location(&response), "/settings/passkeys");
    assert!(alice.get_html("/settings/passkeys").await.contains("Add a passkey before"));

    let mut device = Device::new();
    register(&app, &alice, &mut device, "Only key").await;
    let elsewhere = app.signed_in(ALICE).await;
    assert_eq!(alice.post_form("/settings/passkeys/password", &off).await.status(), 303);
    // A session that may have come from a leaked password ends.
    assert_eq!(elsewhere.get("/").await.status(), 303);
    assert!(alice.get_html("/settings/passkeys").await.contains("only your passkeys can sign in"));

    // The right password is now refused like a wrong one; the passkey works.
    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 401);
    assert_eq!(sign_in_with(&app, &app.client(), &mut device).await.status(), 200);

    // The last passkey of an account without a password stays.
    let id = passkey_id(&app, "Only key").await;
    let response = alice.post_form(&format!("/settings/passkeys/{id}/remove"), &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&response), "/settings/passkeys");
    assert!(alice.get_html("/settings/passkeys").await.contains("Turn password sign-in on first"));

    // A password reset is the way back for someone who lost their passkeys.
    let on = [("csrf_token", csrf.as_str()), ("enabled", "on")];
    assert_eq!(alice.post_form("/settings/passkeys/password", &on).await.status(), 303);
    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn renaming_keeps_what_was_typed_when_refused() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    register(&app, &alice, &mut Device::new(), "Laptop").await;
    let id = passkey_id(&app, "Laptop").await;
    let csrf = alice.csrf_token("/settings/passkeys").await;

    let too_long = "x".repeat(101);
    let response = alice
        .post_form(&format!("/settings/passkeys/{id}/rename"), &[("csrf_token", &csrf), ("name", &too_long)])
        .await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("at most 100 characters") && page.contains(&too_long));

    let response = alice
        .post_form(&format!("/settings/passkeys/{id}/rename"), &[("csrf_token", &csrf), ("name", "Desk <b>")])
        .await;
    assert_eq!(response.status(), 303);
    let page = alice.get_html("/settings/passkeys").await;
    assert!(page.contains("Desk &lt;b&gt;") && !page.contains("Desk <b>"), "escaped");
}

#[tokio::test]
async fn ceremonies_need_the_csrf_token() {
    let app = spawn_app().await;
    let browser = app.client();
    login_csrf(&browser).await;
    let response = post_json(&browser, "/login/passkey/start", &json!({ "csrf_token": "forged" })).await;
    assert_eq!(response.status(), 403);
    let alice = app.signed_in(ALICE).await;
    let response = post_json(&alice, "/settings/passkeys/register/start", &json!({})).await;
    assert_eq!(response.status(), 403);
    let count: i64 = app.sql().await.query_one("SELECT count(*) FROM webauthn_ceremonies", &[]).await.unwrap().get(0);
    assert_eq!(count, 0, "no ceremony was begun");
}

#[tokio::test]
async fn staff_can_require_passkeys_for_staff() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let csrf = staff.csrf_token("/staff/security").await;
    // Customers cannot reach the page or the setting.
    let alice = app.signed_in(ALICE).await;
    assert_eq!(alice.get("/staff/security").await.status(), 403);

    let response = staff.post_form("/staff/security", &[("csrf_token", &csrf), ("required", "on")]).await;
    assert_eq!(location(&response), "/staff/security");
    // Without a passkey, the back office sends them to add one first.
    let response = staff.get("/staff/customers").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings/passkeys");
    assert!(staff.get_html("/settings/passkeys").await.contains("Staff must sign in with a passkey"));
    // Nor the live feed, nor the metrics.
    assert!(matches!(open(&staff, Some(&app.origin)).await, Err(Refusal::Status(403))));
    assert_eq!(staff.get("/metrics").await.status(), 403);

    let mut device = Device::new();
    register(&app, &staff, &mut device, "Staff key").await;
    assert_eq!(staff.get("/staff/customers").await.status(), 200);
    // Now the password no longer signs staff in, and the passkey does, into the back office.
    assert_eq!(app.client().sign_in(STAFF, PASSWORD).await.status(), 401);
    let response = sign_in_with(&app, &app.client(), &mut device).await;
    assert_eq!(response.json::<Value>().await.unwrap()["redirect"], "/staff");
    // Customers are not affected.
    assert_eq!(app.client().sign_in(DAVE, PASSWORD).await.status(), 303);
}
