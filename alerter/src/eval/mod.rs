//! Rule evaluation: one rule group at one timestamp, with Prometheus 2.x semantics, as a pure
//! function `(group, store, ts, previous state) → (new state, transitions, samples)`.
//!
//! Layout:
//! - [`state`]: [`GroupState`] (per rule: alerts by fingerprint, series written last time),
//!   serialisable and rebuildable from stored alert instances ([`GroupState::from_stored`]).
//! - `alerting`: `AlertingRule.Eval` (pending → firing after `for`, `keep_firing_for`,
//!   resolved alerts kept 15 minutes, `limit`, duplicate label sets) and `sendAlerts`.
//! - `recording`: `RecordingRule.Eval`.
//! - `overlay`: the store as seen by later rules of the same evaluation (earlier rules'
//!   samples included), so the core never writes anywhere.
//!
//! Invariants: no clock is read (the caller passes `ts`); the input state is never modified;
//! a rule whose evaluation fails keeps its previous state (only an exceeded alert `limit`
//! clears a rule's alerts, as in Prometheus); the output state passes
//! [`GroupState::validate`].
//!
//! Differences from Prometheus, deliberate: every sample this evaluation emits is treated as
//! written (Prometheus leaves a sample its storage refused out of the next staleness
//! check; here a refusal within the evaluation is reported as the rule's error); the
//! `query_offset` of Prometheus 3.x is honoured (queries and recorded samples at
//! `ts - offset`, `ALERTS` at `ts`).

mod alerting;
mod overlay;
mod recording;
pub mod state;

use std::collections::BTreeMap;
use std::time::Duration;

pub use alerting::needs_sending;
pub use state::{ActiveAlert, AlertState, GroupState, RuleState, StoredAlert};

use crate::promql::{Engine, Labels, QueryError, STALE_NAN, Sample, Store, Value};
use crate::rules::{Rule, RuleGroup};
use crate::template::Limits;
use alerting::{RuleEnv, eval_alerting};
use overlay::Overlay;
use recording::eval_recording;

/// Prometheus's default `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_DELAY_MS: i64 = 60_000;
/// Prometheus's default global `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL_MS: i64 = 60_000;

/// Why a rule's evaluation failed; messages are Prometheus's where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query failed (the rule keeps its previous state).
    #[error("{}", query_message(.0))]
    Query(#[from] QueryError),
    /// The expression returned a range vector or a string.
    #[error("rule result is not a vector or scalar")]
    NotVectorOrScalar,
    /// Two samples have the same labels once the rule's labels are applied.
    #[error("vector contains metrics with the same labelset after applying {what}")]
    DuplicateLabelset {
        /// `alert labels` or `rule labels`.
        what: &'static str,
    },
    /// More active alerts than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} alerts")]
    AlertLimit {
        /// The group limit.
        limit: u64,
        /// Pending and firing alerts found.
        count: u64,
    },
    /// More series than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} series")]
    SeriesLimit {
        /// The group limit.
        limit: u64,
        /// Series produced.
        count: u64,
    },
    /// A sample was refused (same series and timestamp written twice with different values,
    /// or older than the series' newest sample).
    #[error("{0}")]
    Append(&'static str),
    /// A query answered by a remote datasource failed.
    #[error("{0}")]
    Remote(String),
    /// The state does not belong to this group (rule count or names differ), or a stored
    /// alert cannot be placed.
    #[error("evaluation state does not match the group: {0}")]
    StateMismatch(String),
}

/// Settings that are not part of the rule group.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    pub external_url: String,
    /// Interval of groups without one (the global `evaluation_interval`), in ms.
    pub default_interval_ms: i64,
    /// Query offset of groups without one (the global `rule_query_offset`), in ms.
    pub default_query_offset_ms: i64,
    /// Minimum time between two notifications of the same alert (ms).
    pub resend_delay_ms: i64,
    /// Interval of the group being evaluated (ms); set by [`eval_group`] from the group.
    pub group_interval_ms: i64,
    /// Bounds on each template render.
    pub template_limits: Limits,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            default_interval_ms: DEFAULT_EVALUATION_INTERVAL_MS,
            default_query_offset_ms: 0,
            resend_delay_ms: DEFAULT_RESEND_DELAY_MS,
            group_interval_ms: DEFAULT_EVALUATION_INTERVAL_MS,
            template_limits: Limits::default(),
        }
    }
}

/// A sample a rule wrote; the caller appends it to its storage.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenSample {
    /// Index of the rule in the group.
    pub rule_index: usize,
    /// Series labels.
    pub labels: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value ([`STALE_NAN`] for staleness markers).
    pub v: f64,
}

/// What changed for one alert, relative to the previous state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransitionKind {
    /// A new alert, pending.
    Pending,
    /// Firing now (new with `for: 0`, or pending long enough).
    Firing,
    /// Still firing; `keep_firing_since` was set or cleared.
    KeepFiring,
    /// Resolved (kept for the retention period).
    Resolved,
    /// Gone from the state: a pending alert whose condition cleared, a resolved one past
    /// retention, or every alert of a rule that exceeded its limit.
    Removed,
}

/// One alert transition; persisting these keeps a stored copy equal to the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Index of the alerting rule in the group.
    pub rule_index: usize,
    /// The alert's fingerprint (`alert.labels.fingerprint()`).
    pub fingerprint: u64,
    /// What happened.
    pub kind: TransitionKind,
    /// The alert after the transition (before it, for `Removed`).
    pub alert: ActiveAlert,
}

/// A rule that failed at this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    /// Index of the rule in the group.
    pub rule_index: usize,
    /// Alert or record name.
    pub rule_name: String,
    /// Why.
    pub error: EvalError,
}

/// The result of evaluating a group at one timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEval {
    /// The state to use next time.
    pub state: GroupState,
    /// Alert transitions, rule by rule.
    pub transitions: Vec<Transition>,
    /// Samples to write back: recorded series, `ALERTS`, `ALERTS_FOR_STATE`, staleness markers.
    pub samples: Vec<WrittenSample>,
    /// Alerts to hand to the notifier now (`sendAlerts`), with their rule index.
    pub to_send: Vec<(usize, ActiveAlert)>,
    /// Rules that failed; the others were evaluated normally.
    pub failures: Vec<RuleFailure>,
}

/// Evaluates `group` at `ts_ms` over `store`, starting from `prev` (see the module docs).
/// Rules run in order; each sees the samples of the rules before it. Fails only when `prev`
/// does not belong to `group`.
pub fn eval_group(
    engine: &Engine,
    group: &RuleGroup,
    store: &dyn Store,
    ts_ms: i64,
    prev: &GroupState,
    opts: &EvalOptions,
) -> Result<GroupEval, EvalError> {
    eval_group_inner(engine, group, store, None, ts_ms, prev, opts)
}

fn eval_group_inner(
    engine: &Engine,
    group: &RuleGroup,
    store: &dyn Store,
    prefetched: Option<&Prefetched>,
    ts_ms: i64,
    prev: &GroupState,
    opts: &EvalOptions,
) -> Result<GroupEval, EvalError> {
    prev.validate(group)?;
    let interval_ms = group.interval.map_or(opts.default_interval_ms, ms);
    let offset_ms = group.query_offset.map_or(opts.default_query_offset_ms, ms);
    let opts = EvalOptions {
        group_interval_ms: interval_ms,
        ..opts.clone()
    };
    let query_ts = ts_ms.saturating_sub(offset_ms);
    let mut overlay = Overlay::new(store);
    let mut out = GroupEval {
        state: prev.clone(),
        transitions: Vec::new(),
        samples: Vec::new(),
        to_send: Vec::new(),
        failures: Vec::new(),
    };
    for (i, rule) in group.rules.iter().enumerate() {
        let env = RuleEnv {
            engine,
            store: &overlay,
            prefetched,
            opts: &opts,
            group_labels: &group.labels,
            limit: group.limit.map(|l| l.get()),
            ts: ts_ms,
            query_ts,
            rule_index: i,
        };
        let (written, error) = eval_rule(&env, rule, &prev.rules[i], &mut out);
        let mut error = error;
        if let Some(samples) = written {
            let e = write_back(&mut overlay, &mut out, i, samples, query_ts);
            error = error.or(e);
        }
        if let Some(error) = error {
            out.failures.push(RuleFailure {
                rule_index: i,
                rule_name: rule.name().to_owned(),
                error,
            });
        }
    }
    debug_assert!(out.state.validate(group).is_ok());
    Ok(out)
}

/// Query answers fetched before the evaluation (from a remote datasource), keyed by
/// expression text. Used by workers, whose datasource is another process: the expressions of
/// [`group_queries`] are queried asynchronously at the group's query time, then the pure
/// evaluation runs on the answers. Unlike an in-process evaluation, a recording rule's output
/// is not visible to later rules of the same group at the same timestamp (it reaches them
/// through the datasource once ingested) — the behaviour of vmalert and Mimir rulers.
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    /// Expression → answer, or the datasource's error message.
    pub answers: std::collections::HashMap<String, Result<Value, String>>,
}

/// The expressions a group evaluation at `ts_ms` queries, and the query time (the slot minus
/// the group's query offset). Template `query` calls are not included.
pub fn group_queries(group: &RuleGroup, ts_ms: i64, opts: &EvalOptions) -> (Vec<String>, i64) {
    let offset_ms = group.query_offset.map_or(opts.default_query_offset_ms, ms);
    let mut exprs: Vec<String> = Vec::new();
    for r in &group.rules {
        let e = match r {
            Rule::Alerting(a) => &a.expr,
            Rule::Recording(rr) => &rr.expr,
        };
        if !exprs.contains(e) {
            exprs.push(e.clone());
        }
    }
    (exprs, ts_ms.saturating_sub(offset_ms))
}

/// [`eval_group`] on answers fetched beforehand (see [`Prefetched`]). A rule whose answer is
/// missing or failed keeps its previous state, like any failed query.
pub fn eval_group_prefetched(
    engine: &Engine,
    group: &RuleGroup,
    answers: &Prefetched,
    ts_ms: i64,
    prev: &GroupState,
    opts: &EvalOptions,
) -> Result<GroupEval, EvalError> {
    let empty = crate::promql::MemStore::new();
    eval_group_inner(engine, group, &empty, Some(answers), ts_ms, prev, opts)
}

/// Evaluates one rule; alert changes go straight into `out`. Returns the samples to write
/// (`None` when the rule failed before producing any) and the failure.
fn eval_rule(
    env: &RuleEnv<'_>,
    rule: &Rule,
    prev_rule: &RuleState,
    out: &mut GroupEval,
) -> (Option<Vec<WrittenSample>>, Option<EvalError>) {
    let i = env.rule_index;
    match rule {
        Rule::Alerting(a) => {
            let o = eval_alerting(env, a, prev_rule);
            if let Some(alerts) = o.alerts {
                diff_alerts(i, &prev_rule.alerts, &alerts, &mut out.transitions);
                out.to_send.extend(o.to_send.into_iter().map(|a| (i, a)));
                out.state.rules[i].alerts = alerts;
            }
            match o.error {
                Some(e) => (None, Some(e)),
                None => (Some(o.samples), None),
            }
        }
        Rule::Recording(r) => match eval_recording(env, r) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        },
    }
}

/// Appends a rule's samples (and staleness markers for the series it no longer returns) to
/// the overlay and the output, and records the series for next time.
fn write_back(
    overlay: &mut Overlay<'_>,
    out: &mut GroupEval,
    rule_index: usize,
    samples: Vec<WrittenSample>,
    stale_ts: i64,
) -> Option<EvalError> {
    let mut error = None;
    let mut returned = Vec::with_capacity(samples.len());
    for s in samples {
        match overlay.append(&s.labels, s.t, s.v) {
            Ok(()) => {
                returned.push(s.labels.clone());
                out.samples.push(s);
            }
            Err(refusal) => {
                error.get_or_insert(EvalError::Append(refusal.message()));
            }
        }
    }
    returned.sort();
    returned.dedup();
    let prev = std::mem::take(&mut out.state.rules[rule_index].previous_series);
    for labels in prev {
        if returned.binary_search(&labels).is_err()
            && overlay.append(&labels, stale_ts, STALE_NAN).is_ok()
        {
            out.samples.push(WrittenSample {
                rule_index,
                labels,
                t: stale_ts,
                v: STALE_NAN,
            });
        }
    }
    out.state.rules[rule_index].previous_series = returned;
    error
}

/// Transitions that turn `prev` into `next`.
fn diff_alerts(
    rule_index: usize,
    prev: &BTreeMap<u64, ActiveAlert>,
    next: &BTreeMap<u64, ActiveAlert>,
    out: &mut Vec<Transition>,
) {
    let kind_of = |a: &ActiveAlert| match a.state {
        AlertState::Pending => TransitionKind::Pending,
        AlertState::Firing => TransitionKind::Firing,
        AlertState::Inactive => TransitionKind::Resolved,
    };
    for (fp, a) in next {
        let kind = match prev.get(fp) {
            None => Some(kind_of(a)),
            Some(p) if p.active_at_ms != a.active_at_ms || p.state != a.state => Some(kind_of(a)),
            Some(p) if p.keep_firing_since_ms != a.keep_firing_since_ms => {
                Some(TransitionKind::KeepFiring)
            }
            Some(_) => None,
        };
        if let Some(kind) = kind {
            out.push(Transition {
                rule_index,
                fingerprint: *fp,
                kind,
                alert: a.clone(),
            });
        }
    }
    for (fp, p) in prev {
        if !next.contains_key(fp) {
            out.push(Transition {
                rule_index,
                fingerprint: *fp,
                kind: TransitionKind::Removed,
                alert: p.clone(),
            });
        }
    }
}

/// Answers `expr` for a rule: from the prefetched answers when there are some, else by the
/// engine over the (overlaid) store.
pub(crate) fn rule_query(
    engine: &Engine,
    store: &dyn Store,
    prefetched: Option<&Prefetched>,
    expr: &str,
    ts: i64,
) -> Result<Vec<Sample>, EvalError> {
    let Some(p) = prefetched else {
        return query_vector(engine, store, expr, ts);
    };
    match p.answers.get(expr) {
        None => Err(EvalError::Remote(format!("no answer fetched for {expr:?}"))),
        Some(Err(e)) => Err(EvalError::Remote(e.clone())),
        Some(Ok(Value::Vector(v))) => Ok(v.clone()),
        Some(Ok(Value::Scalar { t, v })) => Ok(vec![Sample {
            labels: Labels::empty(),
            t: *t,
            v: *v,
        }]),
        Some(Ok(_)) => Err(EvalError::NotVectorOrScalar),
    }
}

/// Runs `expr` as an instant query at `ts`; a scalar becomes one sample without labels, as
/// Prometheus's `EngineQueryFunc` does.
pub(crate) fn query_vector(
    engine: &Engine,
    store: &dyn Store,
    expr: &str,
    ts: i64,
) -> Result<Vec<Sample>, EvalError> {
    match engine.instant(store, expr, ts)? {
        Value::Vector(v) => Ok(v),
        Value::Scalar { t, v } => Ok(vec![Sample {
            labels: Labels::empty(),
            t,
            v,
        }]),
        Value::Matrix(_) | Value::String { .. } => Err(EvalError::NotVectorOrScalar),
    }
}

/// A query error worded exactly as Prometheus words it where ours adds detail.
pub fn query_message(e: &QueryError) -> String {
    match e {
        QueryError::TooManySamples { .. } => {
            "query processing would load too many samples into memory in query execution".to_owned()
        }
        other => other.to_string(),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
