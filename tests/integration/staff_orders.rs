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
