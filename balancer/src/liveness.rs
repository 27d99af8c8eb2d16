//! Per-worker failure detection: phi accrual (Hayashibara et al.; Akka's variant with an
//! acceptable pause and a minimum standard deviation) plus a hard lease.
//!
//! Fed only with heartbeat arrival times (the leader's clock); answers "is this worker alive at
//! `now`?". A worker never heard from is `Unknown` for one lease after its baseline (its
//! registration with the core or the moment this node became leader), then `Dead`.

use std::collections::VecDeque;

use crate::config::LivenessConfig;

/// What the detector concludes about one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Liveness {
    /// Heard from, φ below the threshold and within the lease.
    Alive,
    /// Not heard from since the baseline, but the lease since the baseline has not run out.
    /// Counts as alive for zone health (no evidence against it) but gets no new shards.
    Unknown,
    /// φ at or above the threshold, or silent for longer than the lease.
    Dead,
}

/// Heartbeat history of one worker.
#[derive(Clone, Debug)]
pub struct Detector {
    /// Time since which silence is counted when nothing has arrived yet.
    baseline_ms: i64,
    /// Last heartbeat arrival, if any since the baseline.
    last_ms: Option<i64>,
    /// Recent inter-arrival times, oldest first; at most `config.window`.
    intervals: VecDeque<f64>,
}

impl Detector {
    /// A detector that has heard nothing since `baseline_ms`.
    pub fn new(baseline_ms: i64) -> Self {
        Self {
            baseline_ms,
            last_ms: None,
            intervals: VecDeque::new(),
        }
    }

    /// Forgets the history (a new leader does not trust another node's arrival times, and
    /// its own may be stale); silence is counted from `baseline_ms` again.
    pub fn reset(&mut self, baseline_ms: i64) {
        *self = Self::new(baseline_ms);
    }

    /// Records a heartbeat that arrived at `now_ms`. An arrival earlier than the previous one
    /// (a caller clock glitch) is treated as arriving at the previous time.
    pub fn heartbeat(&mut self, config: &LivenessConfig, now_ms: i64) {
        if let Some(last) = self.last_ms {
            let now_ms = now_ms.max(last);
            if self.intervals.len() == config.window {
                self.intervals.pop_front();
            }
            self.intervals.push_back((now_ms - last) as f64);
            self.last_ms = Some(now_ms);
        } else {
            self.last_ms = Some(now_ms.max(self.baseline_ms));
        }
        debug_assert!(self.intervals.len() <= config.window);
    }

    /// Last heartbeat arrival, if any since the baseline.
    pub fn last_heartbeat_ms(&self) -> Option<i64> {
        self.last_ms
    }

    /// The suspicion level φ at `now_ms` (0 when nothing has been heard yet).
    pub fn phi(&self, config: &LivenessConfig, now_ms: i64) -> f64 {
        let Some(last) = self.last_ms else {
            return 0.0;
        };
        let elapsed = (now_ms - last).max(0) as f64;
        let (mean, std) = self.fit(config);
        phi(elapsed, mean + config.acceptable_pause_ms as f64, std)
    }

    /// Liveness at `now_ms`.
    pub fn liveness(&self, config: &LivenessConfig, now_ms: i64) -> Liveness {
        match self.last_ms {
            None if now_ms - self.baseline_ms > config.lease_ms => Liveness::Dead,
            None => Liveness::Unknown,
            Some(last) if now_ms - last > config.lease_ms => Liveness::Dead,
            Some(_) if self.phi(config, now_ms) >= config.phi_threshold => Liveness::Dead,
            Some(_) => Liveness::Alive,
        }
    }

    /// Mean and standard deviation of the inter-arrival times; with no samples yet, the
    /// configured interval with a quarter of it as deviation (Akka's first-heartbeat prior).
    fn fit(&self, config: &LivenessConfig) -> (f64, f64) {
        let n = self.intervals.len();
        if n == 0 {
            let mean = config.heartbeat_interval_ms as f64;
            return (mean, (mean / 4.0).max(config.min_std_ms));
        }
        let mean = self.intervals.iter().sum::<f64>() / n as f64;
        let var = self
            .intervals
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        (mean, var.sqrt().max(config.min_std_ms))
    }
}

/// φ = −log10(1 − F(elapsed)) for a normal distribution, with Akka's logistic approximation of
/// the CDF (accurate to ~1e-4 and numerically safe in the tail).
fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    debug_assert!(std > 0.0);
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p = if elapsed > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    // p underflows to 0 far in the tail; cap φ instead of returning infinity.
    -(p.max(1e-300)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BalancerConfig;

    fn fed(config: &LivenessConfig, every_ms: i64, count: i64) -> Detector {
        let mut d = Detector::new(0);
        for i in 0..count {
            d.heartbeat(config, i * every_ms);
        }
        d
    }

    /// First time (ms after the last heartbeat, 100 ms resolution) the detector says Dead.
    fn detection_ms(config: &LivenessConfig, d: &Detector) -> i64 {
        let last = d.last_heartbeat_ms().unwrap();
        (0..)
            .map(|k| k * 100)
            .find(|dt| d.liveness(config, last + dt) == Liveness::Dead)
            .unwrap()
    }

    #[test]
    fn production_detects_silence_in_3_to_5_s() {
        let c = BalancerConfig::production().liveness;
        let d = fed(&c, 1_000, 60);
        let t = detection_ms(&c, &d);
        assert!((3_000..=5_000).contains(&t), "detected after {t} ms");
        assert_eq!(
            d.liveness(&c, d.last_heartbeat_ms().unwrap() + 1_500),
            Liveness::Alive
        );
    }

    #[test]
    fn test_profile_detects_within_a_second() {
        let c = BalancerConfig::test().liveness;
        let d = fed(&c, 200, 30);
        let t = detection_ms(&c, &d);
        assert!((500..=1_000).contains(&t), "detected after {t} ms");
    }

    #[test]
    fn lease_caps_an_irregular_sender() {
        // Very irregular arrivals widen the fit so φ alone would wait long; the lease does not.
        let c = BalancerConfig::production().liveness;
        let mut d = Detector::new(0);
        let mut t = 0;
        for i in 0..50 {
            t += if i % 2 == 0 { 200 } else { 4_500 };
            d.heartbeat(&c, t);
        }
        assert!(d.phi(&c, t + 5_001) < c.phi_threshold);
        assert_eq!(d.liveness(&c, t + 5_001), Liveness::Dead);
    }

    #[test]
    fn unheard_worker_is_unknown_then_dead() {
        let c = BalancerConfig::test().liveness;
        let d = Detector::new(10_000);
        assert_eq!(d.liveness(&c, 10_500), Liveness::Unknown);
        assert_eq!(d.liveness(&c, 11_001), Liveness::Dead);
    }

    #[test]
    fn phi_grows_with_silence_and_window_is_bounded() {
        let c = BalancerConfig::test().liveness;
        let d = fed(&c, 200, 500);
        assert_eq!(d.intervals.len(), c.window);
        let last = d.last_heartbeat_ms().unwrap();
        let phis: Vec<f64> = (0..10).map(|k| d.phi(&c, last + k * 100)).collect();
        assert!(phis.windows(2).all(|w| w[0] <= w[1]), "{phis:?}");
        assert!(phis[0] < 1.0);
    }
}
