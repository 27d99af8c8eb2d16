//! Tests of [`QueryGate`] with a scripted datasource and paused time.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;

use super::*;
use crate::promql::Value;

/// A datasource that takes `delay` per query and records how many run at once.
#[derive(Debug)]
struct Scripted {
    delay: Duration,
    fail: Option<DatasourceError>,
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Scripted {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            fail: None,
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        })
    }

    async fn answer(&self, t: i64) -> Result<QueryOutput, DatasourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(QueryOutput {
                value: Value::Scalar { t, v: 1.0 },
                warnings: vec![],
            }),
        }
    }
}

impl Datasource for Scripted {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        Box::pin(self.answer(q.ts_ms))
    }
    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        Box::pin(self.answer(q.start_ms))
    }
}

fn iq(expr: &str, ts_ms: i64, timeout_ms: u64) -> InstantQuery {
    InstantQuery {
        expr: expr.into(),
        ts_ms,
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn gate(inner: Arc<Scripted>, max_concurrent: usize) -> QueryGate {
    QueryGate::new(
        inner,
        GateConfig {
            max_concurrent,
            max_timeout: Duration::from_secs(60),
        },
    )
}

#[tokio::test(start_paused = true)]
async fn identical_concurrent_queries_run_once() {
    let inner = Scripted::new(Duration::from_millis(50));
    let g = gate(Arc::clone(&inner), 4);
    let qs: Vec<_> = (0..10).map(|_| iq("up", 1_000, 5_000)).collect();
    let answers = join_all(qs.iter().map(|q| g.instant(q))).await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap().value == Value::Scalar { t: 1_000, v: 1.0 })
    );
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.coalesced_total(), 9);
    // Completed answers are not cached: the same query later runs again.
    g.instant(&qs[0]).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    assert!(g.flights().is_empty(), "finished flights are removed");
}

#[tokio::test(start_paused = true)]
async fn different_expr_or_timestamp_is_not_coalesced() {
    let inner = Scripted::new(Duration::from_millis(50));
    let g = gate(Arc::clone(&inner), 4);
    let qs = [
        iq("up", 1_000, 5_000),
        iq("up", 2_000, 5_000),
        iq("down", 1_000, 5_000),
    ];
    join_all(qs.iter().map(|q| g.instant(q))).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    assert_eq!(g.coalesced_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_capped() {
    let inner = Scripted::new(Duration::from_millis(50));
    let g = gate(Arc::clone(&inner), 3);
    let qs: Vec<_> = (0..10).map(|i| iq("up", i, 5_000)).collect();
    let answers = join_all(qs.iter().map(|q| g.instant(q))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(inner.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(g.available_slots(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hung_datasource_times_out_at_the_deadline() {
    let inner = Scripted::new(Duration::from_secs(3600));
    let g = gate(inner, 2);
    let start = tokio::time::Instant::now();
    let err = g.instant(&iq("up", 0, 1_500)).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
    let range = RangeQuery {
        expr: "up".into(),
        start_ms: 0,
        end_ms: 10,
        step_ms: 1,
        timeout: Duration::from_millis(700),
    };
    let err = g.range(&range).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Timeout { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_counts_against_the_deadline() {
    let inner = Scripted::new(Duration::from_secs(10));
    let g = gate(inner, 1);
    let (slow, starved) = (iq("a", 0, 20_000), iq("b", 0, 1_000));
    let (first, second) = tokio::join!(g.instant(&slow), g.instant(&starved));
    assert!(first.is_ok());
    assert!(matches!(second, Err(DatasourceError::Timeout { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_shared_failure_reaches_every_waiter_and_max_timeout_caps_deadlines() {
    let inner = Arc::new(Scripted {
        fail: Some(DatasourceError::BadQuery {
            message: "parse error".into(),
        }),
        ..Arc::into_inner(Scripted::new(Duration::from_millis(10))).unwrap()
    });
    let g = QueryGate::new(
        inner.clone(),
        GateConfig {
            max_concurrent: 2,
            max_timeout: Duration::from_millis(5),
        },
    );
    let qs: Vec<_> = (0..3).map(|_| iq("up(", 0, 60_000)).collect();
    for a in join_all(qs.iter().map(|q| g.instant(q))).await {
        // The 5 ms cap wins over the 60 s asked for, before the 10 ms answer.
        assert!(matches!(a, Err(DatasourceError::Timeout { .. })));
    }
    let g = gate(inner, 2);
    for a in join_all(qs.iter().map(|q| g.instant(q))).await {
        assert_eq!(a.unwrap_err().fault(), super::super::Fault::Query);
    }
}
