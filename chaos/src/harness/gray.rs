//! Gray failures (S5–S8): a zone that is alive but sick. Nothing is killed; the balancer
//! must see the zone's signal (steal time, latency), mark it degraded, move its work away
//! gradually, and take it back only once the signal stayed low. What the run measures
//! beyond the common figures ([`Facts`]): the signal's penalty as the acting balancer
//! reported it while the fault was on, whether placement froze, the meta-alerts, and when
//! the zone was healthy again. The zone states themselves come from the committed log
//! (`zone_states` in the figures), so the criteria judge what the cluster decided, not what
//! one node said.
//!
//! - S7: 30 % steal on one zone's workers through their stat files ([`super::steal`]).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_balancer::config::BalancerConfig;

use super::checker::{FaultWindow, Figures};
use super::error::HarnessError;
use super::faults::Plan;
use super::scenario::Run;

/// Steal fraction while S7's fault is on (zone-health.md's gray zone: 30 %).
const STEAL_HIGH: f64 = 0.30;
/// Steal fraction after it (a quiet host: under the 5 % where the penalty starts).
const STEAL_LOW: f64 = 0.01;
/// How often the acting balancer's view is sampled while a fault is on.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// After the fault ends, how long the zone gets to be healthy again (test profile: the
/// signal's window to empty, the smoothed score to climb, then the 12 s recovery dwell).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a gray-failure run observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    /// The sick zone.
    pub zone: String,
    /// When the signal went high, wall ms.
    pub start_ms: i64,
    /// When it went low again, wall ms.
    pub end_ms: i64,
    /// Highest penalty of the signal the acting balancer reported for the zone.
    pub max_penalty: f64,
    /// Highest penalty of that signal reported for any other zone.
    pub max_penalty_elsewhere: f64,
    /// Placement froze at some point while the fault was on (the reason, as reported).
    pub frozen: Option<String>,
    /// Meta-alerts the acting balancer reported while the fault was on.
    pub meta_alerts: BTreeSet<String>,
    /// When the acting balancer reported the zone healthy again, wall ms.
    pub healthy_again_ms: Option<i64>,
}

/// Which signal a scenario makes sick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Steal,
}

impl Signal {
    /// The status field of the signal's penalty.
    fn penalty_field(self) -> &'static str {
        match self {
            Signal::Steal => "steal_penalty",
        }
    }
}

/// S7: steal on one zone's workers for `plan.hold_ms`, then low again.
pub(crate) async fn steal(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let zone = plan.zone.clone().unwrap_or_default();
    run.at(plan.at_ms).await;
    run.cluster.steal.set(&zone, STEAL_HIGH);
    let start_ms = crate::clock::wall_ms();
    run.fault = Some(FaultWindow {
        start_ms,
        zone: Some(zone.clone()),
        workers: BTreeSet::new(),
        zone_workers: run.cluster.workers_of(&zone).into_iter().collect(),
    });
    run.note(format!(
        "steal {:.0} % on zone {zone}'s workers",
        STEAL_HIGH * 100.0
    ));
    let mut facts = Facts {
        zone: zone.clone(),
        start_ms,
        ..Facts::default()
    };
    watch_until(run, &mut facts, Signal::Steal, plan.at_ms + plan.hold_ms).await;
    run.cluster.steal.set(&zone, STEAL_LOW);
    facts.end_ms = crate::clock::wall_ms();
    run.note(format!(
        "steal back to {:.0} % on zone {zone}",
        STEAL_LOW * 100.0
    ));
    run.gray = Some(facts);
    Ok(())
}

/// Samples the acting balancer's view until `until_offset_ms` after the workload's start.
async fn watch_until(run: &Run, facts: &mut Facts, signal: Signal, until_offset_ms: i64) {
    let until = run.t0_ms + until_offset_ms;
    while crate::clock::wall_ms() < until {
        if let Some(s) = run.cluster.leader_status().await {
            observe(&s, facts, signal);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn observe(status: &serde_json::Value, facts: &mut Facts, signal: Signal) {
    for z in status["zones"].as_array().into_iter().flatten() {
        let p = z["signals"][signal.penalty_field()]
            .as_f64()
            .unwrap_or_default();
        if z["zone"].as_str() == Some(facts.zone.as_str()) {
            facts.max_penalty = facts.max_penalty.max(p);
        } else {
            facts.max_penalty_elsewhere = facts.max_penalty_elsewhere.max(p);
        }
    }
    let b = &status["balancer"];
    if facts.frozen.is_none() {
        facts.frozen = b["frozen"].as_str().map(str::to_owned);
    }
    for m in b["meta_alerts"].as_array().into_iter().flatten() {
        facts
            .meta_alerts
            .insert(m.as_str().unwrap_or_default().to_string());
    }
}

/// After the drain: waits (bounded) until the acting balancer reports the zone healthy, so
/// that the committed log the checker reads holds the recovery.
pub(crate) async fn after(run: &mut Run) {
    let Some(mut facts) = run.gray.take() else {
        return;
    };
    let zone = facts.zone.clone();
    let cluster = &run.cluster;
    let healthy = super::cluster::wait_until(RECOVER_TIMEOUT, "the zone healthy again", || async {
        let s = cluster.leader_status().await?;
        s["zones"]
            .as_array()?
            .iter()
            .any(|z| z["zone"].as_str() == Some(zone.as_str()) && z["state"] == "healthy")
            .then(crate::clock::wall_ms)
    })
    .await;
    facts.healthy_again_ms = healthy.ok();
    run.extra.insert("gray".into(), json!(facts));
    run.gray = Some(facts);
}

/// S7's criteria: the zone degraded (not drained) while steal was high, no other zone moved,
/// and the zone came back only after steal stayed low for the recovery dwell.
pub(crate) fn judge_steal(facts: Option<&Facts>, f: &Figures, failures: &mut Vec<String>) {
    let Some(facts) = facts else {
        failures.push("S7 recorded nothing about its fault".into());
        return;
    };
    let dwell_ms = BalancerConfig::test().zone.recover_dwell_ms;
    let mut need = super::checker::needs(failures);
    need(
        f.duplicates_idempotent == 0,
        format!("duplicates_idempotent {} (want 0)", f.duplicates_idempotent),
    );
    need(
        facts.max_penalty >= 0.99,
        format!(
            "the balancer's steal penalty for zone {} peaked at {:.2} (want 1 at {:.0} % steal)",
            facts.zone,
            facts.max_penalty,
            STEAL_HIGH * 100.0
        ),
    );
    let changes = f.zone_states.get(&facts.zone).cloned().unwrap_or_default();
    let first = changes.first();
    need(
        first.is_some_and(|c| c.state == "degraded" && c.at_ms >= facts.start_ms),
        format!(
            "zone {} was not marked degraded after the steal began (changes: {changes:?})",
            facts.zone
        ),
    );
    need(
        changes.iter().all(|c| c.state != "drained"),
        format!(
            "zone {} was drained by steal alone (changes: {changes:?})",
            facts.zone
        ),
    );
    let back = changes.iter().find(|c| c.state == "healthy");
    need(
        back.is_some_and(|c| c.at_ms >= facts.end_ms + dwell_ms),
        format!(
            "zone {} healthy again at {:?} ms, want at least {dwell_ms} ms after the steal \
             ended at {} ms (changes: {changes:?})",
            facts.zone,
            back.map(|c| c.at_ms),
            facts.end_ms
        ),
    );
    need(
        changes.last().is_some_and(|c| c.state == "healthy"),
        format!(
            "zone {} did not end healthy (changes: {changes:?})",
            facts.zone
        ),
    );
    let others: Vec<_> = f
        .zone_states
        .iter()
        .filter(|(z, c)| **z != facts.zone && !c.is_empty())
        .collect();
    need(
        others.is_empty(),
        format!("other zones changed state: {others:?}"),
    );
    need(
        facts.frozen.is_none(),
        format!("placement froze: {:?}", facts.frozen),
    );
}
