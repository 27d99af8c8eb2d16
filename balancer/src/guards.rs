//! Global guards over the zones' proposed transitions (zone-health.md §6.3):
//!
//! * **Freeze**: if two or more zones meet degrade or drain criteria at once, nothing changes
//!   (likely the observer is at fault). One exception, decided here: a zone whose *every*
//!   worker is dead may still be drained when it is the only dead zone and every other zone
//!   still has most of its workers alive. The observer then demonstrably hears the other zones,
//!   and keeping shards on workers that are certainly silent means missed evaluations.
//! * **At most one zone non-healthy**: a zone may lose weight only while every other zone is
//!   HEALTHY. The dead-zone fast path is exempt (dead workers evaluate nothing, whatever the
//!   placement says); it raises `SecondZoneDown`.
//! * **Capacity precheck**: a zone may lose weight only if the zones' remaining capacity
//!   (alive capacity × weight) still covers `headroom × load`; otherwise it degrades partially
//!   to the lowest quantum that does, or keeps its weight. The dead-zone fast path is exempt
//!   (a dead zone has no capacity to keep).
//!
//! Transitions that raise weight (recover, admit, ramp) pass unless frozen.

use tocsin_state::model::{ZoneId, ZoneState};

use crate::config::ZoneStateConfig;
use crate::decision::MetaAlert;
use crate::zone_state::{MAX_DEGRADED_WEIGHT, MIN_DEGRADED_WEIGHT, Transition};

/// One zone's facts for the guards.
#[derive(Clone, Debug)]
pub struct ZoneFacts {
    /// Zone.
    pub zone: ZoneId,
    /// State before the tick's transitions.
    pub state: ZoneState,
    /// Weight before the tick's transitions.
    pub weight: f64,
    /// Registered workers.
    pub workers: usize,
    /// A_z.
    pub alive_fraction: f64,
    /// Σ capacity of the zone's alive workers.
    pub alive_capacity: f64,
    /// Meets degrade or drain criteria right now (dwell not required).
    pub bad: bool,
    /// What the zone's state machine wants.
    pub proposal: Option<Transition>,
}

/// What the guards let through.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Transitions to apply, in zone order.
    pub allowed: Vec<(ZoneId, Transition)>,
    /// Freeze reason, if frozen.
    pub frozen: Option<String>,
    /// Zones frozen in place (bad zones while frozen, except the exempt dead zone).
    pub frozen_zones: Vec<ZoneId>,
    /// Conditions for a human.
    pub alerts: Vec<MetaAlert>,
}

/// Applies the guards to every zone's proposal. `load_shards` is the number of shards of
/// both spaces (the load the capacity precheck protects).
pub fn apply_guards(config: &ZoneStateConfig, zones: &[ZoneFacts], load_shards: usize) -> Outcome {
    let mut out = Outcome::default();
    let exempt = freeze(config, zones, &mut out);
    let mut states: Vec<(ZoneState, f64)> = zones.iter().map(|z| (z.state, z.weight)).collect();
    for (i, z) in zones.iter().enumerate() {
        let Some(t) = z.proposal else { continue };
        let fast = matches!(t, Transition::Drain { dead: true });
        if out.frozen.is_some() && !(fast && exempt.as_ref() == Some(&z.zone)) {
            continue;
        }
        if out.frozen.is_some() {
            let zone = z.zone.clone();
            out.alerts
                .push(MetaAlert::DeadZoneDrainedWhileFrozen { zone });
        }
        let allowed = if t.lowers_weight(z.weight) {
            guard_lowering(config, zones, &states, i, t, load_shards, &mut out.alerts)
        } else {
            Some(t)
        };
        if let Some(t) = allowed {
            states[i] = next_state(config, t);
            out.allowed.push((z.zone.clone(), t));
        }
    }
    out
}

/// Decides the freeze: fills `out.frozen*` and returns the dead zone exempt from it, if any.
fn freeze(config: &ZoneStateConfig, zones: &[ZoneFacts], out: &mut Outcome) -> Option<ZoneId> {
    let bad: Vec<ZoneId> = zones
        .iter()
        .filter(|z| z.bad)
        .map(|z| z.zone.clone())
        .collect();
    if bad.len() < 2 {
        return None;
    }
    let wholly_dead: Vec<&ZoneFacts> = zones
        .iter()
        .filter(|z| z.workers > 0 && z.alive_fraction == 0.0)
        .collect();
    let dead = zones
        .iter()
        .filter(|z| z.alive_fraction < config.dead_alive_below)
        .count();
    let exempt = (wholly_dead.len() == 1 && dead == 1).then(|| wholly_dead[0].zone.clone());
    let names: Vec<&str> = bad.iter().map(ZoneId::as_str).collect();
    out.frozen = Some(format!(
        "{} zones look bad at once ({}); keeping placement: suspect the observer",
        bad.len(),
        names.join(", ")
    ));
    out.frozen_zones = bad
        .iter()
        .filter(|z| Some(*z) != exempt.as_ref())
        .cloned()
        .collect();
    out.alerts.push(MetaAlert::Frozen { zones: bad });
    exempt
}

/// The one-non-healthy-zone rule and the capacity precheck for a weight-lowering `t` of
/// zone `i`: the transition to apply (maybe a partial one), or `None` to keep the zone.
fn guard_lowering(
    config: &ZoneStateConfig,
    zones: &[ZoneFacts],
    states: &[(ZoneState, f64)],
    i: usize,
    t: Transition,
    load_shards: usize,
    alerts: &mut Vec<MetaAlert>,
) -> Option<Transition> {
    let z = &zones[i];
    let fast = matches!(t, Transition::Drain { dead: true });
    let other = zones
        .iter()
        .zip(states)
        .find(|(o, (s, _))| o.zone != z.zone && *s != ZoneState::Healthy)
        .map(|(o, _)| o.zone.clone());
    let zone = z.zone.clone();
    match (other, fast) {
        (Some(by), false) => {
            alerts.push(MetaAlert::Blocked { zone, by });
            return None;
        }
        (Some(other), true) => alerts.push(MetaAlert::SecondZoneDown { zone, other }),
        (None, _) => {}
    }
    if fast {
        return Some(t);
    }
    let adjusted = capacity_check(config, zones, states, i, t, load_shards);
    if adjusted != Some(t) {
        alerts.push(MetaAlert::CapacityShort {
            zone: z.zone.clone(),
            wanted: target_weight(t, z.weight),
            kept: adjusted.map_or(z.weight, |a| target_weight(a, z.weight)),
        });
    }
    adjusted
}

/// The weight a transition sets (for weight-raising ones the caller's value is irrelevant).
fn target_weight(t: Transition, current: f64) -> f64 {
    match t {
        Transition::Degrade { weight } | Transition::Reweight { weight } => weight,
        Transition::Drain { .. } => 0.0,
        _ => current,
    }
}

fn next_state(config: &ZoneStateConfig, t: Transition) -> (ZoneState, f64) {
    match t {
        Transition::Degrade { weight } | Transition::Reweight { weight } => {
            (ZoneState::Degraded, weight)
        }
        Transition::Drain { .. } => (ZoneState::Drained, 0.0),
        Transition::Recover | Transition::Promote => (ZoneState::Healthy, 1.0),
        Transition::Admit => (ZoneState::Probation, config.probation_ramp[0]),
        Transition::Ramp { weight } => (ZoneState::Probation, weight),
    }
}

/// The transition the capacity allows: `t` itself, a partial degrade, or `None` (keep).
fn capacity_check(
    config: &ZoneStateConfig,
    zones: &[ZoneFacts],
    states: &[(ZoneState, f64)],
    i: usize,
    t: Transition,
    load_shards: usize,
) -> Option<Transition> {
    let need = config.capacity_headroom * load_shards as f64;
    let have = |w_i: f64| -> f64 {
        zones
            .iter()
            .zip(states)
            .enumerate()
            .map(|(j, (z, (_, w)))| z.alive_capacity * if j == i { w_i } else { *w })
            .sum::<f64>()
            * f64::from(config.shards_per_capacity_unit)
    };
    let current = states[i].1;
    let wanted = target_weight(t, current);
    if have(wanted) >= need {
        return Some(t);
    }
    let partial = [MIN_DEGRADED_WEIGHT, 0.5, MAX_DEGRADED_WEIGHT]
        .into_iter()
        .find(|q| *q > wanted && *q < current && have(*q) >= need)?;
    match states[i].0 {
        ZoneState::Healthy => Some(Transition::Degrade { weight: partial }),
        ZoneState::Degraded => Some(Transition::Reweight { weight: partial }),
        // A zone on probation or drained already carries little; keep it as it is.
        ZoneState::Probation | ZoneState::Drained => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BalancerConfig;

    fn facts(name: &str, state: ZoneState, weight: f64, proposal: Option<Transition>) -> ZoneFacts {
        ZoneFacts {
            zone: ZoneId::new(name).unwrap(),
            state,
            weight,
            workers: 2,
            alive_fraction: 1.0,
            alive_capacity: 2.0,
            bad: proposal.is_some_and(|t| t.lowers_weight(weight)),
            proposal,
        }
    }

    fn cfg() -> ZoneStateConfig {
        BalancerConfig::production().zone
    }

    #[test]
    fn second_zone_is_blocked_while_one_is_not_healthy() {
        let zones = [
            facts("a", ZoneState::Drained, 0.0, None),
            facts(
                "b",
                ZoneState::Healthy,
                1.0,
                Some(Transition::Degrade { weight: 0.5 }),
            ),
            facts("c", ZoneState::Healthy, 1.0, None),
        ];
        let out = apply_guards(&cfg(), &zones, 320);
        assert!(out.allowed.is_empty());
        assert!(matches!(out.alerts[..], [MetaAlert::Blocked { .. }]));
    }

    #[test]
    fn dead_zone_passes_with_an_alert_when_another_is_not_healthy() {
        let mut dead = facts(
            "b",
            ZoneState::Healthy,
            1.0,
            Some(Transition::Drain { dead: true }),
        );
        dead.alive_fraction = 0.0;
        dead.bad = true;
        let zones = [facts("a", ZoneState::Degraded, 0.5, None), dead];
        let out = apply_guards(&cfg(), &zones, 320);
        assert_eq!(out.allowed.len(), 1);
        assert!(matches!(out.alerts[..], [MetaAlert::SecondZoneDown { .. }]));
    }

    #[test]
    fn freeze_stops_recoveries_too() {
        let mut a = facts(
            "a",
            ZoneState::Healthy,
            1.0,
            Some(Transition::Degrade { weight: 0.5 }),
        );
        let mut b = facts("b", ZoneState::Degraded, 0.5, Some(Transition::Recover));
        a.bad = true;
        b.bad = true;
        let out = apply_guards(&cfg(), &[a, b], 320);
        assert!(out.frozen.is_some());
        assert!(out.allowed.is_empty());
        assert_eq!(out.frozen_zones.len(), 2);
    }

    #[test]
    fn capacity_turns_a_drain_into_a_partial_degrade() {
        let mut c = cfg();
        c.shards_per_capacity_unit = 80; // 3 zones × 2 × 80 = 480; need 1.2 × 320 = 384
        let zones = [
            facts(
                "a",
                ZoneState::Degraded,
                0.75,
                Some(Transition::Drain { dead: false }),
            ),
            facts("b", ZoneState::Healthy, 1.0, None),
            facts("c", ZoneState::Healthy, 1.0, None),
        ];
        let out = apply_guards(&c, &zones, 320);
        // Weight 0 leaves 320 < 384; weight 0.5 leaves 400.
        assert_eq!(out.allowed[0].1, Transition::Reweight { weight: 0.5 });
        c.shards_per_capacity_unit = 60; // even keeping 0.75 is short: keep it, alert
        let out = apply_guards(&c, &zones, 320);
        assert!(out.allowed.is_empty());
        assert!(matches!(out.alerts[..], [MetaAlert::CapacityShort { kept, .. }] if kept == 0.75));
    }
}
