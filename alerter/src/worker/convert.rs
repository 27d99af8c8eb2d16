//! Between the evaluator's in-memory state ([`crate::eval`]) and the replicated model
//! ([`tocsin_state::model`]): transitions become `AlertUpdate`s to commit; committed
//! instances become the state a new owner resumes from.

use std::collections::BTreeMap;

use tocsin_state::model::{self, AlertInstance, AlertUpdate, Fingerprint, GroupKey};

use crate::eval::{AlertState, StoredAlert, Transition, TransitionKind};
use crate::promql::Labels;
use crate::rules::{Rule, RuleGroup};

fn to_model_state(s: AlertState) -> model::AlertState {
    match s {
        AlertState::Pending => model::AlertState::Pending,
        AlertState::Firing => model::AlertState::Firing,
        AlertState::Inactive => model::AlertState::Resolved,
    }
}

fn from_model_state(s: model::AlertState) -> AlertState {
    match s {
        model::AlertState::Pending => AlertState::Pending,
        model::AlertState::Firing => AlertState::Firing,
        model::AlertState::Resolved => AlertState::Inactive,
    }
}

/// The store update for one transition of rule `rule_index` of `group`.
pub fn to_update(key: &GroupKey, group: &RuleGroup, t: &Transition) -> AlertUpdate {
    if t.kind == TransitionKind::Removed {
        return AlertUpdate::Remove(Fingerprint(t.fingerprint));
    }
    let a = &t.alert;
    AlertUpdate::Upsert(std::sync::Arc::new(AlertInstance {
        fingerprint: Fingerprint(t.fingerprint),
        group: key.clone(),
        rule: group
            .rules
            .get(t.rule_index)
            .map_or_else(String::new, |r| r.name().to_owned()),
        labels: a
            .labels
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        annotations: a.annotations.clone(),
        state: to_model_state(a.state),
        active_at_ms: a.active_at_ms,
        fired_at_ms: a.fired_at_ms,
        resolved_at_ms: a.resolved_at_ms,
        keep_firing_since_ms: a.keep_firing_since_ms,
        value: a.value,
    }))
}

/// The committed instances of `group`, each with the index of its alerting rule, ready for
/// `GroupState::from_stored`. Instances of rules that no longer exist are dropped (the rule
/// was edited away). Several alerting rules with the same name resolve to the first.
pub fn from_instances(group: &RuleGroup, instances: &[AlertInstance]) -> Vec<(usize, StoredAlert)> {
    let index: BTreeMap<&str, usize> = group
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Rule::Alerting(_)))
        .rev()
        .map(|(i, r)| (r.name(), i))
        .collect();
    instances
        .iter()
        .filter_map(|inst| {
            let i = *index.get(inst.rule.as_str())?;
            Some((
                i,
                StoredAlert {
                    state: from_model_state(inst.state),
                    active_at_ms: inst.active_at_ms,
                    fired_at_ms: inst.fired_at_ms,
                    resolved_at_ms: inst.resolved_at_ms,
                    keep_firing_since_ms: inst.keep_firing_since_ms,
                    value: inst.value,
                    labels: Labels::from_pairs(
                        inst.labels.iter().map(|(k, v)| (k.clone(), v.clone())),
                    ),
                    annotations: inst.annotations.clone(),
                },
            ))
        })
        .collect()
}
