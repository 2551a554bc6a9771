//! Documents: the customer's files with their latest version, by type, order or search.

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::orders::OrderFilter;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/documents", web::get().to(index));
}

/// The `doc_type` values the schema allows, in the order the filter offers them.
const TYPES: [&str; 7] = ["contract", "certificate", "report", "artwork", "invoice_copy", "purchase_order", "other"];

pub struct LatestVersion {
    pub version: i32,
    pub file_name: String,
    pub size_bytes: i64,
}

pub struct DocumentRow {
    pub title: String,
    pub doc_type: String,
    pub order: Option<(Uuid, String)>,
    pub latest: Option<LatestVersion>,
    pub updated_at: OffsetDateTime,
}

impl DocumentRow {
    fn from_row(row: &Row) -> Self {
        let order = match (row.get::<_, Option<Uuid>>("order_id"), row.get::<_, Option<String>>("order_number")) {
            (Some(id), Some(number)) => Some((id, number)),
            _ => None,
        };
        let latest = row.get::<_, Option<i32>>("version").map(|version| LatestVersion {
            version,
            file_name: row.get("file_name"),
            size_bytes: row.get("size_bytes"),
        });
        DocumentRow {
            title: row.get("title"),
            doc_type: row.get("doc_type"),
            order,
            latest,
            updated_at: row.get("updated_at"),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    doc_type: Option<String>,
    order: Option<String>,
    q: Option<String>,
}

#[derive(TemplateSimple)]
#[template(path = "documents/index.stpl")]
struct IndexPage {
    shell: Shell,
    documents: Vec<DocumentRow>,
    types: [&'static str; 7],
    doc_type: &'static str,
    order: OrderFilter,
    q: String,
}

async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let doc_type = TYPES.into_iter().find(|t| query.doc_type.as_deref() == Some(*t)).unwrap_or("all");
    let q = query.q.as_deref().unwrap_or("").trim().chars().take(100).collect::<String>();
    let pattern = crate::db::like_pattern(&q);
    let order = OrderFilter::resolve(&cx.db, customer, query.order.as_deref()).await?;
    let documents = if matches!(order, OrderFilter::Unknown) {
        Vec::new()
    } else {
        cx.db
            .query(
                "SELECT d.title, d.doc_type, d.updated_at, d.order_id, o.number AS order_number, \
                 v.version, v.file_name, v.size_bytes \
                 FROM documents d \
                 LEFT JOIN orders o ON o.id = d.order_id \
                 LEFT JOIN LATERAL (SELECT version, file_name, size_bytes FROM document_versions dv \
                   WHERE dv.document_id = d.id ORDER BY dv.version DESC LIMIT 1) v ON true \
                 WHERE d.customer_id = $1 AND ($2 = 'all' OR d.doc_type = $2) \
                 AND ($3::uuid IS NULL OR d.order_id = $3) \
                 AND ($4 = '%%' OR d.title ILIKE $4 OR d.description ILIKE $4) \
                 ORDER BY d.updated_at DESC, d.id",
                &[&customer, &doc_type, &order.id(), &pattern],
            )
            .await?
            .iter()
            .map(DocumentRow::from_row)
            .collect()
    };
    cx.db.commit().await?;
    let title = match &order {
        OrderFilter::Found { number, .. } => format!("Documents for {number}"),
        _ => "Documents".to_owned(),
    };
    html(IndexPage {
        shell: Shell::page(&cx.viewer, title, Section::Documents, cx.flash),
        documents,
        types: TYPES,
        doc_type,
        order,
        q,
    })
}
