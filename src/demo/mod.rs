//! Demo data: two customers with orders at every stage, invoices paid, open
//! and overdue, versioned documents, tickets and notifications, so every page
//! has something real to show. Loading is idempotent and all-or-nothing.

use secrecy::SecretString;

use crate::auth::password;
use crate::db::{Db, DbError};

pub const PASSWORD: &str = "demo-portal-password";

pub const ACCOUNTS: &[(&str, &str)] = &[
    ("alice@acme.example", "Acme Manufacturing, customer admin"),
    ("dave@acme.example", "Acme Manufacturing, member"),
    ("bob@globex.example", "Globex Logistics, customer admin"),
    ("staff@portal.example", "staff back office"),
];

const USERS: &[(&str, Option<&str>, &str, &str)] = &[
    ("staff@portal.example", None, "Sam Staff", "staff_admin"),
    ("alice@acme.example", Some("acme"), "Alice Lee", "customer_admin"),
    ("dave@acme.example", Some("acme"), "Dave Park", "customer_member"),
    ("bob@globex.example", Some("globex"), "Bob Stone", "customer_admin"),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
}

/// Loads the demo data unless it is already there; returns whether it loaded.
pub async fn load(db: &Db) -> Result<bool, DemoError> {
    let scope = db.staff_scope(None).await?;
    if scope.query_opt("SELECT 1 FROM customers WHERE slug = 'acme'", &[]).await?.is_some() {
        return Ok(false);
    }
    scope.batch_execute(include_str!("customers.sql")).await?;
    let hash = password::hash(SecretString::from(PASSWORD)).await?;
    for (email, customer, name, role) in USERS {
        scope
            .execute(
                "INSERT INTO users (customer_id, email, name, role, password_hash) \
                 VALUES ((SELECT id FROM customers WHERE slug = $1), $2, $3, $4, $5)",
                &[customer, email, name, role, &hash],
            )
            .await?;
    }
    scope.batch_execute(include_str!("content.sql")).await?;
    scope.commit().await?;
    Ok(true)
}
