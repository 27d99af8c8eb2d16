//! Datasources: where workers' rule queries are answered.
//!
//! Layout:
//! - this file: the [`Datasource`] trait, its query types ([`InstantQuery`], [`RangeQuery`])
//!   and result ([`QueryOutput`]).
//! - [`error`]: [`DatasourceError`] and its [`Fault`]: the query's (do not retry) or the
//!   datasource's (retry, count as bad work).
//! - [`gate`]: [`QueryGate`], the wrapper every worker puts around a datasource: a deadline on
//!   every call, a cap on concurrent queries, and coalescing of identical concurrent queries.
//! - [`prometheus`]: [`PrometheusClient`], the HTTP client for any Prometheus-compatible API,
//!   and its configuration.
//! - [`cache`]: [`CachedDatasource`](cache::CachedDatasource), the optional shared query
//!   cache in Redis.
//! - [`config`]: [`RawDatasourceConfig`] → [`DatasourceSettings`] → the `Arc<dyn Datasource>`
//!   a worker holds (backend, optional cache, gate).
//! - [`embedded`]: [`EmbeddedDatasource`], the PromQL engine over an in-process store, and the
//!   embedded store's HTTP API.
//!
//! Invariants: every call carries a deadline ([`InstantQuery::timeout`]); no implementation
//! retries on its own (retry policy belongs to the caller, which knows the [`Fault`]).

pub mod cache;
pub mod config;
pub mod embedded;
pub mod error;
pub mod gate;
pub mod prometheus;
pub(crate) mod wire;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::promql::Value;

pub use config::{DatasourceSettings, RawDatasourceConfig};
pub use embedded::EmbeddedDatasource;
pub use error::{DatasourceError, Fault};
pub use gate::{GateConfig, QueryGate};
pub use prometheus::{PrometheusClient, PrometheusConfig, RawPrometheusConfig};

/// An instant query: one expression evaluated at one timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstantQuery {
    /// The PromQL expression.
    pub expr: String,
    /// Evaluation time, milliseconds since the Unix epoch (the rule's slot timestamp).
    pub ts_ms: i64,
    /// How long the caller waits for the answer; the datasource is told too where it can be.
    pub timeout: Duration,
}

/// A range query: one expression evaluated at every step of `[start_ms, end_ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// The PromQL expression.
    pub expr: String,
    /// First evaluation time (ms since the Unix epoch).
    pub start_ms: i64,
    /// Last evaluation time, inclusive (ms since the Unix epoch).
    pub end_ms: i64,
    /// Resolution step (ms, positive).
    pub step_ms: i64,
    /// How long the caller waits for the answer.
    pub timeout: Duration,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    /// The result: a vector, scalar, matrix or string.
    pub value: Value,
    /// Warnings the datasource attached to the answer (for example partial data).
    pub warnings: Vec<String>,
}

/// The future a [`Datasource`] returns.
pub type QueryFuture<'a> = BoxFuture<'a, Result<QueryOutput, DatasourceError>>;

/// The answers to several queries, in the order asked.
pub type ManyFuture<'a> = BoxFuture<'a, Vec<Result<QueryOutput, DatasourceError>>>;

/// Something that answers PromQL queries: a remote Prometheus-compatible API or the embedded
/// store. Object-safe so a worker can hold `Arc<dyn Datasource>` chosen by configuration.
pub trait Datasource: Send + Sync + std::fmt::Debug {
    /// Evaluates `q.expr` at `q.ts_ms`, giving up after `q.timeout`.
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a>;

    /// Evaluates `q.expr` over a range; the result is a [`Value::Matrix`] (or a scalar/string
    /// series as a matrix, as Prometheus returns).
    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a>;

    /// Evaluates several instant queries (a rule group's, at one timestamp); the answers come
    /// in the order of `qs`, each with its own error. By default each is asked on its own,
    /// concurrently; a datasource that answers many in one round trip overrides this.
    fn instant_many<'a>(&'a self, qs: &'a [InstantQuery]) -> ManyFuture<'a> {
        Box::pin(futures::future::join_all(
            qs.iter().map(|q| self.instant(q)),
        ))
    }
}
