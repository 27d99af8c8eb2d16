//! One zone's hysteresis state machine (zone-health.md §6.3):
//! HEALTHY → DEGRADED → DRAINED → PROBATION → HEALTHY, each transition needing its condition
//! to hold for a dwell time, a quarantine that doubles with recent drains, a probation ramp.
//!
//! The tracker only *proposes* transitions; the balancer applies the global guards (freeze,
//! at most one non-healthy zone, capacity) and then applies what it allows. It is resumable
//! from the committed [`ZoneRecord`]: state, score, weight, `since_ms` and the drain count are
//! replicated; dwell timers are not, so a new leader restarts them (it can only be slower to
//! act, never faster), and it keeps the quarantine because `since_ms` is replicated.

use tocsin_state::model::{ZoneRecord, ZoneState};

use crate::config::{HealthConfig, ZoneStateConfig};
use crate::zone_health::{quantised_weight, smooth};

/// Lowest weight of a degraded zone: weight 0 is DRAINED, never DEGRADED.
pub const MIN_DEGRADED_WEIGHT: f64 = 0.25;
/// Highest weight of a degraded zone.
pub const MAX_DEGRADED_WEIGHT: f64 = 0.75;

/// A change the tracker wants to make.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// HEALTHY → DEGRADED at this weight.
    Degrade { weight: f64 },
    /// DEGRADED, new weight quantum.
    Reweight { weight: f64 },
    /// → DRAINED. `dead`: by the dead-zone fast path (no dwell).
    Drain { dead: bool },
    /// DEGRADED → HEALTHY.
    Recover,
    /// DRAINED → PROBATION (quarantine over, zone fully alive and healthy).
    Admit,
    /// PROBATION, next ramp step below 1.0.
    Ramp { weight: f64 },
    /// PROBATION → HEALTHY (the ramp reached 1.0).
    Promote,
}

impl Transition {
    /// Whether the transition lowers the zone's weight (the guards apply to these).
    pub fn lowers_weight(&self, current_weight: f64) -> bool {
        match self {
            Self::Degrade { weight } | Self::Reweight { weight } => *weight < current_weight,
            Self::Drain { .. } => true,
            Self::Recover | Self::Admit | Self::Ramp { .. } | Self::Promote => false,
        }
    }
}

/// The state of one zone.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneTracker {
    state: ZoneState,
    /// Smoothed health score H_s.
    score: f64,
    /// Placement weight.
    weight: f64,
    since_ms: i64,
    recent_drains: u32,
    /// When the score was last smoothed.
    updated_ms: i64,
    /// Last change of a degraded zone's weight.
    weight_changed_ms: i64,
    /// Start of the current HEALTHY stretch that counts towards forgetting a drain.
    decay_anchor_ms: i64,
    /// Index into the probation ramp.
    step: usize,
    /// Start of the current probation step (restarted whenever the score dips).
    step_since_ms: i64,
    below_full_since: Option<i64>,
    below_drain_since: Option<i64>,
    below_relapse_since: Option<i64>,
    recovered_since: Option<i64>,
}

impl ZoneTracker {
    /// A zone first seen at `now_ms`: healthy, score 1.
    pub fn new(config: &ZoneStateConfig, now_ms: i64) -> Self {
        let record = ZoneRecord {
            state: ZoneState::Healthy,
            score: 1.0,
            weight: 1.0,
            since_ms: now_ms,
            recent_drains: 0,
        };
        Self::from_record(&record, config, now_ms)
    }

    /// Resumes from a committed record at `now_ms`. Out-of-range fields are repaired (a weight
    /// that does not fit the state is replaced by the state's own), so a bad record can never
    /// make the core panic.
    pub fn from_record(record: &ZoneRecord, config: &ZoneStateConfig, now_ms: i64) -> Self {
        let score = if record.score.is_finite() {
            record.score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let ramp = &config.probation_ramp;
        let (weight, step) = match record.state {
            ZoneState::Healthy => (1.0, 0),
            ZoneState::Drained => (0.0, 0),
            ZoneState::Degraded => {
                let w = if record.weight.is_finite() {
                    record.weight
                } else {
                    0.5
                };
                let q = crate::zone_health::QUANTA
                    .iter()
                    .copied()
                    .filter(|q| *q <= w + 1e-12)
                    .fold(MIN_DEGRADED_WEIGHT, f64::max);
                (q.clamp(MIN_DEGRADED_WEIGHT, MAX_DEGRADED_WEIGHT), 0)
            }
            ZoneState::Probation => {
                let step = ramp[..ramp.len() - 1]
                    .iter()
                    .rposition(|r| *r <= record.weight + 1e-12)
                    .unwrap_or(0);
                (ramp[step], step)
            }
        };
        let since_ms = record.since_ms.min(now_ms);
        Self {
            state: record.state,
            score,
            weight,
            since_ms,
            recent_drains: record.recent_drains,
            updated_ms: now_ms,
            weight_changed_ms: since_ms,
            decay_anchor_ms: since_ms,
            step,
            step_since_ms: now_ms,
            below_full_since: None,
            below_drain_since: None,
            below_relapse_since: None,
            recovered_since: None,
        }
    }

    /// The record to commit.
    pub fn to_record(&self) -> ZoneRecord {
        ZoneRecord {
            state: self.state,
            score: self.score,
            weight: self.weight,
            since_ms: self.since_ms,
            recent_drains: self.recent_drains,
        }
    }

    /// Current state.
    pub fn state(&self) -> ZoneState {
        self.state
    }

    /// Smoothed score H_s.
    pub fn score(&self) -> f64 {
        self.score
    }

    /// Placement weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Drains remembered (k + 1 after a drain).
    pub fn recent_drains(&self) -> u32 {
        self.recent_drains
    }

    /// The quarantine a drained zone serves: base × 2^(k−1) for the k-th recent drain, capped.
    pub fn quarantine_ms(&self, config: &ZoneStateConfig) -> i64 {
        let doublings = self.recent_drains.saturating_sub(1).min(20);
        (config.quarantine_base_ms.saturating_mul(1i64 << doublings)).min(config.quarantine_max_ms)
    }

    /// Feeds one tick: smooths the score towards `raw` (or zeroes it on the dead-zone fast
    /// path), advances dwell timers and forgets old drains.
    pub fn observe(
        &mut self,
        health: &HealthConfig,
        config: &ZoneStateConfig,
        now_ms: i64,
        raw: f64,
        alive_fraction: f64,
    ) {
        let dt = now_ms - self.updated_ms;
        self.updated_ms = self.updated_ms.max(now_ms);
        self.score = if alive_fraction < config.dead_alive_below {
            0.0
        } else {
            smooth(health, self.score, raw, dt)
        };
        let s = self.score;
        track(
            &mut self.below_full_since,
            quantised_weight(health, s) < 1.0,
            now_ms,
        );
        track(
            &mut self.below_drain_since,
            s < config.drain_score_below,
            now_ms,
        );
        track(
            &mut self.below_relapse_since,
            s < config.relapse_score_below,
            now_ms,
        );
        track(
            &mut self.recovered_since,
            s >= config.recover_score_at,
            now_ms,
        );
        if self.state == ZoneState::Probation && s < config.recover_score_at {
            self.step_since_ms = now_ms; // the ramp pauses while the zone is not clearly well
        }
        if self.state == ZoneState::Healthy
            && self.recent_drains > 0
            && now_ms - self.decay_anchor_ms >= config.drain_memory_ms
        {
            self.recent_drains -= 1;
            self.decay_anchor_ms = now_ms;
        }
    }

    /// Placement is frozen (the observer is suspect): what the zone looked like meanwhile
    /// is no evidence, so every dwell towards a lower weight starts again at `now_ms`. Once
    /// the freeze lifts, a zone that still looks bad must look bad for a whole dwell before
    /// it loses weight, instead of acting at once on time served under suspicion.
    pub fn restart_lowering_dwells(&mut self, now_ms: i64) {
        for since in [
            &mut self.below_full_since,
            &mut self.below_drain_since,
            &mut self.below_relapse_since,
        ] {
            if since.is_some() {
                *since = Some(now_ms);
            }
        }
    }

    /// The transition this zone wants at `now_ms`, before the global guards.
    pub fn propose(
        &self,
        health: &HealthConfig,
        config: &ZoneStateConfig,
        now_ms: i64,
        alive_fraction: f64,
    ) -> Option<Transition> {
        let held = |since: Option<i64>, dwell: i64| since.is_some_and(|t| now_ms - t >= dwell);
        let dead = alive_fraction < config.dead_alive_below;
        let drain = held(self.below_drain_since, config.drain_dwell_ms);
        let w = quantised_weight(health, self.score);
        match self.state {
            ZoneState::Healthy if dead => Some(Transition::Drain { dead: true }),
            ZoneState::Healthy if drain => Some(Transition::Drain { dead: false }),
            ZoneState::Healthy if held(self.below_full_since, config.degrade_dwell_ms) => {
                Some(Transition::Degrade {
                    weight: w.clamp(MIN_DEGRADED_WEIGHT, MAX_DEGRADED_WEIGHT),
                })
            }
            ZoneState::Healthy => None,
            ZoneState::Degraded if dead => Some(Transition::Drain { dead: true }),
            ZoneState::Degraded if drain => Some(Transition::Drain { dead: false }),
            ZoneState::Degraded if held(self.recovered_since, config.recover_dwell_ms) => {
                Some(Transition::Recover)
            }
            ZoneState::Degraded => {
                // In the band between "W < 1" and "recovered" the weight holds.
                let target = if w >= 1.0 {
                    self.weight
                } else {
                    w.clamp(MIN_DEGRADED_WEIGHT, MAX_DEGRADED_WEIGHT)
                };
                let may_change = now_ms - self.weight_changed_ms >= config.weight_change_min_ms;
                ((target - self.weight).abs() > 1e-9 && may_change)
                    .then_some(Transition::Reweight { weight: target })
            }
            ZoneState::Drained => {
                let served = now_ms - self.since_ms >= self.quarantine_ms(config);
                let whole = alive_fraction >= 1.0 - 1e-12;
                (served && whole && self.score >= config.recover_score_at)
                    .then_some(Transition::Admit)
            }
            ZoneState::Probation if dead => Some(Transition::Drain { dead: true }),
            ZoneState::Probation if held(self.below_relapse_since, config.relapse_dwell_ms) => {
                Some(Transition::Drain { dead: false })
            }
            ZoneState::Probation => {
                let step_done = now_ms - self.step_since_ms >= config.probation_step_ms;
                if !(step_done && self.score >= config.recover_score_at) {
                    return None;
                }
                let next = config.probation_ramp[self.step + 1];
                Some(if next >= 1.0 {
                    Transition::Promote
                } else {
                    Transition::Ramp { weight: next }
                })
            }
        }
    }

    /// Applies a transition the balancer allowed.
    pub fn apply(&mut self, config: &ZoneStateConfig, now_ms: i64, t: Transition) {
        match t {
            Transition::Degrade { weight } => {
                self.enter(ZoneState::Degraded, weight, now_ms);
                self.weight_changed_ms = now_ms;
            }
            Transition::Reweight { weight } => {
                assert_eq!(self.state, ZoneState::Degraded, "reweight outside DEGRADED");
                self.weight = weight;
                self.weight_changed_ms = now_ms;
            }
            Transition::Drain { dead } => {
                self.enter(ZoneState::Drained, 0.0, now_ms);
                self.recent_drains = self.recent_drains.saturating_add(1);
                if dead {
                    self.score = 0.0;
                }
            }
            Transition::Recover | Transition::Promote => {
                self.enter(ZoneState::Healthy, 1.0, now_ms);
                self.decay_anchor_ms = now_ms;
            }
            Transition::Admit => {
                self.enter(ZoneState::Probation, config.probation_ramp[0], now_ms);
                self.step = 0;
                self.step_since_ms = now_ms;
            }
            Transition::Ramp { weight } => {
                assert_eq!(self.state, ZoneState::Probation, "ramp outside PROBATION");
                self.step += 1;
                assert_eq!(
                    config.probation_ramp[self.step], weight,
                    "ramp skipped a step"
                );
                self.weight = weight;
                self.step_since_ms = now_ms;
            }
        }
    }

    fn enter(&mut self, state: ZoneState, weight: f64, now_ms: i64) {
        self.state = state;
        self.weight = weight;
        self.since_ms = now_ms;
    }

    /// Checks the tracker's invariants; the error says which one failed.
    pub fn validate(&self, config: &ZoneStateConfig) -> Result<(), String> {
        let ok_weight = match self.state {
            ZoneState::Healthy => self.weight == 1.0,
            ZoneState::Drained => self.weight == 0.0,
            ZoneState::Degraded => {
                (MIN_DEGRADED_WEIGHT..=MAX_DEGRADED_WEIGHT).contains(&self.weight)
            }
            ZoneState::Probation => {
                self.step + 1 < config.probation_ramp.len()
                    && self.weight == config.probation_ramp[self.step]
            }
        };
        if !ok_weight {
            return Err(format!(
                "weight {} does not fit {:?}",
                self.weight, self.state
            ));
        }
        if !(0.0..=1.0).contains(&self.score) {
            return Err(format!("score {} outside [0, 1]", self.score));
        }
        if self.since_ms > self.updated_ms {
            return Err(format!(
                "since {} after last update {}",
                self.since_ms, self.updated_ms
            ));
        }
        Ok(())
    }
}

/// Starts or clears a "condition held since" timer.
fn track(since: &mut Option<i64>, holds: bool, now_ms: i64) {
    match (holds, *since) {
        (true, None) => *since = Some(now_ms),
        (false, _) => *since = None,
        (true, Some(_)) => {}
    }
}

#[cfg(test)]
#[path = "zone_state_tests.rs"]
mod tests;
