//! The datasource error and whose fault it is.

use std::time::Duration;

use crate::promql::QueryError;

/// Whose fault a failed query is; drives the caller's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The query is wrong (bad expression, evaluation error): retrying gives the same answer,
    /// so do not retry; report it on the rule.
    Query,
    /// The datasource failed (timeout, unavailable, 5xx, unreadable answer): retry with
    /// backoff and count it as bad work against the datasource.
    Datasource,
}

/// Why a datasource query failed. `Clone` so one answer can be shared by coalesced callers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasourceError {
    /// The expression or the request parameters are invalid (`bad_data`, HTTP 400).
    #[error("bad query: {message}")]
    BadQuery {
        /// The datasource's message.
        message: String,
    },
    /// The expression parsed but its evaluation failed (`execution`, HTTP 422): many-to-many
    /// matching, too many samples, an unsupported function.
    #[error("query execution failed: {message}")]
    Execution {
        /// The datasource's message.
        message: String,
    },
    /// The deadline passed, on our side or the datasource's (`timeout`).
    #[error("query timed out after {timeout:?}: {message}")]
    Timeout {
        /// The deadline the call had.
        timeout: Duration,
        /// Who gave up and why.
        message: String,
    },
    /// The datasource cannot be reached or says it is unavailable (`unavailable`, HTTP 503,
    /// connection refused).
    #[error("datasource unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// The datasource canceled the query (`canceled`).
    #[error("query canceled by the datasource: {message}")]
    Canceled {
        /// The datasource's message.
        message: String,
    },
    /// The datasource answered with an HTTP error not covered above (5xx, 401, 403, 404…).
    #[error("datasource answered HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The body's error message, or the start of the body.
        message: String,
    },
    /// The answer could not be read (not the Prometheus API format, too large).
    #[error("unreadable datasource answer: {message}")]
    InvalidResponse {
        /// What was wrong with it.
        message: String,
    },
}

impl DatasourceError {
    /// Whose fault the failure is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::BadQuery { .. } | Self::Execution { .. } => Fault::Query,
            Self::Timeout { .. }
            | Self::Unavailable { .. }
            | Self::Canceled { .. }
            | Self::Http { .. }
            | Self::InvalidResponse { .. } => Fault::Datasource,
        }
    }

    /// Whether retrying may succeed: exactly the datasource's faults.
    pub fn is_retryable(&self) -> bool {
        self.fault() == Fault::Datasource
    }
}

impl From<QueryError> for DatasourceError {
    /// Maps the in-process engine's errors the way Prometheus's API maps its own: parse and
    /// range-parameter errors are `bad_data`, evaluation errors `execution`, a failing store
    /// is the datasource's fault.
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        match e {
            QueryError::Parse { .. }
            | QueryError::TooDeep { .. }
            | QueryError::TooLong { .. }
            | QueryError::InvalidRange(_) => Self::BadQuery { message },
            QueryError::Eval(_)
            | QueryError::Unsupported(_)
            | QueryError::TooManySamples { .. }
            | QueryError::TooManySteps { .. } => Self::Execution { message },
            QueryError::InvalidOptions(_) | QueryError::Store(_) => Self::Unavailable { message },
        }
    }
}

/// An error's text followed by its causes (`a: b: c`). reqwest's own text ("error sending
/// request for url ...") hides whether the peer refused, reset or was too slow.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_the_right_fault() {
        let parse = QueryError::Parse {
            message: "unexpected".into(),
            position: Some(3),
        };
        assert_eq!(DatasourceError::from(parse).fault(), Fault::Query);
        let samples = QueryError::TooManySamples { limit: 10 };
        assert!(matches!(
            DatasourceError::from(samples),
            DatasourceError::Execution { .. }
        ));
        let store = QueryError::Store(crate::promql::StoreError::Backend("disk".into()));
        assert!(DatasourceError::from(store).is_retryable());
    }

    #[test]
    fn an_error_is_shown_with_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(with_causes(&e), "error sending request: connection refused");
    }
}
