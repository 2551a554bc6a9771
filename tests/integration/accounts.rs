//! Getting in without help: invitations (Team and back office), self-registration
//! with a confirmed address, password resets, and disabling accounts. Emails go
//! through the real outbox worker to a real SMTP server the harness runs.

use std::time::Duration;

use crate::support::{PASSWORD, TestApp, location, spawn_app};

const NEW_PASSWORD: &str = "plum orchard tiny lantern 47";

/// Posts a form with the CSRF token of the page at `page`.
async fn post_from(
    client: &crate::support::Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = client.csrf_token(page).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    client.post_form(action, &form).await
}

async fn user_id(app: &TestApp, email: &str) -> uuid::Uuid {
    app.sql().await.query_one("SELECT id FROM users WHERE email = $1", &[&email]).await.unwrap().get(0)
}

/// The page after a form that sends an email, with the address typed taken out:
/// what must not differ between addresses that have an account and those that don't.
fn without(body: &str, email: &str) -> String {
    let body = body.replace(email, "EMAIL");
    // The CSRF token is the only other thing allowed to differ.
    match crate::support::csrf_in(&body) {
        Some(token) => body.replace(&token, "TOKEN"),
        None => body,
    }
}

#[tokio::test]
async fn an_admin_invites_a_colleague_who_accepts_and_is_signed_in() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    let response = post_from(
        &alice,
        "/team",
        "/team/invite",
        &[("name", "Dave Two"), ("email", "Dave2@Acme.example"), ("role", "customer_member")],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/team");
    let team = alice.get_html("/team").await;
    assert!(team.contains("<td>dave2@acme.example</td>") && team.contains("Invited"), "{team}");

    let email = app.mail().wait_for("dave2@acme.example", "").await;
    let link = email.link();
    assert!(link.starts_with("/invitation/"), "{link}");
    assert!(email.text.contains("Alice Lee") && email.text.contains("Acme Manufacturing"), "{}", email.text);

    // Not an account yet: an invitee cannot sign in before choosing a password.
    let dave2 = app.client();
    assert_eq!(dave2.sign_in("dave2@acme.example", NEW_PASSWORD).await.status(), 401);
    let page = dave2.get(&link).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers().get("referrer-policy").unwrap(),
        "same-origin",
        "the token never leaves in a Referer to another site"
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("dave2@acme.example") && page.contains("Dave Two"));

    // A weak password is refused with the estimator's reason, and the name typed is kept.
    let weak =
        post_from(&dave2, &link, &link, &[("name", "David Two"), ("password", "password1"), ("confirm", "password1")])
            .await;
    assert_eq!(weak.status(), 422);
    let weak = weak.text().await.unwrap();
    assert!(weak.contains("too easy to guess") && weak.contains("David Two"), "{weak}");
    assert!(!weak.contains("password1"), "a refused password is never sent back");
    let mismatch =
        post_from(&dave2, &link, &link, &[("name", "David Two"), ("password", NEW_PASSWORD), ("confirm", "other")])
            .await;
    assert_eq!(mismatch.status(), 422);

    let accepted = post_from(
        &dave2,
        &link,
        &link,
        &[("name", "David Two"), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(accepted.status(), 303);
    assert_eq!(location(&accepted), "/");
    let home = dave2.get_html("/").await;
    assert!(home.contains("David Two") && home.contains("Acme Manufacturing"));
    assert!(alice.get_html("/team").await.contains("David Two"));

    // The link worked once.
    assert_eq!(app.client().get(&link).await.status(), 410);
    assert_eq!(app.client().sign_in("dave2@acme.example", NEW_PASSWORD).await.status(), 303);
    let logged: Vec<String> = app
        .sql()
        .await
        .query("SELECT action FROM activity_log WHERE action LIKE 'user.invit%' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged, ["user.invited", "user.invitation_accepted"]);
}

#[tokio::test]
async fn inviting_someone_elses_user_looks_the_same_and_only_tells_the_owner() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    let response = post_from(
        &alice,
        "/team",
        "/team/invite",
        &[("name", "Bob"), ("email", "bob@globex.example"), ("role", "customer_member")],
    )
    .await;
    assert_eq!(response.status(), 303, "same answer as for a new address");
    let notice = app.mail().wait_for("bob@globex.example", "").await;
    assert!(!notice.text.contains("/invitation/"), "no invitation link for an existing account");
    let sql = app.sql().await;
    let customers: i64 = sql
        .query_one("SELECT count(DISTINCT customer_id) FROM users WHERE email = 'bob@globex.example'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(customers, 1);
    assert!(!alice.get_html("/team").await.contains("<td>bob@globex.example</td>"), "no team row for bob");
    // Someone already on the team is named as such (their own team is no secret).
    let again =
        post_from(&alice, "/team", "/team/invite", &[("name", "Dave"), ("email", "dave@acme.example"), ("role", "")])
            .await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("already on your team"));
}

#[tokio::test]
async fn only_admins_manage_the_team_and_only_their_own() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    let team = dave.get_html("/team").await;
    assert!(!team.contains("Invite a colleague"));
    let refused = post_from(&dave, "/team", "/team/invite", &[("name", "X"), ("email", "x@acme.example")]).await;
    assert_eq!(refused.status(), 403);

    let alice = app.signed_in("alice@acme.example").await;
    let bob = user_id(&app, "bob@globex.example").await;
    for action in ["disable", "enable", "resend", "withdraw"] {
        let response = post_from(&alice, "/team", &format!("/team/{bob}/{action}"), &[]).await;
        assert_eq!(response.status(), 404, "{action} on another customer's user");
    }
    let alice_id = user_id(&app, "alice@acme.example").await;
    assert_eq!(post_from(&alice, "/team", &format!("/team/{alice_id}/disable"), &[]).await.status(), 404);
    let disabled: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM users WHERE disabled_at IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(disabled, 0);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    assert_eq!(dave.get("/").await.status(), 200);
    let alice = app.signed_in("alice@acme.example").await;
    let dave_id = user_id(&app, "dave@acme.example").await;
    let response = post_from(&alice, "/team", &format!("/team/{dave_id}/disable"), &[]).await;
    assert_eq!(response.status(), 303);
    assert!(alice.get_html("/team").await.contains("Disabled"));

    assert_eq!(location(&dave.get("/").await), "/login");
    assert_eq!(app.client().sign_in("dave@acme.example", PASSWORD).await.status(), 401);

    assert_eq!(post_from(&alice, "/team", &format!("/team/{dave_id}/enable"), &[]).await.status(), 303);
    assert_eq!(app.client().sign_in("dave@acme.example", PASSWORD).await.status(), 303);
    let actions: Vec<String> = app
        .sql()
        .await
        .query("SELECT action FROM activity_log WHERE action LIKE 'user.%abled' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["user.disabled", "user.enabled"]);
}

#[tokio::test]
async fn someone_with_a_customers_domain_registers_after_confirming_the_address() {
    let app = spawn_app().await;
    let visitor = app.client();
    let response =
        post_from(&visitor, "/register", "/register", &[("name", "Nina New"), ("email", "nina@acme.example")]).await;
    assert_eq!(response.status(), 200);
    let email = app.mail().wait_for("nina@acme.example", "").await;
    let link = email.link();
    assert!(link.starts_with("/register/"), "{link}");
    // Unconfirmed: no account yet.
    assert!(
        app.sql()
            .await
            .query_opt("SELECT 1 FROM users WHERE email = 'nina@acme.example'", &[])
            .await
            .unwrap()
            .is_none()
    );

    let done = post_from(
        &visitor,
        &link,
        &link,
        &[("name", "Nina New"), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(done.status(), 303);
    let home = visitor.get_html("/").await;
    assert!(home.contains("Nina New") && home.contains("Acme Manufacturing"));
    let role: String = app
        .sql()
        .await
        .query_one("SELECT role FROM users WHERE email = 'nina@acme.example'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "customer_member");
    assert_eq!(app.client().get(&link).await.status(), 410);
}

#[tokio::test]
async fn registration_answers_alike_whoever_asks() {
    let app = spawn_app().await;
    let mut pages = Vec::new();
    for email in ["nina@acme.example", "alice@acme.example", "someone@elsewhere.example"] {
        let client = app.client();
        let response = post_from(&client, "/register", "/register", &[("name", "Somebody"), ("email", email)]).await;
        assert_eq!(response.status(), 200, "{email}");
        pages.push(without(&response.text().await.unwrap(), email));
    }
    assert_eq!(pages[0], pages[1]);
    assert_eq!(pages[0], pages[2]);
    // What differs is what each address receives.
    let elsewhere = app.mail().wait_for("someone@elsewhere.example", "").await;
    assert!(!elsewhere.text.contains("/register/"));
    let existing = app.mail().wait_for("alice@acme.example", "").await;
    assert!(existing.text.contains("/login"), "{}", existing.text);
    assert!(app.mail().wait_for("nina@acme.example", "").await.link().starts_with("/register/"));
    let created: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM users WHERE email IN ('nina@acme.example', 'someone@elsewhere.example')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 0);
}

#[tokio::test]
async fn a_forgotten_password_is_reset_once_and_signs_out_everywhere() {
    let app = spawn_app().await;
    let elsewhere = app.signed_in("alice@acme.example").await;
    let visitor = app.client();
    let response =
        post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "alice@acme.example")]).await;
    assert_eq!(response.status(), 200);
    let email = app.mail().wait_for("alice@acme.example", "").await;
    let link = email.link();
    assert!(link.starts_with("/password/reset/"), "{link}");
    assert!(email.text.contains("30 minutes"), "{}", email.text);

    let page = visitor.get(&link).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers().get("referrer-policy").unwrap(),
        "same-origin",
        "the token never leaves in a Referer to another site"
    );
    let done = post_from(&visitor, &link, &link, &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), "/login");

    assert_eq!(location(&elsewhere.get("/").await), "/login", "other sessions end with the old password");
    assert_eq!(app.client().sign_in("alice@acme.example", PASSWORD).await.status(), 401);
    assert_eq!(app.client().sign_in("alice@acme.example", NEW_PASSWORD).await.status(), 303);
    assert_eq!(visitor.get(&link).await.status(), 410, "the link works once");
    let again = post_from(
        &visitor,
        "/login",
        &link,
        &[("password", "another fine phrase 93"), ("confirm", "another fine phrase 93")],
    )
    .await;
    assert_eq!(again.status(), 410);
    app.mail().wait_for("alice@acme.example", "changed").await;
}

#[tokio::test]
async fn reset_answers_alike_for_missing_accounts_and_sends_them_nothing() {
    let app = spawn_app().await;
    let mut pages = Vec::new();
    for email in ["alice@acme.example", "nobody@acme.example"] {
        let client = app.client();
        let response = post_from(&client, "/password/forgot", "/password/forgot", &[("email", email)]).await;
        assert_eq!(response.status(), 200);
        pages.push(without(&response.text().await.unwrap(), email));
    }
    assert_eq!(pages[0], pages[1]);
    app.mail().wait_for("alice@acme.example", "").await;
    app.mail().expect_none_to("nobody@acme.example", Duration::from_millis(500)).await;
}

#[tokio::test]
async fn reset_links_expire_and_die_when_the_password_changes() {
    let app = spawn_app().await;
    let visitor = app.client();
    post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "dave@acme.example")]).await;
    let link = app.mail().wait_for("dave@acme.example", "").await.link();
    let sql = app.sql().await;
    sql.execute("UPDATE users SET password_changed_at = clock_timestamp() WHERE email = 'dave@acme.example'", &[])
        .await
        .unwrap();
    assert_eq!(visitor.get(&link).await.status(), 410, "a password change kills older links");

    post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "bob@globex.example")]).await;
    let link = app.mail().wait_for("bob@globex.example", "").await.link();
    assert_eq!(visitor.get(&link).await.status(), 200);
    sql.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second'", &[]).await.unwrap();
    assert_eq!(visitor.get(&link).await.status(), 410);
    let late = post_from(&visitor, "/login", &link, &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
    assert_eq!(late.status(), 410);
    assert_eq!(app.client().sign_in("bob@globex.example", PASSWORD).await.status(), 303, "nothing changed");
    // A made-up token looks exactly like a dead one.
    assert_eq!(visitor.get("/password/reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await.status(), 410);
}

#[tokio::test]
async fn reset_emails_are_rate_limited() {
    let app = spawn_app().await;
    let visitor = app.client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response =
            post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "dave@acme.example")]).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let wait: u64 = response.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
            assert!(wait >= 1);
            assert!(response.text().await.unwrap().contains("dave@acme.example"), "the form keeps the address");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let queued: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE to_address = 'dave@acme.example'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 3);
}

#[tokio::test]
async fn forms_that_send_email_need_their_csrf_token() {
    let app = spawn_app().await;
    let client = app.client();
    client.get("/password/forgot").await;
    let response = client.post_form("/password/forgot", &[("email", "alice@acme.example")]).await;
    assert_eq!(response.status(), 403);
    let response = client.post_form("/register", &[("name", "X"), ("email", "x@acme.example")]).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn staff_create_a_customer_whose_first_contact_accepts() {
    let app = spawn_app().await;
    let staff = app.signed_in("staff@portal.example").await;
    let refused = post_from(
        &staff,
        "/staff/customers/new",
        "/staff/customers",
        &[("name", ""), ("contact_email", "ann@initech.example")],
    )
    .await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("ann@initech.example"), "the form keeps what was typed");

    let created = post_from(
        &staff,
        "/staff/customers/new",
        "/staff/customers",
        &[
            ("name", "Initech Ltd."),
            ("slug", ""),
            ("contact_name", "Ann Smith"),
            ("contact_email", "ann@initech.example"),
        ],
    )
    .await;
    assert_eq!(created.status(), 303);
    let page = location(&created);
    assert!(page.starts_with("/staff/customers/"), "{page}");
    let customer = staff.get_html(&page).await;
    assert!(
        customer.contains("Initech Ltd.") && customer.contains("ann@initech.example") && customer.contains("Invited")
    );

    // Staff allow self-registration for the company's domain.
    let domain = post_from(&staff, &page, &format!("{page}/domains"), &[("domain", "initech.example")]).await;
    assert_eq!(domain.status(), 303);
    assert!(staff.get_html(&page).await.contains("@initech.example"));

    let link = app.mail().wait_for("ann@initech.example", "").await.link();
    let ann = app.client();
    let accepted =
        post_from(&ann, &link, &link, &[("name", "Ann Smith"), ("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)])
            .await;
    assert_eq!(accepted.status(), 303);
    let team = ann.get_html("/team").await;
    assert!(team.contains("Invite a colleague"), "the first contact is the company's admin");
    assert!(team.contains("Initech Ltd.") && !team.contains("alice@acme.example"));
}

#[tokio::test]
async fn spent_links_are_swept_after_a_day() {
    let app = spawn_app().await;
    let visitor = app.client();
    post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "dave@acme.example")]).await;
    post_from(&visitor, "/password/forgot", "/password/forgot", &[("email", "bob@globex.example")]).await;
    let sql = app.sql().await;
    sql.execute(
        "UPDATE account_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '2 days' \
         WHERE email = 'dave@acme.example'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(portal::auth::tokens::sweep(&app.db().await).await.unwrap(), 1);
    let left: Vec<String> =
        sql.query("SELECT email FROM account_tokens", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, ["bob@globex.example"], "a live link stays");
}
