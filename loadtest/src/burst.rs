//! `burst`: K live sockets of one customer follow the same order page; one change to that order
//! is committed from the database, and the time is taken from the instant before COMMIT is sent
//! to the moment the last of the K sockets receives the pushed region. Repeated R times.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::Message;
use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::AnyError;
use crate::live::{OPENING_AT_ONCE, Page, Push, await_ready, load_page, marker, markers_in, open_socket, origin_of};
use crate::report::Figure;

const DEFAULT_URL: &str = "http://127.0.0.1:18090";
const DEMO_PASSWORD: &str = "demo-portal-password";
/// Two accounts of the demo's Acme: one customer, two roles.
const DEMO_ACCOUNTS: [&str; 2] = ["alice@acme.example", "dave@acme.example"];
const DEMO_ORDER: &str = "ORD-1042";
/// How long a round waits for the last delivery after COMMIT.
const ROUND_BUDGET: Duration = Duration::from_secs(10);
/// Quiet time before each commit, so the previous round's acks have settled.
const SETTLE: Duration = Duration::from_millis(300);
/// Quiet time before the first commit, after the burst of handshakes and catch-ups.
const SETTLE_FIRST: Duration = Duration::from_secs(1);

#[derive(Parser)]
pub struct BurstArgs {
    /// The portal (keep it on this machine).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Owner connection to the portal's database, for the change (libpq key/value or URL).
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    pub database_url: String,
    /// Accounts of ONE customer the sign-ins are spread over, round robin (repeat the flag).
    #[arg(long = "email", default_values_t = DEMO_ACCOUNTS.map(str::to_owned))]
    pub emails: Vec<String>,
    #[arg(long, env = "PORTAL_LOADTEST_PASSWORD", default_value = DEMO_PASSWORD)]
    pub password: String,
    /// The order whose page every socket follows.
    #[arg(long, default_value = DEMO_ORDER)]
    pub order: String,
    /// Live sockets on the order's page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sessions: u32,
    /// Sockets sharing one sign-in (one session cookie, like tabs of one browser).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sockets_per_signin: u32,
    /// Changes committed, one at a time, each once the previous one reached every socket.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Bearer token for the portal's /metrics (its PORTAL_METRICS_TOKEN): then the region
    /// renderings per change are counted too.
    #[arg(long, env = "PORTAL_LOADTEST_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// Print one JSON object per figure instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

impl BurstArgs {
    /// Small enough for `all --quick` (a few seconds): 200 sockets, 5 changes.
    pub fn quick(url: String, database_url: String) -> Self {
        BurstArgs {
            url,
            database_url,
            emails: DEMO_ACCOUNTS.map(str::to_owned).to_vec(),
            password: DEMO_PASSWORD.to_owned(),
            order: DEMO_ORDER.to_owned(),
            sessions: 200,
            sockets_per_signin: 50,
            rounds: 5,
            metrics_token: std::env::var("PORTAL_LOADTEST_METRICS_TOKEN").ok(),
            json: false,
        }
    }
}

/// A socket's first receipt of change `round`.
struct Receipt {
    round: usize,
    at: Instant,
}

struct SocketPlan {
    url: String,
    origin: String,
    page: Arc<Page>,
    target: Arc<str>,
    prefix: Arc<str>,
}

/// One live socket: opens, says hello, reports ready on its catch-up push, then reports the first
/// receipt of every change's marker in the target region, until `stop`.
async fn socket(
    plan: SocketPlan,
    opening: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    receipts: mpsc::UnboundedSender<Receipt>,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let permit = opening.acquire_owned().await;
    let opened = open_socket(&plan.url, &plan.origin, &plan.page).await;
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            let message = format!("open: {e}");
            let _ = ready.send(Err(message.clone()));
            return Some(message);
        }
    };
    let mut permit = Some(permit);
    // Rounds below this one have been reported.
    let mut next_round = 0usize;
    let mut error = None;
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = stop.changed() => break,
        };
        // Taken before anything else is done with the frame.
        let at = Instant::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                error = Some(format!("closed by the server: {:?}", frame.map(|f| u16::from(f.code))));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                error = Some(format!("read: {e}"));
                break;
            }
            None => {
                error = Some("the socket ended".to_owned());
                break;
            }
        };
        let push: Push = match serde_json::from_str(&text) {
            Ok(push) => push,
            Err(e) => {
                error = Some(format!("unexpected frame: {e}"));
                break;
            }
        };
        if let Err(e) = ws.send(Message::text(serde_json::json!({"type": "ack", "id": push.id}).to_string())).await {
            error = Some(format!("ack: {e}"));
            break;
        }
        if permit.take().is_some() {
            // The catch-up push: this socket is live.
            let _ = ready.send(Ok(()));
            continue;
        }
        for op in push.ops.iter().filter(|op| op.op == "replace" && *op.target == *plan.target) {
            // The region carries state: showing change n, it reflects every change before it.
            if let Some(newest) = markers_in(&op.html, &plan.prefix).into_iter().max() {
                while next_round <= newest {
                    let _ = receipts.send(Receipt { round: next_round, at });
                    next_round += 1;
                }
            }
        }
    }
    if permit.is_some() {
        let message = error.clone().unwrap_or_else(|| "stopped before catch-up".to_owned());
        let _ = ready.send(Err(message));
    }
    let _ = ws.close(None).await;
    error
}

/// A commit asked of the writer: its marker, and where to answer with the instant before COMMIT
/// was sent and how long COMMIT took to return.
type Job = (String, oneshot::Sender<Result<(Instant, Duration), String>>);

/// Commits each change on a thread and runtime of its own, so the instant before COMMIT is
/// taken at once, not whenever the socket tasks let it run.
fn start_writer(database_url: String, order: String) -> mpsc::UnboundedSender<Job> {
    let (jobs_tx, mut jobs) = mpsc::unbounded_channel::<Job>();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            let connected = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await;
            let (db, connection) = match connected {
                Ok(pair) => pair,
                Err(e) => {
                    while let Some((_, answer)) = jobs.recv().await {
                        let _ = answer.send(Err(format!("writer: {e}")));
                    }
                    return;
                }
            };
            tokio::spawn(connection);
            while let Some((reference, answer)) = jobs.recv().await {
                let committed = async {
                    // Plain SQL as the owner, as an ERP integration would write.
                    db.batch_execute("BEGIN").await?;
                    db.execute("UPDATE orders SET reference = $2 WHERE id = $1::text::uuid", &[&order, &reference])
                        .await?;
                    let before_commit = Instant::now();
                    db.batch_execute("COMMIT").await?;
                    Ok::<_, tokio_postgres::Error>((before_commit, before_commit.elapsed()))
                }
                .await;
                let _ = answer.send(committed.map_err(|e| format!("writer: {e}")));
            }
        });
    });
    jobs_tx
}

/// `portal_live_renders_total` from the portal's /metrics.
async fn renders_total(client: &reqwest::Client, url: &str, token: &str) -> Result<f64, AnyError> {
    let response = client.get(format!("{url}/metrics")).bearer_auth(token).send().await?;
    if !response.status().is_success() {
        return Err(format!("/metrics answered {}", response.status()).into());
    }
    let body = response.text().await?;
    let value = body
        .lines()
        .find_map(|line| line.strip_prefix("portal_live_renders_total "))
        .ok_or("/metrics has no portal_live_renders_total")?;
    Ok(value.trim().parse()?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One round's figures, in ms from the instant before COMMIT.
struct Round {
    first: f64,
    median: f64,
    /// The last socket's receipt, when every socket received the change.
    last: Option<f64>,
    delivered: usize,
    renders: Option<f64>,
    /// How long COMMIT took to return (the WAL flush), in ms.
    commit: f64,
}

pub async fn measure(args: &BurstArgs) -> Result<Vec<Figure>, AnyError> {
    let url = args.url.trim_end_matches('/').to_owned();
    if args.emails.is_empty() {
        return Err("burst needs at least one --email".into());
    }
    let (order, original_reference) = {
        let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let row = db.query_one("SELECT id::text, reference FROM orders WHERE number = $1", &[&args.order]).await?;
        drop(db);
        connection.await??;
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1))
    };
    let target: Arc<str> = Arc::from(format!("order-{order}-details"));
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let prefix: Arc<str> = Arc::from(format!("burst-{nonce}-"));
    let sessions = usize::try_from(args.sessions)?;
    let rounds = usize::try_from(args.rounds)?;

    // Sign-ins (argon2, slow): one per `sockets_per_signin` sockets, over the accounts in turn.
    let signins = sessions.div_ceil(usize::try_from(args.sockets_per_signin)?);
    let path = format!("/orders/{order}");
    let mut pages = Vec::with_capacity(signins);
    for i in 0..signins {
        let email = &args.emails[i % args.emails.len()];
        let page = load_page(&url, email, &args.password, &path).await?;
        if i == 0 && !page.regions.iter().any(|r| *r == *target) {
            return Err(format!("the page {path} has no live region {target}").into());
        }
        pages.push(Arc::new(page));
    }

    let origin = origin_of(&url);
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (receipts_tx, mut receipts) = mpsc::unbounded_channel::<Receipt>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let plan = SocketPlan {
                url: url.clone(),
                origin: origin.clone(),
                page: pages[i % pages.len()].clone(),
                target: target.clone(),
                prefix: prefix.clone(),
            };
            tokio::spawn(socket(plan, opening.clone(), ready_tx.clone(), receipts_tx.clone(), stop_rx.clone()))
        })
        .collect();
    drop((ready_tx, receipts_tx));
    let (connected, mut failed) = await_ready(&mut ready_rx, sessions).await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();

    let metrics = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let writer = start_writer(args.database_url.clone(), order.clone());
    let mut results = Vec::with_capacity(rounds);
    let mut trouble = None;
    if connected < sessions {
        failed.truncate(3);
        // /live checks Origin against the portal's own origin (http://localhost:PORT by default).
        let hint = if failed.iter().any(|e| e.contains("403")) {
            format!(" (is {origin} the portal's origin? use http://localhost:PORT or its PORTAL_PUBLIC_URL)")
        } else {
            String::new()
        };
        trouble = Some(format!("{connected}/{sessions} sockets connected; first failures: {failed:?}{hint}"));
    }
    for round in 0..rounds {
        if trouble.is_some() {
            break;
        }
        tokio::time::sleep(if round == 0 { SETTLE_FIRST } else { SETTLE }).await;
        let renders_before = match &args.metrics_token {
            Some(token) => Some(renders_total(&metrics, &url, token).await?),
            None => None,
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        writer.send((marker(&prefix, round), answer_tx)).map_err(|_| "the writer thread ended")?;
        let (before_commit, commit) = answer_rx.await?.map_err(AnyError::from)?;
        let deadline = tokio::time::Instant::from_std(before_commit) + ROUND_BUDGET;
        let mut latencies = Vec::with_capacity(connected);
        while latencies.len() < connected {
            match tokio::time::timeout_at(deadline, receipts.recv()).await {
                Ok(Some(receipt)) if receipt.round == round => {
                    latencies.push(ms(receipt.at.saturating_duration_since(before_commit)));
                }
                // A late receipt of an earlier round (that round already timed out).
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let renders = match (&args.metrics_token, renders_before) {
            (Some(token), Some(before)) => Some(renders_total(&metrics, &url, token).await? - before),
            _ => None,
        };
        latencies.sort_unstable_by(f64::total_cmp);
        let delivered = latencies.len();
        let result = Round {
            first: latencies.first().copied().unwrap_or(f64::NAN),
            median: median(&mut latencies.clone()),
            last: (delivered == connected).then(|| latencies.last().copied().unwrap_or(f64::NAN)),
            delivered,
            renders,
            commit: ms(commit),
        };
        eprintln!(
            "burst round {}: COMMIT {:.2} ms, first {:.2} ms, median {:.2} ms, last {} ms, delivered {delivered}/{connected}{}",
            round + 1,
            result.commit,
            result.first,
            result.median,
            result.last.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}")),
            result.renders.map_or_else(String::new, |r| format!(", region renders {r}"))
        );
        if delivered < connected {
            trouble = Some(format!("round {}: {delivered}/{connected} sockets received the change", round + 1));
        }
        results.push(result);
    }
    stop_tx.send(true)?;
    let mut socket_errors = Vec::new();
    for task in tasks {
        if let Some(e) = task.await? {
            socket_errors.push(e);
        }
    }
    drop(writer);
    // Put the order back as it was (after the sockets are gone, so nobody is pushed it).
    {
        let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        db.execute("UPDATE orders SET reference = $2 WHERE id = $1::text::uuid", &[&order, &original_reference])
            .await?;
        drop(db);
        connection.await??;
    }
    if !socket_errors.is_empty() {
        let count = socket_errors.len();
        socket_errors.truncate(3);
        eprintln!("burst: {count} sockets ended with an error; the first: {socket_errors:?}");
    }
    if let Some(trouble) = trouble {
        return Err(trouble.into());
    }

    let n = results.len();
    let mut lasts: Vec<f64> = results.iter().filter_map(|r| r.last).collect();
    let worst_last = lasts.iter().copied().fold(f64::NAN, f64::max);
    let mut firsts: Vec<f64> = results.iter().map(|r| r.first).collect();
    let mut medians: Vec<f64> = results.iter().map(|r| r.median).collect();
    let mut commits: Vec<f64> = results.iter().map(|r| r.commit).collect();
    let delivered: usize = results.iter().map(|r| r.delivered).sum();
    let expected = connected * n;
    let k = connected;
    let mut figures = vec![
        Figure::new("burst", format!("commit → last of {k} sockets (median of {n})"), median(&mut lasts), "ms")
            .target("≤ 50 ms for 1,000 sessions of one customer"),
        Figure::new("burst", format!("commit → last of {k} sockets (worst of {n})"), worst_last, "ms"),
        Figure::new("burst", format!("commit → first of {k} sockets (median of {n})"), median(&mut firsts), "ms"),
        Figure::new("burst", format!("commit → median socket of {k} (median of {n})"), median(&mut medians), "ms"),
        Figure::new(
            "burst",
            format!("delivered / expected ({delivered} / {expected})"),
            if expected == 0 { 0.0 } else { 100.0 * delivered as f64 / expected as f64 },
            "%",
        )
        .target("100 %"),
        Figure::new("burst", format!("COMMIT round trip, included above (median of {n})"), median(&mut commits), "ms"),
        Figure::new("burst", format!("connect {k} sockets ({signins} sign-ins)"), connect_seconds, "s"),
    ];
    let mut renders: Vec<f64> = results.iter().filter_map(|r| r.renders).collect();
    if !renders.is_empty() {
        figures.push(
            Figure::new(
                "burst",
                format!("region renders per change, {k} sockets (median of {n})"),
                median(&mut renders),
                "",
            )
            .target("rendered once per class of viewer, not once per socket"),
        );
    }
    Ok(figures)
}

pub async fn run(args: BurstArgs) -> Result<(), AnyError> {
    let figures = measure(&args).await?;
    crate::report::print(&figures, args.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
