//! The live layer end to end: real PostgreSQL triggers and LISTEN, real WebSocket clients.

use std::time::Duration;

use portal_actors::protocol::OpKind;

use crate::support::live::{LiveSocket, Refusal, html_of, open, regions_in};
use crate::support::{TestApp, move_to, spawn_app, stage_id};

const ALICE: &str = "alice@acme.example";
const BOB: &str = "bob@globex.example";
const STAFF: &str = "staff@portal.example";
/// Long enough for a push that should not come to have arrived.
const QUIET: Duration = Duration::from_millis(800);

/// Adds a step to an order's timeline with plain SQL, as the business's ERP would.
async fn erp_note(db: &tokio_postgres::Client, order: uuid::Uuid, note: &str) {
    db.execute(
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, customer_note) \
         SELECT id, customer_id, stage_id, 'Quality check', $2 FROM orders WHERE id = $1",
        &[&order, &note],
    )
    .await
    .unwrap();
}

async fn alice_on_order(app: &TestApp, order: uuid::Uuid) -> LiveSocket {
    let alice = app.signed_in(ALICE).await;
    let (mut socket, _) = LiveSocket::for_page(&alice, &app.origin, &format!("/orders/{order}")).await;
    let first = socket.resumed().await;
    assert!(first.ops.is_empty(), "nothing changed since the page rendered: {first:?}");
    socket
}

#[tokio::test]
async fn a_stage_moved_by_staff_reaches_alice_and_not_bob() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let mut alice = alice_on_order(&app, order).await;

    // Bob's page claims one of Acme's regions next to his own. Pruning every event
    // makes his stale cursor unresumable, so both are rendered whole, under his scope.
    app.sql().await.execute("SELECT portal_events_prune('0 seconds')", &[]).await.unwrap();
    let bob_client = app.signed_in(BOB).await;
    let bob_order = app.order_id("SHP-2207").await;
    let mut bob = open(&bob_client, Some(&app.origin)).await.ok().unwrap();
    let acme_region = format!("order-{order}-timeline");
    let own_region = format!("order-{bob_order}-timeline");
    bob.hello(0, &[acme_region.clone(), own_region.clone()]).await;
    let resumed = bob.resumed().await;
    let foreign = resumed.ops.iter().find(|op| op.target == acme_region).expect("the foreign region is answered");
    assert_eq!((foreign.op, foreign.html.as_str()), (OpKind::Remove, ""), "Acme's order is not Bob's to see");
    assert!(html_of(&resumed, &own_region).is_some_and(|html| html.contains("Timeline")));

    let staff = app.signed_in(STAFF).await;
    let in_production = stage_id(&app, "Print job", "In production").await;
    let response = move_to(&staff, order, &in_production.to_string(), "Plates are on the press.", "Rush it").await;
    assert_eq!(response.status(), 303);

    let push = alice.expect_push(&format!("order-{order}-timeline"), "Plates are on the press.").await;
    let pushed = serde_json::to_string(&push).unwrap();
    assert!(!pushed.contains("Rush it"), "an internal note was pushed to a customer");
    let status = html_of(&push, &format!("order-{order}-status")).expect("the stage stepper moves in the same push");
    assert!(status.contains("In production") && status.contains("aria-current=\"step\""), "{status}");
    bob.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_change_written_by_another_program_is_live() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1040").await;
    let mut alice = alice_on_order(&app, order).await;
    let erp = app.sql().await;
    erp.execute("UPDATE orders SET tracking_carrier = 'UPS', tracking_number = '1Z999' WHERE id = $1", &[&order])
        .await
        .unwrap();
    alice.expect(&format!("order-{order}-details"), "1Z999").await;
}

#[tokio::test]
async fn sockets_without_a_session_or_from_another_site_are_refused() {
    let app = spawn_app().await;
    let anonymous = app.client();
    assert!(matches!(open(&anonymous, Some(&app.origin)).await, Err(Refusal::Status(401))));
    let alice = app.signed_in(ALICE).await;
    assert!(matches!(open(&alice, Some("https://evil.example")).await, Err(Refusal::Status(403))));
    assert!(matches!(open(&alice, None).await, Err(Refusal::Status(403))));
    assert!(open(&alice, Some(&app.origin)).await.is_ok());
}

#[tokio::test]
async fn signing_out_closes_the_socket_at_once() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let (mut socket, _) = LiveSocket::for_page(&alice, &app.origin, "/").await;
    socket.resumed().await;
    assert_eq!(alice.sign_out("/orders").await.status(), 303);
    assert_eq!(socket.closed().await, 4001);
}

#[tokio::test]
async fn disabling_a_user_closes_their_sockets() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    let (mut socket, _) = LiveSocket::for_page(&dave, &app.origin, "/orders").await;
    socket.resumed().await;
    app.sql()
        .await
        .execute("UPDATE users SET disabled_at = now() WHERE email = 'dave@acme.example'", &[])
        .await
        .unwrap();
    assert_eq!(socket.closed().await, 4001);
    // And the session itself is gone: the pages send him to sign in.
    assert_eq!(dave.get("/orders").await.status(), 303);
}

#[tokio::test]
async fn changes_made_while_the_listener_was_cut_off_all_arrive() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let mut alice = alice_on_order(&app, order).await;
    let db = app.sql().await;
    let killed: i64 = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'portal-live' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one listener connection per process");
    for note in ["outage one", "outage two", "outage three"] {
        erp_note(&db, order, note).await;
    }
    let timeline = alice.expect(&format!("order-{order}-timeline"), "outage three").await;
    for note in ["outage one", "outage two"] {
        assert!(timeline.contains(note), "{note} was lost");
    }
    let ready: serde_json::Value = app.client().get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["live"]["listener"], "connected", "{ready}");
}

#[tokio::test]
async fn a_page_that_reconnects_shows_exactly_what_it_missed() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let alice = app.signed_in(ALICE).await;
    let (mut socket, html) = LiveSocket::for_page(&alice, &app.origin, &format!("/orders/{order}")).await;
    socket.resumed().await;
    let db = app.sql().await;
    let target = format!("order-{order}-timeline");

    // A transaction that takes its event id first but commits last.
    let late = app.sql().await;
    late.batch_execute("BEGIN").await.unwrap();
    erp_note(&late, order, "committed late").await;
    erp_note(&db, order, "committed first").await;
    let push = socket.expect_push(&target, "committed first").await;
    assert!(!html_of(&push, &target).unwrap().contains("committed late"));
    let cursor = push.id;

    // The page goes away; meanwhile the early transaction commits and more happens.
    socket.close().await;
    late.batch_execute("COMMIT").await.unwrap();
    erp_note(&db, order, "while away").await;

    let mut again = open(&alice, Some(&app.origin)).await.ok().unwrap();
    again.hello(cursor, &regions_in(&html)).await;
    let push = again.resumed().await;
    let timeline = html_of(&push, &target).expect("the timeline is re-rendered");
    for note in ["committed first", "committed late", "while away"] {
        assert_eq!(timeline.matches(note).count(), 1, "{note} should appear exactly once: {timeline}");
    }
    // What did not change is not re-rendered.
    assert!(html_of(&push, &format!("order-{order}-documents")).is_none());
}

#[tokio::test]
async fn a_slow_socket_is_dropped_without_stalling_the_others() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let alice = app.signed_in(ALICE).await;
    let path = format!("/orders/{order}");
    let (mut stuck, _) = LiveSocket::for_page(&alice, &app.origin, &path).await;
    stuck.resumed().await;
    stuck.acks = false;
    let mut healthy = alice_on_order(&app, order).await;
    let db = app.sql().await;
    let target = format!("order-{order}-timeline");
    for n in 0..40 {
        erp_note(&db, order, &format!("step {n:02}")).await;
        healthy.expect(&target, &format!("step {n:02}")).await;
    }
    assert_eq!(stuck.closed().await, 4008, "the socket that stopped acknowledging should be told to resume");
}

#[tokio::test]
async fn one_rendering_serves_every_socket_of_a_class() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1043").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(alice_on_order(&app, order).await);
    }
    let staff = app.signed_in(STAFF).await;
    let before = metrics(&staff).await;
    erp_note(&app.sql().await, order, "shared").await;
    for socket in &mut sockets {
        socket.expect(&format!("order-{order}-timeline"), "shared").await;
    }
    let after = metrics(&staff).await;
    assert_eq!(after["portal_live_pushes_total"] - before["portal_live_pushes_total"], 3.0);
    // Rendered once for the three sockets (one job, one share key), not once per socket.
    assert_eq!(after["portal_live_renders_total"] - before["portal_live_renders_total"], 1.0);
}

async fn metrics(staff: &crate::support::Client) -> std::collections::HashMap<String, f64> {
    let text = staff.get_html("/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

#[tokio::test]
async fn metrics_are_for_staff_and_token_holders_only() {
    let token = "m".repeat(40);
    let app =
        crate::support::spawn_app_with(|c| c.metrics_token = Some(secrecy::SecretString::from("m".repeat(40)))).await;
    assert_eq!(app.client().get("/metrics").await.status(), 401);
    assert_eq!(app.signed_in(ALICE).await.get("/metrics").await.status(), 403);
    let staff = app.signed_in(STAFF).await.get_html("/metrics").await;
    assert!(staff.contains("# TYPE portal_live_sessions gauge"));
    let scraper = app.client();
    let with_token = scraper.http.get(scraper.url("/metrics")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(with_token.status(), 200);
    let wrong = scraper.http.get(scraper.url("/metrics")).bearer_auth("n".repeat(40)).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn the_back_office_feed_shows_client_activity_as_it_happens() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let (mut feed, _) = LiveSocket::for_page(&staff, &app.origin, "/staff").await;
    feed.resumed().await;
    // A client signs in: the sign-in function writes the activity log, the trigger does the rest.
    app.signed_in("dave@acme.example").await;
    let html = feed.expect("staff-feed", "dave@acme.example").await;
    assert!(html.contains("Signed in") && html.contains("Acme Manufacturing"), "{html}");
}

#[tokio::test]
async fn the_orders_list_and_the_dashboard_follow_a_stage_change() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1044").await;
    let alice = app.signed_in(ALICE).await;
    let (mut list, _) = LiveSocket::for_page(&alice, &app.origin, "/orders").await;
    list.resumed().await;
    let (mut dashboard, _) = LiveSocket::for_page(&alice, &app.origin, "/").await;
    dashboard.resumed().await;
    let approval = stage_id(&app, "Print job", "Artwork approval").await;
    app.sql().await.execute("UPDATE orders SET stage_id = $2 WHERE id = $1", &[&order, &approval]).await.unwrap();

    let row = list.expect(&format!("order-{order}"), "Artwork approval").await;
    assert!(row.contains("Needs your action"), "{row}");
    let push = dashboard.expect_push("dashboard-awaiting", "Winter mailer").await;
    assert!(html_of(&push, "dashboard-cards").is_some(), "the counts move with it");
}
