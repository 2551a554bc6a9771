//! The command-line side: creating customers and staff, loading demo data.

use portal::accounts::admin::{AdminError, create_customer, create_staff};
use secrecy::SecretString;

use crate::support::{location, spawn_app};

#[tokio::test]
async fn a_new_customer_and_its_admin_can_sign_in_and_see_an_empty_portal() {
    let app = spawn_app().await;
    let db = app.db().await;
    let password = "a long enough passphrase";
    create_customer(
        &db,
        "Initech",
        "initech",
        Some(("Ann@Initech.example", "Ann Admin", SecretString::from(password))),
    )
    .await
    .unwrap();
    let client = app.client();
    let response = client.sign_in("ann@initech.example", password).await;
    assert_eq!(response.status(), 303);
    let orders = client.get_html("/orders").await;
    assert!(orders.contains("Initech") && orders.contains("class=\"empty-state\""));
    assert!(!orders.contains("ORD-"), "a new customer must not see demo orders");

    let again = create_customer(&db, "Initech again", "initech", None).await;
    assert!(matches!(again, Err(AdminError::Duplicate(_))), "{again:?}");
    let bad = create_customer(&db, "Bad", "Not A Slug", None).await;
    assert!(matches!(bad, Err(AdminError::Invalid(_))), "{bad:?}");
}

#[tokio::test]
async fn a_new_staff_user_lands_in_the_back_office() {
    let app = spawn_app().await;
    let db = app.db().await;
    create_staff(&db, "sam@yourco.example", "Sam", false, SecretString::from("another long passphrase")).await.unwrap();
    let response = app.client().sign_in("sam@yourco.example", "another long passphrase").await;
    assert_eq!(location(&response), "/staff");
    let duplicate = create_staff(&db, "sam@yourco.example", "Sam", false, SecretString::from("x".repeat(12))).await;
    assert!(matches!(duplicate, Err(AdminError::Duplicate(_))));
}

#[tokio::test]
async fn loading_the_demo_twice_changes_nothing() {
    let app = spawn_app().await;
    let db = app.db().await;
    let sql = app.sql().await;
    let before: i64 = sql.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert!(!portal::demo::load(&db).await.unwrap(), "the template already holds the demo");
    let after: i64 = sql.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(before, after);
}
