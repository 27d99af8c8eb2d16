//! Evaluating a group on answers fetched beforehand (what a worker does against a remote
//! datasource) gives exactly what evaluating in-process gives, step after step; a failed
//! answer keeps the rule's state.

use tocsin_alerter::eval::{
    EvalOptions, GroupState, Prefetched, TransitionKind, eval_group, eval_group_prefetched,
    group_queries,
};
use tocsin_alerter::promql::{Engine, Labels, MemStore};
use tocsin_alerter::rules::parse_rule_file;

const RULES: &str = r#"
groups:
- name: g
  interval: 1m
  rules:
  - alert: High
    expr: load > 5
    for: 2m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} at {{ $value }}"}
  - alert: Missing
    expr: absent(heartbeat)
    keep_firing_for: 1m
  - record: job:load:sum
    expr: sum by (job) (load)
"#;

fn store() -> MemStore {
    let mut s = MemStore::new();
    for (inst, values) in [
        ("a", [1.0, 6.0, 7.0, 8.0, 9.0, 2.0, 1.0, 7.0, 7.0, 7.0]),
        ("b", [9.0; 10]),
    ] {
        let labels = Labels::from_pairs([("__name__", "load"), ("job", "api"), ("instance", inst)]);
        for (i, v) in values.iter().enumerate() {
            s.append(labels.clone(), i as i64 * 60_000, *v).unwrap();
        }
    }
    let hb = Labels::from_pairs([("__name__", "heartbeat")]);
    for i in 0..4 {
        s.append(hb.clone(), i * 60_000, 1.0).unwrap();
    }
    s
}

#[test]
fn prefetched_evaluation_equals_in_process_evaluation() {
    let group = parse_rule_file("ns", RULES).unwrap().groups.remove(0);
    let engine = Engine::default();
    let store = store();
    let opts = EvalOptions::default();
    let (mut local, mut remote) = (GroupState::new(&group), GroupState::new(&group));
    let mut kinds = std::collections::BTreeSet::new();
    for step in 0..16 {
        let ts = step * 60_000;
        let a = eval_group(&engine, &group, &store, ts, &local, &opts).unwrap();
        let (exprs, query_ts) = group_queries(&group, ts, &opts);
        let mut p = Prefetched::default();
        for e in exprs {
            p.answers.insert(
                e.clone(),
                engine
                    .instant(&store, &e, query_ts)
                    .map_err(|e| e.to_string()),
            );
        }
        let b = eval_group_prefetched(&engine, &group, &p, ts, &remote, &opts).unwrap();
        assert_eq!(a.transitions, b.transitions, "step {step}");
        assert_eq!(a.state, b.state, "step {step}");
        kinds.extend(a.transitions.iter().map(|t| format!("{:?}", t.kind)));
        local = a.state;
        remote = b.state;
    }
    assert!(
        kinds.len() >= 3,
        "the scenario exercises several transition kinds: {kinds:?}"
    );
}

#[test]
fn a_failed_answer_keeps_the_rules_state() {
    let group = parse_rule_file("ns", RULES).unwrap().groups.remove(0);
    let engine = Engine::default();
    let store = store();
    let opts = EvalOptions::default();
    let mut state = GroupState::new(&group);
    for step in 0..4 {
        let ts = step * 60_000;
        let (exprs, query_ts) = group_queries(&group, ts, &opts);
        let mut p = Prefetched::default();
        for e in exprs {
            p.answers.insert(
                e.clone(),
                engine
                    .instant(&store, &e, query_ts)
                    .map_err(|e| e.to_string()),
            );
        }
        state = eval_group_prefetched(&engine, &group, &p, ts, &state, &opts)
            .unwrap()
            .state;
    }
    let firing_before = state.rules[0].alerts.len();
    assert!(firing_before > 0);
    // The datasource is down: every answer failed. Nothing resolves, nothing changes.
    let mut down = Prefetched::default();
    for e in group_queries(&group, 4 * 60_000, &opts).0 {
        down.answers.insert(e, Err("connection refused".into()));
    }
    let r = eval_group_prefetched(&engine, &group, &down, 4 * 60_000, &state, &opts).unwrap();
    assert_eq!(
        r.state.rules[0].alerts, state.rules[0].alerts,
        "no alert resolves because a query failed"
    );
    assert!(
        r.transitions
            .iter()
            .all(|t| t.kind != TransitionKind::Resolved)
    );
    assert_eq!(r.failures.len(), 3, "each rule reports its failure");
}
