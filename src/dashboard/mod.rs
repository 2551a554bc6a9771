//! The customer's home page: what is open, what needs them, what changed.

use actix_web::HttpResponse;
use sailfish::TemplateSimple;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::format;
use crate::orders::OrderRow;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

/// An order reaching a stage (or getting a note), for "since your last visit".
pub struct Change {
    pub order_id: Uuid,
    pub number: String,
    pub title: String,
    pub stage: String,
    pub at: OffsetDateTime,
}

/// How many changes "since your last visit" lists.
const CHANGES_SHOWN: i64 = 8;

pub struct StageCount {
    pub stage: String,
    pub count: i64,
    pub bar: &'static str,
}

/// What the dashboard shows; each region renders from it, on the page and when pushed live.
pub struct DashboardView {
    /// Empty when pushed: see [`crate::orders::AnswerForm`].
    pub csrf: String,
    /// The viewer's sign-in before this one, if any: what "since your last visit" means.
    pub last_visit: Option<OffsetDateTime>,
    /// Timeline entries since then, newest first.
    pub changes: Vec<Change>,
    pub open_orders: i64,
    pub awaiting: Vec<OrderRow>,
    pub by_stage: Vec<StageCount>,
    pub recent: Vec<OrderRow>,
    pub open_balance: String,
    pub overdue_invoices: i64,
    pub open_tickets: i64,
    pub unread: i64,
}

crate::partial!(CardsPart, "dashboard/_cards.stpl", DashboardView);
crate::partial!(AwaitingPart, "dashboard/_awaiting.stpl", DashboardView);
crate::partial!(StagesPart, "dashboard/_stages.stpl", DashboardView);
crate::partial!(RecentPart, "dashboard/_recent.stpl", DashboardView);

/// The live regions of the dashboard, by element id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Includes the viewer's own unread notifications: never shared between users.
    Cards,
    Awaiting,
    Stages,
    /// "Since your last visit" depends on when the viewer last signed in: never shared either.
    Recent,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Cards, Part::Awaiting, Part::Stages, Part::Recent];

    pub fn id(self) -> &'static str {
        match self {
            Part::Cards => "dashboard-cards",
            Part::Awaiting => "dashboard-awaiting",
            Part::Stages => "dashboard-stages",
            Part::Recent => "dashboard-recent",
        }
    }

    pub fn parse(id: &str) -> Option<Self> {
        Part::ALL.into_iter().find(|p| p.id() == id)
    }

    /// Whether a change to `topic` (naming `user`, for notifications) can change this part for `viewer`.
    pub fn shows(self, topic: &str, user: Option<Uuid>, viewer: Uuid) -> bool {
        match self {
            Part::Cards => match topic {
                "orders" | "order_stage_history" | "invoices" | "tickets" => true,
                "notifications" => user == Some(viewer),
                _ => false,
            },
            Part::Awaiting | Part::Stages | Part::Recent => matches!(topic, "orders" | "order_stage_history"),
        }
    }

    pub fn render(self, view: &DashboardView) -> Result<String, sailfish::RenderError> {
        match self {
            Part::Cards => CardsPart { view }.render_once(),
            Part::Awaiting => AwaitingPart { view }.render_once(),
            Part::Stages => StagesPart { view }.render_once(),
            Part::Recent => RecentPart { view }.render_once(),
        }
    }
}

impl DashboardView {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn load(db: &Scope, customer: Uuid, user: Uuid) -> Result<Self, DbError> {
        let both: [&(dyn ToSql + Sync); 2] = [&customer, &user];
        let just_customer: [&(dyn ToSql + Sync); 1] = [&customer];
        let counts = db.query_one(
            "SELECT \
                   (SELECT coalesce(sum(total_cents - paid_cents), 0)::bigint FROM invoices \
                     WHERE customer_id = $1 AND status = 'open') AS open_balance, \
                   (SELECT count(*) FROM invoices WHERE customer_id = $1 AND status = 'open' \
                     AND due_on < current_date) AS overdue, \
                   (SELECT count(*) FROM tickets WHERE customer_id = $1 AND status <> 'closed') AS open_tickets, \
                   (SELECT count(*) FROM notifications WHERE user_id = $2 AND read_at IS NULL) AS unread, \
                   (SELECT min(currency) FROM invoices WHERE customer_id = $1) AS currency",
            &both,
        );
        let awaiting = async {
            db.query(
                &format!(
                    "{} WHERE o.customer_id = $1 AND o.status = 'open' AND s.awaits_customer \
                     ORDER BY o.updated_at DESC LIMIT 10",
                    OrderRow::SELECT
                ),
                &[&customer],
            )
            .await?
            .iter()
            .map(OrderRow::try_from_row)
            .collect::<Result<Vec<OrderRow>, DbError>>()
        };
        let stage_rows = db.query(
            // Kept by a trigger on orders (migration V9): constant time at any number of orders.
            "SELECT s.name AS stage, sum(c.open_orders)::bigint AS n FROM order_stage_counts c \
                 JOIN workflow_stages s ON s.id = c.stage_id \
                 WHERE c.customer_id = $1 AND c.open_orders > 0 \
                 GROUP BY s.name, s.position ORDER BY s.position, s.name",
            &just_customer,
        );
        let last_visit = async {
            Ok::<Option<OffsetDateTime>, DbError>(
                db.query_opt(
                    "SELECT created_at FROM activity_log WHERE actor_user_id = $1 AND action = 'auth.sign_in' \
                 ORDER BY id DESC OFFSET 1 LIMIT 1",
                    &[&user],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?,
            )
        };
        let recent = async {
            db.query(
                &format!("{} WHERE o.customer_id = $1 ORDER BY o.updated_at DESC, o.id LIMIT 5", OrderRow::SELECT),
                &[&customer],
            )
            .await?
            .iter()
            .map(OrderRow::try_from_row)
            .collect::<Result<Vec<OrderRow>, DbError>>()
        };
        // Independent reads go out together: one round trip for the five of them.
        let (counts, awaiting, stage_rows, last_visit, recent) =
            futures_util::future::try_join5(counts, awaiting, stage_rows, last_visit, recent).await?;
        // The open-orders card is the sum of this: one pass over the open orders, not two.
        let stage_counts = stage_rows
            .iter()
            .map(|r| Ok((r.try_get::<_, String>("stage")?, r.try_get::<_, i64>("n")?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let open_orders = stage_counts.iter().map(|(_, n)| n).sum();
        let max = stage_counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let by_stage = stage_counts
            .into_iter()
            .map(|(stage, count)| StageCount { stage, count, bar: format::width_class(count, max) })
            .collect();
        let changes = match last_visit {
            None => Vec::new(),
            Some(since) => db
                .query(
                    "SELECT h.order_id, o.number, o.title, h.stage_name, h.reached_at \
                     FROM order_stage_history h JOIN orders o ON o.id = h.order_id \
                     WHERE h.customer_id = $1 AND h.reached_at > $2 ORDER BY h.reached_at DESC, h.id DESC LIMIT $3",
                    &[&customer, &since, &CHANGES_SHOWN],
                )
                .await?
                .iter()
                .map(|r| {
                    Ok(Change {
                        order_id: r.try_get("order_id")?,
                        number: r.try_get("number")?,
                        title: r.try_get("title")?,
                        stage: r.try_get("stage_name")?,
                        at: r.try_get("reached_at")?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?,
        };
        let currency: Option<String> = counts.try_get("currency")?;
        Ok(DashboardView {
            csrf: String::new(),
            last_visit,
            changes,
            open_orders,
            awaiting,
            by_stage,
            recent,
            open_balance: format::money(counts.try_get("open_balance")?, currency.as_deref().unwrap_or("EUR")),
            overdue_invoices: counts.try_get("overdue")?,
            open_tickets: counts.try_get("open_tickets")?,
            unread: counts.try_get("unread")?,
        })
    }
}

#[derive(TemplateSimple)]
#[template(path = "dashboard/show.stpl")]
struct Dashboard {
    shell: Shell,
    first_name: String,
    view: DashboardView,
}

pub async fn show(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    let mut view = DashboardView::load(&cx.db, cx.customer.id, cx.viewer.user_id).await?;
    view.csrf = cx.viewer.csrf_token.clone();
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    html(Dashboard {
        shell: Shell::page(&cx.viewer, "Dashboard", Section::Dashboard, cx.flash).live(cursor),
        first_name: cx.viewer.name.split_whitespace().next().unwrap_or("").to_owned(),
        view,
    })
}
