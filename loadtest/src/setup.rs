//! `setup`: makes a demo portal's database as big as the benchmarks need: N
//! orders for one customer, each with a timeline, spread over every stage and
//! status and over the last two years. Idempotent: orders it made before (numbered
//! `LT-…`) are replaced, so running it twice gives the same N.

use std::time::Instant;

use clap::Parser;

use crate::AnyError;

#[derive(Parser)]
pub struct SetupArgs {
    /// Owner connection to the portal's database (libpq key/value or URL).
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    database_url: String,
    /// The customer (by slug) that gets the orders.
    #[arg(long, default_value = "acme")]
    customer: String,
    /// How many orders to create for it.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=5_000_000))]
    orders: u32,
}

/// One statement per step, all in one transaction: a failed run leaves nothing behind.
const STEPS: &[(&str, &str)] = &[
    ("remove earlier benchmark orders", "DELETE FROM orders WHERE customer_id = $1 AND number LIKE 'LT-%'"),
    (
        "insert orders",
        "INSERT INTO orders (customer_id, number, title, reference, workflow_id, stage_id, status, expected_on, \
                             created_at, updated_at) \
         SELECT $1, 'LT-' || lpad(i::text, 7, '0'), \
                (ARRAY['Flyers', 'Brochures', 'Posters', 'Labels', 'Business cards', 'Banners'])[1 + i % 6] \
                    || ', run ' || i, \
                CASE WHEN i % 4 <> 0 THEN 'PO-' || (100000 + i) END, \
                s.workflow_id, s.id, \
                CASE WHEN s.terminal THEN 'completed' WHEN i % 97 = 0 THEN 'cancelled' ELSE 'open' END, \
                CASE WHEN i % 5 <> 0 THEN current_date + (i % 60) - 20 END, \
                now() - make_interval(mins => i * 7), now() - make_interval(mins => i * 7) \
         FROM generate_series(1, $2::int) i \
         JOIN LATERAL (SELECT st.* FROM workflow_stages st JOIN workflows w ON w.id = st.workflow_id \
                       WHERE w.name = 'Print job' ORDER BY st.position \
                       OFFSET (i % (SELECT count(*) FROM workflow_stages x JOIN workflows y ON y.id = x.workflow_id \
                                     WHERE y.name = 'Print job')) LIMIT 1) s ON true",
    ),
    (
        "insert timelines",
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, customer_note, reached_at) \
         SELECT o.id, o.customer_id, st.id, st.name, \
                CASE WHEN st.position = cur.position THEN 'Reached ' || st.name || '.' END, \
                o.created_at + make_interval(mins => st.position) \
         FROM orders o \
         JOIN workflow_stages cur ON cur.id = o.stage_id \
         JOIN workflow_stages st ON st.workflow_id = o.workflow_id AND st.position <= cur.position \
         WHERE o.customer_id = $1 AND o.number LIKE 'LT-%'",
    ),
];

pub async fn run(args: SetupArgs) -> Result<(), AnyError> {
    let (mut client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    let tx = client.transaction().await?;
    // A bulk load is not news: without this every row would wake every open page (the live
    // triggers), 400,000 times over. Needs the owner (superuser) connection the other benchmarks use.
    tx.batch_execute("SET LOCAL session_replication_role = replica").await?;
    // As text: PostgreSQL converts it on the way in (`$1::text::uuid`), so the loadtest needs no uuid type.
    let customer: String = tx
        .query_opt("SELECT id::text FROM customers WHERE slug = $1", &[&args.customer])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| format!("no customer with slug {:?} (load the demo data first)", args.customer))?;
    let orders = i32::try_from(args.orders)?;
    for (what, sql) in STEPS {
        let step = Instant::now();
        let sql = sql.replace("$1", "$1::text::uuid");
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            if sql.contains("$2") { vec![&customer, &orders] } else { vec![&customer] };
        let rows = tx.execute(sql.as_str(), &params).await?;
        eprintln!("{what}: {rows} rows in {:.1} s", step.elapsed().as_secs_f64());
    }
    tx.commit().await?;
    // Fresh statistics, so the first benchmark request is planned like the thousandth.
    client.batch_execute("ANALYZE orders; ANALYZE order_stage_history; ANALYZE events").await?;
    println!("{} now has {} benchmark orders ({:.1} s)", args.customer, args.orders, started.elapsed().as_secs_f64());
    Ok(())
}
