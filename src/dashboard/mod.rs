//! The customer's home page: what is open, what needs them, what changed.

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;

use crate::format;
use crate::orders::OrderRow;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(show));
}

pub struct StageCount {
    pub stage: String,
    pub count: i64,
    pub bar: &'static str,
}

#[derive(TemplateSimple)]
#[template(path = "dashboard/show.stpl")]
struct Dashboard {
    shell: Shell,
    first_name: String,
    open_orders: i64,
    awaiting: Vec<OrderRow>,
    by_stage: Vec<StageCount>,
    recent: Vec<OrderRow>,
    open_balance: String,
    overdue_invoices: i64,
    open_tickets: i64,
    unread: i64,
}

async fn show(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let counts = cx
        .db
        .query_one(
            "SELECT \
               (SELECT count(*) FROM orders WHERE customer_id = $1 AND status = 'open') AS open_orders, \
               (SELECT coalesce(sum(total_cents - paid_cents), 0)::bigint FROM invoices \
                 WHERE customer_id = $1 AND status = 'open') AS open_balance, \
               (SELECT count(*) FROM invoices WHERE customer_id = $1 AND status = 'open' \
                 AND due_on < current_date) AS overdue, \
               (SELECT count(*) FROM tickets WHERE customer_id = $1 AND status <> 'closed') AS open_tickets, \
               (SELECT count(*) FROM notifications WHERE user_id = $2 AND read_at IS NULL) AS unread, \
               (SELECT min(currency) FROM invoices WHERE customer_id = $1) AS currency",
            &[&customer, &cx.viewer.user_id],
        )
        .await?;
    let awaiting = cx
        .db
        .query(
            &format!(
                "{} WHERE o.customer_id = $1 AND o.status = 'open' AND s.awaits_customer \
                 ORDER BY o.updated_at DESC LIMIT 10",
                OrderRow::SELECT
            ),
            &[&customer],
        )
        .await?
        .iter()
        .map(OrderRow::from_row)
        .collect();
    let stage_rows = cx
        .db
        .query(
            "SELECT s.name AS stage, count(*) AS n FROM orders o JOIN workflow_stages s ON s.id = o.stage_id \
             WHERE o.customer_id = $1 AND o.status = 'open' \
             GROUP BY s.name, s.position ORDER BY s.position, s.name",
            &[&customer],
        )
        .await?;
    let max = stage_rows.iter().map(|r| r.get::<_, i64>("n")).max().unwrap_or(0);
    let by_stage = stage_rows
        .iter()
        .map(|r| {
            let count: i64 = r.get("n");
            StageCount { stage: r.get("stage"), count, bar: format::width_class(count, max) }
        })
        .collect();
    let recent = cx
        .db
        .query(
            &format!("{} WHERE o.customer_id = $1 ORDER BY o.updated_at DESC, o.id LIMIT 5", OrderRow::SELECT),
            &[&customer],
        )
        .await?
        .iter()
        .map(OrderRow::from_row)
        .collect();
    cx.db.commit().await?;
    let currency: Option<String> = counts.get("currency");
    html(Dashboard {
        shell: Shell::page(&cx.viewer, "Dashboard", Section::Dashboard, cx.flash),
        first_name: cx.viewer.name.split_whitespace().next().unwrap_or("").to_owned(),
        open_orders: counts.get("open_orders"),
        awaiting,
        by_stage,
        recent,
        open_balance: format::money(counts.get("open_balance"), currency.as_deref().unwrap_or("EUR")),
        overdue_invoices: counts.get("overdue"),
        open_tickets: counts.get("open_tickets"),
        unread: counts.get("unread"),
    })
}
