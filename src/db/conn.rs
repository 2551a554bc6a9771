//! Pooled connections that prepare each statement once.
//!
//! tokio-postgres prepares an unnamed statement for every `query(&str)`: a
//! Parse round trip, and a fresh plan at every Bind. Under row-level security
//! planning is the expensive part (the policies are planned into every query):
//! profiling `/orders` at 100,000 orders showed about half of PostgreSQL's time
//! per request in Parse and Bind. Named statements, kept per connection, are
//! parsed once, and PostgreSQL switches them to a cached generic plan after a
//! few executions when that plan is as good as the custom ones.

use std::collections::HashMap;
use std::sync::Mutex;

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

/// Statements kept per connection. The list pages build their SQL from the
/// filters in use, so the set is finite but not tiny; past this the cache starts over.
const MAX_STATEMENTS: usize = 256;

/// A pooled connection: the client and its prepared statements.
pub struct Conn {
    client: Client,
    statements: Mutex<HashMap<Box<str>, Statement>>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Conn { client, statements: Mutex::new(HashMap::new()) }
    }

    /// The statement for `sql`, prepared on this connection the first time it is asked for.
    pub async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.cached(sql) {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        if let Ok(mut statements) = self.statements.lock() {
            if statements.len() >= MAX_STATEMENTS {
                statements.clear();
            }
            statements.insert(sql.into(), statement.clone());
        }
        Ok(statement)
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements.lock().ok().and_then(|statements| statements.get(sql).cloned())
    }

    /// A statement the server no longer accepts (its plan went stale after a
    /// schema change, or the server forgot it) is prepared afresh next time.
    fn forget_if_stale(&self, sql: &str, error: &tokio_postgres::Error) {
        let stale = matches!(error.code(), Some(c) if *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::INVALID_SQL_STATEMENT_NAME);
        if stale && let Ok(mut statements) = self.statements.lock() {
            statements.remove(sql);
        }
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepared(sql).await?;
        self.client.query(&statement, params).await.inspect_err(|e| self.forget_if_stale(sql, e))
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, tokio_postgres::Error> {
        let statement = self.prepared(sql).await?;
        self.client.query_one(&statement, params).await.inspect_err(|e| self.forget_if_stale(sql, e))
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.prepared(sql).await?;
        self.client.query_opt(&statement, params).await.inspect_err(|e| self.forget_if_stale(sql, e))
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepared(sql).await?;
        self.client.execute(&statement, params).await.inspect_err(|e| self.forget_if_stale(sql, e))
    }
}

/// Everything else (transactions, COPY, simple queries) is the client's own,
/// unprepared. The methods above shadow the client's of the same name.
impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// bb8-postgres's manager, handing out [`Conn`]s.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl Manager {
    pub fn new(config: tokio_postgres::Config) -> Self {
        Manager(PostgresConnectionManager::new(config, NoTls))
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        Ok(Conn::new(self.0.connect().await?))
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}
