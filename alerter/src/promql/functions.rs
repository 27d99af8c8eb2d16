//! Function calls: dispatch between range functions ([`super::range_funcs`]) and functions
//! over instant vectors and scalars (here).

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr, VectorSelector};
use regex::Regex;

use super::calendar::{CivilTime, go_f64_to_i64};
use super::error::QueryError;
use super::eval::{Evaluator, Val, check_duplicates, unwrap_parens};
use super::labels::{Labels, METRIC_NAME, is_valid_label_name};
use super::range_funcs::{self, Window};
use super::stats::{Bucket, bucket_quantile, go_max, go_min};
use super::value::Sample;

/// Evaluates `call` (the node `node`) at `ts`.
pub(crate) fn eval_call(
    ev: &Evaluator<'_>,
    node: &Expr,
    call: &Call,
    ts: i64,
) -> Result<Val, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| unwrap_parens(a)).collect();
    let matrix_arg = args
        .iter()
        .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)));
    match matrix_arg {
        Some(idx) => eval_range_call(ev, node, name, &args, idx, ts),
        None => eval_instant_call(ev, name, &args, ts),
    }
}

fn eval_range_call(
    ev: &Evaluator<'_>,
    node: &Expr,
    name: &str,
    args: &[&Expr],
    idx: usize,
    ts: i64,
) -> Result<Val, QueryError> {
    if name != "absent_over_time" && !range_funcs::is_supported(name) {
        return Err(QueryError::Unsupported(name.to_string()));
    }
    let mut scalars = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        if i != idx {
            scalars.push(ev.eval_scalar(a, ts)?);
        }
    }
    let matrix_expr = args[idx];
    let window = match matrix_expr {
        Expr::MatrixSelector(ms) => {
            let end = ev.ref_time(&ms.vs.at, &ms.vs.offset, ts);
            window(ts, end, ms.range)
        }
        Expr::Subquery(sq) => {
            let end = ev.ref_time(&sq.at, &sq.offset, ts);
            window(ts, end, sq.range)
        }
        _ => return Err(QueryError::eval("expected a range vector argument")),
    };
    let base = ev.held();
    let Val::Matrix(series) = ev.eval(matrix_expr, ts)? else {
        return Err(QueryError::eval("expected a range vector argument"));
    };
    if name == "absent_over_time" {
        if series.iter().any(|s| !s.points.is_empty()) {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(vec![Sample {
            labels: absent_labels(matrix_expr),
            t: ts,
            v: 1.0,
        }]));
    }
    // A range vector holds distinct label sets (a selector's series, or a subquery's); when
    // they share one metric name (or keep it), dropping it cannot make two outputs equal.
    let distinct = name == "last_over_time"
        || series
            .windows(2)
            .all(|w| w[0].labels.get(METRIC_NAME) == w[1].labels.get(METRIC_NAME));
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        if let Some(v) = range_funcs::apply(name, &s.points, window, &scalars)? {
            // last_over_time acts like an offset and keeps the metric name.
            let labels = if name == "last_over_time" {
                s.labels.clone()
            } else {
                s.labels.without_metric_name()
            };
            ev.track_origin(node, &labels, &s.labels)?;
            out.push(Sample { labels, t: ts, v });
        }
    }
    if !distinct {
        check_duplicates(&out)?;
    }
    // The range vector is released; the output vector stays held.
    ev.reset_held(base);
    ev.charge(out.len())?;
    Ok(Val::Vector(out))
}

fn window(ts: i64, end: i64, range: std::time::Duration) -> Window {
    Window {
        ts,
        start: end.saturating_sub(super::eval::duration_ms(range)),
        end,
    }
}

fn eval_instant_call(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    ts: i64,
) -> Result<Val, QueryError> {
    if let Some(f) = math_fn(name) {
        let v = ev.eval_vector(arg(args, 0)?, ts)?;
        return finish(map_values(v, ts, f));
    }
    if is_date_fn(name) {
        return finish(date_fn(ev, name, args, ts)?);
    }
    match name {
        "time" => Ok(Val::Scalar(ts as f64 / 1e3)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = ev.eval_scalar(arg(args, 0)?, ts)?;
            Ok(Val::Vector(vec![Sample {
                labels: Labels::empty(),
                t: ts,
                v,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "timestamp" => timestamp(ev, arg(args, 0)?, ts),
        "round" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            let to_nearest = match args.get(1) {
                Some(a) => ev.eval_scalar(a, ts)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            finish(map_values(v, ts, |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" | "clamp_min" | "clamp_max" => clamp(ev, name, args, ts),
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(args, 0)?, ts)?;
            sort_by_value(&mut v, name == "sort_desc");
            Ok(Val::Vector(v))
        }
        "absent" => {
            let v = ev.eval_vector(arg(args, 0)?, ts)?;
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![Sample {
                labels: absent_labels(arg(args, 0)?),
                t: ts,
                v: 1.0,
            }]))
        }
        "histogram_quantile" => histogram_quantile(ev, args, ts),
        // These read native histograms only and skip float samples; stores hold floats only,
        // so (as in Prometheus on float data) the result is always empty.
        "histogram_count" | "histogram_sum" | "histogram_fraction" | "histogram_avg"
        | "histogram_stddev" | "histogram_stdvar" => {
            for a in args {
                ev.eval(a, ts)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        "label_replace" => label_replace(ev, args, ts),
        "label_join" => label_join(ev, args, ts),
        other => Err(QueryError::Unsupported(other.to_string())),
    }
}

fn arg<'e>(args: &[&'e Expr], i: usize) -> Result<&'e Expr, QueryError> {
    args.get(i)
        .copied()
        .ok_or_else(|| QueryError::eval(format!("missing argument {}", i + 1)))
}

fn string_arg(ev: &Evaluator<'_>, args: &[&Expr], i: usize, ts: i64) -> Result<String, QueryError> {
    match ev.eval(arg(args, i)?, ts)? {
        Val::String(s) => Ok(s),
        other => Err(QueryError::eval(format!(
            "expected string argument, got {}",
            other.type_name()
        ))),
    }
}

/// Checks the output for duplicate label sets, as Prometheus does after every function.
fn finish(v: Vec<Sample>) -> Result<Val, QueryError> {
    check_duplicates(&v)?;
    Ok(Val::Vector(v))
}

/// Applies `f` to every value and drops the metric name.
fn map_values(v: Vec<Sample>, ts: i64, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            labels: s.labels.without_metric_name(),
            t: ts,
            v: f(s.v),
        })
        .collect()
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |x: f64| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        },
        "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
        "rad" => |x: f64| x * std::f64::consts::PI / 180.0,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => return None,
    })
}

fn timestamp(ev: &Evaluator<'_>, a: &Expr, ts: i64) -> Result<Val, QueryError> {
    // On a plain selector, timestamp() reports when the sample was taken; on anything else
    // the evaluation time, as in Prometheus.
    let from_selector = matches!(a, Expr::VectorSelector(_));
    let v = ev.eval_vector(a, ts)?;
    let out = v
        .into_iter()
        .map(|s| Sample {
            labels: s.labels.without_metric_name(),
            t: ts,
            v: if from_selector { s.t } else { ts } as f64 / 1e3,
        })
        .collect();
    finish(out)
}

fn clamp(ev: &Evaluator<'_>, name: &str, args: &[&Expr], ts: i64) -> Result<Val, QueryError> {
    let v = ev.eval_vector(arg(args, 0)?, ts)?;
    let a = ev.eval_scalar(arg(args, 1)?, ts)?;
    match name {
        "clamp" => {
            let max = ev.eval_scalar(arg(args, 2)?, ts)?;
            if max < a {
                return Ok(Val::Vector(Vec::new()));
            }
            finish(map_values(v, ts, |x| go_max(a, go_min(max, x))))
        }
        "clamp_min" => finish(map_values(v, ts, |x| go_max(a, x))),
        _ => finish(map_values(v, ts, |x| go_min(a, x))),
    }
}

/// Sorts like Prometheus's `sort`/`sort_desc` (NaN last in both).
pub(crate) fn sort_by_value(v: &mut [Sample], desc: bool) {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal),
    });
}

/// Labels of `absent()`/`absent_over_time()`: the equality matchers of a plain selector.
fn absent_labels(e: &Expr) -> Labels {
    let vs: &VectorSelector = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut out = Labels::empty();
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            out.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            out.remove(&m.name);
        }
    }
    out
}

fn histogram_quantile(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Val, QueryError> {
    let q = ev.eval_scalar(arg(args, 0)?, ts)?;
    let v = ev.eval_vector(arg(args, 1)?, ts)?;
    // Group by all labels but `le` (the metric name is part of the group identity).
    let mut groups: HashMap<Labels, (Labels, Vec<Bucket>)> = HashMap::new();
    for s in v {
        let Ok(upper_bound) = s.labels.get("le").parse::<f64>() else {
            continue;
        };
        let key = s.labels.drop_names(&["le"]);
        let entry = groups
            .entry(key)
            .or_insert_with(|| (s.labels.drop_names(&[METRIC_NAME, "le"]), Vec::new()));
        entry.1.push(Bucket {
            upper_bound,
            count: s.v,
        });
    }
    let out = groups
        .into_values()
        .map(|(labels, mut buckets)| Sample {
            labels,
            t: ts,
            v: bucket_quantile(q, &mut buckets),
        })
        .collect();
    finish(out)
}

fn label_replace(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Val, QueryError> {
    let v = ev.eval_vector(arg(args, 0)?, ts)?;
    let dst = string_arg(ev, args, 1, ts)?;
    let repl = string_arg(ev, args, 2, ts)?;
    let src = string_arg(ev, args, 3, ts)?;
    let re_src = string_arg(ev, args, 4, ts)?;
    let re = Regex::new(&format!("^(?:{re_src})$")).map_err(|_| {
        QueryError::eval(format!(
            "invalid regular expression in label_replace(): {re_src}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(QueryError::eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let src_val = s.labels.get(&src);
        let labels = match re.captures(src_val) {
            None => s.labels.clone(),
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut l = s.labels.clone();
                l.set(dst.clone(), res);
                l
            }
        };
        out.push(Sample {
            labels,
            t: ts,
            v: s.v,
        });
    }
    finish(out)
}

fn label_join(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Val, QueryError> {
    let v = ev.eval_vector(arg(args, 0)?, ts)?;
    let dst = string_arg(ev, args, 1, ts)?;
    let sep = string_arg(ev, args, 2, ts)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let src = string_arg(ev, args, i, ts)?;
        if !is_valid_label_name(&src) {
            return Err(QueryError::eval(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !is_valid_label_name(&dst) {
        return Err(QueryError::eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n)).collect();
            let mut labels = s.labels.clone();
            labels.set(dst.clone(), joined.join(&sep));
            Sample {
                labels,
                t: ts,
                v: s.v,
            }
        })
        .collect();
    finish(out)
}

fn is_date_fn(name: &str) -> bool {
    matches!(
        name,
        "minute"
            | "hour"
            | "day_of_week"
            | "day_of_month"
            | "day_of_year"
            | "days_in_month"
            | "month"
            | "year"
    )
}

fn date_fn(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    ts: i64,
) -> Result<Vec<Sample>, QueryError> {
    let pick = |secs: i64| -> f64 {
        let d = CivilTime::from_unix(secs);
        f64::from(match name {
            "minute" => d.minute,
            "hour" => d.hour,
            "day_of_week" => d.weekday,
            "day_of_month" => d.day,
            "day_of_year" => d.day_of_year,
            "days_in_month" => d.days_in_month,
            "month" => d.month,
            _ => return d.year as f64,
        })
    };
    match args.first() {
        None => Ok(vec![Sample {
            labels: Labels::empty(),
            t: ts,
            // Go's integer division truncates towards zero.
            v: pick(ts / 1000),
        }]),
        Some(a) => {
            let v = ev.eval_vector(a, ts)?;
            Ok(map_values(v, ts, |x| pick(go_f64_to_i64(x))))
        }
    }
}
