//! S4: one zone partitioned from the others while its processes keep running, then healed.
//!
//! The cut is the hub's nftables forward chain ([`super::netns`]): the zone's node and
//! workers still reach the harness (providers, datasource) but no other zone. What the run
//! measures beyond the S2 figures ([`Facts`]):
//!
//! - that the partition cut something (packets it dropped);
//! - that the majority had one leader, and a new one when the old leader was cut off;
//! - that the cut-off node committed nothing (its commit index, from 1 s after the cut until
//!   the heal, does not move: a minority cannot commit);
//! - after healing: that the node rejoins (same leader and term, caught up), how many writes
//!   the store refused for a stale epoch during and after the partition (the state
//!   machine's own replicated counter), and how many of the cut-off zone's workers' writes
//!   were refused after the heal (their logs). The fencing audit of the committed log
//!   (`stale_epoch_commits`, `unowned_commits`) says none was applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_state::client::StoreClient;
use tocsin_state::model::{Query, QueryResult};

use super::cluster::{Cluster, wait_until};
use super::error::HarnessError;
use super::faults::{Plan, leaders_at_end};
use super::process::Role;
use super::scenario::{Run, zone_window};

/// After the cut, how long messages already delivered to the cut-off node may still move its
/// commit index (they crossed before the rules were in place).
const IN_FLIGHT_MS: i64 = 1_000;
/// How long the cut-off node may take to rejoin after the heal (an election its higher term
/// may force, then catching up on the log).
const REJOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of one store read made by this module.
const STORE_DEADLINE: Duration = Duration::from_secs(3);
/// Polling period while the partition holds.
const POLL: Duration = Duration::from_millis(100);
/// A worker's log line when the store refuses its epoch (`alerter/src/worker/{group,notify}.rs`).
const REFUSED: &str = "store refused our epoch";
/// A worker's log line when its lease ran out (`alerter/src/worker/session.rs`).
const FENCED: &str = "lease expired: fencing myself";

/// What an S4 run observed, judged by [`judge`] and reported as `extra.partition`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    /// The partitioned zone.
    pub zone: String,
    /// Whether the seed aimed at the leader's zone (else at a follower's).
    pub aimed_at_leader: bool,
    /// The leader just before the cut.
    pub old_leader: Option<String>,
    /// Whether that leader was in the partitioned zone.
    pub leader_isolated: bool,
    /// The leader every node outside the zone agreed on during the partition.
    pub majority_leader: Option<String>,
    /// Cut → the majority agreed on that leader, s.
    pub majority_leader_s: Option<f64>,
    /// Whether the majority's leader differs from the old one.
    pub new_leader_elected: bool,
    /// Whether the cut-off node still said it led while the majority had its own leader.
    pub isolated_claimed_leader: bool,
    /// The cut-off node's commit index [`IN_FLIGHT_MS`] after the cut.
    pub isolated_commit_from: Option<u64>,
    /// Its highest commit index seen until the heal.
    pub isolated_commit_max: Option<u64>,
    /// Packets the partition dropped.
    pub dropped_packets: u64,
    /// Heal → the cut-off node follows the leader in its term and caught up, s.
    pub rejoin_s: Option<f64>,
    /// Writes the state machine refused for a stale epoch between the cut and the heal.
    pub store_stale_refusals_during: Option<u64>,
    /// The same, from the heal to the end of the run.
    pub store_stale_refusals_after_heal: Option<u64>,
    /// The cut-off zone's workers that fenced themselves (lease expired) while cut off.
    pub workers_fenced: usize,
    /// Writes of the cut-off zone's workers that the store refused after the heal.
    pub worker_refusals_after_heal: usize,
    /// Every node's leader at the end.
    pub leaders_at_end: Vec<Option<u64>>,
    /// Log lengths of the zone's workers at the cut and at the heal.
    #[serde(skip)]
    marks: BTreeMap<String, (usize, usize)>,
}

impl Facts {
    /// How far the cut-off node's commit index moved while it could not reach a quorum.
    pub fn isolated_commits(&self) -> Option<u64> {
        self.isolated_commit_max?
            .checked_sub(self.isolated_commit_from?)
    }
}

/// Cuts the planned zone off at the planned time, watches both sides while the partition
/// holds, heals it and waits for the zone to rejoin.
pub(crate) async fn execute(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let zone = plan.zone.clone().unwrap_or_default();
    let (isolated_id, isolated_http) = run
        .cluster
        .nodes()
        .find(|n| n.zone == zone)
        .map(|n| (n.id.clone(), n.http.clone()))
        .ok_or_else(|| HarnessError::Api {
            what: "S4".into(),
            reason: format!("no node in zone {zone}"),
        })?;
    let majority: Vec<String> = run
        .cluster
        .nodes()
        .filter(|n| n.zone != zone)
        .map(|n| n.grpc.clone())
        .collect();
    let store = StoreClient::new(majority)
        .map_err(|e| HarnessError::Api {
            what: "a store client for the majority".into(),
            reason: e.to_string(),
        })?
        .with_deadline(STORE_DEADLINE);
    run.at(plan.at_ms).await;
    let old = run.cluster.leader().await;
    let mut facts = Facts {
        zone: zone.clone(),
        aimed_at_leader: plan.aim_at_leader,
        old_leader: old.as_ref().map(|(id, _)| id.clone()),
        leader_isolated: old.as_ref().is_some_and(|(_, z)| *z == zone),
        ..Facts::default()
    };
    let refusals_at_cut = stale_refusals(&store).await;
    let cut_marks = log_marks(&run.cluster, &zone);
    let start = crate::clock::wall_ms();
    run.cluster.partition(&zone).await?;
    run.fault = Some(zone_window(run, &zone, start));
    run.note(format!(
        "partition zone {zone} from the other zones (leader before: {})",
        describe(old.as_ref())
    ));
    let until = run.t0_ms + plan.at_ms + plan.hold_ms;
    watch_partition(run, &isolated_id, &isolated_http, start, until, &mut facts).await;
    let refusals_at_heal = stale_refusals(&store).await;
    facts.store_stale_refusals_during = refusals_at_heal
        .zip(refusals_at_cut)
        .map(|(h, c)| h.saturating_sub(c));
    let heal_marks = log_marks(&run.cluster, &zone);
    facts.marks = cut_marks
        .into_iter()
        .map(|(w, c)| {
            let h = heal_marks.get(&w).copied().unwrap_or(c);
            (w, (c, h))
        })
        .collect();
    let target = run
        .cluster
        .leader_status()
        .await
        .and_then(|s| s["commit_index"].as_u64())
        .unwrap_or(0);
    facts.dropped_packets = run.cluster.heal().await?;
    let healed = crate::clock::wall_ms();
    run.note(format!(
        "heal zone {zone} ({} packets were dropped)",
        facts.dropped_packets
    ));
    let rejoined = wait_until(REJOIN_TIMEOUT, "the cut-off node to rejoin", || async {
        let leader = run.cluster.leader_status().await?;
        let s = run.cluster.status_of(&isolated_http).await?;
        (s["leader"].as_u64().is_some()
            && s["leader"] == leader["leader"]
            && s["term"] == leader["term"]
            && s["applied_index"].as_u64()? >= target)
            .then_some(())
    })
    .await;
    if rejoined.is_ok() {
        facts.rejoin_s = Some(secs(crate::clock::wall_ms() - healed));
    }
    run.extra.insert(
        "store_stale_refusals_at_heal".into(),
        json!(refusals_at_heal),
    );
    run.partition = Some(facts);
    Ok(())
}

/// Polls both sides until `until_ms` (wall): the majority's leader, and the cut-off node's
/// leader claim and commit index.
async fn watch_partition(
    run: &Run,
    isolated_id: &str,
    isolated_http: &str,
    start_ms: i64,
    until_ms: i64,
    facts: &mut Facts,
) {
    loop {
        let now = crate::clock::wall_ms();
        if now >= until_ms {
            return;
        }
        if facts.majority_leader.is_none()
            && let Some(id) = majority_leader(&run.cluster, &facts.zone).await
        {
            facts.majority_leader_s = Some(secs(crate::clock::wall_ms() - start_ms));
            facts.new_leader_elected = facts.old_leader.as_deref() != Some(id.as_str());
            facts.majority_leader = Some(id);
        }
        if let Some(s) = run.cluster.status_of(isolated_http).await {
            if crate::clock::wall_ms() >= start_ms + IN_FLIGHT_MS
                && let Some(ci) = s["commit_index"].as_u64()
            {
                facts.isolated_commit_from.get_or_insert(ci);
                facts.isolated_commit_max = facts.isolated_commit_max.max(Some(ci));
            }
            let claims =
                s["leader"].as_u64().map(|l| l.to_string()).as_deref() == Some(isolated_id);
            facts.isolated_claimed_leader |= claims && facts.majority_leader.is_some();
        }
        let left = u64::try_from(until_ms - crate::clock::wall_ms()).unwrap_or(0);
        tokio::time::sleep(POLL.min(Duration::from_millis(left))).await;
    }
}

/// The leader every running node outside `zone` reports, if they agree on one of them.
async fn majority_leader(cluster: &Cluster, zone: &str) -> Option<String> {
    let mut agreed: Option<u64> = None;
    for n in cluster.nodes().filter(|n| n.zone != zone && n.is_running()) {
        let leader = cluster.status_of(&n.http).await?["leader"].as_u64()?;
        if agreed.is_some_and(|a| a != leader) {
            return None;
        }
        agreed = Some(leader);
    }
    let id = agreed?.to_string();
    cluster
        .nodes()
        .any(|n| n.id == id && n.zone != zone)
        .then_some(id)
}

/// After the drain: the workers' reactions (from their logs), the store's refusals since the
/// heal, and whether every node agrees on the leader.
pub(crate) async fn after(run: &mut Run) {
    let refusals_at_heal = run
        .extra
        .get("store_stale_refusals_at_heal")
        .and_then(Value::as_u64);
    let leaders = leaders_at_end(&run.cluster).await;
    let store = StoreClient::new(run.cluster.seeds(None))
        .map(|c| c.with_deadline(STORE_DEADLINE))
        .ok();
    let refusals_at_end = match &store {
        Some(c) => stale_refusals(c).await,
        None => None,
    };
    let Some(facts) = run.partition.as_mut() else {
        return;
    };
    for (worker, (cut, heal)) in &facts.marks {
        let Some(p) = run
            .cluster
            .procs
            .iter()
            .find(|p| p.role == Role::Worker && p.id == *worker)
        else {
            continue;
        };
        let log = p.log_text();
        let during = log.get(*cut..*heal).unwrap_or_default();
        facts.workers_fenced += usize::from(during.contains(FENCED));
        facts.worker_refusals_after_heal += log
            .get(*heal..)
            .unwrap_or_default()
            .matches(REFUSED)
            .count();
    }
    facts.store_stale_refusals_after_heal = refusals_at_end
        .zip(refusals_at_heal)
        .map(|(e, h)| e.saturating_sub(h));
    facts.leaders_at_end = leaders.into_iter().collect();
    run.extra.insert("partition".into(), json!(facts));
}

/// S4's own pass criteria (beyond S2's, which the figures decide).
pub(crate) fn judge(facts: Option<&Facts>, failures: &mut Vec<String>) {
    let Some(f) = facts else {
        failures.push("the partition was not carried out".into());
        return;
    };
    let mut need = super::checker::needs(failures);
    need(
        f.dropped_packets > 0,
        "the partition dropped no packet".into(),
    );
    need(
        f.majority_leader.is_some(),
        "the zones outside the partition never agreed on a leader among them".into(),
    );
    need(
        !f.leader_isolated || f.new_leader_elected,
        "the leader was cut off and the majority elected no new one".into(),
    );
    need(
        f.isolated_commits() == Some(0),
        format!(
            "the cut-off node's commit index moved while it was partitioned ({:?} → {:?})",
            f.isolated_commit_from, f.isolated_commit_max
        ),
    );
    need(
        f.rejoin_s.is_some(),
        format!("the cut-off node did not rejoin within {REJOIN_TIMEOUT:?} of the heal"),
    );
    need(
        f.leaders_at_end.len() == 1 && !f.leaders_at_end.contains(&None),
        format!(
            "nodes disagree on the leader at the end: {:?}",
            f.leaders_at_end
        ),
    );
}

/// The state machine's count of writes refused for a stale epoch (replicated; read through
/// the leader).
async fn stale_refusals(store: &StoreClient) -> Option<u64> {
    match store.read(&Query::Stats, true).await {
        Ok((_, QueryResult::Stats(s))) => Some(s.stale_epoch),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(%err, "reading the store's apply stats");
            None
        }
    }
}

/// Current log length of each worker of `zone`.
fn log_marks(cluster: &Cluster, zone: &str) -> BTreeMap<String, usize> {
    cluster
        .procs
        .iter()
        .filter(|p| p.role == Role::Worker && p.zone == zone)
        .map(|p| (p.id.clone(), p.log_text().len()))
        .collect()
}

fn describe(leader: Option<&(String, String)>) -> String {
    leader.map_or_else(|| "none".into(), |(id, z)| format!("node {id} in zone {z}"))
}

fn secs(ms: i64) -> f64 {
    (ms as f64 / 100.0).round() / 10.0
}
