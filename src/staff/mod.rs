//! The staff back office: every customer, what is happening across them.

pub mod customers;
pub mod documents;
pub mod integrations;
pub mod orders;
pub mod security;
pub mod workflows;

use actix_web::HttpResponse;
use sailfish::TemplateSimple;

pub use crate::accounts::customers::CustomerSummary;
use crate::accounts::customers::{self as customer_store, Listed};
pub use crate::activity::store::ActivityItem;
use crate::web::{AppError, Section, Shell, StaffScope, html};

/// What clients do across customers: the back office's live feed.
#[derive(TemplateSimple)]
#[template(path = "staff/_feed.stpl")]
pub struct FeedPart<'a> {
    pub activity: &'a [ActivityItem],
}

/// The element id of the feed on the overview page.
pub const FEED_REGION: &str = "staff-feed";

/// The latest things clients did across customers: the feed's rows (the activity log's store reads them).
pub async fn latest_activity(db: &crate::db::Scope) -> Result<Vec<ActivityItem>, crate::db::DbError> {
    crate::activity::store::staff_feed(db).await
}

#[derive(TemplateSimple)]
#[template(path = "staff/overview.stpl")]
struct Overview {
    shell: Shell,
    customers: Vec<CustomerSummary>,
    activity: Vec<ActivityItem>,
}

pub async fn overview(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let customers = customer_store::summaries(&cx.db, Listed::ActiveFirst50).await?;
    let activity = latest_activity(&cx.db).await?;
    let cursor = cx.db.live_cursor();
    cx.db.commit().await?;
    html(Overview {
        shell: Shell::page(&cx.viewer, "Back office", Section::StaffOverview, cx.flash).live(cursor),
        customers,
        activity,
    })
}

#[derive(TemplateSimple)]
#[template(path = "staff/customers.stpl")]
struct Customers {
    shell: Shell,
    customers: Vec<CustomerSummary>,
}

pub async fn customers(cx: StaffScope) -> Result<HttpResponse, AppError> {
    let customers = customer_store::summaries(&cx.db, Listed::All).await?;
    cx.db.commit().await?;
    html(Customers { shell: Shell::page(&cx.viewer, "Customers", Section::StaffCustomers, cx.flash), customers })
}
