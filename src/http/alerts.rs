//! `GET /api/v1/alerts`: every committed alert instance with its owning shard, worker and zone.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tocsin_state::model::{AlertState, Query, QueryResult};

use super::AppState;
use super::rules::store_error;

/// One alert as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub namespace: String,
    pub group: String,
    pub rule: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the condition became true (ms since the Unix epoch).
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub value: f64,
    pub shard: u16,
    pub worker: Option<String>,
    pub zone: Option<String>,
}

/// Filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFilter {
    /// `pending`, `firing` or `resolved`.
    pub state: Option<String>,
}

/// `GET /api/v1/alerts[?state=firing]`: a linearizable read through the leader.
pub async fn get_alerts(State(s): State<AppState>, UrlQuery(f): UrlQuery<AlertFilter>) -> Response {
    if let Some(st) = &f.state
        && !matches!(st.as_str(), "pending" | "firing" | "resolved")
    {
        return super::rules::api_error(
            axum::http::StatusCode::BAD_REQUEST,
            format!("invalid state {st:?}: use pending, firing or resolved"),
            vec![],
        );
    }
    let read = async {
        let (_, a) = s.client.read(&Query::Alerts { shard: None }, true).await?;
        let (_, asg) = s.client.read(&Query::Assignments, false).await?;
        let (_, w) = s.client.read(&Query::Workers, false).await?;
        let (_, l) = s.client.read(&Query::Layout, false).await?;
        Ok::<_, tocsin_proto::ServiceError>((a, asg, w, l))
    };
    let (
        QueryResult::Alerts(alerts),
        QueryResult::Assignments(asg),
        QueryResult::Workers(workers),
        QueryResult::Layout(layout),
    ) = (match read.await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    })
    else {
        return store_error(tocsin_proto::ServiceError::Internal(
            "unexpected query result".into(),
        ));
    };
    let owners: BTreeMap<_, _> = asg.into_iter().map(|(s, a)| (s, a.owner)).collect();
    let zones: BTreeMap<_, _> = workers.into_iter().map(|w| (w.id, w.zone)).collect();
    let views: Vec<AlertView> = alerts
        .into_iter()
        .map(|a| {
            let state = match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            };
            let shard = layout.eval_shard(&a.group);
            // Meta-alerts are the cluster's own; no worker evaluates them.
            let worker = if a.group.namespace == tocsin_state::model::META_NAMESPACE {
                None
            } else {
                owners.get(&shard).cloned().flatten()
            };
            let zone = worker
                .as_ref()
                .and_then(|w| zones.get(w))
                .map(ToString::to_string);
            AlertView {
                fingerprint: a.fingerprint.to_string(),
                namespace: a.group.namespace.clone(),
                group: a.group.name.clone(),
                rule: a.rule,
                state: state.into(),
                labels: a.labels,
                annotations: a.annotations,
                active_at_ms: a.active_at_ms,
                fired_at_ms: a.fired_at_ms,
                resolved_at_ms: a.resolved_at_ms,
                value: a.value,
                shard: shard.index,
                worker: worker.map(|w| w.to_string()),
                zone,
            }
        })
        .filter(|v| f.state.as_deref().is_none_or(|st| st == v.state))
        .collect();
    Json(views).into_response()
}
