//! `live --sessions-file`: S live sockets spread over C customers (the sessions `setup
//! --customers` minted), each on the order page its user follows; an ERP-like writer updates
//! random customers' followed orders at a chosen rate, and every delivery is timed from the
//! change's COMMIT to the fragment at each socket watching that order (and only those).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::fleet::{self, ChangePlan, Deliveries, Fleet};
use crate::live::rss_kib;
use crate::report::Figure;
use crate::{AnyError, percentile};

/// What `live --sessions-file` needs.
pub struct CrowdArgs {
    pub url: String,
    pub database_url: String,
    pub sessions_file: std::path::PathBuf,
    pub sessions: usize,
    /// Customers the sockets are spread over (default: as many as the file has, at most one per socket).
    pub customers: Option<usize>,
    pub changes: usize,
    pub rate: f64,
    pub writers: usize,
    pub grace: Duration,
    pub server_pid: Option<u32>,
}

/// Page loads in flight at once before the sockets open.
const PAGE_LOADS_AT_ONCE: usize = 32;

/// The run's sockets: the file's sessions spread over the customers, and the customer count.
pub fn sockets_of(
    file: &std::path::Path,
    sessions: usize,
    customers: Option<usize>,
) -> Result<(Vec<fleet::SessionLine>, usize), AnyError> {
    let lines = fleet::read_sessions(file)?;
    let in_file = lines.iter().map(|l| l.customer.as_str()).collect::<std::collections::HashSet<_>>().len();
    let customers = customers.unwrap_or_else(|| in_file.min(sessions));
    Ok((fleet::spread(&lines, customers, sessions)?, customers))
}

pub fn prefix() -> Result<String, AnyError> {
    Ok(format!("lt-{}-", SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()))
}

pub async fn measure(args: &CrowdArgs) -> Result<Vec<Figure>, AnyError> {
    let url = args.url.trim_end_matches('/');
    let (lines, customers) = sockets_of(&args.sessions_file, args.sessions, args.customers)?;
    let sessions = lines.len();
    eprintln!("live: loading {sessions} order pages ({PAGE_LOADS_AT_ONCE} at a time)");
    let loading = Instant::now();
    let (pages, loads) = fleet::load_pages(url, &lines, PAGE_LOADS_AT_ONCE).await?;
    eprintln!("live: {loads} pages in {:.1} s; opening {sessions} sockets", loading.elapsed().as_secs_f64());
    let rss_before = args.server_pid.and_then(rss_kib);
    let prefix = prefix()?;
    let mut fleet = Fleet::open(url, &lines, &pages, &prefix).await;
    let connected = fleet.connected;
    // Let the server settle after the burst of handshakes before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = args.server_pid.and_then(rss_kib);
    eprintln!(
        "live: {connected}/{sessions} connected in {:.1} s; {} changes at {}/s",
        fleet.connect_seconds, args.changes, args.rate
    );

    let plan = ChangePlan::new(&lines, args.changes, 0x5EED);
    let expected = plan.expected();
    let mut done = fleet::start_writers(args.database_url.clone(), &plan, prefix, args.rate, args.writers);
    let mut deliveries = Deliveries::default();
    let mut delivered = 0usize;
    let mut written = None;
    let mut deadline = None;
    while written.is_none() || delivered < expected {
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            receipt = fleet.receipts.recv() => match receipt {
                Some(r) => delivered += deliveries.add(&plan, &r),
                None => break,
            },
            result = &mut done, if written.is_none() => {
                written = Some(result.map_err(|_| "the writer thread ended early")??);
                deadline = Some(tokio::time::Instant::now() + args.grace);
            }
            () = tokio::time::sleep_until(until) => break,
        }
    }
    let (connect_seconds, failed) = (fleet.connect_seconds, std::mem::take(&mut fleet.failed));
    let end = fleet.close().await?;
    let written = written.ok_or("the writers did not finish")?;
    let (latencies_us, early) = fleet::latencies(&deliveries, &written.commits);
    let achieved = args.changes as f64 / written.seconds;
    let (p50, p90, p99) =
        (percentile(&latencies_us, 50.0), percentile(&latencies_us, 90.0), percentile(&latencies_us, 99.0));
    let max = latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0;
    let share = if expected == 0 { 0.0 } else { 100.0 * delivered as f64 / expected as f64 };
    let per_session = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => Some((after as f64 - before as f64) / connected as f64),
        _ => None,
    };
    let mib = |k: Option<u64>| k.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "| sessions | customers | connected | changes | changes/s | delivered / expected | p50 ms | p90 ms | p99 ms | max ms | RSS before MiB | RSS after MiB | KiB / session |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {sessions} | {customers} | {connected} | {} | {achieved:.1} | {delivered} / {expected} ({share:.2} %) | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} | {} | {} | {} |",
        args.changes,
        mib(rss_before),
        mib(rss_after),
        per_session.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}")),
    );
    println!();
    println!(
        "client on the same 2 cores as the portal and PostgreSQL (its socket tasks' time is in the figures); \
         {loads} page loads; connect {:.1} s; {} writers; pushes received {}; delivered before the writer saw COMMIT \
         return {early}; ops for regions not on the socket's page {}; closed by server {:?}",
        connect_seconds, args.writers, end.pushes, end.stray_ops, end.closed_by_server
    );
    if !failed.is_empty() || !end.errors.is_empty() {
        println!(
            "failed to connect (first 5): {:?}; socket errors (first 5): {:?}",
            failed.iter().take(5).collect::<Vec<_>>(),
            end.errors
        );
    }
    let s = sessions;
    let r = args.rate;
    let mut figures = vec![
        Figure::new(
            "live",
            format!("{s} sessions / {customers} customers, {r:.0} changes/s: p50 commit → fragment"),
            p50,
            "ms",
        )
        .target("p50 ≤ 2 ms at 10,000 sessions, 1,000/s"),
        Figure::new("live", format!("{s} sessions, {r:.0} changes/s: p99"), p99, "ms").target("p99 ≤ 5 ms"),
        Figure::new("live", format!("{s} sessions, {r:.0} changes/s: max"), max, "ms"),
        Figure::new("live", format!("{s} sessions: delivered / expected ({delivered} / {expected})"), share, "%")
            .target("100 %"),
    ];
    if let Some(kib) = per_session {
        figures.push(
            Figure::new("live", format!("portal RSS per idle live session ({s})"), kib, "KiB").target("≤ 20 KiB"),
        );
    }
    if connected < sessions || delivered < expected || end.stray_ops > 0 {
        crate::report::print(&figures, false);
        return Err(format!(
            "{connected}/{sessions} connected, {delivered}/{expected} delivered, {} ops for other pages",
            end.stray_ops
        )
        .into());
    }
    Ok(figures)
}
