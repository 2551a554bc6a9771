//! Customers as records: the back office's customer table, one customer's
//! summary and recent orders, creating a customer, and the email domains whose
//! owners may register themselves. Every function runs in the caller's scope;
//! each write and its activity-log entry go into that one transaction.

use std::net::IpAddr;

use tokio_postgres::Row;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::{DbError, Scope};
use crate::orders::OrderRow;

/// A customer with the counts the back office lists it by.
pub struct CustomerSummary {
    pub id: Uuid,
    pub name: String,
    pub active: bool,
    pub users: i64,
    pub open_orders: i64,
    pub awaiting: i64,
    pub overdue: i64,
    pub open_tickets: i64,
}

const SUMMARY: &str = "SELECT c.id, c.name, c.active, \
    (SELECT count(*) FROM users u WHERE u.customer_id = c.id) AS users, \
    (SELECT coalesce(sum(sc.open_orders), 0)::bigint FROM order_stage_counts sc WHERE sc.customer_id = c.id) AS open_orders, \
    (SELECT count(*) FROM orders o JOIN workflow_stages s ON s.id = o.stage_id \
      WHERE o.customer_id = c.id AND o.status = 'open' AND s.awaits_customer) AS awaiting, \
    (SELECT count(*) FROM invoices i WHERE i.customer_id = c.id AND i.status = 'open' AND i.due_on < current_date) AS overdue, \
    (SELECT count(*) FROM tickets t WHERE t.customer_id = c.id AND t.status = 'open') AS open_tickets \
    FROM customers c";

fn summary(row: &Row) -> Result<CustomerSummary, DbError> {
    Ok(CustomerSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        active: row.try_get("active")?,
        users: row.try_get("users")?,
        open_orders: row.try_get("open_orders")?,
        awaiting: row.try_get("awaiting")?,
        overdue: row.try_get("overdue")?,
        open_tickets: row.try_get("open_tickets")?,
    })
}

/// Which customers a table lists.
#[derive(Clone, Copy)]
pub enum Listed {
    /// Every customer, by name.
    All,
    /// The overview's: active customers by name, the first 50.
    ActiveFirst50,
}

/// The customer table.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn summaries(scope: &Scope, listed: Listed) -> Result<Vec<CustomerSummary>, DbError> {
    let sql = match listed {
        Listed::All => format!("{SUMMARY} ORDER BY c.name"),
        Listed::ActiveFirst50 => format!("{SUMMARY} WHERE c.active ORDER BY c.name LIMIT 50"),
    };
    scope.query(&sql, &[]).await?.iter().map(summary).collect()
}

/// One customer's summary.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(scope: &Scope, id: Uuid) -> Result<Option<CustomerSummary>, DbError> {
    scope.query_opt(&format!("{SUMMARY} WHERE c.id = $1"), &[&id]).await?.as_ref().map(summary).transpose()
}

/// The domains whose addresses may register themselves with `customer`, alphabetically.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn domains(scope: &Scope, customer: Uuid) -> Result<Vec<String>, DbError> {
    scope
        .query("SELECT domain FROM customer_domains WHERE customer_id = $1 ORDER BY domain", &[&customer])
        .await?
        .iter()
        .map(|r| r.try_get(0).map_err(DbError::from))
        .collect()
}

/// The customer's 50 most recently updated orders.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn recent_orders(scope: &Scope, customer: Uuid) -> Result<Vec<OrderRow>, DbError> {
    scope
        .query(
            &format!("{} WHERE o.customer_id = $1 ORDER BY o.updated_at DESC LIMIT 50", OrderRow::SELECT),
            &[&customer],
        )
        .await?
        .iter()
        .map(OrderRow::try_from_row)
        .collect()
}

/// Whether the customer exists (`active_only`: and is active).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn exists(scope: &Scope, id: Uuid, active_only: bool) -> Result<bool, DbError> {
    let sql = if active_only {
        "SELECT 1 FROM customers WHERE id = $1 AND active"
    } else {
        "SELECT 1 FROM customers WHERE id = $1"
    };
    Ok(scope.query_opt(sql, &[&id]).await?.is_some())
}

/// Creates a customer and logs it; `None` when the short name is taken (nothing written).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    scope: &Scope,
    name: &str,
    slug: &str,
    actor: &Viewer,
    ip: Option<IpAddr>,
) -> Result<Option<Uuid>, DbError> {
    let inserted = scope
        .query_opt(
            "INSERT INTO customers (name, slug) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING RETURNING id",
            &[&name, &slug],
        )
        .await?;
    let Some(row) = inserted else { return Ok(None) };
    let id: Uuid = row.try_get(0)?;
    scope
        .execute(
            "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, ip) \
             VALUES ($1, $2, $3, 'customer.created', 'customer', $1, $4)",
            &[&id, &actor.user_id, &actor.email, &ip],
        )
        .await?;
    Ok(Some(id))
}

/// Lets addresses at `domain` register themselves with `customer`, and logs it;
/// `false` when the domain already belongs to a customer (nothing written).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn add_domain(
    scope: &Scope,
    customer: Uuid,
    domain: &str,
    actor: &Viewer,
    ip: Option<IpAddr>,
) -> Result<bool, DbError> {
    let added = scope
        .query_opt(
            "INSERT INTO customer_domains (domain, customer_id) VALUES ($1, $2) ON CONFLICT (domain) DO NOTHING RETURNING 1",
            &[&domain, &customer],
        )
        .await?;
    if added.is_none() {
        return Ok(false);
    }
    log_domain(scope, customer, "customer.domain_added", domain, actor, ip).await?;
    Ok(true)
}

/// Stops self-registration for `domain` at `customer`, and logs it; `false` when it was not theirs.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remove_domain(
    scope: &Scope,
    customer: Uuid,
    domain: &str,
    actor: &Viewer,
    ip: Option<IpAddr>,
) -> Result<bool, DbError> {
    let removed = scope
        .execute("DELETE FROM customer_domains WHERE customer_id = $1 AND domain = $2", &[&customer, &domain])
        .await?;
    if removed == 0 {
        return Ok(false);
    }
    log_domain(scope, customer, "customer.domain_removed", domain, actor, ip).await?;
    Ok(true)
}

async fn log_domain(
    scope: &Scope,
    customer: Uuid,
    action: &str,
    domain: &str,
    actor: &Viewer,
    ip: Option<IpAddr>,
) -> Result<(), DbError> {
    scope
        .execute(
            "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, ip, details) \
             VALUES ($1, $2, $3, $4, 'customer', $5, jsonb_build_object('domain', $6::text))",
            &[&customer, &actor.user_id, &actor.email, &action, &ip, &domain],
        )
        .await?;
    Ok(())
}
