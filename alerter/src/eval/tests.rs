//! Unit tests of the evaluation core: one test per semantic, driven through [`eval_group`]
//! over a `MemStore`, with the written samples appended back as a caller would.

use super::*;
use crate::promql::{MemStore, is_stale};
use crate::rules::parse_rule_file;

const MIN: i64 = 60_000;

fn group(yaml: &str) -> RuleGroup {
    let f = parse_rule_file("t.yml", yaml).expect("valid rule file");
    f.groups.into_iter().next().expect("one group")
}

/// A test harness: a group, a store with input samples, and the state carried over.
struct Run {
    group: RuleGroup,
    store: MemStore,
    state: GroupState,
    engine: Engine,
    opts: EvalOptions,
}

impl Run {
    fn new(yaml: &str) -> Self {
        let group = group(yaml);
        let state = GroupState::new(&group);
        Self {
            group,
            store: MemStore::new(),
            state,
            engine: Engine::default(),
            opts: EvalOptions::default(),
        }
    }

    /// `metric` gets `values[i]` at minute `i` (`None`: no sample).
    fn series(&mut self, labels: &[(&str, &str)], values: &[Option<f64>]) {
        let l = Labels::from_pairs(labels.iter().copied());
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                self.store.append(l.clone(), i as i64 * MIN, *v).unwrap();
            }
        }
    }

    fn eval(&mut self, minute: i64) -> GroupEval {
        let out = eval_group(
            &self.engine,
            &self.group,
            &self.store,
            minute * MIN,
            &self.state,
            &self.opts,
        )
        .expect("state matches group");
        out.state.validate(&self.group).expect("valid state");
        for s in &out.samples {
            // Input and rule outputs never collide in these tests.
            let _ = self.store.append(s.labels.clone(), s.t, s.v);
        }
        self.state = out.state.clone();
        out
    }

    fn alerts(&self, rule: usize) -> Vec<&ActiveAlert> {
        self.state.rules[rule].alerts.values().collect()
    }

    fn query(&self, expr: &str, minute: i64) -> Vec<(String, f64)> {
        match self
            .engine
            .instant(&self.store, expr, minute * MIN)
            .unwrap()
        {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
            other => panic!("not a vector: {other:?}"),
        }
    }
}

fn some(v: &[f64]) -> Vec<Option<f64>> {
    v.iter().map(|x| Some(*x)).collect()
}

const FOR_RULE: &str = r#"
groups:
- name: g
  rules:
  - alert: High
    expr: x > 5
    for: 2m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} is {{ $value }}"}
"#;

#[test]
fn pending_then_firing_after_for() {
    let mut r = Run::new(FOR_RULE);
    r.series(
        &[("__name__", "x"), ("instance", "a")],
        &some(&[1.0, 9.0, 9.0, 9.0, 9.0]),
    );
    assert!(r.eval(0).transitions.is_empty());
    let t = r.eval(1).transitions;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].kind, TransitionKind::Pending);
    assert_eq!(t[0].alert.active_at_ms, MIN);
    assert!(r.eval(2).transitions.is_empty());
    let t = r.eval(3).transitions;
    assert_eq!(t[0].kind, TransitionKind::Firing);
    let a = r.alerts(0)[0];
    assert_eq!(a.fired_at_ms, Some(3 * MIN));
    assert_eq!(
        a.labels.to_string(),
        r#"{alertname="High", instance="a", severity="page"}"#
    );
    assert_eq!(a.annotations["summary"], "a is 9");
    // ALERTS and ALERTS_FOR_STATE as Prometheus writes them.
    assert_eq!(
        r.query("ALERTS", 3),
        vec![(
            r#"{__name__="ALERTS", alertname="High", alertstate="firing", instance="a", severity="page"}"#
                .to_owned(),
            1.0
        )]
    );
    assert_eq!(r.query("ALERTS_FOR_STATE", 3)[0].1, 60.0);
}

#[test]
fn pending_alert_that_clears_is_removed_and_its_series_go_stale() {
    let mut r = Run::new(FOR_RULE);
    r.series(
        &[("__name__", "x"), ("instance", "a")],
        &some(&[9.0, 1.0, 1.0]),
    );
    r.eval(0);
    let out = r.eval(1);
    assert_eq!(out.transitions[0].kind, TransitionKind::Removed);
    assert!(r.alerts(0).is_empty());
    let stale: Vec<_> = out.samples.iter().filter(|s| is_stale(s.v)).collect();
    assert_eq!(stale.len(), 2, "ALERTS and ALERTS_FOR_STATE marked stale");
    assert!(r.query("ALERTS", 1).is_empty());
}

#[test]
fn firing_alert_resolves_is_kept_15m_then_removed() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  rules:
  - alert: High
    expr: x > 5
"#,
    );
    let mut v = vec![Some(9.0), Some(1.0)];
    v.extend(std::iter::repeat_n(Some(1.0), 20));
    r.series(&[("__name__", "x")], &v);
    assert_eq!(r.eval(0).transitions[0].kind, TransitionKind::Firing);
    let out = r.eval(1);
    assert_eq!(out.transitions[0].kind, TransitionKind::Resolved);
    assert_eq!(out.to_send.len(), 1, "the resolution is sent");
    assert_eq!(r.alerts(0)[0].resolved_at_ms, Some(MIN));
    for m in 2..=16 {
        assert!(r.eval(m).transitions.is_empty(), "kept at minute {m}");
    }
    // Dropped once more than 15 minutes have passed since the resolution.
    assert_eq!(r.eval(17).transitions[0].kind, TransitionKind::Removed);
    assert!(r.alerts(0).is_empty());
}

#[test]
fn keep_firing_for_holds_then_resolves() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  rules:
  - alert: High
    expr: x > 5
    keep_firing_for: 2m
"#,
    );
    r.series(
        &[("__name__", "x")],
        &some(&[9.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0]),
    );
    r.eval(0);
    let t = r.eval(1).transitions;
    assert_eq!(t[0].kind, TransitionKind::KeepFiring);
    assert_eq!(r.alerts(0)[0].keep_firing_since_ms, Some(MIN));
    // The condition returns: the keep-firing clock is cleared.
    assert_eq!(r.eval(2).transitions[0].kind, TransitionKind::KeepFiring);
    assert_eq!(r.alerts(0)[0].keep_firing_since_ms, None);
    r.eval(3);
    assert_eq!(r.alerts(0)[0].state, AlertState::Firing);
    r.eval(4);
    assert_eq!(r.alerts(0)[0].state, AlertState::Firing, "4m - 3m < 2m");
    assert_eq!(r.eval(5).transitions[0].kind, TransitionKind::Resolved);
}

#[test]
fn limit_exceeded_clears_alerts_and_reports() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  limit: 1
  rules:
  - alert: High
    expr: x > 5
"#,
    );
    r.series(&[("__name__", "x"), ("i", "1")], &some(&[9.0, 9.0]));
    r.series(&[("__name__", "x"), ("i", "2")], &some(&[1.0, 9.0]));
    assert!(r.eval(0).failures.is_empty());
    assert_eq!(r.alerts(0).len(), 1);
    let out = r.eval(1);
    assert_eq!(
        out.failures[0].error.to_string(),
        "exceeded limit of 1 with 2 alerts"
    );
    assert!(r.alerts(0).is_empty());
    assert_eq!(out.transitions[0].kind, TransitionKind::Removed);
    assert!(out.samples.is_empty());
}

#[test]
fn recording_limit_and_duplicates_are_errors() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  limit: 1
  rules:
  - record: r
    expr: x
  - record: d
    expr: x * 2
    labels: {i: same}
"#,
    );
    r.series(&[("__name__", "x"), ("i", "1")], &some(&[1.0]));
    r.series(&[("__name__", "x"), ("i", "2")], &some(&[2.0]));
    let out = r.eval(0);
    let msgs: Vec<String> = out.failures.iter().map(|f| f.error.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "exceeded limit of 1 with 2 series",
            "vector contains metrics with the same labelset after applying rule labels"
        ]
    );
    assert!(out.samples.is_empty());
}

#[test]
fn duplicate_alert_labels_keep_previous_state() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  rules:
  - alert: A
    expr: x > 0
    labels: {instance: fixed}
"#,
    );
    r.series(&[("__name__", "x"), ("instance", "1")], &some(&[1.0, 1.0]));
    r.eval(0);
    let before = r.state.clone();
    r.series(&[("__name__", "x"), ("instance", "2")], &[None, Some(1.0)]);
    let out = r.eval(1);
    assert_eq!(
        out.failures[0].error.to_string(),
        "vector contains metrics with the same labelset after applying alert labels"
    );
    assert_eq!(out.state, before);
    assert!(out.transitions.is_empty());
}

#[test]
fn failed_query_keeps_state_and_never_resolves() {
    let mut r = Run::new(FOR_RULE);
    r.series(&[("__name__", "x")], &some(&[9.0, 9.0, 9.0, 9.0]));
    r.eval(0);
    r.eval(2);
    assert_eq!(r.alerts(0)[0].state, AlertState::Firing);
    let before = r.state.clone();
    // The same group with a query the engine refuses (too many samples).
    r.engine = Engine::new(crate::promql::EngineOptions {
        max_samples: 0,
        ..Default::default()
    });
    let out = r.eval(3);
    assert_eq!(out.failures.len(), 1);
    assert!(matches!(out.failures[0].error, EvalError::Query(_)));
    assert_eq!(out.state, before, "state untouched");
    assert!(out.transitions.is_empty() && out.samples.is_empty());
}

#[test]
fn recording_results_visible_to_later_rules_and_vanished_series_go_stale() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  rules:
  - record: job:x:sum
    expr: sum by (job) (x)
    labels: {team: a}
  - alert: Sum
    expr: job:x:sum > 1
"#,
    );
    r.series(&[("__name__", "x"), ("job", "j")], &some(&[2.0]));
    let out = r.eval(0);
    assert_eq!(
        out.state.rules[1].alerts.len(),
        1,
        "alert saw the recording"
    );
    let a = out.state.rules[1].alerts.values().next().unwrap();
    assert_eq!(
        a.labels.to_string(),
        r#"{alertname="Sum", job="j", team="a"}"#
    );
    // Five minutes later x is gone: the recorded series gets a staleness marker.
    let out = r.eval(6);
    assert!(
        out.samples
            .iter()
            .any(|s| s.rule_index == 0 && is_stale(s.v) && s.labels.get("__name__") == "job:x:sum")
    );
}

#[test]
fn empty_label_template_keeps_raw_text_in_alerts_series() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  rules:
  - alert: A
    expr: x > 0
    labels: {bad: "{{ $labels.missing }}"}
"#,
    );
    r.series(&[("__name__", "x")], &some(&[1.0]));
    r.eval(0);
    assert_eq!(r.alerts(0)[0].labels.to_string(), r#"{alertname="A"}"#);
    let got = r.query("ALERTS", 0);
    assert_eq!(
        got[0].0,
        r#"{__name__="ALERTS", alertname="A", alertstate="firing", bad="{{ $labels.missing }}"}"#
    );
}

#[test]
fn resume_from_stored_state_continues_for_timer() {
    let mut r = Run::new(FOR_RULE);
    r.series(&[("__name__", "x")], &some(&[9.0, 9.0, 9.0, 9.0]));
    r.eval(0);
    r.eval(1);
    let a = r.alerts(0)[0].clone();
    assert_eq!(a.state, AlertState::Pending);
    // Another worker rebuilds the state from the stored instance.
    let stored = StoredAlert::from_alert(&a);
    let rebuilt = GroupState::from_stored(&r.group, [(0, stored)]).unwrap();
    assert_eq!(rebuilt.rules[0].previous_series.len(), 2);
    // Round-trips through serde as a worker would persist it.
    let json = serde_json::to_string(&rebuilt).unwrap();
    let back: GroupState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rebuilt);
    r.state = back;
    let out = r.eval(2);
    assert_eq!(out.transitions[0].kind, TransitionKind::Firing);
    assert_eq!(r.alerts(0)[0].active_at_ms, 0, "timer continued");
}

#[test]
fn stored_alert_for_wrong_rule_is_refused() {
    let g = group(FOR_RULE);
    let stored = StoredAlert {
        state: AlertState::Pending,
        active_at_ms: 0,
        fired_at_ms: None,
        resolved_at_ms: None,
        value: 1.0,
        labels: Labels::from_pairs([("alertname", "Other")]),
        annotations: BTreeMap::new(),
        keep_firing_since_ms: None,
    };
    assert!(GroupState::from_stored(&g, [(0, stored.clone())]).is_err());
    assert!(GroupState::from_stored(&g, [(3, stored)]).is_err());
    let mut wrong = GroupState::new(&g);
    wrong.rules.clear();
    let out = eval_group(
        &Engine::default(),
        &g,
        &MemStore::new(),
        0,
        &wrong,
        &EvalOptions::default(),
    );
    assert!(matches!(out, Err(EvalError::StateMismatch(_))));
}

#[test]
fn resend_delay_and_query_offset() {
    let mut r = Run::new(
        r#"
groups:
- name: g
  query_offset: 1m
  rules:
  - alert: A
    expr: x > 5
  - record: rec
    expr: x
"#,
    );
    r.series(&[("__name__", "x")], &some(&[9.0, 1.0, 1.0, 1.0]));
    // At 1m the query runs at 0m (x = 9): firing.
    let out = r.eval(1);
    assert_eq!(out.to_send.len(), 1);
    assert_eq!(r.alerts(0)[0].state, AlertState::Firing);
    let rec: Vec<_> = out.samples.iter().filter(|s| s.rule_index == 1).collect();
    assert_eq!((rec[0].t, rec[0].v), (0, 9.0), "recorded at the query time");
    // Not re-sent within the resend delay.
    r.opts.resend_delay_ms = 5 * MIN;
    let out = r.eval(1);
    assert!(out.to_send.is_empty());
}

/// The persisted fields of every alert of a state, by rule index, for comparing runs.
fn persisted(state: &GroupState) -> Vec<(usize, StoredAlert)> {
    let mut out = Vec::new();
    for (i, rs) in state.rules.iter().enumerate() {
        for a in rs.alerts.values() {
            let mut s = StoredAlert::from_alert(a);
            // Values and annotations change at every evaluation; they are not transitions.
            s.value = 0.0;
            s.annotations.clear();
            out.push((i, s));
        }
    }
    out
}

#[test]
fn persisting_only_transitions_and_resuming_every_step_matches_a_continuous_run() {
    let yaml = r#"
groups:
- name: g
  rules:
  - alert: Slow
    expr: x > 3
    for: 3m
  - alert: Sticky
    expr: x > 5
    keep_firing_for: 4m
"#;
    let mut continuous = Run::new(yaml);
    let mut resumed = Run::new(yaml);
    // Deterministic flapping values for three series.
    for inst in ["a", "b", "c"] {
        let seed = inst.as_bytes()[0] as u64;
        let values: Vec<Option<f64>> = (0..60u64)
            .map(|i| {
                let h = (i * 2_654_435_761 + seed * 40_503) % 97;
                (!h.is_multiple_of(11)).then_some((h % 9) as f64)
            })
            .collect();
        continuous.series(&[("__name__", "x"), ("i", inst)], &values);
        resumed.series(&[("__name__", "x"), ("i", inst)], &values);
    }
    let mut stored: BTreeMap<(usize, u64), StoredAlert> = BTreeMap::new();
    let mut kinds = std::collections::BTreeSet::new();
    for minute in 0..60 {
        continuous.eval(minute);
        let out = resumed.eval(minute);
        for t in &out.transitions {
            kinds.insert(format!("{:?}", t.kind));
            let key = (t.rule_index, t.fingerprint);
            match t.kind {
                TransitionKind::Removed => {
                    stored.remove(&key);
                }
                _ => {
                    stored.insert(key, StoredAlert::from_alert(&t.alert));
                }
            }
        }
        // A new worker takes over from the store at every step.
        resumed.state = GroupState::from_stored(
            &resumed.group,
            stored.iter().map(|((i, _), s)| (*i, s.clone())),
        )
        .unwrap();
        assert_eq!(
            persisted(&continuous.state),
            persisted(&resumed.state),
            "diverged at minute {minute}"
        );
    }
    assert_eq!(kinds.len(), 5, "every transition kind exercised: {kinds:?}");
}
