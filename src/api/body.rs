//! Reading a JSON body field by field, so every refusal names its field.
//!
//! The body arrives as a JSON value (syntax, size and content type are checked
//! by the scope's `JsonConfig`); each field is then taken on its own: an unknown
//! field, a missing one or a value of the wrong type is a 422 naming it, with
//! serde's own description of what was wrong.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;

/// An optional field: left out (keep what is stored), `null` (clear it), or a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Given<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Given<T> {
    pub fn map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Given<U>, E> {
        Ok(match self {
            Given::Absent => Given::Absent,
            Given::Null => Given::Null,
            Given::Value(v) => Given::Value(f(v)?),
        })
    }

    /// The new value of a stored optional column: `stored` when absent.
    pub fn or_keep(self, stored: Option<T>) -> Option<T> {
        match self {
            Given::Absent => stored,
            Given::Null => None,
            Given::Value(v) => Some(v),
        }
    }
}

pub struct Body {
    /// `tracking.` for a nested object, so fields are named by their path.
    path: &'static str,
    fields: Map<String, Value>,
}

impl Body {
    /// The body as an object with no fields but `allowed`.
    pub fn object(value: Value, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::nested("", value, allowed)
    }

    fn nested(path: &'static str, value: Value, allowed: &[&str]) -> Result<Self, ApiError> {
        let Value::Object(fields) = value else {
            return Err(if path.is_empty() {
                ApiError::malformed(None, format!("The body must be a JSON object, not {}.", kind(&value)))
            } else {
                let field = path.trim_end_matches('.');
                ApiError::invalid(field, format!("`{field}` must be an object, not {}.", kind(&value)))
            });
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            let expected = allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
            return Err(ApiError::invalid(
                format!("{path}{unknown}"),
                format!("Unknown field `{path}{unknown}`; expected one of {expected}."),
            ));
        }
        Ok(Body { path, fields })
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }

    /// An optional field.
    pub fn take<T: DeserializeOwned>(&mut self, field: &str) -> Result<Given<T>, ApiError> {
        match self.fields.remove(field) {
            None => Ok(Given::Absent),
            Some(Value::Null) => Ok(Given::Null),
            Some(value) => serde_json::from_value(value)
                .map(Given::Value)
                .map_err(|e| ApiError::invalid(self.name(field), format!("`{}`: {e}.", self.name(field)))),
        }
    }

    /// A field that must be given (and not `null`).
    pub fn required<T: DeserializeOwned>(&mut self, field: &str) -> Result<T, ApiError> {
        match self.take(field)? {
            Given::Value(v) => Ok(v),
            Given::Absent | Given::Null => {
                Err(ApiError::invalid(self.name(field), format!("`{}` is required.", self.name(field))))
            }
        }
    }

    /// A nested object (`tracking`): `null` clears it.
    pub fn object_field(
        &mut self,
        field: &'static str,
        path: &'static str,
        allowed: &[&str],
    ) -> Result<Given<Body>, ApiError> {
        match self.fields.remove(field) {
            None => Ok(Given::Absent),
            Some(Value::Null) => Ok(Given::Null),
            Some(value) => Body::nested(path, value, allowed).map(Given::Value),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_named_when_refused() {
        let err = Body::object(json!({"titel": "x"}), &["title"]).err().unwrap();
        assert_eq!(err.field(), Some("titel"));
        let mut body = Body::object(json!({"title": 5, "reference": null}), &["title", "reference", "number"]).unwrap();
        assert_eq!(body.take::<String>("reference").unwrap(), Given::Null);
        assert_eq!(body.take::<String>("number").unwrap(), Given::Absent);
        let err = body.required::<String>("title").err().unwrap();
        assert_eq!(err.field(), Some("title"));
        assert!(err.message().contains("expected a string"), "{}", err.message());
        let err = Body::object(json!([1]), &[]).err().unwrap();
        assert_eq!((err.code(), err.field()), ("malformed", None));
        let mut outer = Body::object(json!({"tracking": {"url": 1}}), &["tracking"]).unwrap();
        let Given::Value(mut tracking) = outer.object_field("tracking", "tracking.", &["url"]).unwrap() else {
            panic!("an object")
        };
        assert_eq!(tracking.take::<String>("url").err().unwrap().field(), Some("tracking.url"));
    }

    #[test]
    fn optional_columns_keep_clear_or_set() {
        assert_eq!(Given::Absent.or_keep(Some(1)), Some(1));
        assert_eq!(Given::Null.or_keep(Some(1)), None);
        assert_eq!(Given::Value(2).or_keep(Some(1)), Some(2));
    }
}
