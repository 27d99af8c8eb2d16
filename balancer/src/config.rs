//! Balancer configuration: every threshold, window and dwell time of zone-health.md §6, with a
//! `production()` profile (the numbers of §6) and a `test()` profile scaled down ~10× so
//! multi-process tests finish in seconds (SCENARIOS.md "CI profile": heartbeat 200 ms).

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;

/// Worker failure detection (phi accrual plus a hard lease).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// Interval at which workers send heartbeats; the detector's prior before it has samples.
    pub heartbeat_interval_ms: i64,
    /// Inter-arrival samples kept per worker.
    pub window: usize,
    /// Floor on the fitted standard deviation, so a very regular sender is not convicted by
    /// the first slightly late heartbeat.
    pub min_std_ms: f64,
    /// Added to the fitted mean: a pause this long is normal (GC, scheduling, brief blips).
    pub acceptable_pause_ms: i64,
    /// Suspicion level at which a worker is considered dead (φ = 8: ~1e-8 chance of a late
    /// heartbeat).
    pub phi_threshold: f64,
    /// A worker silent for longer than this is dead whatever φ says; also the grace given to
    /// a worker never heard from since registration or since this node became leader.
    pub lease_ms: i64,
}

/// Signal windows and the score formula (zone-health.md §6.2–6.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Window of RTT samples whose p99 is compared across zones.
    pub latency_window_ms: i64,
    /// Latency penalty starts at this ratio of a zone's p99 to the median p99 of the others.
    pub latency_ratio_low: f64,
    /// ... and is full at this ratio.
    pub latency_ratio_high: f64,
    /// No latency penalty while the zone's p99 is at most this (sub-ms ratios are noise).
    pub latency_floor_ms: f64,
    /// Window over which each worker's steal fraction is averaged.
    pub steal_window_ms: i64,
    /// Steal penalty starts above this median steal fraction.
    pub steal_low: f64,
    /// ... and is full at this.
    pub steal_high: f64,
    /// Window over which evaluation outcomes are counted.
    pub work_window_ms: i64,
    /// Fewer evaluations than this in the window: no work penalty (not enough evidence).
    pub work_min_events: u64,
    /// Work penalty starts above this bad-evaluation fraction.
    pub work_low: f64,
    /// ... and is full at this.
    pub work_high: f64,
    /// Smoothing factor when the raw score is below the smoothed one (fast down), per step.
    pub alpha_down: f64,
    /// Smoothing factor when the raw score is above the smoothed one (slow up), per step.
    pub alpha_up: f64,
    /// The step the two alphas are defined for; other tick lengths are converted so the
    /// half-lives do not depend on how often the balancer ticks.
    pub smoothing_step_ms: i64,
    /// `W = min(1, gain × H)`: the over-provisioning dead band (1.4 → no loss above ~72 %).
    pub weight_gain: f64,
}

/// The zone state machine and the global guards (zone-health.md §6.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneStateConfig {
    /// Alive fraction below which a zone is dead (drained at once, no dwell).
    pub dead_alive_below: f64,
    /// Smoothed score below which a zone is drained after `drain_dwell_ms`.
    pub drain_score_below: f64,
    /// Smoothed score at or above which a zone counts as recovered.
    pub recover_score_at: f64,
    /// Score below which a zone on probation relapses (after `relapse_dwell_ms`).
    pub relapse_score_below: f64,
    /// HEALTHY → DEGRADED needs `W < 1` for this long.
    pub degrade_dwell_ms: i64,
    /// DEGRADED → HEALTHY needs the score at `recover_score_at` for this long.
    pub recover_dwell_ms: i64,
    /// → DRAINED (not dead) needs the score below `drain_score_below` for this long.
    pub drain_dwell_ms: i64,
    /// PROBATION → DRAINED needs the score below `relapse_score_below` for this long.
    pub relapse_dwell_ms: i64,
    /// A degraded zone changes its weight quantum at most once per this period.
    pub weight_change_min_ms: i64,
    /// Quarantine after the first drain; doubles with each recent drain.
    pub quarantine_base_ms: i64,
    /// Quarantine cap.
    pub quarantine_max_ms: i64,
    /// One recent drain is forgotten per this much time spent HEALTHY.
    pub drain_memory_ms: i64,
    /// Probation weights, in order; the last must be 1.0 (reaching it means HEALTHY).
    pub probation_ramp: Vec<f64>,
    /// Time at each probation step (with the score held at `recover_score_at`).
    pub probation_step_ms: i64,
    /// Capacity precheck: after a zone loses weight the rest must carry `headroom × load`.
    pub capacity_headroom: f64,
    /// How many shards one unit of worker capacity can own (converts capacity to load).
    pub shards_per_capacity_unit: u32,
}

/// Shard placement (zone-health.md §4, §6.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// Bounded load: no worker above `⌈load_factor × its capacity share × shards⌉` per space.
    pub load_factor: f64,
    /// A degraded zone's live workers lose at most this fraction of a space per period.
    pub degraded_move_fraction: f64,
    /// The rate-limit period.
    pub degraded_move_period_ms: i64,
}

/// The whole balancer configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    /// After becoming leader, collect heartbeats this long before deciding anything.
    pub settle_ms: i64,
    /// A zone record is re-emitted when its score moved at least this much (state, weight
    /// and drain count changes are always emitted).
    pub record_score_delta: f64,
    /// Failure detector.
    pub liveness: LivenessConfig,
    /// Signals and score.
    pub health: HealthConfig,
    /// State machine and guards.
    pub zone: ZoneStateConfig,
    /// Placement.
    pub placement: PlacementConfig,
}

impl BalancerConfig {
    /// The numbers of zone-health.md §6 (1 s heartbeats, 1 s smoothing step).
    pub fn production() -> Self {
        Self {
            settle_ms: 5_000,
            record_score_delta: 0.05,
            liveness: LivenessConfig {
                heartbeat_interval_ms: 1_000,
                window: 200,
                min_std_ms: 100.0,
                acceptable_pause_ms: 2_000,
                phi_threshold: 8.0,
                lease_ms: 5_000,
            },
            health: HealthConfig {
                latency_window_ms: 30_000,
                latency_ratio_low: 3.0,
                latency_ratio_high: 10.0,
                latency_floor_ms: 20.0,
                steal_window_ms: 60_000,
                steal_low: 0.05,
                steal_high: 0.25,
                work_window_ms: 60_000,
                work_min_events: 50,
                work_low: 0.01,
                work_high: 0.10,
                alpha_down: 0.5,
                alpha_up: 0.02,
                smoothing_step_ms: 1_000,
                weight_gain: 1.4,
            },
            zone: ZoneStateConfig {
                dead_alive_below: 0.5,
                drain_score_below: 0.3,
                recover_score_at: 0.85,
                relapse_score_below: 0.72,
                degrade_dwell_ms: 30_000,
                recover_dwell_ms: 120_000,
                drain_dwell_ms: 30_000,
                relapse_dwell_ms: 10_000,
                weight_change_min_ms: 60_000,
                quarantine_base_ms: 120_000,
                quarantine_max_ms: 960_000,
                drain_memory_ms: 3_600_000,
                probation_ramp: vec![0.10, 0.25, 0.50, 1.0],
                probation_step_ms: 60_000,
                capacity_headroom: 1.2,
                shards_per_capacity_unit: 256,
            },
            placement: PlacementConfig {
                load_factor: 1.25,
                degraded_move_fraction: 0.05,
                degraded_move_period_ms: 30_000,
            },
        }
    }

    /// CI profile: 200 ms heartbeats, ~1 s to declare a silent worker dead, every dwell,
    /// window and smoothing step 10× shorter than production (same behaviour, faster clock).
    pub fn test() -> Self {
        let mut c = Self::production();
        c.settle_ms = 1_000;
        c.liveness = LivenessConfig {
            heartbeat_interval_ms: 200,
            window: 200,
            min_std_ms: 50.0,
            acceptable_pause_ms: 400,
            phi_threshold: 8.0,
            lease_ms: 1_000,
        };
        let h = &mut c.health;
        h.latency_window_ms = 3_000;
        h.steal_window_ms = 6_000;
        h.work_window_ms = 6_000;
        h.work_min_events = 20;
        h.smoothing_step_ms = 100;
        let z = &mut c.zone;
        z.degrade_dwell_ms = 3_000;
        z.recover_dwell_ms = 12_000;
        z.drain_dwell_ms = 3_000;
        z.relapse_dwell_ms = 1_000;
        z.weight_change_min_ms = 6_000;
        z.quarantine_base_ms = 12_000;
        z.quarantine_max_ms = 96_000;
        z.drain_memory_ms = 360_000;
        z.probation_step_ms = 6_000;
        c.placement.degraded_move_period_ms = 3_000;
        c
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), BalancerError> {
        let l = &self.liveness;
        positive_ms("settle_ms", self.settle_ms)?;
        unit("record_score_delta", self.record_score_delta)?;
        positive_ms("liveness.heartbeat_interval_ms", l.heartbeat_interval_ms)?;
        check(
            "liveness.window",
            l.window >= 2,
            "must be at least 2 samples",
        )?;
        check("liveness.min_std_ms", l.min_std_ms > 0.0, "must be > 0")?;
        check(
            "liveness.acceptable_pause_ms",
            l.acceptable_pause_ms >= 0,
            "must be >= 0",
        )?;
        check(
            "liveness.phi_threshold",
            l.phi_threshold > 0.0,
            "must be > 0 (8 is usual)",
        )?;
        check(
            "liveness.lease_ms",
            l.lease_ms > l.heartbeat_interval_ms,
            "must exceed heartbeat_interval_ms",
        )?;
        self.health.validate()?;
        self.zone.validate()?;
        self.placement.validate()
    }
}

impl HealthConfig {
    fn validate(&self) -> Result<(), BalancerError> {
        let h = self;
        positive_ms("health.latency_window_ms", h.latency_window_ms)?;
        positive_ms("health.steal_window_ms", h.steal_window_ms)?;
        positive_ms("health.work_window_ms", h.work_window_ms)?;
        positive_ms("health.smoothing_step_ms", h.smoothing_step_ms)?;
        ramp(
            "health.latency_ratio_high",
            h.latency_ratio_low,
            h.latency_ratio_high,
        )?;
        ramp("health.steal_high", h.steal_low, h.steal_high)?;
        ramp("health.work_high", h.work_low, h.work_high)?;
        check(
            "health.latency_floor_ms",
            h.latency_floor_ms >= 0.0,
            "must be >= 0",
        )?;
        open_unit("health.alpha_down", h.alpha_down)?;
        open_unit("health.alpha_up", h.alpha_up)?;
        check("health.weight_gain", h.weight_gain >= 1.0, "must be >= 1")?;
        Ok(())
    }
}

impl ZoneStateConfig {
    fn validate(&self) -> Result<(), BalancerError> {
        let z = self;
        unit("zone.dead_alive_below", z.dead_alive_below)?;
        unit("zone.drain_score_below", z.drain_score_below)?;
        unit("zone.recover_score_at", z.recover_score_at)?;
        unit("zone.relapse_score_below", z.relapse_score_below)?;
        check(
            "zone.recover_score_at",
            z.drain_score_below < z.relapse_score_below
                && z.relapse_score_below < z.recover_score_at,
            "need drain_score_below < relapse_score_below < recover_score_at (hysteresis)",
        )?;
        for (f, v) in [
            ("zone.degrade_dwell_ms", z.degrade_dwell_ms),
            ("zone.recover_dwell_ms", z.recover_dwell_ms),
            ("zone.drain_dwell_ms", z.drain_dwell_ms),
            ("zone.relapse_dwell_ms", z.relapse_dwell_ms),
            ("zone.weight_change_min_ms", z.weight_change_min_ms),
        ] {
            check(f, v >= 0, "must be >= 0")?;
        }
        positive_ms("zone.quarantine_base_ms", z.quarantine_base_ms)?;
        check(
            "zone.quarantine_max_ms",
            z.quarantine_max_ms >= z.quarantine_base_ms,
            "must be >= quarantine_base_ms",
        )?;
        positive_ms("zone.drain_memory_ms", z.drain_memory_ms)?;
        positive_ms("zone.probation_step_ms", z.probation_step_ms)?;
        let ramp_ok = !z.probation_ramp.is_empty()
            && z.probation_ramp.windows(2).all(|w| w[0] < w[1])
            && z.probation_ramp.first().is_some_and(|w| *w > 0.0)
            && z.probation_ramp.last() == Some(&1.0);
        check(
            "zone.probation_ramp",
            ramp_ok,
            "must be strictly increasing weights in (0, 1] ending at 1.0",
        )?;
        check(
            "zone.capacity_headroom",
            z.capacity_headroom >= 1.0,
            "must be >= 1",
        )?;
        check(
            "zone.shards_per_capacity_unit",
            z.shards_per_capacity_unit > 0,
            "must be > 0",
        )?;
        Ok(())
    }
}

impl PlacementConfig {
    fn validate(&self) -> Result<(), BalancerError> {
        let p = self;
        check(
            "placement.load_factor",
            p.load_factor >= 1.0,
            "must be >= 1 (1.25 is usual)",
        )?;
        check(
            "placement.degraded_move_fraction",
            p.degraded_move_fraction > 0.0 && p.degraded_move_fraction <= 1.0,
            "must be in (0, 1]",
        )?;
        positive_ms(
            "placement.degraded_move_period_ms",
            p.degraded_move_period_ms,
        )
    }
}

fn check(field: &'static str, ok: bool, reason: &str) -> Result<(), BalancerError> {
    if ok {
        Ok(())
    } else {
        Err(BalancerError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        })
    }
}

fn positive_ms(field: &'static str, v: i64) -> Result<(), BalancerError> {
    check(field, v > 0, "must be a positive number of milliseconds")
}

fn unit(field: &'static str, v: f64) -> Result<(), BalancerError> {
    check(field, (0.0..=1.0).contains(&v), "must be in [0, 1]")
}

fn open_unit(field: &'static str, v: f64) -> Result<(), BalancerError> {
    check(field, v > 0.0 && v <= 1.0, "must be in (0, 1]")
}

fn ramp(field: &'static str, low: f64, high: f64) -> Result<(), BalancerError> {
    check(
        field,
        low >= 0.0 && high > low,
        "must be greater than its `_low` partner (>= 0)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_validate() {
        BalancerConfig::production().validate().unwrap();
        BalancerConfig::test().validate().unwrap();
    }

    #[test]
    fn bad_field_is_named() {
        let mut c = BalancerConfig::test();
        c.liveness.lease_ms = 100;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("liveness.lease_ms"), "{err}");
        let mut c = BalancerConfig::production();
        c.zone.probation_ramp = vec![0.5, 0.25, 1.0];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("zone.probation_ramp")
        );
    }
}
