//! Accounts: command-line administration, the company's team, the user's settings.

pub mod admin;
