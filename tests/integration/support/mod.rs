//! The one harness every integration test uses.
//!
//! One private PostgreSQL cluster per test run (started here, thrown away by
//! its watchdog when the test process exits), one template database holding
//! the migrations and the demo data, and for each test a fresh database cloned
//! from it, so tests are isolated and run in parallel. The app runs in-process
//! on a random port and is driven over real HTTP with cookie-keeping clients.

#![allow(dead_code)]

pub mod browser;
pub mod live;
pub mod s3;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use portal::config::{Config, StorageSettings};
use portal_pgcluster::{Cluster, ClusterOptions, sweep_stale};
use reqwest::redirect::Policy;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use uuid::Uuid;

pub const PASSWORD: &str = "demo-portal-password";
const TEMPLATE: &str = "portal_template";
const CLUSTERS_DIR: &str = "/tmp/portal-test-clusters";
/// Each app's data dir (blobs, spool) is `<this>/run-<pid>/<test database name>`.
const DATA_DIR: &str = "/tmp/portal-test-data";

static CLUSTER: OnceCell<Arc<Cluster>> = OnceCell::const_new();

async fn cluster() -> Arc<Cluster> {
    CLUSTER
        .get_or_init(|| async {
            // Logs bypass the test runner's capture; ask for them with RUST_LOG=info.
            if std::env::var_os("RUST_LOG").is_some() {
                portal::telemetry::init(false);
            }
            let parent = std::path::Path::new(CLUSTERS_DIR);
            sweep_stale(parent).await;
            let dir = parent.join(format!("run-{}", std::process::id()));
            let cluster = Cluster::start(ClusterOptions { dir, ephemeral: true })
                .await
                .expect("the test PostgreSQL cluster starts");
            cluster.ensure_database(TEMPLATE).await.expect("template database");
            let url = cluster.connection_string(TEMPLATE);
            portal::db::migrate(&url).await.expect("migrations apply to the template");
            let db = portal::db::Db::connect(logins(&url), 2).await.expect("template pool");
            portal::demo::load(&db).await.expect("demo data loads into the template");
            drop(db);
            // CREATE DATABASE ... TEMPLATE needs the template to have no connections;
            // forbidding them for good also keeps a stray test from writing to it.
            let admin = connect(&cluster.connection_string("postgres")).await;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false; \
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{TEMPLATE}';"
                ))
                .await
                .expect("template sealed");
            Arc::new(cluster)
        })
        .await
        .clone()
}

/// The portal's own logins (`portal_web`, `portal_web_staff`) on a test database.
pub fn logins(db_url: &str) -> portal::db::Logins {
    portal::db::Logins::dedicated(db_url).expect("logins")
}

/// A superuser connection, for arranging and inspecting state behind the app's back.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test cluster");
    tokio::spawn(connection);
    client
}

pub struct TestApp {
    /// Where the server listens (what the test clients connect to).
    pub address: String,
    /// The portal's public origin (differs from `address` when a test sets `public_url`).
    pub origin: String,
    pub db_url: String,
    handle: ServerHandle,
    /// The app's SMTP server (see `mail()`).
    mail: smtp::Mailbox,
    /// The app's `run()` (HTTP server, mail worker, sweeper), awaited by `stop()`.
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    /// The config the app was built with.
    config: Config,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the workers wind down on their own threads.
        drop(self.handle.stop(false));
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the portal on a fresh copy of the demo database, with `tweak` applied to its config.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn(tweak, None).await
}

/// Starts the portal with database pools of exactly these sizes (customer, staff).
pub async fn spawn_app_with_pools(customer: u32, staff: u32) -> TestApp {
    spawn(|_| {}, Some((customer, staff))).await
}

async fn spawn(tweak: impl FnOnce(&mut Config), pools: Option<(u32, u32)>) -> TestApp {
    let cluster = cluster().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(&cluster.connection_string("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        .await
        .expect("test database cloned from the template");
    let db_url = cluster.connection_string(&name);
    // As at every start of the portal (nothing is pending; this enforces database-level privileges).
    portal::db::migrate(&db_url).await.expect("migrate the test database");
    // Every app sends its email to its own real SMTP server, and looks for due email often.
    let mail = smtp::Mailbox::start().await;
    let mut config = Config {
        addr: "127.0.0.1:0".parse().expect("address"),
        // Its own blobs and spool, never the repository's `var`.
        data_dir: fresh_data_dir(&name),
        workers: 1,
        db_pool_size: 4,
        smtp_url: Some(mail.url().into()),
        mail_poll: Duration::from_millis(100),
        ..Config::default()
    };
    tweak(&mut config);
    let db = match pools {
        Some((customer, staff)) => portal::db::Db::connect_sized(logins(&db_url), customer, staff).await,
        None => portal::db::Db::connect(logins(&db_url), config.db_pool_size).await,
    }
    .expect("app pool");
    let blobs = portal::storage::BlobStore::open(&config).await.expect("the blob store opens");
    let app = portal::Application::build(&config, db, blobs).expect("app builds");
    let origin = app.origin().to_owned();
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let running = std::sync::Mutex::new(Some(tokio::spawn(app.run())));
    TestApp { address, origin, db_url, handle, mail, running, config }
}

/// Starts the portal like [`spawn_app`], storing files in a fresh bucket on the test S3 server.
pub async fn spawn_app_on_s3() -> TestApp {
    spawn_app_on_s3_with(|_| {}).await
}

/// [`spawn_app_with`] on a fresh bucket of the test S3 server (`tweak` runs after the storage is set).
pub async fn spawn_app_on_s3_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let settings = s3::settings().await;
    spawn_app_with(move |config| {
        config.storage = StorageSettings::S3(settings);
        tweak(config);
    })
    .await
}

/// A new, empty data dir for this test process: `/tmp/portal-test-data/run-<pid>/<name>`. The
/// first call removes the data dirs of test processes that are gone.
pub fn fresh_data_dir(name: &str) -> PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let parent = Path::new(DATA_DIR);
        sweep_dead_runs(parent);
        parent.join(format!("run-{}", std::process::id()))
    });
    let dir = run.join(name);
    std::fs::create_dir_all(&dir).expect("test data dir");
    dir
}

/// Removes the `run-<pid>` directories under `parent` whose process is gone.
pub fn sweep_dead_runs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("run-")).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The keys of every object stored under `storage` (for a local store, the files under
/// `<data_dir>/blobs/objects`), sorted: tests use it to prove nothing is left behind.
pub async fn stored_objects(storage: &StorageSettings, data_dir: &Path) -> Vec<String> {
    match storage {
        StorageSettings::S3(settings) => s3::keys(settings).await,
        StorageSettings::Local => {
            let objects = data_dir.join("blobs/objects");
            let mut keys = Vec::new();
            let mut dirs = vec![objects.clone()];
            while let Some(dir) = dirs.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries {
                    let path = entry.expect("directory entry").path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        let key = path.strip_prefix(&objects).expect("under the objects dir");
                        keys.push(key.to_string_lossy().into_owned());
                    }
                }
            }
            keys.sort();
            keys
        }
    }
}

impl TestApp {
    /// The config the app was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where this app stores files: local (under [`TestApp::data_dir`]) or its own S3 bucket.
    pub fn storage(&self) -> &StorageSettings {
        &self.config.storage
    }

    /// This app's data dir: a fresh one under /tmp unless the test chose another.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The keys of every object in this app's blob store, sorted (see [`stored_objects`]).
    pub async fn stored_objects(&self) -> Vec<String> {
        stored_objects(&self.config.storage, &self.config.data_dir).await
    }

    /// The SMTP server this app sends to: `app.mail().wait_for(to, "subject part").await`.
    pub fn mail(&self) -> &smtp::Mailbox {
        &self.mail
    }

    /// Stops the app as on SIGTERM (requests finish, the mail worker finishes its email) and waits
    /// for it. The database and the SMTP server stay, for tests of what survives a restart.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.await.expect("the app stops cleanly").expect("the app ran");
        }
    }

    /// A new browser-like client with its own cookie jar; redirects are not followed,
    /// so tests see them.
    pub fn client(&self) -> Client {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Client { http, base: self.address.clone(), jar }
    }

    /// A client already signed in as `email` (demo password).
    pub async fn signed_in(&self, email: &str) -> Client {
        let client = self.client();
        let response = client.sign_in(email, PASSWORD).await;
        assert_eq!(response.status(), 303, "sign-in of {email} should succeed");
        client
    }

    /// Superuser connection to this test's database.
    pub async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    /// A connection exactly as the portal's customer pool has it: the `portal_web` login, as `portal_app`.
    pub async fn app_role_sql(&self) -> tokio_postgres::Client {
        let client = self.web_login_sql().await;
        client.batch_execute("SET ROLE portal_app").await.expect("switch to portal_app");
        client
    }

    /// The customer pool's login before it switches role.
    pub async fn web_login_sql(&self) -> tokio_postgres::Client {
        connect(&format!("{} user=portal_web", self.db_url)).await
    }

    /// The portal's database handle on this test's database (for library-level tests).
    pub async fn db(&self) -> portal::db::Db {
        portal::db::Db::connect(logins(&self.db_url), 2).await.expect("pool")
    }

    /// The id of a demo customer by slug (`acme`, `globex`).
    pub async fn customer_id(&self, slug: &str) -> uuid::Uuid {
        self.sql().await.query_one("SELECT id FROM customers WHERE slug = $1", &[&slug]).await.expect("customer").get(0)
    }

    /// The id of a demo order by number.
    pub async fn order_id(&self, number: &str) -> uuid::Uuid {
        self.sql().await.query_one("SELECT id FROM orders WHERE number = $1", &[&number]).await.expect("order").get(0)
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The `Cookie` header this client sends to the app (for the live socket's handshake).
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().expect("base URL");
        self.jar.cookies(&url).and_then(|v| v.to_str().ok().map(str::to_owned)).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_html(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.expect("body")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url(path)).form(form).send().await.expect("POST")
    }

    /// The CSRF token the page at `path` puts in its forms.
    pub async fn csrf_token(&self, path: &str) -> String {
        let html = self.get_html(path).await;
        csrf_in(&html).unwrap_or_else(|| panic!("no csrf_token on {path}"))
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        let token = self.csrf_token("/login").await;
        self.post_form("/login", &[("csrf_token", &token), ("email", email), ("password", password)]).await
    }

    /// Signs out with the form of the page at `page` (the account menu is on every page).
    pub async fn sign_out(&self, page: &str) -> reqwest::Response {
        let token = self.csrf_token(page).await;
        self.post_form("/logout", &[("csrf_token", &token)]).await
    }
}

pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The id of a stage by workflow and stage name.
pub async fn stage_id(app: &TestApp, workflow: &str, stage: &str) -> Uuid {
    app.sql()
        .await
        .query_one(
            "SELECT s.id FROM workflow_stages s JOIN workflows w ON w.id = s.workflow_id \
             WHERE w.name = $1 AND s.name = $2",
            &[&workflow, &stage],
        )
        .await
        .unwrap()
        .get(0)
}

/// Posts the "Move to stage" form of the staff order page, with the page's own CSRF token.
pub async fn move_to(
    staff: &Client,
    order: Uuid,
    stage: &str,
    customer_note: &str,
    internal_note: &str,
) -> reqwest::Response {
    let token = staff.csrf_token(&format!("/staff/orders/{order}")).await;
    staff
        .post_form(
            &format!("/staff/orders/{order}/stage"),
            &[
                ("csrf_token", &token),
                ("stage_id", stage),
                ("customer_note", customer_note),
                ("internal_note", internal_note),
            ],
        )
        .await
}
