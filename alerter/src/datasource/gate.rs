//! [`QueryGate`]: a deadline on every call, a per-worker cap on concurrent queries, and
//! coalescing (single-flight) of identical instant queries issued concurrently.
//!
//! Within one evaluation cycle many rules of a worker often ask the same expression at the same
//! slot timestamp (recording rules feeding alerts, one expression in several groups). The first
//! caller's query runs; later callers with the same `(expr, ts_ms)` await the same answer while
//! it is in flight. Nothing is cached after it completes: coalescing never serves stale data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};
use tokio::sync::Semaphore;

use super::{
    Datasource, DatasourceError, InstantQuery, ManyFuture, QueryFuture, QueryOutput, RangeQuery,
};

/// Default cap on one worker's concurrent queries: enough to keep a remote Prometheus busy,
/// small enough that one worker cannot monopolise it (Prometheus's own default
/// `--query.max-concurrency` is 20, shared by every client).
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 8;

/// Most coalescing entries kept before dead ones are swept: bounded by concurrency in
/// practice; the sweep keeps abandoned entries from accumulating.
const SWEEP_THRESHOLD: usize = 1024;

/// Limits a [`QueryGate`] enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// Most queries in flight to the wrapped datasource at once; more wait (within their
    /// deadline) for a slot.
    pub max_concurrent: usize,
    /// Upper bound on any call's deadline, whatever the caller asks for.
    pub max_timeout: Duration,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT_QUERIES,
            max_timeout: Duration::from_secs(120),
        }
    }
}

type AnswerFuture = BoxFuture<'static, Result<QueryOutput, DatasourceError>>;
type SharedAnswer = Shared<AnswerFuture>;
type FlightKey = (String, i64);

/// Wraps a datasource with a deadline, a concurrency cap and single-flight coalescing.
#[derive(Debug)]
pub struct QueryGate {
    inner: Arc<dyn Datasource>,
    permits: Arc<Semaphore>,
    max_timeout: Duration,
    in_flight: Mutex<HashMap<FlightKey, WeakShared<AnswerFuture>>>,
    coalesced: AtomicU64,
}

impl QueryGate {
    /// Wraps `inner`. A `max_concurrent` of 0 is raised to 1 (a gate that never opens would
    /// only produce timeouts).
    pub fn new(inner: Arc<dyn Datasource>, cfg: GateConfig) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            max_timeout: cfg.max_timeout,
            in_flight: Mutex::new(HashMap::new()),
            coalesced: AtomicU64::new(0),
        }
    }

    /// How many calls were answered by joining an identical query already in flight.
    pub fn coalesced_total(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Free query slots right now.
    pub fn available_slots(&self) -> usize {
        self.permits.available_permits()
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, WeakShared<AnswerFuture>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The in-flight answer for `q`, joining one if it exists, else starting one.
    fn join_or_start(&self, q: &InstantQuery) -> SharedAnswer {
        let key = (q.expr.clone(), q.ts_ms);
        let mut flights = self.flights();
        if let Some(existing) = flights.get(&key).and_then(WeakShared::upgrade) {
            self.coalesced.fetch_add(1, Ordering::Relaxed);
            return existing;
        }
        if flights.len() >= SWEEP_THRESHOLD {
            flights.retain(|_, w| w.upgrade().is_some());
        }
        let mut q = q.clone();
        q.timeout = q.timeout.min(self.max_timeout);
        let inner = Arc::clone(&self.inner);
        let permits = Arc::clone(&self.permits);
        let fut: AnswerFuture = Box::pin(async move {
            let timeout = q.timeout;
            bounded(timeout, &permits, move |remaining| async move {
                let q = InstantQuery {
                    timeout: remaining,
                    ..q
                };
                inner.instant(&q).await
            })
            .await
        });
        let shared = fut.shared();
        if let Some(weak) = shared.downgrade() {
            flights.insert(key, weak);
        }
        shared
    }

    fn finish(&self, q: &InstantQuery, mine: &SharedAnswer) {
        let key = (q.expr.clone(), q.ts_ms);
        let mut flights = self.flights();
        let same_or_dead = flights
            .get(&key)
            .is_some_and(|w| w.upgrade().is_none_or(|s| Shared::ptr_eq(&s, mine)));
        if same_or_dead {
            flights.remove(&key);
        }
    }
}

/// Runs `call` once a slot is free, all within `timeout`; `call` gets the time left.
async fn bounded<T, F, Fut>(
    timeout: Duration,
    permits: &Semaphore,
    call: F,
) -> Result<T, DatasourceError>
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = Result<T, DatasourceError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let work = async {
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| DatasourceError::Unavailable {
                message: "query gate closed".into(),
            })?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        call(remaining).await
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(answer) => answer,
        Err(_) => Err(DatasourceError::Timeout {
            timeout,
            message: "deadline passed waiting for a query slot or for the datasource".into(),
        }),
    }
}

impl Datasource for QueryGate {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        Box::pin(async move {
            let shared = self.join_or_start(q);
            let answer = shared.clone().await;
            self.finish(q, &shared);
            answer
        })
    }

    /// A batch takes one query slot and one deadline (the longest asked): it is one request
    /// to the datasource. Batches are not coalesced with single queries in flight.
    fn instant_many<'a>(&'a self, qs: &'a [InstantQuery]) -> ManyFuture<'a> {
        Box::pin(async move {
            let Some(timeout) = qs.iter().map(|q| q.timeout).max() else {
                return Vec::new();
            };
            let timeout = timeout.min(self.max_timeout);
            let answers = bounded(timeout, &self.permits, |remaining| {
                let qs: Vec<InstantQuery> = qs
                    .iter()
                    .map(|q| InstantQuery {
                        timeout: q.timeout.min(remaining),
                        ..q.clone()
                    })
                    .collect();
                async move { Ok(self.inner.instant_many(&qs).await) }
            })
            .await;
            match answers {
                Ok(answers) => answers,
                Err(e) => vec![Err(e); qs.len()],
            }
        })
    }

    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        Box::pin(async move {
            let timeout = q.timeout.min(self.max_timeout);
            bounded(timeout, &self.permits, |remaining| {
                let q = RangeQuery {
                    timeout: remaining,
                    ..q.clone()
                };
                async move { self.inner.range(&q).await }
            })
            .await
        })
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
