//! Functions over range vectors (`rate`, `*_over_time`, …), one series at a time.

use super::error::QueryError;
use super::stats::{RunningMean, kahan_inc, linear_regression, quantile};
use super::store::Point;

/// What a range function sees besides the samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Evaluation time (ms): the intercept time of `predict_linear`.
    pub(crate) ts: i64,
    /// Start and end of the selected range (ms), after `@` and `offset`.
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl Window {
    fn range_seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1e3
    }
}

/// Whether `name` is a range function this engine implements.
pub(crate) fn is_supported(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "present_over_time"
            | "changes"
            | "resets"
            | "holt_winters"
            | "double_exponential_smoothing"
    )
}

/// Applies range function `name` to the (non-empty, stale-free) `points` of one series.
/// `args` holds the scalar arguments in call order, without the range vector.
/// `Ok(None)` means the series produces no output at this step.
pub(crate) fn apply(
    name: &str,
    points: &[Point],
    w: Window,
    args: &[f64],
) -> Result<Option<f64>, QueryError> {
    let values = || points.iter().map(|p| p.v);
    let arg = |i: usize| args.get(i).copied().unwrap_or(f64::NAN);
    let out = match name {
        "rate" => extrapolated_rate(points, w, true, true),
        "increase" => extrapolated_rate(points, w, true, false),
        "delta" => extrapolated_rate(points, w, false, false),
        "irate" => instant_value(points, true),
        "idelta" => instant_value(points, false),
        "deriv" => regression(points, None).map(|(slope, _)| slope),
        "predict_linear" => {
            regression(points, Some(w.ts)).map(|(slope, icpt)| slope * arg(0) + icpt)
        }
        "avg_over_time" => {
            let mut it = values();
            it.next().map(|first| {
                let mut m = RunningMean::first(first);
                it.for_each(|v| m.add(v));
                m.mean()
            })
        }
        "min_over_time" => values().reduce(|m, v| if v < m || m.is_nan() { v } else { m }),
        "max_over_time" => values().reduce(|m, v| if v > m || m.is_nan() { v } else { m }),
        "sum_over_time" => Some(values().sum()),
        "count_over_time" => Some(points.len() as f64),
        "quantile_over_time" => Some(quantile(arg(0), &mut values().collect::<Vec<_>>())),
        "stddev_over_time" => Some(variance(points).sqrt()),
        "stdvar_over_time" => Some(variance(points)),
        "last_over_time" => points.last().map(|p| p.v),
        "present_over_time" => Some(1.0),
        "changes" => Some(changes(points)),
        "resets" => Some(points.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
        "holt_winters" | "double_exponential_smoothing" => holt_winters(points, arg(0), arg(1))?,
        other => return Err(QueryError::Unsupported(other.to_string())),
    };
    Ok(out)
}

/// Prometheus's `extrapolatedRate` (2.x): the increase between the first and last sample,
/// corrected for counter resets, extrapolated towards the window edges.
fn extrapolated_rate(points: &[Point], w: Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = 0.0;
        for p in points {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let mut to_start = (first.t - w.start) as f64 / 1e3;
    let to_end = (w.end - last.t) as f64 / 1e3;
    let sampled = (last.t - first.t) as f64 / 1e3;
    let avg_step = sampled / (points.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // Do not extrapolate below the counter's zero point.
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= w.range_seconds();
    }
    Some(result * factor)
}

/// `irate` / `idelta`: the last two samples.
fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last = points[points.len() - 1];
    let prev = points[points.len() - 2];
    let mut result = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1e3;
    }
    Some(result)
}

/// `deriv` (intercept at the first sample) and `predict_linear` (intercept at `at`).
fn regression(points: &[Point], at: Option<i64>) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let pts: Vec<(i64, f64)> = points.iter().map(|p| (p.t, p.v)).collect();
    Some(linear_regression(&pts, at.unwrap_or(points[0].t)))
}

/// Population variance with Kahan-compensated Welford updates (Prometheus 2.x).
fn variance(points: &[Point]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn changes(points: &[Point]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
        .count() as f64
}

/// `holt_winters` (2.x) / `double_exponential_smoothing` (3.x): the same algorithm.
fn holt_winters(points: &[Point], sf: f64, tf: f64) -> Result<Option<f64>, QueryError> {
    if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
        return Err(QueryError::eval(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
        return Err(QueryError::eval(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if points.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, points[0].v);
    let mut b = points[1].v - points[0].v;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(vals: &[(i64, f64)]) -> Vec<Point> {
        vals.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn rate_of_steady_counter_over_full_window() {
        // 0,10,20,...,60 every 10s over a 60s window [0,60s].
        let p = pts(&(0..=6)
            .map(|i| (i * 10_000, (i * 10) as f64))
            .collect::<Vec<_>>());
        let w = Window {
            ts: 60_000,
            start: 0,
            end: 60_000,
        };
        let r = apply("rate", &p, w, &[]).unwrap().unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        let inc = apply("increase", &p, w, &[]).unwrap().unwrap();
        assert!((inc - 60.0).abs() < 1e-12);
    }

    #[test]
    fn counter_reset_is_compensated() {
        let p = pts(&[(0, 5.0), (10_000, 10.0), (20_000, 2.0), (30_000, 7.0)]);
        let w = Window {
            ts: 30_000,
            start: 0,
            end: 30_000,
        };
        // Raw increase 2 + reset compensation 10 = 12 over the sampled 30s.
        assert_eq!(apply("increase", &p, w, &[]).unwrap(), Some(12.0));
        assert_eq!(apply("resets", &p, w, &[]).unwrap(), Some(1.0));
        assert_eq!(apply("irate", &p, w, &[]).unwrap(), Some(0.5));
    }

    #[test]
    fn single_point_gives_no_rate() {
        let p = pts(&[(0, 1.0)]);
        let w = Window {
            ts: 0,
            start: -60_000,
            end: 0,
        };
        assert_eq!(apply("rate", &p, w, &[]).unwrap(), None);
        assert_eq!(apply("count_over_time", &p, w, &[]).unwrap(), Some(1.0));
    }

    #[test]
    fn holt_winters_rejects_bad_factors() {
        let p = pts(&[(0, 1.0), (1, 2.0)]);
        let w = Window {
            ts: 0,
            start: 0,
            end: 1,
        };
        assert!(apply("holt_winters", &p, w, &[1.5, 0.5]).is_err());
        assert!(apply("holt_winters", &p, w, &[0.5, 0.5]).unwrap().is_some());
    }
}
