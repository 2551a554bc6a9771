//! The details typed next to a file (title, type, order, tags, description),
//! checked before anything is written, and writing a document or a version.

use uuid::Uuid;

use super::upload::{Received, Stored};
use crate::db::{DbError, Scope};

/// The `doc_type` values the schema allows, in the order forms and filters offer them.
pub const TYPES: [&str; 7] =
    ["contract", "certificate", "report", "artwork", "invoice_copy", "purchase_order", "other"];
pub const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 40;

/// What the user typed, kept as typed so a refused form comes back filled in.
#[derive(Clone, Debug, Default)]
pub struct DocumentForm {
    pub title: String,
    pub description: String,
    pub doc_type: String,
    pub tags: String,
    pub order: String,
    /// Staff only: which customer the document is for.
    pub customer: String,
}

/// A form that passed every check.
pub struct Valid {
    pub title: String,
    pub description: String,
    pub doc_type: &'static str,
    pub tags: Vec<String>,
    pub order: Option<Uuid>,
}

impl DocumentForm {
    pub fn from_received(received: &Received) -> Self {
        DocumentForm {
            title: received.field("title").to_owned(),
            description: received.field("description").to_owned(),
            doc_type: received.field("doc_type").to_owned(),
            tags: received.field("tags").to_owned(),
            order: received.field("order").to_owned(),
            customer: received.field("customer").to_owned(),
        }
    }

    /// Checks the details; an empty title becomes the file's name without its extension.
    pub fn validate(&self, file_name: Option<&str>) -> Result<Valid, String> {
        let mut title = super::content::without_invisible(&self.title).split_whitespace().collect::<Vec<_>>().join(" ");
        if title.is_empty() {
            title = file_name.map(|n| n.rsplit_once('.').map_or(n, |(stem, _)| stem).to_owned()).unwrap_or_default();
        }
        if title.is_empty() {
            return Err("Give the document a title.".into());
        }
        if title.chars().count() > 200 {
            return Err("The title can be at most 200 characters.".into());
        }
        let description = self.description.trim().to_owned();
        if description.chars().count() > 2000 {
            return Err("The description can be at most 2,000 characters.".into());
        }
        let doc_type = TYPES
            .into_iter()
            .find(|t| *t == self.doc_type)
            .ok_or_else(|| "Choose what kind of document this is.".to_owned())?;
        let tags = parse_tags(&self.tags)?;
        let order = match self.order.trim() {
            "" => None,
            id => Some(Uuid::parse_str(id).map_err(|_| "Choose an order from the list.".to_owned())?),
        };
        Ok(Valid { title, description, doc_type, tags, order })
    }
}

/// Comma-separated, trimmed, lower-cased, without repeats.
pub fn parse_tags(text: &str) -> Result<Vec<String>, String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split(',').map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()) {
        if tag.is_empty() || tags.contains(&tag) {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(format!("A tag can be at most {MAX_TAG_CHARS} characters (“{tag}” is longer)."));
        }
        tags.push(tag);
    }
    if tags.len() > MAX_TAGS {
        return Err(format!("At most {MAX_TAGS} tags, please."));
    }
    Ok(tags)
}

/// Writes the document, its first version and the activity entry in the scope's
/// transaction. `None` when the order is not one of the customer's (or unknown).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    db: &Scope,
    customer: Uuid,
    valid: &Valid,
    stored: &Stored,
    by: Uuid,
    by_label: &str,
    origin: &str,
) -> Result<Option<Uuid>, DbError> {
    if let Some(order) = valid.order
        && db
            .query_opt("SELECT 1 FROM orders WHERE id = $1 AND customer_id = $2", &[&order, &customer])
            .await?
            .is_none()
    {
        return Ok(None);
    }
    let id: Uuid = db
        .query_one(
            "INSERT INTO documents (customer_id, order_id, title, description, doc_type, tags, created_by, origin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[&customer, &valid.order, &valid.title, &valid.description, &valid.doc_type, &valid.tags, &by, &origin],
        )
        .await?
        .try_get(0)?;
    stored.record_version(db, id, customer, by).await?;
    log(db, customer, id, by, by_label, "document.uploaded", &valid.title, stored, 1).await?;
    Ok(Some(id))
}

/// Adds a version to a document the scope can see and write; returns its number.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn add_version(
    db: &Scope,
    customer: Uuid,
    document: Uuid,
    title: &str,
    stored: &Stored,
    by: Uuid,
    by_label: &str,
) -> Result<i32, DbError> {
    let version = stored.record_version(db, document, customer, by).await?;
    log(db, customer, document, by, by_label, "document.version_added", title, stored, version).await?;
    Ok(version)
}

#[allow(clippy::too_many_arguments)]
async fn log(
    db: &Scope,
    customer: Uuid,
    document: Uuid,
    by: Uuid,
    by_label: &str,
    action: &str,
    title: &str,
    stored: &Stored,
    version: i32,
) -> Result<(), DbError> {
    let details = serde_json::json!({
        "title": title,
        "file_name": stored.file_name,
        "version": version,
        "size_bytes": stored.size,
    });
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES ($1, $2, $3, $4, 'document', $5, $6)",
        &[&customer, &by, &by_label, &action, &document, &details],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> DocumentForm {
        DocumentForm { doc_type: "artwork".into(), ..DocumentForm::default() }
    }

    #[test]
    fn the_title_defaults_to_the_file_name() {
        let valid = form().validate(Some("Sleeve v3.final.pdf")).unwrap();
        assert_eq!(valid.title, "Sleeve v3.final");
        assert_eq!(form().validate(None).err().as_deref(), Some("Give the document a title."));
    }

    #[test]
    fn tags_are_trimmed_lowercased_and_unique() {
        assert_eq!(
            parse_tags(" Artwork, packaging ,,ARTWORK, spring  2026").unwrap(),
            ["artwork", "packaging", "spring 2026"]
        );
        assert_eq!(parse_tags("").unwrap(), Vec::<String>::new());
        let many = (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",");
        assert!(parse_tags(&many).is_err());
        assert!(parse_tags(&"y".repeat(41)).is_err());
    }

    #[test]
    fn unknown_types_and_orders_are_refused() {
        let bad_type = DocumentForm { doc_type: "malware".into(), title: "x".into(), ..form() };
        assert!(bad_type.validate(None).is_err());
        let bad_order = DocumentForm { order: "ORD-1".into(), title: "x".into(), ..form() };
        assert_eq!(bad_order.validate(None).err().as_deref(), Some("Choose an order from the list."));
    }
}
