//! Load generator for Portal. Every run is bounded in time and sends traffic
//! only to the portal URL given (loopback by default).

mod all;
mod baseline;
mod burst;
mod crowd;
mod files;
mod fleet;
mod limits;
mod live;
mod report;
mod setup;
mod signin;
mod tenants;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use reqwest::redirect::Policy;

#[derive(Parser)]
#[command(name = "portal-loadtest", about = "Benchmarks for a running Portal")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Server-rendered pages under load: C keep-alive connections, each signed in, for a fixed time.
    Pages(PagesArgs),
    /// Live layer: end-to-end latency from a database commit to the fragment on many open sockets.
    Live(live::LiveArgs),
    /// Grows a demo database to benchmark size: N orders with timelines for one customer.
    Setup(setup::SetupArgs),
    /// One large file uploaded and downloaded N times: throughput and the server's peak memory.
    Files(files::FilesArgs),
    /// Every benchmark in one run against a portal (and PostgreSQL) it starts itself; `--quick` in under 3 minutes.
    All(all::AllArgs),
    /// Ceilings of this machine: raw NOTIFY→LISTEN latency and throughput, a bare WebSocket broadcast.
    Limits(limits::LimitsArgs),
    /// Update throughput of a live table at 1, 4 and 16 writers, live layer on and off.
    Writes(writes::WritesArgs),
    /// Sustained password sign-ins per second, and the /orders p99 of a signed-in client meanwhile.
    Signin(signin::SigninArgs),
    /// One change to an order followed by K live sockets of one customer: commit → last socket.
    Burst(burst::BurstArgs),
    /// The same sessions polling their page every 5 s, then on live sockets: requests/s and
    /// database work of each (needs `setup --customers`' sessions file).
    Baseline(baseline::BaselineArgs),
}

#[derive(Parser)]
pub(crate) struct PagesArgs {
    /// The portal to load (keep it on this machine).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "alice@acme.example")]
    email: String,
    #[arg(long, env = "PORTAL_LOADTEST_PASSWORD", default_value = "demo-portal-password")]
    password: String,
    /// Concurrent keep-alive connections, each with its own session.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=512))]
    connections: u32,
    /// How long to load, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    seconds: u64,
    /// Pages to request in turn (repeat the flag).
    #[arg(long = "path", default_values_t = ["/".to_string(), "/orders".to_string()])]
    paths: Vec<String>,
    /// Print one JSON object instead of a markdown table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug)]
struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

async fn signed_in_client(args: &PagesArgs) -> Result<reqwest::Client, AnyError> {
    Ok(sign_in(&args.url, &args.email, &args.password).await?.0)
}

/// A cookie-keeping client signed in as `email`, and its cookie jar (a live socket sends the same cookies).
async fn sign_in(
    url: &str,
    email: &str,
    password: &str,
) -> Result<(reqwest::Client, Arc<reqwest::cookie::Jar>), AnyError> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(Policy::none())
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    let login = client.get(format!("{url}/login")).send().await?.text().await?;
    let marker = "name=\"csrf_token\" value=\"";
    let token = login
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("the sign-in page has no csrf_token")?
        .to_owned();
    let response = client
        .post(format!("{url}/login"))
        .form(&[("csrf_token", token.as_str()), ("email", email), ("password", password)])
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(format!("sign-in as {email} failed with {}", response.status()).into());
    }
    Ok((client, jar))
}

async fn connection(client: reqwest::Client, url: String, paths: Vec<String>, until: Instant) -> Outcome {
    let mut outcome = Outcome { latencies_us: Vec::new(), errors: 0 };
    let mut i = 0usize;
    while Instant::now() < until {
        let path = &paths[i % paths.len()];
        i += 1;
        let started = Instant::now();
        let ok = match client.get(format!("{url}{path}")).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            outcome.latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        } else {
            outcome.errors += 1;
        }
    }
    outcome
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// What `pages` measured.
pub(crate) struct PagesResult {
    pub requests: usize,
    pub errors: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub(crate) async fn measure_pages(args: &PagesArgs) -> Result<PagesResult, AnyError> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(signed_in_client(args).await?);
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> =
        clients.into_iter().map(|c| tokio::spawn(connection(c, args.url.clone(), args.paths.clone(), until))).collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let outcome = task.await?;
        latencies.extend(outcome.latencies_us);
        errors += outcome.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(PagesResult {
        requests: latencies.len(),
        errors,
        seconds,
        rps: latencies.len() as f64 / seconds,
        p50: percentile(&latencies, 50.0),
        p90: percentile(&latencies, 90.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    })
}

async fn pages(args: PagesArgs) -> Result<(), AnyError> {
    let r = measure_pages(&args).await?;
    if args.json {
        let report = serde_json::json!({
            "benchmark": "pages", "paths": args.paths, "connections": args.connections, "seconds": r.seconds,
            "requests": r.requests, "errors": r.errors, "requests_per_second": r.rps,
            "latency_ms": { "p50": r.p50, "p90": r.p90, "p99": r.p99, "max": r.max },
        });
        println!("{report}");
    } else {
        println!("| pages | connections | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            args.paths.join(" "),
            args.connections,
            r.requests,
            r.errors,
            r.rps,
            r.p50,
            r.p90,
            r.p99,
            r.max
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Pages(args) => pages(args).await,
        Command::Live(args) => live::run(args).await,
        Command::Setup(args) => setup::run(args).await,
        Command::Files(args) => files::run(args).await,
        Command::Limits(args) => limits::run(args).await,
        Command::Writes(args) => writes::run(args).await,
        Command::Signin(args) => signin::run(args).await,
        Command::Burst(args) => burst::run(args).await,
        Command::Baseline(args) => baseline::run(args).await,
        Command::All(args) => all::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portal-loadtest: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(super::percentile(&sorted, 50.0), 51.0);
        assert_eq!(super::percentile(&sorted, 99.0), 99.0);
        assert_eq!(super::percentile(&[], 50.0), 0.0);
    }
}
