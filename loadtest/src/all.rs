//! `all`: every benchmark in one run, against a portal it starts itself (which
//! starts its own private PostgreSQL), ending with one table of every figure
//! next to its target. `--quick` uses small counts: the whole run takes under
//! three minutes on two cores.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use crate::live::Spawned;
use crate::report::{self, Figure};
use crate::{AnyError, PagesArgs, baseline, burst, crowd, limits, live, setup, signin, writes};

#[derive(Parser)]
pub struct AllArgs {
    /// Small counts and short runs (under three minutes) instead of the full run.
    #[arg(long)]
    quick: bool,
    /// The `portal` binary to start. Default: built with `cargo build --release -p portal` when
    /// this runs under cargo, else the `portal` next to this binary.
    #[arg(long)]
    portal: Option<PathBuf>,
    /// Where the started portal listens (loopback).
    #[arg(long, default_value = "127.0.0.1:18190")]
    addr: String,
    /// Print the final figures as JSON lines instead of a markdown table.
    #[arg(long)]
    json: bool,
}

/// The portal binary: built fresh through cargo when run by cargo (so a stale binary is never
/// measured), otherwise the sibling of this executable.
async fn portal_binary(args: &AllArgs) -> Result<PathBuf, AnyError> {
    if let Some(path) = &args.portal {
        return Ok(path.clone());
    }
    let sibling = std::env::current_exe()?.with_file_name("portal");
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("== building the portal (cargo build --release -p portal)");
        let status = tokio::process::Command::new(cargo)
            .args(["build", "--release", "--quiet", "-p", "portal"])
            .status()
            .await?;
        if !status.success() {
            return Err("cargo build --release -p portal failed".into());
        }
    }
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!("no portal binary at {} (build it, or pass --portal)", sibling.display()).into())
    }
}

/// Runs one benchmark, printing its name and how long it took; its figures join the summary.
async fn step<F>(name: &str, figures: &mut Vec<Figure>, run: F) -> Result<(), AnyError>
where
    F: std::future::Future<Output = Result<Vec<Figure>, AnyError>>,
{
    let started = Instant::now();
    eprintln!("== {name}");
    let found = run.await?;
    eprintln!("   {name}: {:.1} s", started.elapsed().as_secs_f64());
    figures.extend(found);
    Ok(())
}

/// A subcommand's arguments as its command line would give them.
fn parse<T: Parser>(name: &str, rest: &[&str]) -> Result<T, AnyError> {
    Ok(T::try_parse_from(std::iter::once(name).chain(rest.iter().copied()))?)
}

pub async fn run(args: AllArgs) -> Result<(), AnyError> {
    let started = Instant::now();
    let binary = portal_binary(&args).await?;
    let bound = format!("http://{}", args.addr);
    eprintln!("== starting {} with demo data on {bound} (its own PostgreSQL)", binary.display());
    let spawned = Spawned::start(&binary, &bound, None).await?;
    // The portal's own origin on loopback is `localhost` (the live socket checks Origin).
    let port = args.addr.rsplit(':').next().unwrap_or_default();
    let url = format!("http://localhost:{port}");
    let result = benchmarks(&args, &url, &spawned).await;
    spawned.stop().await?;
    let figures = result?;
    println!();
    println!(
        "## portal-loadtest all{} ({:.0} s)",
        if args.quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64()
    );
    println!();
    report::print(&figures, args.json);
    Ok(())
}

async fn benchmarks(args: &AllArgs, url: &str, spawned: &Spawned) -> Result<Vec<Figure>, AnyError> {
    let db = spawned.database_url()?;
    let pid = spawned.pid().ok_or("the portal has no process id")?.to_string();
    let quick = args.quick;
    let mut figures = Vec::new();

    let orders = if quick { "20000" } else { "100000" };
    let documents = if quick { "5000" } else { "50000" };
    step("setup", &mut figures, async {
        setup::run(parse::<setup::SetupArgs>(
            "setup",
            &["--database-url", &db, "--orders", orders, "--documents", documents],
        )?)
        .await?;
        Ok(Vec::new())
    })
    .await?;

    // Customers × users with one minted session each, for the many-customer live run and the
    // polling baseline; the cookies go to a private temporary file, removed at the end.
    let (customers, users) = if quick { (20, 10) } else { (1000, 10) };
    let sessions_file = std::env::temp_dir().join(format!("portal-loadtest-sessions-{}.txt", std::process::id()));
    let sessions_path = sessions_file.to_string_lossy().into_owned();
    step("setup --customers", &mut figures, async {
        let (c, u) = (customers.to_string(), users.to_string());
        setup::run(parse::<setup::SetupArgs>(
            "setup",
            &["--database-url", &db, "--customers", &c, "--users", &u, "--sessions-out", &sessions_path, "--url", url],
        )?)
        .await?;
        Ok(Vec::new())
    })
    .await?;
    let result =
        tenant_benchmarks(quick, url, &db, &pid, &sessions_file, customers * users, customers, &mut figures).await;
    let _ = std::fs::remove_file(&sessions_file);
    result?;

    step("limits", &mut figures, async {
        let a = if quick { limits::LimitsArgs::quick(db.clone()) } else { parse("limits", &["--database-url", &db])? };
        limits::measure(&a).await
    })
    .await?;

    step("pages", &mut figures, async {
        let (connections, seconds) = if quick { ("16", "5") } else { ("64", "20") };
        let a: PagesArgs =
            parse("pages", &["--url", url, "--connections", connections, "--seconds", seconds, "--path", "/orders"])?;
        let r = crate::measure_pages(&a).await?;
        let c = a.connections;
        Ok(vec![
            Figure::new("pages", format!("/orders req/s, {c} connections"), r.rps, "/s")
                .target("≥ 10,000/s at 64 connections"),
            Figure::new("pages", format!("/orders p99, {c} connections"), r.p99, "ms").target("≤ 10 ms"),
            Figure::new("pages", "/orders errors", r.errors as f64, ""),
        ])
    })
    .await?;

    step("live", &mut figures, async {
        let (sessions, changes) = if quick { ("500", "100") } else { ("10000", "2000") };
        let a: live::LiveArgs = parse(
            "live",
            &["--url", url, "--database-url", &db, "--server-pid", &pid, "--sessions", sessions, "--changes", changes],
        )?;
        live::run(a).await?;
        Ok(Vec::new())
    })
    .await?;

    step("burst", &mut figures, async {
        let a = if quick {
            burst::BurstArgs::quick(url.to_owned(), db.clone())
        } else {
            parse("burst", &["--url", url, "--database-url", &db])?
        };
        burst::measure(&a).await
    })
    .await?;

    // After the live benchmarks: its tens of thousands of live updates leave the listener a
    // backlog of events to digest, which would be measured as live latency.
    step("writes", &mut figures, async {
        let a = if quick { writes::WritesArgs::quick(db.clone()) } else { parse("writes", &["--database-url", &db])? };
        writes::measure(&a).await
    })
    .await?;

    // Last: every password check leaves Argon2's memory with the allocator, which would
    // inflate the memory figures of the benchmarks above.
    step("signin", &mut figures, async {
        let a = if quick {
            signin::SigninArgs::quick(url.to_owned(), db.clone())
        } else {
            parse("signin", &["--url", url])?
        };
        signin::measure(&a).await
    })
    .await?;
    Ok(figures)
}

/// The many-customer live run and the polling baseline, on the sessions `setup --customers` made.
#[allow(clippy::too_many_arguments)]
async fn tenant_benchmarks(
    quick: bool,
    url: &str,
    db: &str,
    pid: &str,
    sessions_file: &std::path::Path,
    sessions: usize,
    customers: usize,
    figures: &mut Vec<Figure>,
) -> Result<(), AnyError> {
    step("live --sessions-file", figures, async {
        let (changes, rate) = if quick { (500, 100.0) } else { (20_000, 1000.0) };
        crowd::measure(&crowd::CrowdArgs {
            url: url.to_owned(),
            database_url: db.to_owned(),
            sessions_file: sessions_file.to_path_buf(),
            sessions,
            customers: Some(customers),
            changes,
            rate,
            writers: 4,
            grace: std::time::Duration::from_secs(15),
            server_pid: pid.parse().ok(),
        })
        .await
    })
    .await?;
    step("baseline", figures, async {
        let seconds = if quick { "10" } else { "30" };
        let file = sessions_file.to_string_lossy();
        let a: baseline::BaselineArgs = parse(
            "baseline",
            &[
                "--url",
                url,
                "--database-url",
                db,
                "--sessions-file",
                &file,
                "--sessions",
                &sessions.to_string(),
                "--seconds",
                seconds,
                "--server-pid",
                pid,
            ],
        )?;
        baseline::measure(&a).await
    })
    .await
}
