//! Aggregation operators (`sum by (…)`, `topk`, `count_values`, …), mirroring Prometheus
//! 2.x's `aggregation` including its NaN rules and `topk`/`bottomk` heap behaviour.

use std::collections::HashMap;
use std::hash::RandomState;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::error::QueryError;
use super::eval::{Evaluator, Val};
use super::labels::{Labels, METRIC_NAME, is_valid_label_name};
use super::stats::{RunningMean, quantile};
use super::value::Sample;

/// One group's running state.
struct Group {
    labels: Labels,
    value: f64,
    mean: RunningMean,
    /// Welford's running mean for `stddev`/`stdvar`.
    welford_mean: f64,
    count: f64,
    /// `topk`/`bottomk` heap, or all values for `quantile`.
    heap: Vec<Sample>,
}

pub(crate) fn eval_aggregate(
    ev: &Evaluator<'_>,
    agg: &AggregateExpr,
    ts: i64,
) -> Result<Val, QueryError> {
    let op = agg.op.id();
    let param = match &agg.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = ev.eval_vector(&agg.expr, ts)?;
    let (without, mut grouping): (bool, Vec<String>) = match &agg.modifier {
        None => (false, Vec::new()),
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
    };
    let scalar_param = || match &param {
        Some(Val::Scalar(v)) => Ok(*v),
        _ => Err(QueryError::eval(format!(
            "{} expects a scalar parameter",
            agg.op
        ))),
    };
    let mut k = 0usize;
    let mut q = 0.0;
    let mut value_label = String::new();
    match op {
        T_TOPK | T_BOTTOMK => {
            let f = scalar_param()?;
            if !(f <= i64::MAX as f64 && f >= i64::MIN as f64) {
                return Err(QueryError::eval(format!(
                    "Scalar value {f} overflows int64"
                )));
            }
            let ki = f as i64;
            if ki < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
            k = usize::try_from(ki).unwrap_or(usize::MAX);
        }
        T_QUANTILE => q = scalar_param()?,
        T_COUNT_VALUES => {
            let Some(Val::String(s)) = &param else {
                return Err(QueryError::eval("count_values expects a string parameter"));
            };
            if !is_valid_label_name(s) {
                return Err(QueryError::eval(format!("invalid label name {s:?}")));
            }
            value_label = s.clone();
            if !without {
                grouping.push(value_label.clone());
            }
        }
        T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR => {}
        _ => return Err(QueryError::Unsupported(format!("aggregation {}", agg.op))),
    }

    // Groups are found by a hash of the grouping labels, checked against the group's labels,
    // so a sample that joins an existing group builds no label set.
    let mut drop: Vec<&str> = grouping.iter().map(String::as_str).collect();
    drop.push(METRIC_NAME);
    let select = |n: &str| {
        if without {
            !drop.contains(&n)
        } else {
            grouping.iter().any(|g| g == n)
        }
    };
    let hasher = RandomState::new();
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for mut s in input {
        if op == T_COUNT_VALUES {
            s.labels.set(value_label.clone(), format_go_float(s.v));
        }
        let h = s.labels.hash_selected(select, &hasher);
        let slot = index.entry(h).or_default();
        match slot
            .iter()
            .copied()
            .find(|i| s.labels.selected_eq(select, &groups[*i].labels))
        {
            Some(i) => add_to_group(op, &mut groups[i], s, k),
            None => {
                let key = if without {
                    s.labels.drop_names(&drop)
                } else {
                    s.labels.keep_only(&grouping)
                };
                slot.push(groups.len());
                groups.push(new_group(op, key, s));
            }
        }
    }
    Ok(Val::Vector(finish_groups(op, groups, q, ts)))
}

fn new_group(op: u16, labels: Labels, s: Sample) -> Group {
    let value = match op {
        T_STDDEV | T_STDVAR => 0.0,
        T_GROUP => 1.0,
        _ => s.v,
    };
    let s_v = s.v;
    let mean = RunningMean::first(s.v);
    let heap = if matches!(op, T_TOPK | T_BOTTOMK | T_QUANTILE) {
        vec![s]
    } else {
        Vec::new()
    };
    Group {
        labels,
        value,
        mean,
        welford_mean: s_v,
        count: 1.0,
        heap,
    }
}

fn add_to_group(op: u16, g: &mut Group, s: Sample, k: usize) {
    match op {
        T_SUM => g.value += s.v,
        T_AVG => g.mean.add(s.v),
        T_MAX if g.value < s.v || g.value.is_nan() => g.value = s.v,
        T_MIN if g.value > s.v || g.value.is_nan() => g.value = s.v,
        T_COUNT | T_COUNT_VALUES => g.count += 1.0,
        T_STDDEV | T_STDVAR => {
            g.count += 1.0;
            let delta = s.v - g.welford_mean;
            g.welford_mean += delta / g.count;
            g.value += delta * (s.v - g.welford_mean);
        }
        T_TOPK => heap_offer(&mut g.heap, s, k, topk_less),
        T_BOTTOMK => heap_offer(&mut g.heap, s, k, bottomk_less),
        T_QUANTILE => g.heap.push(s),
        _ => {}
    }
}

fn finish_groups(op: u16, groups: Vec<Group>, q: f64, ts: i64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let v = match op {
            T_AVG => g.mean.mean(),
            T_COUNT | T_COUNT_VALUES => g.count,
            T_STDVAR => g.value / g.count,
            T_STDDEV => (g.value / g.count).sqrt(),
            T_TOPK | T_BOTTOMK => {
                let mut heap = g.heap;
                let less = if op == T_TOPK {
                    topk_less
                } else {
                    bottomk_less
                };
                // Best first, as Prometheus reverses its heap.
                heap.sort_by(|a, b| {
                    if less(b, a) {
                        std::cmp::Ordering::Less
                    } else if less(a, b) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                out.extend(heap.into_iter().map(|s| Sample { t: ts, ..s }));
                continue;
            }
            T_QUANTILE => {
                let mut vals: Vec<f64> = g.heap.iter().map(|s| s.v).collect();
                quantile(q, &mut vals)
            }
            _ => g.value,
        };
        out.push(Sample {
            labels: g.labels,
            t: ts,
            v,
        });
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_go_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// `vectorByValueHeap.Less`: a min-heap on value with NaN smallest.
fn topk_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v < b.v
}

/// `vectorByReverseValueHeap.Less`: a max-heap on value with NaN on top.
fn bottomk_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v > b.v
}

/// Prometheus's topk/bottomk step: keep at most `k` samples, replacing the heap top when `s`
/// beats it. Uses Go's `container/heap` sift order so ties resolve identically.
fn heap_offer(heap: &mut Vec<Sample>, s: Sample, k: usize, less: fn(&Sample, &Sample) -> bool) {
    let top = &heap[0];
    let replace = heap.len() < k || less(top, &s) || top.v.is_nan();
    if !replace {
        return;
    }
    if heap.len() == k {
        if k == 1 {
            heap[0] = s;
            return;
        }
        let n = heap.len() - 1;
        heap.swap(0, n);
        sift_down(heap, 0, n, less);
        heap.pop();
    }
    heap.push(s);
    let j = heap.len() - 1;
    sift_up(heap, j, less);
}

fn sift_up(h: &mut [Sample], mut j: usize, less: fn(&Sample, &Sample) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn sift_down(h: &mut [Sample], mut i: usize, n: usize, less: fn(&Sample, &Sample) -> bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&h[j1 + 1], &h[j1]) {
            j = j1 + 1;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_format() {
        assert_eq!(format_go_float(1.0), "1");
        assert_eq!(format_go_float(0.1), "0.1");
        assert_eq!(format_go_float(1e21), "1000000000000000000000");
        assert_eq!(format_go_float(f64::INFINITY), "+Inf");
        assert_eq!(format_go_float(f64::NAN), "NaN");
        assert_eq!(format_go_float(-0.0), "-0");
    }
}
