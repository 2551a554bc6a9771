//! `setup --customers N --users M`: N load-test customers with M users each, a few orders each
//! (with timelines, in stages), and one session per user.
//!
//! No password is set for these users (`password_hash` NULL: nobody can sign in as them with
//! one) and no Argon2 runs: each session is minted the way a sign-in mints it, with the portal
//! library's own `auth::session::random_token()` / `token_hash()` and the same SQL entry point
//! (`portal_session_create`, which also writes the `auth.sign_in` activity entry, its method
//! recorded as `loadtest`). Nothing in the server changes: no backdoor, no special cost setting.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::Instant;

use portal::auth::session::{random_token, token_hash};

use crate::AnyError;
use crate::fleet::SessionLine;
use crate::setup::SetupArgs;

/// Idle and absolute lifetime of a minted session, in seconds: longer than the portal's default
/// (2 h / 12 h) so a long benchmark day does not outlive them.
const IDLE_SECONDS: i32 = 12 * 3600;
const ABSOLUTE_SECONDS: i32 = 24 * 3600;

/// Customers' slugs: `lt-0001`; wider when there are more than 9,999.
pub fn slug(i: u32, customers: u32) -> String {
    let width = customers.to_string().len().max(4);
    format!("lt-{i:0width$}")
}

/// The statements, in order, in one transaction. `$1` customers, `$2` users per customer,
/// `$3` orders per customer, `$4` slug width.
const STEPS: &[(&str, &str)] = &[
    // With triggers on (cascades are triggers): earlier load-test customers and all they own.
    ("remove earlier load-test customers", "DELETE FROM customers WHERE slug LIKE 'lt-%'"),
    // A bulk load is not news: without this every row would wake the live layer.
    ("triggers off for the bulk load", "SET LOCAL session_replication_role = replica"),
    (
        "insert customers",
        "INSERT INTO customers (name, slug) \
         SELECT 'Load-test customer ' || i, 'lt-' || lpad(i::text, $4::int, '0') \
         FROM generate_series(1, $1::int) i",
    ),
    (
        "insert users",
        "INSERT INTO users (customer_id, email, name, role, password_hash) \
         SELECT c.id, 'user' || lpad(j::text, 4, '0') || '@' || c.slug || '.loadtest.example', \
                'Load-test user ' || j || ' of ' || c.slug, \
                CASE WHEN j = 1 THEN 'customer_admin' ELSE 'customer_member' END, NULL \
         FROM customers c, generate_series(1, $2::int) j WHERE c.slug LIKE 'lt-%'",
    ),
    (
        "insert orders",
        "INSERT INTO orders (customer_id, number, title, reference, workflow_id, stage_id, status, expected_on, \
                             created_at, updated_at) \
         SELECT c.id, 'LT-' || lpad(k::text, 4, '0'), \
                (ARRAY['Flyers', 'Brochures', 'Posters', 'Labels', 'Business cards', 'Banners'])[1 + k % 6] \
                    || ' for ' || c.slug, \
                'PO-' || (1000 + k), s.workflow_id, s.id, \
                CASE WHEN s.terminal THEN 'completed' ELSE 'open' END, current_date + k, \
                now() - make_interval(hours => k), now() - make_interval(hours => k) \
         FROM customers c CROSS JOIN generate_series(1, $3::int) k \
         JOIN LATERAL (SELECT st.* FROM workflow_stages st JOIN workflows w ON w.id = st.workflow_id \
                       WHERE w.name = 'Print job' ORDER BY st.position \
                       OFFSET ((k - 1) % (SELECT count(*) FROM workflow_stages x JOIN workflows y \
                                          ON y.id = x.workflow_id WHERE y.name = 'Print job')) LIMIT 1) s ON true \
         WHERE c.slug LIKE 'lt-%'",
    ),
    (
        "insert timelines",
        "INSERT INTO order_stage_history (order_id, customer_id, stage_id, stage_name, customer_note, reached_at) \
         SELECT o.id, o.customer_id, st.id, st.name, \
                CASE WHEN st.position = cur.position THEN 'Reached ' || st.name || '.' END, \
                o.created_at + make_interval(mins => st.position) \
         FROM orders o JOIN customers c ON c.id = o.customer_id AND c.slug LIKE 'lt-%' \
         JOIN workflow_stages cur ON cur.id = o.stage_id \
         JOIN workflow_stages st ON st.workflow_id = o.workflow_id AND st.position <= cur.position",
    ),
];

/// Every load-test user, with the order they follow: user j (from 1, by email) of a customer
/// follows its order `LT-000k`, k = (j - 1) mod W + 1.
const WATCHERS: &str = "SELECT c.id::text, u.id::text, o.id::text \
     FROM (SELECT u.*, row_number() OVER (PARTITION BY u.customer_id ORDER BY u.email) AS j FROM users u) u \
     JOIN customers c ON c.id = u.customer_id AND c.slug LIKE 'lt-%' \
     JOIN orders o ON o.customer_id = c.id AND o.number = 'LT-' || lpad((((u.j - 1) % $1::int) + 1)::text, 4, '0') \
     ORDER BY c.slug, u.email";

/// Mints all sessions in one statement, through the same function a sign-in uses.
const MINT: &str = "SELECT count(portal_session_create(t.u::uuid, t.h, t.c, false, $4::int, $5::int, NULL, \
                                               'portal-loadtest setup', 'loadtest')) \
     FROM unnest($1::text[], $2::bytea[], $3::text[]) AS t(u, h, c)";

pub async fn run(args: &SetupArgs) -> Result<(), AnyError> {
    let customers = args.customers.ok_or("--customers is needed")?;
    let out = args.sessions_out.as_ref().ok_or("--customers needs --sessions-out PATH")?;
    if args.watched_orders > args.orders_per_customer {
        return Err("--watched-orders cannot exceed --orders-per-customer".into());
    }
    let (mut client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    let tx = client.transaction().await?;
    let n = i32::try_from(customers)?;
    let m = i32::try_from(args.users)?;
    let k = i32::try_from(args.orders_per_customer)?;
    let width = i32::try_from(slug(customers, customers).len() - 3)?;
    for (what, sql) in STEPS {
        let step = Instant::now();
        // The parameters are integers from the command line: written into the statement.
        let sql = sql.replace("$1", &n.to_string()).replace("$2", &m.to_string()).replace("$3", &k.to_string());
        let rows = tx.execute(sql.replace("$4", &width.to_string()).as_str(), &[]).await.map_err(pg)?;
        eprintln!("{what}: {rows} rows in {:.1} s", step.elapsed().as_secs_f64());
    }
    let step = Instant::now();
    let watched = i32::try_from(args.watched_orders)?;
    let rows = tx.query(WATCHERS, &[&watched]).await.map_err(pg)?;
    let mut lines = Vec::with_capacity(rows.len());
    let (mut users, mut hashes, mut csrf) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        // The cookie value is what a sign-in sets: 256 random bits; the database gets its SHA-256.
        let token = random_token();
        users.push(row.get::<_, String>(1));
        hashes.push(token_hash(&token));
        csrf.push(random_token());
        lines.push(SessionLine {
            customer: row.get(0),
            user: row.get(1),
            order: row.get(2),
            cookie: format!("portal_session={token}"),
        });
    }
    let minted: i64 =
        tx.query_one(MINT, &[&users, &hashes, &csrf, &IDLE_SECONDS, &ABSOLUTE_SECONDS]).await.map_err(pg)?.get(0);
    eprintln!("mint sessions: {minted} in {:.1} s", step.elapsed().as_secs_f64());
    // The open-orders-by-stage counts are kept by a trigger the bulk load bypassed.
    tx.batch_execute("SELECT portal_order_counts_rebuild()").await.map_err(pg)?;
    tx.commit().await?;
    client
        .batch_execute(
            "ANALYZE customers; ANALYZE users; ANALYZE sessions; ANALYZE orders; ANALYZE order_stage_history",
        )
        .await?;

    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(out)?;
    writeln!(
        file,
        "# customer_id user_id order_id cookie (portal-loadtest setup --customers {customers} --users {})",
        args.users
    )?;
    for line in &lines {
        writeln!(file, "{}", line.to_line())?;
    }
    file.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{customers} load-test customers × {} users, {} orders each ({} followed), {} sessions in {} ({seconds:.1} s)",
        args.users,
        args.orders_per_customer,
        args.watched_orders,
        lines.len(),
        out.display()
    );
    if let Some(url) = &args.url {
        check_cookie(url.trim_end_matches('/'), lines.first().ok_or("no session was minted")?).await?;
    }
    Ok(())
}

/// A database error with PostgreSQL's own message (tokio-postgres' Display says only "db error").
pub fn pg(e: tokio_postgres::Error) -> AnyError {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {}{}",
            db.code().code(),
            db.message(),
            db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        )
        .into(),
        None => e.into(),
    }
}

/// A minted cookie must really sign in: GET /orders answers 200, not a redirect to sign-in.
pub async fn check_cookie(url: &str, line: &SessionLine) -> Result<(), AnyError> {
    let client = crate::fleet::http_client(1)?;
    crate::fleet::get_page(&client, url, "/orders", &line.cookie)
        .await
        .map_err(|e| format!("a minted session: {e}"))?;
    eprintln!("a minted session's GET /orders answered 200");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_are_fixed_width_and_grow_past_9999() {
        assert_eq!(slug(1, 20), "lt-0001");
        assert_eq!(slug(1000, 1000), "lt-1000");
        assert_eq!(slug(7, 12_000), "lt-00007");
    }
}
