//! Query results.

use super::labels::Labels;
use super::store::Series;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series labels.
    pub labels: Labels,
    /// Timestamp in milliseconds: the evaluation time in results.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a timestamp (ms).
    Scalar {
        /// Evaluation time in milliseconds.
        t: i64,
        /// The value.
        v: f64,
    },
    /// An instant vector (instant queries).
    Vector(Vec<Sample>),
    /// A range vector (instant queries of `x[5m]`) or the result of a range query, sorted by
    /// labels.
    Matrix(Vec<Series>),
    /// A string literal at a timestamp (ms).
    String {
        /// Evaluation time in milliseconds.
        t: i64,
        /// The string.
        s: String,
    },
}
