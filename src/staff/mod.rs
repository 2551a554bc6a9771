//! The staff back office: every customer, what is happening across them.

pub mod customers;
pub mod documents;
pub mod integrations;
pub mod orders;
pub mod security;
pub mod workflows;

use actix_web::HttpResponse;
use sailfish::TemplateSimple;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::web::{AppError, Section, Shell, StaffScope, html};

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

fn summary(row: &tokio_postgres::Row) -> CustomerSummary {
    CustomerSummary {
        id: row.get("id"),
        name: row.get("name"),
        active: row.get("active"),
        users: row.get("users"),
        open_orders: row.get("open_orders"),
        awaiting: row.get("awaiting"),
        overdue: row.get("overdue"),
        open_tickets: row.get("open_tickets"),
    }
}

pub struct ActivityItem {
    pub at: OffsetDateTime,
    pub customer: Option<String>,
    pub actor: String,
    pub action: String,
    /// The order it concerns, as (id, number), when it concerns one.
    pub order: Option<(Uuid, String)>,
    /// The customer's own words (a change request), when there are any.
    pub note: Option<String>,
    /// The document it concerns, as (id, title), when it concerns one.
    pub document: Option<(Uuid, String)>,
}

impl ActivityItem {
    pub fn describe(&self) -> &str {
        crate::activity::describe(&self.action)
    }

    /// Answers from customers are what staff act on next: they stand out.
    pub fn needs_attention(&self) -> bool {
        self.action == "order.changes_requested"
    }
}

/// What clients do across customers: the back office's live feed.
#[derive(TemplateSimple)]
#[template(path = "staff/_feed.stpl")]
pub struct FeedPart<'a> {
    pub activity: &'a [ActivityItem],
}

/// The element id of the feed on the overview page.
pub const FEED_REGION: &str = "staff-feed";

/// The latest things clients did (staff's own changes are on the pages they
/// made them on): approvals, change requests, uploads, tickets, sign-ins.
pub async fn latest_activity(db: &crate::db::Scope) -> Result<Vec<ActivityItem>, crate::db::DbError> {
    Ok(db
        .query(
            "SELECT a.created_at, c.name AS customer, a.actor_label, a.action, a.details->>'note' AS note, \
                    CASE WHEN a.subject_type = 'order' THEN a.subject_id END AS order_id, \
                    a.details->>'number' AS number, \
                    CASE WHEN a.subject_type = 'document' THEN a.subject_id END AS document_id, \
                    a.details->>'title' AS document_title \
             FROM activity_log a LEFT JOIN customers c ON c.id = a.customer_id \
             WHERE a.customer_id IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.actor_user_id AND u.customer_id IS NULL) \
             ORDER BY a.id DESC LIMIT 25",
            &[],
        )
        .await?
        .iter()
        .map(|r| ActivityItem {
            at: r.get("created_at"),
            customer: r.get("customer"),
            actor: r.get("actor_label"),
            action: r.get("action"),
            order: r.get::<_, Option<Uuid>>("order_id").zip(r.get::<_, Option<String>>("number")),
            note: r.get("note"),
            document: r.get::<_, Option<Uuid>>("document_id").zip(r.get::<_, Option<String>>("document_title")),
        })
        .collect())
}

#[derive(TemplateSimple)]
#[template(path = "staff/overview.stpl")]
struct Overview {
    shell: Shell,
    customers: Vec<CustomerSummary>,
    activity: Vec<ActivityItem>,
}

pub async fn overview(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let customers = cx
        .db
        .query(&format!("{SUMMARY} WHERE c.active ORDER BY c.name LIMIT 50"), &[])
        .await?
        .iter()
        .map(summary)
        .collect();
    let activity = latest_activity(&cx.db).await?;
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    html(Overview {
        shell: Shell::page(&cx.viewer, "Back office", Section::StaffOverview, cx.flash).live(cursor),
        customers,
        activity,
    })
}

#[derive(TemplateSimple)]
#[template(path = "staff/customers.stpl")]
struct Customers {
    shell: Shell,
    customers: Vec<CustomerSummary>,
}

pub async fn customers(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let customers = cx.db.query(&format!("{SUMMARY} ORDER BY c.name"), &[]).await?.iter().map(summary).collect();
    cx.db.commit().await?;
    html(Customers { shell: Shell::page(&cx.viewer, "Customers", Section::StaffCustomers, cx.flash), customers })
}
