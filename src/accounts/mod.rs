//! Accounts: command-line administration, the company's team, the user's settings.

pub mod admin;

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Role;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/team", web::get().to(team)).route("/settings", web::get().to(settings));
}

pub struct Member {
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub is_viewer: bool,
}

fn role_label(role: &str) -> &'static str {
    Role::parse(role).map_or("Unknown role", Role::label)
}

#[derive(TemplateSimple)]
#[template(path = "accounts/team.stpl")]
struct TeamPage {
    shell: Shell,
    members: Vec<Member>,
}

async fn team(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    let rows = cx
        .db
        .query(
            "SELECT id, name, email, role, disabled_at IS NULL AS active FROM users \
             WHERE customer_id = $1 ORDER BY disabled_at IS NOT NULL, lower(name), email",
            &[&cx.customer.id],
        )
        .await?;
    cx.db.commit().await?;
    let members = rows
        .iter()
        .map(|r| Member {
            name: r.get("name"),
            email: r.get("email"),
            role: role_label(r.get("role")),
            active: r.get("active"),
            is_viewer: r.get::<_, Uuid>("id") == cx.viewer.user_id,
        })
        .collect();
    html(TeamPage { shell: Shell::page(&cx.viewer, "Team", Section::Team, cx.flash), members })
}

pub struct SessionRow {
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub this_device: bool,
}

/// Cuts `s` to at most `max` characters, marking the cut with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[derive(TemplateSimple)]
#[template(path = "accounts/settings.stpl")]
struct SettingsPage {
    shell: Shell,
    name: String,
    email: String,
    role: &'static str,
    company: String,
    sessions: Vec<SessionRow>,
}

async fn settings(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    // The same conditions as sign-in uses to accept a session: expired ones are not "active".
    let rows = cx
        .db
        .query(
            "SELECT id, created_at, last_seen_at, host(ip) AS ip, user_agent FROM sessions \
             WHERE customer_id = $1 AND user_id = $2 \
             AND expires_at > now() AND last_seen_at > now() - idle_timeout \
             ORDER BY last_seen_at DESC, created_at DESC",
            &[&cx.customer.id, &cx.viewer.user_id],
        )
        .await?;
    cx.db.commit().await?;
    let sessions = rows
        .iter()
        .map(|r| SessionRow {
            created_at: r.get("created_at"),
            last_seen_at: r.get("last_seen_at"),
            ip: r.get("ip"),
            user_agent: r.get::<_, Option<String>>("user_agent").map(|ua| shorten(&ua, 60)).filter(|ua| !ua.is_empty()),
            this_device: r.get::<_, Uuid>("id") == cx.viewer.session_id,
        })
        .collect();
    html(SettingsPage {
        shell: Shell::page(&cx.viewer, "Settings", Section::Settings, cx.flash),
        name: cx.viewer.name.clone(),
        email: cx.viewer.email.clone(),
        role: cx.viewer.role.label(),
        company: cx.customer.name.clone(),
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_to_length() {
        assert_eq!(shorten("curl/8.5.0", 60), "curl/8.5.0");
        let long = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let short = shorten(long, 60);
        assert_eq!(short, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML,…");
        assert!(short.chars().count() <= 60);
        assert_eq!(shorten("ééééé", 3), "éé…");
    }

    #[test]
    fn unknown_roles_are_labelled_not_hidden() {
        assert_eq!(role_label("customer_admin"), "Customer admin");
        assert_eq!(role_label("root"), "Unknown role");
    }
}
