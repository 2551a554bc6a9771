//! Support tickets: the list (optionally about one order) and the conversation.

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::orders::OrderFilter;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub fn status_badge(status: &str) -> (&'static str, &'static str) {
    match status {
        "open" => ("badge badge-warning", "Open"),
        "answered" => ("badge", "Answered"),
        _ => ("badge badge-muted", "Closed"),
    }
}

pub struct TicketRow {
    pub id: Uuid,
    pub number: String,
    pub subject: String,
    pub status: String,
    pub order: Option<(Uuid, String)>,
    pub invoice: Option<(Uuid, String)>,
    pub updated_at: OffsetDateTime,
}

impl TicketRow {
    /// Draft invoices are not shown to customers, so a ticket does not link to one.
    const SELECT: &'static str = "SELECT t.id, t.number, t.subject, t.status, t.updated_at, \
         o.id AS order_id, o.number AS order_number, i.id AS invoice_id, i.number AS invoice_number \
         FROM tickets t LEFT JOIN orders o ON o.id = t.order_id \
         LEFT JOIN invoices i ON i.id = t.invoice_id AND i.status <> 'draft'";

    /// An error when a column is missing or of another type (schema drift).
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let pair = |id: &str, number: &str| -> Result<Option<(Uuid, String)>, tokio_postgres::Error> {
            Ok(match (row.try_get::<_, Option<Uuid>>(id)?, row.try_get::<_, Option<String>>(number)?) {
                (Some(id), Some(number)) => Some((id, number)),
                _ => None,
            })
        };
        Ok(TicketRow {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            subject: row.try_get("subject")?,
            status: row.try_get("status")?,
            order: pair("order_id", "order_number")?,
            invoice: pair("invoice_id", "invoice_number")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub fn badge(&self) -> (&'static str, &'static str) {
        status_badge(&self.status)
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    order: Option<String>,
}

#[derive(TemplateSimple)]
#[template(path = "tickets/index.stpl")]
struct IndexPage {
    shell: Shell,
    tickets: Vec<TicketRow>,
    order: OrderFilter,
}

pub async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let order = OrderFilter::resolve(&cx.db, customer, query.order.as_deref()).await?;
    let tickets = if matches!(order, OrderFilter::Unknown) {
        Vec::new()
    } else {
        cx.db
            .query(
                &format!(
                    "{} WHERE t.customer_id = $1 AND ($2::uuid IS NULL OR t.order_id = $2) \
                     ORDER BY t.updated_at DESC, t.id",
                    TicketRow::SELECT
                ),
                &[&customer, &order.id()],
            )
            .await?
            .iter()
            .map(TicketRow::from_row)
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?
    };
    cx.db.commit().await?;
    let title = match &order {
        OrderFilter::Found { number, .. } => format!("Tickets about {number}"),
        _ => "Tickets".to_owned(),
    };
    html(IndexPage { shell: Shell::page(&cx.viewer, title, Section::Tickets, cx.flash), tickets, order })
}

pub struct Message {
    pub author: String,
    pub from_staff: bool,
    pub paragraphs: Vec<String>,
    pub created_at: OffsetDateTime,
}

/// A message body as paragraphs: blank lines separate them, so text typed in a
/// plain textarea reads the same without any markup.
pub fn paragraphs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for line in body.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current.join("\n"));
    }
    out
}

#[derive(TemplateSimple)]
#[template(path = "tickets/show.stpl")]
struct ShowPage {
    shell: Shell,
    ticket: TicketRow,
    messages: Vec<Message>,
}

pub async fn show(cx: CustomerScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| AppError::NotFound)?;
    let row =
        cx.db.query_opt(&format!("{} WHERE t.id = $1", TicketRow::SELECT), &[&id]).await?.ok_or(AppError::NotFound)?;
    let ticket = TicketRow::from_row(&row)?;
    // Staff users are outside the customer's scope, so their names never join: they read as "Support".
    let messages = cx
        .db
        .query(
            "SELECT u.name AS author, m.from_staff, m.body, m.created_at FROM ticket_messages m \
             LEFT JOIN users u ON u.id = m.author_id \
             WHERE m.ticket_id = $1 ORDER BY m.created_at, m.id",
            &[&id],
        )
        .await?
        .iter()
        .map(|m| {
            let from_staff: bool = m.try_get("from_staff")?;
            let author = if from_staff {
                "Support".to_owned()
            } else {
                m.try_get::<_, Option<String>>("author")?.unwrap_or_else(|| "Former team member".to_owned())
            };
            Ok(Message {
                author,
                from_staff,
                paragraphs: paragraphs(m.try_get("body")?),
                created_at: m.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    cx.db.commit().await?;
    html(ShowPage {
        shell: Shell::page(&cx.viewer, format!("{} {}", ticket.number, ticket.subject), Section::Tickets, cx.flash),
        ticket,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_separate_paragraphs() {
        assert_eq!(paragraphs("Hello,\n\nline one\nline two  \n\n\n  \nBye"), ["Hello,", "line one\nline two", "Bye"]);
        assert!(paragraphs(" \n ").is_empty());
    }

    #[test]
    fn every_status_has_a_label() {
        assert_eq!(status_badge("open").1, "Open");
        assert_eq!(status_badge("answered").1, "Answered");
        assert_eq!(status_badge("closed").1, "Closed");
    }
}
