//! Documents in the back office: staff upload for a customer (and one of their
//! orders), the client sees it, refused uploads keep what was typed, downloads
//! by either side land in the history, links can be revoked, and the list's
//! filters and pages.

use reqwest::multipart::{Form, Part};
use scraper::{Html, Selector};
use uuid::Uuid;

use crate::support::{Client, TestApp, location, spawn_app};

const STAFF: &str = "staff@portal.example";
const ALICE: &str = "alice@acme.example";
const BOB: &str = "bob@globex.example";

/// The start of an x86-64 ELF executable, long enough for the content check to know it for one.
fn elf() -> Vec<u8> {
    let mut bytes = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0\x01\0\0\0".to_vec();
    bytes.resize(256, 0);
    bytes
}

fn pdf(marker: &str) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.7\n% {marker}\n1 0 obj\n<< /Type /Catalog >>\nendobj\n").into_bytes();
    bytes.resize(4096, b'x');
    bytes
}

/// A multipart upload as the form sends it: the CSRF token (when given) first, then
/// the other fields, then the file.
async fn post_upload(
    client: &Client,
    path: &str,
    csrf: Option<&str>,
    fields: &[(&str, &str)],
    file: Option<(&str, Vec<u8>)>,
    xhr: bool,
) -> reqwest::Response {
    let mut form = Form::new();
    if let Some(token) = csrf {
        form = form.text("csrf_token", token.to_owned());
    }
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some((name, bytes)) = file {
        form = form.part("file", Part::bytes(bytes).file_name(name.to_owned()).mime_str("application/pdf").unwrap());
    }
    let mut request = client.http.post(client.url(path)).multipart(form);
    if xhr {
        request = request.header("X-Portal-Upload", "1");
    }
    request.send().await.expect("upload")
}

/// Uploads as staff for `customer` (and `order`); returns the new document's id.
async fn staff_upload(staff: &Client, customer: Uuid, order: Option<Uuid>, title: &str, bytes: Vec<u8>) -> Uuid {
    let csrf = staff.csrf_token("/staff/documents/new").await;
    let customer = customer.to_string();
    let order = order.map(|o| o.to_string()).unwrap_or_default();
    let fields = [
        ("customer", customer.as_str()),
        ("title", title),
        ("doc_type", "certificate"),
        ("order", order.as_str()),
        ("tags", "Quality, labels"),
        ("description", "Signed by the lab."),
    ];
    let response =
        post_upload(staff, "/staff/documents", Some(&csrf), &fields, Some(("certificate.pdf", bytes)), false).await;
    assert_eq!(response.status(), 303, "upload accepted: {}", response.text().await.unwrap_or_default());
    let to = location(&response);
    Uuid::parse_str(to.strip_prefix("/staff/documents/").expect("redirect to the staff document page")).unwrap()
}

/// Asks for a download on `page_prefix` (`/documents` or `/staff/documents`); returns `/downloads/<token>`.
async fn grant(client: &Client, page_prefix: &str, document: Uuid, version: Option<i32>) -> String {
    let page = format!("{page_prefix}/{document}");
    let csrf = client.csrf_token(&page).await;
    let version = version.map(|v| v.to_string());
    let mut form = vec![("csrf_token", csrf.as_str())];
    if let Some(version) = &version {
        form.push(("version", version));
    }
    let response = client.post_form(&format!("{page}/download"), &form).await;
    assert_eq!(response.status(), 303, "download asked for on {page}");
    assert_eq!(response.headers().get("referrer-policy").unwrap(), "no-referrer");
    let to = location(&response);
    assert!(to.starts_with("/downloads/"), "{to}");
    to
}

async fn fetch_bytes(client: &Client, path: &str) -> Vec<u8> {
    let response = client.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.bytes().await.unwrap().to_vec()
}

fn select_all(html: &str, css: &str) -> Vec<String> {
    let doc = Html::parse_document(html);
    let selector = Selector::parse(css).unwrap();
    doc.select(&selector)
        .map(|e| e.text().collect::<Vec<_>>().join(" ").split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn attr_of(html: &str, css: &str, attr: &str) -> Vec<String> {
    let doc = Html::parse_document(html);
    let selector = Selector::parse(css).unwrap();
    doc.select(&selector).filter_map(|e| e.value().attr(attr).map(str::to_owned)).collect()
}

async fn document_count(app: &TestApp) -> i64 {
    app.sql().await.query_one("SELECT count(*) FROM documents", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn staff_upload_for_a_customer_order_and_only_that_customer_sees_it() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let globex = app.customer_id("globex").await;
    let order = app.order_id("ORD-1040").await;
    let staff = app.signed_in(STAFF).await;

    // The form, from the order page's link: the customer and the order already chosen.
    let order_page = staff.get_html(&format!("/staff/orders/{order}")).await;
    let link = format!("/staff/documents/new?customer={acme}&amp;order={order}");
    assert!(order_page.contains(&link), "the staff order page links to the upload form");
    let form = staff.get_html(&format!("/staff/documents/new?customer={acme}&order={order}")).await;
    assert_eq!(attr_of(&form, "select#customer option[selected]", "value"), [acme.to_string()]);
    assert_eq!(attr_of(&form, "select#order option[selected]", "value"), [order.to_string()]);
    let offered = attr_of(&form, "select#order option", "value");
    assert!(!offered.contains(&app.order_id("SHP-2205").await.to_string()), "only Acme's orders are offered");
    let form_html = Html::parse_document(&form);
    let upload_form = form_html.select(&Selector::parse("form[data-upload]").unwrap()).next().unwrap();
    assert_eq!(upload_form.value().attr("enctype"), Some("multipart/form-data"));
    assert!(upload_form.value().attr("data-max-bytes").is_some());
    let inner = upload_form.html();
    assert!(inner.find("name=\"csrf_token\"").unwrap() < inner.find("type=\"file\"").unwrap(), "the token comes first");
    assert!(form.contains("/static/upload"), "the upload script is on the page");
    // Coming from an order alone, its customer is chosen too.
    let from_order = staff.get_html(&format!("/staff/documents/new?order={order}")).await;
    assert_eq!(attr_of(&from_order, "select#customer option[selected]", "value"), [acme.to_string()]);

    let id = staff_upload(&staff, acme, Some(order), "Label stock certificate", pdf("labels")).await;
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    assert!(page.contains("“Label stock certificate” is uploaded for Acme Manufacturing."), "the flash");
    assert!(page.contains(&format!("href=\"/staff/customers/{acme}\"")), "links to the customer");
    assert!(page.contains(&format!("href=\"/staff/orders/{order}\"")), "links to the order");
    assert!(page.contains("Not yet downloaded by the client"));

    let db = app.sql().await;
    let row = db
        .query_one(
            "SELECT d.customer_id, d.order_id, d.origin, d.doc_type, d.tags, d.description, \
             d.created_by = u.id AS by_staff, v.version, v.file_name, v.uploaded_by = u.id AS version_by_staff \
             FROM documents d JOIN document_versions v ON v.document_id = d.id \
             JOIN users u ON u.email = $2 WHERE d.id = $1",
            &[&id, &STAFF],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>("customer_id"), acme);
    assert_eq!(row.get::<_, Option<Uuid>>("order_id"), Some(order));
    assert_eq!(row.get::<_, String>("origin"), "staff");
    assert_eq!(row.get::<_, String>("doc_type"), "certificate");
    assert_eq!(row.get::<_, Vec<String>>("tags"), ["quality", "labels"]);
    assert_eq!(row.get::<_, String>("description"), "Signed by the lab.");
    assert!(row.get::<_, bool>("by_staff") && row.get::<_, bool>("version_by_staff"));
    assert_eq!(row.get::<_, i32>("version"), 1);
    assert_eq!(row.get::<_, String>("file_name"), "certificate.pdf");

    // Alice sees it in her library, on the order and on its own page.
    let alice = app.signed_in(ALICE).await;
    assert!(alice.get_html("/documents").await.contains("Label stock certificate"));
    let alice_order = alice.get_html(&format!("/orders/{order}")).await;
    assert!(alice_order.contains("Label stock certificate") && alice_order.contains(&format!("/documents/{id}")));
    assert!(alice.get_html(&format!("/documents/{id}")).await.contains("Label stock certificate"));

    // Bob of Globex does not, and the back office is not his.
    let bob = app.signed_in(BOB).await;
    assert_eq!(bob.get(&format!("/documents/{id}")).await.status(), 404);
    assert!(!bob.get_html("/documents").await.contains("Label stock certificate"));
    assert_eq!(bob.get("/staff/documents").await.status(), 403);
    assert_eq!(bob.get(&format!("/staff/documents/{id}")).await.status(), 403);

    // The staff list: every customer, filtered by customer, type and words.
    let all = staff.get_html("/staff/documents").await;
    assert!(all.contains("Label stock certificate") && all.contains("Acme Manufacturing"));
    assert!(all.contains(&format!("href=\"/staff/documents/{id}\"")));
    assert!(all.contains(&format!("href=\"/staff/orders/{order}\"")), "order links go to the staff side");
    assert!(all.contains("href=\"/staff/documents/new\""), "the upload button");
    assert_eq!(select_all(&all, "nav.mainnav a[aria-current=\"page\"]"), ["Documents"]);
    let of_acme = staff.get_html(&format!("/staff/documents?customer={acme}")).await;
    assert!(of_acme.contains("Label stock certificate"));
    assert!(of_acme.contains("<h1>Documents of Acme Manufacturing</h1>"));
    assert_eq!(attr_of(&of_acme, "select#filter-customer option[selected]", "value"), [acme.to_string()]);
    assert!(of_acme.contains(&format!("href=\"/staff/documents/new?customer={acme}\"")));
    let of_globex = staff.get_html(&format!("/staff/documents?customer={globex}")).await;
    assert!(!of_globex.contains("Label stock certificate"));
    assert!(staff.get_html("/staff/documents?q=stock+certif").await.contains("Label stock certificate"));
    let no_match = staff.get_html("/staff/documents?q=zebra").await;
    assert!(no_match.contains("No documents match “zebra”"));
    assert!(!staff.get_html("/staff/documents?type=contract").await.contains("Label stock certificate"));
    assert!(staff.get_html("/staff/documents?type=certificate&tag=labels").await.contains("Label stock certificate"));

    // The customer page links to both.
    let customer_page = staff.get_html(&format!("/staff/customers/{acme}")).await;
    assert!(customer_page.contains(&format!("href=\"/staff/documents?customer={acme}\"")));
    assert!(customer_page.contains(&format!("href=\"/staff/documents/new?customer={acme}\"")));

    // upload.js asks for the address as JSON instead of a redirect.
    let csrf = staff.csrf_token("/staff/documents/new").await;
    let acme_id = acme.to_string();
    let fields = [("customer", acme_id.as_str()), ("title", "Proof sheet"), ("doc_type", "artwork")];
    let response =
        post_upload(&staff, "/staff/documents", Some(&csrf), &fields, Some(("proof.pdf", pdf("proof"))), true).await;
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    let to = json["location"].as_str().unwrap().to_owned();
    assert!(to.starts_with("/staff/documents/"), "{to}");
    assert!(staff.get_html(&to).await.contains("“Proof sheet” is uploaded for Acme Manufacturing."));
}

#[tokio::test]
async fn refused_uploads_keep_what_was_typed_and_store_nothing() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await.to_string();
    let globex_order = app.order_id("SHP-2205").await.to_string();
    let staff = app.signed_in(STAFF).await;
    let documents = document_count(&app).await;
    let objects = app.stored_objects().await;
    let csrf = staff.csrf_token("/staff/documents/new").await;

    // An executable renamed .pdf.
    let fields = [("customer", acme.as_str()), ("title", "Quarterly labels proof"), ("doc_type", "report")];
    let response =
        post_upload(&staff, "/staff/documents", Some(&csrf), &fields, Some(("invoice.pdf", elf())), false).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("A program can&#039;t be uploaded here."), "says why: {html}");
    assert_eq!(attr_of(&html, "input#title", "value"), ["Quarterly labels proof"]);
    assert_eq!(attr_of(&html, "select#customer option[selected]", "value"), [acme.as_str()]);
    assert_eq!(attr_of(&html, "select#doc_type option[selected]", "value"), ["report"]);

    // An order of another customer.
    let fields = [
        ("customer", acme.as_str()),
        ("title", "Wrong order sheet"),
        ("doc_type", "report"),
        ("order", globex_order.as_str()),
    ];
    let response =
        post_upload(&staff, "/staff/documents", Some(&csrf), &fields, Some(("sheet.pdf", pdf("x"))), false).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Choose an order of this customer"), "{html}");
    assert_eq!(attr_of(&html, "input#title", "value"), ["Wrong order sheet"]);

    // No customer, or one that does not exist.
    for customer in ["", "not-a-customer", &Uuid::new_v4().to_string()] {
        let fields = [("customer", customer), ("title", "Orphan sheet"), ("doc_type", "report")];
        let response =
            post_upload(&staff, "/staff/documents", Some(&csrf), &fields, Some(("sheet.pdf", pdf("y"))), false).await;
        assert_eq!(response.status(), 422, "customer {customer:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains("Choose the customer this document is for."));
        assert_eq!(attr_of(&html, "input#title", "value"), ["Orphan sheet"]);
    }

    // No file.
    let fields = [("customer", acme.as_str()), ("title", "Fileless"), ("doc_type", "report")];
    let response = post_upload(&staff, "/staff/documents", Some(&csrf), &fields, None, false).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("Choose a file to upload."));

    // Without the CSRF token, or with it after the file: refused before the file is read.
    let response =
        post_upload(&staff, "/staff/documents", None, &fields, Some(("forged.pdf", pdf("forged"))), false).await;
    assert_eq!(response.status(), 403);
    let late = Form::new()
        .text("customer", acme.clone())
        .part("file", Part::bytes(pdf("late")).file_name("late.pdf"))
        .text("csrf_token", csrf.clone());
    let response = staff.http.post(staff.url("/staff/documents")).multipart(late).send().await.unwrap();
    assert_eq!(response.status(), 403);

    // A customer user may not use the staff upload.
    let alice = app.signed_in(ALICE).await;
    let alice_csrf = alice.csrf_token("/documents/new").await;
    let response =
        post_upload(&alice, "/staff/documents", Some(&alice_csrf), &fields, Some(("a.pdf", pdf("a"))), false).await;
    assert_eq!(response.status(), 403);

    assert_eq!(document_count(&app).await, documents, "nothing was created");
    assert_eq!(app.stored_objects().await, objects, "no file was left in storage");
    let pending: i64 = app.sql().await.query_one("SELECT count(*) FROM blob_uploads", &[]).await.unwrap().get(0);
    assert_eq!(pending, 0, "no upload is left half-way");
}

#[tokio::test]
async fn downloads_by_staff_and_client_are_in_the_history_and_links_can_be_revoked() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let staff = app.signed_in(STAFF).await;
    let bytes = pdf("the real thing");
    let id = staff_upload(&staff, acme, None, "Conformity certificate", bytes.clone()).await;

    // Staff download through a grant, once.
    let link = grant(&staff, "/staff/documents", id, Some(1)).await;
    assert_eq!(fetch_bytes(&staff, &link).await, bytes);
    assert_eq!(staff.get(&link).await.status(), 410, "a link works once");
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    assert_eq!(select_all(&page, "#download-history tbody tr").len(), 1);
    let row = &select_all(&page, "#download-history tbody tr")[0];
    assert!(row.contains("Sam Staff") && row.contains("Staff") && row.contains("v1"), "{row}");
    assert!(page.contains("Not yet downloaded by the client"), "staff downloads do not count as the client's");

    // The client downloads it.
    let alice = app.signed_in(ALICE).await;
    let link = grant(&alice, "/documents", id, None).await;
    assert_eq!(fetch_bytes(&alice, &link).await, bytes);
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    let rows = select_all(&page, "#download-history tbody tr");
    assert_eq!(rows.len(), 2);
    assert!(rows[0].contains("Alice Lee") && rows[0].contains("Client") && rows[0].contains("127.0.0.1"), "{rows:?}");
    let summary = select_all(&page, "#client-downloads").join(" ");
    assert!(
        summary.contains("Downloaded by the client once, last on") && summary.contains("by Alice Lee"),
        "{summary}"
    );
    assert_eq!(select_all(&page, "#versions tbody tr td.num"), ["2"], "both downloads count for v1");
    // Alice, an admin, sees both downloads; the staff one as "Our team", without its IP address.
    let alice_page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(alice_page.contains("Downloaded 2 times"), "{alice_page}");
    let ours = select_all(&alice_page, "section[aria-labelledby=downloads-heading] tbody tr")
        .into_iter()
        .find(|r| r.contains("Our team"))
        .expect("the staff download");
    assert!(!ours.contains("127.0.0.1") && !ours.contains("Sam Staff"), "{ours}");

    // Alice asks for another link; staff revoke it before she uses it.
    let link = grant(&alice, "/documents", id, None).await;
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    let actions = attr_of(&page, "#active-links form", "action");
    assert_eq!(actions.len(), 1, "the link is listed");
    assert!(select_all(&page, "#active-links li")[0].contains("Alice Lee"));
    let csrf = staff.csrf_token(&format!("/staff/documents/{id}")).await;
    let response = staff.post_form(&actions[0], &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/staff/documents/{id}"));
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    assert!(page.contains("The download link is revoked"));
    assert!(page.contains("No unused links."));
    assert_eq!(alice.get(&link).await.status(), 410, "the revoked link is gone for its session");
    // Revoking it again changes nothing; a link of another document is not found.
    let response = staff.post_form(&actions[0], &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert!(staff.get_html(&format!("/staff/documents/{id}")).await.contains("had already been used"));
    let other = staff_upload(&staff, acme, None, "Another one", pdf("other")).await;
    let foreign = actions[0].replace(&id.to_string(), &other.to_string());
    assert_eq!(staff.post_form(&foreign, &[("csrf_token", &csrf)]).await.status(), 404);
    // Without the token, nothing is revoked or granted.
    assert_eq!(staff.post_form(&actions[0], &[]).await.status(), 403);
    assert_eq!(staff.post_form(&format!("/staff/documents/{id}/download"), &[]).await.status(), 403);
    // Unknown documents and versions.
    let missing = Uuid::new_v4();
    assert_eq!(staff.get(&format!("/staff/documents/{missing}")).await.status(), 404);
    assert_eq!(staff.get("/staff/documents/not-an-id").await.status(), 404);
    let response =
        staff.post_form(&format!("/staff/documents/{id}/download"), &[("csrf_token", &csrf), ("version", "9")]).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn staff_add_versions_to_any_document() {
    let app = spawn_app().await;
    let acme = app.customer_id("acme").await;
    let staff = app.signed_in(STAFF).await;
    let alice = app.signed_in(ALICE).await;

    // One the client uploaded.
    let csrf = alice.csrf_token("/documents/new").await;
    let fields = [("title", "Sleeve artwork"), ("doc_type", "artwork")];
    let response =
        post_upload(&alice, "/documents", Some(&csrf), &fields, Some(("sleeve.pdf", pdf("v1"))), false).await;
    assert_eq!(response.status(), 303);
    let id = Uuid::parse_str(location(&response).strip_prefix("/documents/").unwrap()).unwrap();
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    assert!(page.contains("uploaded by the client"));
    assert!(staff.get_html(&format!("/staff/documents?customer={acme}")).await.contains("Uploaded by the client"));

    let csrf = staff.csrf_token(&format!("/staff/documents/{id}")).await;
    let path = format!("/staff/documents/{id}/versions");
    let v2 = pdf("v2 with corrections");
    let response = post_upload(&staff, &path, Some(&csrf), &[], Some(("sleeve-v2.pdf", v2.clone())), false).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/staff/documents/{id}"));
    let page = staff.get_html(&format!("/staff/documents/{id}")).await;
    assert!(page.contains("Version 2 is uploaded."));
    let versions = select_all(&page, "#versions tbody tr");
    assert_eq!(versions.len(), 2);
    assert!(versions[0].contains("v2") && versions[0].contains("Sam Staff") && versions[0].contains("Staff"));
    assert!(versions[1].contains("v1") && versions[1].contains("Alice Lee") && versions[1].contains("Client"));
    // The client gets the new version.
    let link = grant(&alice, "/documents", id, None).await;
    assert_eq!(fetch_bytes(&alice, &link).await, v2);

    // A refused file comes back on the document's page.
    let response = post_upload(&staff, &path, Some(&csrf), &[], Some(("tool.pdf", elf())), false).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("A program can&#039;t be uploaded here."));
    // Unknown document, no token, a customer user.
    let missing = format!("/staff/documents/{}/versions", Uuid::new_v4());
    assert_eq!(post_upload(&staff, &missing, Some(&csrf), &[], Some(("a.pdf", pdf("a"))), false).await.status(), 404);
    assert_eq!(post_upload(&staff, &path, None, &[], Some(("a.pdf", pdf("a"))), false).await.status(), 403);
    let alice_csrf = alice.csrf_token("/documents/new").await;
    let response = post_upload(&alice, &path, Some(&alice_csrf), &[], Some(("a.pdf", pdf("a"))), false).await;
    assert_eq!(response.status(), 403);
    let versions: i64 = app
        .sql()
        .await
        .query_one("SELECT count(*) FROM document_versions WHERE document_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 2);
}

#[tokio::test]
async fn the_list_pages_through_every_customer_and_says_when_it_is_empty() {
    let app = spawn_app().await;
    let globex = app.customer_id("globex").await;
    let staff = app.signed_in(STAFF).await;
    let db = app.sql().await;
    db.execute("DELETE FROM documents WHERE customer_id = $1", &[&globex]).await.unwrap();
    let empty = staff.get_html(&format!("/staff/documents?customer={globex}")).await;
    assert!(empty.contains("No documents yet") && empty.contains("Nothing has been shared with this customer"));

    db.execute(
        "INSERT INTO documents (customer_id, title, doc_type, origin, created_at, updated_at) \
         SELECT $1, 'Freight note ' || g, 'report', 'staff', now() - make_interval(days => 400 + g), \
                now() - make_interval(days => 400 + g) FROM generate_series(1, 30) g",
        &[&globex],
    )
    .await
    .unwrap();
    let first = staff.get_html(&format!("/staff/documents?customer={globex}")).await;
    let titles = select_all(&first, "table tbody tr td:first-child > a:first-child");
    assert_eq!(titles.len(), 25);
    assert_eq!(titles[0], "Freight note 1");
    assert!(first.contains("30 documents"));
    let next = attr_of(&first, "nav.pagination a[rel=next]", "href");
    assert_eq!(next.len(), 1);
    assert!(next[0].starts_with(&format!("/staff/documents?customer={globex}&after=")), "{next:?}");
    let second = staff.get_html(&next[0].replace("&amp;", "&")).await;
    let titles = select_all(&second, "table tbody tr td:first-child > a:first-child");
    assert_eq!(titles, ["Freight note 26", "Freight note 27", "Freight note 28", "Freight note 29", "Freight note 30"]);
    let previous = attr_of(&second, "nav.pagination a[rel=prev]", "href");
    assert_eq!(previous.len(), 1);
    let back = staff.get_html(&previous[0]).await;
    assert_eq!(select_all(&back, "table tbody tr td:first-child > a:first-child")[0], "Freight note 1");

    // All customers: Globex's old notes come after everything else, across pages.
    let all = staff.get_html("/staff/documents").await;
    assert!(all.contains("Acme Manufacturing"));
    assert!(!all.contains("Freight note 30"));
}
