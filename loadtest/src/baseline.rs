//! `baseline`: what the same freshness costs without push. The same S sessions (from `setup
//! --customers`) first poll their order page every `--interval` seconds (a portal without push:
//! S / interval requests per second), then hold live sockets on it instead; the same ERP-like
//! change stream runs through both. For each: HTTP requests per second the portal serves, and the
//! database's transactions and rows read per minute (`pg_stat_database`, the writer's own
//! transactions taken out), read twice inside the steady state so the statistics' flush delay
//! cancels out. `pg_stat_statements` is used when it is installed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::{Semaphore, mpsc};

use crate::crowd::{prefix, sockets_of};
use crate::fleet::{self, ChangePlan, Deliveries, Fleet, SessionLine};
use crate::report::Figure;
use crate::{AnyError, percentile};

#[derive(Parser)]
pub struct BaselineArgs {
    /// The portal (keep it on this machine): http://localhost:PORT, its origin.
    #[arg(long, default_value = "http://localhost:18090")]
    pub url: String,
    /// Owner connection to the portal's database: the changes and the statistics.
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    pub database_url: String,
    /// Sessions minted by `setup --customers` (lines `customer_id user_id order_id cookie`).
    #[arg(long)]
    pub sessions_file: PathBuf,
    /// Sessions, each polling (then watching) the order page its user follows.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub sessions: u32,
    /// Customers the sessions are spread over (default: all in the file, at most one per session).
    #[arg(long)]
    pub customers: Option<usize>,
    /// Seconds each mode is measured for (after a few seconds of warm-up).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub seconds: u64,
    /// Polling interval of each session, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub interval: u64,
    /// Connections the polling requests share (at most this many in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Changes per second in both modes (default: one per customer per minute).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The portal's process id, for its CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object per figure instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

/// Warm-up before the first statistics read, so both reads fall inside the steady state.
const WARM_UP: Duration = Duration::from_secs(3);
/// Push's warm-up: PostgreSQL 15 flushes an idle backend's statistics up to 10 s late, so the
/// page loads and handshakes just before would otherwise be counted in push's window.
const PUSH_WARM_UP: Duration = Duration::from_secs(12);
/// How long the last deliveries may take after the last change.
const GRACE: Duration = Duration::from_secs(5);

/// The database's counters at one moment, and the portal's CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub at_seconds: f64,
    pub transactions: i64,
    pub rows: i64,
    /// Sum of `calls` in `pg_stat_statements`, when it is installed.
    pub statements: Option<i64>,
    /// The portal's user + system CPU, in clock ticks.
    pub cpu_ticks: Option<u64>,
}

/// Per minute between two readings, with `own` transactions (the writer's, our readings) taken out.
#[derive(Debug, PartialEq)]
pub struct Rates {
    pub transactions_per_minute: f64,
    pub rows_per_minute: f64,
    pub statements_per_minute: Option<f64>,
    /// The portal's CPU use, in cores (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
}

pub fn rates(before: &Counters, after: &Counters, own_transactions: i64, ticks_per_second: f64) -> Rates {
    let minutes = (after.at_seconds - before.at_seconds) / 60.0;
    let per_minute = |d: i64| if minutes > 0.0 { d as f64 / minutes } else { 0.0 };
    Rates {
        transactions_per_minute: per_minute((after.transactions - before.transactions - own_transactions).max(0)),
        rows_per_minute: per_minute(after.rows - before.rows),
        statements_per_minute: match (before.statements, after.statements) {
            (Some(b), Some(a)) => Some(per_minute(a - b - own_transactions)),
            _ => None,
        },
        cpu_cores: match (before.cpu_ticks, after.cpu_ticks) {
            (Some(b), Some(a)) if minutes > 0.0 => Some((a - b) as f64 / ticks_per_second / (minutes * 60.0)),
            _ => None,
        },
    }
}

/// User + system time of a process in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

struct Stats {
    db: tokio_postgres::Client,
    statements: bool,
    server_pid: Option<u32>,
    origin: Instant,
}

impl Stats {
    async fn connect(database_url: &str, server_pid: Option<u32>) -> Result<Stats, AnyError> {
        let (db, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let statements: bool = db
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')", &[])
            .await?
            .get(0);
        Ok(Stats { db, statements, server_pid, origin: Instant::now() })
    }

    /// One reading: one transaction of ours, taken out again by the caller.
    async fn read(&self) -> Result<Counters, AnyError> {
        let sql = if self.statements {
            "SELECT (xact_commit + xact_rollback)::bigint, (tup_returned + tup_fetched)::bigint, \
                    (SELECT sum(calls)::bigint FROM pg_stat_statements) \
             FROM pg_stat_database WHERE datname = current_database()"
        } else {
            "SELECT (xact_commit + xact_rollback)::bigint, (tup_returned + tup_fetched)::bigint, NULL::bigint \
             FROM pg_stat_database WHERE datname = current_database()"
        };
        let row = self.db.query_one(sql, &[]).await?;
        Ok(Counters {
            at_seconds: self.origin.elapsed().as_secs_f64(),
            transactions: row.get(0),
            rows: row.get(1),
            statements: row.get(2),
            cpu_ticks: self.server_pid.and_then(cpu_ticks),
        })
    }
}

/// One mode's measurement.
struct Mode {
    rates: Rates,
    /// HTTP requests the portal served in the window, per second.
    requests_per_second: f64,
}

/// Changes for `seconds` (plus the warm-up) at `rate`, over the run's sockets' orders.
fn changes(lines: &[SessionLine], rate: f64, warm_up: Duration, seconds: u64) -> ChangePlan {
    let n = (rate * (warm_up.as_secs_f64() + seconds as f64)).ceil() as usize;
    ChangePlan::new(lines, n.max(1), 0xBA5E)
}

/// The writer's commits between two instants.
fn commits_between(commits: &[Option<Instant>], from: Instant, to: Instant) -> i64 {
    commits.iter().flatten().filter(|&&at| at >= from && at <= to).count() as i64
}

struct Polled {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    /// How far behind its schedule the last request started.
    lag: Duration,
}

/// Every session GETs its page every `interval`, evenly spread: request k is due at
/// k × interval / S, session k mod S; at most `connections` in flight (a late request waits
/// for one, and the schedule slips: the rate achieved is then what the portal can serve).
/// Requests completed between `from` and `to` are kept.
async fn poll(
    url: &str,
    lines: &[SessionLine],
    interval: Duration,
    connections: usize,
    from: Instant,
    to: Instant,
) -> Result<Polled, AnyError> {
    let client = fleet::http_client(connections)?;
    let gate = Arc::new(Semaphore::new(connections));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Instant, Result<u64, String>)>();
    let start = tokio::time::Instant::now();
    let step = interval.as_secs_f64() / lines.len() as f64;
    let mut lag = Duration::ZERO;
    let mut k = 0usize;
    while Instant::now() < to {
        let due = start + Duration::from_secs_f64(k as f64 * step);
        tokio::time::sleep_until(due).await;
        let permit = gate.clone().acquire_owned().await?;
        lag = tokio::time::Instant::now().saturating_duration_since(due);
        let line = &lines[k % lines.len()];
        let (client, url, done) = (client.clone(), url.to_owned(), done_tx.clone());
        let (path, cookie) = (format!("/orders/{}", line.order), line.cookie.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = fleet::get_page(&client, &url, &path, &cookie)
                .await
                .map(|_| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            let _ = done.send((Instant::now(), result));
            drop(permit);
        });
        k += 1;
    }
    drop(done_tx);
    let mut polled = Polled { latencies_us: Vec::new(), errors: 0, first_error: None, lag };
    while let Some((at, result)) = done_rx.recv().await {
        if at < from || at > to {
            continue;
        }
        match result {
            Ok(us) => polled.latencies_us.push(us),
            Err(e) => {
                polled.errors += 1;
                polled.first_error.get_or_insert(e);
            }
        }
    }
    polled.latencies_us.sort_unstable();
    Ok(polled)
}

pub async fn measure(args: &BaselineArgs) -> Result<Vec<Figure>, AnyError> {
    let url = args.url.trim_end_matches('/').to_owned();
    let (lines, customers) = sockets_of(&args.sessions_file, args.sessions as usize, args.customers)?;
    let s = lines.len();
    let rate = args.rate.unwrap_or(customers as f64 / 60.0);
    let interval = Duration::from_secs(args.interval);
    let window = Duration::from_secs(args.seconds);
    let stats = Stats::connect(&args.database_url, args.server_pid).await?;
    // /proc reports CPU time in USER_HZ, 100 per second on Linux.
    let hz = 100.0;
    let mut figures = Vec::new();

    // Polling.
    let target_rps = s as f64 / interval.as_secs_f64();
    eprintln!(
        "baseline: {s} sessions over {customers} customers poll every {} s ({target_rps:.0} requests/s asked), {rate:.1} changes/s",
        args.interval
    );
    let plan = changes(&lines, rate, WARM_UP, args.seconds);
    let done = fleet::start_writers(args.database_url.clone(), &plan, prefix()?, rate, 4);
    let from = Instant::now() + WARM_UP;
    let to = from + window;
    let reading = async {
        tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
        let before = stats.read().await?;
        tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
        let after = stats.read().await?;
        Ok::<_, AnyError>((before, after))
    };
    let (polled, readings) = tokio::join!(poll(&url, &lines, interval, args.connections as usize, from, to), reading);
    let (polled, (before, after)) = (polled?, readings?);
    let written = done.await.map_err(|_| "the writer thread ended early")??;
    let polling = Mode {
        rates: rates(&before, &after, commits_between(&written.commits, from, to) + 1, hz),
        requests_per_second: polled.latencies_us.len() as f64 / window.as_secs_f64(),
    };
    let (p50, p99) = (percentile(&polled.latencies_us, 50.0), percentile(&polled.latencies_us, 99.0));
    eprintln!(
        "baseline: polling served {:.0} requests/s of {target_rps:.0} asked, p50 {p50:.1} ms, p99 {p99:.1} ms, {} errors{}, last request {:.1} s behind schedule",
        polling.requests_per_second,
        polled.errors,
        polled.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        polled.lag.as_secs_f64()
    );

    // Push: the same sessions load their page once and hold a live socket on it.
    let (pages, loads) = fleet::load_pages(&url, &lines, 32).await?;
    let pushing = prefix()?;
    let mut crowd = Fleet::open(&url, &lines, &pages, &pushing).await;
    if crowd.connected < s {
        let (connected, failed): (usize, Vec<_>) = (crowd.connected, crowd.failed.iter().take(3).cloned().collect());
        crowd.close().await?;
        return Err(format!("{connected} of {s} sockets connected; first failures {failed:?}").into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let plan = changes(&lines, rate, PUSH_WARM_UP, args.seconds);
    let expected = plan.expected();
    let mut receipts = std::mem::replace(&mut crowd.receipts, mpsc::unbounded_channel().1);
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let mut collect = tokio::spawn(async move {
        let mut deliveries = Deliveries::default();
        let mut delivered = 0;
        while delivered < expected {
            tokio::select! {
                receipt = receipts.recv() => match receipt {
                    Some(r) => delivered += deliveries.add(&plan, &r),
                    None => break,
                },
                _ = &mut stop => break,
            }
        }
        (deliveries, delivered)
    });
    let plan = changes(&lines, rate, PUSH_WARM_UP, args.seconds);
    let done = fleet::start_writers(args.database_url.clone(), &plan, pushing, rate, 4);
    let from = Instant::now() + PUSH_WARM_UP;
    let to = from + window;
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let before = stats.read().await?;
    tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
    let after = stats.read().await?;
    let written = done.await.map_err(|_| "the writer thread ended early")??;
    let (deliveries, delivered) = tokio::select! {
        joined = &mut collect => joined?,
        () = tokio::time::sleep(GRACE) => {
            let _ = stop_tx.send(());
            collect.await?
        }
    };
    let end = crowd.close().await?;
    let push = Mode {
        rates: rates(&before, &after, commits_between(&written.commits, from, to) + 1, hz),
        // No HTTP request in the steady state: the pages were loaded and the sockets opened before.
        requests_per_second: 0.0,
    };
    let (latencies, _) = fleet::latencies(&deliveries, &written.commits);
    let (push_p50, push_p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    let share = if expected == 0 { 0.0 } else { 100.0 * delivered as f64 / expected as f64 };
    // Per page view held for the window: polling loads the page and then polls it; push loads
    // it and upgrades once, then serves no request at all.
    let w = window.as_secs_f64();
    let polling_requests = s as f64 + polling.requests_per_second * w;
    let push_requests = (loads + s) as f64 + push.requests_per_second * w;

    figures.push(Figure::new(
        "baseline",
        format!("polling: {s} sessions every {} s, requests/s served (asked {target_rps:.0})", args.interval),
        polling.requests_per_second,
        "/s",
    ));
    figures.push(
        Figure::new("baseline", "polling: page p50 / p99", p50, "ms")
            .target(format!("p99 {p99:.1} ms; {} errors", polled.errors)),
    );
    figures.push(Figure::new(
        "baseline",
        "polling: portal database transactions/min",
        polling.rates.transactions_per_minute,
        "/min",
    ));
    figures.push(Figure::new(
        "baseline",
        "push: portal database transactions/min (same sessions, same changes)",
        push.rates.transactions_per_minute,
        "/min",
    ));
    figures.push(
        Figure::new(
            "baseline",
            "database transactions, polling ÷ push",
            polling.rates.transactions_per_minute / push.rates.transactions_per_minute.max(1e-9),
            "×",
        )
        .target("≥ 100× at 10,000 sessions"),
    );
    figures.push(
        Figure::new("baseline", "database rows read/min, polling → push", polling.rates.rows_per_minute, "/min")
            .target(format!("push {:.0}/min", push.rates.rows_per_minute)),
    );
    if let (Some(a), Some(b)) = (polling.rates.statements_per_minute, push.rates.statements_per_minute) {
        figures.push(
            Figure::new("baseline", "statements/min (pg_stat_statements), polling → push", a, "/min")
                .target(format!("push {b:.0}/min")),
        );
    }
    figures.push(
        Figure::new(
            "baseline",
            format!("HTTP requests per page view held {w:.0} s, polling ÷ push ({polling_requests:.0} ÷ {push_requests:.0})"),
            polling_requests / push_requests.max(1.0),
            "×",
        )
        .target(format!(
            "≥ 100× at 10,000 sessions; push serves 0 requests/s once open, so the ratio is (1 + T / {}) / 2 for a page held T s",
            args.interval
        )),
    );
    if let (Some(a), Some(b)) = (polling.rates.cpu_cores, push.rates.cpu_cores) {
        figures
            .push(Figure::new("baseline", "portal CPU, polling → push (cores)", a, "").target(format!("push {b:.2}")));
    }
    figures.push(
        Figure::new(
            "baseline",
            format!("freshness: push p50 commit → fragment ({rate:.1} changes/s, {share:.0} % delivered)"),
            push_p50,
            "ms",
        )
        .target(format!(
            "push p99 {push_p99:.1} ms; polling: up to {} s, {:.1} s on average",
            args.interval,
            args.interval as f64 / 2.0
        )),
    );
    eprintln!(
        "baseline: statistics {}; push pushes {}, ops for other pages {}, closed by server {:?}, socket errors {:?}",
        if stats.statements {
            "from pg_stat_statements and pg_stat_database"
        } else {
            "from pg_stat_database (pg_stat_statements is not installed: transactions, not statements)"
        },
        end.pushes,
        end.stray_ops,
        end.closed_by_server,
        end.errors
    );
    Ok(figures)
}

pub async fn run(args: BaselineArgs) -> Result<(), AnyError> {
    let figures = measure(&args).await?;
    crate::report::print(&figures, args.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_minute_without_our_own_transactions() {
        let before =
            Counters { at_seconds: 10.0, transactions: 1_000, rows: 50, statements: None, cpu_ticks: Some(100) };
        let after =
            Counters { at_seconds: 40.0, transactions: 1_601, rows: 350, statements: None, cpu_ticks: Some(130) };
        let r = rates(&before, &after, 1, 100.0);
        assert_eq!(r.transactions_per_minute, 1_200.0);
        assert_eq!(r.rows_per_minute, 600.0);
        assert_eq!(r.statements_per_minute, None);
        assert_eq!(r.cpu_cores, Some(0.01));
        let same = rates(&before, &before, 5, 100.0);
        assert_eq!(same.transactions_per_minute, 0.0);
    }

    #[test]
    fn commits_are_counted_inside_the_window() {
        let t = Instant::now();
        let commits = [Some(t), None, Some(t + Duration::from_secs(2)), Some(t + Duration::from_secs(9))];
        assert_eq!(commits_between(&commits, t + Duration::from_secs(1), t + Duration::from_secs(5)), 1);
    }

    #[test]
    fn cpu_ticks_of_this_process_are_read() {
        assert!(cpu_ticks(std::process::id()).is_some());
    }
}
