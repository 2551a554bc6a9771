//! Account administration run from the command line as a staff job.

use secrecy::SecretString;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::auth::password;
use crate::db::{Db, DbError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Duplicate(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        AdminError::Db(e.into())
    }
}

pub(crate) fn check_email(email: &str) -> Result<String, AdminError> {
    crate::address::check_email(email).map_err(|e| AdminError::Invalid(e.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if (1..=200).contains(&name.chars().count()) {
        Ok(name.to_owned())
    } else {
        Err(AdminError::Invalid(format!("{what} must have 1 to 200 characters")))
    }
}

fn duplicate(e: DbError, what: String) -> AdminError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) { AdminError::Duplicate(what) } else { AdminError::Db(e) }
}

pub async fn create_customer(
    db: &Db,
    name: &str,
    slug: &str,
    admin: Option<(&str, &str, SecretString)>,
) -> Result<Uuid, AdminError> {
    let name = check_name("The customer name", name)?;
    let valid_slug = !slug.is_empty()
        && slug.len() <= 63
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if !valid_slug {
        return Err(AdminError::Invalid("the slug may only hold lower-case letters, digits and dashes".into()));
    }
    let admin = match admin {
        Some((email, admin_name, pw)) => {
            Some((check_email(email)?, check_name("The admin's name", admin_name)?, password::hash(pw).await?))
        }
        None => None,
    };
    let scope = db.staff_scope(None).await?;
    let row = scope
        .query_one("INSERT INTO customers (name, slug) VALUES ($1, $2) RETURNING id", &[&name, &slug])
        .await
        .map_err(|e| duplicate(e, format!("A customer with slug {slug:?}")))?;
    let id: Uuid = row.try_get(0)?;
    if let Some((email, admin_name, hash)) = admin {
        scope
            .execute(
                "INSERT INTO users (customer_id, email, name, role, password_hash) VALUES ($1, $2, $3, 'customer_admin', $4)",
                &[&id, &email, &admin_name, &hash],
            )
            .await
            .map_err(|e| duplicate(e, format!("A user with email {email}")))?;
    }
    scope
        .execute(
            "INSERT INTO activity_log (customer_id, actor_label, action, subject_type, subject_id) \
             VALUES ($1, 'command line', 'customer.created', 'customer', $1)",
            &[&id],
        )
        .await?;
    scope.commit().await?;
    Ok(id)
}

pub async fn create_staff(
    db: &Db,
    email: &str,
    name: &str,
    admin: bool,
    password: SecretString,
) -> Result<Uuid, AdminError> {
    let email = check_email(email)?;
    let name = check_name("The name", name)?;
    let hash = password::hash(password).await?;
    let role = if admin { "staff_admin" } else { "staff" };
    let scope = db.staff_scope(None).await?;
    let row = scope
        .query_one(
            "INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&email, &name, &role, &hash],
        )
        .await
        .map_err(|e| duplicate(e, format!("A user with email {email}")))?;
    let id: Uuid = row.try_get(0)?;
    scope
        .execute(
            "INSERT INTO activity_log (actor_label, action, subject_type, subject_id) \
             VALUES ('command line', 'staff.created', 'user', $1)",
            &[&id],
        )
        .await?;
    scope.commit().await?;
    Ok(id)
}
