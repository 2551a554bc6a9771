//! Portal: a self-hosted customer portal for service businesses.
//!
//! `main.rs` only parses the command line; everything else, including the
//! HTTP application the tests start, is built here.

pub mod accounts;
pub mod activity;
pub mod address;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod documents;
pub mod format;
pub mod health;
pub mod invoices;
pub mod live;
pub mod mail;
pub mod notifications;
pub mod orders;
pub mod reports;
pub mod routes;
pub mod signin;
pub mod staff;
pub mod storage;
pub mod telemetry;
pub mod tickets;
pub mod web;

pub use app::Application;
pub use config::Config;
