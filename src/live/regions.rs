//! What each live region id means: which changes affect it, who may share its
//! markup, and which partial renders it.

use std::collections::HashMap;

use portal_actors::{Audience, Event};
use sailfish::TemplateSimple;
use uuid::Uuid;

use crate::dashboard::{self, DashboardView};
use crate::db::Scope;
use crate::orders::{self, OrderRow, OrderView};
use crate::staff;
use crate::web::AppError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// A row of the orders list: `order-<id>`.
    OrderRow(Uuid),
    /// A part of the order page: `order-<id>-<part>`.
    Order(Uuid, orders::Part),
    Dashboard(dashboard::Part),
    /// The first page of the document library: `documents-latest`.
    DocumentsLatest,
    /// The back office's feed of activity across customers.
    StaffFeed,
}

/// Views loaded once per rendering, whichever regions of them are asked for.
#[derive(Default)]
pub struct Cache {
    orders: HashMap<Uuid, Option<OrderView>>,
    dashboard: Option<DashboardView>,
}

impl Region {
    /// Ids of the pages of the audience's side of the portal; any other id is unknown.
    pub fn parse(id: &str, audience: &Audience) -> Option<Region> {
        if audience.customer_id.is_none() {
            return (id == staff::FEED_REGION).then_some(Region::StaffFeed);
        }
        if let Some(part) = dashboard::Part::parse(id) {
            return Some(Region::Dashboard(part));
        }
        if id == crate::documents::LATEST_REGION {
            return Some(Region::DocumentsLatest);
        }
        let rest = id.strip_prefix("order-")?;
        let order = Uuid::try_parse(rest.get(..36)?).ok()?;
        match rest.get(36..)? {
            "" => Some(Region::OrderRow(order)),
            suffix => suffix.strip_prefix('-').and_then(orders::Part::parse).map(|p| Region::Order(order, p)),
        }
    }

    pub fn affected_by(&self, audience: &Audience, event: &Event) -> bool {
        let topic = event.topic.as_str();
        match self {
            Region::OrderRow(id) => {
                event.id_of("order_id") == Some(*id) && matches!(topic, "orders" | "order_stage_history")
            }
            Region::Order(id, part) => event.id_of("order_id") == Some(*id) && part.shows(topic),
            Region::Dashboard(part) => part.shows(topic, event.id_of("user_id"), audience.user_id),
            Region::DocumentsLatest => matches!(topic, "documents" | "document_versions"),
            Region::StaffFeed => topic == "activity_log",
        }
    }

    /// Whether the markup depends on who the user is, not only on their customer and role.
    pub fn per_user(&self) -> bool {
        matches!(self, Region::Dashboard(dashboard::Part::Cards | dashboard::Part::Recent))
    }

    /// The region's current markup as `audience` may see it; `None` when it no longer exists for them.
    pub async fn render(&self, db: &Scope, audience: &Audience, cache: &mut Cache) -> Result<Option<String>, AppError> {
        match *self {
            Region::OrderRow(id) => match orders::find(db, id).await? {
                Some(row) => Ok(Some(orders::RowPartial { order: &OrderRow::try_from_row(&row)? }.render_once()?)),
                None => Ok(None),
            },
            Region::Order(id, part) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = cache.orders.entry(id) {
                    slot.insert(OrderView::load(db, id).await?);
                }
                match cache.orders.get(&id).and_then(Option::as_ref) {
                    Some(view) => Ok(Some(part.render(view)?)),
                    None => Ok(None),
                }
            }
            Region::Dashboard(part) => {
                let Some(customer) = audience.customer_id else { return Ok(None) };
                if cache.dashboard.is_none() {
                    cache.dashboard = Some(DashboardView::load(db, customer, audience.user_id).await?);
                }
                Ok(cache.dashboard.as_ref().map(|view| part.render(view)).transpose()?)
            }
            Region::DocumentsLatest => {
                let Some(customer) = audience.customer_id else { return Ok(None) };
                Ok(Some(crate::documents::TablePart::latest(db, customer).await?.render_once()?))
            }
            Region::StaffFeed => {
                let activity = staff::latest_activity(db).await?;
                Ok(Some(staff::FeedPart { activity: &activity }.render_once()?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> Audience {
        Audience {
            session_id: Uuid::nil(),
            user_id: Uuid::from_u128(7),
            customer_id: Some(Uuid::from_u128(1)),
            role: "customer_member".into(),
        }
    }

    fn event(topic: &str, data: serde_json::Value) -> Event {
        Event { id: 1, xid: 1, customer_id: Some(Uuid::from_u128(1)), topic: topic.into(), subject_id: None, data }
    }

    #[test]
    fn parses_the_ids_pages_use() {
        let id = Uuid::from_u128(42);
        let a = customer();
        assert_eq!(Region::parse(&format!("order-{id}"), &a), Some(Region::OrderRow(id)));
        assert_eq!(Region::parse(&format!("order-{id}-timeline"), &a), Some(Region::Order(id, orders::Part::Timeline)));
        assert_eq!(Region::parse("dashboard-cards", &a), Some(Region::Dashboard(dashboard::Part::Cards)));
        assert_eq!(Region::parse("documents-latest", &a), Some(Region::DocumentsLatest));
        for unknown in ["order-", "order-xyz", &format!("order-{id}-nope"), &format!("order-{id}x"), "dashboard", ""] {
            assert_eq!(Region::parse(unknown, &a), None, "{unknown}");
        }
        let staff = Audience { customer_id: None, ..customer() };
        assert_eq!(Region::parse(&format!("order-{id}"), &staff), None);
        assert_eq!(Region::parse("staff-feed", &staff), Some(Region::StaffFeed));
        assert_eq!(Region::parse("staff-feed", &a), None, "customers have no staff regions");
    }

    #[test]
    fn only_relevant_changes_affect_a_region() {
        let a = customer();
        let order = Uuid::from_u128(42);
        let moved = event("order_stage_history", serde_json::json!({"order_id": order.to_string()}));
        let other = event("orders", serde_json::json!({"order_id": Uuid::from_u128(43).to_string()}));
        assert!(Region::OrderRow(order).affected_by(&a, &moved));
        assert!(!Region::OrderRow(order).affected_by(&a, &other));
        assert!(Region::Order(order, orders::Part::Timeline).affected_by(&a, &moved));
        let updated = event("orders", serde_json::json!({"order_id": order.to_string()}));
        assert!(Region::Order(order, orders::Part::Status).affected_by(&a, &updated));
        assert!(!Region::Order(order, orders::Part::Status).affected_by(&a, &moved), "a note does not move the stage");
        assert!(!Region::Order(order, orders::Part::Documents).affected_by(&a, &moved));
        // Someone else's notification does not change my unread count.
        let theirs = event("notifications", serde_json::json!({"user_id": Uuid::from_u128(8).to_string()}));
        let mine = event("notifications", serde_json::json!({"user_id": a.user_id.to_string()}));
        assert!(!Region::Dashboard(dashboard::Part::Cards).affected_by(&a, &theirs));
        assert!(Region::Dashboard(dashboard::Part::Cards).affected_by(&a, &mine));
        assert!(Region::Dashboard(dashboard::Part::Cards).per_user());
        assert!(!Region::Dashboard(dashboard::Part::Stages).per_user());
    }
}
