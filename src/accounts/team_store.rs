//! The people of a customer and what is done to them: the team list, inviting
//! (with its budgets), renewing and withdrawing invitations, disabling and
//! re-enabling accounts. One store for the company's admins (Team) and for staff
//! (a customer's page in the back office); every function runs in the caller's
//! scope, and the database functions check who may do what.

use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::Row;
use uuid::Uuid;

use super::invite::{INVITATION_TTL, InviteFields, Invitee};
use crate::auth::budget;
use crate::auth::normalize_email;
use crate::auth::session::random_token;
use crate::auth::throttle::Limit;
use crate::db::{DbError, Scope};

/// A user of a customer, as the team lists show them.
pub struct TeamMember {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// As stored (`customer_admin`, …); [`crate::auth::Role::parse`] reads it.
    pub role: String,
    pub disabled: bool,
    /// Invited and not yet accepted.
    pub invited: bool,
}

/// The order a list of members is shown in.
#[derive(Clone, Copy)]
pub enum MemberOrder {
    /// Team: active people first, then invitations, then disabled accounts; by name.
    Team,
    /// A customer's page in the back office: disabled accounts last, otherwise by name.
    Staff,
}

const TEAM: &str = "SELECT id, name, email, role, disabled_at IS NOT NULL AS disabled, \
     email_verified_at IS NULL AS invited FROM users WHERE customer_id = $1 \
     ORDER BY disabled_at IS NOT NULL, email_verified_at IS NULL, lower(name), email";
const STAFF: &str = "SELECT id, name, email, role, disabled_at IS NOT NULL AS disabled, \
     email_verified_at IS NULL AS invited FROM users WHERE customer_id = $1 \
     ORDER BY disabled_at IS NOT NULL, lower(name)";

fn member(r: &Row) -> Result<TeamMember, DbError> {
    Ok(TeamMember {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        role: r.try_get("role")?,
        disabled: r.try_get("disabled")?,
        invited: r.try_get("invited")?,
    })
}

/// Everyone of `customer`, invitations and disabled accounts included.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn members(scope: &Scope, customer: Uuid, order: MemberOrder) -> Result<Vec<TeamMember>, DbError> {
    let sql = match order {
        MemberOrder::Team => TEAM,
        MemberOrder::Staff => STAFF,
    };
    scope.query(sql, &[&customer]).await?.iter().map(member).collect()
}

/// A pending invitation of `customer` (not accepted, not disabled), as the form that made it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn pending_invitation(scope: &Scope, customer: Uuid, user: Uuid) -> Result<Option<InviteFields>, DbError> {
    let row = scope
        .query_opt(
            "SELECT name, email, role FROM users WHERE id = $1 AND customer_id = $2 \
             AND email_verified_at IS NULL AND disabled_at IS NULL",
            &[&user, &customer],
        )
        .await?;
    row.map(|r| Ok(InviteFields { name: r.try_get("name")?, email: r.try_get("email")?, role: r.try_get("role")? }))
        .transpose()
}

pub enum Outcome {
    /// Sent (or, for an address with an account elsewhere, a notice went to its owner instead).
    Sent,
    /// The address is already on this customer's team.
    AlreadyMember,
}

/// Queues the invitation in the scope's transaction; the caller commits.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn invite(scope: &Scope, customer: Uuid, invitee: &Invitee, ip: Option<IpAddr>) -> Result<Outcome, DbError> {
    let ttl = i32::try_from(INVITATION_TTL.as_secs()).unwrap_or(i32::MAX);
    let answer: String = scope
        .query_one(
            "SELECT portal_invite($1, $2, $3, $4, $5, $6, $7)",
            &[&customer, &invitee.email, &invitee.name, &invitee.role.as_str(), &random_token(), &ttl, &ip],
        )
        .await?
        .try_get(0)?;
    Ok(if answer == "member" { Outcome::AlreadyMember } else { Outcome::Sent })
}

/// Spends the sender's and the address's invitation budgets in the scope's
/// transaction (no second connection); `Some(wait)` when either is used up.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn over_budget(scope: &Scope, sender: Uuid, email: &str) -> Result<Option<Duration>, DbError> {
    let sender = sender.to_string();
    let email = normalize_email(email);
    for (limit, key) in [(Limit::InvitationSender, sender.as_str()), (Limit::InvitationAddress, email.as_str())] {
        if let Err(throttled) = budget::spend(scope, limit, key).await? {
            return Ok(Some(throttled.retry_after));
        }
    }
    Ok(None)
}

/// Withdraws a pending invitation (its link dies); `false` when there is none the caller may withdraw.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn withdraw(scope: &Scope, user: Uuid, ip: Option<IpAddr>) -> Result<bool, DbError> {
    Ok(scope.query_one("SELECT portal_invitation_revoke($1, $2)", &[&user, &ip]).await?.try_get(0)?)
}

/// Disables (ending every session) or re-enables an account; `false` when the
/// caller may not (not theirs to manage, or themselves).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_disabled(scope: &Scope, user: Uuid, disabled: bool, ip: Option<IpAddr>) -> Result<bool, DbError> {
    Ok(scope.query_one("SELECT portal_user_set_disabled($1, $2, $3)", &[&user, &disabled, &ip]).await?.try_get(0)?)
}

/// The customer a user belongs to; `None` for staff and unknown users.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn customer_of(scope: &Scope, user: Uuid) -> Result<Option<Uuid>, DbError> {
    match scope.query_opt("SELECT customer_id FROM users WHERE id = $1", &[&user]).await? {
        Some(row) => Ok(row.try_get(0)?),
        None => Ok(None),
    }
}
