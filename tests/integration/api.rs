//! The JSON API (`/api/v1/orders`) and the integrations page that makes its tokens.

use reqwest::Method;
use scraper::{Html, Selector};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::live::LiveSocket;
use crate::support::{Client, PASSWORD, TestApp, location, spawn_app};

const STAFF: &str = "staff@portal.example";
const ALICE: &str = "alice@acme.example";
const ERP: &str = "ERP sync";

/// Creates an integration with the staff page's form and returns the token the answer shows.
async fn create_integration(staff: &Client, name: &str) -> String {
    let csrf = staff.csrf_token("/staff/integrations").await;
    let response = staff.post_form("/staff/integrations", &[("csrf_token", &csrf), ("name", name)]).await;
    assert_eq!(response.status(), 200, "the token is shown in the POST's own answer");
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    assert!(response.headers().get("location").is_none());
    let cookies: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    let html = response.text().await.unwrap();
    let token = token_in(&html).expect("the new token on the page");
    assert!(cookies.iter().all(|c| !c.contains(&token)), "the token never travels in a cookie");
    token
}

fn token_in(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let input = doc.select(&Selector::parse("input#token-value").unwrap()).next()?;
    assert!(input.value().attr("readonly").is_some(), "a read-only field to copy from");
    input.value().attr("value").map(str::to_owned)
}

async fn integration_id(app: &TestApp, name: &str) -> Uuid {
    app.sql().await.query_one("SELECT id FROM users WHERE integration AND name = $1", &[&name]).await.unwrap().get(0)
}

/// A client of the API: a bearer token and no cookies.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Answer {
    fn error(&self) -> (&str, Option<&str>) {
        let error = &self.json["error"];
        (error["code"].as_str().unwrap_or_else(|| panic!("an error body: {}", self.json)), error["field"].as_str())
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
    }
}

impl Api {
    fn new(app: &TestApp, token: Option<&str>) -> Self {
        Api { http: reqwest::Client::new(), base: app.address.clone(), token: token.map(str::to_owned) }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        if status != 204 {
            assert!(
                headers.get("content-type").is_some_and(|c| c.to_str().unwrap().starts_with("application/json")),
                "every answer is JSON ({status}: {text})"
            );
        }
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
        Answer { status, headers, json }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body)).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn raw(&self, method: Method, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
        let request =
            self.http.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        self.send(request).await
    }
}

/// An app, the staff admin's client, and an API client with a fresh integration's token.
async fn with_integration() -> (TestApp, Client, Api, String) {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let token = create_integration(&staff, ERP).await;
    let api = Api::new(&app, Some(&token));
    (app, staff, api, token)
}

async fn count(app: &TestApp, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
    app.sql().await.query_one(sql, params).await.unwrap().get(0)
}

fn order_body(customer: Uuid, number: &str) -> Value {
    json!({
        "customer_id": customer,
        "number": number,
        "title": "Brochures, 2,000 copies",
        "reference": "PO-9001",
        "workflow": "Print job",
        "expected_on": "2026-06-30",
    })
}

#[tokio::test]
async fn a_token_made_on_the_staff_page_works_is_never_shown_again_and_dies_when_revoked() {
    let app = spawn_app().await;
    let staff = app.signed_in(STAFF).await;
    let page = staff.get_html("/staff/integrations").await;
    assert!(page.contains("href=\"/staff/integrations\" aria-current=\"page\""), "Integrations is in the staff menu");

    let token = create_integration(&staff, ERP).await;
    assert!(token.starts_with("portal_") && token.len() == 50, "portal_ + 43 characters: {token}");
    let integration = integration_id(&app, ERP).await;

    // Only the hash and the prefix are stored, and no log or email carries the token.
    let db = app.sql().await;
    let stored = db
        .query_one(
            "SELECT prefix, created_by IS NOT NULL AS by_someone FROM api_tokens \
             WHERE user_id = $1 AND token_hash = sha256(convert_to($2, 'UTF8'))",
            &[&integration, &token],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, String>("prefix"), token[..12]);
    assert!(stored.get::<_, bool>("by_someone"));
    let like = format!("%{}%", &token[12..]);
    for table in ["activity_log", "events", "outbox"] {
        let sql = format!("SELECT count(*) FROM {table} t WHERE to_jsonb(t)::text LIKE $1");
        assert_eq!(count(&app, &sql, &[&like]).await, 0, "the token is nowhere in {table}");
    }

    let api = Api::new(&app, Some(&token));
    assert_eq!(api.get("/api/v1/orders").await.status, 200);

    // Later pages show the prefix, never the token; the integration is not a staff member on Security.
    let later = staff.get_html("/staff/integrations").await;
    assert!(later.contains(ERP) && later.contains(&token[..12]));
    assert!(!later.contains(&token[12..]) && token_in(&later).is_none());
    for path in ["/staff", "/staff/security"] {
        assert!(!staff.get_html(path).await.contains(&token[12..]), "{path}");
    }
    assert!(!staff.get_html("/staff/security").await.contains(ERP), "integrations are not staff accounts");

    // A second token (rotation): shown once, both work.
    let csrf = staff.csrf_token("/staff/integrations").await;
    let response =
        staff.post_form(&format!("/staff/integrations/{integration}/tokens"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let second = token_in(&response.text().await.unwrap()).expect("the second token on the page");
    assert_ne!(second, token);
    let rotated = Api::new(&app, Some(&second));
    assert_eq!(rotated.get("/api/v1/orders").await.status, 200);

    // Revoking the first: it is refused from then on, the second is not.
    let first_id: Uuid = db
        .query_one("SELECT id FROM api_tokens WHERE prefix = $1 AND user_id = $2", &[&&token[..12], &integration])
        .await
        .unwrap()
        .get(0);
    let csrf = staff.csrf_token("/staff/integrations").await;
    let response =
        staff.post_form(&format!("/staff/integrations/tokens/{first_id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/staff/integrations");
    let after = staff.get_html("/staff/integrations").await;
    assert!(after.contains("Revoked") && !after.contains(&token[12..]) && !after.contains(&second[12..]));
    let refused = api.get("/api/v1/orders").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error(), ("unauthorized", None));
    assert!(refused.header("www-authenticate").starts_with("Bearer"));
    assert_eq!(rotated.get("/api/v1/orders").await.status, 200);
    let actions: Vec<String> = db
        .query(
            "SELECT action FROM activity_log WHERE subject_id = $1 AND action LIKE 'integration.%' ORDER BY id",
            &[&integration],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["integration.created", "integration.token_created", "integration.token_revoked"]);
}

#[tokio::test]
async fn missing_wrong_and_cookie_credentials_get_401_and_guessing_is_throttled() {
    let (app, staff, api, _token) = with_integration().await;

    let none = Api::new(&app, None).get("/api/v1/orders").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.error(), ("unauthorized", None));
    assert_eq!(none.header("www-authenticate"), "Bearer realm=\"portal\"");

    // Browser sessions are no credential here, a customer's or a staff member's.
    let alice = app.signed_in(ALICE).await;
    for client in [&alice, &staff] {
        let response = client.get("/api/v1/orders").await;
        assert_eq!(response.status(), 401);
        let response = client.http.put(client.url("/api/v1/orders/by-ref/X-1")).json(&json!({})).send().await.unwrap();
        assert_eq!(response.status(), 401, "no cookie-authenticated writes either");
    }

    // Wrong tokens, well-formed or not, count against the network; from the 61st, 429.
    let wrong = Api::new(&app, Some(&format!("portal_{}", "A".repeat(43))));
    let answer = wrong.get("/api/v1/orders").await;
    assert_eq!(answer.status, 401);
    assert!(answer.header("www-authenticate").contains("invalid_token"));
    let garbage = Api::new(&app, Some("let-me-in"));
    for i in 1..60 {
        let answer = if i % 2 == 0 { garbage.get("/api/v1/orders").await } else { wrong.get("/api/v1/orders").await };
        assert_eq!(answer.status, 401, "failure {} of 60", i + 1);
    }
    let throttled = wrong.get("/api/v1/orders").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.error(), ("rate_limited", None));
    let retry: u64 = throttled.header("retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=600).contains(&retry), "{retry}");
    // Only failures count: the integration's own token keeps working from the same network.
    assert_eq!(api.get("/api/v1/orders").await.status, 200);
    // An unauthenticated request with a broken body is still a 401 (authentication answers first).
    let broken = Api::new(&app, None).raw(Method::PUT, "/api/v1/orders/by-ref/X-1", "application/json", "{").await;
    assert_eq!(broken.status, 401);
}

#[tokio::test]
async fn orders_are_listed_in_pages_that_a_sync_loop_can_resume_and_read_one_by_one() {
    let (app, _staff, api, _token) = with_integration().await;
    let db = app.sql().await;
    let expected: Vec<Uuid> = db
        .query("SELECT id FROM orders ORDER BY updated_at, id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(expected.len() > 5, "the demo has orders of both customers");

    // Pages of 5, following `next` to the end: every order once, in (updated_at, id) order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?limit=5".to_owned();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.json);
        let orders = page.json["orders"].as_array().unwrap();
        assert!(orders.len() <= 5);
        seen.extend(orders.iter().map(|o| o["id"].as_str().unwrap().parse::<Uuid>().unwrap()));
        match page.json["next"].as_str() {
            Some(next) => path = format!("/api/v1/orders?limit=5&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let acme = app.customer_id("acme").await;
    let open = api.get(&format!("/api/v1/orders?customer={acme}&status=open&limit=200")).await;
    let orders = open.json["orders"].as_array().unwrap();
    let acme_open =
        count(&app, "SELECT count(*) FROM orders WHERE customer_id = $1 AND status = 'open'", &[&acme]).await;
    assert_eq!(i64::try_from(orders.len()).unwrap(), acme_open);
    assert!(orders.iter().all(|o| o["customer_id"] == json!(acme) && o["status"] == "open"));
    assert!(orders.iter().all(|o| o.get("timeline").is_none()), "lists carry no timelines");
    let future = api.get("/api/v1/orders?updated_since=2999-01-01T00:00:00%2B02:00").await;
    assert_eq!((future.status, future.json["orders"].as_array().unwrap().len()), (200, 0));
    assert_eq!(future.json["next"], Value::Null);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("status=pending", "status"),
        ("updated_since=yesterday", "updated_since"),
        ("after=not-a-cursor", "after"),
        ("customer=acme", "customer"),
    ] {
        let answer = api.get(&format!("/api/v1/orders?{query}")).await;
        assert_eq!((answer.status, answer.error()), (422, ("invalid", Some(field))), "{query}");
    }
    let typo = api.get("/api/v1/orders?stauts=open").await;
    assert_eq!((typo.status, typo.error()), (400, ("malformed", Some("stauts"))));

    // One order, with its stages, current stage and whole timeline.
    let order = app.order_id("ORD-1040").await;
    let one = api.get(&format!("/api/v1/orders/{order}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json["number"], "ORD-1040");
    let stages = one.json["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6);
    let current: Vec<&Value> = stages.iter().filter(|s| s["state"] == "current").collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["name"], one.json["stage"]);
    let history = count(&app, "SELECT count(*) FROM order_stage_history WHERE order_id = $1", &[&order]).await;
    assert_eq!(i64::try_from(one.json["timeline"].as_array().unwrap().len()).unwrap(), history);

    for path in [
        format!("/api/v1/orders/{}", Uuid::new_v4()),
        "/api/v1/orders/ORD-1040".to_owned(),
        "/api/v1/orders/by-ref/NO-SUCH-REF".to_owned(),
        "/api/v1/nothing-here".to_owned(),
    ] {
        let answer = api.get(&path).await;
        assert_eq!((answer.status, answer.error()), (404, ("not_found", None)), "{path}");
    }
    let delete = api.send(api.http.delete(format!("{}/api/v1/orders", api.base))).await;
    assert_eq!((delete.status, delete.error().0), (405, "method_not_allowed"));
}

#[tokio::test]
async fn an_upsert_creates_then_updates_then_repeats_without_writing_anything() {
    let (app, _staff, api, _token) = with_integration().await;
    let integration = integration_id(&app, ERP).await;
    let acme = app.customer_id("acme").await;
    let path = "/api/v1/orders/by-ref/ERP-77001";

    let created = api.put(path, &order_body(acme, "ORD-2001")).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let id: Uuid = created.json["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(created.header("location"), format!("/api/v1/orders/{id}"));
    assert_eq!(created.json["external_ref"], "ERP-77001");
    assert_eq!(created.json["stage"], "Order received", "the workflow's first stage");
    assert_eq!(created.json["expected_on"], "2026-06-30");
    assert_eq!(created.json["status"], "open");
    let timeline = created.json["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!((&timeline[0]["stage"], &timeline[0]["actor"]), (&json!("Order received"), &json!(ERP)));

    // Recorded in the integration's name, and the triggers made it a live event.
    let db = app.sql().await;
    let logged = db
        .query_one(
            "SELECT actor_user_id, actor_label, customer_id FROM activity_log \
             WHERE action = 'order.created' AND subject_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(logged.get::<_, Option<Uuid>>("actor_user_id"), Some(integration));
    assert_eq!(logged.get::<_, String>("actor_label"), ERP);
    assert_eq!(logged.get::<_, Option<Uuid>>("customer_id"), Some(acme));
    let events = count(
        &app,
        "SELECT count(*) FROM events WHERE topic = 'orders' AND subject_id = $1 AND actor_user_id = $2 \
         AND customer_id = $3",
        &[&id, &integration, &acme],
    )
    .await;
    assert_eq!(events, 1);
    assert_eq!(api.get(path).await.json["id"], json!(id), "found by its reference");

    // An update: new title and tracking, a later stage.
    let mut body = order_body(acme, "ORD-2001");
    body["title"] = json!("Brochures, 2,500 copies");
    body["stage"] = json!("in production");
    body["tracking"] = json!({"carrier": "DHL Express", "number": "JD014600", "url": "https://dhl.example/t/JD014600"});
    let updated = api.put(path, &body).await;
    assert_eq!(updated.status, 200, "{}", updated.json);
    assert_eq!(updated.json["id"], json!(id));
    assert_eq!(updated.json["title"], "Brochures, 2,500 copies");
    assert_eq!(updated.json["stage"], "In production");
    assert_eq!(updated.json["tracking"]["carrier"], "DHL Express");
    assert_eq!(updated.json["timeline"].as_array().unwrap().len(), 2);
    let fields: Value = db
        .query_one(
            "SELECT details->'fields' FROM activity_log WHERE action = 'order.updated' AND subject_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fields, json!(["title", "tracking"]));
    let moved = count(
        &app,
        "SELECT count(*) FROM activity_log WHERE action = 'order.stage_changed' AND subject_id = $1 \
         AND actor_label = $2 AND details->>'to' = 'In production'",
        &[&id, &ERP],
    )
    .await;
    assert_eq!(moved, 1, "the move went through the one module that writes moves");

    // The same body again: 200, and nothing is written.
    let snapshot = "SELECT (SELECT updated_at FROM orders WHERE id = $1)::text || '/' || \
                    (SELECT count(*) FROM order_stage_history WHERE order_id = $1) || '/' || \
                    (SELECT count(*) FROM activity_log WHERE subject_id = $1) || '/' || \
                    (SELECT count(*) FROM events WHERE subject_id = $1)";
    let before: String = db.query_one(snapshot, &[&id]).await.unwrap().get(0);
    let again = api.put(path, &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["updated_at"], updated.json["updated_at"]);
    let after: String = db.query_one(snapshot, &[&id]).await.unwrap().get(0);
    assert_eq!(before, after, "an idempotent repeat writes nothing");

    // Left out keeps, null clears.
    let mut clear = order_body(acme, "ORD-2001");
    clear["title"] = json!("Brochures, 2,500 copies");
    clear.as_object_mut().unwrap().remove("expected_on");
    clear["reference"] = Value::Null;
    let cleared = api.put(path, &clear).await;
    assert_eq!(cleared.status, 200);
    assert_eq!((&cleared.json["reference"], &cleared.json["expected_on"]), (&Value::Null, &json!("2026-06-30")));
    assert_eq!(cleared.json["tracking"]["number"], "JD014600");

    // What an existing order cannot change, and numbers a customer already uses.
    let globex = app.customer_id("globex").await;
    let answer = api.put(path, &order_body(globex, "ORD-2001")).await;
    assert_eq!((answer.status, answer.error()), (422, ("invalid", Some("customer_id"))));
    let mut freight = order_body(acme, "ORD-2001");
    freight["workflow"] = json!("Freight shipment");
    let answer = api.put(path, &freight).await;
    assert_eq!((answer.status, answer.error()), (422, ("invalid", Some("workflow"))));
    let answer = api.put("/api/v1/orders/by-ref/ERP-77002", &order_body(acme, "ORD-1040")).await;
    assert_eq!((answer.status, answer.error()), (409, ("duplicate_number", Some("number"))));
    let answer = api.put(path, &order_body(acme, "ORD-1040")).await;
    assert_eq!((answer.status, answer.error()), (409, ("duplicate_number", Some("number"))));
    assert_eq!(count(&app, "SELECT count(*) FROM orders WHERE external_ref = 'ERP-77002'", &[]).await, 0);

    // Created at a named stage; a final one completes the order.
    let mut done = order_body(globex, "SHP-3001");
    done["workflow"] = json!("Freight shipment");
    done["stage"] = json!("Delivered");
    let answer = api.put("/api/v1/orders/by-ref/ERP-77003", &done).await;
    assert_eq!(
        (answer.status, &answer.json["stage"], &answer.json["status"]),
        (201, &json!("Delivered"), &json!("completed"))
    );
}

#[tokio::test]
async fn refused_bodies_name_their_field_and_write_nothing() {
    let (app, _staff, api, _token) = with_integration().await;
    let acme = app.customer_id("acme").await;
    let path = "/api/v1/orders/by-ref/ERP-88001";
    let orders_before = count(&app, "SELECT count(*) FROM orders", &[]).await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("title", json!(null), 422, "title"),
        ("title", json!(5), 422, "title"),
        ("number", json!("N".repeat(41)), 422, "number"),
        ("expected_on", json!("30.06.2026"), 422, "expected_on"),
        ("tracking", json!({"carrier": "DHL", "number": "1", "url": "http://dhl.example/1"}), 422, "tracking.url"),
        ("tracking", json!({"carrier": "DHL"}), 422, "tracking.number"),
        ("workflow", json!("Knitting"), 422, "workflow"),
        ("stage", json!("Shipped to the moon"), 422, "stage"),
        ("customer_id", json!(Uuid::new_v4()), 422, "customer_id"),
        ("colour", json!("red"), 422, "colour"),
    ];
    for (key, value, status, field) in cases {
        let mut body = order_body(acme, "ORD-3001");
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value;
        }
        let answer = api.put(path, &body).await;
        assert_eq!((answer.status, answer.error().1), (status, Some(field)), "{key}: {}", answer.json);
        assert!(!answer.json["error"]["message"].as_str().unwrap().is_empty());
    }
    let mut knitting = order_body(acme, "ORD-3001");
    knitting["workflow"] = json!("Knitting");
    let unknown = api.put(path, &knitting).await;
    assert!(unknown.json["error"]["message"].as_str().unwrap().contains("Print job"), "names the workflows there are");

    let syntax = api.raw(Method::PUT, path, "application/json", "{\"title\": \"x\",").await;
    assert_eq!((syntax.status, syntax.error().0), (400, "malformed"));
    assert!(syntax.json["error"]["message"].as_str().unwrap().contains("line 1"), "serde's account: {}", syntax.json);
    let array = api.raw(Method::PUT, path, "application/json", "[1, 2]").await;
    assert_eq!((array.status, array.error()), (400, ("malformed", None)));
    let text = api.raw(Method::PUT, path, "text/plain", "title=x").await;
    assert_eq!((text.status, text.error().0), (415, "unsupported_media_type"));
    let huge = format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024));
    let too_large = api.raw(Method::PUT, path, "application/json", huge).await;
    assert_eq!((too_large.status, too_large.error().0), (413, "too_large"));
    let blank_ref = api.put("/api/v1/orders/by-ref/%20", &order_body(acme, "ORD-3001")).await;
    assert_eq!((blank_ref.status, blank_ref.error().1), (422, Some("external_ref")));

    assert_eq!(count(&app, "SELECT count(*) FROM orders", &[]).await, orders_before, "nothing was written");
}

#[tokio::test]
async fn a_move_with_an_internal_note_reaches_alice_live_without_the_note_and_names_the_integration() {
    let (app, _staff, api, _token) = with_integration().await;
    let integration = integration_id(&app, ERP).await;
    let order = app.order_id("ORD-1042").await;
    let alice = app.signed_in(ALICE).await;
    let (mut socket, _) = LiveSocket::for_page(&alice, &app.origin, &format!("/orders/{order}")).await;
    socket.resumed().await;

    let secret = "Margin is thin on this one; do not discount.";
    let moved = api
        .post(
            &format!("/api/v1/orders/{order}/stage"),
            &json!({"stage": "In production", "customer_note": "Plates are on the press.", "internal_note": secret}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json);
    assert_eq!(moved.json["stage"], "In production");
    let last = moved.json["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["internal_note"], secret, "the API is staff-side: internal notes included");
    assert_eq!((&last["customer_note"], &last["actor"]), (&json!("Plates are on the press."), &json!(ERP)));

    // Alice's page updates live, and neither the push nor the page carries the internal note.
    let pushed = socket.expect(&format!("order-{order}-timeline"), "Plates are on the press.").await;
    assert!(!pushed.contains("Margin is thin"));
    let page = alice.get_html(&format!("/orders/{order}")).await;
    assert!(page.contains("Plates are on the press.") && page.contains("In production"));
    assert!(!page.contains("Margin is thin"));
    socket.close().await;

    // The log and the events name the integration.
    let activity = alice.get_html("/activity").await;
    assert!(activity.contains(ERP), "Alice's activity log says which system moved the order");
    let logged = count(
        &app,
        "SELECT count(*) FROM activity_log WHERE action = 'order.stage_changed' AND subject_id = $1 \
         AND actor_user_id = $2 AND actor_label = $3",
        &[&order, &integration, &ERP],
    )
    .await;
    assert_eq!(logged, 1);
    let noted = count(
        &app,
        "SELECT count(*) FROM events WHERE topic = 'order_internal_notes' AND customer_id IS NULL \
         AND data->>'order_id' = $1::text AND actor_user_id = $2",
        &[&order.to_string(), &integration],
    )
    .await;
    assert_eq!(noted, 1, "the internal note is a staff-only event");

    // Refused moves name the field, and write nothing.
    let stage_path = format!("/api/v1/orders/{order}/stage");
    let history = "SELECT count(*) FROM order_stage_history WHERE order_id = $1";
    let before = count(&app, history, &[&order]).await;
    let again = api.post(&stage_path, &json!({"stage": "In production"})).await;
    assert_eq!((again.status, again.error()), (409, ("already_at_stage", Some("stage"))));
    let unknown = api.post(&stage_path, &json!({"stage": "Teleported"})).await;
    assert_eq!((unknown.status, unknown.error()), (422, ("invalid", Some("stage"))));
    let foreign = api.post(&stage_path, &json!({"stage_id": Uuid::new_v4()})).await;
    assert_eq!((foreign.status, foreign.error()), (422, ("invalid", Some("stage_id"))));
    let neither = api.post(&stage_path, &json!({"customer_note": "Hello"})).await;
    assert_eq!((neither.status, neither.error()), (422, ("invalid", Some("stage"))));
    let long = api.post(&stage_path, &json!({"stage": "Quality check", "customer_note": "x".repeat(2001)})).await;
    assert_eq!((long.status, long.error()), (422, ("invalid", Some("customer_note"))));
    let long = api.post(&stage_path, &json!({"stage": "Quality check", "internal_note": "x".repeat(4001)})).await;
    assert_eq!((long.status, long.error()), (422, ("invalid", Some("internal_note"))));
    let missing = api.post(&format!("/api/v1/orders/{}/stage", Uuid::new_v4()), &json!({"stage": "Delivered"})).await;
    assert_eq!(missing.status, 404);
    assert_eq!(count(&app, history, &[&order]).await, before);

    // By id, to the final stage: the order completes.
    let delivered: Uuid = app
        .sql()
        .await
        .query_one(
            "SELECT s.id FROM workflow_stages s JOIN orders o ON o.workflow_id = s.workflow_id \
             WHERE o.id = $1 AND s.name = 'Delivered'",
            &[&order],
        )
        .await
        .unwrap()
        .get(0);
    let done = api.post(&stage_path, &json!({"stage_id": delivered})).await;
    assert_eq!((done.status, &done.json["status"]), (200, &json!("completed")));
}

#[tokio::test]
async fn staff_who_are_not_admins_see_integrations_but_cannot_make_or_revoke_tokens() {
    let (app, _staff, api, _token) = with_integration().await;
    let integration = integration_id(&app, ERP).await;
    portal::accounts::admin::create_staff(
        &app.db().await,
        "sue@portal.example",
        "Sue Support",
        false,
        secrecy::SecretString::from(PASSWORD),
    )
    .await
    .unwrap();
    let sue = app.signed_in("sue@portal.example").await;
    let page = sue.get_html("/staff/integrations").await;
    assert!(page.contains(ERP) && page.contains("Only staff admins"));
    assert!(
        !page.contains("action=\"/staff/integrations\"") && !page.contains("/revoke") && !page.contains("/tokens\"")
    );

    let tokens = "SELECT count(*) || '/' || count(revoked_at) FROM api_tokens";
    let before: String = app.sql().await.query_one(tokens, &[]).await.unwrap().get(0);
    let token_id: Uuid = app
        .sql()
        .await
        .query_one("SELECT id FROM api_tokens WHERE user_id = $1", &[&integration])
        .await
        .unwrap()
        .get(0);
    let csrf = sue.csrf_token("/staff/integrations").await;
    for (path, form) in [
        ("/staff/integrations".to_owned(), vec![("csrf_token", csrf.as_str()), ("name", "Shadow ERP")]),
        (format!("/staff/integrations/{integration}/tokens"), vec![("csrf_token", csrf.as_str())]),
        (format!("/staff/integrations/tokens/{token_id}/revoke"), vec![("csrf_token", csrf.as_str())]),
    ] {
        let response = sue.post_form(&path, &form).await;
        assert_eq!(response.status(), 403, "{path}");
        assert!(token_in(&response.text().await.unwrap()).is_none());
    }
    let after: String = app.sql().await.query_one(tokens, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "no token made or revoked");
    assert_eq!(api.get("/api/v1/orders").await.status, 200);

    // Customers do not reach the page at all.
    let alice = app.signed_in(ALICE).await;
    assert_eq!(alice.get("/staff/integrations").await.status(), 403);
}
