//! What `setup --customers` leaves for `live --sessions-file` and `baseline`: one line per
//! minted session, `customer_id user_id order_id cookie`, and the client side both use: each
//! session's page loaded with its cookie, and lean live sockets (4 KiB read buffers) on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tokio::connect_async_with_config;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::AnyError;
use crate::live::{Push, markers_in};

/// One minted session: whose it is, the order page it follows, and its `Cookie` header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLine {
    pub customer: String,
    pub user: String,
    pub order: String,
    /// `name=value`, ready for a `Cookie` header.
    pub cookie: String,
}

impl SessionLine {
    pub fn to_line(&self) -> String {
        format!("{} {} {} {}", self.customer, self.user, self.order, self.cookie)
    }
}

/// Parses a sessions file: one `customer_id user_id order_id cookie` per line; blank lines and
/// lines starting with `#` are skipped. A cookie without `=` is taken as the value of
/// `portal_session`.
pub fn parse_sessions(text: &str) -> Result<Vec<SessionLine>, String> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [customer, user, order, cookie] = fields[..] else {
            return Err(format!(
                "line {}: expected 4 fields (customer_id user_id order_id cookie), got {}",
                i + 1,
                fields.len()
            ));
        };
        let cookie = if cookie.contains('=') { cookie.to_owned() } else { format!("portal_session={cookie}") };
        lines.push(SessionLine {
            customer: customer.to_owned(),
            user: user.to_owned(),
            order: order.to_owned(),
            cookie,
        });
    }
    Ok(lines)
}

pub fn read_sessions(path: &std::path::Path) -> Result<Vec<SessionLine>, AnyError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(parse_sessions(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// `sessions` sockets over the first `customers` customers of the file (in the file's order),
/// round robin over the customers and, within each, over its sessions (more sockets than
/// sessions: several tabs of one session). Returns the lines, one per socket.
pub fn spread(lines: &[SessionLine], customers: usize, sessions: usize) -> Result<Vec<SessionLine>, String> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_customer: HashMap<&str, Vec<&SessionLine>> = HashMap::new();
    for line in lines {
        let entry = by_customer.entry(&line.customer).or_default();
        if entry.is_empty() {
            order.push(&line.customer);
        }
        entry.push(line);
    }
    if order.len() < customers {
        return Err(format!("the sessions file has {} customers, {customers} asked", order.len()));
    }
    if customers == 0 {
        return Err("at least one customer is needed".to_owned());
    }
    Ok((0..sessions)
        .map(|j| {
            let of = &by_customer[order[j % customers]];
            of[(j / customers) % of.len()].clone()
        })
        .collect())
}

/// One session's order page as its browser loaded it: the hello its socket says.
pub struct LoadedPage {
    pub hello: String,
    pub regions: Vec<String>,
}

/// A client for many sessions: no cookie store (each request carries its session's cookie),
/// no redirects (a redirect to sign-in is an error, not a page).
pub fn http_client(pool: usize) -> Result<reqwest::Client, AnyError> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// GET `path` with the session's cookie; the body when it answered 200.
pub async fn get_page(client: &reqwest::Client, url: &str, path: &str, cookie: &str) -> Result<String, String> {
    let response = client
        .get(format!("{url}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return Err(format!("GET {path} answered {status} {location}"));
    }
    response.text().await.map_err(|e| format!("GET {path}: {e}"))
}

/// Loads every line's order page (`at_once` in flight), as each browser would before opening
/// its socket. Pages are loaded once per distinct (cookie, order).
pub async fn load_pages(
    url: &str,
    lines: &[SessionLine],
    at_once: usize,
) -> Result<(Vec<Arc<LoadedPage>>, usize), AnyError> {
    let client = http_client(at_once)?;
    let mut distinct: HashMap<(String, String), usize> = HashMap::new();
    let mut index = Vec::with_capacity(lines.len());
    let mut todo = Vec::new();
    for line in lines {
        let key = (line.cookie.clone(), line.order.clone());
        let next = distinct.len();
        let i = *distinct.entry(key).or_insert_with(|| {
            todo.push(line.clone());
            next
        });
        index.push(i);
    }
    let gate = Arc::new(Semaphore::new(at_once));
    let mut tasks = Vec::with_capacity(todo.len());
    for line in todo {
        let (client, gate, url) = (client.clone(), gate.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let html = get_page(&client, &url, &format!("/orders/{}", line.order), &line.cookie).await?;
            let cursor = crate::live::cursor_in(&html).ok_or("the order page has no data-live-cursor")?;
            let regions = crate::live::regions_in(&html);
            let hello = serde_json::json!({"type": "hello", "cursor": cursor, "regions": regions}).to_string();
            Ok::<_, String>(LoadedPage { hello, regions })
        }));
    }
    let loads = tasks.len();
    let mut pages = Vec::with_capacity(loads);
    for task in tasks {
        pages.push(Arc::new(task.await?.map_err(|e| format!("loading the order pages: {e}"))?));
    }
    Ok((index.into_iter().map(|i| pages[i].clone()).collect(), loads))
}

/// A socket's first sight of a newer marker in its order's details region.
pub struct Receipt {
    pub socket: u32,
    pub change: u32,
    pub at: Instant,
}

/// How a socket ended.
#[derive(Default)]
pub struct SocketEnd {
    pub pushes: u64,
    /// Ops for a region this socket's page does not have (another page's, another customer's).
    pub stray_ops: u64,
    pub closed_by_server: Option<u16>,
    pub error: Option<String>,
}

pub struct SocketPlan {
    pub index: u32,
    pub url: Arc<str>,
    pub origin: Arc<str>,
    pub cookie: String,
    pub page: Arc<LoadedPage>,
    /// `order-<id>-details`, the region the changes show in.
    pub target: String,
    pub prefix: Arc<str>,
}

/// Read buffer per client socket: the pushes here are a few KiB; tungstenite's default 128 KiB
/// on 10,000 sockets would be 1.3 GB of client memory on the machine being measured.
const READ_BUFFER: usize = 4 * 1024;

/// One lean live socket: opens with the session's cookie and the portal's Origin, says its
/// page's hello, acks every push, reports ready on the catch-up push, then a receipt whenever
/// its details region shows a newer marker; until `stop`.
pub async fn socket(
    plan: SocketPlan,
    opening: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    receipts: mpsc::UnboundedSender<Receipt>,
    mut stop: watch::Receiver<bool>,
) -> SocketEnd {
    let mut end = SocketEnd::default();
    let permit = opening.acquire_owned().await;
    let opened = async {
        let mut request = format!("{}/live", plan.url.replacen("http", "ws", 1)).into_client_request()?;
        request.headers_mut().insert("cookie", HeaderValue::from_str(&plan.cookie)?);
        request.headers_mut().insert("origin", HeaderValue::from_str(&plan.origin)?);
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).write_buffer_size(0);
        let (mut ws, _) = connect_async_with_config(request, Some(config)).await?;
        ws.send(Message::text(plan.page.hello.clone())).await?;
        Ok::<_, AnyError>(ws)
    }
    .await;
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            let message = format!("open: {e}");
            let _ = ready.send(Err(message.clone()));
            end.error = Some(message);
            return end;
        }
    };
    let mut permit = Some(permit);
    let mut newest: Option<usize> = None;
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = stop.changed() => break,
        };
        let at = Instant::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                end.closed_by_server = Some(frame.map_or(1005, |f| u16::from(f.code)));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                end.closed_by_server = Some(1006);
                end.error = Some(format!("read: {e}"));
                break;
            }
            None => {
                end.closed_by_server = Some(1006);
                break;
            }
        };
        let push: Push = match serde_json::from_str(&text) {
            Ok(push) => push,
            Err(e) => {
                end.error = Some(format!("unexpected frame: {e}"));
                break;
            }
        };
        if let Err(e) = ws.send(Message::text(format!(r#"{{"type":"ack","id":{}}}"#, push.id))).await {
            end.error = Some(format!("ack: {e}"));
            break;
        }
        end.pushes += 1;
        if permit.take().is_some() {
            let _ = ready.send(Ok(()));
        }
        for op in &push.ops {
            if !plan.page.regions.contains(&op.target) {
                end.stray_ops += 1;
                continue;
            }
            if op.op != "replace" || op.target != plan.target {
                continue;
            }
            // The region carries state: showing change n, it reflects every earlier change.
            if let Some(n) = markers_in(&op.html, &plan.prefix).into_iter().max()
                && newest.is_none_or(|seen| n > seen)
            {
                newest = Some(n);
                let _ = receipts.send(Receipt { socket: plan.index, change: u32::try_from(n).unwrap_or(u32::MAX), at });
            }
        }
    }
    if permit.is_some() {
        let message = end.error.clone().unwrap_or_else(|| format!("closed {:?} before catch-up", end.closed_by_server));
        let _ = ready.send(Err(message));
    }
    let _ = ws.close(None).await;
    end
}

/// Deterministic pseudo-random numbers (xorshift64*): the same changes every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(x % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

/// The changes of a run and who should see each. `orders[k]` is a watched order, `watchers[k]`
/// the sockets on its page; change n updates `orders[plan[n]]`.
pub struct ChangePlan {
    pub orders: Vec<String>,
    pub watchers: Vec<Vec<u32>>,
    pub plan: Vec<usize>,
    /// For each order, its change numbers in increasing order.
    pub changes_of: Vec<Vec<u32>>,
    /// Which order each socket watches.
    pub order_of_socket: Vec<usize>,
}

impl ChangePlan {
    /// `changes` changes, each to a random customer (uniform over the customers of the run), and
    /// within it to the order one of its sockets, chosen at random, is watching (so busier
    /// orders, watched by more sockets, change more often, as an ERP's would not care).
    pub fn new(sockets: &[SessionLine], changes: usize, seed: u64) -> ChangePlan {
        let mut order_index: HashMap<&str, usize> = HashMap::new();
        let mut orders = Vec::new();
        let mut watchers: Vec<Vec<u32>> = Vec::new();
        let mut customers: Vec<&str> = Vec::new();
        let mut sockets_of: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut order_of_socket = Vec::with_capacity(sockets.len());
        for (i, line) in sockets.iter().enumerate() {
            let k = *order_index.entry(&line.order).or_insert_with(|| {
                orders.push(line.order.clone());
                watchers.push(Vec::new());
                orders.len() - 1
            });
            watchers[k].push(u32::try_from(i).unwrap_or(u32::MAX));
            order_of_socket.push(k);
            let of = sockets_of.entry(&line.customer).or_default();
            if of.is_empty() {
                customers.push(&line.customer);
            }
            of.push(k);
        }
        let mut rng = Rng::new(seed);
        let plan: Vec<usize> = (0..changes)
            .map(|_| {
                let of = &sockets_of[customers[rng.below(customers.len())]];
                of[rng.below(of.len())]
            })
            .collect();
        let mut changes_of = vec![Vec::new(); orders.len()];
        for (n, &k) in plan.iter().enumerate() {
            changes_of[k].push(u32::try_from(n).unwrap_or(u32::MAX));
        }
        ChangePlan { orders, watchers, plan, changes_of, order_of_socket }
    }

    /// Deliveries the run should make: every change at every socket watching its order.
    pub fn expected(&self) -> usize {
        self.plan.iter().map(|&k| self.watchers[k].len()).sum()
    }
}

/// Turns receipts into deliveries: a socket showing change m has every change of its order up
/// to m, from just after the newest one it showed before.
#[derive(Default)]
pub struct Deliveries {
    /// (change, socket, when).
    pub seen: Vec<(u32, u32, Instant)>,
    newest: HashMap<u32, u32>,
}

impl Deliveries {
    /// Records a receipt; returns how many deliveries it made.
    pub fn add(&mut self, plan: &ChangePlan, receipt: &Receipt) -> usize {
        let Some(&k) = plan.order_of_socket.get(receipt.socket as usize) else { return 0 };
        let mine = &plan.changes_of[k];
        let from = match self.newest.get(&receipt.socket) {
            Some(&seen) => mine.partition_point(|&n| n <= seen),
            None => 0,
        };
        let to = mine.partition_point(|&n| n <= receipt.change);
        if to <= from {
            return 0;
        }
        for &n in &mine[from..to] {
            self.seen.push((n, receipt.socket, receipt.at));
        }
        self.newest.insert(receipt.socket, receipt.change);
        to - from
    }
}

/// The sockets of a run, open and ready.
pub struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<SocketEnd>>,
    stop: watch::Sender<bool>,
    pub receipts: mpsc::UnboundedReceiver<Receipt>,
    pub connected: usize,
    pub failed: Vec<String>,
    pub connect_seconds: f64,
}

/// What the sockets said when they were closed.
#[derive(Default)]
pub struct FleetEnd {
    pub pushes: u64,
    pub stray_ops: u64,
    pub closed_by_server: std::collections::BTreeMap<u16, u64>,
    pub errors: Vec<String>,
}

impl Fleet {
    /// Opens one socket per line (with its page's hello), `OPENING_AT_ONCE` handshakes at a
    /// time, and waits until each has its catch-up push or failed.
    pub async fn open(url: &str, lines: &[SessionLine], pages: &[Arc<LoadedPage>], prefix: &str) -> Fleet {
        let origin: Arc<str> = Arc::from(crate::live::origin_of(url));
        let url: Arc<str> = Arc::from(url);
        let prefix: Arc<str> = Arc::from(prefix);
        let opening = Arc::new(Semaphore::new(crate::live::OPENING_AT_ONCE));
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let (receipts_tx, receipts) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let started = Instant::now();
        let tasks: Vec<_> = lines
            .iter()
            .zip(pages)
            .enumerate()
            .map(|(i, (line, page))| {
                let plan = SocketPlan {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    url: url.clone(),
                    origin: origin.clone(),
                    cookie: line.cookie.clone(),
                    page: page.clone(),
                    target: format!("order-{}-details", line.order),
                    prefix: prefix.clone(),
                };
                tokio::spawn(socket(plan, opening.clone(), ready_tx.clone(), receipts_tx.clone(), stop_rx.clone()))
            })
            .collect();
        drop((ready_tx, receipts_tx));
        let (connected, failed) = crate::live::await_ready(&mut ready_rx, lines.len()).await;
        Fleet { tasks, stop, receipts, connected, failed, connect_seconds: started.elapsed().as_secs_f64() }
    }

    pub async fn close(self) -> Result<FleetEnd, AnyError> {
        let _ = self.stop.send(true);
        let mut end = FleetEnd::default();
        for task in self.tasks {
            let socket = task.await?;
            end.pushes += socket.pushes;
            end.stray_ops += socket.stray_ops;
            if let Some(code) = socket.closed_by_server {
                *end.closed_by_server.entry(code).or_default() += 1;
            }
            if let Some(e) = socket.error
                && end.errors.len() < 5
            {
                end.errors.push(e);
            }
        }
        Ok(end)
    }
}

/// What the writers did: when each change's COMMIT returned (by change number), and when the
/// first and last were due.
pub struct Written {
    pub commits: Vec<Option<Instant>>,
    pub seconds: f64,
}

/// Commits the plan's changes at `rate` per second as an ERP would: plain `UPDATE orders`,
/// autocommit, as the owner, over `writers` connections (each order always through the same
/// one, so an order's changes commit in order). On a thread and runtime of their own, so the
/// time a COMMIT returned is taken at once, not whenever the socket tasks let it run.
pub fn start_writers(
    database_url: String,
    plan: &ChangePlan,
    prefix: String,
    rate: f64,
    writers: usize,
) -> tokio::sync::oneshot::Receiver<Result<Written, String>> {
    let writers = writers.max(1);
    let mut jobs: Vec<Vec<(usize, String)>> = vec![Vec::new(); writers];
    for (n, &k) in plan.plan.iter().enumerate() {
        jobs[k % writers].push((n, plan.orders[k].clone()));
    }
    let changes = plan.plan.len();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(write_all(database_url, jobs, prefix, rate, changes)),
            Err(e) => Err(e.to_string()),
        };
        let _ = done_tx.send(result);
    });
    done_rx
}

async fn write_all(
    database_url: String,
    jobs: Vec<Vec<(usize, String)>>,
    prefix: String,
    rate: f64,
    changes: usize,
) -> Result<Written, String> {
    let mut clients = Vec::with_capacity(jobs.len());
    for _ in 0..jobs.len() {
        let (db, connection) =
            tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.map_err(|e| format!("writer: {e}"))?;
        tokio::spawn(connection);
        let update = db
            .prepare("UPDATE orders SET reference = $2 WHERE id = $1::text::uuid")
            .await
            .map_err(|e| format!("writer: {e}"))?;
        clients.push((db, update));
    }
    let started = Instant::now();
    let start = tokio::time::Instant::from_std(started);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(jobs)
        .map(|((db, update), jobs)| {
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut commits = Vec::with_capacity(jobs.len());
                for (n, order) in jobs {
                    // Change n is due n / rate seconds after the start; a late writer catches up.
                    tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
                    db.execute(&update, &[&order, &crate::live::marker(&prefix, n)])
                        .await
                        .map_err(|e| format!("writer: {e}"))?;
                    commits.push((n, Instant::now()));
                }
                Ok::<_, String>(commits)
            })
        })
        .collect();
    let mut commits = vec![None; changes];
    for task in tasks {
        for (n, at) in task.await.map_err(|e| e.to_string())?? {
            commits[n] = Some(at);
        }
    }
    Ok(Written { commits, seconds: started.elapsed().as_secs_f64() })
}

/// The latencies (µs, sorted) of the deliveries, from each change's COMMIT returning; and how
/// many arrived before the writer saw their COMMIT return (counted as 0).
pub fn latencies(deliveries: &Deliveries, commits: &[Option<Instant>]) -> (Vec<u64>, u64) {
    let mut early = 0;
    let mut out: Vec<u64> = deliveries
        .seen
        .iter()
        .filter_map(|&(n, _, at)| {
            let commit = commits.get(n as usize).copied().flatten()?;
            Some(match at.checked_duration_since(commit) {
                Some(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
                None => {
                    early += 1;
                    0
                }
            })
        })
        .collect();
    out.sort_unstable();
    (out, early)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(customer: &str, user: &str, order: &str) -> SessionLine {
        SessionLine {
            customer: customer.to_owned(),
            user: user.to_owned(),
            order: order.to_owned(),
            cookie: format!("portal_session={user}"),
        }
    }

    #[test]
    fn sessions_files_parse_and_refuse_short_lines() {
        let text = "# customer user order cookie\n\nc1 u1 o1 portal_session=abc\nc1 u2 o1 def\n";
        let lines = parse_sessions(text).unwrap_or_default();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].cookie, "portal_session=abc");
        assert_eq!(lines[1].cookie, "portal_session=def");
        assert_eq!(parse_sessions(&lines[0].to_line()).unwrap_or_default(), vec![lines[0].clone()]);
        assert!(parse_sessions("c1 u1 o1\n").is_err());
    }

    #[test]
    fn sockets_spread_over_customers_then_sessions() {
        let lines = [line("a", "a1", "x"), line("a", "a2", "y"), line("b", "b1", "z"), line("c", "c1", "w")];
        let s = spread(&lines, 2, 5).unwrap_or_default();
        let users: Vec<&str> = s.iter().map(|l| l.user.as_str()).collect();
        assert_eq!(users, ["a1", "b1", "a2", "b1", "a1"]);
        assert!(spread(&lines, 4, 1).is_err());
    }

    #[test]
    fn receipts_deliver_every_change_of_the_order_up_to_the_marker() {
        let sockets = [line("a", "a1", "x"), line("a", "a2", "x"), line("b", "b1", "z")];
        let plan = ChangePlan::new(&sockets, 50, 7);
        assert_eq!(plan.plan.len(), 50);
        let expected: usize = plan.plan.iter().map(|&k| if plan.orders[k] == "x" { 2 } else { 1 }).sum();
        assert_eq!(plan.expected(), expected);
        let x = plan.order_of_socket[0];
        let of_x = plan.changes_of[x].clone();
        assert!(of_x.len() >= 2, "{of_x:?}");
        let mut d = Deliveries::default();
        let at = Instant::now();
        // Socket 0 first shows x's second change: it has the first two.
        assert_eq!(d.add(&plan, &Receipt { socket: 0, change: of_x[1], at }), 2);
        // An older marker adds nothing; the last one adds the rest.
        assert_eq!(d.add(&plan, &Receipt { socket: 0, change: of_x[0], at }), 0);
        let last = *of_x.last().unwrap_or(&0);
        assert_eq!(d.add(&plan, &Receipt { socket: 0, change: last, at }), of_x.len() - 2);
        assert_eq!(d.seen.len(), of_x.len());
    }

    #[test]
    fn rng_stays_in_range_and_repeats() {
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..1000 {
            let x = a.below(7);
            assert!(x < 7);
            assert_eq!(x, b.below(7));
        }
    }
}
