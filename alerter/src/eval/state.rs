//! The persisted part of rule evaluation: [`GroupState`] (per rule: its active alerts and the
//! series it wrote last time) and how to rebuild it from stored alert instances.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::EvalError;
use crate::promql::labels::METRIC_NAME;
use crate::promql::{Fingerprint, Labels};
use crate::rules::{Rule, RuleGroup};

/// Name of the synthetic series that exposes active alerts.
pub const ALERTS_METRIC: &str = "ALERTS";
/// Name of the synthetic series that records when each active alert became active.
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";
/// Label carrying the alert name.
pub const ALERT_NAME_LABEL: &str = "alertname";
/// Label carrying the alert state on `ALERTS`.
pub const ALERT_STATE_LABEL: &str = "alertstate";
/// How long a resolved alert is kept (and re-sent as resolved): Prometheus's
/// `resolvedRetention`.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert instance, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertState {
    /// The condition holds but `for` has not elapsed yet.
    Pending,
    /// The condition held for `for` (or is kept firing by `keep_firing_for`).
    Firing,
    /// Resolved; kept for [`RESOLVED_RETENTION_MS`] so the resolution is re-sent.
    Inactive,
}

impl AlertState {
    /// `pending`, `firing` or `inactive`: the `alertstate` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Inactive => "inactive",
        }
    }
}

/// One alert instance of an alerting rule, with Prometheus's `rules.Alert` fields.
/// Times are milliseconds since the Unix epoch; `None` is Go's zero time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// The alert identity: sample labels without `__name__`, rule labels, `alertname`.
    #[serde(with = "labels_as_map")]
    pub labels: Labels,
    /// Rendered annotations; empty values are kept, as Prometheus keeps them.
    pub annotations: BTreeMap<String, String>,
    /// The last value of the expression for this alert.
    pub value: f64,
    /// When the condition started to hold (drives `for`).
    pub active_at_ms: i64,
    /// When it went from pending to firing.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved.
    pub resolved_at_ms: Option<i64>,
    /// When it was last handed to the notifier.
    pub last_sent_at_ms: Option<i64>,
    /// Until when the last notification stays valid (Alertmanager's `endsAt`).
    pub valid_until_ms: Option<i64>,
    /// When the condition stopped holding while `keep_firing_for` keeps the alert firing.
    pub keep_firing_since_ms: Option<i64>,
}

/// An alert instance as the store keeps it; enough to resume evaluation on another worker.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// When the condition started to hold.
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved.
    pub resolved_at_ms: Option<i64>,
    /// The last value.
    pub value: f64,
    /// The alert identity (must carry the rule's `alertname`).
    pub labels: Labels,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// When `keep_firing_for` started holding the alert (persisted by
    /// [`super::TransitionKind::KeepFiring`] transitions).
    pub keep_firing_since_ms: Option<i64>,
}

impl StoredAlert {
    /// The persisted fields of an alert.
    pub fn from_alert(a: &ActiveAlert) -> Self {
        Self {
            state: a.state,
            active_at_ms: a.active_at_ms,
            fired_at_ms: a.fired_at_ms,
            resolved_at_ms: a.resolved_at_ms,
            value: a.value,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            keep_firing_since_ms: a.keep_firing_since_ms,
        }
    }
}

/// Per-rule evaluation state, aligned with the group's rules by index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule's name (alert or record name), to detect a state/group mismatch.
    pub name: String,
    /// Alerts of an alerting rule, by label fingerprint (empty for recording rules).
    pub alerts: BTreeMap<u64, ActiveAlert>,
    /// Series the rule wrote at its last successful evaluation; those missing from the next
    /// one get a staleness marker.
    #[serde(with = "labels_list")]
    pub previous_series: Vec<Labels>,
}

/// The evaluation state of one rule group: what Prometheus keeps in memory between
/// evaluations. Serialisable, so a worker can persist it or rebuild it with
/// [`GroupState::from_stored`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// One entry per rule of the group, in rule order.
    pub rules: Vec<RuleState>,
}

impl GroupState {
    /// The initial state for `group`: no alerts, no series written.
    pub fn new(group: &RuleGroup) -> Self {
        Self {
            rules: group
                .rules
                .iter()
                .map(|r| RuleState {
                    name: r.name().to_owned(),
                    ..RuleState::default()
                })
                .collect(),
        }
    }

    /// Rebuilds the state of `group` from stored alert instances, each given with the index
    /// of its alerting rule. `for` timers continue from the stored `active_at`. The series
    /// written last time are derived from the alerts (`ALERTS`, `ALERTS_FOR_STATE` of every
    /// pending or firing one), so they go stale as Prometheus's would; recording rules start
    /// with none (their vanished series then go stale by the lookback instead of a marker).
    pub fn from_stored(
        group: &RuleGroup,
        stored: impl IntoIterator<Item = (usize, StoredAlert)>,
    ) -> Result<Self, EvalError> {
        let mut state = Self::new(group);
        for (index, s) in stored {
            let Some(Rule::Alerting(rule)) = group.rules.get(index) else {
                return Err(EvalError::StateMismatch(format!(
                    "stored alert {} names rule index {index}, which is not an alerting rule of group {:?}",
                    s.labels, group.name
                )));
            };
            if s.labels.get(ALERT_NAME_LABEL) != rule.name {
                return Err(EvalError::StateMismatch(format!(
                    "stored alert {} does not carry alertname={:?}",
                    s.labels, rule.name
                )));
            }
            let alert = ActiveAlert {
                state: s.state,
                labels: s.labels,
                annotations: s.annotations,
                value: s.value,
                active_at_ms: s.active_at_ms,
                fired_at_ms: s.fired_at_ms,
                resolved_at_ms: s.resolved_at_ms,
                last_sent_at_ms: None,
                valid_until_ms: None,
                keep_firing_since_ms: s.keep_firing_since_ms,
            };
            let rs = &mut state.rules[index];
            rs.alerts.insert(alert.labels.fingerprint().0, alert);
        }
        for (i, rule) in group.rules.iter().enumerate() {
            if let Rule::Alerting(a) = rule {
                let raw = raw_rule_labels(&group.labels, &a.labels);
                let rs = &mut state.rules[i];
                let mut series: Vec<Labels> = rs
                    .alerts
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .flat_map(|a| [alerts_series(&raw, a), for_state_series(&raw, a)])
                    .collect();
                series.sort();
                series.dedup();
                rs.previous_series = series;
            }
        }
        state.validate(group)?;
        Ok(state)
    }

    /// Checks the invariants: one entry per rule with its name; alerts only on alerting
    /// rules, keyed by their fingerprint, with consistent timestamps.
    pub fn validate(&self, group: &RuleGroup) -> Result<(), EvalError> {
        let mismatch = |m: String| Err(EvalError::StateMismatch(m));
        if self.rules.len() != group.rules.len() {
            return mismatch(format!(
                "state has {} rules, group {:?} has {}",
                self.rules.len(),
                group.name,
                group.rules.len()
            ));
        }
        for (rs, rule) in self.rules.iter().zip(&group.rules) {
            if rs.name != rule.name() {
                return mismatch(format!(
                    "state rule {:?} is {:?} in the group",
                    rs.name,
                    rule.name()
                ));
            }
            if matches!(rule, Rule::Recording(_)) && !rs.alerts.is_empty() {
                return mismatch(format!("recording rule {:?} has alerts", rs.name));
            }
            for (fp, a) in &rs.alerts {
                if a.labels.fingerprint() != Fingerprint(*fp) {
                    return mismatch(format!(
                        "alert {} filed under a wrong fingerprint",
                        a.labels
                    ));
                }
                let fired_ok = a.state != AlertState::Firing || a.fired_at_ms.is_some();
                let resolved_ok = a.state != AlertState::Inactive || a.resolved_at_ms.is_some();
                if !fired_ok || !resolved_ok {
                    return mismatch(format!(
                        "alert {} is {} without the matching timestamp",
                        a.labels,
                        a.state.as_str()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The rule's labels as written (templates unexpanded), group labels first. Prometheus
/// starts the `ALERTS` series from these and overwrites them with the alert's labels, so a
/// label whose template renders empty shows up there with its raw text.
pub(crate) fn raw_rule_labels(
    group: &BTreeMap<String, String>,
    rule: &BTreeMap<String, String>,
) -> Labels {
    Labels::from_pairs(group.iter().chain(rule.iter()))
}

fn synthetic(raw: &Labels, alert: &ActiveAlert, name: &str) -> Labels {
    let mut l = raw.clone();
    for (n, v) in alert.labels.iter() {
        l.set(n.to_owned(), v.to_owned());
    }
    l.set(METRIC_NAME.to_owned(), name.to_owned());
    l
}

/// `ALERTS{…, alertstate}` for `alert` (value 1).
pub(crate) fn alerts_series(raw: &Labels, alert: &ActiveAlert) -> Labels {
    let mut l = synthetic(raw, alert, ALERTS_METRIC);
    l.set(
        ALERT_STATE_LABEL.to_owned(),
        alert.state.as_str().to_owned(),
    );
    l
}

/// `ALERTS_FOR_STATE{…}` for `alert` (value: `active_at` in whole seconds).
pub(crate) fn for_state_series(raw: &Labels, alert: &ActiveAlert) -> Labels {
    synthetic(raw, alert, ALERTS_FOR_STATE_METRIC)
}

/// Serialises [`Labels`] as a name → value map.
mod labels_as_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::promql::Labels;

    pub fn serialize<S: Serializer>(l: &Labels, s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&str, &str> = l.iter().collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Labels::from_pairs(m))
    }
}

/// Serialises a list of [`Labels`] as a list of maps.
mod labels_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::promql::Labels;

    pub fn serialize<S: Serializer>(l: &[Labels], s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<BTreeMap<&str, &str>> = l.iter().map(|l| l.iter().collect()).collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Labels>, D::Error> {
        let v = Vec::<BTreeMap<String, String>>::deserialize(d)?;
        Ok(v.into_iter().map(Labels::from_pairs).collect())
    }
}
