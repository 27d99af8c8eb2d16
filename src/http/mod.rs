//! The node's HTTP API: health, readiness, metrics and status (DESIGN.md §9).

pub mod alerts;
pub mod notify;
pub mod rules;
pub mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tocsin_state::client::StoreClient;
use tocsin_state::node::StoreNode;

use crate::balance::BalancerHandle;
use crate::metrics::Metrics;

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The local store node.
    pub node: StoreNode,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Store client (seeded with this node first) for writes and linearizable reads; it
    /// forwards to the leader.
    pub client: StoreClient,
    /// The balancer (acts on the leader only).
    pub balancer: BalancerHandle,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status::get_status))
        .route("/api/v1/alerts", get(alerts::get_alerts))
        .route("/api/v1/rules", get(rules::get_rules).put(rules::put_all))
        .route(
            "/api/v1/notify/config",
            get(notify::get_config).put(notify::put_config),
        )
        .route("/api/v1/notifications", get(notify::get_notifications))
        .route(
            "/api/v1/silences",
            get(notify::get_silences).post(notify::post_silence),
        )
        .route("/api/v1/silences/{id}", delete(notify::delete_silence))
        .route("/api/v1/acks", post(notify::post_ack))
        .route("/api/v1/admin/elect", post(elect))
        .route(
            "/api/v1/rules/{namespace}",
            put(rules::put_namespace).delete(rules::delete_namespace),
        )
        .layer(DefaultBodyLimit::max(rules::MAX_BODY_BYTES))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready = a member of a cluster with a known leader.
async fn readyz(State(s): State<AppState>) -> Response {
    let m = s.node.raft.metrics();
    let (leader, member) = {
        let m = m.borrow();
        (
            m.current_leader,
            m.membership_config.membership().get_node(&m.id).is_some(),
        )
    };
    match (member, leader) {
        (true, Some(l)) => (StatusCode::OK, format!("ready: leader is node {l}\n")).into_response(),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not a member of a cluster yet\n",
        )
            .into_response(),
        (true, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader\n",
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// `POST /api/v1/admin/elect`: this node starts an election now (the leader's balancer uses it
/// to move leadership out of an unhealthy zone; an operator may too).
async fn elect(State(s): State<AppState>) -> Response {
    match s.node.raft.trigger().elect().await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"election_started_by": s.node.id})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": format!("cannot start an election: {e}")})),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "no such endpoint"})),
    )
        .into_response()
}
