//! Workflows in the back office: creating, renaming, reordering, changing, adding and removing stages,
//! and what orders keep through all of it.

use scraper::{Html, Selector};
use uuid::Uuid;

use crate::support::{Client, TestApp, location, move_to, spawn_app, stage_id};

const STAFF: &str = "staff@portal.example";

fn select_one<'a>(doc: &'a Html, css: &str) -> scraper::ElementRef<'a> {
    let selector = Selector::parse(css).unwrap();
    doc.select(&selector).next().unwrap_or_else(|| panic!("nothing matches {css}"))
}

fn text(doc: &Html, css: &str) -> String {
    select_one(doc, css).text().collect()
}

async fn workflow_id(app: &TestApp, name: &str) -> Uuid {
    app.sql().await.query_one("SELECT id FROM workflows WHERE name = $1", &[&name]).await.unwrap().get(0)
}

/// The stages of a workflow as (position, name, awaits_customer, terminal), in order.
async fn stages(app: &TestApp, workflow: Uuid) -> Vec<(i32, String, bool, bool)> {
    app.sql()
        .await
        .query(
            "SELECT position, name, awaits_customer, terminal FROM workflow_stages WHERE workflow_id = $1 ORDER BY position",
            &[&workflow],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn names(stages: &[(i32, String, bool, bool)]) -> Vec<&str> {
    stages.iter().map(|s| s.1.as_str()).collect()
}

/// Every timeline entry's stage name, by order number, to prove none is rewritten.
async fn history(app: &TestApp) -> Vec<(String, String)> {
    app.sql()
        .await
        .query(
            "SELECT o.number, h.stage_name FROM order_stage_history h JOIN orders o ON o.id = h.order_id \
             ORDER BY o.number, h.reached_at, h.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn logged(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    app.sql()
        .await
        .query(
            "SELECT details FROM activity_log WHERE action = $1 AND customer_id IS NULL AND actor_label = $2 \
             AND subject_type = 'workflow' ORDER BY id",
            &[&action, &STAFF],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Posts a form of the workflow page with the page's own CSRF token.
async fn post(staff: &Client, workflow: Uuid, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let token = staff.csrf_token(&format!("/staff/workflows/{workflow}")).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    staff.post_form(path, &form).await
}

#[tokio::test]
async fn the_list_shows_every_workflow_its_stages_and_its_orders() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let print = workflow_id(&app, "Print job").await;
    let html = staff.get_html("/staff/workflows").await;
    let doc = Html::parse_document(&html);
    assert_eq!(text(&doc, "nav.mainnav a[aria-current=\"page\"]"), "Workflows");
    let chips = Selector::parse("ol.stage-chips[aria-label=\"Stages of Print job\"] > li").unwrap();
    let listed: Vec<String> = doc.select(&chips).map(|li| li.text().collect::<String>().trim().to_owned()).collect();
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0], "Order received");
    assert!(listed[1].starts_with("Artwork approval") && listed[1].contains("Waits for the customer"), "{listed:?}");
    assert!(listed[5].starts_with("Delivered") && listed[5].contains("Completes the order"), "{listed:?}");
    let orders: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM orders WHERE workflow_id = $1", &[&print])
        .await
        .unwrap()
        .get(0);
    let item = Selector::parse("ul.workflow-list > li").unwrap();
    let print_item: String =
        doc.select(&item).map(|li| li.text().collect::<String>()).find(|t| t.contains("Print job")).unwrap();
    assert!(print_item.contains(&format!("{orders} orders use it")), "{print_item}");
    select_one(&doc, &format!("a[href=\"/staff/workflows/{print}\"]"));
    for field in ["workflow-name", "workflow-stages", "workflow-last-terminal"] {
        select_one(&doc, &format!("label[for=\"{field}\"]"));
    }
}

#[tokio::test]
async fn staff_create_a_workflow_with_its_stages() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let token = staff.csrf_token("/staff/workflows").await;
    let response = staff
        .post_form(
            "/staff/workflows",
            &[
                ("csrf_token", &token),
                ("name", "  Repair job "),
                ("stages", "Received\r\n\r\n  Diagnosis \r\nQuote approval\r\nRepaired\r\n"),
                ("last_terminal", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let id = workflow_id(&app, "Repair job").await;
    assert_eq!(location(&response), format!("/staff/workflows/{id}"));
    assert_eq!(
        stages(&app, id).await,
        [
            (0, "Received".to_owned(), false, false),
            (1, "Diagnosis".to_owned(), false, false),
            (2, "Quote approval".to_owned(), false, false),
            (3, "Repaired".to_owned(), false, true),
        ]
    );
    assert_eq!(
        logged(&app, "workflow.created").await,
        [serde_json::json!({"name": "Repair job", "stages": ["Received", "Diagnosis", "Quote approval", "Repaired"]})]
    );
    let html = staff.get_html(&location(&response)).await;
    assert!(html.contains("Workflow “Repair job” created with 4 stages."));

    // Offered for new orders at once.
    let acme = app.customer_id("acme").await;
    let form = staff.get_html(&format!("/staff/customers/{acme}/orders/new")).await;
    assert!(form.contains("Repair job (starts at Received)"));
}

#[tokio::test]
async fn a_refused_new_workflow_is_shown_again_as_typed() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let token = staff.csrf_token("/staff/workflows").await;
    let before: i64 = app.sql().await.query_one("SELECT count(*) FROM workflows", &[]).await.unwrap().get(0);

    let response = staff
        .post_form(
            "/staff/workflows",
            &[("csrf_token", &token), ("name", "print JOB"), ("stages", "One\n<Two>"), ("last_terminal", "on")],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    let doc = Html::parse_document(&html);
    assert!(text(&doc, "#workflow-name-error").contains("already a workflow called “print JOB”"));
    let name = select_one(&doc, "input#workflow-name");
    assert_eq!(name.value().attr("value"), Some("print JOB"));
    assert_eq!(name.value().attr("aria-invalid"), Some("true"));
    assert_eq!(text(&doc, "textarea#workflow-stages"), "One\n<Two>");
    assert!(html.contains("&lt;Two&gt;"));

    let response =
        staff.post_form("/staff/workflows", &[("csrf_token", &token), ("name", ""), ("stages", "A\na\n")]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert_eq!(text(&doc, "#workflow-name-error"), "Enter a name for the workflow.");
    assert!(text(&doc, "#workflow-stages-error").contains("appears twice"));
    assert!(
        select_one(&doc, "input#workflow-last-terminal").value().attr("checked").is_none(),
        "unticked stays unticked"
    );

    let long = "x".repeat(101);
    let response =
        staff.post_form("/staff/workflows", &[("csrf_token", &token), ("name", &long), ("stages", " \n ")]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#workflow-name-error").contains("at most 100"));
    assert_eq!(text(&doc, "#workflow-stages-error"), "Enter at least one stage, one per line.");

    let after: i64 = app.sql().await.query_one("SELECT count(*) FROM workflows", &[]).await.unwrap().get(0);
    assert_eq!(after, before);
    // Without a CSRF token: refused before anything is read.
    let response = staff.post_form("/staff/workflows", &[("name", "Sneaky"), ("stages", "A")]).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn renaming_a_workflow_keeps_every_timeline_and_refuses_a_taken_name() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let timelines = history(&app).await;
    let staff = app.signed_in(STAFF).await;
    let path = format!("/staff/workflows/{print}/rename");

    let response = post(&staff, print, &path, &[("name", "Freight SHIPMENT")]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#rename-name-error").contains("already a workflow called"));
    assert_eq!(select_one(&doc, "input#rename-name").value().attr("value"), Some("Freight SHIPMENT"));
    assert_eq!(select_one(&doc, "input#rename-name").value().attr("aria-invalid"), Some("true"));

    let response = post(&staff, print, &path, &[("name", " Print & finishing ")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(workflow_id(&app, "Print & finishing").await, print);
    assert_eq!(
        logged(&app, "workflow.renamed").await,
        [serde_json::json!({"from": "Print job", "to": "Print & finishing"})]
    );
    assert_eq!(history(&app).await, timelines);

    // Without a token, or for no such workflow.
    let response = staff.post_form(&path, &[("name", "Other")]).await;
    assert_eq!(response.status(), 403);
    let unknown = Uuid::new_v4();
    let response = post(&staff, print, &format!("/staff/workflows/{unknown}/rename"), &[("name", "X")]).await;
    assert_eq!(response.status(), 404);
    assert_eq!(staff.get(&format!("/staff/workflows/{unknown}")).await.status(), 404);
    assert_eq!(staff.get("/staff/workflows/print-job").await.status(), 404);
}

#[tokio::test]
async fn stages_move_up_and_down_by_swapping_places() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let quality = stage_id(&app, "Print job", "Quality check").await;
    let order = app.order_id("ORD-1040").await;
    let staff = app.signed_in(STAFF).await;
    let path = format!("/staff/workflows/{print}/stages/{quality}/move");

    let response = post(&staff, print, &path, &[("direction", "up")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/staff/workflows/{print}#stage-{quality}"));
    assert_eq!(
        names(&stages(&app, print).await),
        ["Order received", "Artwork approval", "Quality check", "In production", "Dispatched", "Delivered"]
    );
    assert_eq!(
        logged(&app, "workflow.stage_moved").await,
        [serde_json::json!({"workflow": "Print job", "stage": "Quality check", "direction": "up", "from": 4, "to": 3})]
    );
    // The order stays at its stage; its stepper follows the new order.
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("aria-current=\"step\">Quality check"));
    let html = staff.get_html(&format!("/staff/orders/{order}")).await;
    assert!(html.contains("Quality check · Stage 3 of 6"), "the progress follows the new position");

    let response = post(&staff, print, &path, &[("direction", "down")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(names(&stages(&app, print).await)[2..4], ["In production", "Quality check"]);

    // The first stage cannot go up: nothing changes, nothing is logged.
    let first = stage_id(&app, "Print job", "Order received").await;
    let response =
        post(&staff, print, &format!("/staff/workflows/{print}/stages/{first}/move"), &[("direction", "up")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(logged(&app, "workflow.stage_moved").await.len(), 2);
    assert!(staff.get_html(&location(&response)).await.contains("already the first stage"));

    // A stage of another workflow is not found through this one.
    let freight = stage_id(&app, "Freight shipment", "Booked").await;
    let response =
        post(&staff, print, &format!("/staff/workflows/{print}/stages/{freight}/move"), &[("direction", "down")]).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn changing_a_stage_renames_it_for_the_future_only() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let dispatched = stage_id(&app, "Print job", "Dispatched").await;
    let timelines = history(&app).await;
    assert!(timelines.iter().any(|(_, stage)| stage == "Dispatched"));
    let staff = app.signed_in(STAFF).await;
    let path = format!("/staff/workflows/{print}/stages/{dispatched}");

    let response = post(&staff, print, &path, &[("name", "Shipped"), ("awaits_customer", "on")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(stages(&app, print).await[4], (4, "Shipped".to_owned(), true, false));
    assert_eq!(history(&app).await, timelines, "timeline entries keep the name they were given");
    assert_eq!(
        logged(&app, "workflow.stage_changed").await,
        [
            serde_json::json!({"workflow": "Print job", "stage": "Shipped", "from": "Dispatched", "fields": ["name", "awaits_customer"]})
        ]
    );
    // The customer's timeline still says Dispatched for an order that got there.
    let order = app.order_id("ORD-1038").await;
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("aria-current=\"step\">Shipped"), "the stepper shows the new name");
    let doc = Html::parse_document(&html);
    let titles = Selector::parse(".timeline-title").unwrap();
    assert!(
        doc.select(&titles).any(|t| t.text().collect::<String>() == "Dispatched"),
        "the timeline keeps the old name"
    );

    // Refused: a name another stage has, both flags, a blank name; typed values kept, nothing written.
    let response =
        post(&staff, print, &path, &[("name", "delivered"), ("awaits_customer", "on"), ("terminal", "on")]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    let prefix = format!("stage-{dispatched}");
    assert!(text(&doc, &format!("#{prefix}-name-error")).contains("already has a stage called “delivered”"));
    assert!(text(&doc, &format!("#{prefix}-flags-error")).contains("cannot also wait for the customer"));
    assert_eq!(select_one(&doc, &format!("input#{prefix}-name")).value().attr("value"), Some("delivered"));
    assert!(select_one(&doc, &format!("input#{prefix}-terminal")).value().attr("checked").is_some());
    assert!(select_one(&doc, &format!("#stage-{dispatched} details")).value().attr("open").is_some());
    let response = post(&staff, print, &path, &[("name", "   ")]).await;
    assert_eq!(response.status(), 422);
    assert_eq!(stages(&app, print).await[4], (4, "Shipped".to_owned(), true, false));
    assert_eq!(logged(&app, "workflow.stage_changed").await.len(), 1);
}

#[tokio::test]
async fn a_new_stage_comes_last() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let staff = app.signed_in(STAFF).await;
    let path = format!("/staff/workflows/{print}/stages");

    let response = post(&staff, print, &path, &[("name", " Invoiced "), ("terminal", "on")]).await;
    assert_eq!(response.status(), 303);
    let all = stages(&app, print).await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[6], (6, "Invoiced".to_owned(), false, true));
    assert_eq!(
        logged(&app, "workflow.stage_added").await,
        [serde_json::json!({"workflow": "Print job", "stage": "Invoiced", "awaits_customer": false, "terminal": true})]
    );

    let response = post(&staff, print, &path, &[("name", "INVOICED")]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, "#add-stage-name-error").contains("already has a stage"));
    assert_eq!(select_one(&doc, "input#add-stage-name").value().attr("value"), Some("INVOICED"));
    assert_eq!(stages(&app, print).await.len(), 7);
}

#[tokio::test]
async fn a_stage_with_orders_cannot_be_removed() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let production = stage_id(&app, "Print job", "In production").await;
    let at_stage: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM orders WHERE stage_id = $1", &[&production])
        .await
        .unwrap()
        .get(0);
    assert!(at_stage > 0);
    let staff = app.signed_in(STAFF).await;

    let response = post(&staff, print, &format!("/staff/workflows/{print}/stages/{production}/remove"), &[]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    let message = text(&doc, &format!("#stage-{production}-removal-error"));
    let expected = if at_stage == 1 {
        "1 order is at this stage".to_owned()
    } else {
        format!("{at_stage} orders are at this stage")
    };
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("“In production” can't be removed"), "{message}");
    select_one(&doc, &format!("[role=\"alert\"] a[href=\"/staff/orders?stage=s%3A{production}&status=all\"]"));
    assert_eq!(stages(&app, print).await.len(), 6);
    assert!(logged(&app, "workflow.stage_removed").await.is_empty());
}

#[tokio::test]
async fn removing_an_unused_stage_keeps_the_timelines_that_name_it() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let dispatched = stage_id(&app, "Print job", "Dispatched").await;
    let delivered = stage_id(&app, "Print job", "Delivered").await;
    let staff = app.signed_in(STAFF).await;
    // Move every order at the stage on first.
    let at_stage: Vec<Uuid> = app
        .sql()
        .await
        .query("SELECT id FROM orders WHERE stage_id = $1", &[&dispatched])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for order in at_stage {
        assert_eq!(move_to(&staff, order, &delivered.to_string(), "Delivered.", "").await.status(), 303);
    }
    let timelines = history(&app).await;
    let passed: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM order_stage_history WHERE stage_id = $1", &[&dispatched])
        .await
        .unwrap()
        .get(0);
    assert!(passed > 0, "some orders went through Dispatched");

    let response = post(&staff, print, &format!("/staff/workflows/{print}/stages/{dispatched}/remove"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        stages(&app, print).await,
        [
            (0, "Order received".to_owned(), false, false),
            (1, "Artwork approval".to_owned(), true, false),
            (2, "In production".to_owned(), false, false),
            (3, "Quality check".to_owned(), false, false),
            (4, "Delivered".to_owned(), false, true),
        ],
        "positions close the gap"
    );
    assert_eq!(history(&app).await, timelines, "every timeline entry survives with its stage name");
    let unlinked: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM order_stage_history WHERE stage_name = 'Dispatched' AND stage_id IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unlinked, passed);
    assert_eq!(
        logged(&app, "workflow.stage_removed").await,
        [serde_json::json!({"workflow": "Print job", "stage": "Dispatched"})]
    );

    // The customer's completed order still shows where it went.
    let order = app.order_id("ORD-1031").await;
    let alice = app.signed_in("alice@acme.example").await;
    let html = alice.get_html(&format!("/orders/{order}")).await;
    assert!(html.contains("<p class=\"timeline-title\">Dispatched</p>"), "the timeline lost a stage");
    let html = staff.get_html(&format!("/staff/orders/{order}")).await;
    assert!(html.contains("Delivered · Stage 5 of 5"));
}

#[tokio::test]
async fn a_workflow_keeps_at_least_one_stage() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let token = staff.csrf_token("/staff/workflows").await;
    let response =
        staff.post_form("/staff/workflows", &[("csrf_token", &token), ("name", "Tiny"), ("stages", "Only")]).await;
    assert_eq!(response.status(), 303);
    let tiny = workflow_id(&app, "Tiny").await;
    let only: Uuid = app
        .sql()
        .await
        .query_one("SELECT id FROM workflow_stages WHERE workflow_id = $1", &[&tiny])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stages(&app, tiny).await, [(0, "Only".to_owned(), false, false)], "last stage terminal only if asked");
    let response = post(&staff, tiny, &format!("/staff/workflows/{tiny}/stages/{only}/remove"), &[]).await;
    assert_eq!(response.status(), 422);
    let doc = Html::parse_document(&response.text().await.unwrap());
    assert!(text(&doc, &format!("#stage-{only}-removal-error")).contains("must keep at least one stage"));
    assert_eq!(stages(&app, tiny).await.len(), 1);
}

#[tokio::test]
async fn customers_are_refused_every_workflow_route() {
    let app = spawn_app().await;
    let print = workflow_id(&app, "Print job").await;
    let stage = stage_id(&app, "Print job", "Quality check").await;
    let before = stages(&app, print).await;
    let alice = app.signed_in("alice@acme.example").await;
    let token = alice.csrf_token("/orders").await;

    for path in ["/staff/workflows".to_owned(), format!("/staff/workflows/{print}")] {
        assert_eq!(alice.get(&path).await.status(), 403, "GET {path}");
    }
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/staff/workflows".into(), vec![("name", "Mine"), ("stages", "A")]),
        (format!("/staff/workflows/{print}/rename"), vec![("name", "Mine")]),
        (format!("/staff/workflows/{print}/stages"), vec![("name", "Mine")]),
        (format!("/staff/workflows/{print}/stages/{stage}"), vec![("name", "Mine")]),
        (format!("/staff/workflows/{print}/stages/{stage}/move"), vec![("direction", "up")]),
        (format!("/staff/workflows/{print}/stages/{stage}/remove"), vec![]),
    ];
    for (path, fields) in posts {
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend(fields);
        assert_eq!(alice.post_form(&path, &form).await.status(), 403, "POST {path}");
    }
    assert_eq!(stages(&app, print).await, before);
    assert_eq!(workflow_id(&app, "Print job").await, print);
    assert!(logged(&app, "workflow.created").await.is_empty());
}
