//! `live`: end-to-end latency from a database COMMIT to the fragment arriving on many open
//! live sockets. The sockets speak `/live` as live.js does: hello with the page's cursor and
//! regions, then an ack for every push.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use clap::Parser;
use futures_util::StreamExt;
use reqwest::cookie::CookieStore;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::{AnyError, percentile, sign_in};

#[derive(Parser)]
pub struct LiveArgs {
    /// The portal (keep it on this machine). With --spawn, the address it is started on.
    #[arg(long, default_value = "http://127.0.0.1:18090")]
    url: String,
    /// Start this `portal` binary as `portal serve --demo` on --url (and stop it afterwards)
    /// instead of targeting a running portal; its RSS is then measured.
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// PORTAL_DATA_DIR for --spawn (default: a fresh directory under /tmp, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Owner connection to the portal's database, for the changes (libpq key/value or URL).
    /// Default with --spawn: the private cluster under the data dir, over 127.0.0.1.
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    database_url: Option<String>,
    /// The portal's process id, to read its RSS when it was not started with --spawn.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Accounts the sockets are spread over, round robin (repeat the flag); all must see --order.
    #[arg(long = "email", default_values_t = ["alice@acme.example".to_string(), "dave@acme.example".to_string()])]
    emails: Vec<String>,
    #[arg(long, env = "PORTAL_LOADTEST_PASSWORD", default_value = "demo-portal-password")]
    password: String,
    /// The order whose page every socket follows.
    #[arg(long, default_value = "ORD-1042")]
    order: String,
    /// Open live sockets.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sessions: u32,
    /// Sockets sharing one sign-in (one session cookie, like tabs of one browser).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sockets_per_signin: u32,
    /// Changes committed once every socket has its catch-up push.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    changes: u32,
    /// Changes per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    rate: u32,
    /// How long to wait for the last deliveries after the last commit, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    grace: u64,
    /// Sessions minted by `setup --customers` (lines `customer_id user_id order_id cookie`):
    /// the sockets are spread over its customers, each on the order page its user follows, and
    /// random customers' followed orders change (--email, --order, --sockets-per-signin unused).
    #[arg(long)]
    sessions_file: Option<PathBuf>,
    /// With --sessions-file: how many of its customers the sockets are spread over (default:
    /// all of them, at most one per socket).
    #[arg(long)]
    customers: Option<usize>,
    /// With --sessions-file: connections committing the changes (each order always through the same one).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    writers: u32,
    /// Print one JSON object instead of a markdown table.
    #[arg(long)]
    json: bool,
}

impl LiveArgs {
    /// The many-customers mode's arguments, when --sessions-file is given.
    fn crowd(&self, url: &str, database_url: String, server_pid: Option<u32>) -> Option<crate::crowd::CrowdArgs> {
        Some(crate::crowd::CrowdArgs {
            url: url.to_owned(),
            database_url,
            sessions_file: self.sessions_file.clone()?,
            sessions: self.sessions as usize,
            customers: self.customers,
            changes: self.changes as usize,
            rate: f64::from(self.rate),
            writers: self.writers as usize,
            grace: Duration::from_secs(self.grace),
            server_pid,
        })
    }
}

/// Sockets opening at once (handshake, session lookup, catch-up query).
pub(crate) const OPENING_AT_ONCE: usize = 64;
/// Upper bound on connecting every socket and receiving its catch-up push.
const CONNECT_BUDGET: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
pub(crate) struct Push {
    pub(crate) id: i64,
    pub(crate) ops: Vec<Op>,
}

#[derive(Deserialize)]
pub(crate) struct Op {
    pub(crate) op: String,
    pub(crate) target: String,
    #[serde(default)]
    pub(crate) html: String,
}

/// What one socket saw.
#[derive(Default)]
struct SocketOutcome {
    /// First receipt of each change's marker, by change number.
    received: Vec<Option<Instant>>,
    pushes: u64,
    /// Close code (or 1006 for an abrupt end) if the server ended the socket before we did.
    closed_by_server: Option<u16>,
    error: Option<String>,
}

/// One page as a session loaded it: the cookies to send and the hello to say.
pub(crate) struct Page {
    pub(crate) cookie: String,
    pub(crate) regions: Vec<String>,
    pub(crate) hello: String,
}

/// Marks change `n` of this run: fixed width, so no marker is a prefix of another.
pub(crate) fn marker(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:06}")
}

/// Every change number whose marker appears in `html`.
pub(crate) fn markers_in(html: &str, prefix: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        if let Some(digits) = rest.get(..6)
            && let Ok(n) = digits.parse::<usize>()
        {
            found.push(n);
        }
    }
    found
}

fn attribute<'a>(html: &'a str, from: usize, name: &str) -> Option<&'a str> {
    let marker = format!("{name}=\"");
    let start = html[from..].find(&marker)? + from + marker.len();
    let end = html[start..].find('"')? + start;
    Some(&html[start..end])
}

/// The page's stream position (`data-live-cursor` on `<body>`).
pub(crate) fn cursor_in(html: &str) -> Option<i64> {
    attribute(html, 0, "data-live-cursor")?.parse().ok()
}

/// The ids of the page's `[data-live][id]` elements, found by scanning each tag.
pub(crate) fn regions_in(html: &str) -> Vec<String> {
    let mut regions = Vec::new();
    let mut at = 0;
    while let Some(open) = html[at..].find('<') {
        let start = at + open;
        let Some(close) = html[start..].find('>') else { break };
        let tag = &html[start..start + close];
        at = start + close;
        let live = tag
            .split_whitespace()
            .any(|word| word == "data-live" || word.starts_with("data-live=") || word == "data-live/");
        if live && let Some(id) = attribute(tag, 0, " id").or_else(|| attribute(tag, 0, "\tid")) {
            regions.push(id.to_owned());
        }
    }
    regions
}

/// Resident set size of a process in KiB, from `/proc/<pid>/status`.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn origin_of(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// The portal started by --spawn; stopped (SIGTERM, so it stops its PostgreSQL) on `stop`.
pub(crate) struct Spawned {
    child: tokio::process::Child,
    data_dir: PathBuf,
    remove_data_dir: bool,
}

impl Spawned {
    pub(crate) async fn start(binary: &PathBuf, url: &str, data_dir: Option<PathBuf>) -> Result<Spawned, AnyError> {
        let addr = url.strip_prefix("http://").ok_or("--spawn needs an http:// --url")?.trim_end_matches('/');
        // The portal's loopback origin is `http://localhost:PORT` (its live socket checks Origin); it binds the address.
        let addr = addr.replace("localhost", "127.0.0.1");
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let (data_dir, remove_data_dir) = match data_dir {
            Some(dir) => (dir, false),
            None => (PathBuf::from(format!("/tmp/portal-loadtest-{}-{nonce}", std::process::id())), true),
        };
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(data_dir.join("portal.log"))?;
        let child = tokio::process::Command::new(binary)
            .args(["serve", "--demo"])
            .env("PORTAL_DATA_DIR", &data_dir)
            .env("PORTAL_ADDR", &addr)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let spawned = Spawned { child, data_dir, remove_data_dir };
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = probe.get(format!("{url}/readyz")).send().await
                && response.status().is_success()
            {
                return Ok(spawned);
            }
            if Instant::now() > until {
                return Err(format!(
                    "the portal did not become ready within 60 s (see {})",
                    spawned.data_dir.join("portal.log").display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The owner connection to the private cluster (a durable cluster remembers its port).
    pub(crate) fn database_url(&self) -> Result<String, AnyError> {
        let file = self.data_dir.join("postgres").join("port");
        let port = std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: {e} (pass --database-url)", file.display()))?
            .trim()
            .parse::<u16>()?;
        Ok(format!("host=127.0.0.1 port={port} user=postgres dbname=portal"))
    }

    pub(crate) async fn stop(mut self) -> Result<(), AnyError> {
        if let Some(pid) = self.child.id() {
            tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
            if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
                self.child.kill().await?;
            }
        }
        if self.remove_data_dir {
            std::fs::remove_dir_all(&self.data_dir)?;
        }
        Ok(())
    }
}

/// Signs in, loads the order page once and returns what its sockets need.
pub(crate) async fn load_page(url: &str, email: &str, password: &str, path: &str) -> Result<Page, AnyError> {
    let (client, jar) = sign_in(url, email, password).await?;
    let response = client.get(format!("{url}{path}")).send().await?;
    if !response.status().is_success() {
        return Err(format!("{email}: GET {path} answered {}", response.status()).into());
    }
    let html = response.text().await?;
    let cursor = cursor_in(&html).ok_or("the order page has no data-live-cursor")?;
    let regions = regions_in(&html);
    let cookie = jar
        .cookies(&url.parse()?)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .ok_or("no session cookie after sign-in")?;
    let hello = serde_json::json!({"type": "hello", "cursor": cursor, "regions": regions}).to_string();
    Ok(Page { cookie, hello, regions })
}

/// Waits (at most the connect budget) until `sessions` sockets said they are ready or
/// failed; returns how many connected and the failures.
pub(crate) async fn await_ready(
    ready_rx: &mut mpsc::UnboundedReceiver<Result<(), String>>,
    sessions: usize,
) -> (usize, Vec<String>) {
    let mut connected = 0usize;
    let mut failed = Vec::new();
    let budget = tokio::time::Instant::now() + CONNECT_BUDGET;
    while connected + failed.len() < sessions {
        match tokio::time::timeout_at(budget, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => connected += 1,
            Ok(Some(Err(e))) => failed.push(e),
            Ok(None) | Err(_) => break,
        }
    }
    (connected, failed)
}

/// A live socket as a browser tab opens it: the page's session cookie, the portal's origin, the page's hello.
pub(crate) async fn open_socket(
    url: &str,
    origin: &str,
    page: &Page,
) -> Result<async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>, AnyError> {
    let mut request = format!("{}/live", url.replacen("http", "ws", 1)).into_client_request()?;
    request.headers_mut().insert("cookie", HeaderValue::from_str(&page.cookie)?);
    request.headers_mut().insert("origin", HeaderValue::from_str(origin)?);
    let (mut ws, _) = connect_async(request).await?;
    ws.send(Message::text(page.hello.clone())).await?;
    Ok(ws)
}

struct SocketPlan {
    url: String,
    origin: String,
    page: Arc<Page>,
    target: Arc<str>,
    prefix: Arc<str>,
    changes: usize,
}

/// One live socket: opens, says hello, reports ready on its catch-up push, then records the
/// first receipt of every marker until it has all of them or `stop` says time is up.
async fn socket(
    plan: SocketPlan,
    opening: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<Option<tokio::time::Instant>>,
) -> SocketOutcome {
    let mut outcome = SocketOutcome { received: vec![None; plan.changes], ..SocketOutcome::default() };
    let permit = opening.acquire_owned().await;
    let opened = open_socket(&plan.url, &plan.origin, &plan.page).await;
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            let message = format!("open: {e}");
            let _ = ready.send(Err(message.clone()));
            outcome.error = Some(message);
            return outcome;
        }
    };
    let mut permit = Some(permit);
    let mut got = 0usize;
    let mut deadline = tokio::time::Instant::now() + CONNECT_BUDGET + Duration::from_secs(3600);
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            () = tokio::time::sleep_until(deadline) => break,
            changed = stop.changed() => {
                match (changed, *stop.borrow()) {
                    (Ok(()), Some(at)) => deadline = at,
                    (Err(_), _) => deadline = tokio::time::Instant::now(),
                    _ => {}
                }
                continue;
            }
        };
        let at = Instant::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                outcome.closed_by_server = Some(frame.map_or(1005, |f| u16::from(f.code)));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                outcome.closed_by_server = Some(1006);
                outcome.error = Some(format!("read: {e}"));
                break;
            }
            None => {
                outcome.closed_by_server = Some(1006);
                break;
            }
        };
        let push: Push = match serde_json::from_str(&text) {
            Ok(push) => push,
            Err(e) => {
                outcome.error = Some(format!("unexpected frame: {e}"));
                break;
            }
        };
        if let Err(e) = ws.send(Message::text(serde_json::json!({"type": "ack", "id": push.id}).to_string())).await {
            outcome.error = Some(format!("ack: {e}"));
            break;
        }
        outcome.pushes += 1;
        if permit.take().is_some() {
            // The catch-up push: this socket is live.
            let _ = ready.send(Ok(()));
        }
        for op in push.ops.iter().filter(|op| op.op == "replace" && *op.target == *plan.target) {
            // Pushes carry state: the region showing change n reflects every change before it
            // (each sets the same field), so receiving n delivers all of them not yet seen.
            if let Some(newest) = markers_in(&op.html, &plan.prefix).into_iter().max() {
                for slot in outcome.received.iter_mut().take(newest + 1).filter(|slot| slot.is_none()) {
                    *slot = Some(at);
                    got += 1;
                }
            }
        }
        if got == plan.changes {
            break;
        }
    }
    if permit.is_some() {
        let message =
            outcome.error.clone().unwrap_or_else(|| format!("closed {:?} before catch-up", outcome.closed_by_server));
        let _ = ready.send(Err(message));
    }
    let _ = ws.close(None).await;
    outcome
}

/// Commits the changes at the rate asked, once told to go.
struct Writer {
    database_url: String,
    order: String,
    prefix: String,
    changes: usize,
    rate: u32,
}

impl Writer {
    /// The time each COMMIT returned, and how long all of them took.
    async fn run(self, go: tokio::sync::oneshot::Receiver<()>) -> Result<(Vec<Instant>, f64), AnyError> {
        let (db, connection) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let insert = db.prepare("UPDATE orders SET reference = $2 WHERE id = $1::text::uuid").await?;
        go.await?;
        let mut commits = Vec::with_capacity(self.changes);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        for n in 0..self.changes {
            tick.tick().await;
            // Autocommit: the statement returns once its COMMIT has.
            db.execute(&insert, &[&self.order, &marker(&self.prefix, n)]).await?;
            commits.push(Instant::now());
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(db);
        connection.await??;
        Ok((commits, seconds))
    }
}

pub async fn run(args: LiveArgs) -> Result<(), AnyError> {
    let url = args.url.trim_end_matches('/').to_owned();
    let spawned = match &args.spawn {
        Some(binary) => Some(Spawned::start(binary, &url, args.data_dir.clone()).await?),
        None => None,
    };
    let result = measure(&args, &url, spawned.as_ref()).await;
    if let Some(spawned) = spawned {
        spawned.stop().await?;
    }
    result
}

async fn measure(args: &LiveArgs, url: &str, spawned: Option<&Spawned>) -> Result<(), AnyError> {
    let database_url = match (&args.database_url, spawned) {
        (Some(url), _) => url.clone(),
        (None, Some(spawned)) => spawned.database_url()?,
        (None, None) => return Err("--database-url is needed without --spawn".into()),
    };
    let server_pid = spawned.and_then(Spawned::pid).or(args.server_pid);
    if let Some(crowd) = args.crowd(url, database_url.clone(), server_pid) {
        let figures = crate::crowd::measure(&crowd).await?;
        println!();
        crate::report::print(&figures, args.json);
        return Ok(());
    }
    let order = {
        let (db, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let row = db.query_one("SELECT id::text FROM orders WHERE number = $1", &[&args.order]).await?;
        drop(db);
        connection.await??;
        row.get::<_, String>(0)
    };
    let target: Arc<str> = Arc::from(format!("order-{order}-details"));
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let prefix: Arc<str> = Arc::from(format!("lt-{nonce}-"));
    let changes = usize::try_from(args.changes)?;
    let sessions = usize::try_from(args.sessions)?;

    // Sign-ins (argon2, slow): one per `sockets_per_signin` sockets, over the accounts in turn.
    let signins = sessions.div_ceil(usize::try_from(args.sockets_per_signin)?);
    let path = format!("/orders/{order}");
    let mut pages = Vec::new();
    for i in 0..signins {
        let email = &args.emails[i % args.emails.len()];
        let page = load_page(url, email, &args.password, &path).await?;
        if i == 0 && !page.hello.contains(&*target) {
            return Err(format!("the page {path} has no live region {target}").into());
        }
        pages.push(Arc::new(page));
    }
    let rss_before = server_pid.and_then(rss_kib);

    let origin = origin_of(url);
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None);
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let plan = SocketPlan {
                url: url.to_owned(),
                origin: origin.clone(),
                page: pages[i % pages.len()].clone(),
                target: target.clone(),
                prefix: prefix.clone(),
                changes,
            };
            tokio::spawn(socket(plan, opening.clone(), ready_tx.clone(), stop_rx.clone()))
        })
        .collect();
    drop(ready_tx);
    let (connected, mut failed) = await_ready(&mut ready_rx, sessions).await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    // Let the server settle after the burst of handshakes before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server_pid.and_then(rss_kib);

    // The changes: plain SQL as the owner, as an ERP integration would write. The writer has a
    // thread and runtime of its own, so the time a COMMIT returned is taken at once, not whenever
    // the socket tasks let it run.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let writer = Writer { database_url, order: order.clone(), prefix: prefix.to_string(), changes, rate: args.rate };
    std::thread::spawn(move || {
        let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(writer.run(go_rx)).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let _ = done_tx.send(result);
    });
    if go_tx.send(()).is_err() {
        return Err("the writer thread ended early".into());
    }
    let (commits, write_seconds) = done_rx.await??;
    stop_tx.send(Some(tokio::time::Instant::now() + Duration::from_secs(args.grace)))?;

    let mut latencies_us = Vec::with_capacity(connected * changes);
    let mut early = 0u64;
    let mut pushes = 0u64;
    let mut closes: std::collections::BTreeMap<u16, u64> = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    let mut incomplete = 0u64;
    for task in tasks {
        let outcome = task.await?;
        pushes += outcome.pushes;
        if let Some(code) = outcome.closed_by_server {
            *closes.entry(code).or_default() += 1;
        }
        if let Some(e) = outcome.error {
            errors.push(e);
        }
        let mut all = true;
        for (n, received) in outcome.received.iter().enumerate() {
            match received {
                Some(at) => match at.checked_duration_since(commits[n]) {
                    Some(latency) => latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
                    None => {
                        // Pushed before the writer saw its COMMIT return.
                        early += 1;
                        latencies_us.push(0);
                    }
                },
                None => all = false,
            }
        }
        if !all {
            incomplete += 1;
        }
    }
    latencies_us.sort_unstable();
    let delivered = latencies_us.len();
    let expected = connected * changes;
    let (p50, p90, p99) =
        (percentile(&latencies_us, 50.0), percentile(&latencies_us, 90.0), percentile(&latencies_us, 99.0));
    let max = latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0;
    let rss_mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    let per_session_kib = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => Some((after as f64 - before as f64) / connected as f64),
        _ => None,
    };
    let rate = changes as f64 / write_seconds;
    failed.truncate(5);
    errors.truncate(5);
    if args.json {
        let report = serde_json::json!({
            "benchmark": "live", "sessions": sessions, "signins": signins, "connected": connected,
            "connect_seconds": connect_seconds, "changes": changes, "rate": rate,
            "delivered": delivered, "expected": expected, "early": early, "incomplete_sockets": incomplete,
            "pushes": pushes, "closed_by_server": closes, "latency_ms": { "p50": p50, "p90": p90, "p99": p99, "max": max },
            "server_pid": server_pid, "rss_mib": { "before": rss_mib(rss_before), "after": rss_mib(rss_after) },
            "rss_kib_per_session": per_session_kib, "failures": failed, "errors": errors,
        });
        println!("{report}");
    } else {
        let show = |v: Option<f64>, digits: usize| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"));
        println!(
            "| sessions | sign-ins | connected | changes | changes/s | delivered / expected | p50 ms | p90 ms | p99 ms | max ms | RSS before MiB | RSS after MiB | KiB / session |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {sessions} | {signins} | {connected} | {changes} | {rate:.1} | {delivered} / {expected} ({:.2} %) | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} | {} | {} | {} |",
            if expected == 0 { 0.0 } else { 100.0 * delivered as f64 / expected as f64 },
            show(rss_mib(rss_before), 1),
            show(rss_mib(rss_after), 1),
            show(per_session_kib, 1),
        );
        println!();
        println!(
            "connect {connect_seconds:.1} s; pushes received {pushes}; pushed before COMMIT returned {early}; \
             sockets missing a change {incomplete}; closed by server {closes:?}; server pid {}; \
             regions per hello {:?}",
            server_pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            pages.first().map(|p| p.regions.clone()).unwrap_or_default()
        );
        if !failed.is_empty() {
            println!("failed to connect (first 5): {failed:?}");
        }
        if !errors.is_empty() {
            println!("socket errors (first 5): {errors:?}");
        }
    }
    if connected < sessions || delivered < expected {
        return Err(format!("{connected}/{sessions} connected, {delivered}/{expected} delivered").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_and_not_confused() {
        let html = format!("<p>{}</p><p>{}</p><p>lt-1-12</p>", marker("lt-1-", 1), marker("lt-1-", 10));
        assert_eq!(markers_in(&html, "lt-1-"), vec![1, 10]);
    }

    #[test]
    fn pages_give_cursor_and_regions() {
        let html = r#"<body class="x" data-live-cursor="42"><section class="panel" id="order-1-timeline" data-live>
            <div data-live id="order-1-status"></div><div id="plain"></div></body>"#;
        assert_eq!(cursor_in(html), Some(42));
        assert_eq!(regions_in(html), vec!["order-1-timeline".to_owned(), "order-1-status".to_owned()]);
    }
}
