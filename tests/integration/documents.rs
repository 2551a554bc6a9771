//! Documents as customers use them: uploads, versions, single-use download
//! grants, search and the isolation between customers, against both stores
//! (the local filesystem and a real S3 server).

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use uuid::Uuid;

use crate::support::live::LiveSocket;
use crate::support::{Client, TestApp, location, spawn_app, spawn_app_with};

/// Runs a scenario once per store: `<name>::local` and `<name>::s3`.
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn local() {
                super::$name(crate::support::spawn_app().await).await;
            }

            #[tokio::test]
            async fn s3() {
                super::$name(crate::support::spawn_app_on_s3().await).await;
            }
        }
    };
}

fn pdf(marker: &str, len: usize) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.7\n% {marker}\n").into_bytes();
    bytes.resize(len, b'x');
    bytes
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0\x01\0\0\0";

/// Posts a multipart upload the way the form does: the CSRF token first, then
/// the file, then the other fields.
async fn upload(
    client: &Client,
    path: &str,
    csrf: Option<&str>,
    file: Option<(&str, Vec<u8>)>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = Form::new();
    if let Some(token) = csrf {
        form = form.text("csrf_token", token.to_owned());
    }
    if let Some((name, bytes)) = file {
        form = form.part("file", Part::bytes(bytes).file_name(name.to_owned()).mime_str("application/pdf").unwrap());
    }
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    client.http.post(client.url(path)).multipart(form).send().await.expect("upload")
}

/// Uploads a document as the signed-in customer user; returns its id.
async fn new_document(client: &Client, file_name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> Uuid {
    let csrf = client.csrf_token("/documents/new").await;
    let mut all = vec![("doc_type", "artwork")];
    all.extend_from_slice(fields);
    let response = upload(client, "/documents", Some(&csrf), Some((file_name, bytes)), &all).await;
    assert_eq!(response.status(), 303, "upload accepted: {}", response.text().await.unwrap_or_default());
    let to = location(&response);
    Uuid::parse_str(to.strip_prefix("/documents/").expect("redirect to the document")).expect("document id")
}

/// Asks for a download of `version` (latest when `None`); returns the grant URL path.
async fn grant(client: &Client, document: Uuid, version: Option<i32>) -> String {
    let csrf = client.csrf_token(&format!("/documents/{document}")).await;
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    let mut form = vec![("csrf_token", csrf.as_str())];
    if !version.is_empty() {
        form.push(("version", &version));
    }
    let response = client.post_form(&format!("/documents/{document}/download"), &form).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let to = location(&response);
    assert!(to.starts_with("/downloads/"), "{to}");
    to
}

/// Redeems a grant and returns the file's bytes, following an S3 redirect with a plain client.
async fn fetch(app: &TestApp, client: &Client, grant: &str) -> Vec<u8> {
    let response = client.get(grant).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    match response.status().as_u16() {
        200 => {
            assert!(matches!(app.storage(), portal::config::StorageSettings::Local));
            let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
            assert!(disposition.starts_with("attachment; filename=\""), "{disposition}");
            assert!(disposition.contains("filename*=UTF-8''"), "{disposition}");
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
            assert_eq!(response.headers()["content-security-policy"], "sandbox; default-src 'none'");
            response.bytes().await.unwrap().to_vec()
        }
        303 => {
            let url = location(&response);
            assert!(url.contains("X-Amz-Expires=60"), "presigned for at most 60 s: {url}");
            assert!(url.contains("response-content-disposition=attachment"), "{url}");
            let object = reqwest::get(&url).await.unwrap();
            assert_eq!(object.status(), 200);
            object.bytes().await.unwrap().to_vec()
        }
        other => panic!("download answered {other}"),
    }
}

async fn round_trip(app: TestApp) {
    let alice = app.signed_in("alice@acme.example").await;
    let order = app.order_id("ORD-1042").await;
    let v1 = pdf("first proof", 300_000);
    let id = new_document(
        &alice,
        "Sleeve proof.pdf",
        v1.clone(),
        &[("title", "Sleeve proof"), ("tags", "Proof, sleeves"), ("order", &order.to_string())],
    )
    .await;
    let page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(page.contains("Sleeve proof") && page.contains("Download v1"), "{page}");
    assert!(page.contains("#proof") && page.contains("ORD-1042"));

    assert_eq!(fetch(&app, &alice, &grant(&alice, id, None).await).await, v1);

    // A second version keeps the first.
    let v2 = pdf("second proof", 120_000);
    let csrf = alice.csrf_token(&format!("/documents/{id}")).await;
    let response = upload(
        &alice,
        &format!("/documents/{id}/versions"),
        Some(&csrf),
        Some(("Sleeve proof v2.pdf", v2.clone())),
        &[],
    )
    .await;
    assert_eq!(response.status(), 303);
    let page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(page.contains("Download v2") && page.contains("Sleeve proof v2.pdf") && page.contains("v1"));
    assert_eq!(fetch(&app, &alice, &grant(&alice, id, None).await).await, v2);
    assert_eq!(fetch(&app, &alice, &grant(&alice, id, Some(1)).await).await, v1);

    // Stored under random keys, never the user's file name; no upload is left unfinished.
    let objects = app.stored_objects().await;
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects.iter().all(|k| !k.to_lowercase().contains("sleeve")), "{objects:?}");
    let sql = app.sql().await;
    let pending: i64 = sql.query_one("SELECT count(*) FROM blob_uploads", &[]).await.unwrap().get(0);
    assert_eq!(pending, 0);
    // Every download is recorded with who, which version and from where.
    let rows = sql
        .query(
            "SELECT v.version, u.email, host(dl.ip) FROM document_downloads dl \
             JOIN document_versions v ON v.id = dl.version_id JOIN users u ON u.id = dl.user_id \
             WHERE dl.document_id = $1 ORDER BY dl.id",
            &[&id],
        )
        .await
        .unwrap();
    let seen: Vec<(i32, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let alice_at = |v| (v, "alice@acme.example".to_owned(), "127.0.0.1".to_owned());
    assert_eq!(seen, vec![alice_at(1), alice_at(2), alice_at(1)]);
    // The admin sees it on the page.
    let page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(page.contains("Downloaded 3 times"), "{page}");
}
on_both_stores!(round_trip);

async fn grants_work_once_for_one_session(app: TestApp) {
    let alice = app.signed_in("alice@acme.example").await;
    let id = new_document(&alice, "contract.pdf", pdf("c", 2_000), &[("title", "Contract")]).await;

    let used = grant(&alice, id, None).await;
    fetch(&app, &alice, &used).await;
    assert_eq!(alice.get(&used).await.status(), 410, "a used link is gone");

    // Another session of the same user, a colleague, another customer: unknown.
    let taken = grant(&alice, id, None).await;
    let alice_elsewhere = app.signed_in("alice@acme.example").await;
    assert_eq!(alice_elsewhere.get(&taken).await.status(), 404);
    let dave = app.signed_in("dave@acme.example").await;
    assert_eq!(dave.get(&taken).await.status(), 404);
    let bob = app.signed_in("bob@globex.example").await;
    assert_eq!(bob.get(&taken).await.status(), 404);
    assert_eq!(app.client().get(&taken).await.status(), 303, "anonymous: sign in first");
    // ... and none of those attempts used it up.
    fetch(&app, &alice, &taken).await;

    // A tampered token is unknown.
    let fresh = grant(&alice, id, None).await;
    let mut tampered = fresh.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(alice.get(&String::from_utf8(tampered).unwrap()).await.status(), 404);
    assert_eq!(alice.get("/downloads/not-a-token").await.status(), 404);

    // An expired one is gone.
    let sql = app.sql().await;
    sql.execute(
        "UPDATE download_grants SET created_at = now() - interval '10 minutes', expires_at = now() - interval '1 second' \
         WHERE used_at IS NULL",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(alice.get(&fresh).await.status(), 410);

    // Revoked by the customer admin: gone, and the admin's page lists only live links.
    let live = grant(&dave, id, None).await;
    let page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(page.contains("Dave Park"), "the admin sees dave's live link: {page}");
    let grant_id: Uuid = sql
        .query_one(
            "SELECT id FROM download_grants WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let csrf = alice.csrf_token(&format!("/documents/{id}")).await;
    let revoked = alice.post_form(&format!("/documents/{id}/links/{grant_id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(dave.get(&live).await.status(), 410);
    // A member may not revoke.
    let csrf = dave.csrf_token(&format!("/documents/{id}")).await;
    let refused = dave.post_form(&format!("/documents/{id}/links/{grant_id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(refused.status(), 403);

    // Signing out ends the session and every grant made in it.
    let orphaned = grant(&alice, id, None).await;
    assert_eq!(alice.sign_out("/documents").await.status(), 303);
    let again = app.signed_in("alice@acme.example").await;
    assert_eq!(again.get(&orphaned).await.status(), 404);
}
on_both_stores!(grants_work_once_for_one_session);

#[tokio::test]
async fn another_customers_document_is_not_found_anywhere() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    let id = new_document(&alice, "po.pdf", pdf("po", 1_000), &[("title", "PO 1")]).await;
    let bob = app.signed_in("bob@globex.example").await;
    assert_eq!(bob.get(&format!("/documents/{id}")).await.status(), 404);
    let csrf = bob.csrf_token("/documents").await;
    let download = bob.post_form(&format!("/documents/{id}/download"), &[("csrf_token", &csrf)]).await;
    assert_eq!(download.status(), 404);
    let version =
        upload(&bob, &format!("/documents/{id}/versions"), Some(&csrf), Some(("x.pdf", pdf("x", 10))), &[]).await;
    assert_eq!(version.status(), 404);
    let grant_id = Uuid::new_v4();
    let revoke = bob.post_form(&format!("/documents/{id}/links/{grant_id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(revoke.status(), 404);
    assert_eq!(bob.get(&format!("/documents/{}", Uuid::new_v4())).await.status(), 404);
    assert_eq!(bob.get("/documents/not-an-id").await.status(), 404);
    // And nothing of bob's attempt reached storage.
    assert_eq!(app.stored_objects().await.len(), 1);
}

async fn refused_uploads_keep_the_form_and_store_nothing(app: TestApp) {
    let alice = app.signed_in("alice@acme.example").await;
    let csrf = alice.csrf_token("/documents/new").await;
    let fields = [("title", "Typed title kept"), ("doc_type", "purchase_order"), ("tags", "kept-tag")];

    // A program renamed to look like a PDF.
    let mut program = ELF.to_vec();
    program.resize(4096, 0);
    let response = upload(&alice, "/documents", Some(&csrf), Some(("invoice.pdf", program)), &fields).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("A program can&#039;t be uploaded"), "{html}");
    assert!(html.contains("Typed title kept") && html.contains("kept-tag"));

    // An image calling itself a PDF.
    let response = upload(&alice, "/documents", Some(&csrf), Some(("contract.pdf", PNG.to_vec())), &fields).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("its contents are a PNG image"), "{html}");

    // Too large for this portal (64 KiB in this app).
    let response = upload(&alice, "/documents", Some(&csrf), Some(("big.pdf", pdf("big", 200_000))), &fields).await;
    assert_eq!(response.status(), 413);
    let html = response.text().await.unwrap();
    assert!(html.contains("larger than the limit of 64.0 KB") || html.contains("larger than the limit"), "{html}");
    assert!(html.contains("Typed title kept"));

    // No file chosen.
    let response = upload(&alice, "/documents", Some(&csrf), None, &fields).await;
    assert_eq!(response.status(), 422);

    // Without the CSRF token (or with a wrong one) nothing is read past the token.
    let response = upload(&alice, "/documents", None, Some(("ok.pdf", pdf("ok", 100))), &fields).await;
    assert_eq!(response.status(), 403);
    let response = upload(&alice, "/documents", Some("forged"), Some(("ok.pdf", pdf("ok", 100))), &fields).await;
    assert_eq!(response.status(), 403);

    // A path in the file name is dropped; the name is shown, never used as the key.
    let id = new_document(&alice, "../../etc/passwd.pdf", pdf("p", 100), &[("title", "Traversal")]).await;
    let page = alice.get_html(&format!("/documents/{id}")).await;
    assert!(page.contains("passwd.pdf") && !page.contains("../"), "{page}");

    let objects = app.stored_objects().await;
    assert_eq!(objects.len(), 1, "only the accepted file is stored: {objects:?}");
    assert!(!objects[0].contains("passwd"));
    let sql = app.sql().await;
    let documents: i64 = sql
        .query_one("SELECT count(*) FROM documents WHERE title IN ('Typed title kept', 'Traversal')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(documents, 1);
    // Spool files are removed in the background as they are dropped.
    let spool = app.data_dir().join("blobs/spool");
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "refused uploads leave nothing in the spool");
}

mod refused_uploads_keep_the_form_and_store_nothing {
    #[tokio::test]
    async fn local() {
        let app = crate::support::spawn_app_with(|c| c.upload_max_bytes = 64 * 1024).await;
        super::refused_uploads_keep_the_form_and_store_nothing(app).await;
    }

    #[tokio::test]
    async fn s3() {
        let app = crate::support::spawn_app_on_s3_with(|c| c.upload_max_bytes = 64 * 1024).await;
        super::refused_uploads_keep_the_form_and_store_nothing(app).await;
    }
}

#[tokio::test]
async fn members_cannot_add_versions_to_what_staff_shared() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    let sql = app.sql().await;
    let shared: Uuid =
        sql.query_one("SELECT id FROM documents WHERE title = 'ISO 9001 certificate'", &[]).await.unwrap().get(0);
    let csrf = dave.csrf_token(&format!("/documents/{shared}")).await;
    let response =
        upload(&dave, &format!("/documents/{shared}/versions"), Some(&csrf), Some(("iso.pdf", pdf("x", 10))), &[])
            .await;
    assert_eq!(response.status(), 403);
    // The database says the same, whatever a handler does.
    let app_sql = app.app_role_sql().await;
    let customer = app.customer_id("acme").await;
    let dave_id: Uuid =
        sql.query_one("SELECT id FROM users WHERE email = 'dave@acme.example'", &[]).await.unwrap().get(0);
    app_sql
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('portal.customer_id', '{customer}', true), set_config('portal.user_id', '{dave_id}', true)"
        ))
        .await
        .unwrap();
    let refused = app_sql
        .execute(
            "INSERT INTO document_versions (document_id, customer_id, file_name, content_type, size_bytes, storage_key, \
             uploaded_by) VALUES ($1, $2, 'x.pdf', 'application/pdf', 1, 'v1/ff/x', $3)",
            &[&shared, &customer, &dave_id],
        )
        .await;
    assert!(refused.is_err(), "row-level security refuses a version of a staff document");
}

#[tokio::test]
async fn search_finds_by_words_and_tags_within_the_customer_only() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    new_document(&alice, "drawing.pdf", pdf("d", 100), &[("title", "Pallet drawing"), ("tags", "logistics, wooden")])
        .await;
    // Title words by prefix, English stems, tags.
    for q in ["pallet", "pall", "drawings", "wooden"] {
        let html = alice.get_html(&format!("/documents?q={q}")).await;
        assert!(html.contains("Pallet drawing"), "{q} finds it");
    }
    let html = alice.get_html("/documents?q=certificates").await;
    assert!(html.contains("ISO 9001 certificate") && !html.contains("Pallet drawing"));
    let html = alice.get_html("/documents?tag=logistics").await;
    assert!(html.contains("Pallet drawing") && !html.contains("ISO 9001"));
    let html = alice.get_html("/documents?q=zebra").await;
    assert!(html.contains("No documents match"));
    // Tsquery syntax typed into the box is just words.
    assert_eq!(alice.get("/documents?q=pallet%20%26%20!%27%3A*%7C").await.status(), 200);
    // Globex's user searching the same words sees none of it, nor Acme's demo documents.
    let bob = app.signed_in("bob@globex.example").await;
    for q in ["pallet", "wooden", "certificate"] {
        let html = bob.get_html(&format!("/documents?q={q}")).await;
        assert!(!html.contains("Pallet drawing") && !html.contains("ISO 9001"), "{q}");
    }
    let html = bob.get_html("/documents?q=carrier").await;
    assert!(html.contains("Carrier liability certificate"));
}

#[tokio::test]
async fn pages_visit_every_document_once_in_both_directions() {
    let app = spawn_app().await;
    let customer = app.customer_id("acme").await;
    let sql = app.sql().await;
    sql.execute(
        "INSERT INTO documents (customer_id, title, doc_type, updated_at) \
         SELECT $1, 'Bulk ' || i, 'report', now() - make_interval(mins => i / 3) FROM generate_series(1, 70) i",
        &[&customer],
    )
    .await
    .unwrap();
    let total: i64 =
        sql.query_one("SELECT count(*) FROM documents WHERE customer_id = $1", &[&customer]).await.unwrap().get(0);
    let alice = app.signed_in("alice@acme.example").await;
    let mut seen = Vec::new();
    let mut path = "/documents".to_owned();
    let mut pages = Vec::new();
    loop {
        let html = alice.get_html(&path).await;
        let ids: Vec<String> =
            html.match_indices("<a href=\"/documents/").map(|(i, _)| html[i + 20..i + 56].to_owned()).collect();
        seen.extend(ids.iter().cloned());
        pages.push(ids);
        match html.split("rel=\"next\"").next().and_then(|before| before.rsplit("href=\"").next()) {
            Some(href) if html.contains("rel=\"next\"") => path = href.trim_end_matches("\" ").replace("&amp;", "&"),
            _ => break,
        }
    }
    assert_eq!(seen.len() as i64, total);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no document on two pages");
    // Back from the last page with Previous gives the same pages.
    let html = alice.get_html(&path).await;
    let prev = html.split("rel=\"prev\"").next().and_then(|b| b.rsplit("href=\"").next()).unwrap();
    let prev = prev.trim_end_matches("\" ").replace("&amp;", "&");
    let html = alice.get_html(&prev).await;
    let ids: Vec<String> =
        html.match_indices("<a href=\"/documents/").map(|(i, _)| html[i + 20..i + 56].to_owned()).collect();
    assert_eq!(&ids, &pages[pages.len() - 2]);
}

#[tokio::test]
async fn colleagues_see_a_new_document_appear_live() {
    let app = spawn_app().await;
    let dave = app.signed_in("dave@acme.example").await;
    let (mut socket, _) = LiveSocket::for_page(&dave, &app.origin, "/documents").await;
    let alice = app.signed_in("alice@acme.example").await;
    new_document(&alice, "live.pdf", pdf("live", 100), &[("title", "Freshly uploaded plan")]).await;
    socket.expect("documents-latest", "Freshly uploaded plan").await;
    // Globex's open library hears nothing of it.
    let bob = app.signed_in("bob@globex.example").await;
    let (mut other, _) = LiveSocket::for_page(&bob, &app.origin, "/documents").await;
    other.resumed().await;
    new_document(&alice, "live2.pdf", pdf("live", 100), &[("title", "Second plan")]).await;
    other.expect_silence(Duration::from_millis(700)).await;
}

async fn abandoned_uploads_are_swept(app: TestApp) {
    let db = app.db().await;
    let blobs = portal::storage::BlobStore::open(app.config()).await.unwrap();
    let key = portal::storage::BlobKey::random();
    let mut spool = blobs.spool().await.unwrap();
    spool.write(b"%PDF-1.4 half-way").await.unwrap();
    blobs.put(&key, spool.finish().await.unwrap(), "application/pdf").await.unwrap();
    let sql = app.sql().await;
    let customer = app.customer_id("acme").await;
    sql.execute(
        "INSERT INTO blob_uploads (storage_key, customer_id, started_at) VALUES ($1, $2, now() - interval '2 hours')",
        &[&key.as_str(), &customer],
    )
    .await
    .unwrap();
    let recent = portal::storage::BlobKey::random();
    sql.execute("INSERT INTO blob_uploads (storage_key, customer_id) VALUES ($1, $2)", &[&recent.as_str(), &customer])
        .await
        .unwrap();
    // The app's own sweeper runs once at start too and may hold the row (our sweep then skips
    // it) while it deletes the object: either way, once the sweeps are done the old upload's
    // object and row are gone and the recent one is untouched.
    let removed = portal::documents::upload::sweep(&db, &blobs).await.unwrap();
    assert!(removed <= 1, "only the upload older than an hour");
    let mut state = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let left: Vec<String> =
            sql.query("SELECT storage_key FROM blob_uploads", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        state = (app.stored_objects().await, left);
        if state.0.is_empty() && state.1.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(state.0.is_empty(), "the abandoned object is deleted: {:?}", state.0);
    assert_eq!(state.1, vec![recent.as_str().to_owned()]);
}
on_both_stores!(abandoned_uploads_are_swept);

#[tokio::test]
async fn the_script_gets_json_and_the_flash_survives() {
    let app = spawn_app_with(|_| {}).await;
    let alice = app.signed_in("alice@acme.example").await;
    let csrf = alice.csrf_token("/documents/new").await;
    let mut form = Form::new().text("csrf_token", csrf).text("doc_type", "artwork").text("title", "Via script");
    form = form.part("file", Part::bytes(pdf("js", 500)).file_name("js.pdf"));
    let response =
        alice.http.post(alice.url("/documents")).header("X-Portal-Upload", "1").multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let to = body["location"].as_str().unwrap().to_owned();
    assert!(to.starts_with("/documents/"));
    let page = alice.get_html(&to).await;
    assert!(page.contains("is uploaded"), "the flash shows on the page the script goes to");
}

#[tokio::test]
async fn the_database_keeps_grants_single_use_and_short_whatever_a_handler_does() {
    let app = spawn_app().await;
    let alice = app.signed_in("alice@acme.example").await;
    let id = new_document(&alice, "c.pdf", pdf("c", 100), &[("title", "Contract C")]).await;
    let link = grant(&alice, id, None).await;
    fetch(&app, &alice, &link).await;
    let sql = app.sql().await;
    let (customer, user, session, version): (Uuid, Uuid, Uuid, Uuid) = {
        let r = sql
            .query_one("SELECT customer_id, user_id, session_id, version_id FROM download_grants", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    let as_alice = app.app_role_sql().await;
    as_alice
        .batch_execute(&format!(
            "SELECT set_config('portal.customer_id', '{customer}', false), set_config('portal.user_id', '{user}', false)"
        ))
        .await
        .unwrap();
    // A used grant cannot be made unused again.
    let reopened = as_alice.execute("UPDATE download_grants SET used_at = NULL", &[]).await;
    assert!(reopened.is_err(), "used is final");
    // No grant may live longer than an hour, nor be backdated.
    let forever = as_alice
        .execute(
            "INSERT INTO download_grants (token_hash, customer_id, document_id, version_id, user_id, session_id, \
             expires_at) VALUES (sha256('x'), $1, $2, $3, $4, $5, 'infinity')",
            &[&customer, &id, &version, &user, &session],
        )
        .await;
    assert!(forever.is_err(), "an endless grant is refused");
    let backdated = as_alice
        .execute(
            "INSERT INTO download_grants (token_hash, customer_id, document_id, version_id, user_id, session_id, \
             expires_at, created_at) VALUES (sha256('y'), $1, $2, $3, $4, $5, now() + interval '1 minute', now())",
            &[&customer, &id, &version, &user, &session],
        )
        .await;
    assert!(backdated.is_err(), "created_at is not the writer's to choose");
    // Nor for someone else's session.
    let staff_session: Uuid = {
        let staff = app.signed_in("dave@acme.example").await;
        drop(staff);
        sql.query_one(
            "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'dave@acme.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    };
    let borrowed = as_alice
        .execute(
            "INSERT INTO download_grants (token_hash, customer_id, document_id, version_id, user_id, session_id, \
             expires_at) VALUES (sha256('z'), $1, $2, $3, $4, $5, now() + interval '1 minute')",
            &[&customer, &id, &version, &user, &staff_session],
        )
        .await;
    assert!(borrowed.is_err(), "a grant for a colleague's session is refused");
}
