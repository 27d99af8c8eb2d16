//! `GET /api/v1/status` and its JSON shape (shared with `tocsin status`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tocsin_state::model::{Query, QueryResult};
use tocsin_state::service::cluster_info;

use super::AppState;

/// The status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The node answering.
    pub node: NodeView,
    /// Current leader's id, if known.
    pub leader: Option<u64>,
    /// Current Raft term.
    pub term: u64,
    /// Highest log index known committed here (this node applies as soon as it learns it).
    pub commit_index: u64,
    /// Last index applied locally.
    pub applied_index: u64,
    /// Last index in the local log.
    pub last_log_index: u64,
    /// Raft members.
    pub members: Vec<MemberView>,
    /// Zones with a committed health record (empty until the balancer runs).
    pub zones: Vec<ZoneView>,
    /// Registered workers and the shards they own.
    pub workers: Vec<WorkerView>,
    /// Shard counts.
    pub shards: ShardsView,
    /// Balancer: whether this node's balancer is acting, why placement is frozen, meta-alerts.
    /// Only the leader's balancer acts; a follower reports `active: false`.
    #[serde(default)]
    pub balancer: BalancerStatus,
}

/// The acting balancer's conclusions.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BalancerStatus {
    pub active: bool,
    pub frozen: Option<String>,
    pub meta_alerts: Vec<String>,
}

/// `node` field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub zone: String,
    pub grpc: String,
    pub http: String,
}

/// One Raft member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub zone: String,
    pub grpc: String,
    pub http: String,
    pub voter: bool,
}

/// One zone's health: the acting balancer's live view on the leader, the committed record
/// elsewhere (then `signals` is absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoneView {
    pub zone: String,
    pub state: String,
    pub score: f64,
    pub weight: f64,
    #[serde(default)]
    pub signals: Option<SignalsView>,
}

/// The signals behind a zone's score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalsView {
    pub alive_fraction: f64,
    pub latency_penalty: f64,
    /// p99 over the latency window of the balancer's probe round trip to the zone's
    /// workers, and of the workers' own datasource and store round trips, ms.
    #[serde(default)]
    pub probe_rtt_p99_ms: Option<f64>,
    #[serde(default)]
    pub datasource_rtt_p99_ms: Option<f64>,
    #[serde(default)]
    pub store_rtt_p99_ms: Option<f64>,
    pub steal_penalty: f64,
    pub work_penalty: f64,
    pub raw_score: f64,
    pub workers: usize,
    pub alive_workers: usize,
    pub recent_drains: u32,
    pub quarantine_left_ms: Option<i64>,
    pub eval_shards: usize,
    pub notify_shards: usize,
}

/// One worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerView {
    pub id: String,
    pub zone: String,
    pub shards: usize,
}

/// Shard totals.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ShardsView {
    pub eval: u16,
    pub notify: u16,
    pub assigned: usize,
}

/// Builds the status from the local node (no quorum round: status must answer even when the
/// cluster has no leader).
pub fn build(s: &AppState) -> Status {
    let info = cluster_info(&s.node.raft, &s.node.reader);
    let view = s.balancer.view();
    let q = |q: Query| s.node.reader.query(&q).1;
    let QueryResult::Workers(workers) = q(Query::Workers) else {
        unreachable!("query/result kinds match")
    };
    let QueryResult::Assignments(assignments) = q(Query::Assignments) else {
        unreachable!()
    };
    let QueryResult::Zones(zones) = q(Query::Zones) else {
        unreachable!()
    };
    let QueryResult::Layout(layout) = q(Query::Layout) else {
        unreachable!()
    };
    let mut owned: BTreeMap<String, usize> = BTreeMap::new();
    let mut assigned = 0;
    for (_, a) in &assignments {
        if let Some(w) = &a.owner {
            *owned.entry(w.to_string()).or_default() += 1;
            assigned += 1;
        }
    }
    Status {
        node: NodeView {
            id: info.node.id,
            zone: info.node.info.zone.clone(),
            grpc: info.node.info.grpc.clone(),
            http: info.node.info.http.clone(),
        },
        leader: info.leader,
        term: info.term,
        commit_index: info.commit_index,
        applied_index: info.applied_index,
        last_log_index: info.last_log_index,
        members: info
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                zone: m.info.zone.clone(),
                grpc: m.info.grpc.clone(),
                http: m.info.http.clone(),
                voter: m.voter,
            })
            .collect(),
        zones: if view.active && !view.zones.is_empty() {
            view.zones
                .iter()
                .map(|z| ZoneView {
                    zone: z.zone.to_string(),
                    state: z.state.as_str().into(),
                    score: z.score,
                    weight: z.weight,
                    signals: Some(SignalsView {
                        alive_fraction: z.penalties.alive_fraction,
                        latency_penalty: z.penalties.latency,
                        probe_rtt_p99_ms: z.penalties.rtt_p99_ms[0],
                        datasource_rtt_p99_ms: z.penalties.rtt_p99_ms[1],
                        store_rtt_p99_ms: z.penalties.rtt_p99_ms[2],
                        steal_penalty: z.penalties.steal,
                        work_penalty: z.penalties.work,
                        raw_score: z.raw_score,
                        workers: z.workers,
                        alive_workers: z.alive_workers,
                        recent_drains: z.recent_drains,
                        quarantine_left_ms: z.quarantine_left_ms,
                        eval_shards: z.eval_shards,
                        notify_shards: z.notify_shards,
                    }),
                })
                .collect()
        } else {
            zones
                .into_iter()
                .map(|(z, r)| ZoneView {
                    zone: z.to_string(),
                    state: r.state.as_str().into(),
                    score: r.score,
                    weight: r.weight,
                    signals: None,
                })
                .collect()
        },
        workers: workers
            .into_iter()
            .map(|w| WorkerView {
                shards: owned.get(w.id.as_str()).copied().unwrap_or(0),
                id: w.id.to_string(),
                zone: w.zone.to_string(),
            })
            .collect(),
        balancer: BalancerStatus {
            active: view.active,
            frozen: view.frozen.clone(),
            meta_alerts: view.meta_alerts.iter().map(|m| format!("{m:?}")).collect(),
        },
        shards: ShardsView {
            eval: layout.eval_shards,
            notify: layout.notify_shards,
            assigned,
        },
    }
}

/// `GET /api/v1/status`.
pub async fn get_status(State(s): State<AppState>) -> Json<Status> {
    Json(build(&s))
}
