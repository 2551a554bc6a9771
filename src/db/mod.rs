//! PostgreSQL: the connection pool, migrations, the `Scope` handle through
//! which request code reaches data, and the private cluster for local runs.

pub mod cluster;
mod scope;

use std::str::FromStr;

use bb8::{CustomizeConnection, PooledConnection};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;

pub use scope::Scope;

pub type Manager = PostgresConnectionManager<NoTls>;
pub type Pool = bb8::Pool<Manager>;

/// The role every pooled connection switches to. It owns nothing and cannot bypass row-level security.
pub const APP_ROLE: &str = "portal_app";
/// The role a staff scope switches to for its transaction; its policies see every customer.
pub const STAFF_ROLE: &str = "portal_staff";

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

/// Switches each new connection to the application role, so that row-level
/// security applies even when the URL names the (owner or superuser) role
/// that ran the migrations.
#[derive(Debug)]
struct AppRole;

impl CustomizeConnection<tokio_postgres::Client, tokio_postgres::Error> for AppRole {
    fn on_acquire<'a>(
        &'a self,
        conn: &'a mut tokio_postgres::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>> {
        Box::pin(
            async move { conn.batch_execute(&format!("SET ROLE {APP_ROLE}; SET application_name = 'portal'")).await },
        )
    }
}

/// The application's database: a pool of connections running as [`APP_ROLE`].
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    pub async fn connect(url: &str, size: u32) -> Result<Self, DbError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = bb8::Pool::builder()
            .max_size(size)
            // A liveness probe on every checkout costs a round trip per request; broken
            // connections are detected by `has_broken` and replaced instead.
            .test_on_check_out(false)
            .connection_timeout(std::time::Duration::from_secs(10))
            .connection_customizer(Box::new(AppRole))
            .build(manager)
            .await?;
        Ok(Self { pool })
    }

    /// A connection with no scope: every customer-owned table looks empty
    /// through it. Only for the narrow authentication functions of the schema
    /// (`portal_login_lookup`, `portal_session_*`) and for health checks.
    pub async fn unscoped(&self) -> Result<PooledConnection<'_, Manager>, DbError> {
        Ok(self.pool.get().await?)
    }

    pub(crate) async fn customer_scope(&self, customer_id: uuid::Uuid, user_id: uuid::Uuid) -> Result<Scope, DbError> {
        Scope::begin(&self.pool, scope::Kind::Customer { customer_id, user_id }).await
    }

    pub(crate) async fn staff_scope(&self, user_id: Option<uuid::Uuid>) -> Result<Scope, DbError> {
        Scope::begin(&self.pool, scope::Kind::Staff { user_id }).await
    }

    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }
}

/// Applies pending migrations as the connecting (owner) role.
pub async fn migrate(url: &str) -> Result<(), DbError> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(connection);
    let report = embedded::migrations::runner().run_async(&mut client).await?;
    for migration in report.applied_migrations() {
        tracing::info!(version = migration.version(), name = migration.name(), "applied migration");
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
