//! Settings → Security: changing the password and the email address, ending
//! sessions, and the user's recent sign-in activity.

use uuid::Uuid;

use crate::support::{Client, PASSWORD, TestApp, csrf_in, location, spawn_app};

const ALICE: &str = "alice@acme.example";
const NEW_PASSWORD: &str = "lantern orbit velvet canyon";

/// Posts a form of the settings page with the page's own CSRF token.
async fn post_settings(client: &Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let token = client.csrf_token("/settings").await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    client.post_form(path, &form).await
}

async fn change_password(client: &Client, current: &str, new: &str, confirm: &str) -> reqwest::Response {
    post_settings(
        client,
        "/settings/password",
        &[("current_password", current), ("new_password", new), ("confirm_password", confirm)],
    )
    .await
}

async fn request_email_change(client: &Client, new_email: &str, password: &str) -> reqwest::Response {
    post_settings(client, "/settings/email", &[("new_email", new_email), ("current_password", password)]).await
}

async fn password_hash(app: &TestApp, email: &str) -> String {
    app.sql().await.query_one("SELECT password_hash FROM users WHERE email = $1", &[&email]).await.unwrap().get(0)
}

async fn outbox_count(app: &TestApp, template: &str, to: &str) -> i64 {
    app.sql()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE template = $1 AND to_address = $2", &[&template, &to])
        .await
        .unwrap()
        .get(0)
}

async fn user_exists(app: &TestApp, email: &str) -> bool {
    app.sql().await.query_one("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", &[&email]).await.unwrap().get(0)
}

/// The confirmation link emailed to `to`: the path the user opens.
async fn email_change_link(app: &TestApp, to: &str) -> String {
    let link = app.mail().wait_for(to, "Confirm your new email address").await.link();
    assert!(link.starts_with("/settings/email/"), "{link}");
    link
}

/// Whether `client` is still signed in (a signed-out client is sent to the sign-in page).
async fn is_signed_in(client: &Client) -> bool {
    let response = client.get("/settings").await;
    match response.status().as_u16() {
        200 => true,
        303 => {
            assert!(location(&response).starts_with("/login"), "{}", location(&response));
            false
        }
        other => panic!("unexpected status {other}"),
    }
}

/// The session ids the page offers a "Sign out" button for.
fn end_buttons(page: &str) -> Vec<Uuid> {
    page.match_indices("action=\"/settings/sessions/")
        .filter_map(|(at, m)| {
            let rest = &page[at + m.len()..];
            let (id, tail) = rest.split_once('/')?;
            tail.starts_with("end\"").then(|| id.parse().ok()).flatten()
        })
        .collect()
}

/// The text as sailfish puts it in a page.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('\'', "&#039;").replace('<', "&lt;").replace('>', "&gt;")
}

// ---- Password ---------------------------------------------------------------

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let elsewhere = app.signed_in(ALICE).await;
    let before = password_hash(&app, ALICE).await;

    let response = change_password(&alice, "not-my-password", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("That is not your current password."));
    assert!(page.contains("aria-describedby=\"password-current-error\""), "the error is tied to its field");
    assert!(!page.contains(NEW_PASSWORD) && !page.contains("not-my-password"), "passwords are never sent back");

    assert_eq!(password_hash(&app, ALICE).await, before);
    assert!(is_signed_in(&elsewhere).await, "no session ended");
    assert_eq!(outbox_count(&app, "password_changed", ALICE).await, 0);
    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn a_weak_or_mistyped_new_password_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let before = password_hash(&app, ALICE).await;
    let name: String =
        app.sql().await.query_one("SELECT name FROM users WHERE email = $1", &[&ALICE]).await.unwrap().get(0);

    let weak = "password123";
    let Err(portal::auth::strength::Weak(why)) = portal::auth::strength::check(weak, &[&name, ALICE]).await else {
        panic!("{weak} should be weak");
    };
    let response = change_password(&alice, PASSWORD, weak, weak).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains(&escaped(&why)), "zxcvbn's reason is shown: {why}");
    assert!(page.contains("id=\"password-new-error\""));
    assert!(!page.contains(weak));

    let response = change_password(&alice, PASSWORD, NEW_PASSWORD, "lantern orbit velvet canyonn").await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("The two new passwords are not the same."));

    assert_eq!(password_hash(&app, ALICE).await, before);
}

#[tokio::test]
async fn a_new_password_signs_out_everywhere_else_and_replaces_the_old_one() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let elsewhere = app.signed_in(ALICE).await;
    let dave = app.signed_in("dave@acme.example").await;

    let response = change_password(&alice, PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings");
    assert!(alice.get_html("/settings").await.contains("Your password has been changed."));

    assert!(is_signed_in(&alice).await, "the session that changed it stays");
    assert!(!is_signed_in(&elsewhere).await, "every other session of the user ends");
    assert!(is_signed_in(&dave).await, "a colleague's session is not the user's");

    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 401);
    assert_eq!(app.client().sign_in(ALICE, NEW_PASSWORD).await.status(), 303);
    app.mail().wait_for(ALICE, "Your Portal password was changed").await;
    assert_eq!(outbox_count(&app, "password_changed", ALICE).await, 1);
}

// ---- Email ------------------------------------------------------------------

#[tokio::test]
async fn an_email_change_takes_effect_only_when_the_link_is_confirmed() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let new = "alice.lee@acme.example";

    let response = request_email_change(&alice, "  Alice.Lee@Acme.example ", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings");
    let settings = alice.get_html("/settings").await;
    assert!(
        settings.contains(&format!("We sent a confirmation link to {new}. Your address changes when you open it."))
    );
    let link = email_change_link(&app, new).await;

    // Opening the link (as mail scanners do, or signed out) changes nothing.
    let signed_out = app.client().get(&link).await;
    assert_eq!(signed_out.status(), 303);
    assert!(location(&signed_out).starts_with("/login?next="));
    let shown = alice.get(&link).await;
    assert_eq!(shown.status(), 200);
    assert_eq!(
        shown.headers().get("referrer-policy").unwrap(),
        "same-origin",
        "the token never leaves in a Referer to another site"
    );
    let page = shown.text().await.unwrap();
    assert!(page.contains(new) && page.contains(&format!("action=\"{link}\"")));
    assert!(user_exists(&app, ALICE).await && !user_exists(&app, new).await);

    let token = csrf_in(&page).unwrap();
    let confirmed = alice.post_form(&link, &[("csrf_token", &token)]).await;
    assert_eq!(confirmed.status(), 303);
    assert_eq!(location(&confirmed), "/settings");
    assert!(alice.get_html("/settings").await.contains(&format!("Your email address is now {new}.")));
    assert!(!user_exists(&app, ALICE).await && user_exists(&app, new).await);

    assert_eq!(app.client().sign_in(new, PASSWORD).await.status(), 303);
    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 401);
    app.mail().wait_for(ALICE, "Your sign-in email was changed").await;

    // A link works once.
    let again = alice.post_form(&link, &[("csrf_token", &token)]).await;
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("This link no longer works"));
    assert_eq!(alice.get(&link).await.status(), 410);
}

#[tokio::test]
async fn a_link_opened_in_another_account_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let new = "alice.lee@acme.example";
    assert_eq!(request_email_change(&alice, new, PASSWORD).await.status(), 303);
    let link = email_change_link(&app, new).await;

    let bob = app.signed_in("bob@globex.example").await;
    let token = bob.csrf_token("/settings").await;
    let refused = bob.post_form(&link, &[("csrf_token", &token)]).await;
    assert_eq!(refused.status(), 410);
    assert!(refused.text().await.unwrap().contains("This link no longer works"));
    assert!(user_exists(&app, ALICE).await && user_exists(&app, "bob@globex.example").await);
    assert!(!user_exists(&app, new).await);

    // Bob's attempt did not use the link up: it still works for the account that asked.
    let token = alice.csrf_token("/settings").await;
    assert_eq!(alice.post_form(&link, &[("csrf_token", &token)]).await.status(), 303);
    assert!(user_exists(&app, new).await);
}

#[tokio::test]
async fn an_address_that_is_taken_gets_the_same_answer_and_no_link() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let taken = "bob@globex.example";
    let response = request_email_change(&alice, taken, PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings");
    assert!(alice.get_html("/settings").await.contains(&format!("We sent a confirmation link to {taken}.")));
    assert_eq!(outbox_count(&app, "email_change", taken).await, 0, "no link to take over an existing account");
    app.mail().wait_for(taken, "You already have a Portal account").await;
}

#[tokio::test]
async fn an_invalid_address_or_wrong_password_sends_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;

    let response = request_email_change(&alice, "alice.lee@acme", PASSWORD).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("Enter an email address, like name@example.com."));
    assert!(page.contains("value=\"alice.lee@acme\""), "the address typed is kept");
    assert!(page.contains("aria-describedby=\"email-new-error\""));

    let response = request_email_change(&alice, "alice.lee@acme.example", "not-my-password").await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains("That is not your current password."));
    assert!(page.contains("value=\"alice.lee@acme.example\"") && !page.contains("not-my-password"));

    let queued: i64 = app.sql().await.query_one("SELECT count(*) FROM outbox", &[]).await.unwrap().get(0);
    assert_eq!(queued, 0);
}

// ---- Sessions ---------------------------------------------------------------

#[tokio::test]
async fn ending_another_session_signs_that_client_out() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let laptop = app.signed_in(ALICE).await;

    let page = alice.get_html("/settings").await;
    let offered = end_buttons(&page);
    assert_eq!(offered.len(), 1, "one button, for the other session, none for this one");
    let id = offered[0];

    let response = post_settings(&alice, &format!("/settings/sessions/{id}/end"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/settings");
    assert!(!is_signed_in(&laptop).await);
    assert!(is_signed_in(&alice).await);
    let logged: i64 = app
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM activity_log WHERE action = 'auth.session_revoked' AND subject_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);
    assert!(end_buttons(&alice.get_html("/settings").await).is_empty());
}

#[tokio::test]
async fn sessions_that_are_not_the_users_others_are_not_found() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let dave = app.signed_in("dave@acme.example").await;
    let bob = app.signed_in("bob@globex.example").await;
    let sql = app.sql().await;
    let session_of = |email: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one("SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1", &[&email])
                .await
                .unwrap()
                .get::<_, Uuid>(0)
        }
    };
    for id in [
        session_of("bob@globex.example").await.to_string(),
        session_of("dave@acme.example").await.to_string(),
        session_of(ALICE).await.to_string(),
        Uuid::new_v4().to_string(),
        "not-a-session".to_owned(),
    ] {
        let response = post_settings(&alice, &format!("/settings/sessions/{id}/end"), &[]).await;
        assert_eq!(response.status(), 404, "{id}");
    }
    assert!(is_signed_in(&alice).await && is_signed_in(&dave).await && is_signed_in(&bob).await);
    let revoked: i64 = sql
        .query_one("SELECT count(*) FROM activity_log WHERE action = 'auth.session_revoked'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revoked, 0);
}

#[tokio::test]
async fn signing_out_everywhere_else_keeps_this_session_and_colleagues() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let laptop = app.signed_in(ALICE).await;
    let phone = app.signed_in(ALICE).await;
    let dave = app.signed_in("dave@acme.example").await;

    let response = post_settings(&alice, "/settings/sessions/end-others", &[]).await;
    assert_eq!(response.status(), 303);
    assert!(alice.get_html("/settings").await.contains("Signed out of 2 other sessions."));
    assert!(!is_signed_in(&laptop).await && !is_signed_in(&phone).await);
    assert!(is_signed_in(&alice).await && is_signed_in(&dave).await);
}

// ---- CSRF and activity --------------------------------------------------------

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let laptop = app.signed_in(ALICE).await;
    let before = password_hash(&app, ALICE).await;

    let response = alice
        .post_form(
            "/settings/password",
            &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD), ("confirm_password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(password_hash(&app, ALICE).await, before);

    let id = end_buttons(&alice.get_html("/settings").await)[0];
    assert_eq!(alice.post_form(&format!("/settings/sessions/{id}/end"), &[]).await.status(), 403);
    assert_eq!(alice.post_form("/settings/sessions/end-others", &[("csrf_token", "forged")]).await.status(), 403);
    assert!(is_signed_in(&laptop).await);

    let response = alice
        .post_form("/settings/email", &[("new_email", "alice.lee@acme.example"), ("current_password", PASSWORD)])
        .await;
    assert_eq!(response.status(), 403);
    let queued: i64 = app.sql().await.query_one("SELECT count(*) FROM outbox", &[]).await.unwrap().get(0);
    assert_eq!(queued, 0);
}

#[tokio::test]
async fn recent_activity_shows_the_users_own_sign_in_events() {
    let app = spawn_app().await;
    assert_eq!(app.client().sign_in(ALICE, "a wrong guess").await.status(), 401);
    assert_eq!(app.client().sign_in("dave@acme.example", "a wrong guess").await.status(), 401);
    let alice = app.signed_in(ALICE).await;

    let page = alice.get_html("/settings").await;
    let (_, activity) = page.split_once("id=\"activity-heading\"").expect("an activity section");
    assert_eq!(activity.matches("Failed sign-in attempt").count(), 1, "alice's failure, not dave's");
    assert!(activity.contains("Signed in"));
    assert!(activity.contains("127.0.0.1"), "with the address it came from");
}

#[tokio::test]
async fn too_many_email_change_requests_are_refused_for_a_while() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let (budget, _) = portal::auth::throttle::Limit::EmailChange.budget();
    for n in 0..budget {
        let response = request_email_change(&alice, &format!("alice.{n}@acme.example"), PASSWORD).await;
        assert_eq!(response.status(), 303, "request {n} is within the budget");
    }
    let response = request_email_change(&alice, "alice.more@acme.example", PASSWORD).await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
    let page = response.text().await.unwrap();
    assert!(page.contains("You have asked for several confirmation links in a short time."));
    assert!(page.contains("value=\"alice.more@acme.example\""), "the address typed is kept");
    assert_eq!(outbox_count(&app, "email_change", "alice.more@acme.example").await, 0);

    // The budget is the user's: a colleague is not held back by it.
    let dave = app.signed_in("dave@acme.example").await;
    assert_eq!(request_email_change(&dave, "dave.new@acme.example", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn guessing_the_current_password_locks_like_the_sign_in_page() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    for _ in 0..5 {
        assert_eq!(change_password(&alice, "a wrong guess", NEW_PASSWORD, NEW_PASSWORD).await.status(), 422);
    }
    // A stolen session guesses no faster than the sign-in page allows, and even the right password waits.
    let locked = change_password(&alice, PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().get("retry-after").is_some());
    assert_eq!(app.client().sign_in(ALICE, PASSWORD).await.status(), 429, "the account itself is locked");
}
