//! Who is asking: passwords, server-side sessions, passkey ceremonies, throttling
//! and safe redirects after sign-in. No HTTP here: the pages that use it are
//! `signin/` and `accounts/`, and `web/` stands on it.

pub mod api_tokens;
pub mod budget;
pub mod passkeys;
pub mod password;
pub mod redirect;
pub mod session;
pub mod staff_passkeys;
pub mod strength;
pub mod throttle;
pub mod tokens;

use uuid::Uuid;

pub use crate::address::normalize_email;

pub use session::{SignIn, Viewer};

use crate::db::DbError;
use password::PasswordError;

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        AuthError::Db(e.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Too many attempts (sign-in locked, or a rate limit): 429 with `Retry-After`.
    #[error("too many attempts; retry in {} s", .0.retry_after_secs())]
    Throttled(throttle::Throttled),
    /// A passkey ceremony's state could not be kept or made (webauthn-rs refused).
    #[error("passkey ceremony: {0}")]
    Ceremony(String),
}

/// What a user may do is decided by one of four roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    CustomerAdmin,
    CustomerMember,
    Staff,
    StaffAdmin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "customer_admin" => Role::CustomerAdmin,
            "customer_member" => Role::CustomerMember,
            "staff" => Role::Staff,
            "staff_admin" => Role::StaffAdmin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CustomerAdmin => "customer_admin",
            Role::CustomerMember => "customer_member",
            Role::Staff => "staff",
            Role::StaffAdmin => "staff_admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::CustomerAdmin => "Customer admin",
            Role::CustomerMember => "Member",
            Role::Staff => "Staff",
            Role::StaffAdmin => "Staff admin",
        }
    }

    pub fn is_staff(self) -> bool {
        matches!(self, Role::Staff | Role::StaffAdmin)
    }
}

/// A customer a viewer belongs to.
#[derive(Clone, Debug)]
pub struct CustomerRef {
    pub id: Uuid,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in [Role::CustomerAdmin, Role::CustomerMember, Role::Staff, Role::StaffAdmin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(Role::StaffAdmin.is_staff() && !Role::CustomerAdmin.is_staff());
    }
}
