//! Accounts: command-line administration, the company's team and invitations,
//! the user's settings.

pub mod admin;
pub mod invite;
pub mod passkeys;
pub mod settings;
pub mod team;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(team::routes).configure(settings::routes).configure(passkeys::routes);
}
