//! The activity log: who did what in the customer's account, newest first.

pub mod store;

use actix_web::{HttpResponse, web};
use sailfish::TemplateSimple;
use serde::Deserialize;

pub use store::Entry;

use crate::web::{AppError, CustomerScope, Section, Shell, html};

const PAGE_SIZE: i64 = 50;

/// An action as a sentence. Unknown actions show as recorded rather than not at
/// all: the log must stay complete even before this list catches up.
pub fn describe(action: &str) -> &str {
    match action {
        "auth.sign_in" => "Signed in",
        "auth.sign_out" => "Signed out",
        "auth.sign_in_failed" => "Failed sign-in attempt",
        "auth.sign_in_throttled" => "Sign-in slowed down after repeated failures",
        "auth.password_changed" => "Changed their password",
        "auth.password_reset_requested" => "Asked for a password reset link",
        "auth.password_reset" => "Reset their password from an emailed link",
        "auth.session_revoked" => "Signed out another session",
        "auth.email_change_requested" => "Asked to change their email address",
        "auth.email_changed" => "Changed their email address",
        "auth.passkey_added" => "Added a passkey",
        "auth.passkey_renamed" => "Renamed a passkey",
        "auth.passkey_removed" => "Removed a passkey",
        "auth.passkey_clone_suspected" => "Refused a passkey that may have been copied",
        "auth.password_sign_in_off" => "Turned password sign-in off",
        "auth.password_sign_in_on" => "Turned password sign-in on",
        "auth.confirmed" => "Confirmed their identity for a sensitive change",
        "staff.passkeys_required" => "Required passkeys for staff",
        "staff.passkeys_optional" => "Made passkeys optional for staff",
        "user.invited" => "Invited a colleague",
        "user.invitation_accepted" => "Accepted an invitation",
        "user.invitation_revoked" => "Withdrew an invitation",
        "user.registration_requested" => "Asked to register",
        "user.registered" => "Registered and confirmed their address",
        "user.disabled" => "Disabled an account",
        "user.enabled" => "Re-enabled an account",
        "customer.domain_added" => "Allowed self-registration for a domain",
        "customer.domain_removed" => "Stopped self-registration for a domain",
        "order.stage_changed" => "Moved an order to another stage",
        "order.approved" => "Approved an order's waiting step",
        "order.changes_requested" => "Asked for changes on an order",
        "order.created" => "Created an order",
        "order.updated" => "Updated an order's details",
        "order.cancelled" => "Cancelled an order",
        "order.reopened" => "Reopened an order",
        "workflow.created" => "Created a workflow",
        "workflow.renamed" => "Renamed a workflow",
        "workflow.stage_added" => "Added a stage to a workflow",
        "workflow.stage_changed" => "Changed a workflow stage",
        "workflow.stage_moved" => "Reordered a workflow's stages",
        "workflow.stage_removed" => "Removed a stage from a workflow",
        "integration.created" => "Created an integration",
        "integration.token_created" => "Created an integration token",
        "integration.token_revoked" => "Revoked an integration token",
        "document.uploaded" => "Uploaded a document",
        "document.version_added" => "Uploaded a new version of a document",
        "document.downloaded" => "Downloaded a document",
        "ticket.opened" => "Opened a ticket",
        "customer.created" => "Customer account created",
        other => other,
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
}

#[derive(TemplateSimple)]
#[template(path = "activity/index.stpl")]
struct IndexPage {
    shell: Shell,
    entries: Vec<Entry>,
    page: i64,
    pages: i64,
}

pub async fn index(cx: CustomerScope, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let total = store::count(&cx.db, customer).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let entries = store::entries(&cx.db, customer, PAGE_SIZE, (page - 1) * PAGE_SIZE).await?;
    cx.db.commit().await?;
    html(IndexPage { shell: Shell::page(&cx.viewer, "Activity", Section::Activity, cx.flash), entries, page, pages })
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn actions_read_as_sentences() {
        assert_eq!(describe("auth.sign_in"), "Signed in");
        assert_eq!(describe("auth.sign_in_failed"), "Failed sign-in attempt");
        assert_eq!(describe("customer.created"), "Customer account created");
        assert_eq!(describe("order.exported"), "order.exported");
    }
}
