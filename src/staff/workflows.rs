//! Workflows in the back office: the named stages orders go through. Staff create
//! them, rename them and their stages, mark the stages that wait for the customer
//! or complete the order, reorder them, add and remove them.
//!
//! Every change and its activity entry are written by the orders store
//! (`crate::orders::workflows`) and commit together; this module checks the forms
//! and shows the pages.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::db::{DbError, Scope};
use crate::format;
use crate::orders::moves;
use crate::orders::workflows::{self as store, StageFlags};
pub use crate::orders::workflows::{StageInfo, WorkflowInfo};
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

/// Who a change is written as: the signed-in user, by email.
fn actor(viewer: &Viewer) -> moves::Actor<'_> {
    moves::Actor { user_id: viewer.user_id, label: &viewer.email }
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
    let workflows = store::all(&db).await?;
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
    store::lock_names(&db).await?;
    if let Some(name) = name.as_deref().filter(|_| form.name_error.is_none())
        && store::name_taken(&db, name, None).await?
    {
        form.name_error = Some(taken_message(name));
    }
    let name = name.filter(|_| form.name_error.is_none());
    let (Some(name), Some(stages)) = (name, stages) else {
        return render_index(db, &viewer, None, StatusCode::UNPROCESSABLE_ENTITY, form).await;
    };
    let id = store::create(&db, &actor(&viewer), &name, &stages, form.last_terminal).await?;
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
    let workflow = store::one(&db, id).await?.ok_or(AppError::NotFound)?;
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

/// Locks the workflow for a change to its stages and returns its name.
async fn lock_workflow(db: &Scope, id: Uuid) -> Result<String, AppError> {
    store::lock(db, id).await?.ok_or(AppError::NotFound)
}

/// A stage of the locked workflow, locked too.
async fn lock_stage(db: &Scope, workflow: Uuid, stage: Uuid) -> Result<StageInfo, AppError> {
    store::lock_stage(db, workflow, stage).await?.ok_or(AppError::NotFound)
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
    store::lock_names(&db).await?;
    let current = store::lock_for_rename(&db, id).await?.ok_or(AppError::NotFound)?;
    let name = match check_name("workflow", &input.name) {
        Ok(name) if name != current && store::name_taken(&db, &name, Some(id)).await? => Err(taken_message(&name)),
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
    store::rename(&db, &actor(&viewer), id, &current, &name).await?;
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
        Ok(name) if store::stage_name_taken(db, workflow, &name, stage).await? => {
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
    let count = store::stage_count(&db, id).await?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= STAGES_MAX && form.name_error.is_none() {
        form.name_error = Some(format!("A workflow has at most {STAGES_MAX} stages. Remove one first."));
    }
    let Some(name) = name.filter(|_| !form.refused()) else {
        let refused = Refused { add: Some(form), ..Refused::default() };
        return render(db, &viewer, None, id, StatusCode::UNPROCESSABLE_ENTITY, refused).await;
    };
    let flags = StageFlags { name: &name, awaits_customer: form.awaits_customer, terminal: form.terminal };
    let stage = store::add_stage(&db, &actor(&viewer), id, &workflow, &flags).await?;
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
    let flags = StageFlags { name: &name, awaits_customer: form.awaits_customer, terminal: form.terminal };
    store::change_stage(&db, &actor(&viewer), id, &workflow, &current, &flags, &changed).await?;
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
    let neighbour = store::neighbour(&db, id, current.position, up).await?;
    let Some(neighbour) = neighbour else {
        db.commit().await?;
        let place = if up { "first" } else { "last" };
        let message = format!("“{}” is already the {place} stage.", current.name);
        return Ok(redirect_with_flash(&state, &page_of(id, Some(stage)), Flash::info(message)));
    };
    let (_, other_position) = neighbour;
    let direction = if up { "up" } else { "down" };
    store::swap(&db, &actor(&viewer), id, &workflow, &current, neighbour, direction).await?;
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
    let stages = store::stage_count(&db, id).await?;
    let orders = store::orders_at(&db, stage).await?;
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
            format::group(usize::try_from(orders).unwrap_or_default()),
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
    store::remove_stage(&db, &actor(&viewer), id, &workflow, &current).await?;
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
