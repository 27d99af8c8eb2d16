//! The evaluator core: evaluates an expression at one timestamp.
//!
//! Every query, instant or range, is evaluated step by step at single timestamps. This gives
//! Prometheus's results because its range evaluation is defined point-wise, with two
//! exceptions handled here explicitly: subquery steps are aligned to absolute multiples of the
//! step (not to the query start), and the "same labelset" check of range-vector functions and
//! unary minus spans the whole query range (see [`Evaluator::track_origin`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::engine::EngineOptions;
use super::error::QueryError;
use super::labels::{Labels, METRIC_NAME};
use super::store::{Point, Series, Store, is_stale};
use super::value::Sample;
use super::{aggregate, binary, functions};

/// A value during evaluation at one timestamp.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    String(String),
}

impl Val {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
            Val::String(_) => "string",
        }
    }
}

/// The error Prometheus raises when two output elements share a label set.
pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// State of one query evaluation.
pub(crate) struct Evaluator<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) opts: &'a EngineOptions,
    /// Query start and end in ms, for `@ start()` / `@ end()`.
    pub(crate) query_start: i64,
    pub(crate) query_end: i64,
    /// Samples held for the current top-level step plus those already in the result.
    held: Cell<usize>,
    /// Single-timestamp evaluations so far (top-level and subquery steps).
    steps: Cell<usize>,
    /// `(node address, output fingerprint) → input fingerprint`, for the range-wide check.
    origins: RefCell<HashMap<(usize, u64), u64>>,
    /// Subqueries being evaluated (their inner expression runs at several steps).
    subquery_depth: Cell<usize>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        opts: &'a EngineOptions,
        query_start: i64,
        query_end: i64,
    ) -> Self {
        Self {
            store,
            opts,
            query_start,
            query_end,
            held: Cell::new(0),
            steps: Cell::new(0),
            origins: RefCell::new(HashMap::new()),
            subquery_depth: Cell::new(0),
        }
    }

    /// Sets the number of samples held (releasing what was charged above `base`).
    pub(crate) fn reset_held(&self, base: usize) {
        self.held.set(base);
    }

    /// Samples currently held.
    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }

    /// Accounts for `n` more samples held in memory; fails past the limit.
    pub(crate) fn charge(&self, n: usize) -> Result<(), QueryError> {
        let held = self.held.get().saturating_add(n);
        self.held.set(held);
        if held > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }

    /// Accounts for one more single-timestamp evaluation; fails past the limit.
    pub(crate) fn charge_step(&self) -> Result<(), QueryError> {
        let steps = self.steps.get().saturating_add(1);
        self.steps.set(steps);
        if steps > self.opts.max_eval_steps {
            return Err(QueryError::TooManySteps {
                limit: self.opts.max_eval_steps,
            });
        }
        Ok(())
    }

    /// Records that `node` turned the series `input` into `output`. Prometheus evaluates
    /// range-vector functions and unary minus over the whole range at once and then rejects
    /// two input series that map to the same output labels, even at different steps; this
    /// reproduces that check across the steps of a range query.
    pub(crate) fn track_origin(
        &self,
        node: &Expr,
        output: &Labels,
        input: &Labels,
    ) -> Result<(), QueryError> {
        // One step (an instant query outside any subquery): the per-step duplicate check
        // is the whole check.
        if self.query_start == self.query_end && self.subquery_depth.get() == 0 {
            return Ok(());
        }
        let key = (node as *const Expr as usize, output.fingerprint().0);
        let input = input.fingerprint().0;
        let mut origins = self.origins.borrow_mut();
        match origins.get(&key) {
            Some(prev) if *prev != input => Err(QueryError::eval(DUPLICATE_LABELSET)),
            Some(_) => Ok(()),
            None => {
                origins.insert(key, input);
                Ok(())
            }
        }
    }

    /// Evaluates `expr` at `ts` (ms).
    pub(crate) fn eval(&self, expr: &Expr, ts: i64) -> Result<Val, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => self.eval_negation(expr, &u.expr, ts),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, ts).map(Val::Vector),
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms, ts).map(Val::Matrix),
            Expr::Subquery(sq) => self.eval_subquery(sq, ts).map(Val::Matrix),
            Expr::Call(call) => functions::eval_call(self, expr, call, ts),
            Expr::Aggregate(agg) => aggregate::eval_aggregate(self, agg, ts),
            Expr::Binary(bin) => binary::eval_binary(self, bin, ts),
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions".into())),
        }
    }

    /// Evaluates `expr`, which must yield an instant vector.
    pub(crate) fn eval_vector(&self, expr: &Expr, ts: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(expr, ts)? {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::eval(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `expr`, which must yield a scalar.
    pub(crate) fn eval_scalar(&self, expr: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(expr, ts)? {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::eval(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_negation(&self, node: &Expr, inner: &Expr, ts: i64) -> Result<Val, QueryError> {
        match self.eval(inner, ts)? {
            Val::Scalar(v) => Ok(Val::Scalar(-v)),
            Val::Vector(vec) => {
                let mut out = Vec::with_capacity(vec.len());
                for s in vec {
                    let labels = s.labels.without_metric_name();
                    self.track_origin(node, &labels, &s.labels)?;
                    out.push(Sample {
                        labels,
                        t: ts,
                        v: -s.v,
                    });
                }
                check_duplicates(&out)?;
                Ok(Val::Vector(out))
            }
            other => Err(QueryError::eval(format!(
                "unary minus is not defined on {}",
                other.type_name()
            ))),
        }
    }

    /// The reference time of a selector or subquery evaluated at `ts`: `@` replaces `ts`, then
    /// the offset is subtracted.
    pub(crate) fn ref_time(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        ts: i64,
    ) -> i64 {
        let base = match at {
            None => ts,
            Some(AtModifier::Start) => self.query_start,
            Some(AtModifier::End) => self.query_end,
            Some(AtModifier::At(t)) => system_time_ms(*t),
        };
        let off = match offset {
            None => 0,
            Some(Offset::Pos(d)) => duration_ms(*d),
            Some(Offset::Neg(d)) => -duration_ms(*d),
        };
        base.saturating_sub(off)
    }

    /// Fetches the series a selector matches, with samples in `[start, end]`.
    fn select(&self, vs: &VectorSelector, start: i64, end: i64) -> Result<Vec<Series>, QueryError> {
        let mut base: Vec<Matcher> = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            base.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
        let mut series = if vs.matchers.or_matchers.is_empty() {
            self.store.select(&base, start, end)?
        } else {
            // `{a="1" or b="2"}`: the union of the alternatives, each with the base matchers.
            let mut seen = HashSet::new();
            let mut all = Vec::new();
            for alt in &vs.matchers.or_matchers {
                let mut ms = base.clone();
                ms.extend(alt.iter().cloned());
                for s in self.store.select(&ms, start, end)? {
                    if seen.insert(s.labels.clone()) {
                        all.push(s);
                    }
                }
            }
            all
        };
        series.retain(|s| !s.points.is_empty());
        Ok(series)
    }

    fn eval_vector_selector(
        &self,
        vs: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<Sample>, QueryError> {
        let reft = self.ref_time(&vs.at, &vs.offset, ts);
        let lookback = self.opts.lookback_delta_ms;
        let series = self.select(vs, reft.saturating_sub(lookback), reft)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            // The newest sample at or before the reference time, unless it is a stale marker.
            if let Some(p) = s.points.iter().rev().find(|p| p.t <= reft)
                && !is_stale(p.v)
            {
                out.push(Sample {
                    labels: s.labels,
                    t: p.t,
                    v: p.v,
                });
            }
        }
        // Like Prometheus, an instant selector holds one sample per series.
        self.charge(out.len())?;
        Ok(out)
    }

    fn eval_matrix_selector(
        &self,
        ms: &MatrixSelector,
        ts: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let reft = self.ref_time(&ms.vs.at, &ms.vs.offset, ts);
        let start = reft.saturating_sub(duration_ms(ms.range));
        let mut series = self.select(&ms.vs, start, reft)?;
        for s in &mut series {
            s.points.retain(|p| !is_stale(p.v));
        }
        series.retain(|s| !s.points.is_empty());
        self.charge(series.iter().map(|s| s.points.len()).sum())?;
        Ok(series)
    }

    fn eval_subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<Vec<Series>, QueryError> {
        let reft = self.ref_time(&sq.at, &sq.offset, ts);
        let step = sq
            .step
            .map(duration_ms)
            .unwrap_or(self.opts.subquery_step_default_ms);
        if step <= 0 {
            return Err(QueryError::eval("subquery step must be positive"));
        }
        let range = duration_ms(sq.range);
        let mut t = align_up(reft.saturating_sub(range), step);
        let mut by_labels: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
        while t <= reft {
            self.charge_step()?;
            // What the inner step selected is released once it is evaluated; only its result
            // stays held (as the subquery's points).
            let base = self.held();
            self.subquery_depth.set(self.subquery_depth.get() + 1);
            let inner = self.eval(&sq.expr, t);
            self.subquery_depth.set(self.subquery_depth.get() - 1);
            let inner = inner?;
            self.reset_held(base);
            match inner {
                Val::Vector(v) => {
                    self.charge(v.len())?;
                    for s in v {
                        by_labels
                            .entry(s.labels)
                            .or_default()
                            .push(Point { t, v: s.v });
                    }
                }
                Val::Scalar(v) => {
                    self.charge(1)?;
                    by_labels
                        .entry(Labels::empty())
                        .or_default()
                        .push(Point { t, v });
                }
                other => {
                    return Err(QueryError::eval(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )));
                }
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }
}

/// The smallest multiple of `step` that is `>= t` (`step > 0`), clamped to `i64`.
fn align_up(t: i64, step: i64) -> i64 {
    let (t, step) = (i128::from(t), i128::from(step));
    let down = t.div_euclid(step) * step;
    let up = if down < t { down + step } else { down };
    i64::try_from(up).unwrap_or(i64::MAX)
}

/// Milliseconds in `d`, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch of `t` (negative before 1970).
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(e) => -duration_ms(e.duration()),
    }
}

/// Fails with Prometheus's message when two samples share a label set.
pub(crate) fn check_duplicates(v: &[Sample]) -> Result<(), QueryError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(QueryError::eval(DUPLICATE_LABELSET));
        }
    }
    Ok(())
}

/// Strips any number of parentheses.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_handles_negative_and_exact() {
        assert_eq!(align_up(150, 100), 200);
        assert_eq!(align_up(200, 100), 200);
        assert_eq!(align_up(-150, 100), -100);
        assert_eq!(align_up(-200, 100), -200);
    }
}
