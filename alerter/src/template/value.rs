//! The data model templates run over: a small, dynamically typed mirror of the Go values
//! Prometheus hands to `text/template` (strings, float64, int, bool, maps, slices, structs).

use std::collections::BTreeMap;
use std::sync::Arc;

/// A template value. Cheap to clone: composite values are shared.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's invalid/nil value; prints as `<no value>` in an action.
    Nil,
    /// A Go `bool`.
    Bool(bool),
    /// A Go `int` (integer constants in templates are `int`).
    Int(i64),
    /// A Go `float64` (`$value`, results of `humanize`'s inputs, `parseDuration`).
    Float(f64),
    /// A Go `string`.
    String(String),
    /// A Go `map[string]string`, e.g. `.Labels`; a missing key yields `""`.
    StringMap(Arc<BTreeMap<String, String>>),
    /// A Go `map[string]interface{}`; a missing key yields [`Value::Nil`].
    Map(Arc<BTreeMap<String, Value>>),
    /// A Go slice.
    List(Arc<Vec<Value>>),
    /// A Go struct with named fields, e.g. the alert data or a query sample.
    Struct(Arc<Struct>),
    /// A Go `time.Time` in UTC, as returned by `toTime`; nanoseconds since the Unix epoch.
    Time(i128),
}

/// A Go struct value: a type name (for error messages) and ordered fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// Type name used in error messages, e.g. `sample`.
    pub type_name: String,
    /// Fields in declaration order.
    pub fields: Vec<(String, Value)>,
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    /// A `map[string]string` value.
    pub fn string_map(m: BTreeMap<String, String>) -> Self {
        Value::StringMap(Arc::new(m))
    }

    /// A `map[string]interface{}` value.
    pub fn map(m: BTreeMap<String, Value>) -> Self {
        Value::Map(Arc::new(m))
    }

    /// A slice value.
    pub fn list(v: Vec<Value>) -> Self {
        Value::List(Arc::new(v))
    }

    /// A struct value.
    pub fn structure(type_name: &str, fields: Vec<(String, Value)>) -> Self {
        Value::Struct(Arc::new(Struct {
            type_name: type_name.to_owned(),
            fields,
        }))
    }

    /// Go's notion of truth used by `if`, `with`, `and`, `or`, `not`.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::StringMap(m) => !m.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Struct(_) | Value::Time(_) => true,
        }
    }

    /// The Go type name, for error messages (`string`, `float64`, `map[string]string`, ...).
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".to_owned(),
            Value::Bool(_) => "bool".to_owned(),
            Value::Int(_) => "int".to_owned(),
            Value::Float(_) => "float64".to_owned(),
            Value::String(_) => "string".to_owned(),
            Value::StringMap(_) => "map[string]string".to_owned(),
            Value::Map(_) => "map[string]interface {}".to_owned(),
            Value::List(_) => "[]interface {}".to_owned(),
            Value::Struct(s) => s.type_name.clone(),
            Value::Time(_) => "*time.Time".to_owned(),
        }
    }

    /// Looks up a struct field or map key the way `.Name` does under `missingkey=zero`.
    pub(crate) fn field(&self, name: &str) -> Result<Value, String> {
        match self {
            Value::Struct(s) => s
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("can't evaluate field {name} in type {}", s.type_name)),
            Value::StringMap(m) => Ok(Value::String(m.get(name).cloned().unwrap_or_default())),
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Nil)),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }

    /// Length in Go's sense (`len`): bytes of a string, entries of a map or slice.
    pub(crate) fn len(&self) -> Option<usize> {
        match self {
            Value::String(s) => Some(s.len()),
            Value::StringMap(m) => Some(m.len()),
            Value::Map(m) => Some(m.len()),
            Value::List(l) => Some(l.len()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
