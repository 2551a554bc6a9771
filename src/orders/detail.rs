//! One order as staff see it: whose it is, its workflow's stages, and the whole
//! timeline with the internal notes customers never see.

use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::orders::{OrderRow, StageStep};

/// A stage of the order's workflow, as the forms offer it.
pub struct Stage {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub terminal: bool,
}

impl Stage {
    pub(crate) fn try_from_row(s: &Row) -> Result<Self, DbError> {
        Ok(Stage {
            id: s.try_get("id")?,
            name: s.try_get("name")?,
            position: s.try_get("position")?,
            terminal: s.try_get("terminal")?,
        })
    }
}

/// The order with what only staff need: whose it is and the stage's id.
pub struct StaffOrder {
    pub row: OrderRow,
    pub stage_id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub tracking: Option<(String, String, Option<String>)>,
}

impl StaffOrder {
    pub fn status_badge(&self) -> (&'static str, &'static str) {
        self.row.staff_badge()
    }
}

/// One step of the timeline; `internal_note` is for staff eyes only.
pub struct TimelineEntry {
    pub stage: String,
    pub customer_note: Option<String>,
    pub internal_note: Option<String>,
    pub actor: Option<String>,
    pub reached_at: OffsetDateTime,
}

/// Everything the staff order page shows.
pub struct StaffDetail {
    pub order: StaffOrder,
    pub steps: Vec<StageStep>,
    pub stages: Vec<Stage>,
    pub timeline: Vec<TimelineEntry>,
}

/// The order, read through the staff scope; `None` when there is no such order.
#[tracing::instrument(level = "debug", skip_all, fields(order = %id))]
pub async fn staff_detail(db: &Scope, id: Uuid) -> Result<Option<StaffDetail>, DbError> {
    let Some(row) = crate::orders::find(db, id).await? else {
        return Ok(None);
    };
    let Some(owner) = db
        .query_opt(
            "SELECT o.stage_id, o.customer_id, c.name AS customer_name FROM orders o \
             JOIN customers c ON c.id = o.customer_id WHERE o.id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let workflow: Uuid = row.try_get("workflow_id")?;
    let tracking = OrderRow::try_tracking(&row)?;
    let order = StaffOrder {
        row: OrderRow::try_from_row(&row)?,
        stage_id: owner.try_get("stage_id")?,
        customer_id: owner.try_get("customer_id")?,
        customer_name: owner.try_get("customer_name")?,
        tracking,
    };
    let stages = db
        .query(
            "SELECT id, name, position, terminal FROM workflow_stages WHERE workflow_id = $1 ORDER BY position",
            &[&workflow],
        )
        .await?
        .iter()
        .map(Stage::try_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // The same states as the customer's order page, so both steppers agree.
    let steps =
        stages.iter().map(|s| StageStep { name: s.name.clone(), state: order.row.step_state(s.position) }).collect();
    let timeline = db
        .query(
            "SELECT h.stage_name, h.customer_note, h.reached_at, n.note AS internal_note, u.name AS actor \
             FROM order_stage_history h \
             LEFT JOIN order_internal_notes n ON n.history_id = h.id \
             LEFT JOIN users u ON u.id = h.actor_user_id \
             WHERE h.order_id = $1 ORDER BY h.reached_at DESC, h.id DESC",
            &[&id],
        )
        .await?
        .iter()
        .map(|h| {
            Ok(TimelineEntry {
                stage: h.try_get("stage_name")?,
                customer_note: h.try_get("customer_note")?,
                internal_note: h.try_get("internal_note")?,
                actor: h.try_get("actor")?,
                reached_at: h.try_get("reached_at")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(StaffDetail { order, steps, stages, timeline }))
}
