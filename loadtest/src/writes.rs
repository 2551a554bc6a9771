//! `writes`: update throughput of a live table (orders) at 1, 4 and 16 concurrent writer
//! connections, each UPDATE its own transaction, with the live layer on (the row triggers append
//! an event; the portal's relay, awake while writes flow, reads the outbox and sends one NOTIFY per
//! channel per read, so the writers themselves do not notify) and off (`SET
//! session_replication_role = replica` on the writer connections, which keeps ordinary triggers
//! from firing). A portal must be running on the database for "on" to mean that: without a relay
//! the flag in `live_relay` decides whether each writer also notifies `portal_events`.
//!
//! Every UPDATE sets only `updated_at = now()` on one of the customer's orders, so titles and
//! everything else stay as they were. Off also skips `orders_touch` (it is a trigger too), so the
//! statement sets `updated_at` itself and both modes change the row alike. With the live layer
//! on, each UPDATE appends an `events` row like any other change would (pruned with the rest).

use std::time::{Duration, Instant};

use clap::Parser;

use crate::AnyError;
use crate::report::Figure;

const BENCHMARK: &str = "writes";
const UPDATE: &str = "UPDATE orders SET updated_at = now() WHERE id = $1::text::uuid";
/// How "live off" is made, said next to every figure it affects.
const OFF_MEANS: &str = "off = SET session_replication_role = replica on the writers (live triggers do not fire)";

#[derive(Parser, Clone, Debug)]
pub struct WritesArgs {
    /// Owner connection to the portal's database (libpq key/value or URL); a superuser, as
    /// `session_replication_role` needs.
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    pub database_url: String,
    /// The customer (by slug) whose orders are updated, in rotation.
    #[arg(long, default_value = "acme")]
    pub customer: String,
    /// How long each measurement (writer count × on/off) lasts, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub seconds: u64,
    /// Concurrent writer connections to measure (repeat the flag).
    #[arg(long = "writers", default_values_t = [1u32, 4, 16], value_parser = clap::value_parser!(u32).range(1..=64))]
    pub writers: Vec<u32>,
    /// Print one JSON object per figure instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

impl WritesArgs {
    /// Small parameters for `all --quick`: 2 s per measurement, about 15 s in all.
    pub fn quick(database_url: String) -> Self {
        WritesArgs { database_url, customer: "acme".to_owned(), seconds: 2, writers: vec![1, 4, 16], json: false }
    }
}

pub async fn run(args: WritesArgs) -> Result<(), AnyError> {
    let figures = measure(&args).await?;
    crate::report::print(&figures, args.json);
    if !args.json {
        println!();
        println!(
            "Live on: the row triggers append an event in each UPDATE's transaction; the portal's relay sends the \
             notifications (one per channel per 1 ms poll), so the writers do not NOTIFY. {OFF_MEANS}."
        );
    }
    Ok(())
}

/// One writer connection, ready to go.
struct Writer {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    statement: tokio_postgres::Statement,
    /// The orders this writer updates in turn (its own share, so writers do not wait on each other's row locks).
    ids: Vec<String>,
}

async fn writer(database_url: &str, live: bool, ids: Vec<String>) -> Result<Writer, AnyError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let role = if live { "origin" } else { "replica" };
    client.batch_execute(&format!("SET session_replication_role = {role}")).await?;
    let statement = client.prepare(UPDATE).await?;
    Ok(Writer { client, connection, statement, ids })
}

/// UPDATEs until `until`, each its own transaction; how many committed.
async fn write(writer: &Writer, until: Instant) -> Result<u64, AnyError> {
    let mut done = 0u64;
    for id in writer.ids.iter().cycle() {
        if Instant::now() >= until {
            break;
        }
        let rows = writer.client.execute(&writer.statement, &[id]).await?;
        if rows != 1 {
            return Err(format!("order {id} is gone (updated {rows} rows)").into());
        }
        done += 1;
    }
    Ok(done)
}

/// Updates/s with `count` writers, the live layer on or off.
async fn round(args: &WritesArgs, ids: &[String], count: usize, live: bool) -> Result<f64, AnyError> {
    let mut writers = Vec::with_capacity(count);
    for w in 0..count {
        // Writer w takes every count-th order; with fewer orders than writers, some share one.
        let mut own: Vec<String> = ids.iter().skip(w).step_by(count).cloned().collect();
        if own.is_empty() {
            own.push(ids[w % ids.len()].clone());
        }
        writers.push(writer(&args.database_url, live, own).await?);
    }
    // Every round starts from the same state of the WAL (no checkpoint half-way through one and
    // not another, as far as that goes).
    writers[0].client.batch_execute("CHECKPOINT").await?;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let results = futures_util::future::join_all(writers.iter().map(|w| write(w, until))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0u64;
    for result in results {
        total += result?;
    }
    for w in writers {
        drop(w.client);
        let _ = w.connection.await;
    }
    Ok(total as f64 / elapsed)
}

pub async fn measure(args: &WritesArgs) -> Result<Vec<Figure>, AnyError> {
    if args.writers.is_empty() || args.writers.contains(&0) {
        return Err("--writers needs one or more counts of at least 1".into());
    }
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let ids: Vec<String> = client
        .query(
            "SELECT o.id::text FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.slug = $1 ORDER BY o.id",
            &[&args.customer],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    let _ = connection.await;
    if ids.is_empty() {
        return Err(format!("customer {:?} has no orders (load the demo data, or run setup)", args.customer).into());
    }

    let mut figures =
        vec![Figure::new(BENCHMARK, format!("orders of {} updated in rotation", args.customer), ids.len() as f64, "")];
    let most = args.writers.iter().copied().max().unwrap_or(1);
    if (most as usize) > ids.len() {
        figures[0] = figures[0].clone().target(
            "fewer orders than writers: some writers share an order and wait on its row lock (run setup for more)",
        );
    }
    for &count in &args.writers {
        let off = round(args, &ids, count as usize, false).await?;
        let on = round(args, &ids, count as usize, true).await?;
        let ratio = if off > 0.0 { 100.0 * on / off } else { 0.0 };
        let plural = if count == 1 { "" } else { "s" };
        figures.push(
            Figure::new(BENCHMARK, format!("updates/s, {count} writer{plural}, live off"), off, "/s").target(OFF_MEANS),
        );
        figures.push(Figure::new(BENCHMARK, format!("updates/s, {count} writer{plural}, live on"), on, "/s"));
        let ratio = Figure::new(BENCHMARK, format!("live on / off, {count} writer{plural}"), ratio, "%");
        figures.push(if count == 16 {
            ratio.target("≥ 70 % at 16 writers (trigger NOTIFY alone reaches about 27 %)")
        } else {
            ratio
        });
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn arguments_are_bounded() {
        WritesArgs::command().debug_assert();
        let args = WritesArgs::try_parse_from(["writes", "--database-url", "x"]).unwrap();
        assert_eq!((args.writers, args.seconds, args.customer.as_str()), (vec![1, 4, 16], 10, "acme"));
        let args =
            WritesArgs::try_parse_from(["writes", "--database-url", "x", "--writers", "2", "--writers", "8"]).unwrap();
        assert_eq!(args.writers, vec![2, 8]);
        assert!(WritesArgs::try_parse_from(["writes", "--database-url", "x", "--writers", "0"]).is_err());
    }

    #[test]
    fn quick_stays_small() {
        let quick = WritesArgs::quick("x".to_owned());
        // Two measurements (on, off) per writer count.
        assert!(quick.seconds * 2 * quick.writers.len() as u64 <= 15);
    }
}
