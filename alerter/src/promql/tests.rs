//! Engine-level unit tests and property tests. Semantics against real Prometheus are covered
//! by `tests/promql_differential.rs`; these pin what that test cannot reach (staleness markers,
//! limits, configuration) and the invariants of aggregation.

use proptest::prelude::*;

use super::*;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn store_with(series: &[(Labels, Vec<(i64, f64)>)]) -> MemStore {
    let mut s = MemStore::new();
    for (labels, pts) in series {
        for (t, v) in pts {
            s.append(labels.clone(), *t, *v).expect("append in order");
        }
    }
    s
}

fn vector(v: Value) -> Vec<(Labels, f64)> {
    match v {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
        other => panic!("expected a vector, got {other:?}"),
    }
}

fn scalar(v: Value) -> f64 {
    match v {
        Value::Scalar { v, .. } => v,
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

#[test]
fn staleness_marker_ends_a_series_immediately() {
    let x = l(&[("__name__", "x")]);
    let s = store_with(&[(
        x.clone(),
        vec![(0, 1.0), (15_000, 2.0), (30_000, STALE_NAN)],
    )]);
    let e = engine();
    assert_eq!(
        vector(e.instant(&s, "x", 20_000).unwrap()),
        vec![(x.clone(), 2.0)]
    );
    // The marker hides the series although 15s is well inside the 5m lookback.
    assert!(vector(e.instant(&s, "x", 40_000).unwrap()).is_empty());
    // Range functions skip markers.
    let c = vector(e.instant(&s, "count_over_time(x[1m])", 40_000).unwrap());
    assert_eq!(c, vec![(Labels::empty(), 2.0)]);
}

#[test]
fn lookback_is_configurable_and_closed() {
    let x = l(&[("__name__", "x")]);
    let s = store_with(&[(x.clone(), vec![(0, 1.0)])]);
    let e = Engine::new(EngineOptions {
        lookback_delta_ms: 60_000,
        ..EngineOptions::default()
    });
    assert_eq!(vector(e.instant(&s, "x", 60_000).unwrap()).len(), 1);
    assert!(vector(e.instant(&s, "x", 60_001).unwrap()).is_empty());
    assert_eq!(vector(engine().instant(&s, "x", 300_000).unwrap()).len(), 1);
}

#[test]
fn offset_and_at_move_the_reference_time() {
    let x = l(&[("__name__", "x")]);
    let pts: Vec<(i64, f64)> = (0..100).map(|i| (i * 10_000, i as f64)).collect();
    let s = store_with(&[(x, pts)]);
    let e = engine();
    let at = |q: &str, t: i64| vector(e.instant(&s, q, t).unwrap())[0].1;
    assert_eq!(at("x", 500_000), 50.0);
    assert_eq!(at("x offset 1m", 500_000), 44.0);
    assert_eq!(at("x @ 100", 500_000), 10.0);
    assert_eq!(at("x @ 100 offset 20s", 500_000), 8.0);
    assert_eq!(at("x offset -1m", 500_000), 56.0);
    assert_eq!(at("x @ start()", 500_000), 50.0);
    let r = e.range(&s, "x @ end()", 100_000, 200_000, 50_000).unwrap();
    let Value::Matrix(m) = r else {
        panic!("matrix")
    };
    assert!(m[0].points.iter().all(|p| p.v == 20.0));
}

#[test]
fn subquery_steps_are_aligned_to_absolute_multiples() {
    let x = l(&[("__name__", "x")]);
    let pts: Vec<(i64, f64)> = (0..20).map(|i| (i * 10_000, i as f64)).collect();
    let s = store_with(&[(x, pts)]);
    let Value::Matrix(m) = engine().instant(&s, "x[1m:20s]", 70_000).unwrap() else {
        panic!("matrix")
    };
    let ts: Vec<i64> = m[0].points.iter().map(|p| p.t).collect();
    assert_eq!(ts, vec![20_000, 40_000, 60_000]);
}

#[test]
fn range_query_of_a_scalar_has_one_unlabelled_series() {
    let s = MemStore::new();
    let Value::Matrix(m) = engine().range(&s, "time()", 0, 60_000, 30_000).unwrap() else {
        panic!("matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    let v: Vec<f64> = m[0].points.iter().map(|p| p.v).collect();
    assert_eq!(v, vec![0.0, 30.0, 60.0]);
}

#[test]
fn parsed_queries_are_reusable() {
    let x = l(&[("__name__", "x")]);
    let s = store_with(&[(x, vec![(0, 1.0), (60_000, 5.0)])]);
    let e = engine();
    let q = e.parse("x * 2").unwrap();
    assert_eq!(q.text(), "x * 2");
    assert_eq!(vector(e.instant_parsed(&s, &q, 0).unwrap())[0].1, 2.0);
    assert_eq!(vector(e.instant_parsed(&s, &q, 60_000).unwrap())[0].1, 10.0);
}

#[test]
fn errors_are_typed() {
    let s = MemStore::new();
    let e = engine();
    assert!(matches!(
        e.instant(&s, "sum(", 0),
        Err(QueryError::Parse { .. })
    ));
    assert_eq!(
        e.instant(&s, "mad_over_time(x[5m])", 0)
            .unwrap_err()
            .to_string(),
        "function mad_over_time is not supported yet"
    );
    assert!(matches!(
        e.instant(&s, "sort_by_label(x)", 0),
        Err(QueryError::Unsupported(_))
    ));
    assert!(matches!(
        e.instant(&s, "limitk(1, x)", 0),
        Err(QueryError::Unsupported(_))
    ));
    assert!(matches!(
        e.range(&s, "x[5m]", 0, 10, 1),
        Err(QueryError::InvalidRange(_))
    ));
    assert!(matches!(
        e.range(&s, "x", 0, 10, 0),
        Err(QueryError::InvalidRange(_))
    ));
    assert!(matches!(
        e.range(&s, "x", 10, 0, 1),
        Err(QueryError::InvalidRange(_))
    ));
    assert!(matches!(
        e.range(&s, "x", 0, 1_000_000_000, 1),
        Err(QueryError::InvalidRange(_))
    ));
}

#[test]
fn duplicate_labelsets_and_many_to_many_are_rejected() {
    let a = l(&[("__name__", "a"), ("x", "1")]);
    let b = l(&[("__name__", "b"), ("x", "1")]);
    let s = store_with(&[(a, vec![(0, 1.0)]), (b, vec![(0, 2.0)])]);
    let e = engine();
    let err = e.instant(&s, r#"{__name__=~"a|b"} + 1"#, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "vector cannot contain metrics with the same labelset"
    );
    assert!(e.instant(&s, r#"{__name__=~"a|b"} > 0"#, 0).is_ok());
    let err = e
        .instant(&s, r#"a + on(x) {__name__=~"a|b"}"#, 0)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("many-to-many matching not allowed")
    );
}

#[test]
fn sample_limit_is_enforced() {
    let x = l(&[("__name__", "x")]);
    let pts: Vec<(i64, f64)> = (0..100).map(|i| (i * 1_000, 1.0)).collect();
    let s = store_with(&[(x, pts)]);
    let e = Engine::new(EngineOptions {
        max_samples: 50,
        ..EngineOptions::default()
    });
    assert!(matches!(
        e.instant(&s, "sum_over_time(x[1h])", 100_000),
        Err(QueryError::TooManySamples { limit: 50 })
    ));
    assert!(e.instant(&s, "sum_over_time(x[10s])", 100_000).is_ok());
    // A range query holds its result: 101 steps of one series exceed 50.
    assert!(matches!(
        e.range(&s, "x", 0, 100_000, 1_000),
        Err(QueryError::TooManySamples { .. })
    ));
}

#[test]
fn evaluation_step_limit_bounds_huge_subqueries() {
    let s = MemStore::new();
    let e = Engine::new(EngineOptions {
        max_eval_steps: 10_000,
        ..EngineOptions::default()
    });
    let r = e.instant(&s, "max_over_time(vector(1)[1000d:1s])", 0);
    assert!(matches!(r, Err(QueryError::TooManySteps { .. })));
}

#[test]
fn holt_winters_is_accepted_as_in_prometheus_2() {
    let x = l(&[("__name__", "x")]);
    let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 10_000, i as f64)).collect();
    let s = store_with(&[(x, pts)]);
    let e = engine();
    let a = vector(
        e.instant(&s, "holt_winters(x[1m], 0.5, 0.5)", 90_000)
            .unwrap(),
    );
    let b = vector(
        e.instant(&s, "double_exponential_smoothing(x[1m], 0.5, 0.5)", 90_000)
            .unwrap(),
    );
    assert_eq!(a, b);
}

#[test]
fn scalars_strings_and_or_matchers() {
    let s = store_with(&[
        (l(&[("__name__", "m"), ("a", "1")]), vec![(0, 1.0)]),
        (l(&[("__name__", "m"), ("b", "2")]), vec![(0, 2.0)]),
        (l(&[("__name__", "m"), ("c", "3")]), vec![(0, 3.0)]),
    ]);
    let e = engine();
    assert_eq!(scalar(e.instant(&s, "1 + 2 * 3", 0).unwrap()), 7.0);
    assert!(matches!(e.instant(&s, r#""hi""#, 0).unwrap(), Value::String { s, .. } if s == "hi"));
    let v = vector(e.instant(&s, r#"m{a="1" or b="2"}"#, 0).unwrap());
    assert_eq!(v.len(), 2);
}

#[test]
fn options_validate() {
    assert!(EngineOptions::default().validate().is_ok());
    let bad = EngineOptions {
        lookback_delta_ms: 0,
        ..EngineOptions::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "invalid engine options: lookback_delta_ms must be positive"
    );
}

#[test]
fn fingerprint_is_pinned() {
    // The fingerprint is the alert identity: changing it would re-fire every alert.
    let fp = l(&[("__name__", "up"), ("job", "api")]).fingerprint();
    assert_eq!(fp.to_string(), format!("{:016x}", fp.0));
    assert_eq!(fp, Fingerprint(0x352a_a4b1_5fa2_8bb6));
}

fn arb_series() -> impl Strategy<Value = Vec<(u8, u8, f64)>> {
    prop::collection::vec((0u8..3, 0u8..8, -1e6f64..1e6), 1..30)
}

/// Builds a store of `x{job, instance}` from generated triples (duplicates collapse).
fn arb_store(series: &[(u8, u8, f64)]) -> (MemStore, Vec<(String, f64)>) {
    let mut s = MemStore::new();
    let mut seen = std::collections::BTreeMap::new();
    for (job, inst, v) in series {
        seen.insert((format!("j{job}"), format!("i{inst}")), *v);
    }
    let mut flat = Vec::new();
    for ((job, inst), v) in &seen {
        let labels = l(&[("__name__", "x"), ("job", job), ("instance", inst)]);
        s.append(labels, 0, *v).expect("fresh series");
        flat.push((job.clone(), *v));
    }
    (s, flat)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #[test]
    fn sum_by_partitions_the_total(series in arb_series()) {
        let (s, flat) = arb_store(&series);
        let e = engine();
        let total = scalar(e.instant(&s, "scalar(sum(x))", 0).unwrap());
        let parts = vector(e.instant(&s, "sum by (job) (x)", 0).unwrap());
        let sum_parts: f64 = parts.iter().map(|p| p.1).sum();
        prop_assert!(close(total, sum_parts));
        for (labels, v) in &parts {
            let job = labels.get("job");
            let expect: f64 = flat.iter().filter(|(j, _)| j == job).map(|(_, v)| v).sum();
            prop_assert!(close(*v, expect));
        }
        let counted: f64 = vector(e.instant(&s, "count by (job) (x)", 0).unwrap())
            .iter().map(|p| p.1).sum();
        prop_assert_eq!(counted as usize, flat.len());
    }

    #[test]
    fn min_avg_quantile_max_are_ordered(series in arb_series()) {
        let (s, _) = arb_store(&series);
        let e = engine();
        let get = |q: &str| scalar(e.instant(&s, &format!("scalar({q}(x))"), 0).unwrap());
        let (mn, avg, mx) = (get("min"), get("avg"), get("max"));
        let med = scalar(e.instant(&s, "scalar(quantile(0.5, x))", 0).unwrap());
        prop_assert!(mn <= avg + 1e-6 && avg <= mx + 1e-6);
        prop_assert!(mn <= med && med <= mx);
        let sd = scalar(e.instant(&s, "scalar(stddev(x))", 0).unwrap());
        prop_assert!(sd >= 0.0 && sd <= (mx - mn) + 1e-6);
    }

    #[test]
    fn topk_keeps_the_largest(series in arb_series(), k in 1usize..6) {
        let (s, flat) = arb_store(&series);
        let e = engine();
        let top = vector(e.instant(&s, &format!("topk({k}, x)"), 0).unwrap());
        prop_assert_eq!(top.len(), k.min(flat.len()));
        let mut all: Vec<f64> = flat.iter().map(|p| p.1).collect();
        all.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        let mut got: Vec<f64> = top.iter().map(|p| p.1).collect();
        got.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        prop_assert_eq!(got, all[..k.min(all.len())].to_vec());
    }

    #[test]
    fn fingerprint_ignores_insertion_order(pairs in prop::collection::vec(("[a-c]{1,2}", "[x-z]{0,2}"), 0..6)) {
        let fwd = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        prop_assert!(fwd.validate().is_ok());
        // Later duplicates win, so reverse-then-dedupe must give the same set as the
        // forward order only when names are unique; compare against a canonical rebuild.
        let rebuilt = Labels::from_pairs(fwd.iter());
        prop_assert_eq!(fwd.fingerprint(), rebuilt.fingerprint());
    }

    #[test]
    fn parsing_and_evaluating_arbitrary_text_never_panics(q in "[a-z_(){}\\[\\]0-9=~!\"+*/^,:@ .-]{0,40}") {
        let s = MemStore::new();
        let _ = engine().instant(&s, &q, 0);
    }
}
