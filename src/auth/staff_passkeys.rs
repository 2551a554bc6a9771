//! The staff passkey requirement (`/staff/security`): whether staff must sign in
//! with passkeys, and who among the staff has one. With it on, sign-in refuses
//! passwords of staff who have a passkey, and the session of one who has none is
//! marked as needing one (`portal_session_resolve`).

use std::net::IpAddr;

use uuid::Uuid;

use crate::db::{DbError, Scope};

/// A staff member (integration users left out) and how they can sign in.
pub struct StaffSignIn {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// As stored; [`super::Role::parse`] reads it.
    pub role: String,
    pub passkeys: i64,
    pub password_sign_in: bool,
}

/// Whether staff must sign in with passkeys.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn required(scope: &Scope) -> Result<bool, DbError> {
    Ok(scope.query_one("SELECT staff_passkeys_required FROM portal_settings", &[]).await?.try_get(0)?)
}

/// Every enabled staff member, by name, with how many passkeys they have.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn staff(scope: &Scope) -> Result<Vec<StaffSignIn>, DbError> {
    // Staff read only their own passkeys; how many each colleague has comes from a counting function.
    scope
        .query(
            "SELECT u.id, u.name, u.email, u.role, u.password_sign_in, coalesce(c.passkeys, 0) AS passkeys \
             FROM users u LEFT JOIN portal_staff_passkey_counts() c ON c.user_id = u.id \
             WHERE u.customer_id IS NULL AND u.disabled_at IS NULL AND NOT u.integration \
             ORDER BY u.name, u.email",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StaffSignIn {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                email: r.try_get("email")?,
                role: r.try_get("role")?,
                passkeys: r.try_get("passkeys")?,
                password_sign_in: r.try_get("password_sign_in")?,
            })
        })
        .collect()
}

/// Switches the requirement on or off (and logs it); `false` when the caller is not a staff admin.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_required(scope: &Scope, required: bool, ip: Option<IpAddr>) -> Result<bool, DbError> {
    Ok(scope.query_one("SELECT portal_staff_passkeys_require($1, $2)", &[&required, &ip]).await?.try_get(0)?)
}
