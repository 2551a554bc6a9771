//! `setup`: makes a demo portal's database as big as the benchmarks need: N
//! orders for one customer, each with a timeline, spread over every stage and
//! status and over the last two years. Idempotent: orders it made before (numbered
//! `LT-…`) are replaced, so running it twice gives the same N. With `--documents M`,
//! also M documents (one version each, tagged `loadtest`), replaced the same way.
//!
//! With `--customers N --users M` instead: N load-test customers (slugs `lt-0001`…), M users
//! each (the first a customer admin), a few orders each with timelines, and one session per
//! user minted as a sign-in mints it (see [`tenants`]), written to `--sessions-out`.

use std::time::Instant;

use clap::Parser;

use crate::AnyError;

#[derive(Parser)]
pub struct SetupArgs {
    /// Owner connection to the portal's database (libpq key/value or URL).
    #[arg(long, env = "PORTAL_LOADTEST_DATABASE_URL")]
    pub(crate) database_url: String,
    /// The customer (by slug) that gets the orders.
    #[arg(long, default_value = "acme")]
    customer: String,
    /// How many orders to create for it.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=5_000_000))]
    orders: u32,
    /// How many documents to create for it (each with one version; the files are not written).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    documents: u32,
    /// Instead of one customer's orders: this many load-test customers (slugs `lt-0001`…),
    /// replacing those of an earlier run. Needs --sessions-out.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=99_999))]
    pub(crate) customers: Option<u32>,
    /// Users per load-test customer (the first a customer admin, the others members).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) users: u32,
    /// Orders per load-test customer, spread over the stages of the "Print job" workflow.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) orders_per_customer: u32,
    /// How many of each customer's orders its users follow: user i watches order i mod W.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) watched_orders: u32,
    /// Where to write the minted sessions, one line `customer_id user_id order_id cookie` each.
    /// The file holds live session cookies: it is created readable by its owner only.
    #[arg(long)]
    pub(crate) sessions_out: Option<std::path::PathBuf>,
    /// A running portal to check one minted cookie against (GET /orders must answer 200).
    #[arg(long)]
    pub(crate) url: Option<String>,
}

/// Documents: titles and tags from a small vocabulary so searches match some and not all,
/// spread over the types, the benchmark orders and the last three years.
const DOCUMENT_STEPS: &[(&str, &str)] = &[
    ("remove earlier benchmark documents", "DELETE FROM documents WHERE customer_id = $1 AND 'loadtest' = ANY(tags)"),
    (
        "insert documents",
        "INSERT INTO documents (customer_id, order_id, title, description, doc_type, tags, origin, created_at, updated_at) \
         SELECT $1, CASE WHEN i % 3 = 0 THEN o.id END, \
                (ARRAY['Certificate of conformity', 'Delivery note', 'Quality report', 'Artwork proof', \
                       'Purchase order', 'Safety data sheet', 'Test protocol'])[1 + i % 7] || ' ' || i, \
                'Benchmark document ' || i || ' for ' || (ARRAY['paper', 'inks', 'labels', 'pallets'])[1 + i % 4], \
                (ARRAY['certificate', 'report', 'report', 'artwork', 'purchase_order', 'other', 'report'])[1 + i % 7], \
                ARRAY['loadtest', (ARRAY['spring', 'summer', 'autumn', 'winter'])[1 + i % 4], 'batch-' || (i % 50)], \
                CASE WHEN i % 7 = 4 THEN 'customer' ELSE 'staff' END, \
                now() - make_interval(mins => i * 31), now() - make_interval(mins => i * 31) \
         FROM generate_series(1, $2::int) i \
         LEFT JOIN LATERAL (SELECT id FROM orders WHERE customer_id = $1 AND number = 'LT-' || lpad((i % 1000 + 1)::text, 7, '0')) o \
           ON true",
    ),
    (
        "insert versions",
        "INSERT INTO document_versions (document_id, customer_id, version, file_name, content_type, size_bytes, \
                                        storage_key, created_at) \
         SELECT d.id, d.customer_id, 1, 'document-' || left(d.id::text, 8) || '.pdf', 'application/pdf', 120000, \
                'v1/' || left(h, 2) || '/' || h, d.created_at \
         FROM documents d, LATERAL (SELECT md5(d.id::text) AS h) k \
         WHERE d.customer_id = $1 AND 'loadtest' = ANY(d.tags)",
    ),
];

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
    if args.customers.is_some() {
        return crate::tenants::run(&args).await;
    }
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
    let documents = i32::try_from(args.documents)?;
    for (what, sql) in DOCUMENT_STEPS {
        let step = Instant::now();
        let sql = sql.replace("$1", "$1::text::uuid");
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            if sql.contains("$2") { vec![&customer, &documents] } else { vec![&customer] };
        let rows = tx.execute(sql.as_str(), &params).await?;
        eprintln!("{what}: {rows} rows in {:.1} s", step.elapsed().as_secs_f64());
    }
    // The open-orders-by-stage counts are kept by a trigger the bulk load bypassed.
    tx.batch_execute("SELECT portal_order_counts_rebuild()").await?;
    tx.commit().await?;
    // Fresh statistics, so the first benchmark request is planned like the thousandth.
    client
        .batch_execute(
            "ANALYZE orders; ANALYZE order_stage_history; ANALYZE events; ANALYZE documents; ANALYZE document_versions",
        )
        .await?;
    println!(
        "{} now has {} benchmark orders and {} benchmark documents ({:.1} s)",
        args.customer,
        args.orders,
        args.documents,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
