//! The one query builder: SQL text and its parameters, numbered as they are bound,
//! for the lists whose WHERE clause depends on which filters are set.
//!
//! The text is private and grows only from typed parts: fixed `&'static str`
//! fragments written in the code, placeholders for bound values, and numbers
//! written from integers. No text a user typed can ever become SQL.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{DbError, Scope};

type Param = Box<dyn ToSql + Sync + Send>;

#[derive(Default)]
pub struct Query {
    sql: String,
    params: Vec<Param>,
}

impl Query {
    /// A query starting with this fixed text.
    pub fn new(sql: &'static str) -> Self {
        Query { sql: sql.to_owned(), params: Vec::new() }
    }

    /// Appends fixed text.
    pub fn push_sql(&mut self, sql: &'static str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Binds a value and appends its placeholder (`$1`, `$2`, …).
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> &mut Self {
        self.params.push(Box::new(value));
        self.sql.push('$');
        self.sql.push_str(&self.params.len().to_string());
        self
    }

    /// ` AND <condition> $n`: a condition on one bound value, e.g. `and("o.status =", status)`.
    pub fn and(&mut self, condition: &'static str, value: impl ToSql + Sync + Send + 'static) -> &mut Self {
        self.push_sql(" AND ").push_sql(condition).push_sql(" ").bind(value)
    }

    /// ` LIMIT n`, written as a number (a constant limit keeps the planner's estimates exact).
    pub fn limit(&mut self, n: usize) -> &mut Self {
        self.sql.push_str(" LIMIT ");
        self.sql.push_str(&n.to_string());
        self
    }

    /// The SQL text as built.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }

    pub async fn fetch(&self, db: &Scope) -> Result<Vec<Row>, DbError> {
        db.query(&self.sql, &self.refs()).await
    }

    pub async fn fetch_one(&self, db: &Scope) -> Result<Row, DbError> {
        db.query_one(&self.sql, &self.refs()).await
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn placeholders_follow_the_bindings() {
        let mut q = Query::new("SELECT 1 FROM orders o WHERE TRUE");
        q.and("o.status =", "open").push_sql(" AND o.id = ANY(").bind(vec![1_i32]).push_sql(")").limit(26);
        assert_eq!(q.sql(), "SELECT 1 FROM orders o WHERE TRUE AND o.status = $1 AND o.id = ANY($2) LIMIT 26");
        assert_eq!(q.refs().len(), 2);
    }
}
