//! Integration tests, by feature, over real HTTP against a real PostgreSQL.

// A failed expectation in a test should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod accounts;
mod admin;
mod api;
mod architecture;
mod browser;
mod connections;
mod documents;
mod live;
mod mail;
mod orders;
mod pages;
mod passkeys;
mod relay;
mod settings;
mod sign_in;
mod staff_documents;
mod staff_orders;
mod storage;
mod tenancy;
mod throttle;
mod workflows;
