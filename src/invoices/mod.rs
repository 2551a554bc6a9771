//! Invoices: the list with its balance summary, and the invoice page with its lines.

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::format;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

/// Where an invoice stands for the customer. Drafts have none: they are never shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Open,
    Overdue,
    Paid,
    Void,
}

impl Standing {
    /// Overdue is not stored: an open invoice becomes overdue the day after it was due.
    pub fn of(status: &str, due_on: Date, today: Date) -> Option<Standing> {
        match status {
            "open" if due_on < today => Some(Standing::Overdue),
            "open" => Some(Standing::Open),
            "paid" => Some(Standing::Paid),
            "void" => Some(Standing::Void),
            _ => None,
        }
    }

    pub fn badge(self) -> (&'static str, &'static str) {
        match self {
            Standing::Open => ("badge", "Open"),
            Standing::Overdue => ("badge badge-danger", "Overdue"),
            Standing::Paid => ("badge badge-success", "Paid"),
            Standing::Void => ("badge badge-muted", "Void"),
        }
    }
}

pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub currency: String,
    pub standing: Standing,
    pub issued_on: Date,
    pub due_on: Date,
    pub total_cents: i64,
    pub paid_cents: i64,
}

impl InvoiceRow {
    /// `today` comes from the database so the badge and the overdue filter agree.
    const SELECT: &'static str = "SELECT i.id, i.number, i.currency, i.status, i.issued_on, i.due_on, \
         i.total_cents, i.paid_cents, i.paid_at, i.order_id, o.number AS order_number, current_date AS today \
         FROM invoices i LEFT JOIN orders o ON o.id = i.order_id";

    /// `None` for a draft, so one can never slip onto a page even if a query lets it through.
    /// An error when a column is missing or of another type (schema drift).
    fn from_row(row: &Row) -> Result<Option<Self>, tokio_postgres::Error> {
        let due_on: Date = row.try_get("due_on")?;
        let Some(standing) = Standing::of(row.try_get("status")?, due_on, row.try_get("today")?) else {
            return Ok(None);
        };
        Ok(Some(InvoiceRow {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            currency: row.try_get("currency")?,
            standing,
            issued_on: row.try_get("issued_on")?,
            due_on,
            total_cents: row.try_get("total_cents")?,
            paid_cents: row.try_get("paid_cents")?,
        }))
    }

    pub fn money(&self, cents: i64) -> String {
        format::money(cents, &self.currency)
    }

    /// A void invoice owes nothing, whatever its figures say.
    pub fn balance(&self) -> Option<String> {
        (self.standing != Standing::Void).then(|| self.money(self.total_cents - self.paid_cents))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

fn status_filter(s: Option<&str>) -> &'static str {
    match s {
        Some("open") => "open",
        Some("paid") => "paid",
        Some("overdue") => "overdue",
        _ => "all",
    }
}

#[derive(TemplateSimple)]
#[template(path = "invoices/index.stpl")]
struct IndexPage {
    shell: Shell,
    invoices: Vec<InvoiceRow>,
    status: &'static str,
    open_balance: String,
    open_count: i64,
    overdue_count: i64,
}

pub async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let status = status_filter(query.status.as_deref());
    let customer = cx.customer.id;
    let rows = cx
        .db
        .query(
            &format!(
                "{} WHERE i.customer_id = $1 AND i.status <> 'draft' \
                 AND ($2 = 'all' OR i.status = $2 OR ($2 = 'overdue' AND i.status = 'open' AND i.due_on < current_date)) \
                 ORDER BY i.issued_on DESC, i.number DESC",
                InvoiceRow::SELECT
            ),
            &[&customer, &status],
        )
        .await?;
    // The summary covers every open invoice whatever the filter; one figure per currency.
    let totals = cx
        .db
        .query(
            "SELECT currency, sum(total_cents - paid_cents)::bigint AS balance, count(*) AS open, \
             count(*) FILTER (WHERE due_on < current_date) AS overdue \
             FROM invoices WHERE customer_id = $1 AND status = 'open' GROUP BY currency ORDER BY currency",
            &[&customer],
        )
        .await?;
    cx.db.commit().await?;
    let invoices: Vec<InvoiceRow> = rows
        .iter()
        .filter_map(|r| InvoiceRow::from_row(r).transpose())
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let open_balance = if totals.is_empty() {
        format::money(0, invoices.first().map_or("EUR", |i| i.currency.as_str()))
    } else {
        totals
            .iter()
            .map(|t| Ok(format::money(t.try_get("balance")?, t.try_get("currency")?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?
            .join(" + ")
    };
    html(IndexPage {
        shell: Shell::page(&cx.viewer, "Invoices", Section::Invoices, cx.flash),
        invoices,
        status,
        open_balance,
        open_count: totals.iter().map(|t| t.try_get::<_, i64>("open")).sum::<Result<_, tokio_postgres::Error>>()?,
        overdue_count: totals
            .iter()
            .map(|t| t.try_get::<_, i64>("overdue"))
            .sum::<Result<_, tokio_postgres::Error>>()?,
    })
}

pub struct Line {
    pub description: String,
    pub quantity: String,
    pub unit_price_cents: i64,
    pub amount_cents: i64,
}

#[derive(TemplateSimple)]
#[template(path = "invoices/show.stpl")]
struct ShowPage {
    shell: Shell,
    invoice: InvoiceRow,
    order: Option<(Uuid, String)>,
    paid_at: Option<OffsetDateTime>,
    lines: Vec<Line>,
}

pub async fn show(cx: CustomerScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)?;
    let row = cx
        .db
        .query_opt(&format!("{} WHERE i.id = $1 AND i.status <> 'draft'", InvoiceRow::SELECT), &[&id])
        .await?
        .ok_or(AppError::NotFound)?;
    let invoice = InvoiceRow::from_row(&row)?.ok_or(AppError::NotFound)?;
    let order = match (row.try_get::<_, Option<Uuid>>("order_id")?, row.try_get::<_, Option<String>>("order_number")?) {
        (Some(id), Some(number)) => Some((id, number)),
        _ => None,
    };
    // numeric has no Rust type here; trim_scale drops the zeros numeric(12,3) pads with.
    let lines = cx
        .db
        .query(
            "SELECT description, trim_scale(quantity)::text AS quantity, unit_price_cents, amount_cents \
             FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
            &[&id],
        )
        .await?
        .iter()
        .map(|l| {
            Ok(Line {
                description: l.try_get("description")?,
                quantity: l.try_get("quantity")?,
                unit_price_cents: l.try_get("unit_price_cents")?,
                amount_cents: l.try_get("amount_cents")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    cx.db.commit().await?;
    html(ShowPage {
        shell: Shell::page(&cx.viewer, format!("Invoice {}", invoice.number), Section::Invoices, cx.flash),
        paid_at: row.try_get("paid_at")?,
        invoice,
        order,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn open_invoices_become_overdue_the_day_after_they_are_due() {
        let today = date!(2026 - 11 - 24);
        assert_eq!(Standing::of("open", date!(2026 - 11 - 24), today), Some(Standing::Open));
        assert_eq!(Standing::of("open", date!(2026 - 11 - 23), today), Some(Standing::Overdue));
        assert_eq!(Standing::of("paid", date!(2026 - 01 - 01), today), Some(Standing::Paid));
        assert_eq!(Standing::of("void", date!(2026 - 01 - 01), today), Some(Standing::Void));
    }

    #[test]
    fn drafts_have_no_standing() {
        assert_eq!(Standing::of("draft", date!(2026 - 12 - 31), date!(2026 - 11 - 24)), None);
        assert_eq!(Standing::of("anything", date!(2026 - 12 - 31), date!(2026 - 11 - 24)), None);
    }

    #[test]
    fn the_balance_is_what_remains_unless_void() {
        let mut invoice = InvoiceRow {
            id: Uuid::nil(),
            number: "INV-1".into(),
            currency: "EUR".into(),
            standing: Standing::Open,
            issued_on: date!(2026 - 11 - 01),
            due_on: date!(2026 - 12 - 01),
            total_cents: 10_000,
            paid_cents: 2_500,
        };
        assert_eq!(invoice.balance().as_deref(), Some("€75.00"));
        invoice.standing = Standing::Void;
        assert_eq!(invoice.balance(), None);
    }
}
