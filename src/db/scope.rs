//! The only way request code reaches customer data.
//!
//! A `Scope` is one transaction on one pooled connection, opened after
//! `portal.customer_id` has been set for that transaction alone. Staff scopes
//! come from the staff pool, whose connections run as the staff role. Row-level security in the schema does the filtering, so a query that
//! forgets a `WHERE customer_id = ...` still cannot see another customer's rows.
//! Handlers get a scope only from the authenticated extractors in `web::extract`.

use bb8::PooledConnection;
use futures_util::future::try_join;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{DbError, Manager, Pool};

pub(crate) enum Kind {
    Customer {
        customer_id: Uuid,
        user_id: Uuid,
    },
    /// Staff sessions, and staff jobs run from the command line (no user).
    Staff {
        user_id: Option<Uuid>,
    },
}

pub struct Scope {
    conn: Option<PooledConnection<'static, Manager>>,
    customer_id: Option<Uuid>,
    live_cursor: i64,
}

/// The scope's first statement also reads the oldest transaction still running
/// (the last column): every change committed before it is visible to all the scope's statements.
const CUSTOMER_SETTINGS: &str = "SELECT set_config('portal.customer_id', $1, true), \
     set_config('portal.user_id', $2, true), pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
const STAFF_SETTINGS: &str =
    "SELECT set_config('portal.user_id', $1, true), pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

impl Scope {
    /// `pool` must be the pool of the kind: customer scopes on the customer pool, staff on the staff pool.
    pub(crate) async fn begin(pool: &Pool, kind: Kind) -> Result<Self, DbError> {
        // The scope exists before BEGIN is sent: if this future is dropped while
        // BEGIN is in flight (a client hanging up), the drop still rolls back.
        let mut scope = Scope { conn: Some(pool.get_owned().await?), customer_id: None, live_cursor: 0 };
        // BEGIN and the settings go out together (tokio-postgres pipelines concurrent
        // calls on one connection in the order they are first polled): one round trip instead of two.
        let (customer, user) = match kind {
            Kind::Customer { customer_id, user_id } => (Some(customer_id), Some(user_id)),
            Kind::Staff { user_id } => (None, user_id),
        };
        scope.customer_id = customer;
        let user = user.map(|u| u.to_string()).unwrap_or_default();
        let customer_text = customer.map(|c| c.to_string());
        let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match &customer_text {
            Some(customer) => (CUSTOMER_SETTINGS, vec![customer, &user]),
            None => (STAFF_SETTINGS, vec![&user]),
        };
        // `try_join` polls its first future first, so BEGIN is queued before the settings.
        let (_, row) = try_join(scope.batch_execute("BEGIN"), scope.query_one(sql, &params)).await?;
        scope.live_cursor = row.try_get(row.len() - 1)?;
        Ok(scope)
    }

    /// The customer this scope is limited to; `None` for staff.
    pub fn customer_id(&self) -> Option<Uuid> {
        self.customer_id
    }

    /// The position in the live event stream that what this scope reads reflects
    /// (at least): a page rendered from it resumes its live updates from here.
    pub fn live_cursor(&self) -> i64 {
        self.live_cursor
    }

    fn client(&self) -> Result<&PooledConnection<'static, Manager>, DbError> {
        // `conn` is only taken by `commit` and `drop`, which consume the scope.
        self.conn.as_ref().ok_or_else(|| DbError::Url("scope already finished".into()))
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        Ok(self.client()?.query(sql, params).await?)
    }

    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, DbError> {
        Ok(self.client()?.query_opt(sql, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        Ok(self.client()?.query_one(sql, params).await?)
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        Ok(self.client()?.execute(sql, params).await?)
    }

    /// Runs several statements without parameters (fixed SQL only, such as the demo data).
    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.client()?.batch_execute(sql).await?)
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        if let Some(conn) = self.conn.take() {
            conn.batch_execute("COMMIT").await?;
        }
        Ok(())
    }
}

impl Drop for Scope {
    /// An unfinished scope (an early return or an error) is rolled back before
    /// its connection goes back to the pool, so no half-written change and no
    /// scope setting can leak into the next request.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn.batch_execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "rollback of an abandoned scope failed");
                    }
                });
            }
            // Without a runtime the process is shutting down and the pool with it.
            Err(_) => drop(conn),
        }
    }
}
