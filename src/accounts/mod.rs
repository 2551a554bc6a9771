//! Accounts: command-line administration, the company's team and invitations,
//! the user's settings.

pub mod admin;
pub mod customers;
pub mod invite;
pub mod passkeys;
pub mod settings;
pub mod team;
pub mod team_store;
