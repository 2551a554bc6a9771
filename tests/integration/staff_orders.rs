//! The staff order page and moving an order to a stage: what staff see, what customers see, what is recorded.

use scraper::{Html, Selector};
use uuid::Uuid;

use crate::support::{TestApp, location, move_to, spawn_app, stage_id};

const STAFF: &str = "staff@portal.example";

/// Everything a move writes, to prove that a refused one wrote nothing.
#[derive(Debug, PartialEq)]
struct Written {
    stage_id: Uuid,
    status: String,
    updated_at: time::OffsetDateTime,
    history: i64,
    internal_notes: i64,
    /// Not counting sign-ins, which the tests themselves cause.
    activity: i64,
}

async fn written(app: &TestApp, order: Uuid) -> Written {
    let row = app
        .sql()
        .await
        .query_one(
            "SELECT o.stage_id, o.status, o.updated_at, \
             (SELECT count(*) FROM order_stage_history h WHERE h.order_id = o.id) AS history, \
             (SELECT count(*) FROM order_internal_notes) AS internal_notes, \
             (SELECT count(*) FROM activity_log WHERE action NOT LIKE 'auth.%') AS activity \
             FROM orders o WHERE o.id = $1",
            &[&order],
        )
        .await
        .unwrap();
    Written {
        stage_id: row.get("stage_id"),
        status: row.get("status"),
        updated_at: row.get("updated_at"),
        history: row.get("history"),
        internal_notes: row.get("internal_notes"),
        activity: row.get("activity"),
    }
}

fn select_one<'a>(doc: &'a Html, css: &str) -> scraper::ElementRef<'a> {
    let selector = Selector::parse(css).unwrap();
    doc.select(&selector).next().unwrap_or_else(|| panic!("nothing matches {css}"))
}

fn text(doc: &Html, css: &str) -> String {
    select_one(doc, css).text().collect()
}

fn selected_stage(doc: &Html) -> String {
    select_one(doc, "select#stage_id option[selected]").value().attr("value").unwrap().to_owned()
}

#[tokio::test]
async fn staff_move_an_order_and_the_customer_sees_the_stage_and_only_the_customer_note() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1040").await;
    let dispatched = stage_id(&app, "Print job", "Dispatched").await;
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;

    let response = move_to(
        &staff,
        order,
        &dispatched.to_string(),
        "  Packed and handed to the courier.  ",
        "\r\nPallet 7 at dock 2; driver asked for a signed CMR.\r\n",
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/staff/orders/{order}"));

    // The order, its history, the internal note and the log, in the database.
    let after = written(&app, order).await;
    assert_eq!(after.stage_id, dispatched);
    assert_eq!(after.status, "open");
    assert_eq!(after.history, before.history + 1);
    assert_eq!(after.internal_notes, before.internal_notes + 1);
    assert_eq!(after.activity, before.activity + 1);
    let db = app.sql().await;
    let staff_id: Uuid = db.query_one("SELECT id FROM users WHERE email = $1", &[&STAFF]).await.unwrap().get(0);
    let history = db
        .query_one(
            "SELECT h.stage_id, h.stage_name, h.customer_note, h.actor_user_id, h.customer_id = o.customer_id AS same, \
             n.note FROM order_stage_history h JOIN orders o ON o.id = h.order_id \
             LEFT JOIN order_internal_notes n ON n.history_id = h.id \
             WHERE h.order_id = $1 ORDER BY h.reached_at DESC LIMIT 1",
            &[&order],
        )
        .await
        .unwrap();
    assert_eq!(history.get::<_, Option<Uuid>>("stage_id"), Some(dispatched));
    assert_eq!(history.get::<_, String>("stage_name"), "Dispatched");
    assert_eq!(history.get::<_, Option<String>>("customer_note").as_deref(), Some("Packed and handed to the courier."));
    assert_eq!(history.get::<_, Option<Uuid>>("actor_user_id"), Some(staff_id));
    assert!(history.get::<_, bool>("same"));
    assert_eq!(
        history.get::<_, Option<String>>("note").as_deref(),
        Some("Pallet 7 at dock 2; driver asked for a signed CMR."),
        "the internal note is stored trimmed, with the history row"
    );
    let activity = db
        .query_one(
            "SELECT customer_id, actor_user_id, actor_label, subject_type, subject_id, details, ip \
             FROM activity_log WHERE action = 'order.stage_changed' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(activity.get::<_, Option<Uuid>>("customer_id"), Some(app.customer_id("acme").await));
    assert_eq!(activity.get::<_, Option<Uuid>>("actor_user_id"), Some(staff_id));
    assert_eq!(activity.get::<_, String>("actor_label"), STAFF);
    assert_eq!(activity.get::<_, Option<String>>("subject_type").as_deref(), Some("order"));
    assert_eq!(activity.get::<_, Option<Uuid>>("subject_id"), Some(order));
    assert_eq!(
        activity.get::<_, serde_json::Value>("details"),
        serde_json::json!({"from": "Quality check", "to": "Dispatched", "number": "ORD-1040"})
    );

    // Staff see the flash, the new stage, and both notes, the internal one labelled.
    let html = staff.get_html(&format!("/staff/orders/{order}")).await;
    assert!(html.contains("ORD-1040 moved to Dispatched."), "no success message");
    let doc = Html::parse_document(&html);
    assert_eq!(text(&doc, &format!("#staff-order-{order}-status ol.stages li[aria-current=\"step\"]")), "Dispatched");
    assert_eq!(selected_stage(&doc), dispatched.to_string(), "the new current stage is preselected");
    let newest = select_one(&doc, &format!("#staff-order-{order}-timeline > li"));
    let newest: String = newest.text().collect();
    assert!(newest.contains("Dispatched"), "{newest}");
    assert!(newest.contains("Packed and handed to the courier."), "{newest}");
    assert!(newest.contains("Internal note"), "{newest}");
    assert!(newest.contains("Pallet 7 at dock 2; driver asked for a signed CMR."), "{newest}");

    // The customer sees the stage and the note meant for them, never the internal one.
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("aria-current=\"step\">Dispatched"), "the customer's stepper did not move");
    assert!(html.contains("Packed and handed to the courier."));
    assert!(!html.contains("Pallet 7"), "an internal note reached a customer");
    assert!(!html.contains("Internal note"));
}

#[tokio::test]
async fn the_staff_page_shows_the_order_its_form_and_its_internal_notes() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let order = app.order_id("ORD-1041").await;
    let staff = app.signed_in(STAFF).await;

    // The customer page links each order to the staff order page.
    let customer = staff.get_html(&format!("/staff/customers/{acme}")).await;
    assert!(customer.contains(&format!("<a href=\"/staff/orders/{order}\">ORD-1041</a>")));

    let html = staff.get_html(&format!("/staff/orders/{order}")).await;
    let doc = Html::parse_document(&html);
    let status = format!("#staff-order-{order}-status");
    assert!(text(&doc, &status).contains("ORD-1041 · Annual report 2026, 800 copies"));
    assert_eq!(
        select_one(&doc, &format!("{status} a[href=\"/staff/customers/{acme}\"]")).text().collect::<String>(),
        "Acme Manufacturing"
    );
    assert_eq!(text(&doc, &format!("{status} ol.stages li[aria-current=\"step\"]")), "In production");
    assert!(html.contains("PO-7761"), "the reference is shown");
    // Seeded history: the internal note is there for staff, labelled as such.
    let timeline = text(&doc, &format!("ol#staff-order-{order}-timeline"));
    assert!(timeline.contains("Printing has started."));
    assert!(timeline.contains("Internal note"));
    assert!(timeline.contains("Paper stock delayed by the supplier"));
    let entries = Selector::parse(&format!("#staff-order-{order}-timeline > li .timeline-title")).unwrap();
    let titles: Vec<String> = doc.select(&entries).map(|e| e.text().collect()).collect();
    assert_eq!(titles, ["In production", "Artwork approval", "Order received"], "newest first");

    // The form: the workflow's stages in order, the current one selected, labelled fields.
    let form = select_one(&doc, &format!("form[action=\"/staff/orders/{order}/stage\"]"));
    assert_eq!(form.value().attr("method"), Some("post"));
    let options = Selector::parse("select#stage_id option").unwrap();
    let names: Vec<String> = doc.select(&options).map(|o| o.text().collect()).collect();
    assert_eq!(names.len(), 6);
    assert!(names[0].contains("Order received") && names[5].contains("Delivered"), "{names:?}");
    assert_eq!(selected_stage(&doc), stage_id(&app, "Print job", "In production").await.to_string());
    for field in ["stage_id", "customer_note", "internal_note"] {
        select_one(&doc, &format!("label[for=\"{field}\"]"));
        select_one(&doc, &format!("[name=\"{field}\"]#{field}"));
    }
    assert!(text(&doc, "label[for=\"customer_note\"]").contains("customer will see"));
    assert!(text(&doc, "label[for=\"internal_note\"]").contains("never shown to customers"));
    let token = Selector::parse("input[type=\"hidden\"][name=\"csrf_token\"]").unwrap();
    let token = form.select(&token).next().and_then(|t| t.value().attr("value")).unwrap_or_default();
    assert!(!token.is_empty(), "the form carries its CSRF token");

    // Both regions exist even with nothing in the timeline.
    app.sql().await.execute("DELETE FROM order_stage_history WHERE order_id = $1", &[&order]).await.unwrap();
    let doc = Html::parse_document(&staff.get_html(&format!("/staff/orders/{order}")).await);
    assert!(text(&doc, &format!("ol#staff-order-{order}-timeline")).contains("No stages recorded yet."));
    select_one(&doc, &format!("div#staff-order-{order}-status ol.stages"));
}

#[tokio::test]
async fn a_stage_of_another_workflow_is_refused_with_the_typed_notes_kept() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;
    let foreign = stage_id(&app, "Freight shipment", "In transit").await;

    let response = move_to(&staff, order, &foreign.to_string(), "Proof <b>approved</b> & sent", "Rush it").await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let doc = Html::parse_document(&html);
    assert_eq!(text(&doc, "#stage_id-error"), "Choose one of the stages of this order's workflow.");
    assert_eq!(select_one(&doc, "select#stage_id").value().attr("aria-invalid"), Some("true"));
    assert_eq!(text(&doc, "textarea#customer_note"), "Proof <b>approved</b> & sent");
    assert!(html.contains("Proof &lt;b&gt;approved&lt;/b&gt; &amp; sent"), "typed values are escaped");
    assert_eq!(text(&doc, "textarea#internal_note"), "Rush it");
    assert_eq!(selected_stage(&doc), before.stage_id.to_string(), "the current stage stays selected");
    assert_eq!(written(&app, order).await, before, "a refused move wrote something");

    // Not a stage at all: the same answer.
    let response = move_to(&staff, order, "not-a-stage", "", "").await;
    assert_eq!(response.status(), 422);
    assert_eq!(written(&app, order).await, before);
}

#[tokio::test]
async fn moving_to_the_current_stage_needs_a_note() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let current = stage_id(&app, "Print job", "Artwork approval").await.to_string();
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;

    let response = move_to(&staff, order, &current, "   ", "\r\n").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#stage_id-error").starts_with("The order is already at this stage"));
    assert_eq!(written(&app, order).await, before);

    // With a note it is an update on the timeline, at the same stage.
    let response = move_to(&staff, order, &current, "", "Chased the customer by phone.").await;
    assert_eq!(response.status(), 303);
    let after = written(&app, order).await;
    assert_eq!(after.stage_id, before.stage_id);
    assert_eq!(after.history, before.history + 1);
    assert_eq!(after.internal_notes, before.internal_notes + 1);
    let customer_note: Option<String> = app
        .sql()
        .await
        .query_one(
            "SELECT customer_note FROM order_stage_history WHERE order_id = $1 ORDER BY reached_at DESC LIMIT 1",
            &[&order],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(customer_note, None, "a blank customer note is stored as NULL");
}

#[tokio::test]
async fn over_long_notes_are_refused_and_kept() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1043").await;
    let quality = stage_id(&app, "Print job", "Quality check").await.to_string();
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;

    let long_customer = "a".repeat(2001);
    let response = move_to(&staff, order, &quality, &long_customer, "fine").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#customer_note-error").contains("at most 2,000"));
    assert_eq!(text(&doc, "textarea#customer_note"), long_customer);
    assert_eq!(text(&doc, "textarea#internal_note"), "fine");
    assert_eq!(selected_stage(&doc), quality, "the chosen stage stays selected");

    let long_internal = "é".repeat(4001);
    let response = move_to(&staff, order, &quality, "ok", &long_internal).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#internal_note-error").contains("at most 4,000"));
    assert_eq!(text(&doc, "textarea#internal_note"), long_internal);
    assert_eq!(written(&app, order).await, before);

    // At the limits exactly (line breaks counted once, surrounding blanks ignored), the move goes through.
    let customer = format!("  {}\r\n{}  ", "b".repeat(1000), "c".repeat(999));
    let response = move_to(&staff, order, &quality, &customer, &"é".repeat(4000)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(written(&app, order).await.history, before.history + 1);
}

#[tokio::test]
async fn without_a_valid_csrf_token_nothing_is_written() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1044").await;
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;
    let stage = stage_id(&app, "Print job", "Artwork approval").await.to_string();
    let path = format!("/staff/orders/{order}/stage");

    let missing = staff.post_form(&path, &[("stage_id", &stage), ("customer_note", "hello")]).await;
    assert_eq!(missing.status(), 403);
    let wrong = staff.post_form(&path, &[("csrf_token", "forged"), ("stage_id", &stage)]).await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(written(&app, order).await, before);
}

#[tokio::test]
async fn customers_cannot_see_or_use_the_staff_order_page() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let before = written(&app, order).await;
    let stage = stage_id(&app, "Print job", "Delivered").await.to_string();
    let alice = app.signed_in("alice@acme.example").await;

    assert_eq!(alice.get(&format!("/staff/orders/{order}")).await.status(), 403);
    // With her own, valid, CSRF token.
    let token = alice.csrf_token("/orders").await;
    let response =
        alice.post_form(&format!("/staff/orders/{order}/stage"), &[("csrf_token", &token), ("stage_id", &stage)]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(written(&app, order).await, before);

    // Signed out: off to sign in.
    let anonymous = app.client().get(&format!("/staff/orders/{order}")).await;
    assert_eq!(anonymous.status(), 303);
    assert!(location(&anonymous).starts_with("/login"));
}

#[tokio::test]
async fn unknown_and_malformed_orders_are_not_found() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let unknown = Uuid::new_v4();
    assert_eq!(staff.get(&format!("/staff/orders/{unknown}")).await.status(), 404);
    assert_eq!(staff.get("/staff/orders/ORD-1041").await.status(), 404);

    let token = staff.csrf_token("/staff").await;
    let stage = stage_id(&app, "Print job", "Delivered").await.to_string();
    for id in [unknown.to_string(), "not-a-uuid".to_owned()] {
        let response = staff
            .post_form(&format!("/staff/orders/{id}/stage"), &[("csrf_token", &token), ("stage_id", &stage)])
            .await;
        assert_eq!(response.status(), 404, "POST for {id}");
    }
}

#[tokio::test]
async fn reaching_a_final_stage_completes_the_order_and_cancelled_orders_stay_cancelled() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let delivered = stage_id(&app, "Print job", "Delivered").await.to_string();

    let order = app.order_id("ORD-1038").await;
    assert_eq!(move_to(&staff, order, &delivered, "Delivered to dock 4.", "").await.status(), 303);
    assert_eq!(written(&app, order).await.status, "completed");
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("badge badge-success\">Completed"), "the customer does not see it completed");

    // Back to an earlier stage (a reopened job): open again.
    let quality = stage_id(&app, "Print job", "Quality check").await.to_string();
    assert_eq!(move_to(&staff, order, &quality, "", "Customer reported damage").await.status(), 303);
    assert_eq!(written(&app, order).await.status, "open");

    let cancelled = app.order_id("ORD-1039").await;
    assert_eq!(move_to(&staff, cancelled, &quality, "", "Stock kept for reuse").await.status(), 303);
    let after = written(&app, cancelled).await;
    assert_eq!(after.status, "cancelled");
    assert_eq!(after.stage_id.to_string(), quality);
}

// ---------------------------------------------------------------------------
// The list of every customer's orders, the bulk move, creating and editing orders.

use crate::support::Client;

/// Posts the bulk move form of `/staff/orders` (with the page's own CSRF token).
async fn bulk_move(
    staff: &Client,
    orders: &[Uuid],
    stage: &str,
    customer_note: &str,
    internal_note: &str,
) -> reqwest::Response {
    let token = staff.csrf_token("/staff/orders?status=all").await;
    let mut form: Vec<(&str, String)> = vec![
        ("csrf_token", token),
        ("back", "status=all".into()),
        ("stage_id", stage.into()),
        ("customer_note", customer_note.into()),
        ("internal_note", internal_note.into()),
    ];
    form.extend(orders.iter().map(|o| ("order_id", o.to_string())));
    staff.http.post(staff.url("/staff/orders/bulk-move")).form(&form).send().await.unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.sql().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn numbers_listed(doc: &Html) -> Vec<String> {
    let links = Selector::parse("table.staff-orders tbody tr td:nth-child(2) a").unwrap();
    doc.select(&links).map(|a| a.text().collect()).collect()
}

fn ticked(doc: &Html) -> Vec<String> {
    let boxes = Selector::parse("input[name=\"order_id\"][checked]").unwrap();
    let mut ids: Vec<String> = doc.select(&boxes).map(|b| b.value().attr("value").unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_bulk_move_with_one_order_of_another_workflow_moves_nothing() {
    let app = spawn_app().await;
    let print = [app.order_id("ORD-1042").await, app.order_id("ORD-1043").await];
    let freight = app.order_id("SHP-2207").await;
    let quality = stage_id(&app, "Print job", "Quality check").await;
    let mut before = Vec::new();
    for order in print.iter().chain([&freight]) {
        before.push(written(&app, *order).await);
    }
    let history = count(&app, "SELECT count(*) FROM order_stage_history").await;
    let staff = app.signed_in(STAFF).await;

    let all = [print[0], freight, print[1]];
    let response = bulk_move(&staff, &all, &quality.to_string(), "Going to QC <b>now</b>", "Batch 12").await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let doc = Html::parse_document(&html);
    let message = text(&doc, "#bulk-orders-error");
    assert!(message.contains("SHP-2207"), "{message}");
    assert!(!message.contains("ORD-1042"), "only the order that does not fit is named: {message}");
    assert!(message.contains("Print job"), "{message}");
    assert!(text(&doc, "[role=\"alert\"]").contains("No order was moved"));
    // Everything as it was typed: the ticks, the stage, the notes (escaped).
    let mut expected: Vec<String> = all.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(ticked(&doc), expected);
    let flagged = select_one(&doc, &format!("input[name=\"order_id\"][value=\"{freight}\"]"));
    assert_eq!(flagged.value().attr("aria-invalid"), Some("true"));
    assert_eq!(flagged.value().attr("aria-describedby"), Some("bulk-orders-error"));
    assert_eq!(
        select_one(&doc, "select#bulk-stage option[selected]").value().attr("value"),
        Some(&*quality.to_string())
    );
    assert_eq!(text(&doc, "textarea#bulk-customer-note"), "Going to QC <b>now</b>");
    assert!(html.contains("Going to QC &lt;b&gt;now&lt;/b&gt;"));
    assert_eq!(text(&doc, "textarea#bulk-internal-note"), "Batch 12");

    // Not one order moved, not one timeline entry written.
    for (order, was) in print.iter().chain([&freight]).zip(before) {
        assert_eq!(written(&app, *order).await, was);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM order_stage_history").await, history);
}

#[tokio::test]
async fn a_bulk_move_moves_every_ticked_order_with_its_own_history_and_log() {
    let app = spawn_app().await;
    let numbers = ["ORD-1042", "ORD-1043", "ORD-1044"];
    let mut orders = Vec::new();
    for n in numbers {
        orders.push(app.order_id(n).await);
    }
    let quality = stage_id(&app, "Print job", "Quality check").await;
    let mut before = Vec::new();
    for order in &orders {
        before.push(written(&app, *order).await);
    }
    let activity = count(&app, "SELECT count(*) FROM activity_log WHERE action = 'order.stage_changed'").await;
    let staff = app.signed_in(STAFF).await;

    let response = bulk_move(&staff, &orders, &quality.to_string(), "Checking colours.", "Use the new light box").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/staff/orders?status=all");
    let html = staff.get_html(&location(&response)).await;
    assert!(html.contains("Moved 3 orders to Quality check."), "no success message");

    let db = app.sql().await;
    for ((order, was), number) in orders.iter().zip(&before).zip(numbers) {
        let now = written(&app, *order).await;
        assert_eq!(now.stage_id, quality, "{number}");
        assert_eq!(now.history, was.history + 1, "{number}: one timeline entry");
        let entry = db
            .query_one(
                "SELECT h.stage_name, h.customer_note, n.note FROM order_stage_history h \
                 LEFT JOIN order_internal_notes n ON n.history_id = h.id \
                 WHERE h.order_id = $1 ORDER BY h.reached_at DESC, h.id DESC LIMIT 1",
                &[order],
            )
            .await
            .unwrap();
        assert_eq!(entry.get::<_, String>("stage_name"), "Quality check");
        assert_eq!(entry.get::<_, Option<String>>("customer_note").as_deref(), Some("Checking colours."));
        assert_eq!(entry.get::<_, Option<String>>("note").as_deref(), Some("Use the new light box"));
        let logged: i64 = db
            .query_one(
                "SELECT count(*) FROM activity_log WHERE action = 'order.stage_changed' AND subject_id = $1 \
                 AND actor_label = $2 AND details->>'number' = $3 AND details->>'to' = 'Quality check'",
                &[order, &STAFF, &number],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(logged, 1, "{number}: one activity entry");
    }
    let after = count(&app, "SELECT count(*) FROM activity_log WHERE action = 'order.stage_changed'").await;
    assert_eq!(after, activity + 3);
    let internal = count(&app, "SELECT count(*) FROM order_internal_notes").await;
    assert_eq!(internal, before[0].internal_notes + 3);
}

#[tokio::test]
async fn a_bulk_move_needs_orders_a_stage_and_at_most_two_hundred_orders() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let quality = stage_id(&app, "Print job", "Quality check").await.to_string();
    let history = count(&app, "SELECT count(*) FROM order_stage_history").await;

    let response = bulk_move(&staff, &[], &quality, "", "").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#bulk-orders-error").contains("Tick the orders to move."));

    let order = app.order_id("ORD-1042").await;
    let response = bulk_move(&staff, &[order], "", "", "").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert_eq!(text(&doc, "#bulk-stage-error"), "Choose the stage to move the ticked orders to.");
    assert_eq!(select_one(&doc, "select#bulk-stage").value().attr("aria-invalid"), Some("true"));
    assert_eq!(ticked(&doc), [order.to_string()]);

    let many: Vec<Uuid> = (0..201).map(|_| Uuid::new_v4()).collect();
    let response = bulk_move(&staff, &many, &quality, "", "").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#bulk-orders-error").contains("at most 200 orders; 201 are ticked"));

    // An order already at the stage, without a note to post: refused, named.
    let at_quality = app.order_id("ORD-1040").await;
    let response = bulk_move(&staff, &[order, at_quality], &quality, "", "").await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    let message = text(&doc, "#bulk-orders-error");
    assert!(message.contains("Already at “Quality check”: ORD-1040"), "{message}");

    // A tampered order id is not found.
    let token = staff.csrf_token("/staff/orders").await;
    let response = staff
        .post_form(
            "/staff/orders/bulk-move",
            &[("csrf_token", &token), ("order_id", "ORD-1042"), ("stage_id", &quality)],
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(count(&app, "SELECT count(*) FROM order_stage_history").await, history);
}

#[tokio::test]
async fn a_bulk_move_without_a_valid_csrf_token_is_refused() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;
    let quality = stage_id(&app, "Print job", "Quality check").await.to_string();
    let id = order.to_string();
    let missing = staff.post_form("/staff/orders/bulk-move", &[("order_id", &id), ("stage_id", &quality)]).await;
    assert_eq!(missing.status(), 403);
    let forged = staff
        .post_form("/staff/orders/bulk-move", &[("csrf_token", "forged"), ("order_id", &id), ("stage_id", &quality)])
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(written(&app, order).await, before);
}

#[tokio::test]
async fn the_order_list_spans_customers_and_filters_by_customer_stage_status_and_text() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let acme = app.customer_id("acme").await;

    let html = staff.get_html("/staff/orders").await;
    let doc = Html::parse_document(&html);
    let listed = numbers_listed(&doc);
    assert!(listed.contains(&"ORD-1044".to_owned()) && listed.contains(&"SHP-2207".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"ORD-1039".to_owned()), "cancelled orders are not open");
    // Newest update first.
    let db = app.sql().await;
    let newest: String = db
        .query_one("SELECT number FROM orders WHERE status = 'open' ORDER BY updated_at DESC, id DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listed[0], newest);
    // Navigation, columns, the grouped stage selects, the script.
    assert_eq!(text(&doc, "nav.mainnav a[aria-current=\"page\"]"), "Orders");
    select_one(&doc, "nav.mainnav a[href=\"/staff/workflows\"]");
    select_one(&doc, "select#filter-stage optgroup[label=\"Print job\"] option");
    select_one(&doc, "select#bulk-stage optgroup[label=\"Freight shipment\"] option");
    select_one(&doc, "script[src^=\"/static/staff-orders.\"][defer]");
    assert!(!html.contains(" style="), "inline styles break the CSP");

    let html = staff.get_html(&format!("/staff/orders?customer={acme}&status=all")).await;
    let listed = numbers_listed(&Html::parse_document(&html));
    assert!(listed.iter().all(|n| n.starts_with("ORD-")) && listed.contains(&"ORD-1039".to_owned()), "{listed:?}");

    let production = stage_id(&app, "Print job", "In production").await;
    let html = staff.get_html(&format!("/staff/orders?stage=s%3A{production}")).await;
    assert_eq!(numbers_listed(&Html::parse_document(&html)), ["ORD-1041"]);
    let html = staff.get_html(&format!("/staff/orders?stage=s%3A{production}&status=all")).await;
    let mut listed = numbers_listed(&Html::parse_document(&html));
    listed.sort();
    assert_eq!(listed, ["ORD-1039", "ORD-1041"], "the cancelled order at that stage too");
    let freight = app.sql().await.query_one("SELECT id FROM workflows WHERE name = 'Freight shipment'", &[]).await;
    let freight: Uuid = freight.unwrap().get(0);
    let html = staff.get_html(&format!("/staff/orders?stage=w%3A{freight}")).await;
    let listed = numbers_listed(&Html::parse_document(&html));
    assert!(!listed.is_empty() && listed.iter().all(|n| n.starts_with("SHP-")), "{listed:?}");

    let html = staff.get_html("/staff/orders?status=cancelled").await;
    assert_eq!(numbers_listed(&Html::parse_document(&html)), ["ORD-1039"]);

    // Number, title or reference; typed wildcards are literal.
    let html = staff.get_html("/staff/orders?q=sleeves").await;
    assert_eq!(numbers_listed(&Html::parse_document(&html)), ["ORD-1042"]);
    let html = staff.get_html("/staff/orders?q=gx-5533").await;
    assert_eq!(numbers_listed(&Html::parse_document(&html)), ["SHP-2207"]);
    let html = staff.get_html("/staff/orders?q=%25&status=all").await;
    let doc = Html::parse_document(&html);
    assert!(numbers_listed(&doc).is_empty());
    assert!(text(&doc, ".empty-state").contains("No orders match these filters"));
}

#[tokio::test]
async fn the_order_list_pages_by_keyset_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let db = app.sql().await;
    // 110 more orders, in pairs sharing an update time (the id breaks the tie): three pages.
    db.execute(
        "INSERT INTO orders (customer_id, number, title, workflow_id, stage_id, updated_at) \
         SELECT $1, 'BULK-' || n, 'Bulk order ' || n, w.id, s.id, now() - make_interval(mins => n / 2) \
         FROM generate_series(1, 110) AS n, workflows w JOIN workflow_stages s ON s.workflow_id = w.id \
         WHERE w.name = 'Print job' AND s.position = 0",
        &[&acme],
    )
    .await
    .unwrap();
    let expected: Vec<String> = db
        .query("SELECT number FROM orders WHERE status = 'open' ORDER BY updated_at DESC, id DESC", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(expected.len() > 100);
    let staff = app.signed_in(STAFF).await;

    let mut seen = Vec::new();
    let mut path = "/staff/orders".to_owned();
    let mut pages = Vec::new();
    loop {
        let doc = Html::parse_document(&staff.get_html(&path).await);
        let listed = numbers_listed(&doc);
        assert!(listed.len() <= 50);
        seen.extend(listed);
        pages.push(path.clone());
        let older = Selector::parse("nav.pagination a[rel=\"next\"]").unwrap();
        match doc.select(&older).next() {
            Some(a) => path = a.value().attr("href").unwrap().to_owned(),
            None => break,
        }
        assert!(path.contains("before="), "{path}");
    }
    assert_eq!(seen, expected, "every open order once, newest first");
    assert_eq!(pages.len(), expected.len().div_ceil(50));

    // "Newer" from the second page leads back to the first.
    let doc = Html::parse_document(&staff.get_html(&pages[1]).await);
    let newer = select_one(&doc, "nav.pagination a[rel=\"prev\"]").value().attr("href").unwrap().to_owned();
    let first = numbers_listed(&Html::parse_document(&staff.get_html(&newer).await));
    assert_eq!(first, expected[..50]);
    // A malformed position is the first page, not an error.
    let first = numbers_listed(&Html::parse_document(&staff.get_html("/staff/orders?before=nonsense").await));
    assert_eq!(first, expected[..50]);
}

async fn new_order_form(staff: &Client, customer: Uuid, fields: &[(&str, &str)]) -> reqwest::Response {
    let path = format!("/staff/customers/{customer}/orders/new");
    let token = staff.csrf_token(&path).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    staff.post_form(&path, &form).await
}

#[tokio::test]
async fn staff_create_an_order_that_starts_at_the_first_stage() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let staff = app.signed_in(STAFF).await;

    // The customer page links to the form, which suggests the next number.
    let customer = staff.get_html(&format!("/staff/customers/{acme}")).await;
    assert!(customer.contains(&format!("href=\"/staff/customers/{acme}/orders/new\"")));
    let doc = Html::parse_document(&staff.get_html(&format!("/staff/customers/{acme}/orders/new")).await);
    assert_eq!(select_one(&doc, "input#number").value().attr("value"), Some("ORD-1045"));
    for field in ["number", "title", "reference", "workflow_id", "expected_on", "external_ref"] {
        select_one(&doc, &format!("label[for=\"{field}\"]"));
    }
    assert_eq!(select_one(&doc, "input#expected_on").value().attr("type"), Some("date"));

    let print = app.sql().await.query_one("SELECT id FROM workflows WHERE name = 'Print job'", &[]).await.unwrap();
    let print: Uuid = print.get(0);
    let response = new_order_form(
        &staff,
        acme,
        &[
            ("number", " ORD-1045 "),
            ("title", "Flyers, 2,000"),
            ("reference", "PO-7800"),
            ("workflow_id", &print.to_string()),
            ("expected_on", "2030-05-04"),
            ("external_ref", "erp-991"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let order = app.order_id("ORD-1045").await;
    assert_eq!(location(&response), format!("/staff/orders/{order}"));
    let db = app.sql().await;
    let row = db
        .query_one(
            "SELECT o.customer_id, o.title, o.reference, o.external_ref, o.status, o.expected_on::text, s.name \
             FROM orders o JOIN workflow_stages s ON s.id = o.stage_id WHERE o.id = $1",
            &[&order],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), acme);
    assert_eq!(row.get::<_, String>(1), "Flyers, 2,000");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("PO-7800"));
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("erp-991"));
    assert_eq!(row.get::<_, String>(4), "open");
    assert_eq!(row.get::<_, Option<String>>(5).as_deref(), Some("2030-05-04"));
    assert_eq!(row.get::<_, String>(6), "Order received");
    let history = db
        .query(
            "SELECT h.stage_name, u.email FROM order_stage_history h JOIN users u ON u.id = h.actor_user_id \
             WHERE h.order_id = $1",
            &[&order],
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].get::<_, String>(0), "Order received");
    assert_eq!(history[0].get::<_, String>(1), STAFF);
    let log = db
        .query_one(
            "SELECT customer_id, actor_label, details FROM activity_log WHERE action = 'order.created' AND subject_id = $1",
            &[&order],
        )
        .await
        .unwrap();
    assert_eq!(log.get::<_, Option<Uuid>>(0), Some(acme));
    assert_eq!(log.get::<_, String>(1), STAFF);
    assert_eq!(log.get::<_, serde_json::Value>(2), serde_json::json!({"number": "ORD-1045"}));
    let html = staff.get_html(&location(&response)).await;
    assert!(html.contains("ORD-1045 created for Acme Manufacturing"));

    // The customer sees it.
    let alice = app.signed_in("alice@acme.example").await;
    assert!(alice.get_html("/orders").await.contains("Flyers, 2,000"));
    // The next suggestion moves on.
    let doc = Html::parse_document(&staff.get_html(&format!("/staff/customers/{acme}/orders/new")).await);
    assert_eq!(select_one(&doc, "input#number").value().attr("value"), Some("ORD-1046"));
}

#[tokio::test]
async fn a_taken_number_or_external_reference_is_a_field_error_with_the_form_kept() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let globex = app.customer_id("globex").await;
    let db = app.sql().await;
    db.execute("UPDATE orders SET external_ref = 'erp-1' WHERE number = 'SHP-2207'", &[]).await.unwrap();
    let print: Uuid = db.query_one("SELECT id FROM workflows WHERE name = 'Print job'", &[]).await.unwrap().get(0);
    let orders = count(&app, "SELECT count(*) FROM orders").await;
    let staff = app.signed_in(STAFF).await;
    let print = print.to_string();

    let response = new_order_form(
        &staff,
        acme,
        &[("number", "ORD-1042"), ("title", "Posters <A2>"), ("workflow_id", &print), ("reference", "PO-1")],
    )
    .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let doc = Html::parse_document(&html);
    assert_eq!(text(&doc, "#number-error"), "This customer already has an order with this number.");
    let number = select_one(&doc, "input#number");
    assert_eq!(number.value().attr("value"), Some("ORD-1042"));
    assert_eq!(number.value().attr("aria-invalid"), Some("true"));
    assert!(number.value().attr("aria-describedby").unwrap().contains("number-error"));
    assert_eq!(select_one(&doc, "input#title").value().attr("value"), Some("Posters <A2>"));
    assert!(html.contains("Posters &lt;A2&gt;"));
    assert_eq!(select_one(&doc, "input#reference").value().attr("value"), Some("PO-1"));
    assert_eq!(select_one(&doc, "select#workflow_id option[selected]").value().attr("value"), Some(&*print));

    // Another customer's number is free; an external reference is taken across customers.
    let response = new_order_form(
        &staff,
        acme,
        &[("number", "SHP-2207"), ("title", "T"), ("workflow_id", &print), ("external_ref", "erp-1")],
    )
    .await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(doc.select(&Selector::parse("#number-error").unwrap()).next().is_none());
    assert_eq!(text(&doc, "#external_ref-error"), "Another order already has this external reference.");

    // Blank title, unknown workflow, bad date.
    let response = new_order_form(
        &staff,
        globex,
        &[("number", "SHP-9"), ("title", "  "), ("workflow_id", "nope"), ("expected_on", "2030-02-30")],
    )
    .await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert_eq!(text(&doc, "#title-error"), "Enter the title.");
    assert!(text(&doc, "#workflow_id-error").contains("Choose the workflow"));
    assert!(text(&doc, "#expected_on-error").contains("Enter a date"));
    assert_eq!(select_one(&doc, "input#expected_on").value().attr("value"), Some("2030-02-30"));
    assert_eq!(count(&app, "SELECT count(*) FROM orders").await, orders, "a refused form wrote an order");

    // An empty form; a customer that does not exist.
    let response = new_order_form(&staff, acme, &[]).await;
    assert_eq!(response.status(), 422);
    assert_eq!(staff.get(&format!("/staff/customers/{}/orders/new", Uuid::new_v4())).await.status(), 404);
    assert_eq!(staff.get("/staff/customers/acme/orders/new").await.status(), 404);
}

async fn edit(staff: &Client, order: Uuid, fields: &[(&str, &str)]) -> reqwest::Response {
    let path = format!("/staff/orders/{order}/edit");
    let token = staff.csrf_token(&path).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    staff.post_form(&path, &form).await
}

#[tokio::test]
async fn editing_an_order_checks_the_tracking_link_and_logs_only_field_names() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let before = written(&app, order).await;
    let staff = app.signed_in(STAFF).await;

    let page = staff.get_html(&format!("/staff/orders/{order}")).await;
    assert!(page.contains(&format!("href=\"/staff/orders/{order}/edit\"")), "no Edit details link");
    let doc = Html::parse_document(&staff.get_html(&format!("/staff/orders/{order}/edit")).await);
    assert_eq!(select_one(&doc, "input#title").value().attr("value"), Some("Packaging sleeves, matte"));
    assert_eq!(select_one(&doc, "input#reference").value().attr("value"), Some("PO-7768"));

    let typed = [
        ("title", "Packaging sleeves, gloss"),
        ("reference", "PO-7768"),
        ("expected_on", "2030-01-02"),
        ("tracking_carrier", "DHL Express"),
        ("tracking_number", "JD0001"),
        ("tracking_url", "http://dhl.example/track?id=JD0001"),
    ];
    let response = edit(&staff, order, &typed).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#tracking_url-error").contains("must start with https://"));
    assert_eq!(select_one(&doc, "input#tracking_url").value().attr("aria-invalid"), Some("true"));
    for (name, value) in typed {
        assert_eq!(select_one(&doc, &format!("input#{name}")).value().attr("value"), Some(value), "{name} kept");
    }
    assert_eq!(written(&app, order).await, before, "a refused edit wrote something");

    let mut fixed = typed;
    fixed[5].1 = "https://dhl.example/track?id=JD0001";
    let response = edit(&staff, order, &fixed).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/staff/orders/{order}"));
    let db = app.sql().await;
    let row = db
        .query_one(
            "SELECT title, expected_on::text, tracking_carrier, tracking_number, tracking_url FROM orders WHERE id = $1",
            &[&order],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Packaging sleeves, gloss");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("2030-01-02"));
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("https://dhl.example/track?id=JD0001"));
    let details: serde_json::Value = db
        .query_one("SELECT details FROM activity_log WHERE action = 'order.updated' AND subject_id = $1", &[&order])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        details,
        serde_json::json!({"number": "ORD-1042", "fields": ["title", "expected_on", "tracking_carrier", "tracking_number", "tracking_url"]})
    );
    assert!(staff.get_html(&format!("/staff/orders/{order}")).await.contains("ORD-1042 updated."));

    // Saving again without a change writes nothing.
    let updated = count(&app, "SELECT count(*) FROM activity_log WHERE action = 'order.updated'").await;
    assert_eq!(edit(&staff, order, &fixed).await.status(), 303);
    assert_eq!(count(&app, "SELECT count(*) FROM activity_log WHERE action = 'order.updated'").await, updated);

    // The customer sees the shipment link.
    let alice = app.signed_in("alice@acme.example").await;
    assert!(alice.get_html(&format!("/orders/{order}")).await.contains("https://dhl.example/track?id=JD0001"));
}

#[tokio::test]
async fn staff_cancel_and_reopen_an_order() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1044").await;
    let staff = app.signed_in(STAFF).await;
    let path = format!("/staff/orders/{order}/edit");

    let token = staff.csrf_token(&path).await;
    let response = staff.post_form(&format!("/staff/orders/{order}/cancel"), &[("csrf_token", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(written(&app, order).await.status, "cancelled");
    let alice = app.signed_in("alice@acme.example").await;
    assert!(alice.get_html(&format!("/orders/{order}")).await.contains("Cancelled"));

    // Only a reopen button now.
    let doc = Html::parse_document(&staff.get_html(&path).await);
    select_one(&doc, &format!("form[action=\"/staff/orders/{order}/reopen\"] button"));
    assert!(
        doc.select(&Selector::parse(&format!("form[action=\"/staff/orders/{order}/cancel\"]")).unwrap())
            .next()
            .is_none()
    );

    let response = staff.post_form(&format!("/staff/orders/{order}/reopen"), &[("csrf_token", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(written(&app, order).await.status, "open");

    let db = app.sql().await;
    let actions: Vec<String> = db
        .query(
            "SELECT action FROM activity_log WHERE subject_id = $1 AND action IN ('order.cancelled', 'order.reopened') \
             ORDER BY id",
            &[&order],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["order.cancelled", "order.reopened"]);

    // An order cancelled at a final stage reopens as completed; a completed one cannot be cancelled.
    let done = app.order_id("ORD-1031").await;
    let response = staff.post_form(&format!("/staff/orders/{done}/cancel"), &[("csrf_token", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(written(&app, done).await.status, "completed");
    db.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", &[&done]).await.unwrap();
    let response = staff.post_form(&format!("/staff/orders/{done}/reopen"), &[("csrf_token", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(written(&app, done).await.status, "completed");

    // Without the token, nothing.
    let response = staff.post_form(&format!("/staff/orders/{order}/cancel"), &[]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(written(&app, order).await.status, "open");
    for id in [Uuid::new_v4().to_string(), "nope".to_owned()] {
        for action in ["cancel", "reopen", "edit"] {
            let response = staff.post_form(&format!("/staff/orders/{id}/{action}"), &[("csrf_token", &token)]).await;
            assert_eq!(response.status(), 404, "{action} {id}");
        }
        assert_eq!(staff.get(&format!("/staff/orders/{id}/edit")).await.status(), 404);
    }
}

#[tokio::test]
async fn customers_are_refused_every_staff_order_route() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let acme = app.customer_id("acme").await;
    let before = written(&app, order).await;
    let orders = count(&app, "SELECT count(*) FROM orders").await;
    let stage = stage_id(&app, "Print job", "Delivered").await.to_string();
    let alice = app.signed_in("alice@acme.example").await;
    let token = alice.csrf_token("/orders").await;

    for path in [
        "/staff/orders".to_owned(),
        "/staff/orders?status=all".to_owned(),
        format!("/staff/orders/{order}/edit"),
        format!("/staff/customers/{acme}/orders/new"),
    ] {
        assert_eq!(alice.get(&path).await.status(), 403, "GET {path}");
    }
    let id = order.to_string();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/staff/orders/bulk-move".into(), vec![("order_id", &id), ("stage_id", &stage)]),
        (format!("/staff/customers/{acme}/orders/new"), vec![("number", "X-1"), ("title", "x")]),
        (format!("/staff/orders/{order}/edit"), vec![("title", "Hacked")]),
        (format!("/staff/orders/{order}/cancel"), vec![]),
        (format!("/staff/orders/{order}/reopen"), vec![]),
    ];
    for (path, fields) in posts {
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend(fields);
        assert_eq!(alice.post_form(&path, &form).await.status(), 403, "POST {path}");
    }
    assert_eq!(written(&app, order).await, before);
    assert_eq!(count(&app, "SELECT count(*) FROM orders").await, orders);

    let anonymous = app.client().get("/staff/orders").await;
    assert_eq!(anonymous.status(), 303);
    assert!(location(&anonymous).starts_with("/login"));
}
