//! `limits`: the ceilings of this machine, measured in the same run as the portal's figures so
//! those read as ratios. Two bare programs, in process:
//! - PostgreSQL NOTIFY→LISTEN on a private channel: latency one at a time, then throughput with
//!   the NOTIFYs sent as fast as one connection can (each its own transaction);
//! - a minimal WebSocket broadcast over loopback (tokio + async-tungstenite, both ends in this
//!   process): latency from the send to every client, and memory per idle connection.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tokio::{accept_async_with_config, connect_async_with_config};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio_postgres::AsyncMessage;

use crate::report::Figure;
use crate::{AnyError, percentile};

const BENCHMARK: &str = "limits";
/// How long to wait for the last notifications or frames after the last send.
const GRACE: Duration = Duration::from_secs(5);
/// WebSocket handshakes in progress at once (the listener's backlog is finite).
const OPENING_AT_ONCE: usize = 64;
/// Upper bound on connecting every WebSocket client.
const CONNECT_BUDGET: Duration = Duration::from_secs(60);
/// Lets the process settle after the handshakes before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Parser, Clone, Debug)]
pub struct LimitsArgs {
    /// Owner connection to the PostgreSQL to measure (libpq key/value or URL).
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    pub database_url: String,
    /// NOTIFYs sent one at a time (each waits for its COMMIT) for the latency.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub notifications: u32,
    /// NOTIFYs sent as fast as possible, each its own transaction, for the throughput.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub burst: u32,
    /// NOTIFY statements in flight (pipelined) on the sending connection during the burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub in_flight: u32,
    /// Upper bound on each NOTIFY phase, in seconds: what was sent by then is what counts.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub max_seconds: u64,
    /// WebSocket clients connected to the in-process broadcast server.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=8_000))]
    pub clients: u32,
    /// Messages broadcast to every client.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub messages: u32,
    /// Messages broadcast per second (each to every client: 10/s to 1,000 clients is 10,000 frames/s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// WebSocket read buffer of each end, in KiB: small, as a server with many idle sockets would
    /// set it (tungstenite's default is 128).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub read_buffer_kib: u32,
    /// Print one JSON object per figure instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

impl LimitsArgs {
    /// Small parameters for `all --quick`: a few seconds.
    pub fn quick(database_url: String) -> Self {
        LimitsArgs {
            database_url,
            notifications: 2_000,
            burst: 10_000,
            in_flight: 64,
            max_seconds: 4,
            clients: 1_000,
            messages: 20,
            rate: 10,
            read_buffer_kib: 4,
            json: false,
        }
    }
}

pub async fn run(args: LimitsArgs) -> Result<(), AnyError> {
    let figures = measure(&args).await?;
    crate::report::print(&figures, args.json);
    Ok(())
}

pub async fn measure(args: &LimitsArgs) -> Result<Vec<Figure>, AnyError> {
    let mut figures = notify(args).await?;
    figures.extend(websocket(args).await?);
    Ok(figures)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn share(delivered: usize, expected: usize) -> f64 {
    if expected == 0 { 0.0 } else { 100.0 * delivered as f64 / expected as f64 }
}

/// Resident set size of this process in KiB.
fn own_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// NOTIFY → LISTEN

/// Payloads are `L<n>` (latency phase) or `B<n>` (burst phase).
type Receipt = (u8, u32, Instant);

/// The LISTEN connection, on a thread and runtime of its own so a notification's arrival is
/// timed at once, not whenever the sending side lets a shared runtime get to it.
struct Listener {
    receipts: mpsc::UnboundedReceiver<Receipt>,
    stop: oneshot::Sender<()>,
}

async fn listen(database_url: String, channel: String) -> Result<Listener, AnyError> {
    let (ready_tx, ready_rx) = oneshot::channel::<Result<mpsc::UnboundedReceiver<Receipt>, String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let (client, mut connection) = match tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("LISTEN connection: {e}")));
                    return;
                }
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let pump = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(n) = message {
                        let at = Instant::now();
                        let payload = n.payload();
                        let (Some(phase), Ok(seq)) =
                            (payload.bytes().next(), payload.get(1..).unwrap_or("").parse::<u32>())
                        else {
                            continue;
                        };
                        if tx.send((phase, seq, at)).is_err() {
                            break;
                        }
                    }
                }
            });
            if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                let _ = ready_tx.send(Err(format!("LISTEN: {e}")));
                return;
            }
            if ready_tx.send(Ok(rx)).is_err() {
                return;
            }
            let _ = stop_rx.await;
            drop(client);
            pump.abort();
        });
    });
    let receipts = ready_rx.await.map_err(|_| "the LISTEN thread ended early")??;
    Ok(Listener { receipts, stop: stop_tx })
}

/// Waits for phase `phase`'s notifications until every one sent arrived or `GRACE` passed;
/// returns the arrival of each by sequence number.
async fn collect(listener: &mut Listener, phase: u8, sent: usize) -> Vec<Option<Instant>> {
    let mut arrived = vec![None; sent];
    let mut delivered = 0usize;
    let until = tokio::time::Instant::now() + GRACE;
    while delivered < sent {
        match tokio::time::timeout_at(until, listener.receipts.recv()).await {
            Ok(Some((p, seq, at))) if p == phase => {
                if let Some(slot) = arrived.get_mut(seq as usize)
                    && slot.is_none()
                {
                    *slot = Some(at);
                    delivered += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    arrived
}

async fn notify(args: &LimitsArgs) -> Result<Vec<Figure>, AnyError> {
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let channel = format!("portal_loadtest_{}_{nonce}", std::process::id());
    let mut listener = listen(args.database_url.clone(), channel.clone()).await?;
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    // Extended protocol: each execution ends with its own Sync, so each is its own transaction.
    let statement = client.prepare("SELECT pg_notify($1, $2)").await?;
    let max = Duration::from_secs(args.max_seconds);

    // Latency: one at a time, each sent once the previous COMMIT returned.
    let cap = Instant::now() + max;
    let mut sent_at = Vec::with_capacity(args.notifications as usize);
    for n in 0..args.notifications {
        if Instant::now() > cap {
            break;
        }
        let payload = format!("L{n}");
        sent_at.push(Instant::now());
        client.execute(&statement, &[&channel, &payload]).await?;
    }
    let arrived = collect(&mut listener, b'L', sent_at.len()).await;
    let mut latencies: Vec<u64> = sent_at
        .iter()
        .zip(&arrived)
        .filter_map(|(sent, at)| at.map(|at| micros(at.saturating_duration_since(*sent))))
        .collect();
    latencies.sort_unstable();
    let one_at_a_time = (latencies.len(), sent_at.len());

    // Throughput: as fast as one connection goes, `in_flight` statements pipelined.
    let cap = Instant::now() + max;
    let started = Instant::now();
    let mut sent = 0usize;
    {
        let mut pending = FuturesUnordered::new();
        let mut next = 0u32;
        loop {
            while pending.len() < args.in_flight as usize && next < args.burst && Instant::now() < cap {
                let payload = format!("B{next}");
                let (client, statement, channel) = (&client, &statement, &channel);
                pending.push(async move { client.execute(statement, &[channel, &payload]).await });
                next += 1;
            }
            match pending.next().await {
                Some(result) => {
                    result?;
                    sent += 1;
                }
                None => break,
            }
        }
    }
    let committed = started.elapsed().as_secs_f64();
    let arrived = collect(&mut listener, b'B', sent).await;
    let burst_delivered = arrived.iter().flatten().count();
    let last = arrived.iter().flatten().max().copied();
    let burst_seconds = last.map_or(committed, |last| last.saturating_duration_since(started).as_secs_f64());
    let _ = listener.stop.send(());
    drop(client);
    let _ = connection.await;

    let (delivered, expected) = one_at_a_time;
    let ms = |us: Option<&u64>| us.copied().unwrap_or(0) as f64 / 1000.0;
    Ok(vec![
        Figure::new(
            BENCHMARK,
            format!("NOTIFY→LISTEN p50, one at a time ({expected} sent)"),
            percentile(&latencies, 50.0),
            "ms",
        ),
        Figure::new(BENCHMARK, "NOTIFY→LISTEN p99, one at a time", percentile(&latencies, 99.0), "ms")
            .target("reference p99 0.5 ms (bare program, PostgreSQL 15)"),
        Figure::new(BENCHMARK, "NOTIFY→LISTEN max, one at a time", ms(latencies.last()), "ms"),
        Figure::new(
            BENCHMARK,
            format!("NOTIFY→LISTEN delivered ({delivered} of {expected})"),
            share(delivered, expected),
            "%",
        )
        .target("100 %"),
        Figure::new(
            BENCHMARK,
            format!(
                "NOTIFY throughput: first send → last LISTEN receipt, {} in flight, each its own transaction",
                args.in_flight
            ),
            if burst_seconds > 0.0 { burst_delivered as f64 / burst_seconds } else { 0.0 },
            "/s",
        )
        .target("reference 15–23k/s in small transactions of their own (DESIGN.md)"),
        Figure::new(
            BENCHMARK,
            format!("NOTIFY throughput delivered ({burst_delivered} of {sent})"),
            share(burst_delivered, sent),
            "%",
        )
        .target("100 %"),
    ])
}

// ---------------------------------------------------------------------------------------------
// WebSocket broadcast over loopback

/// One server end: forwards every broadcast message until the client closes or the broadcast ends.
async fn serve(stream: tokio::net::TcpStream, mut rx: broadcast::Receiver<Message>, config: WebSocketConfig) {
    let Ok(mut ws) = accept_async_with_config(stream, Some(config)).await else { return };
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Ok(message) => {
                    if ws.send(message).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.close(None).await;
}

/// What one client saw: each message's sequence number and arrival.
#[derive(Default)]
struct ClientOutcome {
    received: Vec<(u32, Instant)>,
    error: Option<String>,
}

async fn client(
    url: String,
    config: WebSocketConfig,
    messages: u32,
    opening: std::sync::Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> ClientOutcome {
    let mut outcome = ClientOutcome::default();
    let permit = opening.acquire_owned().await;
    let mut ws = match connect_async_with_config(url, Some(config)).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            outcome.error = Some(e.to_string());
            return outcome;
        }
    };
    drop(permit);
    let _ = ready.send(Ok(()));
    while outcome.received.len() < messages as usize {
        tokio::select! {
            message = ws.next() => {
                let at = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(seq) = text.parse::<u32>() {
                            outcome.received.push((seq, at));
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        outcome.error = Some(e.to_string());
                        break;
                    }
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
    outcome
}

async fn websocket(args: &LimitsArgs) -> Result<Vec<Figure>, AnyError> {
    let config = WebSocketConfig::default().read_buffer_size(args.read_buffer_kib as usize * 1024);
    let messages = args.messages as usize;
    // Room for every message, so no receiver ever lags; allocated before memory is read.
    let (tx, _) = broadcast::channel::<Message>(messages + 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    let rss_before = own_rss_kib();

    let accepting = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, tx.subscribe(), config));
            }
        })
    };

    let opening = std::sync::Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(client(url.clone(), config, args.messages, opening.clone(), ready_tx.clone(), stop_rx.clone()))
        })
        .collect();
    drop(ready_tx);
    let mut connected = 0usize;
    let mut failed = 0usize;
    let budget = tokio::time::Instant::now() + CONNECT_BUDGET;
    while connected + failed < clients.len() {
        match tokio::time::timeout_at(budget, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => connected += 1,
            Ok(Some(Err(_))) => failed += 1,
            Ok(None) | Err(_) => break,
        }
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = own_rss_kib();

    // One unmeasured message first, so the first write of every socket (buffers, wake-ups) does
    // not count as the latency of message 0; clients ignore it (it is not a number).
    let _ = tx.send(Message::text("warm-up"));
    tokio::time::sleep(SETTLE).await;
    // The broadcast, at the rate asked; every message is the send's sequence number.
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut sent_at = Vec::with_capacity(messages);
    for n in 0..args.messages {
        tokio::time::sleep_until(started + interval * n).await;
        sent_at.push(Instant::now());
        let _ = tx.send(Message::text(n.to_string()));
    }
    let timer = tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        let _ = stop_tx.send(true);
    });
    let mut latencies = Vec::with_capacity(connected * messages);
    // When the last client received each message: the time a broadcast takes to reach everyone.
    let mut last: Vec<Option<Instant>> = vec![None; messages];
    let mut errors = 0usize;
    for task in clients {
        let outcome = task.await?;
        errors += usize::from(outcome.error.is_some());
        for (seq, at) in outcome.received {
            if let Some(sent) = sent_at.get(seq as usize) {
                latencies.push(micros(at.saturating_duration_since(*sent)));
            }
            if let Some(slot) = last.get_mut(seq as usize) {
                *slot = Some(slot.map_or(at, |seen| seen.max(at)));
            }
        }
    }
    let mut everyone: Vec<u64> = sent_at
        .iter()
        .zip(&last)
        .filter_map(|(sent, at)| at.map(|at| micros(at.saturating_duration_since(*sent))))
        .collect();
    everyone.sort_unstable();
    timer.abort();
    drop(tx);
    accepting.abort();
    latencies.sort_unstable();
    let delivered = latencies.len();
    let expected = connected * messages;
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => Some((after as f64 - before as f64) / connected as f64),
        _ => None,
    };
    let what =
        format!("{connected} clients, {} msg/s = {} frames/s", args.rate, connected as u64 * u64::from(args.rate));
    let mut figures = vec![
        Figure::new(BENCHMARK, format!("WS broadcast send→client p50 ({what})"), percentile(&latencies, 50.0), "ms"),
        Figure::new(BENCHMARK, format!("WS broadcast send→client p99 ({what})"), percentile(&latencies, 99.0), "ms")
            .target("context: bare UPDATE→…→WebSocket p99 ≈ 1 ms at 1,000 events/s over 10,000 sockets"),
        Figure::new(
            BENCHMARK,
            format!("WS broadcast send→last of the {connected} clients, median over {} messages", everyone.len()),
            percentile(&everyone, 50.0),
            "ms",
        )
        .target("context: portal burst target, one change to 1,000 sessions within 50 ms"),
        Figure::new(
            BENCHMARK,
            format!("WS broadcast send→last of the {connected} clients, slowest message"),
            everyone.last().copied().unwrap_or(0) as f64 / 1000.0,
            "ms",
        ),
        Figure::new(
            BENCHMARK,
            format!("WS broadcast delivered ({delivered} of {expected}; {failed} failed to connect, {errors} errors)"),
            share(delivered, expected),
            "%",
        )
        .target("100 %"),
    ];
    if let Some(kib) = per_connection {
        figures.push(
            Figure::new(
                BENCHMARK,
                format!(
                    "memory per idle WS connection, both ends in this process (RSS delta / {connected}, read buffer {} KiB)",
                    args.read_buffer_kib
                ),
                kib,
                "KiB",
            )
            .target("reference 7–15 KiB small buffers, ≈137 KiB tungstenite defaults (server end only)"),
        );
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn arguments_are_bounded() {
        LimitsArgs::command().debug_assert();
        let args = LimitsArgs::try_parse_from(["limits", "--database-url", "x"]).unwrap();
        assert_eq!((args.clients, args.rate, args.read_buffer_kib), (1_000, 10, 4));
        assert!(LimitsArgs::try_parse_from(["limits", "--database-url", "x", "--clients", "0"]).is_err());
        assert!(LimitsArgs::try_parse_from(["limits", "--database-url", "x", "--clients", "8001"]).is_err());
    }

    #[test]
    fn quick_stays_small() {
        let quick = LimitsArgs::quick("x".to_owned());
        assert!(quick.clients <= 2_000 && quick.max_seconds <= 5);
        assert!(f64::from(quick.messages) / f64::from(quick.rate) <= 3.0);
    }

    #[test]
    fn shares_are_percentages() {
        assert_eq!(share(5, 10), 50.0);
        assert_eq!(share(0, 0), 0.0);
    }
}
