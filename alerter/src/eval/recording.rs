//! One recording rule at one timestamp: Prometheus 2.42's `RecordingRule.Eval`.

use std::collections::BTreeSet;

use super::alerting::RuleEnv;
use super::{EvalError, WrittenSample};
use crate::promql::labels::METRIC_NAME;
use crate::rules::RecordingRule;

/// Evaluates `rule`: the query result renamed to the record name with the group's and the
/// rule's labels set. Duplicate label sets and an exceeded limit are errors (nothing written).
pub(crate) fn eval_recording(
    env: &RuleEnv<'_>,
    rule: &RecordingRule,
) -> Result<Vec<WrittenSample>, EvalError> {
    let vector = super::rule_query(
        env.engine,
        env.store,
        env.prefetched,
        &rule.expr,
        env.query_ts,
    )?;
    let mut out = Vec::with_capacity(vector.len());
    let mut seen = BTreeSet::new();
    for s in vector {
        let mut labels = s.labels;
        labels.set(METRIC_NAME.to_owned(), rule.name.clone());
        for (n, v) in env.group_labels.iter().chain(rule.labels.iter()) {
            labels.set(n.clone(), v.clone());
        }
        if !seen.insert(labels.clone()) {
            return Err(EvalError::DuplicateLabelset {
                what: "rule labels",
            });
        }
        out.push(WrittenSample {
            rule_index: env.rule_index,
            labels,
            t: env.query_ts,
            v: s.v,
        });
    }
    if let Some(limit) = env.limit
        && out.len() as u64 > limit
    {
        return Err(EvalError::SeriesLimit {
            limit,
            count: out.len() as u64,
        });
    }
    Ok(out)
}
