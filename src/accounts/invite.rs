//! Inviting someone to a customer's portal, for the company's admins (Team) and
//! for staff (a customer's page in the back office). The database function
//! decides what the invitee receives: an invitation, or, when the address
//! already has an account elsewhere, a notice to its owner. The inviter sees
//! the same answer either way, so no one learns who uses the portal.
//!
//! This is the form and its checks; sending, and the budgets it spends, are in
//! [`super::team_store`].

use std::time::Duration;

use serde::Deserialize;

use crate::auth::Role;

/// Invitations work for a week.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize, Default, Clone)]
pub struct InviteFields {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub role: String,
}

#[derive(Default)]
pub struct InviteErrors {
    pub name: Option<&'static str>,
    pub email: Option<String>,
    pub role: Option<&'static str>,
}

impl InviteErrors {
    pub fn any(&self) -> bool {
        self.name.is_some() || self.email.is_some() || self.role.is_some()
    }
}

/// A checked invitation: who, at which address, with which role.
pub struct Invitee {
    pub name: String,
    pub email: String,
    pub role: Role,
}

impl InviteFields {
    pub fn check(&self) -> Result<Invitee, InviteErrors> {
        let mut errors = InviteErrors::default();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            errors.name = Some("Enter the person's name (up to 200 characters).");
        }
        let email = crate::accounts::admin::check_email(&self.email);
        if email.is_err() {
            errors.email = Some("Enter an email address such as name@company.com.".into());
        }
        let role = match self.role.as_str() {
            "customer_admin" => Some(Role::CustomerAdmin),
            "customer_member" | "" => Some(Role::CustomerMember),
            _ => None,
        };
        if role.is_none() {
            errors.role = Some("Choose Member or Admin.");
        }
        match (email, role) {
            (Ok(email), Some(role)) if !errors.any() => Ok(Invitee { name: name.to_owned(), email, role }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn invitations_are_checked_field_by_field() {
        let ok = InviteFields { name: " Dave Two ".into(), email: "Dave2@Acme.example".into(), role: String::new() };
        let invitee = ok.check().ok().filter(|i| i.email == "dave2@acme.example" && i.name == "Dave Two");
        assert!(invitee.is_some_and(|i| i.role == Role::CustomerMember));
        let bad = InviteFields { name: String::new(), email: "dave".into(), role: "staff_admin".into() };
        let Err(errors) = bad.check() else { panic!("a bad invitation was accepted") };
        assert!(errors.name.is_some() && errors.email.is_some() && errors.role.is_some());
    }
}
