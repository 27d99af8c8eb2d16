//! The zone health score of zone-health.md §6.3: the raw score from the penalties, its
//! asymmetric (fast-down, slow-up) smoothing, and the quantised placement weight.

use crate::config::HealthConfig;
use crate::signals::Penalties;

/// Weight quanta a degraded zone may have (zone-health.md §6.3).
pub const QUANTA: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// H_raw = A × (1 − 0.5·P_lat) × (1 − 0.5·P_steal) × (1 − 0.8·P_work).
pub fn raw_score(p: &Penalties) -> f64 {
    let h =
        p.alive_fraction * (1.0 - 0.5 * p.latency) * (1.0 - 0.5 * p.steal) * (1.0 - 0.8 * p.work);
    debug_assert!((0.0..=1.0).contains(&h), "raw score {h} from {p:?}");
    h.clamp(0.0, 1.0)
}

/// One smoothing step of `dt_ms`: fast down, slow up. The per-step alphas of the config are
/// converted to `1 − (1 − α)^(dt/step)`, so ticking twice as often gives the same curve.
pub fn smooth(config: &HealthConfig, smoothed: f64, raw: f64, dt_ms: i64) -> f64 {
    if dt_ms <= 0 {
        return smoothed;
    }
    let alpha = if raw < smoothed {
        config.alpha_down
    } else {
        config.alpha_up
    };
    let steps = dt_ms as f64 / config.smoothing_step_ms as f64;
    let a = 1.0 - (1.0 - alpha).powf(steps);
    let next = smoothed + a * (raw - smoothed);
    debug_assert!(next.is_finite());
    next.clamp(0.0, 1.0)
}

/// W = min(1, gain × H), rounded down to a quantum: a zone above ~72 % (gain 1.4) keeps
/// full weight.
pub fn quantised_weight(config: &HealthConfig, smoothed: f64) -> f64 {
    let w = (config.weight_gain * smoothed).min(1.0);
    QUANTA
        .iter()
        .rev()
        .copied()
        .find(|q| *q <= w + 1e-12)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BalancerConfig;

    #[test]
    fn raw_score_matches_the_formula() {
        let p = Penalties {
            alive_fraction: 1.0,
            latency: 1.0,
            steal: 0.0,
            work: 0.5,
            ..Default::default()
        };
        assert!((raw_score(&p) - 0.5 * 0.6).abs() < 1e-12);
        assert_eq!(
            raw_score(&Penalties {
                alive_fraction: 1.0,
                ..Default::default()
            }),
            1.0
        );
    }

    #[test]
    fn smoothing_is_fast_down_slow_up() {
        let c = BalancerConfig::production().health;
        assert!((smooth(&c, 1.0, 0.0, 1_000) - 0.5).abs() < 1e-12);
        assert!((smooth(&c, 0.0, 1.0, 1_000) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn smoothing_does_not_depend_on_tick_length() {
        let c = BalancerConfig::production().health;
        let (mut fine, mut coarse) = (0.1, 0.1);
        for _ in 0..50 {
            fine = smooth(&c, fine, 1.0, 200);
        }
        for _ in 0..10 {
            coarse = smooth(&c, coarse, 1.0, 1_000);
        }
        assert!((fine - coarse).abs() < 1e-9, "{fine} vs {coarse}");
    }

    #[test]
    fn weight_is_quantised_with_a_dead_band() {
        let c = BalancerConfig::production().health;
        assert_eq!(quantised_weight(&c, 0.75), 1.0);
        assert_eq!(quantised_weight(&c, 0.70), 0.75);
        assert_eq!(quantised_weight(&c, 0.40), 0.5);
        assert_eq!(quantised_weight(&c, 0.10), 0.0);
    }
}
