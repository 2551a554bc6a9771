//! PostgreSQL: the connection pool, migrations and the `Scope` handle through
//! which request code reaches data. The private cluster for local runs and tests
//! is not here: it is the crate `portal-pgcluster` (`pgcluster/`), which only the
//! binary (`src/main.rs`, when `DATABASE_URL` is unset) and the test harness use.

mod conn;
mod door;
pub mod keyset;
mod query;
mod scope;

use std::str::FromStr;

use bb8::CustomizeConnection;

pub use conn::{Conn, Manager};
pub use door::{Door, NewSession};
pub use query::Query;
pub use scope::Scope;

pub type Pool = bb8::Pool<Manager>;

/// The role customer requests run as. It owns nothing and cannot bypass row-level security.
pub const APP_ROLE: &str = "portal_app";
/// The role staff requests run as; its policies see every customer.
pub const STAFF_ROLE: &str = "portal_staff";
/// The login of the customer pool: it can become `portal_app` and nothing else.
pub const WEB_LOGIN: &str = "portal_web";
/// The login of the staff pool: it can become `portal_staff` and nothing else.
pub const STAFF_LOGIN: &str = "portal_web_staff";

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] bb8::RunError<tokio_postgres::Error>),
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
    #[error("database URL: {0}")]
    Url(String),
    /// The rows are not as this write requires (a race lost to another writer): nothing was written.
    #[error("database state: {0}")]
    Invariant(String),
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error, to tell constraint violations from outages.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            DbError::Pool(bb8::RunError::User(e)) => e.code(),
            _ => None,
        }
    }
}

/// tokio-postgres prints "db error" for server errors; the server's message is what helps.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}; {})", db.message(), db.code().code(), detail),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => e.to_string(),
    }
}

/// Switches each new connection to its pool's role, so that row-level
/// security applies from the first statement.
#[derive(Debug)]
struct SetRole(&'static str);

impl CustomizeConnection<Conn, tokio_postgres::Error> for SetRole {
    fn on_acquire<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(
            async move { conn.batch_execute(&format!("SET ROLE {}; SET application_name = 'portal'", self.0)).await },
        )
    }
}

/// Where the two pools log in.
pub struct Logins {
    pub customer: tokio_postgres::Config,
    pub staff: tokio_postgres::Config,
}

impl Logins {
    /// The dedicated logins on the same server as `owner_url` (passwordless:
    /// for the private cluster and test clusters, which trust local connections).
    pub fn dedicated(owner_url: &str) -> Result<Self, DbError> {
        let mut customer = parse(owner_url)?;
        customer.user(WEB_LOGIN);
        let mut staff = customer.clone();
        staff.user(STAFF_LOGIN);
        Ok(Logins { customer, staff })
    }

    /// Explicit URLs for the two logins (an external server, with passwords).
    pub fn from_urls(customer: &str, staff: &str) -> Result<Self, DbError> {
        Ok(Logins { customer: parse(customer)?, staff: parse(staff)? })
    }

    /// Both pools log in as the owner and only switch roles. Row-level security
    /// still scopes every query, but SQL running on a pooled connection could
    /// switch back; use dedicated logins in production.
    pub fn owner(owner_url: &str) -> Result<Self, DbError> {
        let config = parse(owner_url)?;
        Ok(Logins { customer: config.clone(), staff: config })
    }
}

fn parse(url: &str) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url).map_err(|e| DbError::Url(e.to_string()))
}

async fn pool(config: tokio_postgres::Config, role: &'static str, size: u32) -> Result<Pool, DbError> {
    Ok(bb8::Pool::builder()
        .max_size(size)
        // A liveness probe on every checkout costs a round trip per request; broken
        // connections are detected by `has_broken` and replaced instead.
        .test_on_check_out(false)
        .connection_timeout(std::time::Duration::from_secs(10))
        .connection_customizer(Box::new(SetRole(role)))
        .build(Manager::new(config))
        .await?)
}

/// The application's database: a pool for customer requests (as [`APP_ROLE`])
/// and a smaller one for staff requests (as [`STAFF_ROLE`]).
#[derive(Clone)]
pub struct Db {
    customer: Pool,
    staff: Pool,
    /// The staff login, for the live layer's own LISTEN connection (not pooled).
    staff_login: tokio_postgres::Config,
}

impl Db {
    /// `size` connections for customer requests and a quarter as many (at least two) for staff.
    pub async fn connect(logins: Logins, size: u32) -> Result<Self, DbError> {
        Self::connect_sized(logins, size, (size / 4).max(2)).await
    }

    /// Pools of exactly these sizes (the tests prove with pools of one that a request holds one connection).
    pub async fn connect_sized(logins: Logins, customer: u32, staff: u32) -> Result<Self, DbError> {
        Ok(Self {
            customer: pool(logins.customer, APP_ROLE, customer).await?,
            staff_login: logins.staff.clone(),
            staff: pool(logins.staff, STAFF_ROLE, staff).await?,
        })
    }

    /// The narrow door for work before authentication: a connection with no
    /// scope whose only methods are the schema's pre-authentication functions.
    pub async fn door(&self) -> Result<Door, DbError> {
        Ok(Door::new(self.customer.get_owned().await?))
    }

    pub(crate) async fn customer_scope(&self, customer_id: uuid::Uuid, user_id: uuid::Uuid) -> Result<Scope, DbError> {
        Scope::begin(&self.customer, scope::Kind::Customer { customer_id, user_id }).await
    }

    pub(crate) async fn staff_scope(&self, user_id: Option<uuid::Uuid>) -> Result<Scope, DbError> {
        Scope::begin(&self.staff, scope::Kind::Staff { user_id }).await
    }

    /// Where and as whom the live layer's listener connects: it reads every
    /// customer's events, which only the staff role may.
    pub fn listener_login(&self) -> (tokio_postgres::Config, &'static str) {
        let mut config = self.staff_login.clone();
        config.application_name("portal-live");
        (config, STAFF_ROLE)
    }

    /// Connections of the customer pool (the one requests wait on).
    pub fn state(&self) -> bb8::State {
        self.customer.state()
    }
}

/// An ILIKE pattern matching `q` anywhere; `%`, `_` and `\\` typed by a user are literal characters.
pub fn like_pattern(q: &str) -> String {
    format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Privileges on the database itself are not part of its contents (a copy made
/// from a template or a dump does not carry them), so they are enforced on
/// every start rather than once in a migration.
const DATABASE_PRIVILEGES: &str = "DO $$ BEGIN
    -- A temporary table named like a real one would shadow it for later requests on the same pooled connection.
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    -- Staff jobs (the demo loader) use them; staff can read everything anyway.
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO portal_staff', current_database());
END $$";

/// Applies pending migrations as the connecting (owner) role.
pub async fn migrate(url: &str) -> Result<(), DbError> {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let report = embedded::migrations::runner().run_async(&mut client).await?;
    for migration in report.applied_migrations() {
        tracing::info!(version = migration.version(), name = migration.name(), "applied migration");
    }
    client.batch_execute(DATABASE_PRIVILEGES).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_text_is_literal() {
        assert_eq!(super::like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(super::like_pattern(""), "%%");
    }
}
