//! Binary operators: arithmetic, comparison (with `bool`), set operators, and vector matching
//! (`on`/`ignoring`, `group_left`/`group_right`) with Prometheus's cardinality errors.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::error::QueryError;
use super::eval::{Evaluator, Val, check_duplicates};
use super::labels::{Labels, METRIC_NAME};
use super::value::Sample;

pub(crate) fn eval_binary(
    ev: &Evaluator<'_>,
    bin: &BinaryExpr,
    ts: i64,
) -> Result<Val, QueryError> {
    // Both sides are always evaluated, so errors surface as in Prometheus.
    let lhs = ev.eval(&bin.lhs, ts)?;
    let rhs = ev.eval(&bin.rhs, ts)?;
    let op = bin.op.id();
    let return_bool = bin.return_bool();
    let out = match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(b)) => return Ok(Val::Scalar(scalar_binop(op, a, b)?)),
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(op, l, r, false, return_bool, ts)?,
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(op, r, l, true, return_bool, ts)?,
        (Val::Vector(l), Val::Vector(r)) => {
            let m = Matching::from_expr(bin);
            match op {
                T_LAND => set_and(l, r, &m),
                T_LOR => set_or(l, r, &m),
                T_LUNLESS => set_unless(l, r, &m),
                _ => vector_binop(op, l, r, &m, return_bool, ts)?,
            }
        }
        (l, r) => {
            return Err(QueryError::eval(format!(
                "binary expression between {} and {} is not allowed",
                l.type_name(),
                r.type_name()
            )));
        }
    };
    check_duplicates(&out)?;
    Ok(Val::Vector(out))
}

/// How two vectors are matched.
struct Matching {
    /// `on(...)` (true) or `ignoring(...)` / nothing (false).
    on: bool,
    names: Vec<String>,
    card: Card,
    /// Labels copied from the "one" side (`group_left(…)`/`group_right(…)`).
    include: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    fn from_expr(bin: &BinaryExpr) -> Self {
        let mut m = Matching {
            on: false,
            names: Vec::new(),
            card: Card::OneToOne,
            include: Vec::new(),
        };
        if let Some(modifier) = &bin.modifier {
            match &modifier.matching {
                Some(LabelModifier::Include(l)) => {
                    m.on = true;
                    m.names = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => m.names = l.labels.clone(),
                None => {}
            }
            match &modifier.card {
                VectorMatchCardinality::ManyToOne(l) => {
                    m.card = Card::ManyToOne;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    m.card = Card::OneToMany;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
            }
        }
        m
    }

    /// The match-group signature of a series.
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            l.keep_only(&self.names)
        } else {
            let mut drop: Vec<&str> = self.names.iter().map(String::as_str).collect();
            drop.push(METRIC_NAME);
            l.drop_names(&drop)
        }
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name; comparisons, set operators and (in Prometheus 2.x)
/// `atan2` keep it.
fn drops_metric_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)
}

fn scalar_binop(op: u16, a: f64, b: f64) -> Result<f64, QueryError> {
    let bool_f = |c: bool| if c { 1.0 } else { 0.0 };
    Ok(match op {
        T_EQLC => bool_f(a == b),
        T_NEQ => bool_f(a != b),
        T_GTR => bool_f(a > b),
        T_LSS => bool_f(a < b),
        T_GTE => bool_f(a >= b),
        T_LTE => bool_f(a <= b),
        _ => elem_binop(op, a, b)?.0,
    })
}

/// Prometheus's `vectorElemBinop`: the value and whether the element is kept.
fn elem_binop(op: u16, a: f64, b: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (a + b, true),
        T_SUB => (a - b, true),
        T_MUL => (a * b, true),
        T_DIV => (a / b, true),
        T_POW => (a.powf(b), true),
        T_MOD => (a % b, true),
        T_ATAN2 => (a.atan2(b), true),
        T_EQLC => (a, a == b),
        T_NEQ => (a, a != b),
        T_GTR => (a, a > b),
        T_LSS => (a, a < b),
        T_GTE => (a, a >= b),
        T_LTE => (a, a <= b),
        _ => return Err(QueryError::eval(format!("operator {op} not allowed here"))),
    })
}

fn vector_scalar(
    op: u16,
    vec: Vec<Sample>,
    scalar: f64,
    swap: bool,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Sample>, QueryError> {
    let mut out = Vec::with_capacity(vec.len());
    for mut s in vec {
        let (l, r) = if swap { (scalar, s.v) } else { (s.v, scalar) };
        let (mut value, mut keep) = elem_binop(op, l, r)?;
        // A comparison always yields the vector element's value, even when it is on the right.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            s.v = value;
            s.t = ts;
            if drops_metric_name(op) || return_bool {
                s.labels = s.labels.without_metric_name();
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn vector_binop(
    op: u16,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Matching,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Sample>, QueryError> {
    // One-to-many is many-to-one with the sides swapped (values swapped back below).
    let (many, one) = if m.card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let mut one_by_sig: HashMap<Labels, Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = m.signature(&s.labels);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            return Err(QueryError::eval(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the \
                 operation: [{}, {}];many-to-many matching not allowed: matching labels must be \
                 unique on one side",
                s.labels, dup.labels
            )));
        }
        one_by_sig.insert(sig, s);
    }
    // Signature → output label sets seen (for many-to-one uniqueness).
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = m.signature(&ls.labels);
        let Some(rs) = one_by_sig.get(&sig) else {
            continue;
        };
        let (vl, vr) = if m.card == Card::OneToMany {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut value, keep) = elem_binop(op, vl, vr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&ls.labels, &rs.labels, op, m);
        if return_bool {
            labels.remove(METRIC_NAME);
        }
        let seen = matched.entry(sig.clone()).or_default();
        if m.card == Card::OneToOne {
            if !seen.is_empty() {
                return Err(QueryError::eval(
                    "multiple matches for labels: many-to-one matching must be explicit \
                     (group_left/group_right)",
                ));
            }
            seen.insert(Labels::empty());
        } else if !seen.insert(labels.clone()) {
            return Err(QueryError::eval(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Sample {
            labels,
            t: ts,
            v: value,
        });
    }
    Ok(out)
}

/// Prometheus's `resultMetric`.
fn result_labels(many: &Labels, one: &Labels, op: u16, m: &Matching) -> Labels {
    let mut l = many.clone();
    if drops_metric_name(op) {
        l.remove(METRIC_NAME);
    }
    if m.card == Card::OneToOne {
        l = if m.on {
            l.keep_only(&m.names)
        } else {
            l.drop_names(&m.names)
        };
    }
    for name in &m.include {
        l.set(name.clone(), one.get(name).to_string());
    }
    l
}

fn set_and(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| right.contains(&m.signature(&s.labels)))
        .collect()
}

fn set_or(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let left: HashSet<Labels> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|s| !left.contains(&m.signature(&s.labels))),
    );
    out
}

fn set_unless(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| !right.contains(&m.signature(&s.labels)))
        .collect()
}
