//! One alerting rule at one timestamp: Prometheus 2.42's `AlertingRule.Eval` (with
//! `keep_firing_for`) and `sendAlerts`, as a pure function of the previous [`RuleState`].

use std::collections::BTreeMap;

use super::state::{
    ALERT_NAME_LABEL, ActiveAlert, AlertState, RESOLVED_RETENTION_MS, RuleState, alerts_series,
    for_state_series, raw_rule_labels,
};
use super::{EvalError, EvalOptions, WrittenSample};
use crate::promql::{Engine, Sample, Store};
use crate::rules::AlertingRule;
use crate::template::{self, AlertContext, QueryFn, Template, TemplateError};

/// What evaluating an alerting rule produced.
pub(crate) struct AlertOutcome {
    /// The rule's alerts after this evaluation (`None`: unchanged).
    pub alerts: Option<BTreeMap<u64, ActiveAlert>>,
    /// `ALERTS` / `ALERTS_FOR_STATE` samples to write (empty on error).
    pub samples: Vec<WrittenSample>,
    /// Alerts to hand to the notifier now.
    pub to_send: Vec<ActiveAlert>,
    /// Set when the evaluation failed.
    pub error: Option<EvalError>,
}

/// Inputs shared by every rule of a group evaluation.
pub(crate) struct RuleEnv<'a> {
    pub engine: &'a Engine,
    pub store: &'a dyn Store,
    /// Answers fetched beforehand from a remote datasource, if any.
    pub prefetched: Option<&'a super::Prefetched>,
    pub opts: &'a EvalOptions,
    pub group_labels: &'a BTreeMap<String, String>,
    pub limit: Option<u64>,
    /// Evaluation timestamp (ms).
    pub ts: i64,
    /// Query timestamp: `ts` minus the query offset (ms).
    pub query_ts: i64,
    pub rule_index: usize,
}

/// Evaluates `rule`. A failed query or duplicate label sets leave the alerts untouched;
/// exceeding the group limit clears them, as Prometheus does.
pub(crate) fn eval_alerting(
    env: &RuleEnv<'_>,
    rule: &AlertingRule,
    prev: &RuleState,
) -> AlertOutcome {
    let failed = |e: EvalError| AlertOutcome {
        alerts: None,
        samples: Vec::new(),
        to_send: Vec::new(),
        error: Some(e),
    };
    let vector = match super::rule_query(
        env.engine,
        env.store,
        env.prefetched,
        &rule.expr,
        env.query_ts,
    ) {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let fresh = match build_alerts(env, rule, &vector) {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let ts = env.ts;
    let mut active = prev.alerts.clone();
    for (h, a) in &fresh {
        match active.get_mut(h) {
            Some(old) if old.state != AlertState::Inactive => {
                old.value = a.value;
                old.annotations = a.annotations.clone();
            }
            _ => {
                active.insert(*h, a.clone());
            }
        }
    }
    let timers = Timers {
        ts,
        for_ms: duration_ms(rule.for_),
        keep_ms: duration_ms(rule.keep_firing_for),
    };
    let raw = raw_rule_labels(env.group_labels, &rule.labels);
    let mut samples = Vec::new();
    let active_count = advance(&mut active, &fresh, &timers, |a| {
        samples.push(WrittenSample {
            rule_index: env.rule_index,
            labels: alerts_series(&raw, a),
            t: ts,
            v: 1.0,
        });
        samples.push(WrittenSample {
            rule_index: env.rule_index,
            labels: for_state_series(&raw, a),
            t: ts,
            // Go's `float64(ActiveAt.Unix())`: whole seconds, floored.
            v: a.active_at_ms.div_euclid(1000) as f64,
        });
    });
    if let Some(limit) = env.limit
        && active_count > limit
    {
        return AlertOutcome {
            alerts: Some(BTreeMap::new()),
            samples: Vec::new(),
            to_send: Vec::new(),
            error: Some(EvalError::AlertLimit {
                limit,
                count: active_count,
            }),
        };
    }
    let to_send = send_alerts(&mut active, ts, env.opts);
    AlertOutcome {
        alerts: Some(active),
        samples,
        to_send,
        error: None,
    }
}

/// The `for` and `keep_firing_for` clocks of one evaluation.
struct Timers {
    ts: i64,
    for_ms: i64,
    keep_ms: i64,
}

/// Prometheus's pass over the active alerts: alerts missing from `fresh` are kept firing
/// (`keep_firing_for`), resolved, or dropped (pending, or resolved longer than the retention);
/// pending alerts old enough fire. `emit` sees every pending or firing alert. Returns their
/// number (what the group `limit` counts).
fn advance(
    active: &mut BTreeMap<u64, ActiveAlert>,
    fresh: &BTreeMap<u64, ActiveAlert>,
    t: &Timers,
    mut emit: impl FnMut(&ActiveAlert),
) -> u64 {
    let ts = t.ts;
    let mut count = 0;
    let mut drop = Vec::new();
    for (h, a) in active.iter_mut() {
        if fresh.contains_key(h) {
            a.keep_firing_since_ms = None;
        } else {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && t.keep_ms > 0 {
                let since = *a.keep_firing_since_ms.get_or_insert(ts);
                keep_firing = ts.saturating_sub(since) < t.keep_ms;
            }
            let expired = a
                .resolved_at_ms
                .is_some_and(|r| ts.saturating_sub(r) > RESOLVED_RETENTION_MS);
            if a.state == AlertState::Pending || expired {
                drop.push(*h);
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at_ms = Some(ts);
            }
            if !keep_firing {
                continue;
            }
        }
        count += 1;
        if a.state == AlertState::Pending && ts.saturating_sub(a.active_at_ms) >= t.for_ms {
            a.state = AlertState::Firing;
            a.fired_at_ms = Some(ts);
        }
        emit(a);
    }
    for h in drop {
        active.remove(&h);
    }
    count
}

/// Prometheus's `sendAlerts`: marks the alerts the notifier must be given now.
fn send_alerts(
    active: &mut BTreeMap<u64, ActiveAlert>,
    ts: i64,
    opts: &EvalOptions,
) -> Vec<ActiveAlert> {
    // Valid for two missed evaluations or sends.
    let delta = opts.resend_delay_ms.max(opts.group_interval_ms);
    let mut out = Vec::new();
    for a in active.values_mut() {
        if needs_sending(a, ts, opts.resend_delay_ms) {
            a.last_sent_at_ms = Some(ts);
            a.valid_until_ms = Some(ts.saturating_add(delta.saturating_mul(4)));
            out.push(a.clone());
        }
    }
    out
}

/// Prometheus's `Alert.needsSending`: never while pending; again after a resolution not yet
/// sent; otherwise once `resend_delay` has passed since the last send.
pub fn needs_sending(a: &ActiveAlert, ts: i64, resend_delay_ms: i64) -> bool {
    if a.state == AlertState::Pending {
        return false;
    }
    let last = a.last_sent_at_ms;
    if let Some(resolved) = a.resolved_at_ms
        && last.is_none_or(|l| resolved > l)
    {
        return true;
    }
    last.is_none_or(|l| l.saturating_add(resend_delay_ms) < ts)
}

/// One new alert per sample, keyed by fingerprint; refuses duplicate label sets.
fn build_alerts(
    env: &RuleEnv<'_>,
    rule: &AlertingRule,
    vector: &[Sample],
) -> Result<BTreeMap<u64, ActiveAlert>, EvalError> {
    let tmpl_name = format!("__alert_{}", rule.name);
    let parse = |text: &str| Template::parse(&tmpl_name, text).map_err(|e| e.to_string());
    let label_tmpls: Vec<(&String, Result<Template, String>)> = env
        .group_labels
        .iter()
        .filter(|(n, _)| !rule.labels.contains_key(*n))
        .chain(rule.labels.iter())
        .map(|(n, v)| (n, parse(v)))
        .collect();
    let annotation_tmpls: Vec<(&String, Result<Template, String>)> = rule
        .annotations
        .iter()
        .map(|(n, v)| (n, parse(v)))
        .collect();
    let query = TemplateQuery {
        engine: env.engine,
        store: env.store,
        prefetched: env.prefetched,
        ts: env.query_ts,
    };
    let mut out = BTreeMap::new();
    for s in vector {
        let ctx = AlertContext {
            labels: s
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            external_labels: env.opts.external_labels.clone(),
            external_url: env.opts.external_url.clone(),
            value: s.v,
        };
        let expand = |t: &Result<Template, String>| match t {
            Ok(t) => t
                .render(&ctx, &env.opts.template_limits, Some(&query))
                .unwrap_or_else(|e| expansion_error(&e)),
            Err(e) => format!("<error expanding template: {e}>"),
        };
        let mut labels = s.labels.without_metric_name();
        for (n, t) in &label_tmpls {
            labels.set((*n).clone(), expand(t));
        }
        labels.set(ALERT_NAME_LABEL.to_owned(), rule.name.clone());
        let annotations = annotation_tmpls
            .iter()
            .map(|(n, t)| ((*n).clone(), expand(t)))
            .collect();
        let h = labels.fingerprint().0;
        let alert = ActiveAlert {
            state: AlertState::Pending,
            labels,
            annotations,
            value: s.v,
            active_at_ms: env.ts,
            fired_at_ms: None,
            resolved_at_ms: None,
            last_sent_at_ms: None,
            valid_until_ms: None,
            keep_firing_since_ms: None,
        };
        if out.insert(h, alert).is_some() {
            return Err(EvalError::DuplicateLabelset {
                what: "alert labels",
            });
        }
    }
    Ok(out)
}

/// Length of the variable definitions Prometheus prepends to every alert template (on the
/// first line, so Go's columns there are shifted by it).
const PRELUDE_LEN: usize = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}\
{{$externalURL := .ExternalURL}}{{$value := .Value}}"
    .len();

/// Prometheus's text for a template that failed to execute. Go reports 0-based columns for
/// execution errors, counting the prelude on line 1; the rest of the message is worded by
/// our template engine.
fn expansion_error(e: &TemplateError) -> String {
    match e {
        TemplateError::Exec {
            template,
            line,
            column,
            message,
        } => {
            let column = column.saturating_sub(1) + if *line == 1 { PRELUDE_LEN } else { 0 };
            format!(
                "<error expanding template: error executing template {template}: template: \
                 {template}:{line}:{column}: executing {template:?}: {message}>"
            )
        }
        other => format!("<error expanding template: {other}>"),
    }
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The `query` template function: an instant query at the rule's query time.
struct TemplateQuery<'a> {
    engine: &'a Engine,
    store: &'a dyn Store,
    prefetched: Option<&'a super::Prefetched>,
    ts: i64,
}

impl QueryFn for TemplateQuery<'_> {
    fn query(&self, expr: &str) -> Result<Vec<template::Sample>, String> {
        let v = super::rule_query(self.engine, self.store, self.prefetched, expr, self.ts)
            .map_err(|e| e.to_string())?;
        Ok(v.into_iter()
            .map(|s| template::Sample {
                labels: s
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect(),
                value: s.v,
            })
            .collect())
    }
}
