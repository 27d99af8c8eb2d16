//! Gray failures (S5–S8): a zone that is alive but sick. Nothing is killed; the balancer
//! must see the zone's signal (steal time, latency), mark it degraded, move its work away
//! gradually, and take it back only once the signal stayed low. What the run measures
//! beyond the common figures ([`Facts`]): the signal's penalty as the acting balancer
//! reported it while the fault was on, whether placement froze, the meta-alerts, and when
//! the zone was healthy again. The zone states themselves come from the committed log
//! (`zone_states` in the figures), so the criteria judge what the cluster decided, not what
//! one node said.
//!
//! - S5: added round trip on one follower zone's links ([`super::latency`]). A follower's:
//!   the acting balancer measures from the leader, so a slow leader zone makes every other
//!   zone look slow (that is S8's observer fault, and placement rightly freezes).
//! - S6: the same latency switched on and off every few seconds.
//! - S7: 30 % steal on one zone's workers through their stat files ([`super::steal`]).
//! - S8: latency on two zones at once: placement must freeze and say so.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_balancer::config::BalancerConfig;

use super::checker::{FaultWindow, Figures};
use super::error::HarnessError;
use super::faults::Plan;
use super::latency::LinksStats;
use super::scenario::Run;

/// Steal fraction while S7's fault is on (zone-health.md's gray zone: 30 %).
const STEAL_HIGH: f64 = 0.30;
/// Steal fraction after it (a quiet host: under the 5 % where the penalty starts).
const STEAL_LOW: f64 = 0.01;
/// Jitter on top of an added round trip (at most), so the links are not unnaturally steady.
const JITTER: Duration = Duration::from_millis(5);
/// How often the acting balancer's view is sampled while a fault is on.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// After the fault ends, how long the zone gets to be healthy again (test profile: the
/// signal's window to empty, the smoothed score to climb, then the 12 s recovery dwell).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// After placement unfroze, how long its meta-alert's resolve gets to reach a receiver
/// (a commit, the group's flush, a send).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);
/// The meta-alert a freeze raises.
pub const FROZEN_ALERT: &str = "TocsinPlacementFrozen";

/// What a gray-failure run observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    /// The sick zone.
    pub zone: String,
    /// S8: the second sick zone.
    pub second_zone: Option<String>,
    /// When the signal went high, wall ms.
    pub start_ms: i64,
    /// When it went low for good, wall ms.
    pub end_ms: i64,
    /// S5, S6, S8: the round trip added to each sick zone's links while on, ms.
    pub added_rtt_ms: u64,
    /// S6: each stretch the latency was on, wall ms.
    pub flaps: Vec<(i64, i64)>,
    /// Highest penalty of the signal the acting balancer reported for the sick zone(s).
    pub max_penalty: f64,
    /// Highest penalty of that signal reported for any other zone.
    pub max_penalty_elsewhere: f64,
    /// Most drains the acting balancer remembered for the sick zone (its quarantine is
    /// base × 2^(drains − 1)).
    pub max_recent_drains: u32,
    /// Placement froze at some point while the fault was on (the reason, as reported).
    pub frozen: Option<String>,
    /// Meta-alerts the acting balancer reported while the fault was on.
    pub meta_alerts: BTreeSet<String>,
    /// When the acting balancer reported the sick zone(s) healthy again (and placement not
    /// frozen), wall ms.
    pub healthy_again_ms: Option<i64>,
    /// The latency links at the end of the fault: proof that traffic went through them.
    pub links: Option<LinksStats>,
    /// Every sample of the acting balancer's zones while the fault was on (wall ms, the
    /// status's `zones`), written to `gray-samples.json` for the post-mortem.
    #[serde(skip)]
    pub samples: Vec<(i64, serde_json::Value)>,
}

impl Facts {
    fn sick(&self, zone: &str) -> bool {
        self.zone == zone || self.second_zone.as_deref() == Some(zone)
    }
}

/// Which signal a scenario makes sick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Steal,
    Latency,
}

impl Signal {
    /// The status field of the signal's penalty.
    fn penalty_field(self) -> &'static str {
        match self {
            Signal::Steal => "steal_penalty",
            Signal::Latency => "latency_penalty",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Signal::Steal => "steal",
            Signal::Latency => "latency",
        }
    }
}

/// Starts a fault on `zones` at `plan.at_ms`: the facts and the fault window.
async fn begin(run: &mut Run, plan: &Plan, zones: &[String]) -> Facts {
    run.at(plan.at_ms).await;
    let start_ms = crate::clock::wall_ms();
    let zone_workers = zones
        .iter()
        .flat_map(|z| run.cluster.workers_of(z))
        .collect();
    run.fault = Some(FaultWindow {
        start_ms,
        zone: zones.first().cloned(),
        workers: BTreeSet::new(),
        zone_workers,
    });
    Facts {
        zone: zones.first().cloned().unwrap_or_default(),
        second_zone: zones.get(1).cloned(),
        start_ms,
        ..Facts::default()
    }
}

/// S7: steal on one zone's workers for `plan.hold_ms`, then low again.
pub(crate) async fn steal(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let zone = plan.zone.clone().unwrap_or_default();
    let mut facts = begin(run, plan, std::slice::from_ref(&zone)).await;
    run.cluster.steal.set(&zone, STEAL_HIGH);
    run.note(format!(
        "steal {:.0} % on zone {zone}'s workers",
        STEAL_HIGH * 100.0
    ));
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

/// Sets the added round trip of every zone in `zones`.
fn set_latency(run: &Run, zones: &[String], rtt: Duration) -> Result<(), HarnessError> {
    let links = run.latency.as_ref().ok_or_else(|| HarnessError::Tool {
        command: "adding latency".into(),
        reason: "the run has no latency links".into(),
    })?;
    let jitter = if rtt.is_zero() {
        Duration::ZERO
    } else {
        JITTER
    };
    for z in zones {
        links.set(z, rtt, jitter)?;
    }
    Ok(())
}

/// S5 (one zone) and S8 (two): `plan.added_rtt` on the zones' links for `plan.hold_ms`.
pub(crate) async fn latency(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let zones: Vec<String> = plan.zone.iter().chain(&plan.second_zone).cloned().collect();
    let mut facts = begin(run, plan, &zones).await;
    facts.added_rtt_ms = plan.added_rtt_ms;
    let rtt = Duration::from_millis(plan.added_rtt_ms);
    set_latency(run, &zones, rtt)?;
    run.note(format!(
        "+{} ms round trip on zone(s) {}",
        plan.added_rtt_ms,
        zones.join(", ")
    ));
    let until = plan.at_ms + plan.hold_ms;
    watch_until(run, &mut facts, Signal::Latency, until).await;
    facts.links = run
        .latency
        .as_ref()
        .map(super::latency::LatencyLinks::stats);
    set_latency(run, &zones, Duration::ZERO)?;
    facts.end_ms = crate::clock::wall_ms();
    run.note(format!("latency off on zone(s) {}", zones.join(", ")));
    run.gray = Some(facts);
    Ok(())
}

/// S6: the latency of S5 on for 2–3 s, off for 1.5–2.5 s (each drawn from the seed),
/// until `plan.hold_ms` is over; it always ends off.
pub(crate) async fn flapping(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let zone = plan.zone.clone().unwrap_or_default();
    let zones = std::slice::from_ref(&zone);
    let mut facts = begin(run, plan, zones).await;
    facts.added_rtt_ms = plan.added_rtt_ms;
    let rtt = Duration::from_millis(plan.added_rtt_ms);
    let end = plan.at_ms + plan.hold_ms;
    run.note(format!(
        "flapping +{} ms round trip on zone {zone}",
        plan.added_rtt_ms
    ));
    let mut at = plan.at_ms;
    while at < end {
        let on_ms = run.rng.random_range(2_000..=3_000);
        let off_ms = run.rng.random_range(1_500..=2_500);
        set_latency(run, zones, rtt)?;
        let on = crate::clock::wall_ms();
        watch_until(run, &mut facts, Signal::Latency, (at + on_ms).min(end)).await;
        facts.links = run
            .latency
            .as_ref()
            .map(super::latency::LatencyLinks::stats);
        set_latency(run, zones, Duration::ZERO)?;
        facts.flaps.push((on, crate::clock::wall_ms()));
        at += on_ms + off_ms;
        watch_until(run, &mut facts, Signal::Latency, at.min(end)).await;
    }
    facts.end_ms = facts.flaps.last().map_or(crate::clock::wall_ms(), |f| f.1);
    run.note(format!(
        "latency stopped flapping on zone {zone} after {} flaps",
        facts.flaps.len()
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
    facts
        .samples
        .push((crate::clock::wall_ms(), status["zones"].clone()));
    for z in status["zones"].as_array().into_iter().flatten() {
        let signals = &z["signals"];
        let p = signals[signal.penalty_field()].as_f64().unwrap_or_default();
        if facts.sick(z["zone"].as_str().unwrap_or_default()) {
            facts.max_penalty = facts.max_penalty.max(p);
            let drains = signals["recent_drains"].as_u64().unwrap_or_default();
            facts.max_recent_drains = facts
                .max_recent_drains
                .max(u32::try_from(drains).unwrap_or(u32::MAX));
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

/// After the drain: waits (bounded) until the acting balancer reports the sick zone(s)
/// healthy and placement unfrozen, so that the committed log the checker reads holds the
/// recovery (and S8's resolved meta-alert has had its chance to be sent).
pub(crate) async fn after(run: &mut Run) {
    let Some(mut facts) = run.gray.take() else {
        return;
    };
    let cluster = &run.cluster;
    let check = &facts;
    let healthy = super::cluster::wait_until(RECOVER_TIMEOUT, "the zone healthy again", || async {
        let s = cluster.leader_status().await?;
        let zones = s["zones"].as_array()?;
        let sick_ok = zones
            .iter()
            .filter(|z| check.sick(z["zone"].as_str().unwrap_or_default()))
            .all(|z| z["state"] == "healthy");
        (sick_ok && s["balancer"]["frozen"].is_null()).then(crate::clock::wall_ms)
    })
    .await;
    facts.healthy_again_ms = healthy.ok();
    if facts.second_zone.is_some() && facts.healthy_again_ms.is_some() {
        // S8: the freeze's resolve is notified after placement unfroze; the checker reads
        // the receivers' logs right after this, so wait (bounded) for it to land.
        let emulators = &run.emulators;
        let resolved = format!("{FROZEN_ALERT} resolved");
        let _ = super::cluster::wait_until(RESOLVE_TIMEOUT, "the freeze's resolve", || async {
            let o = emulators.observed();
            o.hooks
                .values()
                .flatten()
                .any(|r| r.processed && super::checker::meta_alert(r).as_ref() == Some(&resolved))
                .then_some(())
        })
        .await;
    }
    let path = run.cluster.dir().join("gray-samples.json");
    if let Err(err) = std::fs::write(&path, json!(facts.samples).to_string()) {
        tracing::warn!(%err, path = %path.display(), "writing the balancer samples");
    }
    run.extra.insert("gray".into(), json!(facts));
    run.gray = Some(facts);
}

/// The most shards a degraded zone may lose in one assignment: the placement's rate limit
/// (a fraction of each space per period), rounded up once per space.
fn gradual_bound(f: &Figures) -> usize {
    let fraction = BalancerConfig::test().placement.degraded_move_fraction;
    (fraction * f.shards_total as f64).ceil() as usize + 2
}

/// The criteria every gray failure shares: nothing doubled, the penalty saturated, and
/// (with `one_zone`) the sick zone alone changed state while placement never froze.
fn judge_common(
    signal: Signal,
    facts: &Facts,
    f: &Figures,
    one_zone: bool,
    failures: &mut Vec<String>,
) {
    let mut need = super::checker::needs(failures);
    need(
        f.duplicates_idempotent == 0,
        format!("duplicates_idempotent {} (want 0)", f.duplicates_idempotent),
    );
    need(
        facts.max_penalty >= 0.99,
        format!(
            "the balancer's {} penalty for zone {} peaked at {:.2} (want 1)",
            signal.name(),
            facts.zone,
            facts.max_penalty,
        ),
    );
    if signal == Signal::Latency {
        let carried = facts
            .links
            .as_ref()
            .and_then(|l| l.zones.iter().find(|z| z.zone == facts.zone))
            .map_or(0, |z| z.connections);
        need(
            carried > 0,
            format!(
                "no connection of zone {} went through the latency proxy",
                facts.zone
            ),
        );
    }
    if one_zone {
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
}

/// S5 and S7: the zone degraded (not drained) while the signal was high, lost its shards
/// at the placement's bounded rate, no other zone moved, and the zone came back only after
/// the signal stayed low for the recovery dwell.
pub(crate) fn judge_sick_zone(
    signal: Signal,
    facts: Option<&Facts>,
    f: &Figures,
    failures: &mut Vec<String>,
) {
    let Some(facts) = facts else {
        failures.push("the run recorded nothing about its fault".into());
        return;
    };
    judge_common(signal, facts, f, true, failures);
    let dwell_ms = BalancerConfig::test().zone.recover_dwell_ms;
    let mut need = super::checker::needs(failures);
    let changes = f.zone_states.get(&facts.zone).cloned().unwrap_or_default();
    let first = changes.first();
    need(
        first.is_some_and(|c| c.state == "degraded" && c.at_ms >= facts.start_ms),
        format!(
            "zone {} was not marked degraded after the {} began (changes: {changes:?})",
            facts.zone,
            signal.name()
        ),
    );
    need(
        changes.iter().all(|c| c.state != "drained"),
        format!(
            "zone {} was drained by {} alone (changes: {changes:?})",
            facts.zone,
            signal.name()
        ),
    );
    let bound = gradual_bound(f);
    need(
        f.zone_shards_max_drop > 0 && f.zone_shards_max_drop <= bound,
        format!(
            "zone {} lost {} shards in one assignment (want 1..={bound}: gradually)",
            facts.zone, f.zone_shards_max_drop
        ),
    );
    let back = changes.iter().find(|c| c.state == "healthy");
    need(
        back.is_some_and(|c| c.at_ms >= facts.end_ms + dwell_ms),
        format!(
            "zone {} healthy again at {:?} ms, want at least {dwell_ms} ms after the {} \
             ended at {} ms (changes: {changes:?})",
            facts.zone,
            back.map(|c| c.at_ms),
            signal.name(),
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
}

/// S6: flapping latency changes the zone's state a bounded number of times: degraded once,
/// held there through every flap (never healthy in between, never drained), and healthy
/// again only after the latency stayed off for the recovery dwell.
///
/// The matrix also asks that "quarantine grows". Quarantine is what a *drained* zone serves
/// (base × 2^(drains − 1)), and latency alone never drains a zone (its penalty at most
/// halves the score; draining needs work to fail, S5's own criterion), so this run checks
/// and reports that no quarantine was needed (`max_recent_drains` 0). The doubling itself
/// is tested on the state machine (`relapse_doubles_the_quarantine_up_to_the_cap`).
pub(crate) fn judge_flapping(facts: Option<&Facts>, f: &Figures, failures: &mut Vec<String>) {
    let Some(facts) = facts else {
        failures.push("S6 recorded nothing about its fault".into());
        return;
    };
    judge_common(Signal::Latency, facts, f, true, failures);
    let dwell_ms = BalancerConfig::test().zone.recover_dwell_ms;
    let mut need = super::checker::needs(failures);
    need(
        facts.flaps.len() >= 3,
        format!("only {} flaps (want at least 3)", facts.flaps.len()),
    );
    let changes = f.zone_states.get(&facts.zone).cloned().unwrap_or_default();
    let states: Vec<&str> = changes.iter().map(|c| c.state.as_str()).collect();
    need(
        states == ["degraded", "healthy"],
        format!(
            "zone {} went through {states:?} (want degraded once, then healthy: {changes:?})",
            facts.zone
        ),
    );
    need(
        changes
            .iter()
            .find(|c| c.state == "healthy")
            .is_some_and(|c| c.at_ms >= facts.end_ms + dwell_ms),
        format!(
            "zone {} healthy again before the latency stayed off for {dwell_ms} ms \
             (last flap ended at {} ms; changes: {changes:?})",
            facts.zone, facts.end_ms
        ),
    );
    need(
        facts.max_recent_drains == 0,
        format!(
            "zone {} was drained ({} drains remembered) by latency alone",
            facts.zone, facts.max_recent_drains
        ),
    );
}

/// S8: latency on two zones at once. Placement freezes (the likely fault is the observer),
/// the freeze is notified as a meta-alert and resolved after, no zone changes state and no
/// shard moves while it lasts.
pub(crate) fn judge_two_zones(facts: Option<&Facts>, f: &Figures, failures: &mut Vec<String>) {
    let Some(facts) = facts else {
        failures.push("S8 recorded nothing about its fault".into());
        return;
    };
    judge_common(Signal::Latency, facts, f, false, failures);
    let mut need = super::checker::needs(failures);
    need(
        facts.frozen.is_some(),
        "placement never froze with two zones slow".into(),
    );
    let changed: Vec<_> = f
        .zone_states
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .collect();
    need(
        changed.is_empty(),
        format!("zones changed state while two looked bad: {changed:?}"),
    );
    need(
        f.shard_moves == 0,
        format!("{} shards moved while placement was frozen", f.shard_moves),
    );
    for status in ["firing", "resolved"] {
        let want = format!("{FROZEN_ALERT} {status}");
        need(
            f.meta_notifications.contains(&want),
            format!(
                "no `{want}` notification reached a receiver (meta notifications: {:?})",
                f.meta_notifications
            ),
        );
    }
    need(
        facts.healthy_again_ms.is_some(),
        "placement did not unfreeze, or the zones were not healthy, after the latency ended".into(),
    );
}
