//! A request holds at most one pooled connection. With pools of one connection
//! each, a handler that took a second one (a rate-limit spend, a password check
//! or a session lookup while its scope is open) would wait for itself until the
//! pool's timeout and answer 500; every flow here must simply work.

use crate::support::{Client, PASSWORD, spawn_app_with_pools};

const ALICE: &str = "alice@acme.example";
const STAFF: &str = "staff@portal.example";

async fn post_from(client: &Client, page: &str, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let token = client.csrf_token(page).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    client.post_form(action, &form).await
}

#[tokio::test]
async fn every_customer_flow_works_on_pools_of_one_connection() {
    let app = spawn_app_with_pools(1, 1).await;
    let alice = app.signed_in(ALICE).await;
    for page in ["/", "/orders", "/documents", "/team", "/settings", "/settings/passkeys", "/activity"] {
        assert_eq!(alice.get(page).await.status(), 200, "{page}");
    }

    // Settings check the current password (a sign-in attempt) and spend an email budget before their scope opens.
    let wrong = post_from(
        &alice,
        "/settings",
        "/settings/password",
        &[("current_password", "not it"), ("new_password", "x"), ("confirm_password", "x")],
    )
    .await;
    assert_eq!(wrong.status(), 422);
    let email = post_from(
        &alice,
        "/settings",
        "/settings/email",
        &[("new_email", "alice.lee@acme.example"), ("current_password", PASSWORD)],
    )
    .await;
    assert_eq!(email.status(), 303);
    let confirm = post_from(&alice, "/settings/confirm", "/settings/confirm", &[("password", PASSWORD)]).await;
    assert_eq!(confirm.status(), 303);

    // Invitations spend two budgets (per sender, per address) next to the team's scope.
    let invite = post_from(
        &alice,
        "/team",
        "/team/invite",
        &[("name", "Erin Example"), ("email", "erin@acme.example"), ("role", "customer_member")],
    )
    .await;
    assert_eq!(invite.status(), 303);
    assert!(alice.get_html("/team").await.contains("erin@acme.example"));

    // Before sign-in: the forms that send email, and a wrong password.
    let anonymous = app.client();
    let forgot = post_from(&anonymous, "/password/forgot", "/password/forgot", &[("email", ALICE)]).await;
    assert_eq!(forgot.status(), 200);
    let register =
        post_from(&anonymous, "/register", "/register", &[("name", "Frank Example"), ("email", "frank@acme.example")])
            .await;
    assert_eq!(register.status(), 200);
    assert_eq!(anonymous.sign_in(ALICE, "wrong password").await.status(), 401);
}

#[tokio::test]
async fn every_staff_flow_works_on_pools_of_one_connection() {
    let app = spawn_app_with_pools(1, 1).await;
    let staff = app.signed_in(STAFF).await;
    for page in ["/staff", "/staff/customers", "/staff/orders", "/staff/documents", "/staff/integrations"] {
        assert_eq!(staff.get(page).await.status(), 200, "{page}");
    }
    let acme = app.customer_id("acme").await;
    let page = format!("/staff/customers/{acme}");
    let invite = post_from(
        &staff,
        &page,
        &format!("{page}/invite"),
        &[("name", "Gina Example"), ("email", "gina@acme.example"), ("role", "customer_admin")],
    )
    .await;
    assert_eq!(invite.status(), 303);
    assert!(staff.get_html(&page).await.contains("gina@acme.example"));
}
