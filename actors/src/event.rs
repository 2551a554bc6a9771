//! What the live layer moves around: events from the `events` outbox, and the
//! authenticated audience of each socket.

use tokio_postgres::Row;
use uuid::Uuid;

/// The columns [`Event::from_row`] reads, for queries on `events`.
pub const EVENT_COLUMNS: &str = "id, xid, customer_id, topic, subject_id, data";

/// One row of the `events` outbox: which rows changed, never what they contain.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: i64,
    /// The writing transaction (see the migration): the stream position.
    pub xid: i64,
    /// `None` for events only staff may see.
    pub customer_id: Option<Uuid>,
    /// The table that changed.
    pub topic: String,
    pub subject_id: Option<Uuid>,
    pub data: serde_json::Value,
}

impl Event {
    pub fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Event {
            id: row.try_get("id")?,
            xid: row.try_get("xid")?,
            customer_id: row.try_get("customer_id")?,
            topic: row.try_get("topic")?,
            subject_id: row.try_get("subject_id")?,
            data: row.try_get("data")?,
        })
    }

    /// An id the event names, such as `order_id` or `user_id`.
    pub fn id_of(&self, key: &str) -> Option<Uuid> {
        self.data.get(key).and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok())
    }

    /// The customer the changed row belongs to, even for staff-only events.
    pub fn owner(&self) -> Option<Uuid> {
        self.customer_id.or_else(|| self.id_of("customer_id"))
    }
}

/// Who is behind a socket, as authenticated when it was opened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Audience {
    /// The database session (`sessions.id`): revoking it closes the socket.
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// `None` for staff.
    pub customer_id: Option<Uuid>,
    /// The user's role when the socket opened; a change makes the socket resume.
    pub role: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_from_the_event_data() {
        let order = Uuid::new_v4();
        let customer = Uuid::new_v4();
        let event = Event {
            id: 1,
            xid: 10,
            customer_id: None,
            topic: "order_internal_notes".into(),
            subject_id: None,
            data: serde_json::json!({"order_id": order.to_string(), "customer_id": customer.to_string(), "op": "insert"}),
        };
        assert_eq!(event.id_of("order_id"), Some(order));
        assert_eq!(event.id_of("op"), None);
        assert_eq!(event.id_of("ticket_id"), None);
        assert_eq!(event.owner(), Some(customer));
    }
}
