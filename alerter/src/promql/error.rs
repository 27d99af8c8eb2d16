//! The engine's error type.

use super::store::StoreError;

/// Why a query failed. Parse errors are the caller's input; evaluation errors carry the same
/// message Prometheus gives for the same condition where one exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The expression does not parse.
    #[error("parse error{}: {message}", position.map(|p| format!(" at byte {p}")).unwrap_or_default())]
    Parse {
        /// The parser's message.
        message: String,
        /// Byte offset into the query, when the parser reports one.
        position: Option<usize>,
    },
    /// Evaluation failed (for example many-to-many matching, duplicate label sets).
    #[error("{0}")]
    Eval(String),
    /// The expression uses a function or feature this engine does not implement.
    #[error("function {0} is not supported yet")]
    Unsupported(String),
    /// The query would hold more samples in memory than allowed.
    #[error(
        "query processing would load too many samples into memory in query execution (limit {limit})"
    )]
    TooManySamples {
        /// The configured limit.
        limit: usize,
    },
    /// The query needs more single-timestamp evaluations than allowed (subquery steps).
    #[error(
        "query needs more than {limit} evaluation steps (subquery range too long or step too small)"
    )]
    TooManySteps {
        /// The configured limit.
        limit: usize,
    },
    /// The expression nests deeper than allowed.
    #[error("expression nesting depth exceeds the limit of {limit}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// The query text is longer than allowed.
    #[error("query is {len} bytes long; the limit is {limit}")]
    TooLong {
        /// Length of the query.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Range-query parameters are invalid (step, bounds, resolution).
    #[error("invalid range query: {0}")]
    InvalidRange(String),
    /// Engine options are out of range; the message names the field.
    #[error("invalid engine options: {0}")]
    InvalidOptions(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    pub(crate) fn eval(msg: impl Into<String>) -> Self {
        Self::Eval(msg.into())
    }
}
