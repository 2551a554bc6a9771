//! The customer's side of orders: the list (filters, sorts, keyset pages), the
//! answer to a waiting stage (approve / request changes), and the dashboard.

use std::time::Duration;

use uuid::Uuid;

use crate::support::live::LiveSocket;
use crate::support::{Client, TestApp, location, move_to, spawn_app, stage_id};

const ALICE: &str = "alice@acme.example";
const STAFF: &str = "staff@portal.example";

async fn stage_of(app: &TestApp, order: Uuid) -> (String, String, i64) {
    let row = app
        .sql()
        .await
        .query_one(
            "SELECT s.name, o.status, (SELECT count(*) FROM order_stage_history h WHERE h.order_id = o.id) \
             FROM orders o JOIN workflow_stages s ON s.id = o.stage_id WHERE o.id = $1",
            &[&order],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn answer(client: &Client, order: Uuid, decision: &str, note: &str) -> reqwest::Response {
    let token = client.csrf_token(&format!("/orders/{order}")).await;
    client
        .post_form(
            &format!("/orders/{order}/respond"),
            &[("csrf_token", &token), ("decision", decision), ("note", note)],
        )
        .await
}

#[tokio::test]
async fn approving_artwork_moves_the_order_on_and_tells_staff() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let alice = app.signed_in(ALICE).await;
    let page = alice.get_html(&format!("/orders/{order}")).await;
    assert!(page.contains("Waiting for you: Artwork approval"), "{page}");

    let response = answer(&alice, order, "approve", "Looks great").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/orders/{order}"));
    assert_eq!(stage_of(&app, order).await.0, "In production");

    let page = alice.get_html(&format!("/orders/{order}")).await;
    assert!(page.contains("ORD-1042 is approved and now at “In production”"), "flash: {page}");
    assert!(page.contains("Approved by Alice Lee: Looks great"), "timeline: {page}");
    assert!(!page.contains("Waiting for you:"), "the form is gone once answered");
    let logged: i64 = app
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM activity_log WHERE action = 'order.approved' AND subject_id = $1 \
             AND actor_label = $2 AND details->>'to' = 'In production'",
            &[&order, &ALICE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);

    let feed = app.signed_in(STAFF).await.get_html("/staff").await;
    assert!(feed.contains("Approved an order"), "{feed}");
    assert!(feed.contains(&format!("/staff/orders/{order}")), "the feed links to the order");
}

#[tokio::test]
async fn asking_for_changes_needs_a_message_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1043").await;
    let before = stage_of(&app, order).await;
    let alice = app.signed_in(ALICE).await;

    let empty = answer(&alice, order, "changes", "   ").await;
    assert_eq!(empty.status(), 422);
    let html = empty.text().await.unwrap();
    assert!(html.contains("Tell us what to change"), "{html}");
    assert!(html.contains("aria-invalid=\"true\""));

    let long = "Make the logo bigger <b>please</b>. ".repeat(60);
    let refused = answer(&alice, order, "changes", &long).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("shorten it to at most 2,000"), "{html}");
    assert!(html.contains("Make the logo bigger &lt;b&gt;please&lt;/b&gt;."), "typed text kept, escaped");
    assert_eq!(stage_of(&app, order).await, before, "nothing written");

    let asked = answer(&alice, order, "changes", "The logo should be blue, not green.").await;
    assert_eq!(asked.status(), 303);
    let (stage, status, history) = stage_of(&app, order).await;
    assert_eq!((stage.as_str(), status.as_str()), ("Order received", "open"));
    assert_eq!(history, before.2 + 1);
    let page = alice.get_html(&format!("/orders/{order}")).await;
    assert!(page.contains("Changes requested by Alice Lee: The logo should be blue, not green."), "{page}");

    let feed = app.signed_in(STAFF).await.get_html("/staff").await;
    assert!(feed.contains("Asked for changes on an order") && feed.contains("The logo should be blue"), "{feed}");
    assert!(feed.contains("Needs a reply"));
}

#[tokio::test]
async fn nobody_answers_an_order_that_is_not_theirs_or_not_waiting() {
    let app = spawn_app().await;
    let waiting = app.order_id("ORD-1042").await;
    let before = stage_of(&app, waiting).await;

    // Another customer's order is not found, exactly like a missing one.
    let bob = app.signed_in("bob@globex.example").await;
    let token = bob.csrf_token("/orders").await;
    for path in [
        format!("/orders/{waiting}/respond"),
        format!("/orders/{}/respond", Uuid::new_v4()),
        "/orders/not-an-id/respond".to_owned(),
    ] {
        let response = bob.post_form(&path, &[("csrf_token", &token), ("decision", "approve")]).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(stage_of(&app, waiting).await, before);

    // Without the CSRF token nothing happens either.
    let alice = app.signed_in(ALICE).await;
    let forged = alice.post_form(&format!("/orders/{waiting}/respond"), &[("decision", "approve")]).await;
    assert_eq!(forged.status(), 403);
    assert_eq!(stage_of(&app, waiting).await, before);

    // An order in production does not wait for the customer.
    let busy = app.order_id("ORD-1040").await;
    let busy_before = stage_of(&app, busy).await;
    let response = answer(&alice, busy, "approve", "").await;
    assert_eq!(response.status(), 303);
    assert_eq!(stage_of(&app, busy).await, busy_before);
    let page = alice.get_html(&format!("/orders/{busy}")).await;
    assert!(page.contains("no longer waits for your answer"), "{page}");

    let unknown = answer(&alice, waiting, "maybe", "").await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(stage_of(&app, waiting).await, before);
}

#[tokio::test]
async fn the_dashboard_offers_approval_and_shows_what_changed_since_the_last_visit() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let alice = app.signed_in(ALICE).await;
    let dashboard = alice.get_html("/").await;
    assert!(dashboard.contains("Waiting for you") && dashboard.contains("Approve ORD-1042"));
    // First visit: nothing to compare with.
    assert!(dashboard.contains("Recently updated") && !dashboard.contains("Since your last visit"));

    let token = crate::support::csrf_in(&dashboard).unwrap();
    let approved = alice
        .post_form(
            &format!("/orders/{order}/respond"),
            &[("csrf_token", &token), ("decision", "approve"), ("from", "dashboard")],
        )
        .await;
    assert_eq!(location(&approved), "/");

    // Staff move another order; Alice comes back in a new session.
    let staff = app.signed_in(STAFF).await;
    let other = app.order_id("ORD-1044").await;
    let stage = stage_id(&app, "Print job", "Artwork approval").await.to_string();
    assert_eq!(move_to(&staff, other, &stage, "Proof attached.", "").await.status(), 303);
    let again = app.signed_in(ALICE).await.get_html("/").await;
    assert!(again.contains("Since your last visit"), "{again}");
    let since = &again[again.find("Since your last visit").unwrap()..];
    assert!(since.contains("ORD-1044") && since.contains("Reached Artwork approval"), "{since}");
    assert!(since.contains("ORD-1042") && since.contains("Reached In production"), "{since}");
}

#[tokio::test]
async fn an_answer_is_pushed_to_staff_and_to_colleagues_without_internal_notes() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let staff = app.signed_in(STAFF).await;
    let (mut feed, _) = LiveSocket::for_page(&staff, &app.origin, "/staff").await;
    feed.resumed().await;
    let dave = app.signed_in("dave@acme.example").await;
    let (mut colleague, _) = LiveSocket::for_page(&dave, &app.origin, &format!("/orders/{order}")).await;
    colleague.resumed().await;

    let alice = app.signed_in(ALICE).await;
    assert_eq!(answer(&alice, order, "approve", "").await.status(), 303);
    let html = feed.expect("staff-feed", "ORD-1042").await;
    assert!(html.contains("Approved an order"), "{html}");
    // Dave's copy of the page loses the form: the answer region is pushed empty.
    let push = colleague.expect_push(&format!("order-{order}-timeline"), "Approved by Alice Lee").await;
    let region = format!("order-{order}-answer");
    let answer_region = match crate::support::live::html_of(&push, &region) {
        Some(html) => html.to_owned(),
        None => colleague.expect(&region, "").await,
    };
    assert!(!answer_region.contains("<form"), "{answer_region}");

    // A staff move with an internal note reaches Dave without the note.
    let next = stage_id(&app, "Print job", "Quality check").await.to_string();
    assert_eq!(move_to(&staff, order, &next, "Checking colours.", "Secret: supplier issue").await.status(), 303);
    let push = colleague.expect_push(&format!("order-{order}-timeline"), "Checking colours.").await;
    assert!(!format!("{push:?}").contains("Secret: supplier issue"));
    colleague.expect_silence(Duration::from_millis(300)).await;
}

/// Adds `n` orders for Acme, numbered `BULK-0001`…, updated one minute apart.
async fn many_orders(app: &TestApp, n: i32) {
    app.sql()
        .await
        .execute(
            "INSERT INTO orders (customer_id, number, title, reference, workflow_id, stage_id, expected_on, updated_at) \
             SELECT c.id, 'BULK-' || lpad(i::text, 4, '0'), 'Flyer run ' || i, 'REF-' || i, w.id, s.id, \
                    CASE WHEN i % 3 = 0 THEN NULL ELSE current_date + i END, \
                    now() - make_interval(mins => i) \
             FROM generate_series(1, $1) i, customers c, workflows w \
             JOIN workflow_stages s ON s.workflow_id = w.id AND s.position = 2 \
             WHERE c.slug = 'acme' AND w.name = 'Print job'",
            &[&n],
        )
        .await
        .unwrap();
}

/// The order numbers of a list page, in order, and its Next / Previous links.
fn page_of(html: &str) -> (Vec<String>, Option<String>, Option<String>) {
    let doc = scraper::Html::parse_document(html);
    let numbers = scraper::Selector::parse("#orders-rows tr td:first-child a").unwrap();
    let link = |rel: &str| {
        let selector = scraper::Selector::parse(&format!("nav.pagination a[rel={rel}]")).unwrap();
        doc.select(&selector).next().and_then(|a| a.value().attr("href")).map(str::to_owned)
    };
    (doc.select(&numbers).map(|a| a.text().collect()).collect(), link("next"), link("prev"))
}

#[tokio::test]
async fn keyset_pages_visit_every_order_once_in_both_directions() {
    let app = spawn_app().await;
    many_orders(&app, 60).await;
    let alice = app.signed_in(ALICE).await;
    for sort in ["updated", "expected", "number"] {
        let mut path = format!("/orders?status=all&sort={sort}&q=BULK");
        let mut pages = Vec::new();
        loop {
            let html = alice.get_html(&path).await;
            let (numbers, next, _) = page_of(&html);
            assert!(html.contains("60 orders match"), "{sort}");
            pages.push(numbers);
            match next {
                Some(next) => path = next.replace("&amp;", "&"),
                None => break,
            }
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![25, 25, 10], "{sort}");
        let all: Vec<&String> = pages.iter().flatten().collect();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 60, "{sort}: every order exactly once");
        match sort {
            // Updated one minute apart, newest first: BULK-0001 first.
            "updated" => assert_eq!(all.first().map(|s| s.as_str()), Some("BULK-0001")),
            "number" => assert!(all.windows(2).all(|w| w[0] < w[1])),
            // Orders without a date come last.
            _ => assert!(all[..40].iter().all(|n| n.trim_start_matches("BULK-").parse::<i32>().unwrap() % 3 != 0)),
        }
        // And back: Previous from the last page gives the same pages.
        let html = alice.get_html(&path).await;
        let (_, _, prev) = page_of(&html);
        let back = alice.get_html(&prev.unwrap().replace("&amp;", "&")).await;
        assert_eq!(page_of(&back).0, pages[1], "{sort}");
    }
}

#[tokio::test]
async fn the_list_filters_by_stage_status_and_search_and_shows_only_the_customers_orders() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let approval = stage_id(&app, "Print job", "Artwork approval").await;
    let html = alice.get_html(&format!("/orders?stage={approval}")).await;
    let (numbers, _, _) = page_of(&html);
    assert_eq!(numbers, vec!["ORD-1043", "ORD-1042"]);
    assert!(html.contains("<optgroup label=\"Print job\">") && !html.contains("Freight shipment"));

    let (numbers, _, _) = page_of(&alice.get_html("/orders?status=cancelled").await);
    assert_eq!(numbers, vec!["ORD-1039"]);
    // The customer's reference, case-insensitively; LIKE wildcards are taken literally.
    let (numbers, _, _) = page_of(&alice.get_html("/orders?status=all&q=po-7761").await);
    assert_eq!(numbers, vec!["ORD-1041"]);
    assert!(alice.get_html("/orders?status=all&q=%25").await.contains("No orders match"));
    // Another customer's order number or stage shows nothing of theirs.
    let html = alice.get_html("/orders?status=all&q=SHP-2207").await;
    assert!(html.contains("No orders match") && !html.contains("Hamburg"));
    let transit = stage_id(&app, "Freight shipment", "In transit").await;
    let html = alice.get_html(&format!("/orders?status=all&stage={transit}")).await;
    assert!(!html.contains("SHP-"), "a foreign stage filters nothing");
    // A tampered cursor starts at the top instead of failing.
    let id = Uuid::new_v4();
    for tampered in ["garbage~xyz".to_owned(), format!("x~{id}"), format!("2025-13-45~{id}")] {
        for sort in ["updated", "expected", "number"] {
            let html = alice.get_html(&format!("/orders?sort={sort}&after={tampered}")).await;
            assert!(sort == "number" || html.contains("ORD-1044"), "{sort} {tampered}");
        }
    }
}

/// Past 2,000 matches the search stops collecting ids and filters the ordered list in line.
#[tokio::test]
async fn a_search_that_matches_thousands_still_pages_in_order() {
    let app = spawn_app().await;
    many_orders(&app, 2100).await;
    let alice = app.signed_in(ALICE).await;
    let html = alice.get_html("/orders?status=all&q=flyer%20run").await;
    assert!(html.contains("More than 1,000 orders match"), "{html}");
    let (numbers, next, _) = page_of(&html);
    assert_eq!(numbers.len(), 25);
    assert_eq!(numbers.first().map(String::as_str), Some("BULK-0001"));
    let (second, _, _) = page_of(&alice.get_html(&next.unwrap().replace("&amp;", "&")).await);
    assert_eq!(second.first().map(String::as_str), Some("BULK-0026"));
    // With another filter the count is taken, not assumed.
    let html = alice.get_html("/orders?status=cancelled&q=flyer%20run").await;
    assert!(html.contains("No orders match"), "{html}");
    // And a narrow search in the same list goes through the id path.
    let (numbers, _, _) = page_of(&alice.get_html("/orders?status=all&q=REF-2077").await);
    assert_eq!(numbers, vec!["BULK-2077"]);
}

/// The counts the dashboard reads, next to a fresh count of the orders themselves.
async fn stage_counts(app: &TestApp) -> (Vec<(Uuid, Uuid, i64)>, Vec<(Uuid, Uuid, i64)>) {
    let sql = app.sql().await;
    let kept = sql
        .query(
            "SELECT customer_id, stage_id, open_orders::bigint FROM order_stage_counts WHERE open_orders <> 0 \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let counted = sql
        .query(
            "SELECT customer_id, stage_id, count(*) FROM orders WHERE status = 'open' GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let rows = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    (rows(kept), rows(counted))
}

#[tokio::test]
async fn open_orders_by_stage_stay_exact_through_every_kind_of_write() {
    let app = spawn_app().await;
    let (kept, counted) = stage_counts(&app).await;
    assert!(!counted.is_empty());
    assert_eq!(kept, counted, "the migration counts what is there");

    let sql = app.sql().await;
    let acme = app.customer_id("acme").await;
    let globex = app.customer_id("globex").await;
    let order = app.order_id("ORD-1042").await;
    let (workflow, first): (Uuid, Uuid) = {
        let row = sql
            .query_one(
                "SELECT o.workflow_id, (SELECT s.id FROM workflow_stages s WHERE s.workflow_id = o.workflow_id \
                 ORDER BY s.position LIMIT 1) FROM orders o WHERE o.id = $1",
                &[&order],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    // Every writer goes through the same trigger: inserts (one and many), stage
    // moves, completion, reopening, a move to another customer, deletes.
    type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;
    let steps: Vec<(&str, Params)> = vec![
        (
            "INSERT INTO orders (customer_id, number, title, workflow_id, stage_id) \
             SELECT $1, 'CNT-' || n, 'Counted ' || n, $2, $3 FROM generate_series(1, 5) n",
            vec![&acme, &workflow, &first],
        ),
        ("UPDATE orders SET stage_id = $1 WHERE id = $2", vec![&first, &order]),
        ("UPDATE orders SET status = 'completed' WHERE number IN ('CNT-1', 'CNT-2') AND customer_id = $1", vec![&acme]),
        ("UPDATE orders SET status = 'open' WHERE number = 'CNT-2' AND customer_id = $1", vec![&acme]),
        ("UPDATE orders SET title = 'Renamed' WHERE number = 'CNT-3' AND customer_id = $1", vec![&acme]),
        (
            "UPDATE orders SET customer_id = $2, number = 'MOVED-4' WHERE number = 'CNT-4' AND customer_id = $1",
            vec![&acme, &globex],
        ),
        ("DELETE FROM orders WHERE number IN ('CNT-5', 'CNT-1') AND customer_id = $1", vec![&acme]),
    ];
    for (step, params) in steps {
        sql.execute(step, &params).await.unwrap();
        let (kept, counted) = stage_counts(&app).await;
        assert_eq!(kept, counted, "after {step}");
    }

    // The dashboard shows the kept count.
    let alice = app.signed_in(ALICE).await;
    let first_stage: String =
        sql.query_one("SELECT name FROM workflow_stages WHERE id = $1", &[&first]).await.unwrap().get(0);
    let open_in_first: i64 = sql
        .query_one(
            "SELECT count(*) FROM orders WHERE customer_id = $1 AND stage_id = $2 AND status = 'open'",
            &[&acme, &first],
        )
        .await
        .unwrap()
        .get(0);
    let html = alice.get_html("/").await;
    let stages = html.split("id=\"dashboard-stages\"").nth(1).unwrap();
    let row = stages.split("<li").find(|li| li.contains(&format!(">{first_stage}<"))).unwrap();
    assert!(row.contains(&format!("<span class=\"num\">{open_in_first}</span>")), "{row}");

    // A customer sees only its own counts.
    let app_sql = app.app_role_sql().await;
    app_sql.batch_execute(&format!("SET portal.customer_id = '{globex}'")).await.unwrap();
    let foreign: i64 = app_sql
        .query_one("SELECT count(*) FROM order_stage_counts WHERE customer_id <> $1", &[&globex])
        .await
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0);
}
