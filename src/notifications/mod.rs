//! Notifications: what happened that the viewer should know about, newest first.

use actix_web::HttpResponse;
use sailfish::TemplateSimple;
use time::OffsetDateTime;

use crate::web::{AppError, CustomerScope, Section, Shell, html};

/// Older notifications stay in the database; the page shows the most recent ones.
const SHOWN: i64 = 100;

pub struct NotificationRow {
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub unread: bool,
    pub created_at: OffsetDateTime,
}

/// Only a path on this site may become a link: other systems write this table
/// too, and the schema's check is the only other guard against `//evil.example`.
pub fn local_link(link: Option<String>) -> Option<String> {
    link.filter(|l| l.starts_with('/') && !l.starts_with("//") && !l.starts_with("/\\"))
}

#[derive(TemplateSimple)]
#[template(path = "notifications/index.stpl")]
struct IndexPage {
    shell: Shell,
    notifications: Vec<NotificationRow>,
    more: bool,
    now: OffsetDateTime,
}

pub async fn index(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    // Row-level security already limits this table to the viewer's own; the
    // filters repeat it so the (user_id, created_at) index serves the query.
    let rows = cx
        .db
        .query(
            "SELECT title, body, link, read_at IS NULL AS unread, created_at FROM notifications \
             WHERE customer_id = $1 AND user_id = $2 ORDER BY created_at DESC, id LIMIT $3",
            &[&cx.customer.id, &cx.viewer.user_id, &(SHOWN + 1)],
        )
        .await?;
    cx.db.commit().await?;
    let more = rows.len() as i64 > SHOWN;
    let notifications = rows
        .iter()
        .take(SHOWN as usize)
        .map(|r| {
            Ok(NotificationRow {
                title: r.try_get("title")?,
                body: r.try_get("body")?,
                link: local_link(r.try_get("link")?),
                unread: r.try_get("unread")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    html(IndexPage {
        shell: Shell::page(&cx.viewer, "Notifications", Section::Notifications, cx.flash),
        notifications,
        more,
        now: OffsetDateTime::now_utc(),
    })
}

#[cfg(test)]
mod tests {
    use super::local_link;

    #[test]
    fn only_local_paths_become_links() {
        assert_eq!(local_link(Some("/orders/1".into())).as_deref(), Some("/orders/1"));
        assert_eq!(local_link(Some("//evil.example".into())), None);
        assert_eq!(local_link(Some("/\\evil.example".into())), None);
        assert_eq!(local_link(Some("https://evil.example".into())), None);
        assert_eq!(local_link(None), None);
    }
}
