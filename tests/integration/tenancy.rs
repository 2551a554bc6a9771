//! No customer ever sees another customer's data: proofs in the database itself and over HTTP.

use crate::support::{location, spawn_app};

/// Every table that holds a customer's rows, with its customer column.
const CUSTOMER_TABLES: &[&str] = &[
    "users",
    "sessions",
    "orders",
    "order_stage_history",
    "invoices",
    "invoice_lines",
    "documents",
    "document_versions",
    "tickets",
    "ticket_messages",
    "activity_log",
    "events",
];

/// Opens a transaction scoped to `customer`, exactly as the portal's `Scope` does.
async fn begin_customer_scope(db: &tokio_postgres::Client, customer: uuid::Uuid) {
    db.batch_execute("BEGIN").await.unwrap();
    db.execute("SELECT set_config('portal.customer_id', $1, true)", &[&customer.to_string()]).await.unwrap();
}

#[tokio::test]
async fn a_customer_scope_sees_only_its_own_rows_in_every_table() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let owner = app.sql().await;
    let db = app.app_role_sql().await;
    for table in CUSTOMER_TABLES {
        begin_customer_scope(&db, acme).await;
        // No WHERE clause: row-level security alone decides.
        let seen: Vec<Option<uuid::Uuid>> = db
            .query(&format!("SELECT customer_id FROM {table}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        db.batch_execute("COMMIT").await.unwrap();
        assert!(seen.iter().all(|c| *c == Some(acme)), "{table} leaked another customer's rows");
        let own: i64 = owner
            .query_one(&format!("SELECT count(*) FROM {table} WHERE customer_id = $1"), &[&acme])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen.len() as i64, own, "{table}: the scope should see all of Acme's rows");
    }
    // The demo has rows for Acme in the main tables, so the check above was not vacuous.
    let orders: i64 = owner.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    let acme_orders: i64 =
        owner.query_one("SELECT count(*) FROM orders WHERE customer_id = $1", &[&acme]).await.unwrap().get(0);
    assert!(acme_orders > 0 && orders > acme_orders);
}

#[tokio::test]
async fn without_a_scope_every_table_is_empty() {
    let app = spawn_app().await;
    let db = app.app_role_sql().await;
    for table in CUSTOMER_TABLES.iter().chain(&["customers", "notifications", "workflows", "workflow_stages"]) {
        let n: i64 = db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{table} is visible without a scope");
    }
}

#[tokio::test]
async fn writes_to_another_customers_rows_change_nothing() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let globex = app.customer_id("globex").await;
    let alice: uuid::Uuid =
        app.sql().await.query_one("SELECT id FROM users WHERE email = 'alice@acme.example'", &[]).await.unwrap().get(0);
    let db = app.app_role_sql().await;
    begin_customer_scope(&db, acme).await;
    db.execute("SELECT set_config('portal.user_id', $1, true)", &[&alice.to_string()]).await.unwrap();
    // The one customer-writable column: another customer's rows are simply not there.
    let marked =
        db.execute("UPDATE notifications SET read_at = now() WHERE customer_id = $1", &[&globex]).await.unwrap();
    assert_eq!(marked, 0);
    // Nor can a row be created for another customer, or in someone else's name.
    let planted = db
        .execute("INSERT INTO activity_log (customer_id, actor_label, action) VALUES ($1, 'x', 'planted')", &[&globex])
        .await;
    assert!(planted.is_err(), "inserting a row for another customer must be refused");
    db.batch_execute("ROLLBACK").await.unwrap();
    begin_customer_scope(&db, acme).await;
    db.execute("SELECT set_config('portal.user_id', $1, true)", &[&alice.to_string()]).await.unwrap();
    let forged = db
        .execute(
            "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action) \
             VALUES ($1, (SELECT id FROM users WHERE email = 'dave@acme.example'), 'dave', 'forged')",
            &[&acme],
        )
        .await;
    assert!(forged.is_err(), "an entry must name its real actor");
    db.batch_execute("ROLLBACK").await.unwrap();

    let owner = app.sql().await;
    let unread: i64 = owner
        .query_one("SELECT count(*) FROM notifications WHERE customer_id = $1 AND read_at IS NULL", &[&globex])
        .await
        .unwrap()
        .get(0);
    assert!(unread > 0);
}

#[tokio::test]
async fn customers_can_change_nothing_they_were_not_given() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let acme_order = app.order_id("ORD-1042").await;
    let db = app.app_role_sql().await;
    for statement in [
        format!("UPDATE orders SET title = 'hijacked' WHERE id = '{acme_order}'"),
        "UPDATE users SET role = 'customer_admin'".to_owned(),
        "UPDATE invoices SET status = 'paid'".to_owned(),
        "DELETE FROM order_stage_history".to_owned(),
        "INSERT INTO ticket_messages (ticket_id, customer_id, from_staff, body) SELECT id, customer_id, true, 'x' FROM tickets".to_owned(),
        "SELECT password_hash FROM users".to_owned(),
        "SELECT token_hash, csrf_token FROM sessions".to_owned(),
    ] {
        begin_customer_scope(&db, acme).await;
        let err = db.execute(&statement, &[]).await.expect_err(&statement);
        assert!(err.as_db_error().is_some_and(|e| e.message().contains("permission denied")), "{statement}: {err}");
        db.batch_execute("ROLLBACK").await.unwrap();
    }
}

#[tokio::test]
async fn draft_invoices_stay_out_of_customer_view() {
    let app = spawn_app().await;
    let owner = app.sql().await;
    let draft: uuid::Uuid = owner
        .query_one(
            "INSERT INTO invoices (customer_id, number, status, issued_on, due_on, total_cents) \
             SELECT id, 'INV-DRAFT-1', 'draft', current_date, current_date + 30, 123400 FROM customers WHERE slug = 'acme' \
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    owner
        .execute(
            "INSERT INTO invoice_lines (invoice_id, customer_id, position, description, quantity, unit_price_cents, amount_cents) \
             SELECT id, customer_id, 0, 'Secret pricing', 1, 123400, 123400 FROM invoices WHERE id = $1",
            &[&draft],
        )
        .await
        .unwrap();
    let acme = app.customer_id("acme").await;
    let db = app.app_role_sql().await;
    begin_customer_scope(&db, acme).await;
    let seen: i64 = db.query_one("SELECT count(*) FROM invoices WHERE status = 'draft'", &[]).await.unwrap().get(0);
    let lines: i64 = db
        .query_one("SELECT count(*) FROM invoice_lines WHERE description = 'Secret pricing'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((seen, lines), (0, 0));
    db.batch_execute("ROLLBACK").await.unwrap();
    let alice = app.signed_in("alice@acme.example").await;
    assert!(!alice.get_html("/invoices").await.contains("INV-DRAFT-1"));
    assert_eq!(alice.get(&format!("/invoices/{draft}")).await.status(), 404);
}

#[tokio::test]
async fn internal_notes_are_out_of_reach_of_customer_requests() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let db = app.app_role_sql().await;
    begin_customer_scope(&db, acme).await;
    let err = db.query("SELECT note FROM order_internal_notes", &[]).await.unwrap_err();
    assert!(err.as_db_error().is_some_and(|e| e.message().contains("permission denied")), "{err}");
}

#[tokio::test]
async fn every_table_forces_row_level_security_and_no_app_role_can_bypass_it() {
    let app = spawn_app().await;
    let owner = app.sql().await;
    let unprotected: Vec<String> = owner
        .query(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace \
             AND relname <> 'refinery_schema_history' AND NOT (relrowsecurity AND relforcerowsecurity)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unprotected.is_empty(), "tables without forced RLS: {unprotected:?}");
    let roles = owner
        .query(
            "SELECT rolname::text, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles \
             WHERE rolname IN ('portal_app', 'portal_staff', 'portal_auth')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(roles.len(), 3);
    for role in roles {
        let name: String = role.get(0);
        assert!(
            !role.get::<_, bool>(1) && !role.get::<_, bool>(2) && !role.get::<_, bool>(3),
            "{name} is too powerful"
        );
    }
    // Membership would make one role's policies apply to another.
    let nested: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
             WHERE r.rolname IN ('portal_app', 'portal_staff', 'portal_auth')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nested, 0);
    let owned: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner \
             WHERE r.rolname IN ('portal_app', 'portal_staff', 'portal_auth')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0, "application roles must own no tables");
}

#[tokio::test]
async fn another_customers_order_answers_the_same_404_as_a_missing_one() {
    let app = spawn_app().await;
    let acme_order = app.order_id("ORD-1042").await;
    let bob = app.signed_in("bob@globex.example").await;

    let foreign = bob.get(&format!("/orders/{acme_order}")).await;
    let missing = bob.get(&format!("/orders/{}", uuid::Uuid::new_v4())).await;
    let malformed = bob.get("/orders/ORD-1042").await;
    assert_eq!(foreign.status(), 404);
    assert_eq!(missing.status(), 404);
    assert_eq!(malformed.status(), 404);
    // Same page apart from the request reference.
    let strip = |html: String| html.split("Reference:").next().unwrap_or_default().to_owned();
    let foreign = strip(foreign.text().await.unwrap());
    assert_eq!(foreign, strip(missing.text().await.unwrap()));
    assert!(foreign.contains("Page not found"));
    assert!(!foreign.contains("Packaging sleeves"));

    // Alice, whose order it is, sees it.
    let alice = app.signed_in("alice@acme.example").await;
    let page = alice.get_html(&format!("/orders/{acme_order}")).await;
    assert!(page.contains("Packaging sleeves, matte"));
}

#[tokio::test]
async fn each_customer_sees_only_its_own_orders_and_dashboard() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    let bob = app.signed_in("bob@globex.example").await;
    let acme_list = alice.get_html("/orders?status=all").await;
    let globex_list = bob.get_html("/orders?status=all").await;
    assert!(acme_list.contains("ORD-1042") && !acme_list.contains("SHP-"));
    assert!(globex_list.contains("SHP-2207") && !globex_list.contains("ORD-"));
    let dashboard = bob.get_html("/").await;
    assert!(dashboard.contains("Globex Logistics") && !dashboard.contains("Acme"));
    // A staff-only page is refused to a customer, not redirected into.
    let staff = alice.get("/staff").await;
    assert_eq!(staff.status(), 403, "{}", location(&staff));
}

#[tokio::test]
async fn the_customer_pools_login_can_become_nothing_but_the_customer_role() {
    let app = spawn_app().await;
    let db = app.web_login_sql().await;
    for role in ["portal_staff", "portal_auth", "postgres", "portal_web_staff"] {
        let err = db.batch_execute(&format!("SET ROLE {role}")).await.expect_err(role);
        assert!(err.as_db_error().is_some_and(|e| e.message().contains("permission denied")), "{role}: {err}");
    }
    // Without switching, the login itself holds no privileges at all.
    let err = db.query("SELECT count(*) FROM orders", &[]).await.unwrap_err();
    assert!(err.as_db_error().is_some_and(|e| e.message().contains("permission denied")), "{err}");
    // And a temporary table that could shadow a real one for the next request is refused.
    db.batch_execute("SET ROLE portal_app").await.unwrap();
    let err = db.batch_execute("CREATE TEMP TABLE orders (id uuid)").await.unwrap_err();
    assert!(err.as_db_error().is_some_and(|e| e.message().contains("permission denied")), "{err}");
}
