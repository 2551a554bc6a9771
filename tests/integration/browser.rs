//! In a real browser: what HTTP-level tests cannot see (the CSP letting the
//! page's own CSS and icon through, the stylesheet applying, focus, keyboard).

use crate::support::browser::Browser;
use crate::support::{PASSWORD, spawn_app};

const ALICE: &str = "alice@acme.example";

#[tokio::test]
async fn alice_signs_in_and_sees_her_dashboard() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;

    page.find_element("#email").await.unwrap().click().await.unwrap().type_str(ALICE).await.unwrap();
    page.find_element("#password").await.unwrap().click().await.unwrap().type_str(PASSWORD).await.unwrap();
    page.find_element("button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_for_path("/").await;

    let heading = page.text("h1").await;
    assert!(heading.starts_with("Welcome back"), "{heading}");
    let text = page.text("body").await;
    assert!(text.contains("Acme Manufacturing"), "{text}");
    assert!(!text.contains("Globex"), "another customer's data: {text}");
    // app.css makes the top bar a flex row; a header is a block without it. So the
    // hashed stylesheet URL resolved and the CSP let it through.
    let display: String = page.eval("getComputedStyle(document.querySelector('.topbar')).display").await;
    assert_eq!(display, "flex", "the stylesheet did not apply");
    // Across both documents: the sign-in page and the dashboard.
    page.assert_no_problems().await;

    browser.close().await;
}

#[tokio::test]
async fn the_sign_in_form_is_usable_by_keyboard_alone() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;

    let focused = "document.activeElement && document.activeElement.id";
    // Autofocus is applied by a task after the page loads, so it is awaited, not read at once.
    page.wait_until("document.activeElement && document.activeElement.id === 'email'").await;
    page.type_keys(ALICE).await;
    page.press_key("Tab").await;
    assert_eq!(page.eval::<String>(focused).await, "password", "Tab should move to the password");
    page.type_keys(PASSWORD).await;
    page.press_key("Enter").await;
    page.wait_for_path("/").await;

    let heading = page.text("h1").await;
    assert!(heading.starts_with("Welcome back"), "{heading}");
    page.assert_no_problems().await;

    browser.close().await;
}

/// The harness's "no problems" would prove nothing if it could not see any.
#[tokio::test]
async fn the_browser_harness_reports_what_the_console_would_show() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;
    page.assert_no_problems().await;

    // Evaluated code is exempt from the CSP, but the inline script it inserts is not.
    let _: bool = page
        .eval(
            "console.error('a console error');
             setTimeout(() => { throw new Error('an uncaught exception'); });
             const script = document.createElement('script');
             script.textContent = 'window.inlineRan = true';
             document.head.append(script);
             const img = document.createElement('img');
             img.src = '/no-such-image.png';
             document.body.append(img);
             true",
        )
        .await;
    let expected = ["a console error", "an uncaught exception", "Content Security Policy", "404"];
    // They arrive asynchronously: look again for a while (bounded), then judge.
    let mut problems = Vec::new();
    for _ in 0..100 {
        problems = page.problems().await;
        if expected.iter().all(|e| problems.iter().any(|p| p.contains(e))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for e in expected {
        assert!(problems.iter().any(|p| p.contains(e)), "no problem mentions {e:?} in:\n{}", problems.join("\n"));
    }
    assert!(!page.eval::<bool>("window.inlineRan === true").await, "the CSP let an inline script run");

    browser.close().await;
}

/// The promise of the live layer, in a real browser: nobody reloads.
#[tokio::test]
async fn alices_open_order_page_follows_a_stage_move_without_reload() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login?next=/orders/{order}", app.origin)).await;
    page.find_element("#email").await.unwrap().click().await.unwrap().type_str(ALICE).await.unwrap();
    page.find_element("#password").await.unwrap().click().await.unwrap().type_str(PASSWORD).await.unwrap();
    page.find_element("button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_for_path(&format!("/orders/{order}")).await;
    page.wait_until("document.documentElement.dataset.live === 'live'").await;
    // A reload would lose this.
    let _: bool = page.eval("window.sameDocument = true; true").await;
    assert_eq!(page.text("[data-testid=order-stage]").await, "Artwork approval");

    let staff = app.signed_in("staff@portal.example").await;
    let in_production = crate::support::stage_id(&app, "Print job", "In production").await;
    let moved =
        crate::support::move_to(&staff, order, &in_production.to_string(), "Plates are on the press.", "").await;
    assert_eq!(moved.status(), 303);

    page.wait_until("document.querySelector('[data-testid=order-stage]').textContent === 'In production'").await;
    assert!(page.eval::<bool>("window.sameDocument === true").await, "the page reloaded");
    assert!(page.text(&format!("#order-{order}-timeline")).await.contains("Plates are on the press."));
    let current: String = page.eval("document.querySelector('.stages [aria-current=step]').textContent").await;
    assert_eq!(current, "In production");

    // Her session ends elsewhere (signed out on another device, or disabled): the page says so.
    app.sql()
        .await
        .execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = $1)", &[&ALICE])
        .await
        .unwrap();
    page.wait_until("document.documentElement.dataset.live === 'ended'").await;
    assert!(page.text("#live-status").await.contains("Signed out"));
    page.assert_no_problems().await;

    browser.close().await;
}

/// Signs in on the login page `page` is showing and waits for `lands_on`.
async fn sign_in_as(page: &crate::support::browser::Page, email: &str, lands_on: &str) {
    page.find_element("#email").await.unwrap().click().await.unwrap().type_str(email).await.unwrap();
    page.find_element("#password").await.unwrap().click().await.unwrap().type_str(PASSWORD).await.unwrap();
    page.find_element("button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_for_path(lands_on).await;
}

/// The approval loop in two browsers (two cookie jars): alice approves the
/// artwork on her order page, and the staff overview, open all along, shows it.
#[tokio::test]
async fn alice_approves_artwork_and_the_staff_feed_shows_it_without_reload() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1042").await;
    let back_office = Browser::launch().await;
    let staff = back_office.new_page(&format!("{}/login?next=/staff", app.origin)).await;
    sign_in_as(&staff, "staff@portal.example", "/staff").await;
    staff.wait_until("document.documentElement.dataset.live === 'live'").await;
    let _: bool = staff.eval("window.sameDocument = true; true").await;
    assert!(!staff.text("#staff-feed").await.contains("ORD-1042"));

    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login?next=/orders/{order}", app.origin)).await;
    sign_in_as(&page, ALICE, &format!("/orders/{order}")).await;
    let note = format!("#order-{order}-note");
    page.find_element(&note).await.unwrap().click().await.unwrap().type_str("Colours look right.").await.unwrap();
    page.find_element("button[name=decision][value=approve]").await.unwrap().click().await.unwrap();
    page.wait_until("document.body.textContent.includes('ORD-1042 is approved')").await;
    assert_eq!(page.text("[data-testid=order-stage]").await, "In production");
    assert!(
        page.text(&format!("#order-{order}-timeline")).await.contains("Approved by Alice Lee: Colours look right.")
    );

    staff.wait_until("document.getElementById('staff-feed').textContent.includes('ORD-1042')").await;
    assert!(staff.eval::<bool>("window.sameDocument === true").await, "the staff page reloaded");
    let feed = staff.text("#staff-feed").await;
    assert!(feed.contains("Approved an order") && feed.contains("Colours look right."), "{feed}");
    assert!(feed.contains("Acme Manufacturing"), "{feed}");
    page.assert_no_problems().await;
    staff.assert_no_problems().await;

    browser.close().await;
    back_office.close().await;
}

/// The whole invitation in Chromium: alice invites a colleague from Team, the
/// colleague opens the emailed link, chooses a password and lands signed in.
#[tokio::test]
async fn alice_invites_a_colleague_who_joins_from_the_emailed_link() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;
    page.find_element("#email").await.unwrap().click().await.unwrap().type_str(ALICE).await.unwrap();
    page.find_element("#password").await.unwrap().click().await.unwrap().type_str(PASSWORD).await.unwrap();
    page.find_element("button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_for_path("/").await;

    page.goto(format!("{}/team", app.origin)).await.unwrap();
    page.wait_for_path("/team").await;
    page.find_element("#invite-name").await.unwrap().click().await.unwrap().type_str("Dave Two").await.unwrap();
    page.find_element("#invite-email")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("dave2@acme.example")
        .await
        .unwrap();
    page.find_element("#invite-heading ~ form button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_until("document.body.innerText.includes('Invitation sent to dave2@acme.example')").await;
    page.assert_no_problems().await;

    let link = app.mail().wait_for("dave2@acme.example", "").await.link();
    let invitee = browser.new_page(&format!("{}{link}", app.origin)).await;
    // The form starts at the first field (autofocus, applied by a task after the page loads).
    invitee.wait_until("document.activeElement && document.activeElement.id === 'name'").await;
    invitee
        .find_element("#password")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("plum orchard tiny lantern 47")
        .await
        .unwrap();
    invitee
        .find_element("#confirm")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("plum orchard tiny lantern 47")
        .await
        .unwrap();
    invitee.find_element("form.form button[type=submit]").await.unwrap().click().await.unwrap();
    invitee.wait_for_path("/").await;
    let text = invitee.text("body").await;
    assert!(text.contains("Welcome, Dave Two") && text.contains("Acme Manufacturing"), "{text}");
    invitee.assert_no_problems().await;

    browser.close().await;
}

/// Passkeys end to end in Chromium, with DevTools' virtual authenticator
/// standing in for the fingerprint reader: alice adds one in Settings, signs
/// out, and signs in again with one click. The authenticator belongs to the
/// tab, so all of it happens in one tab.
#[tokio::test]
async fn alice_adds_a_passkey_and_signs_in_with_it_without_typing() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;
    let authenticator = page.add_virtual_authenticator().await;
    // The button, not the autofill: the virtual authenticator would answer the
    // autofill request the moment the sign-in page loads, racing the click.
    page.without_passkey_autofill().await;
    sign_in_with_password_and_add_a_passkey(&app, &page, "Test laptop").await;
    let credentials = page.virtual_credentials(&authenticator).await;
    assert_eq!(credentials.len(), 1, "the authenticator holds the new passkey");
    assert!(credentials[0].is_resident_credential, "a discoverable credential");
    let sign_count = credentials[0].sign_count;

    // Signed out, in the same tab: the passkey stays on the authenticator.
    let _: bool = page.eval(r#"document.querySelector('form[action="/logout"]').submit(); true"#).await;
    page.wait_for_path("/login").await;

    // Signing in: one click, no email, no password (the credential is discoverable).
    let sign_in = r#"form[data-passkey="sign-in"]"#;
    page.wait_until(&format!("!document.querySelector('{sign_in}').hidden")).await;
    page.find_element(&format!("{sign_in} [data-passkey-button]")).await.unwrap().click().await.unwrap();
    passkey_outcome(&page, sign_in, "location.pathname === '/' && document.readyState === 'complete'").await;
    let heading = page.text("h1").await;
    assert!(heading.starts_with("Welcome back"), "{heading}");
    let text = page.text("body").await;
    assert!(text.contains("Acme Manufacturing"), "{text}");
    let credentials = page.virtual_credentials(&authenticator).await;
    assert!(credentials[0].sign_count > sign_count, "the authenticator signed with the passkey");

    assert_signed_in_with_a_passkey(&app).await;
    page.assert_no_problems().await;

    browser.close().await;
}

/// The other way in with a passkey: the sign-in page asks for it in the
/// background (autofill, "conditional mediation"). Chromium's virtual
/// authenticator answers such a request at once, as a person picking the
/// passkey from the email field's suggestions would: no click, no typing.
#[tokio::test]
async fn a_passkey_offered_by_autofill_signs_alice_in() {
    let app = spawn_app().await;
    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login", app.origin)).await;
    page.add_virtual_authenticator().await;
    sign_in_with_password_and_add_a_passkey(&app, &page, "Phone").await;

    let _: bool = page.eval(r#"document.querySelector('form[action="/logout"]').submit(); true"#).await;
    page.wait_for_path("/login").await;
    passkey_outcome(
        &page,
        r#"form[data-passkey="sign-in"]"#,
        "location.pathname === '/' && document.readyState === 'complete'",
    )
    .await;
    let heading = page.text("h1").await;
    assert!(heading.starts_with("Welcome back"), "{heading}");

    assert_signed_in_with_a_passkey(&app).await;
    page.assert_no_problems().await;

    browser.close().await;
}

/// Signs alice in with her password in `page`, and adds a passkey named `name`
/// in Settings (the tab needs a virtual authenticator).
async fn sign_in_with_password_and_add_a_passkey(
    app: &crate::support::TestApp,
    page: &crate::support::browser::Page,
    name: &str,
) {
    // localhost, not 127.0.0.1: a relying party id must be a domain name.
    assert!(app.origin.starts_with("http://localhost:"), "{}", app.origin);
    page.find_element("#email").await.unwrap().click().await.unwrap().type_str(ALICE).await.unwrap();
    page.find_element("#password").await.unwrap().click().await.unwrap().type_str(PASSWORD).await.unwrap();
    page.find_element(r#"form[action="/login"] button[type=submit]"#).await.unwrap().click().await.unwrap();
    page.wait_for_path("/").await;

    // The page asks the authenticator, sends its answer, and comes back listing the passkey.
    page.goto(format!("{}/settings/passkeys", app.origin)).await.unwrap();
    page.wait_for_path("/settings/passkeys").await;
    page.wait_until("!document.querySelector('#passkey-add').hidden").await;
    page.find_element("#passkey-name").await.unwrap().click().await.unwrap().type_str(name).await.unwrap();
    page.find_element("#passkey-add [data-passkey-button]").await.unwrap().click().await.unwrap();
    let listed = format!(
        "!!document.querySelector('#passkey-list') \
         && document.querySelector('#passkey-list').innerText.includes({name:?})"
    );
    passkey_outcome(page, "#passkey-add", &listed).await;

    let names: Vec<String> = app
        .sql()
        .await
        .query("SELECT k.name FROM passkeys k JOIN users u ON u.id = k.user_id WHERE u.email = $1", &[&ALICE])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(names, [name]);
}

/// Alice's latest sign-in was by passkey, and her passkey's use is recorded.
async fn assert_signed_in_with_a_passkey(app: &crate::support::TestApp) {
    let sql = app.sql().await;
    let method: Option<String> = sql
        .query_one(
            "SELECT a.details->>'method' FROM activity_log a JOIN users u ON u.id = a.actor_user_id \
             WHERE u.email = $1 AND a.action = 'auth.sign_in' ORDER BY a.id DESC LIMIT 1",
            &[&ALICE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method.as_deref(), Some("passkey"));
    let unused: i64 = sql
        .query_one(
            "SELECT count(*) FROM passkeys k JOIN users u ON u.id = k.user_id \
             WHERE u.email = $1 AND k.last_used_at IS NULL",
            &[&ALICE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unused, 0, "the passkey's last use is recorded");
}

/// Waits until `done`, or until the passkey form `form` shows an error, and
/// fails with that error (what the server or the browser said) if it does.
async fn passkey_outcome(page: &crate::support::browser::Page, form: &str, done: &str) {
    let error = format!("document.querySelector('{form} [data-passkey-error]')");
    page.wait_until(&format!("({done}) || !!({error} && !{error}.hidden)")).await;
    if !page.eval::<bool>(&format!("!!({done})")).await {
        let message: String = page.eval(&format!("{error}.textContent")).await;
        let problems = page.problems().await;
        panic!("the passkey ceremony failed: {message:?}\nbrowser problems:\n{}", problems.join("\n"));
    }
}

/// Alice drops artwork into the upload form: the progress bar moves while it
/// sends (the upload is throttled to 2 MB/s so there is something to see), she
/// lands on the new document, and the staff overview, open in another browser,
/// shows the upload without reloading.
#[tokio::test]
// Network.emulateNetworkConditions is deprecated in the protocol, but Chromium still
// honours it and chromiumoxide 0.9 has no replacement for throttling uploads.
#[allow(deprecated)]
async fn alice_uploads_artwork_with_progress_and_the_staff_feed_shows_it() {
    use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
    use chromiumoxide::cdp::browser_protocol::network::{EmulateNetworkConditionsParams, EnableParams};

    let app = spawn_app().await;
    let back_office = Browser::launch().await;
    let staff = back_office.new_page(&format!("{}/login?next=/staff", app.origin)).await;
    sign_in_as(&staff, "staff@portal.example", "/staff").await;
    staff.wait_until("document.documentElement.dataset.live === 'live'").await;
    let _: bool = staff.eval("window.sameDocument = true; true").await;

    let browser = Browser::launch().await;
    let page = browser.new_page(&format!("{}/login?next=/documents/new", app.origin)).await;
    sign_in_as(&page, ALICE, "/documents/new").await;

    let file = std::env::temp_dir().join(format!("portal-artwork-{}.pdf", uuid::Uuid::new_v4().simple()));
    let mut bytes = b"%PDF-1.7\n% spring sleeve artwork\n".to_vec();
    bytes.resize(3 * 1024 * 1024, b'x');
    std::fs::write(&file, &bytes).unwrap();
    let input = page.find_element("#file").await.unwrap();
    page.execute(
        SetFileInputFilesParams::builder()
            .file(file.to_string_lossy().to_string())
            .backend_node_id(input.backend_node_id)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    page.find_element("#title").await.unwrap().click().await.unwrap().type_str("Spring sleeve artwork").await.unwrap();
    page.execute(EnableParams::default()).await.unwrap();
    page.execute(
        EmulateNetworkConditionsParams::builder()
            .offline(false)
            .latency(0.0)
            .download_throughput(-1.0)
            .upload_throughput(2_000_000.0)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    // Samples the progress bar while it is shown; sessionStorage outlives the navigation after.
    let _: bool = page
        .eval(
            "sessionStorage.setItem('seen', ''); setInterval(function () { \
               var box = document.querySelector('[data-progress]'); var bar = document.getElementById('upload-progress'); \
               if (box && bar && !box.hidden) sessionStorage.setItem('seen', sessionStorage.getItem('seen') + ' ' + bar.value); \
             }, 25); true",
        )
        .await;
    page.find_element("form[data-upload] button[type=submit]").await.unwrap().click().await.unwrap();
    page.wait_until("location.pathname.startsWith('/documents/') && location.pathname !== '/documents/new'").await;
    page.wait_until("document.body.textContent.includes('is uploaded')").await;
    let seen: String = page.eval("sessionStorage.getItem('seen')").await;
    let values: Vec<f64> = seen.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    assert!(values.iter().any(|v| *v > 0.0 && *v < 100.0), "the bar moved through the upload: {seen}");
    assert!(page.text("h1").await.contains("Spring sleeve artwork"));
    page.assert_no_problems().await;

    staff.wait_until("document.getElementById('staff-feed').textContent.includes('Spring sleeve artwork')").await;
    assert!(staff.eval::<bool>("window.sameDocument === true").await, "the staff page reloaded");
    let feed = staff.text("#staff-feed").await;
    assert!(feed.contains("Uploaded a document") && feed.contains("Acme Manufacturing"), "{feed}");
    staff.assert_no_problems().await;

    let _ = std::fs::remove_file(&file);
    browser.close().await;
    back_office.close().await;
}
