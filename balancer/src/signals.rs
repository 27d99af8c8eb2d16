//! Per-worker signal windows and their per-zone aggregation into the normalised penalties of
//! zone-health.md §6.2: alive fraction A_z, latency (P_lat), steal (P_steal), work (P_work).

use std::collections::VecDeque;

use crate::config::HealthConfig;
use crate::liveness::Liveness;

/// Samples kept per worker at most, whatever the windows say (a limit on memory if a worker
/// heartbeats far faster than configured).
const MAX_SAMPLES_PER_WORKER: usize = 4_096;

/// What a worker reports with each heartbeat. Counts are deltas since its previous report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeartbeatReport {
    /// CPU steal fraction in [0, 1] since the previous report (`/proc/stat` delta); `None`
    /// when the worker cannot measure it.
    pub steal: Option<f64>,
    /// Evaluations finished since the previous report.
    pub evals: u64,
    /// Of those, evaluations that failed.
    pub failed_evals: u64,
    /// Of those, evaluations that finished after half their interval.
    pub late_evals: u64,
    /// RTT of the balancer's probe to this worker (measured by the adapter), ms.
    pub probe_rtt_ms: Option<f64>,
    /// The worker's measured RTT to its datasource, ms.
    pub datasource_rtt_ms: Option<f64>,
    /// The worker's measured RTT to the store (Raft leader), ms.
    pub store_rtt_ms: Option<f64>,
}

impl HeartbeatReport {
    /// Why the report is malformed, if it is.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = self.steal
            && !(0.0..=1.0).contains(&s)
        {
            return Err(format!("steal must be in [0, 1], got {s}"));
        }
        for (name, v) in self.rtts() {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!(
                    "{name} must be a finite non-negative number, got {v}"
                ));
            }
        }
        Ok(())
    }

    fn rtts(&self) -> [(&'static str, Option<f64>); 3] {
        [
            ("probe_rtt_ms", self.probe_rtt_ms),
            ("datasource_rtt_ms", self.datasource_rtt_ms),
            ("store_rtt_ms", self.store_rtt_ms),
        ]
    }

    /// Bad evaluations: failed or late, never more than the evaluations themselves.
    fn bad(&self) -> u64 {
        (self.failed_evals.saturating_add(self.late_evals)).min(self.evals)
    }
}

/// The reports of one worker over the longest window.
#[derive(Clone, Debug, Default)]
pub struct WorkerSignals {
    samples: VecDeque<(i64, HeartbeatReport)>,
}

impl WorkerSignals {
    /// Records a report received at `now_ms` and drops what no window needs any more.
    pub fn record(&mut self, config: &HealthConfig, now_ms: i64, report: HeartbeatReport) {
        self.samples.push_back((now_ms, report));
        let keep = config
            .latency_window_ms
            .max(config.steal_window_ms)
            .max(config.work_window_ms);
        while let Some((t, _)) = self.samples.front() {
            if now_ms - t > keep || self.samples.len() > MAX_SAMPLES_PER_WORKER {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    fn within(&self, now_ms: i64, window_ms: i64) -> impl Iterator<Item = &HeartbeatReport> {
        self.samples
            .iter()
            .filter(move |(t, _)| now_ms - t <= window_ms && *t <= now_ms)
            .map(|(_, r)| r)
    }

    /// Mean steal over the window, if any sample has one.
    fn mean_steal(&self, config: &HealthConfig, now_ms: i64) -> Option<f64> {
        let v: Vec<f64> = self
            .within(now_ms, config.steal_window_ms)
            .filter_map(|r| r.steal)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// One zone's raw measurements, before comparison with the other zones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZoneSample {
    /// Fraction of the zone's workers not judged dead (1 for a zone without workers).
    pub alive_fraction: f64,
    /// p99 of each RTT kind (probe, datasource, store) over the latency window.
    pub p99_ms: [Option<f64>; 3],
    /// Median over workers of each worker's mean steal.
    pub steal: Option<f64>,
    /// Evaluations and bad evaluations over the work window.
    pub evals: u64,
    /// Bad evaluations over the work window.
    pub bad_evals: u64,
}

/// Normalised penalties of one zone, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Penalties {
    /// A_z.
    pub alive_fraction: f64,
    /// P_lat.
    pub latency: f64,
    /// P_steal.
    pub steal: f64,
    /// P_work.
    pub work: f64,
    /// The zone's p99 of each RTT kind (probe, datasource, store) behind P_lat, ms: why a
    /// zone looks slow, for operators.
    pub rtt_p99_ms: [Option<f64>; 3],
}

/// Aggregates the workers of one zone.
pub fn sample_zone(
    config: &HealthConfig,
    now_ms: i64,
    workers: &[(&WorkerSignals, Liveness)],
) -> ZoneSample {
    let alive = workers.iter().filter(|(_, l)| *l != Liveness::Dead).count();
    let alive_fraction = if workers.is_empty() {
        1.0
    } else {
        alive as f64 / workers.len() as f64
    };
    let mut p99_ms = [None; 3];
    for (kind, slot) in p99_ms.iter_mut().enumerate() {
        let mut v: Vec<f64> = workers
            .iter()
            .flat_map(|(w, _)| w.within(now_ms, config.latency_window_ms))
            .filter_map(|r| r.rtts()[kind].1)
            .collect();
        *slot = quantile(&mut v, 0.99);
    }
    let mut steals: Vec<f64> = workers
        .iter()
        .filter_map(|(w, _)| w.mean_steal(config, now_ms))
        .collect();
    let steal = quantile(&mut steals, 0.5);
    let (mut evals, mut bad_evals) = (0u64, 0u64);
    for r in workers
        .iter()
        .flat_map(|(w, _)| w.within(now_ms, config.work_window_ms))
    {
        evals = evals.saturating_add(r.evals);
        bad_evals = bad_evals.saturating_add(r.bad());
    }
    ZoneSample {
        alive_fraction,
        p99_ms,
        steal,
        evals,
        bad_evals,
    }
}

/// RTT kinds P_lat compares across zones: the balancer's probe and the workers' datasource
/// round trip. The workers' store round trip (a commit: the leader's quorum round, fsync and
/// batching on top of the zone's own link, which the probe already measures on the same
/// path) is reported but not scored: it is the leader's latency more than the zone's, and on
/// a busy host its p99 wanders past the floor and 3× the other zones' without any fault.
/// zone-health.md §6.2 scores probe RTT and Raft append RTT for the same reason.
const SCORED_RTT_KINDS: [usize; 2] = [0, 1];

/// Penalties of `zone` given the samples of every other zone (for the latency ratio).
pub fn penalties(config: &HealthConfig, zone: &ZoneSample, others: &[&ZoneSample]) -> Penalties {
    let mut latency: f64 = 0.0;
    for kind in SCORED_RTT_KINDS {
        let Some(mine) = zone.p99_ms[kind] else {
            continue;
        };
        let mut theirs: Vec<f64> = others.iter().filter_map(|o| o.p99_ms[kind]).collect();
        let Some(median) = quantile(&mut theirs, 0.5) else {
            continue;
        };
        if mine <= config.latency_floor_ms {
            continue;
        }
        // Sub-millisecond medians would make any ratio huge; 1 ms is the resolution we trust.
        let ratio = mine / median.max(1.0);
        latency = latency.max(ramp(
            ratio,
            config.latency_ratio_low,
            config.latency_ratio_high,
        ));
    }
    let steal = zone
        .steal
        .map_or(0.0, |s| ramp(s, config.steal_low, config.steal_high));
    let work = if zone.evals < config.work_min_events || zone.evals == 0 {
        0.0
    } else {
        let e = zone.bad_evals as f64 / zone.evals as f64;
        ramp(e, config.work_low, config.work_high)
    };
    Penalties {
        alive_fraction: zone.alive_fraction,
        latency,
        steal,
        work,
        rtt_p99_ms: zone.p99_ms,
    }
}

/// clamp((x − low) / (high − low), 0, 1).
fn ramp(x: f64, low: f64, high: f64) -> f64 {
    ((x - low) / (high - low)).clamp(0.0, 1.0)
}

/// Nearest-rank quantile; sorts `v`.
fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BalancerConfig;

    fn rtt(ms: f64) -> HeartbeatReport {
        HeartbeatReport {
            probe_rtt_ms: Some(ms),
            ..Default::default()
        }
    }

    fn zone_with(config: &HealthConfig, reports: &[HeartbeatReport]) -> ZoneSample {
        let mut w = WorkerSignals::default();
        for (i, r) in reports.iter().enumerate() {
            w.record(config, i as i64 * 100, r.clone());
        }
        sample_zone(config, reports.len() as i64 * 100, &[(&w, Liveness::Alive)])
    }

    #[test]
    fn latency_penalty_follows_the_ratio_above_the_floor() {
        let c = BalancerConfig::test().health;
        let base = zone_with(&c, &vec![rtt(10.0); 20]);
        let slow = zone_with(&c, &vec![rtt(65.0); 20]); // ratio 6.5 → (6.5-3)/7 = 0.5
        let p = penalties(&c, &slow, &[&base, &base]);
        assert!((p.latency - 0.5).abs() < 1e-9, "{p:?}");
        // Same ratio below the 20 ms floor: no penalty.
        let tiny = zone_with(&c, &vec![rtt(1.0); 20]);
        let fast = zone_with(&c, &vec![rtt(15.0); 20]);
        assert_eq!(penalties(&c, &fast, &[&tiny]).latency, 0.0);
        // No other zone: nothing to compare with.
        assert_eq!(penalties(&c, &slow, &[]).latency, 0.0);
    }

    #[test]
    fn a_slow_store_round_trip_alone_is_reported_but_not_scored() {
        let c = BalancerConfig::test().health;
        let store = |ms| HeartbeatReport {
            probe_rtt_ms: Some(2.0),
            store_rtt_ms: Some(ms),
            ..Default::default()
        };
        let base = zone_with(&c, &vec![store(25.0); 20]);
        let slow = zone_with(&c, &vec![store(250.0); 20]);
        let p = penalties(&c, &slow, &[&base, &base]);
        assert_eq!(p.latency, 0.0, "{p:?}");
        assert_eq!(p.rtt_p99_ms[2], Some(250.0));
    }

    #[test]
    fn steal_uses_the_median_worker() {
        let c = BalancerConfig::test().health;
        let mut ws = vec![WorkerSignals::default(); 3];
        for (w, s) in ws.iter_mut().zip([0.0, 0.15, 0.9]) {
            let r = HeartbeatReport {
                steal: Some(s),
                ..Default::default()
            };
            w.record(&c, 0, r);
        }
        let refs: Vec<_> = ws.iter().map(|w| (w, Liveness::Alive)).collect();
        let z = sample_zone(&c, 10, &refs);
        assert_eq!(z.steal, Some(0.15));
        assert!((penalties(&c, &z, &[]).steal - 0.5).abs() < 1e-9);
    }

    #[test]
    fn work_penalty_needs_enough_events() {
        let c = BalancerConfig::test().health;
        let r = |evals, failed| HeartbeatReport {
            evals,
            failed_evals: failed,
            late_evals: 0,
            ..Default::default()
        };
        let few = zone_with(&c, &[r(10, 5)]);
        assert_eq!(penalties(&c, &few, &[]).work, 0.0);
        let many = zone_with(&c, &[r(100, 20), r(100, 0)]); // 10 % bad → full penalty
        assert_eq!(penalties(&c, &many, &[]).work, 1.0);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let c = BalancerConfig::test().health;
        let mut w = WorkerSignals::default();
        w.record(&c, 0, rtt(500.0));
        w.record(&c, 10_000, rtt(5.0));
        let z = sample_zone(&c, 10_000, &[(&w, Liveness::Alive)]);
        assert_eq!(z.p99_ms[0], Some(5.0));
        assert_eq!(w.samples.len(), 1);
    }

    #[test]
    fn alive_fraction_counts_unknown_as_alive() {
        let c = BalancerConfig::test().health;
        let w = WorkerSignals::default();
        let z = sample_zone(
            &c,
            0,
            &[
                (&w, Liveness::Alive),
                (&w, Liveness::Unknown),
                (&w, Liveness::Dead),
                (&w, Liveness::Dead),
            ],
        );
        assert_eq!(z.alive_fraction, 0.5);
    }
}
