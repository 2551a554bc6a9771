//! A real headless Chromium for tests that need a browser: CSP, CSS, focus,
//! keyboard. Driven over the DevTools protocol with chromiumoxide.
//!
//! Each `Browser` is its own Chromium process with a throwaway profile. Each
//! `Page` records the problems a person with the devtools open would see:
//! console errors, uncaught exceptions and browser-reported errors (a failed
//! resource load, a CSP violation), so a test can assert there were none.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chromiumoxide::BrowserConfig;
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::web_authn::{
    self, AddVirtualAuthenticatorParams, AuthenticatorId, AuthenticatorProtocol, AuthenticatorTransport,
    VirtualAuthenticatorOptions,
};
use chromiumoxide::cdp::js_protocol::runtime::{ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::listeners::EventStream;
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

/// The flags verified on this machine (shared/RECIPES.md, "Headless Chromium"),
/// plus `--disable-quic`. chromiumoxide adds its own defaults (puppeteer's) and
/// `--headless`; a flag given twice is merged, not duplicated.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
];

/// How long any one wait on the browser may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(15);

pub struct Browser {
    /// `None` once closed.
    inner: Option<chromiumoxide::Browser>,
    handler: tokio::task::JoinHandle<()>,
    profile: PathBuf,
}

impl Browser {
    pub async fn launch() -> Browser {
        let executable = chromium().await;
        let profile = std::env::temp_dir().join(format!("portal-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("temporary Chromium profile");
        let config = BrowserConfig::builder()
            .chrome_executable(&executable)
            .no_sandbox()
            .user_data_dir(&profile)
            .args(FLAGS.map(|flag| flag.trim_start_matches("--")))
            // A desktop-sized window, not chromiumoxide's default 800x600 emulation.
            .window_size(1280, 800)
            .viewport(None)
            .launch_timeout(Duration::from_secs(30))
            .build()
            .expect("Chromium configuration");
        let (inner, mut handler) = chromiumoxide::Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("{} does not start: {e}", executable.display()));
        // The handler is the browser's event loop: nothing moves unless it is polled.
        // Its errors are per-message (an event it cannot parse) and not fatal.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Browser { inner: Some(inner), handler, profile }
    }

    fn inner(&self) -> &chromiumoxide::Browser {
        self.inner.as_ref().expect("the browser is open")
    }

    /// A new tab that records its problems from the start, then loads `url`.
    pub async fn new_page(&self, url: &str) -> Page {
        let page = self.inner().new_page("about:blank").await.expect("a new tab");
        // chromiumoxide enables Runtime and Log itself when it attaches to a tab;
        // enabling them again is harmless and does not rely on that.
        page.enable_runtime().await.expect("Runtime.enable");
        page.enable_log().await.expect("Log.enable");
        let recorder = Recorder {
            console: page.event_listener().await.expect("console listener"),
            exceptions: page.event_listener().await.expect("exception listener"),
            log: page.event_listener().await.expect("log listener"),
            seen: Vec::new(),
        };
        let page = Page { page, recorder: Mutex::new(recorder) };
        page.goto(url).await.unwrap_or_else(|e| panic!("load {url}: {e}"));
        page
    }

    /// Closes Chromium, waits for it to exit and removes its profile.
    pub async fn close(mut self) {
        let Some(inner) = self.inner.as_mut() else { return };
        let closed = matches!(tokio::time::timeout(TIMEOUT, inner.close()).await, Ok(Ok(_)));
        if closed && tokio::time::timeout(TIMEOUT, inner.wait()).await.is_ok() {
            self.inner = None;
            // The handler ends with the connection; bounded all the same.
            let _ = tokio::time::timeout(TIMEOUT, &mut self.handler).await;
        }
        // Drop removes the profile (and kills what did not close).
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
        // Not closed: a test failed (or closing did). Drop cannot await, and killing only the browser
        // process (chromiumoxide's kill-on-drop) leaves its helpers running a moment
        // longer, writing into the profile: kill them all, then wait (bounded).
        if let Some(child) = self.inner.as_mut().and_then(|inner| inner.get_mut_child())
            && let Some(pid) = child.inner.id()
        {
            for pid in process_tree(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            for _ in 0..100 {
                if !matches!(child.inner.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        drop(self.inner.take());
        for _ in 0..50 {
            match std::fs::remove_dir_all(&self.profile) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
    }
}

/// `pid` and all its descendants (Linux /proc), parents first.
fn process_tree(pid: u32) -> Vec<i32> {
    let mut tree = vec![pid.cast_signed()];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).into_iter().flatten().flatten();
        for task in tasks {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            tree.extend(children.split_whitespace().filter_map(|child| child.parse::<i32>().ok()));
        }
        next += 1;
    }
    tree
}

/// A tab. Derefs to chromiumoxide's `Page` for everything else
/// (`find_element`, `evaluate`, `url`…).
pub struct Page {
    page: chromiumoxide::Page,
    recorder: Mutex<Recorder>,
}

struct Recorder {
    console: EventStream<EventConsoleApiCalled>,
    exceptions: EventStream<EventExceptionThrown>,
    log: EventStream<EventEntryAdded>,
    seen: Vec<String>,
}

impl Recorder {
    /// Moves what has arrived so far into `seen`, without waiting for more.
    fn drain(&mut self) {
        while let Some(Some(event)) = self.console.next().now_or_never() {
            if matches!(event.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert) {
                let args: Vec<String> = event
                    .args
                    .iter()
                    .map(|arg| match (&arg.value, &arg.description) {
                        (Some(serde_json::Value::String(s)), _) => s.clone(),
                        (Some(value), _) => value.to_string(),
                        (None, Some(description)) => description.clone(),
                        (None, None) => format!("{:?}", arg.r#type),
                    })
                    .collect();
                self.seen.push(format!("console.{}: {}", event.r#type.as_ref(), args.join(" ")));
            }
        }
        while let Some(Some(event)) = self.exceptions.next().now_or_never() {
            let details = &event.exception_details;
            let description = details.exception.as_ref().and_then(|e| e.description.clone()).unwrap_or_default();
            self.seen.push(format!("{} {description}{}", details.text, at(details.url.as_deref())));
        }
        while let Some(Some(event)) = self.log.next().now_or_never() {
            let entry = &event.entry;
            if entry.level == LogEntryLevel::Error {
                self.seen.push(format!("{} error: {}{}", entry.source.as_ref(), entry.text, at(entry.url.as_deref())));
            }
        }
    }
}

fn at(url: Option<&str>) -> String {
    url.filter(|url| !url.is_empty()).map(|url| format!(" (at {url})")).unwrap_or_default()
}

impl Deref for Page {
    type Target = chromiumoxide::Page;

    fn deref(&self) -> &chromiumoxide::Page {
        &self.page
    }
}

impl Page {
    /// The value of a JavaScript expression in the page.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        self.page
            .evaluate(expression)
            .await
            .unwrap_or_else(|e| panic!("evaluate `{expression}`: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("value of `{expression}`: {e}"))
    }

    /// The rendered text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> String {
        let element = self.find_element(selector).await.unwrap_or_else(|e| panic!("no `{selector}`: {e}"));
        element.inner_text().await.expect("inner text").unwrap_or_default()
    }

    /// Waits until `expression` is true, for at most `TIMEOUT`. Errors count as
    /// not yet: while a navigation is under way the page has no context to ask.
    pub async fn wait_until(&self, expression: &str) {
        let poll = async {
            loop {
                if let Ok(result) = self.page.evaluate(expression).await
                    && result.into_value::<bool>().unwrap_or(false)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(TIMEOUT, poll).await.is_err() {
            let url = self.page.url().await.ok().flatten().unwrap_or_default();
            panic!("still not `{expression}` after {TIMEOUT:?}, at {url}");
        }
    }

    /// Waits until the tab shows `path` (e.g. after a form posts and redirects), fully loaded.
    pub async fn wait_for_path(&self, path: &str) {
        self.wait_until(&format!("location.pathname === {path:?} && document.readyState === 'complete'")).await;
    }

    /// Presses `key` (a key name such as "Tab" or "Enter", or one character),
    /// as the keyboard would: it goes to whatever has the focus.
    pub async fn press_key(&self, key: &str) {
        self.keyboard().await.press_key(key).await.unwrap_or_else(|e| panic!("press {key}: {e}"));
    }

    /// Types `text` key by key into whatever has the focus.
    pub async fn type_keys(&self, text: &str) {
        self.keyboard().await.type_str(text).await.unwrap_or_else(|e| panic!("type {text:?}: {e}"));
    }

    /// chromiumoxide only has keyboard input on elements, but it dispatches the
    /// keys to the page (Input.dispatchKeyEvent) without focusing the element
    /// first, so any element serves to type into the focused one.
    async fn keyboard(&self) -> chromiumoxide::Element {
        self.find_element(":root").await.expect("the document element")
    }

    /// Every console error, uncaught exception and browser-logged error so far,
    /// on every document this tab has shown.
    pub async fn problems(&self) -> Vec<String> {
        // A round trip first: events the browser sent before answering it are
        // then in the listeners' queues.
        let _ = self.page.evaluate("0").await;
        let mut recorder = self.recorder.lock().expect("recorder");
        recorder.drain();
        recorder.seen.clone()
    }

    pub async fn assert_no_problems(&self) {
        let problems = self.problems().await;
        assert!(problems.is_empty(), "the browser reported problems:\n{}", problems.join("\n"));
    }

    /// Gives this tab a virtual platform authenticator (DevTools' WebAuthn
    /// domain): CTAP2, built in, with discoverable credentials and user
    /// verification that always succeeds, answering every prompt at once as if
    /// a person touched it. It belongs to this tab's target and lives as long as
    /// the tab, across navigations, so the passkeys it creates can sign in later
    /// in the same tab. Returns its id (for the other WebAuthn commands).
    pub async fn add_virtual_authenticator(&self) -> AuthenticatorId {
        // Without the UI: nothing would be there to answer a dialog.
        self.page.execute(web_authn::EnableParams::builder().enable_ui(false).build()).await.expect("WebAuthn.enable");
        let options = VirtualAuthenticatorOptions::builder()
            .protocol(AuthenticatorProtocol::Ctap2)
            .transport(AuthenticatorTransport::Internal)
            .has_resident_key(true)
            .has_user_verification(true)
            .is_user_verified(true)
            .automatic_presence_simulation(true)
            .build()
            .expect("virtual authenticator options");
        self.page
            .execute(AddVirtualAuthenticatorParams::new(options))
            .await
            .expect("WebAuthn.addVirtualAuthenticator")
            .result
            .authenticator_id
    }

    /// From the next document on, this tab's browser offers no passkey autofill:
    /// `PublicKeyCredential.isConditionalMediationAvailable()` resolves false, as
    /// in browsers without it. Chromium's virtual authenticator answers an
    /// autofill (conditional) request by itself, as if the person had picked the
    /// passkey the moment the page loaded, so a test of an explicit button needs
    /// the autofill out of the way. Until the tab closes.
    pub async fn without_passkey_autofill(&self) {
        let script = "if (window.PublicKeyCredential) \
                      PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);";
        self.page.evaluate_on_new_document(script).await.expect("Page.addScriptToEvaluateOnNewDocument");
    }

    /// The credentials on a virtual authenticator of this tab.
    pub async fn virtual_credentials(&self, authenticator: &AuthenticatorId) -> Vec<web_authn::Credential> {
        self.page
            .execute(web_authn::GetCredentialsParams::new(authenticator.clone()))
            .await
            .expect("WebAuthn.getCredentials")
            .result
            .credentials
    }
}

/// The Chromium to use: `$PORTAL_CHROMIUM`, else the system one; as root, Debian's
/// package is installed (once per test process) when there is none.
async fn chromium() -> PathBuf {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    if let Some(path) = std::env::var_os("PORTAL_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "PORTAL_CHROMIUM={} is not a file", path.display());
        return path;
    }
    if let Some(path) = find_chromium() {
        return path;
    }
    if nix::unistd::Uid::effective().is_root() {
        INSTALLED.get_or_init(install_chromium).await;
    }
    find_chromium().unwrap_or_else(|| {
        panic!(
            "the browser tests need Chromium: install it (Debian: `apt-get install chromium`) \
             or set PORTAL_CHROMIUM to its executable"
        )
    })
}

fn find_chromium() -> Option<PathBuf> {
    let system = Path::new("/usr/bin/chromium");
    if system.is_file() {
        return Some(system.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

async fn install_chromium() {
    eprintln!("Chromium not found: installing Debian's package (about a minute)");
    run_apt(&["update"]).await;
    run_apt(&["install", "-y", "-o", "DPkg::Lock::Timeout=300", "chromium"]).await;
}

/// Runs apt-get; a failure is reported here and shows as "Chromium not found" after.
async fn run_apt(args: &[&str]) {
    let output = tokio::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!(
            "apt-get {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => eprintln!("apt-get {}: {e}", args.join(" ")),
    }
}
