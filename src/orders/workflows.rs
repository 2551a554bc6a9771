//! Workflows and their stages: reading them with how many orders use them, and
//! every change staff make to them. Each change and its staff-only activity entry
//! go into the caller's transaction; the caller commits.
//!
//! Orders keep their history through all of it: a timeline entry keeps the stage's
//! name as it was (`order_stage_history.stage_name`, never rewritten here), and
//! removing a stage only clears the entries' link to it (`ON DELETE SET NULL`).

use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{DbError, Scope};
use crate::orders::moves::Actor;

/// A stage as the pages show it, with how many orders are at it.
pub struct StageInfo {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    pub awaits_customer: bool,
    pub terminal: bool,
    pub orders: i64,
}

/// A workflow with its stages in order and how many orders use it.
pub struct WorkflowInfo {
    pub id: Uuid,
    pub name: String,
    pub orders: i64,
    pub open: i64,
    pub stages: Vec<StageInfo>,
}

fn stage_info(r: &Row) -> Result<StageInfo, DbError> {
    Ok(StageInfo {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        position: r.try_get("position")?,
        awaits_customer: r.try_get("awaits_customer")?,
        terminal: r.try_get("terminal")?,
        orders: r.try_get("orders")?,
    })
}

const STAGES: &str = "SELECT s.id, s.workflow_id, s.name, s.position, s.awaits_customer, s.terminal, \
     (SELECT count(*) FROM orders o WHERE o.stage_id = s.id) AS orders FROM workflow_stages s";

const WORKFLOWS: &str = "SELECT w.id, w.name, \
     (SELECT count(*) FROM orders o WHERE o.workflow_id = w.id) AS orders, \
     (SELECT count(*) FROM orders o WHERE o.workflow_id = w.id AND o.status = 'open') AS open \
     FROM workflows w";

/// Every workflow, by name, with its stages.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn all(db: &Scope) -> Result<Vec<WorkflowInfo>, DbError> {
    let mut workflows = db
        .query(&format!("{WORKFLOWS} ORDER BY lower(w.name), w.id"), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(WorkflowInfo {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                orders: r.try_get("orders")?,
                open: r.try_get("open")?,
                stages: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    for r in db.query(&format!("{STAGES} ORDER BY s.workflow_id, s.position"), &[]).await? {
        let workflow: Uuid = r.try_get("workflow_id")?;
        if let Some(w) = workflows.iter_mut().find(|w| w.id == workflow) {
            w.stages.push(stage_info(&r)?);
        }
    }
    Ok(workflows)
}

/// One workflow with its stages.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %id))]
pub async fn one(db: &Scope, id: Uuid) -> Result<Option<WorkflowInfo>, DbError> {
    let Some(r) = db.query_opt(&format!("{WORKFLOWS} WHERE w.id = $1"), &[&id]).await? else {
        return Ok(None);
    };
    let stages = db
        .query(&format!("{STAGES} WHERE s.workflow_id = $1 ORDER BY s.position"), &[&id])
        .await?
        .iter()
        .map(stage_info)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(WorkflowInfo {
        id,
        name: r.try_get("name")?,
        orders: r.try_get("orders")?,
        open: r.try_get("open")?,
        stages,
    }))
}

/// A staff-only activity entry about a workflow (no customer: workflows are the business's own).
async fn log(
    db: &Scope,
    actor: &Actor<'_>,
    action: &str,
    workflow: Uuid,
    details: serde_json::Value,
) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES (NULL, $1, $2, $3, 'workflow', $4, $5)",
        &[&actor.user_id, &actor.label, &action, &workflow, &details],
    )
    .await?;
    Ok(())
}

/// Workflow names are unique, compared without case; this lock makes the check and the
/// write one step, whoever else renames or creates a workflow at the same moment.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_names(db: &Scope) -> Result<(), DbError> {
    db.execute("LOCK TABLE workflows IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
    Ok(())
}

/// Whether another workflow (not `except`) has this name, compared without case.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn name_taken(db: &Scope, name: &str, except: Option<Uuid>) -> Result<bool, DbError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM workflows WHERE lower(name) = lower($1) AND id IS DISTINCT FROM $2",
            &[&name, &except],
        )
        .await?
        .is_some())
}

/// Creates a workflow with these stages in order (the last one completing orders if `last_terminal`).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    db: &Scope,
    actor: &Actor<'_>,
    name: &str,
    stages: &[String],
    last_terminal: bool,
) -> Result<Uuid, DbError> {
    let id: Uuid = db.query_one("INSERT INTO workflows (name) VALUES ($1) RETURNING id", &[&name]).await?.try_get(0)?;
    let last = i32::try_from(stages.len()).unwrap_or(i32::MAX) - 1;
    db.execute(
        "INSERT INTO workflow_stages (workflow_id, position, name, terminal) \
         SELECT $1, (t.n - 1)::int, t.name, $3 AND (t.n - 1)::int = $4 FROM unnest($2::text[]) WITH ORDINALITY AS t (name, n)",
        &[&id, &stages, &last_terminal, &last],
    )
    .await?;
    log(db, actor, "workflow.created", id, serde_json::json!({ "name": name, "stages": stages })).await?;
    Ok(id)
}

/// Locks the workflow for a rename and returns its name.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %id))]
pub async fn lock_for_rename(db: &Scope, id: Uuid) -> Result<Option<String>, DbError> {
    let row = db.query_opt("SELECT name FROM workflows WHERE id = $1 FOR UPDATE", &[&id]).await?;
    Ok(row.map(|r| r.try_get("name")).transpose()?)
}

#[tracing::instrument(level = "debug", skip_all, fields(workflow = %id))]
pub async fn rename(db: &Scope, actor: &Actor<'_>, id: Uuid, from: &str, to: &str) -> Result<(), DbError> {
    db.execute("UPDATE workflows SET name = $2 WHERE id = $1", &[&id, &to]).await?;
    log(db, actor, "workflow.renamed", id, serde_json::json!({ "from": from, "to": to })).await
}

/// Locks the workflow for a change to its stages (two changes to one workflow wait for each other;
/// orders may still be created in it meanwhile) and returns its name.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %id))]
pub async fn lock(db: &Scope, id: Uuid) -> Result<Option<String>, DbError> {
    let row = db.query_opt("SELECT name FROM workflows WHERE id = $1 FOR NO KEY UPDATE", &[&id]).await?;
    Ok(row.map(|r| r.try_get("name")).transpose()?)
}

/// A stage of the locked workflow, locked too.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %stage))]
pub async fn lock_stage(db: &Scope, workflow: Uuid, stage: Uuid) -> Result<Option<StageInfo>, DbError> {
    let row = db
        .query_opt(&format!("{STAGES} WHERE s.id = $1 AND s.workflow_id = $2 FOR UPDATE OF s"), &[&stage, &workflow])
        .await?;
    row.as_ref().map(stage_info).transpose()
}

/// Whether another stage of the workflow (not `except`) has this name, compared without case.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn stage_name_taken(db: &Scope, workflow: Uuid, name: &str, except: Option<Uuid>) -> Result<bool, DbError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM workflow_stages WHERE workflow_id = $1 AND lower(name) = lower($2) AND id IS DISTINCT FROM $3",
            &[&workflow, &name, &except],
        )
        .await?
        .is_some())
}

/// How many stages the workflow has.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %workflow))]
pub async fn stage_count(db: &Scope, workflow: Uuid) -> Result<i64, DbError> {
    Ok(db.query_one("SELECT count(*) FROM workflow_stages WHERE workflow_id = $1", &[&workflow]).await?.try_get(0)?)
}

/// How many orders are at the stage.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %stage))]
pub async fn orders_at(db: &Scope, stage: Uuid) -> Result<i64, DbError> {
    Ok(db.query_one("SELECT count(*) FROM orders WHERE stage_id = $1", &[&stage]).await?.try_get(0)?)
}

/// A stage's name and meaning.
pub struct StageFlags<'a> {
    pub name: &'a str,
    pub awaits_customer: bool,
    pub terminal: bool,
}

/// Adds a stage at the end of the locked workflow `name`d `workflow_name`; returns its id.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %workflow))]
pub async fn add_stage(
    db: &Scope,
    actor: &Actor<'_>,
    workflow: Uuid,
    workflow_name: &str,
    stage: &StageFlags<'_>,
) -> Result<Uuid, DbError> {
    let id: Uuid = db
        .query_one(
            "INSERT INTO workflow_stages (workflow_id, position, name, awaits_customer, terminal) \
             SELECT $1, coalesce(max(position) + 1, 0), $2, $3, $4 FROM workflow_stages WHERE workflow_id = $1 \
             RETURNING id",
            &[&workflow, &stage.name, &stage.awaits_customer, &stage.terminal],
        )
        .await?
        .try_get(0)?;
    let details = serde_json::json!({
        "workflow": workflow_name, "stage": stage.name, "awaits_customer": stage.awaits_customer,
        "terminal": stage.terminal,
    });
    log(db, actor, "workflow.stage_added", workflow, details).await?;
    Ok(id)
}

/// Changes a locked stage (only the stage: its orders' statuses and their timelines stay as they are)
/// and logs which fields `changed`.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %current.id))]
pub async fn change_stage(
    db: &Scope,
    actor: &Actor<'_>,
    workflow: Uuid,
    workflow_name: &str,
    current: &StageInfo,
    stage: &StageFlags<'_>,
    changed: &[&str],
) -> Result<(), DbError> {
    db.execute(
        "UPDATE workflow_stages SET name = $2, awaits_customer = $3, terminal = $4 WHERE id = $1",
        &[&current.id, &stage.name, &stage.awaits_customer, &stage.terminal],
    )
    .await?;
    let mut details = serde_json::json!({ "workflow": workflow_name, "stage": stage.name, "fields": changed });
    if stage.name != current.name {
        details["from"] = serde_json::Value::String(current.name.clone());
    }
    log(db, actor, "workflow.stage_changed", workflow, details).await
}

/// The stage just before (`up`) or after `position` in the workflow: `(id, position)`.
#[tracing::instrument(level = "debug", skip_all, fields(workflow = %workflow))]
pub async fn neighbour(db: &Scope, workflow: Uuid, position: i32, up: bool) -> Result<Option<(Uuid, i32)>, DbError> {
    let row = db
        .query_opt(
            if up {
                "SELECT id, position FROM workflow_stages WHERE workflow_id = $1 AND position < $2 \
                 ORDER BY position DESC LIMIT 1"
            } else {
                "SELECT id, position FROM workflow_stages WHERE workflow_id = $1 AND position > $2 \
                 ORDER BY position LIMIT 1"
            },
            &[&workflow, &position],
        )
        .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("position")?))).transpose()
}

/// Swaps a locked stage with its neighbour `(other, other_position)` and logs the move.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %current.id))]
pub async fn swap(
    db: &Scope,
    actor: &Actor<'_>,
    workflow: Uuid,
    workflow_name: &str,
    current: &StageInfo,
    (other, other_position): (Uuid, i32),
    direction: &str,
) -> Result<(), DbError> {
    // One statement swaps both; the positions' uniqueness is checked at commit anyway.
    db.execute(
        "UPDATE workflow_stages SET position = CASE WHEN id = $1 THEN $2::int ELSE $3::int END \
         WHERE id = $1 OR id = $4",
        &[&current.id, &other_position, &current.position, &other],
    )
    .await?;
    let details = serde_json::json!({
        "workflow": workflow_name, "stage": current.name, "direction": direction,
        "from": current.position + 1, "to": other_position + 1,
    });
    log(db, actor, "workflow.stage_moved", workflow, details).await
}

/// Removes a locked stage and closes the gap it leaves. Timeline entries keep the stage's name;
/// the schema only clears their link to it.
#[tracing::instrument(level = "debug", skip_all, fields(stage = %current.id))]
pub async fn remove_stage(
    db: &Scope,
    actor: &Actor<'_>,
    workflow: Uuid,
    workflow_name: &str,
    current: &StageInfo,
) -> Result<(), DbError> {
    db.execute("DELETE FROM workflow_stages WHERE id = $1", &[&current.id]).await?;
    db.execute(
        "UPDATE workflow_stages SET position = position - 1 WHERE workflow_id = $1 AND position > $2",
        &[&workflow, &current.position],
    )
    .await?;
    let details = serde_json::json!({ "workflow": workflow_name, "stage": current.name });
    log(db, actor, "workflow.stage_removed", workflow, details).await
}
