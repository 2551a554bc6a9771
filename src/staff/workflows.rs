//! Workflows in the back office: the named stages orders go through. Staff create
//! them, rename them and their stages, mark the stages that wait for the customer
//! or complete the order, reorder them, add and remove them.
//!
//! Orders keep their history through all of it: a timeline entry keeps the stage's
//! name as it was (`order_stage_history.stage_name`, never rewritten here), and
//! removing a stage only clears the entries' link to it (`ON DELETE SET NULL`).
//! Every change and its activity entry commit together.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::{DbError, Scope};
use crate::orders::moves;
use crate::web::{
    AppError, AppState, CsrfForm, Flash, Section, Shell, StaffScope, html_with_status, redirect_with_flash,
};

/// The longest workflow or stage name (the schema's check).
pub const NAME_MAX: usize = 100;
/// The most stages a workflow has: a stepper beyond this helps nobody.
pub const STAGES_MAX: usize = 30;

/// A name as stored: trimmed, on one line, 1 to 100 characters.
fn check_name(what: &str, typed: &str) -> Result<String, String> {
    let name = typed.trim();
    if name.is_empty() {
        return Err(format!("Enter a name for the {what}."));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("The {what}'s name must fit on one line."));
    }
    if let Some(e) = moves::too_long(&format!("{what}'s name"), name, NAME_MAX) {
        return Err(e);
    }
    Ok(name.to_owned())
}

/// Stage names typed one per line: blank lines are skipped, every name is checked.
fn check_stage_lines(typed: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in typed.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let name = check_name("stage", line).map_err(|e| format!("Line {}: {e}", n + 1))?;
        if !seen.insert(name.to_lowercase()) {
            return Err(format!("“{name}” appears twice; each stage needs its own name."));
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err("Enter at least one stage, one per line.".to_owned());
    }
    if names.len() > STAGES_MAX {
        return Err(format!("A workflow has at most {STAGES_MAX} stages; {} were entered.", names.len()));
    }
    Ok(names)
}

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

fn stage_info(r: &tokio_postgres::Row) -> StageInfo {
    StageInfo {
        id: r.get("id"),
        name: r.get("name"),
        position: r.get("position"),
        awaits_customer: r.get("awaits_customer"),
        terminal: r.get("terminal"),
        orders: r.get("orders"),
    }
}

const STAGES: &str = "SELECT s.id, s.workflow_id, s.name, s.position, s.awaits_customer, s.terminal, \
     (SELECT count(*) FROM orders o WHERE o.stage_id = s.id) AS orders FROM workflow_stages s";

const WORKFLOWS: &str = "SELECT w.id, w.name, \
     (SELECT count(*) FROM orders o WHERE o.workflow_id = w.id) AS orders, \
     (SELECT count(*) FROM orders o WHERE o.workflow_id = w.id AND o.status = 'open') AS open \
     FROM workflows w";

async fn all_workflows(db: &Scope) -> Result<Vec<WorkflowInfo>, DbError> {
    let mut workflows: Vec<WorkflowInfo> = db
        .query(&format!("{WORKFLOWS} ORDER BY lower(w.name), w.id"), &[])
        .await?
        .iter()
        .map(|r| WorkflowInfo {
            id: r.get("id"),
            name: r.get("name"),
            orders: r.get("orders"),
            open: r.get("open"),
            stages: Vec::new(),
        })
        .collect();
    for r in db.query(&format!("{STAGES} ORDER BY s.workflow_id, s.position"), &[]).await? {
        let workflow: Uuid = r.get("workflow_id");
        if let Some(w) = workflows.iter_mut().find(|w| w.id == workflow) {
            w.stages.push(stage_info(&r));
        }
    }
    Ok(workflows)
}

async fn one_workflow(db: &Scope, id: Uuid) -> Result<Option<WorkflowInfo>, DbError> {
    let Some(r) = db.query_opt(&format!("{WORKFLOWS} WHERE w.id = $1"), &[&id]).await? else {
        return Ok(None);
    };
    let stages = db
        .query(&format!("{STAGES} WHERE s.workflow_id = $1 ORDER BY s.position"), &[&id])
        .await?
        .iter()
        .map(stage_info)
        .collect();
    Ok(Some(WorkflowInfo { id, name: r.get("name"), orders: r.get("orders"), open: r.get("open"), stages }))
}

/// A staff-only activity entry about a workflow (no customer: workflows are the business's own).
async fn log(
    db: &Scope,
    viewer: &Viewer,
    action: &str,
    workflow: Uuid,
    details: serde_json::Value,
) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO activity_log (customer_id, actor_user_id, actor_label, action, subject_type, subject_id, details) \
         VALUES (NULL, $1, $2, $3, 'workflow', $4, $5)",
        &[&viewer.user_id, &viewer.email, &action, &workflow, &details],
    )
    .await?;
    Ok(())
}

fn parse_uuid(value: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(value).map_err(|_| AppError::NotFound)
}

/// The "waits for the customer" and "completes the order" badges of a stage.
#[derive(TemplateSimple)]
#[template(path = "staff/_stage_badges.stpl")]
pub struct StageBadges {
    pub awaits_customer: bool,
    pub terminal: bool,
}

/// The fields of a stage (name and meaning) in a form of their own: one per stage, and "Add a stage".
#[derive(TemplateSimple)]
#[template(path = "staff/_stage_fields.stpl")]
pub struct StageFields<'a> {
    pub form: &'a StageForm,
    /// Makes the element ids unique on the page.
    pub prefix: String,
    pub action: String,
    pub button: &'a str,
    pub csrf_token: &'a str,
}

// ---------------------------------------------------------------------------
// The list and creating a workflow.

/// The "New workflow" form as shown.
pub struct CreateForm {
    pub name: String,
    pub stages: String,
    pub last_terminal: bool,
    pub name_error: Option<String>,
    pub stages_error: Option<String>,
}

impl Default for CreateForm {
    fn default() -> Self {
        CreateForm {
            name: String::new(),
            stages: String::new(),
            last_terminal: true,
            name_error: None,
            stages_error: None,
        }
    }
}

#[derive(TemplateSimple)]
#[template(path = "staff/workflows.stpl")]
struct IndexPage {
    shell: Shell,
    csrf_token: String,
    workflows: Vec<WorkflowInfo>,
    form: CreateForm,
}

async fn render_index(
    db: Scope,
    viewer: &Viewer,
    flash: Option<Flash>,
    status: StatusCode,
    form: CreateForm,
) -> Result<HttpResponse, AppError> {
    let workflows = all_workflows(&db).await?;
    db.commit().await?;
    let page = IndexPage {
        shell: Shell::page(viewer, "Workflows", Section::StaffWorkflows, flash),
        csrf_token: viewer.csrf_token.clone(),
        workflows,
        form,
    };
    html_with_status(status, page.render_once()?)
}

pub async fn index(cx: StaffScope) -> Result<HttpResponse, AppError> {
    render_index(cx.db, &cx.viewer, cx.flash, StatusCode::OK, CreateForm::default()).await
}

#[derive(Deserialize)]
pub struct CreateInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: String,
    #[serde(default)]
    last_terminal: Option<String>,
}

/// Workflow names are unique, compared without case; this lock makes the check and the
/// write one step, whoever else renames or creates a workflow at the same moment.
async fn lock_names(db: &Scope) -> Result<(), DbError> {
    db.execute("LOCK TABLE workflows IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
    Ok(())
}

async fn name_taken(db: &Scope, name: &str, except: Option<Uuid>) -> Result<bool, DbError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM workflows WHERE lower(name) = lower($1) AND id IS DISTINCT FROM $2",
            &[&name, &except],
        )
        .await?
        .is_some())
}

fn taken_message(name: &str) -> String {
    format!("There is already a workflow called “{name}”. Choose another name.")
}

pub async fn create(
    state: web::Data<AppState>,
    cx: StaffScope,
    CsrfForm(input): CsrfForm<CreateInput>,
) -> Result<HttpResponse, AppError> {
    let StaffScope { viewer, db, .. } = cx;
    let mut form = CreateForm {
        last_terminal: input.last_terminal.is_some(),
        name_error: None,
        stages_error: None,
        name: input.name,
        stages: input.stages,
    };
    let name = check_name("workflow", &form.name).map_err(|e| form.name_error = Some(e)).ok();
    let stages = check_stage_lines(&form.stages).map_err(|e| form.stages_error = Some(e)).ok();
    lock_names(&db).await?;
    if let Some(name) = name.as_deref().filter(|_| form.name_error.is_none())
        && name_taken(&db, name, None).await?
    {
        form.name_error = Some(taken_message(name));
    }
    let name = name.filter(|_| form.name_error.is_none());
    let (Some(name), Some(stages)) = (name, stages) else {
        return render_index(db, &viewer, None, StatusCode::UNPROCESSABLE_ENTITY, form).await;
    };
    let id: Uuid = db.query_one("INSERT INTO workflows (name) VALUES ($1) RETURNING id", &[&name]).await?.get(0);
    let last = i32::try_from(stages.len()).unwrap_or(i32::MAX) - 1;
    db.execute(
        "INSERT INTO workflow_stages (workflow_id, position, name, terminal) \
         SELECT $1, (t.n - 1)::int, t.name, $3 AND (t.n - 1)::int = $4 FROM unnest($2::text[]) WITH ORDINALITY AS t (name, n)",
        &[&id, &stages, &form.last_terminal, &last],
    )
    .await?;
    log(&db, &viewer, "workflow.created", id, serde_json::json!({ "name": name, "stages": stages })).await?;
    db.commit().await?;
    let message = format!(
        "Workflow “{name}” created with {} {}.",
        stages.len(),
        if stages.len() == 1 { "stage" } else { "stages" }
    );
    Ok(redirect_with_flash(&state, &format!("/staff/workflows/{id}"), Flash::success(message)))
}

// ---------------------------------------------------------------------------
// One workflow: renaming it, its stages.

/// A stage form as shown: for an existing stage (`stage`) or the "Add a stage" form.
pub struct StageForm {
    pub stage: Option<Uuid>,
    pub name: String,
    pub awaits_customer: bool,
    pub terminal: bool,
    pub name_error: Option<String>,
    pub flags_error: Option<&'static str>,
}

impl StageForm {
    fn empty() -> Self {
        StageForm {
            stage: None,
            name: String::new(),
            awaits_customer: false,
            terminal: false,
            name_error: None,
            flags_error: None,
        }
    }

    fn of(stage: &StageInfo) -> Self {
        StageForm {
            stage: Some(stage.id),
            name: stage.name.clone(),
            awaits_customer: stage.awaits_customer,
            terminal: stage.terminal,
            name_error: None,
            flags_error: None,
        }
    }

    pub fn refused(&self) -> bool {
        self.name_error.is_some() || self.flags_error.is_some()
    }
}

/// A removal that was refused: which stage, and why.
pub struct Refusal {
    pub stage: Uuid,
    pub message: String,
    /// Orders at the stage, for a link to them.
    pub orders: i64,
}

/// What a refused form on the workflow page brings back.
#[derive(Default)]
struct Refused {
    rename: Option<(String, String)>,
    stage: Option<StageForm>,
    add: Option<StageForm>,
    removal: Option<Refusal>,
}

#[derive(TemplateSimple)]
#[template(path = "staff/workflow.stpl")]
struct ShowPage {
    shell: Shell,
    csrf_token: String,
    workflow: WorkflowInfo,
    /// Every stage's form, the refused one as typed.
    forms: Vec<StageForm>,
    rename: String,
    rename_error: Option<String>,
    add: StageForm,
    removal: Option<Refusal>,
}

async fn render(
    db: Scope,
    viewer: &Viewer,
    flash: Option<Flash>,
    id: Uuid,
    status: StatusCode,
    refused: Refused,
) -> Result<HttpResponse, AppError> {
    let workflow = one_workflow(&db, id).await?.ok_or(AppError::NotFound)?;
    db.commit().await?;
    let mut refused_stage = refused.stage;
    let forms = workflow
        .stages
        .iter()
        .map(|s| match refused_stage.take_if(|f| f.stage == Some(s.id)) {
            Some(form) => form,
            None => StageForm::of(s),
        })
        .collect();
    let (rename, rename_error) = match refused.rename {
        Some((typed, error)) => (typed, Some(error)),
        None => (workflow.name.clone(), None),
    };
    let page = ShowPage {
        shell: Shell::page(viewer, format!("Workflow {}", workflow.name), Section::StaffWorkflows, flash),
        csrf_token: viewer.csrf_token.clone(),
        workflow,
        forms,
        rename,
        rename_error,
        add: refused.add.unwrap_or_else(StageForm::empty),
        removal: refused.removal,
    };
    html_with_status(status, page.render_once()?)
}

pub async fn show(cx: StaffScope, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = parse_uuid(&path)?;
    render(cx.db, &cx.viewer, cx.flash, id, StatusCode::OK, Refused::default()).await
}

/// Locks the workflow for a change to its stages (two changes to one workflow wait for each other;
/// orders may still be created in it meanwhile) and returns its name.
async fn lock_workflow(db: &Scope, id: Uuid) -> Result<String, AppError> {
    Ok(db
        .query_opt("SELECT name FROM workflows WHERE id = $1 FOR NO KEY UPDATE", &[&id])
        .await?
        .ok_or(AppError::NotFound)?
        .get("name"))
}

/// A stage of the locked workflow, locked too.
async fn lock_stage(db: &Scope, workflow: Uuid, stage: Uuid) -> Result<StageInfo, AppError> {
    let row = db
        .query_opt(&format!("{STAGES} WHERE s.id = $1 AND s.workflow_id = $2 FOR UPDATE OF s"), &[&stage, &workflow])
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(stage_info(&row))
}

async fn stage_name_taken(db: &Scope, workflow: Uuid, name: &str, except: Option<Uuid>) -> Result<bool, DbError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM workflow_stages WHERE workflow_id = $1 AND lower(name) = lower($2) AND id IS DISTINCT FROM $3",
            &[&workflow, &name, &except],
        )
        .await?
        .is_some())
}

fn page_of(workflow: Uuid, stage: Option<Uuid>) -> String {
    match stage {
        Some(stage) => format!("/staff/workflows/{workflow}#stage-{stage}"),
        None => format!("/staff/workflows/{workflow}"),
    }
}

#[derive(Deserialize)]
pub struct RenameInput {
    #[serde(default)]
    name: String,
}

pub async fn rename(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(input): CsrfForm<RenameInput>,
) -> Result<HttpResponse, AppError> {
    let id = parse_uuid(&path)?;
    let StaffScope { viewer, db, .. } = cx;
    lock_names(&db).await?;
    let current: String = db
        .query_opt("SELECT name FROM workflows WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or(AppError::NotFound)?
        .get("name");
    let name = match check_name("workflow", &input.name) {
        Ok(name) if name != current && name_taken(&db, &name, Some(id)).await? => Err(taken_message(&name)),
        checked => checked,
    };
    let name = match name {
        Ok(name) => name,
        Err(error) => {
            let refused = Refused { rename: Some((input.name, error)), ..Refused::default() };
            return render(db, &viewer, None, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
        }
    };
    if name == current {
        db.commit().await?;
        return Ok(redirect_with_flash(&state, &page_of(id, None), Flash::info("The name is unchanged.")));
    }
    db.execute("UPDATE workflows SET name = $2 WHERE id = $1", &[&id, &name]).await?;
    log(&db, &viewer, "workflow.renamed", id, serde_json::json!({ "from": current, "to": name })).await?;
    db.commit().await?;
    let message = format!("Workflow renamed to “{name}”. Orders' timelines are unchanged.");
    Ok(redirect_with_flash(&state, &page_of(id, None), Flash::success(message)))
}

#[derive(Deserialize)]
pub struct StageInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    awaits_customer: Option<String>,
    #[serde(default)]
    terminal: Option<String>,
}

pub const BOTH_FLAGS: &str =
    "A stage that completes the order cannot also wait for the customer: the customer can only answer open orders.";

/// Checks a stage form of `workflow` (`stage` is the one being changed, `None` for a new one).
async fn check_stage(
    db: &Scope,
    workflow: Uuid,
    stage: Option<Uuid>,
    input: StageInput,
) -> Result<(StageForm, Option<String>), DbError> {
    let mut form = StageForm {
        stage,
        awaits_customer: input.awaits_customer.is_some(),
        terminal: input.terminal.is_some(),
        name_error: None,
        flags_error: None,
        name: input.name,
    };
    let name = match check_name("stage", &form.name) {
        Ok(name) if stage_name_taken(db, workflow, &name, stage).await? => {
            Err(format!("This workflow already has a stage called “{name}”."))
        }
        checked => checked,
    };
    let name = name.map_err(|e| form.name_error = Some(e)).ok();
    if form.awaits_customer && form.terminal {
        form.flags_error = Some(BOTH_FLAGS);
    }
    Ok((form, name))
}

pub async fn add_stage(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<String>,
    CsrfForm(input): CsrfForm<StageInput>,
) -> Result<HttpResponse, AppError> {
    let id = parse_uuid(&path)?;
    let StaffScope { viewer, db, .. } = cx;
    let workflow = lock_workflow(&db, id).await?;
    let (mut form, name) = check_stage(&db, id, None, input).await?;
    let count: i64 = db.query_one("SELECT count(*) FROM workflow_stages WHERE workflow_id = $1", &[&id]).await?.get(0);
    if usize::try_from(count).unwrap_or(usize::MAX) >= STAGES_MAX && form.name_error.is_none() {
        form.name_error = Some(format!("A workflow has at most {STAGES_MAX} stages. Remove one first."));
    }
    let Some(name) = name.filter(|_| !form.refused()) else {
        let refused = Refused { add: Some(form), ..Refused::default() };
        return render(db, &viewer, None, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
    };
    let stage: Uuid = db
        .query_one(
            "INSERT INTO workflow_stages (workflow_id, position, name, awaits_customer, terminal) \
             SELECT $1, coalesce(max(position) + 1, 0), $2, $3, $4 FROM workflow_stages WHERE workflow_id = $1 \
             RETURNING id",
            &[&id, &name, &form.awaits_customer, &form.terminal],
        )
        .await?
        .get(0);
    let details = serde_json::json!({
        "workflow": workflow, "stage": name, "awaits_customer": form.awaits_customer, "terminal": form.terminal,
    });
    log(&db, &viewer, "workflow.stage_added", id, details).await?;
    db.commit().await?;
    let message = format!("Stage “{name}” added at the end of {workflow}.");
    Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::success(message)))
}

pub async fn change_stage(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<(String, String)>,
    CsrfForm(input): CsrfForm<StageInput>,
) -> Result<HttpResponse, AppError> {
    let (id, stage) = path.into_inner();
    let (id, stage) = (parse_uuid(&id)?, parse_uuid(&stage)?);
    let StaffScope { viewer, db, .. } = cx;
    let workflow = lock_workflow(&db, id).await?;
    let current = lock_stage(&db, id, stage).await?;
    let (form, name) = check_stage(&db, id, Some(stage), input).await?;
    let Some(name) = name.filter(|_| !form.refused()) else {
        let refused = Refused { stage: Some(form), ..Refused::default() };
        return render(db, &viewer, None, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
    };
    let changed: Vec<&str> = [
        ("name", name != current.name),
        ("awaits_customer", form.awaits_customer != current.awaits_customer),
        ("terminal", form.terminal != current.terminal),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect();
    if changed.is_empty() {
        db.commit().await?;
        let message = format!("Nothing changed on “{}”.", current.name);
        return Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::info(message)));
    }
    // Only the stage: its orders' statuses and their timelines stay as they are.
    db.execute(
        "UPDATE workflow_stages SET name = $2, awaits_customer = $3, terminal = $4 WHERE id = $1",
        &[&stage, &name, &form.awaits_customer, &form.terminal],
    )
    .await?;
    let mut details = serde_json::json!({ "workflow": workflow, "stage": name, "fields": changed });
    if name != current.name {
        details["from"] = serde_json::Value::String(current.name.clone());
    }
    log(&db, &viewer, "workflow.stage_changed", id, details).await?;
    db.commit().await?;
    let message = format!("Stage “{name}” saved.");
    Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::success(message)))
}

#[derive(Deserialize)]
pub struct MoveInput {
    #[serde(default)]
    direction: String,
}

pub async fn move_stage(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<(String, String)>,
    CsrfForm(input): CsrfForm<MoveInput>,
) -> Result<HttpResponse, AppError> {
    let (id, stage) = path.into_inner();
    let (id, stage) = (parse_uuid(&id)?, parse_uuid(&stage)?);
    let up = match input.direction.as_str() {
        "up" => true,
        "down" => false,
        _ => return Err(AppError::BadRequest("direction must be up or down".into())),
    };
    let StaffScope { viewer, db, .. } = cx;
    let workflow = lock_workflow(&db, id).await?;
    let current = lock_stage(&db, id, stage).await?;
    let neighbour = db
        .query_opt(
            if up {
                "SELECT id, position FROM workflow_stages WHERE workflow_id = $1 AND position < $2 \
                 ORDER BY position DESC LIMIT 1"
            } else {
                "SELECT id, position FROM workflow_stages WHERE workflow_id = $1 AND position > $2 \
                 ORDER BY position LIMIT 1"
            },
            &[&id, &current.position],
        )
        .await?;
    let Some(neighbour) = neighbour else {
        db.commit().await?;
        let place = if up { "first" } else { "last" };
        let message = format!("“{}” is already the {place} stage.", current.name);
        return Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::info(message)));
    };
    let (other, other_position): (Uuid, i32) = (neighbour.get("id"), neighbour.get("position"));
    // One statement swaps both; the positions' uniqueness is checked at commit anyway.
    db.execute(
        "UPDATE workflow_stages SET position = CASE WHEN id = $1 THEN $2::int ELSE $3::int END \
         WHERE id = $1 OR id = $4",
        &[&stage, &other_position, &current.position, &other],
    )
    .await?;
    let direction = if up { "up" } else { "down" };
    let details = serde_json::json!({
        "workflow": workflow, "stage": current.name, "direction": direction,
        "from": current.position + 1, "to": other_position + 1,
    });
    log(&db, &viewer, "workflow.stage_moved", id, details).await?;
    db.commit().await?;
    let message = format!("Moved “{}” {direction} to position {}.", current.name, other_position + 1);
    Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::success(message)))
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn remove_stage(
    state: web::Data<AppState>,
    cx: StaffScope,
    path: web::Path<(String, String)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let (id, stage) = path.into_inner();
    let (id, stage) = (parse_uuid(&id)?, parse_uuid(&stage)?);
    let StaffScope { viewer, db, .. } = cx;
    let workflow = lock_workflow(&db, id).await?;
    // Locked before counting: an order moving to this stage now waits, and then finds it gone.
    let current = lock_stage(&db, id, stage).await?;
    let stages: i64 = db.query_one("SELECT count(*) FROM workflow_stages WHERE workflow_id = $1", &[&id]).await?.get(0);
    let orders: i64 = db.query_one("SELECT count(*) FROM orders WHERE stage_id = $1", &[&stage]).await?.get(0);
    let refusal = if stages <= 1 {
        Some(format!(
            "“{}” is the only stage of {workflow}, and a workflow must keep at least one stage. Add another \
             stage first.",
            current.name
        ))
    } else if orders > 0 {
        Some(format!(
            "“{}” can't be removed: {} {} at this stage. Move {} to another stage first.",
            current.name,
            moves::group(usize::try_from(orders).unwrap_or_default()),
            if orders == 1 { "order is" } else { "orders are" },
            if orders == 1 { "it" } else { "them" },
        ))
    } else {
        None
    };
    if let Some(message) = refusal {
        let refused = Refused { removal: Some(Refusal { stage, message, orders }), ..Refused::default() };
        return render(db, &viewer, None, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
    }
    // Timeline entries keep the stage's name; the schema only clears their link to it.
    db.execute("DELETE FROM workflow_stages WHERE id = $1", &[&stage]).await?;
    db.execute(
        "UPDATE workflow_stages SET position = position - 1 WHERE workflow_id = $1 AND position > $2",
        &[&id, &current.position],
    )
    .await?;
    log(&db, &viewer, "workflow.stage_removed", id, serde_json::json!({ "workflow": workflow, "stage": current.name }))
        .await?;
    db.commit().await?;
    let message =
        format!("Stage “{}” removed. Orders that passed through it keep it on their timelines.", current.name);
    Ok(redirect_with_flash(&state, &page_of(id, None), Flash::success(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("stage", "  Proof  "), Ok("Proof".to_owned()));
        assert!(check_name("stage", "   ").is_err());
        assert!(check_name("stage", &"x".repeat(101)).is_err());
        assert!(check_name("stage", &"é".repeat(100)).is_ok());
        assert!(check_name("stage", "a\u{0}b").is_err());
    }

    #[test]
    fn stage_lines_skip_blanks_and_refuse_duplicates() {
        assert_eq!(
            check_stage_lines("Booked\r\n\r\n  Shipped \n"),
            Ok(vec!["Booked".to_owned(), "Shipped".to_owned()])
        );
        assert!(check_stage_lines("\n \n").is_err());
        assert!(check_stage_lines("Booked\nbooked").unwrap_err().contains("twice"));
        assert!(check_stage_lines(&format!("ok\n{}", "x".repeat(101))).unwrap_err().starts_with("Line 2:"));
    }
}
