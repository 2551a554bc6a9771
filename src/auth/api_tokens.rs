//! Integration users and their API bearer tokens: the other systems (ERP, shop)
//! that use the JSON API, each a staff user of its own (`users.integration`).
//!
//! A token is `portal_` and 43 characters of base64url (256 random bits); the
//! database keeps only its SHA-256 (`api_tokens`) and its first 12 characters,
//! so a leaked token can be recognised in the list. Creating integrations and
//! adding or revoking tokens go through the `SECURITY DEFINER` functions of
//! `migrations/V6__orders.sql`, which check the staff admin themselves and log
//! `integration.*`. No HTTP here: `api::auth` reads the header, `staff::integrations`
//! is the page.

use std::net::IpAddr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::session::{random_token, token_hash};
use crate::db::{Db, DbError, Scope};

pub const TOKEN_PREFIX: &str = "portal_";
/// `portal_` + 43 characters.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
/// How much of a token the lists show.
pub const SHOWN_PREFIX_LEN: usize = 12;

/// A new token: what to show once, what to store (its SHA-256), and the prefix to list it by.
pub struct NewToken {
    pub token: String,
    pub hash: Vec<u8>,
    pub prefix: String,
}

pub fn new_token() -> NewToken {
    let token = format!("{TOKEN_PREFIX}{}", random_token());
    let prefix = token.chars().take(SHOWN_PREFIX_LEN).collect();
    NewToken { hash: token_hash(&token), prefix, token }
}

/// Could `token` be one of ours? Anything else is refused without a query.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The integration user a request acts as.
#[derive(Clone, Debug)]
pub struct Integration {
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
}

/// A live token's integration (marking the token used), or `None`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn resolve(db: &Db, token: &str) -> Result<Option<Integration>, DbError> {
    // Before any scope exists: through the door, whose one API function this is.
    let Some(row) = db.door().await?.api_token_resolve(&token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(Some(Integration {
        token_id: row.try_get("token_id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
    }))
}

pub struct TokenRow {
    pub id: Uuid,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub struct IntegrationRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub disabled: bool,
    pub tokens: Vec<TokenRow>,
}

/// Every integration with its tokens, newest token first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn integrations(scope: &Scope) -> Result<Vec<IntegrationRow>, DbError> {
    let mut list = Vec::new();
    for r in scope
        .query(
            "SELECT id, name, created_at, disabled_at IS NOT NULL AS disabled FROM users WHERE integration \
             ORDER BY lower(name), id",
            &[],
        )
        .await?
    {
        list.push(IntegrationRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            created_at: r.try_get("created_at")?,
            disabled: r.try_get("disabled")?,
            tokens: Vec::new(),
        });
    }
    // The hash is not even selectable by staff; the prefix is what identifies a token.
    let tokens = scope
        .query(
            "SELECT t.id, t.user_id, t.prefix, t.created_at, t.last_used_at, t.revoked_at, u.name AS created_by \
             FROM api_tokens t JOIN users i ON i.id = t.user_id AND i.integration \
             LEFT JOIN users u ON u.id = t.created_by ORDER BY t.created_at DESC, t.id",
            &[],
        )
        .await?;
    for t in &tokens {
        let owner: Uuid = t.try_get("user_id")?;
        if let Some(integration) = list.iter_mut().find(|i: &&mut IntegrationRow| i.id == owner) {
            integration.tokens.push(TokenRow {
                id: t.try_get("id")?,
                prefix: t.try_get("prefix")?,
                created_at: t.try_get("created_at")?,
                created_by: t.try_get("created_by")?,
                last_used_at: t.try_get("last_used_at")?,
                revoked_at: t.try_get("revoked_at")?,
            });
        }
    }
    Ok(list)
}

/// Creates an integration user with its first token; `None` when the caller is not a staff admin.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create_integration(
    scope: &Scope,
    name: &str,
    token: &NewToken,
    ip: Option<IpAddr>,
) -> Result<Option<Uuid>, DbError> {
    Ok(scope
        .query_one("SELECT portal_integration_create($1, $2, $3, $4)", &[&name, &token.hash, &token.prefix, &ip])
        .await?
        .try_get(0)?)
}

/// Adds a token to an enabled integration; `false` when there is none (or the caller is not a staff admin).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn add_token(scope: &Scope, user: Uuid, token: &NewToken, ip: Option<IpAddr>) -> Result<bool, DbError> {
    Ok(scope
        .query_one("SELECT portal_integration_token_add($1, $2, $3, $4)", &[&user, &token.hash, &token.prefix, &ip])
        .await?
        .try_get(0)?)
}

/// The shown prefix of a token, if it exists.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn token_prefix(scope: &Scope, id: Uuid) -> Result<Option<String>, DbError> {
    match scope.query_opt("SELECT prefix FROM api_tokens WHERE id = $1", &[&id]).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// Revokes a token; `false` when it already was.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(scope: &Scope, id: Uuid, ip: Option<IpAddr>) -> Result<bool, DbError> {
    Ok(scope.query_one("SELECT portal_integration_token_revoke($1, $2)", &[&id, &ip]).await?.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_recognisable_shape() {
        let new = new_token();
        assert_eq!(new.token.len(), TOKEN_LEN);
        assert!(well_formed(&new.token));
        assert_eq!(new.prefix.len(), SHOWN_PREFIX_LEN);
        assert!(new.token.starts_with(&new.prefix) && new.prefix.starts_with(TOKEN_PREFIX));
        assert_eq!(new.hash, token_hash(&new.token));
        assert_ne!(new.token, new_token().token);
        assert!(!well_formed(&new.token[1..]));
        assert!(!well_formed(&format!("portal_{}a", "é".repeat(21))), "43 bytes, but not base64url");
        assert!(!well_formed(&format!("portal_{}", "a".repeat(42) + "=")));
    }
}
