//! The narrow door to the database before a request is authenticated.
//!
//! Signing in, resolving a session, spending a rate-limit budget or following an
//! emailed link happen before anyone has a [`Scope`](super::Scope), and some look
//! across customers by design ("does this address have an account?"). Each is a
//! `SECURITY DEFINER` function of the schema, reviewed in one place
//! (`migrations/`). A `Door` is a pooled connection with no scope (every
//! customer-owned table looks empty through it) whose only methods are those
//! functions: no other SQL can be sent through it, so what unauthenticated code
//! may do is this file's list, not each caller's restraint.

use std::net::IpAddr;

use bb8::PooledConnection;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{DbError, Manager};

pub struct Door {
    conn: Option<PooledConnection<'static, Manager>>,
    /// Between `begin` and `commit`; dropped in between, the transaction rolls back.
    in_transaction: bool,
}

/// A new session's row: the caller makes the token and keeps it; the database
/// gets its hash.
pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub token_hash: &'a [u8],
    pub csrf_token: &'a str,
    pub remember: bool,
    pub idle_seconds: i32,
    pub absolute_seconds: i32,
    pub ip: Option<IpAddr>,
    pub user_agent: &'a str,
    /// How the user proved who they are: `password` or `passkey` (for the activity log).
    pub method: &'static str,
}

impl Door {
    pub(super) fn new(conn: PooledConnection<'static, Manager>) -> Self {
        Door { conn: Some(conn), in_transaction: false }
    }

    fn conn(&self) -> Result<&PooledConnection<'static, Manager>, DbError> {
        self.conn.as_ref().ok_or_else(|| DbError::Invariant("door already closed".into()))
    }

    async fn one(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Row, DbError> {
        Ok(self.conn()?.query_one(sql, params).await?)
    }

    async fn opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.conn()?.query_opt(sql, params).await?)
    }

    async fn int(&self, sql: &str) -> Result<i32, DbError> {
        Ok(self.one(sql, &[]).await?.try_get(0)?)
    }

    /// Makes the following calls one transaction, until [`Door::commit`]: an
    /// account and its first session commit together, or not at all.
    pub async fn begin(&mut self) -> Result<(), DbError> {
        self.conn()?.batch_execute("BEGIN").await?;
        self.in_transaction = true;
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        if self.in_transaction {
            self.conn()?.batch_execute("COMMIT").await?;
            self.in_transaction = false;
        }
        Ok(())
    }

    /// The database answers (health checks).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.conn()?.simple_query("SELECT 1").await?;
        Ok(())
    }

    // Sign-in and sessions ----------------------------------------------------------

    /// `user_id, role, password_hash, usable` of the account with this (normalised) address.
    pub async fn login_lookup(&self, email: &str) -> Result<Option<Row>, DbError> {
        self.opt("SELECT user_id, role, password_hash, usable FROM portal_login_lookup($1)", &[&email]).await
    }

    /// Seconds to wait while the account or network is locked; otherwise 0, and the attempt counts.
    pub async fn sign_in_begin(&self, email: &str, ip: Option<IpAddr>) -> Result<i32, DbError> {
        Ok(self.one("SELECT portal_sign_in_begin($1, $2)", &[&email, &ip]).await?.try_get(0)?)
    }

    pub async fn sign_in_release(&self, email: &str, ip: Option<IpAddr>, reset: bool) -> Result<(), DbError> {
        self.one("SELECT portal_sign_in_release($1, $2, $3)", &[&email, &ip, &reset]).await?;
        Ok(())
    }

    pub async fn sign_in_failed(&self, email: &str, ip: Option<IpAddr>) -> Result<(), DbError> {
        self.one("SELECT portal_sign_in_failed($1, $2)", &[&email, &ip]).await?;
        Ok(())
    }

    /// The new session's id.
    pub async fn session_create(&self, s: &NewSession<'_>) -> Result<Uuid, DbError> {
        let row = self
            .one(
                "SELECT portal_session_create($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &s.user_id,
                    &s.token_hash,
                    &s.csrf_token,
                    &s.remember,
                    &s.idle_seconds,
                    &s.absolute_seconds,
                    &s.ip,
                    &s.user_agent,
                    &s.method,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The live session with this token hash and its viewer.
    pub async fn session_resolve(&self, token_hash: &[u8]) -> Result<Option<Row>, DbError> {
        self.opt(
            "SELECT session_id, user_id, customer_id, role, email, name, customer_name, csrf_token, verified_at, \
             needs_passkey FROM portal_session_resolve($1)",
            &[&token_hash],
        )
        .await
    }

    pub async fn session_end(&self, token_hash: &[u8], ip: Option<IpAddr>) -> Result<(), DbError> {
        self.one("SELECT portal_session_end($1, $2)", &[&token_hash, &ip]).await?;
        Ok(())
    }

    pub async fn sessions_sweep(&self) -> Result<i32, DbError> {
        self.int("SELECT portal_sessions_sweep()").await
    }

    // Rate limits -------------------------------------------------------------------

    /// Milliseconds until a unit of the budget comes free; 0 or less when one was spent.
    pub async fn rate_limit_spend(
        &self,
        bucket: &str,
        key: &str,
        count: i32,
        window_secs: i32,
    ) -> Result<i64, DbError> {
        let row =
            self.one("SELECT portal_rate_limit_spend($1, $2, $3, $4)", &[&bucket, &key, &count, &window_secs]).await?;
        Ok(row.try_get(0)?)
    }

    pub async fn throttle_sweep(&self) -> Result<i32, DbError> {
        self.int("SELECT portal_throttle_sweep()").await
    }

    // Passkey sign-in -----------------------------------------------------------------

    /// Stores a ceremony's state under the browser's token (`session`: the session that began it, if any).
    pub async fn ceremony_put(
        &self,
        token: &str,
        purpose: &str,
        session: Option<Uuid>,
        state: &serde_json::Value,
        ttl_seconds: i32,
    ) -> Result<(), DbError> {
        self.one("SELECT portal_ceremony_put($1, $2, $3, $4, $5)", &[&token, &purpose, &session, state, &ttl_seconds])
            .await?;
        Ok(())
    }

    /// Takes (once) a ceremony's state.
    pub async fn ceremony_take(
        &self,
        token: &str,
        purpose: &str,
        session: Option<Uuid>,
    ) -> Result<Option<serde_json::Value>, DbError> {
        let row = self.one("SELECT portal_ceremony_take($1, $2, $3)", &[&token, &purpose, &session]).await?;
        Ok(row.try_get(0)?)
    }

    pub async fn ceremonies_sweep(&self) -> Result<i32, DbError> {
        self.int("SELECT portal_ceremonies_sweep()").await
    }

    /// `passkey_id, user_id, role, credential, usable` of the key with this credential id.
    pub async fn passkey_lookup(&self, credential_id: &[u8]) -> Result<Option<Row>, DbError> {
        self.opt(
            "SELECT passkey_id, user_id, role, credential, usable FROM portal_passkey_lookup($1)",
            &[&credential_id],
        )
        .await
    }

    pub async fn passkey_clone_suspected(&self, passkey_id: Uuid, ip: Option<IpAddr>) -> Result<(), DbError> {
        self.one("SELECT portal_passkey_clone_suspected($1, $2)", &[&passkey_id, &ip]).await?;
        Ok(())
    }

    /// Stamps the key's last use, with its new stored form when the counter or flags moved.
    pub async fn passkey_used(&self, passkey_id: Uuid, updated: &Option<serde_json::Value>) -> Result<(), DbError> {
        self.one("SELECT portal_passkey_used($1, $2)", &[&passkey_id, updated]).await?;
        Ok(())
    }

    // Emailed links -------------------------------------------------------------------

    /// `email, name, customer_name` of a link's holder, while the link works (spends nothing).
    pub async fn token_peek(&self, purpose: &str, token: &str) -> Result<Option<Row>, DbError> {
        self.opt("SELECT email, name, customer_name FROM portal_token_peek($1, $2)", &[&purpose, &token]).await
    }

    /// Spends an invitation link: the user, now with a name and password (`None`: the link was dead).
    pub async fn invitation_accept(
        &self,
        token: &str,
        name: &str,
        password_hash: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<Uuid>, DbError> {
        let row =
            self.one("SELECT portal_invitation_accept($1, $2, $3, $4)", &[&token, &name, &password_hash, &ip]).await?;
        Ok(row.try_get(0)?)
    }

    /// Spends a registration link: the new user (`None`: the link was dead).
    pub async fn register_complete(
        &self,
        token: &str,
        name: &str,
        password_hash: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<Uuid>, DbError> {
        let row =
            self.one("SELECT portal_register_complete($1, $2, $3, $4)", &[&token, &name, &password_hash, &ip]).await?;
        Ok(row.try_get(0)?)
    }

    /// Spends a reset link: the user whose password it set (`None`: the link was dead).
    pub async fn password_reset_complete(
        &self,
        token: &str,
        password_hash: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<Uuid>, DbError> {
        let row = self.one("SELECT portal_password_reset_complete($1, $2, $3)", &[&token, &password_hash, &ip]).await?;
        Ok(row.try_get(0)?)
    }

    /// Queues a reset link (or a notice) for whatever account the address has, if any.
    pub async fn password_reset_request(
        &self,
        email: &str,
        token: &str,
        ttl_seconds: i32,
        ip: Option<IpAddr>,
    ) -> Result<(), DbError> {
        self.one("SELECT portal_password_reset_request($1, $2, $3, $4)", &[&email, &token, &ttl_seconds, &ip]).await?;
        Ok(())
    }

    /// Queues a registration link (or a notice saying why not) for the address.
    pub async fn register_request(
        &self,
        email: &str,
        name: &str,
        token: &str,
        ttl_seconds: i32,
        ip: Option<IpAddr>,
    ) -> Result<(), DbError> {
        self.one("SELECT portal_register_request($1, $2, $3, $4, $5)", &[&email, &name, &token, &ttl_seconds, &ip])
            .await?;
        Ok(())
    }

    pub async fn account_tokens_sweep(&self) -> Result<i32, DbError> {
        self.int("SELECT portal_account_tokens_sweep()").await
    }

    // The JSON API --------------------------------------------------------------------

    /// `token_id, user_id, name` of the integration a live bearer token belongs to (stamping its use).
    pub async fn api_token_resolve(&self, token_hash: &[u8]) -> Result<Option<Row>, DbError> {
        self.opt("SELECT token_id, user_id, name FROM portal_api_token_resolve($1)", &[&token_hash]).await
    }
}

impl Drop for Door {
    /// A transaction left open (an error between `begin` and `commit`) rolls back
    /// before the connection returns to the pool, as a [`Scope`](super::Scope)'s does.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.in_transaction {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn.batch_execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "rollback of an abandoned door transaction failed");
                    }
                });
            }
            Err(_) => drop(conn),
        }
    }
}
