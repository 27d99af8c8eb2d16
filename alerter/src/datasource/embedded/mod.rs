//! The embedded metrics store: an in-process time-series store that Tocsin's PromQL engine
//! queries, for `tocsin dev`, newcomers and small deployments.
//!
//! Layout:
//! - this file: [`EmbeddedDatasource`], the engine over any [`Store`], as a [`Datasource`].
//! - [`service`]: [`EmbeddedStore`], the service (store, ingestion, query gate, background
//!   tasks).
//! - [`config`]: [`RawEmbeddedStoreConfig`] → [`EmbeddedSettings`] (limits, on-disk log,
//!   scrape jobs).
//! - [`store`]: [`MetricStore`], Gorilla-compressed series with retention and a series cap.
//! - [`exposition`]: the Prometheus/OpenMetrics text parser.
//! - [`scrape`]: scrape configuration, the pure per-target core (labels, `up`, staleness) and
//!   the scrape loop.
//! - [`remote_write`]: the remote-write 1.0 decoder (snappy + protobuf).
//! - [`ingest`]: [`Ingest`], the one path samples take in (memory, then the on-disk log).
//! - [`wal`]: the optional append-only on-disk log replayed on restart.
//! - [`api`]: the axum router serving the Prometheus query API and the remote-write endpoint.
//!
//! Queries run on the blocking pool (evaluation is CPU-bound and must not stall the async
//! runtime). The engine reads the store through an interruptible view: a query past its
//! deadline, or whose caller went away, stops at its next store read, and the store's lock is
//! taken per read, never for a whole query, so ingestion is not stalled by a long query.

pub mod api;
pub mod config;
pub mod exposition;
pub mod ingest;
pub mod remote_write;
pub mod scrape;
pub mod service;
pub mod store;
pub mod wal;

pub use config::{EmbeddedSettings, EmbeddedStoreConfig, RawEmbeddedStoreConfig};
pub use ingest::{Ingest, IngestStats, WriteSummary};
pub use service::EmbeddedStore;
pub use store::MetricStore;

pub(crate) use service::now_ms;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use promql_parser::label::Matcher;

use super::{Datasource, DatasourceError, InstantQuery, QueryFuture, QueryOutput, RangeQuery};
use crate::promql::{Engine, QueryError, Series, Store, StoreError, Value};

/// A [`Datasource`] evaluating queries in-process.
pub struct EmbeddedDatasource<S> {
    engine: Arc<Engine>,
    store: Arc<RwLock<S>>,
}

impl<S> fmt::Debug for EmbeddedDatasource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDatasource")
            .field("engine", &self.engine.options())
            .finish_non_exhaustive()
    }
}

impl<S> Clone for EmbeddedDatasource<S> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            store: Arc::clone(&self.store),
        }
    }
}

impl<S: Store + Send + Sync + 'static> EmbeddedDatasource<S> {
    /// Queries `store` with `engine`. Writers share the same `store` handle.
    pub fn new(engine: Arc<Engine>, store: Arc<RwLock<S>>) -> Self {
        Self { engine, store }
    }

    /// The shared store handle.
    pub fn store(&self) -> &Arc<RwLock<S>> {
        &self.store
    }

    /// Evaluates `eval` on the blocking pool within `timeout`. The engine reads the store
    /// through [`Interruptible`], so an evaluation stops at its next read once the deadline
    /// passes or the caller goes away, and writers are never locked out for a whole query.
    async fn run<F>(&self, timeout: Duration, eval: F) -> Result<QueryOutput, DatasourceError>
    where
        F: FnOnce(&Engine, &dyn Store) -> Result<Value, crate::promql::QueryError> + Send + 'static,
    {
        let engine = Arc::clone(&self.engine);
        let store = Arc::clone(&self.store);
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let canceled = Arc::clone(&cancel.0);
        let deadline = std::time::Instant::now() + timeout;
        let task = tokio::task::spawn_blocking(move || {
            let reader = Interruptible {
                store: &store,
                deadline,
                canceled: &canceled,
            };
            eval(&engine, &reader)
        });
        let expired = || DatasourceError::Timeout {
            timeout,
            message: "embedded query evaluation exceeded its deadline".into(),
        };
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(value))) => Ok(QueryOutput {
                value,
                warnings: Vec::new(),
            }),
            Ok(Ok(Err(QueryError::Store(StoreError::Backend(m))))) if m == INTERRUPTED => {
                Err(expired())
            }
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(join)) => Err(DatasourceError::Unavailable {
                message: format!("embedded query task failed: {join}"),
            }),
            Err(_) => Err(expired()),
        }
    }
}

/// The store error an interrupted evaluation stops with.
const INTERRUPTED: &str = "query interrupted: deadline passed or caller gone";

/// Sets the flag when the query's future is dropped (answered, timed out or abandoned), so a
/// still-running evaluation stops at its next store read.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The store as one evaluation sees it: a read lock per `select` (writers interleave between
/// reads), and no reads after the deadline or cancellation.
struct Interruptible<'a, S> {
    store: &'a RwLock<S>,
    deadline: std::time::Instant,
    canceled: &'a AtomicBool,
}

impl<S: Store> Store for Interruptible<'_, S> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        if self.canceled.load(Ordering::Relaxed) || std::time::Instant::now() >= self.deadline {
            return Err(StoreError::Backend(INTERRUPTED.into()));
        }
        // A writer that panicked mid-append leaves at worst a partial sample batch.
        let guard = self.store.read().unwrap_or_else(PoisonError::into_inner);
        guard.select(matchers, start_ms, end_ms)
    }
}

impl<S: Store + Send + Sync + 'static> Datasource for EmbeddedDatasource<S> {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        let (expr, ts) = (q.expr.clone(), q.ts_ms);
        Box::pin(self.run(q.timeout, move |engine, store| {
            engine.instant(store, &expr, ts)
        }))
    }

    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        let (expr, start, end, step) = (q.expr.clone(), q.start_ms, q.end_ms, q.step_ms);
        Box::pin(self.run(q.timeout, move |engine, store| {
            engine.range(store, &expr, start, end, step)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::Fault;
    use crate::promql::{ChunkedStore, EngineOptions, Labels, Sample};

    fn datasource() -> EmbeddedDatasource<ChunkedStore> {
        let mut store = ChunkedStore::new();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        for i in 0..10 {
            store.append(l.clone(), i * 15_000, 1.0).unwrap();
        }
        EmbeddedDatasource::new(
            Arc::new(Engine::new(EngineOptions::default())),
            Arc::new(RwLock::new(store)),
        )
    }

    fn iq(expr: &str, ts_ms: i64) -> InstantQuery {
        InstantQuery {
            expr: expr.into(),
            ts_ms,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn instant_and_range_queries_evaluate_against_the_store() {
        let ds = datasource();
        let out = ds.instant(&iq("up", 60_000)).await.unwrap();
        let want = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(
            out.value,
            Value::Vector(vec![Sample {
                labels: want,
                t: 60_000,
                v: 1.0
            }])
        );
        let range = RangeQuery {
            expr: "sum(up)".into(),
            start_ms: 0,
            end_ms: 60_000,
            step_ms: 30_000,
            timeout: Duration::from_secs(5),
        };
        let Value::Matrix(m) = ds.range(&range).await.unwrap().value else {
            panic!("range query must give a matrix");
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].points.len(), 3);
    }

    #[tokio::test]
    async fn bad_expressions_are_the_query_fault() {
        let ds = datasource();
        let err = ds.instant(&iq("sum(", 0)).await.unwrap_err();
        assert!(matches!(err, DatasourceError::BadQuery { .. }), "{err}");
        assert_eq!(err.fault(), Fault::Query);
    }

    #[tokio::test]
    async fn writes_through_the_shared_handle_are_visible() {
        let ds = datasource();
        let l = Labels::from_pairs([("__name__", "late")]);
        ds.store().write().unwrap().append(l, 100_000, 7.0).unwrap();
        let out = ds.instant(&iq("late", 100_000)).await.unwrap();
        assert!(matches!(out.value, Value::Vector(ref v) if v.len() == 1 && v[0].v == 7.0));
    }
}
