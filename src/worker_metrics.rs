//! A worker's `/metrics` (served with `tocsin worker --metrics-listen ADDR`): evaluations and
//! deliveries as the worker loops report them ([`WorkerObserver`]), plus the shards it owns.
//!
//! - `tocsin_worker_evaluations_total{namespace, group, outcome}` (`ok`, `rules_failed`,
//!   `failed`, `timeout`, `not_committed`)
//! - `tocsin_worker_evaluations_late_total{namespace, group}`: finished more than half an
//!   interval after their slot
//! - `tocsin_worker_evaluation_seconds{namespace, group}`: histogram
//! - `tocsin_worker_notifications_total{receiver, integration, outcome}` (`delivered`,
//!   `skipped`, `retry`, `permanent`)
//! - `tocsin_worker_notification_send_seconds{integration}`: histogram
//! - `tocsin_worker_owned_shards{kind}`

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tocsin_alerter::worker::observe::{EvalOutcome, WorkerObserver};
use tocsin_state::model::GroupKey;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvalLabels {
    namespace: String,
    group: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    namespace: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    receiver: String,
    integration: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~30 s.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The worker's metrics.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: std::sync::Mutex<Registry>,
    evaluations: Family<EvalLabels, Counter>,
    late: Family<GroupLabels, Counter>,
    eval_seconds: Family<GroupLabels, Histogram, fn() -> Histogram>,
    notifications: Family<DeliveryLabels, Counter>,
    send_seconds: Family<IntegrationLabels, Histogram, fn() -> Histogram>,
    owned: Family<KindLabels, Gauge<i64, AtomicI64>>,
}

impl WorkerMetrics {
    /// Registers every family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tocsin_worker");
        let evaluations = Family::<EvalLabels, Counter>::default();
        let late = Family::<GroupLabels, Counter>::default();
        let eval_seconds =
            Family::<GroupLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        let notifications = Family::<DeliveryLabels, Counter>::default();
        let send_seconds =
            Family::<IntegrationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        let owned = Family::<KindLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "evaluations",
            "Rule group evaluations by outcome",
            evaluations.clone(),
        );
        registry.register(
            "evaluations_late",
            "Evaluations that finished more than half an interval after their slot",
            late.clone(),
        );
        registry.register(
            "evaluation_seconds",
            "Duration of one rule group evaluation (queries and commit)",
            eval_seconds.clone(),
        );
        registry.register(
            "notifications",
            "Delivery attempts by receiver, integration and outcome",
            notifications.clone(),
        );
        registry.register(
            "notification_send_seconds",
            "Duration of one delivery attempt (rate-limit wait included)",
            send_seconds.clone(),
        );
        registry.register("owned_shards", "Shards this worker owns", owned.clone());
        Arc::new(Self {
            registry: std::sync::Mutex::new(registry),
            evaluations,
            late,
            eval_seconds,
            notifications,
            send_seconds,
            owned,
        })
    }

    /// Records the shards owned, by kind.
    pub fn set_owned(&self, eval: usize, notify: usize) {
        for (kind, n) in [("eval", eval), ("notify", notify)] {
            self.owned
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(n as i64);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// `GET /metrics` and `GET /healthz`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/metrics",
                get(|State(m): State<Arc<WorkerMetrics>>| async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                        .into_response()
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(self.clone())
    }
}

impl WorkerObserver for WorkerMetrics {
    fn evaluation(&self, group: &GroupKey, seconds: f64, outcome: EvalOutcome, late: bool) {
        let g = GroupLabels {
            namespace: group.namespace.clone(),
            group: group.name.clone(),
        };
        self.evaluations
            .get_or_create(&EvalLabels {
                namespace: g.namespace.clone(),
                group: g.group.clone(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        if late {
            self.late.get_or_create(&g).inc();
        }
        self.eval_seconds.get_or_create(&g).observe(seconds);
    }

    fn delivery(&self, receiver: &str, integration: &str, outcome: &'static str, seconds: f64) {
        self.notifications
            .get_or_create(&DeliveryLabels {
                receiver: receiver.into(),
                integration: integration.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.send_seconds
            .get_or_create(&IntegrationLabels {
                integration: integration.into(),
            })
            .observe(seconds);
    }
}
