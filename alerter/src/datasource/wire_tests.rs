//! Parsing and writing the Prometheus API JSON, including the special values.

use super::*;
use crate::datasource::Fault;

const T: Duration = Duration::from_secs(1);

fn ok(body: &str) -> QueryOutput {
    parse_answer(200, body.as_bytes(), T).unwrap()
}

#[test]
fn every_result_type_parses_with_special_values() {
    let v = ok(
        r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","job":"a"},"value":[1710028800.5,"NaN"]},
        {"metric":{},"value":[1710028800.5,"+Inf"]},
        {"metric":{"x":"y"},"value":[1710028800.5,"-Inf"]}]}}"#,
    );
    let Value::Vector(s) = v.value else { panic!() };
    assert_eq!(
        s[0].labels,
        Labels::from_pairs([("__name__", "up"), ("job", "a")])
    );
    assert_eq!(s[0].t, 1_710_028_800_500);
    assert!(s[0].v.is_nan());
    assert_eq!(s[1].v, f64::INFINITY);
    assert_eq!(s[2].v, f64::NEG_INFINITY);

    let m = ok(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"a":"b"},"values":[[1.001,"1"],[2.002,"2.5e-7"]]}]}}"#,
    );
    let Value::Matrix(m) = m.value else { panic!() };
    assert_eq!(
        m[0].points,
        vec![Point { t: 1001, v: 1.0 }, Point { t: 2002, v: 2.5e-7 }]
    );

    let s = ok(r#"{"status":"success","data":{"resultType":"scalar","result":[3,"-0.5"]}}"#);
    assert_eq!(s.value, Value::Scalar { t: 3000, v: -0.5 });
    let s = ok(
        r#"{"status":"success","data":{"resultType":"string","result":[3,"hi"]},
        "warnings":["partial"]}"#,
    );
    assert_eq!(
        s.value,
        Value::String {
            t: 3000,
            s: "hi".into()
        }
    );
    assert_eq!(s.warnings, vec!["partial".to_string()]);
}

#[test]
fn api_error_types_map_to_typed_errors() {
    let cases = [
        ("bad_data", 400, Fault::Query),
        ("execution", 422, Fault::Query),
        ("timeout", 503, Fault::Datasource),
        ("canceled", 503, Fault::Datasource),
        ("unavailable", 503, Fault::Datasource),
        ("internal", 500, Fault::Datasource),
    ];
    for (ty, status, fault) in cases {
        let body = format!(r#"{{"status":"error","errorType":"{ty}","error":"boom"}}"#);
        let e = parse_answer(status, body.as_bytes(), T).unwrap_err();
        assert_eq!(e.fault(), fault, "{ty}: {e}");
        assert!(e.to_string().contains("boom"));
        assert_eq!(error_type_and_status(&e), (ty, status), "{ty} round-trips");
    }
}

#[test]
fn non_api_bodies_map_by_status() {
    let e = parse_answer(502, b"<html>bad gateway</html>", T).unwrap_err();
    assert_eq!(
        e,
        DatasourceError::Http {
            status: 502,
            message: "<html>bad gateway</html>".into()
        }
    );
    assert!(e.is_retryable());
    assert!(matches!(
        parse_answer(503, b"overloaded", T),
        Err(DatasourceError::Unavailable { .. })
    ));
    assert!(matches!(
        parse_answer(400, b"nope", T),
        Err(DatasourceError::BadQuery { .. })
    ));
    assert!(matches!(
        parse_answer(200, b"not json", T),
        Err(DatasourceError::InvalidResponse { .. })
    ));
    let unknown = r#"{"status":"success","data":{"resultType":"tensor","result":[]}}"#;
    assert!(matches!(
        parse_answer(200, unknown.as_bytes(), T),
        Err(DatasourceError::InvalidResponse { .. })
    ));
    let hist = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{},"histogram":[1,{}]}]}}"#;
    assert!(parse_answer(200, hist.as_bytes(), T).is_err());
}

#[test]
fn written_answers_read_back_identically() {
    let values = [
        Value::Scalar {
            t: 1_500,
            v: f64::INFINITY,
        },
        Value::String {
            t: 2_000,
            s: "x".into(),
        },
        Value::Vector(vec![Sample {
            labels: Labels::from_pairs([("__name__", "m"), ("a", "b")]),
            t: 1_710_028_800_123,
            v: 0.1 + 0.2,
        }]),
        Value::Matrix(vec![Series {
            labels: Labels::from_pairs([("a", "b")]),
            points: vec![
                Point {
                    t: -1_000,
                    v: f64::NEG_INFINITY,
                },
                Point { t: 5, v: 1e300 },
            ],
        }]),
    ];
    for v in values {
        let body = success_json(value_json(&v), &["w".to_string()]).to_string();
        let back = ok(&body);
        assert_eq!(back.value, v, "{body}");
        assert_eq!(back.warnings, vec!["w".to_string()]);
    }
    assert_eq!(format_float(f64::NAN), "NaN");
    assert!(parse_float(&format_float(f64::NAN)).unwrap().is_nan());
}

#[test]
fn timestamps_print_like_prometheus() {
    assert_eq!(ts_json(1_710_028_800_000).to_string(), "1710028800");
    assert_eq!(ts_json(1_710_028_800_500).to_string(), "1710028800.5");
    assert_eq!(ts_json(1_710_028_800_123).to_string(), "1710028800.123");
    assert_eq!(ts_json(-1_500).to_string(), "-1.5");
}

/// The tree path [`write_success`] replaces: its bytes are the reference.
fn via_tree(v: &Value, warnings: &[String]) -> String {
    success_json(value_json(v), warnings).to_string()
}

fn assert_same_bytes(v: &Value, warnings: &[String]) {
    let direct = String::from_utf8(write_success(v, warnings)).unwrap();
    assert_eq!(direct, via_tree(v, warnings));
}

/// Label values and strings that need JSON escapes or are not ASCII.
const AWKWARD: [&str; 8] = [
    "q\"uo\"te",
    "back\\slash\\",
    "ctl \u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1b}\u{1f} end",
    "del \u{7f} and é, 日本, 🦀",
    "</script>&<'>",
    "\u{2028}\u{2029}",
    "x",
    "trailing\\",
];

#[test]
fn direct_answers_are_the_trees_bytes() {
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1 + 0.2,
        1e-7,
        -1e-300,
        5e-324,
        1e21,
        1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        123_456_789.012_345_68,
        f64::NAN,
        crate::promql::STALE_NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let times = [
        0,
        1,
        -1,
        999,
        -1_000,
        -1_500,
        10,
        120,
        1_710_028_800_000,
        1_710_028_800_500,
        1_710_028_800_120,
        1_710_028_800_007,
        -1_710_028_800_123,
        (1 << 51) - 1,
        -(1 << 51) + 1,
        (1 << 51) + 1,
        (1 << 53) - 1,
        (1 << 53) + 1,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
    ];
    let labels: Vec<Labels> = AWKWARD
        .iter()
        .map(|v| Labels::from_pairs([("__name__", "m"), ("a", v), ("zz", "1")]))
        .chain([Labels::empty()])
        .collect();
    let mut values = vec![
        Value::Vector(Vec::new()),
        Value::Matrix(Vec::new()),
        Value::Matrix(vec![Series {
            labels: Labels::empty(),
            points: Vec::new(),
        }]),
    ];
    for &t in &times {
        for &v in &specials {
            values.push(Value::Scalar { t, v });
        }
        for s in AWKWARD {
            values.push(Value::String { t, s: s.into() });
        }
    }
    values.push(Value::Vector(
        labels
            .iter()
            .zip(specials.iter().cycle())
            .zip(times.iter().cycle())
            .map(|((l, &v), &t)| Sample {
                labels: l.clone(),
                t,
                v,
            })
            .collect(),
    ));
    values.push(Value::Matrix(
        labels
            .iter()
            .map(|l| Series {
                labels: l.clone(),
                points: times
                    .iter()
                    .zip(specials.iter().cycle())
                    .map(|(&t, &v)| Point { t, v })
                    .collect(),
            })
            .collect(),
    ));
    let warnings: Vec<String> = AWKWARD.iter().map(|s| s.to_string()).collect();
    for v in &values {
        assert_same_bytes(v, &[]);
        assert_same_bytes(v, &warnings[..1]);
        assert_same_bytes(v, &warnings);
    }
    // Every byte value a string can hold, one at a time.
    for c in (0u32..0x100).filter_map(char::from_u32) {
        let s = format!("a{c}b");
        assert_same_bytes(&Value::String { t: 1, s: s.clone() }, &[s]);
    }
}

proptest::proptest! {
    /// Any labels, times and values: the same bytes, and they read back to the same value.
    #[test]
    fn direct_answers_match_the_tree_for_any_input(
        series in proptest::collection::vec(
            (
                proptest::collection::vec(("[a-z_]{1,4}", "\\PC{0,6}|[\\x00-\\x7f]{0,6}"), 0..4),
                proptest::collection::vec(
                    (proptest::num::i64::ANY, proptest::num::f64::ANY), 0..4),
            ),
            0..5,
        ),
        warnings in proptest::collection::vec("\\PC{0,8}", 0..3),
    ) {
        let matrix = Value::Matrix(series.iter().map(|(l, p)| Series {
            labels: Labels::from_pairs(l.clone()),
            points: p.iter().map(|&(t, v)| Point { t, v }).collect(),
        }).collect());
        let vector = Value::Vector(series.iter().map(|(l, p)| Sample {
            labels: Labels::from_pairs(l.clone()),
            t: p.first().map_or(0, |x| x.0 % 10_000_000_000_000),
            v: p.first().map_or(0.0, |x| x.1),
        }).collect());
        for v in [&matrix, &vector] {
            let direct = String::from_utf8(write_success(v, &warnings)).unwrap();
            proptest::prop_assert_eq!(&direct, &via_tree(v, &warnings));
        }
        let direct = String::from_utf8(write_success(&vector, &warnings)).unwrap();
        let back = ok(&direct);
        proptest::prop_assert_eq!(back.warnings, warnings);
        let (Value::Vector(back), Value::Vector(want)) = (back.value, vector) else {
            panic!("a vector reads back as a vector");
        };
        proptest::prop_assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            proptest::prop_assert_eq!(&b.labels, &w.labels);
            proptest::prop_assert_eq!(b.t, w.t);
            proptest::prop_assert!(b.v.to_bits() == w.v.to_bits() || (b.v.is_nan() && w.v.is_nan()));
        }
    }
}

proptest::proptest! {
    /// Timestamps print as the tree prints them, up to and past the fast path's bound.
    #[test]
    fn direct_timestamps_match_the_tree(t in proptest::prop_oneof![
        proptest::num::i64::ANY,
        -(1i64 << 52)..(1i64 << 52),
        (1i64 << 51) - 100_000..(1i64 << 51) + 100_000,
        1_600_000_000_000i64..2_000_000_000_000,
    ]) {
        let v = Value::Scalar { t, v: 1.0 };
        let direct = String::from_utf8(write_success(&v, &[])).unwrap();
        proptest::prop_assert_eq!(direct, via_tree(&v, &[]));
    }
}

#[test]
fn a_batch_answer_gives_each_query_its_own_result() {
    let body = br#"{"status":"success","data":[
        {"status":"success","data":{"resultType":"scalar","result":[1,"2"]}},
        {"status":"error","errorType":"bad_data","error":"parse error"}]}"#;
    let got = parse_batch_answer(200, body, T, 2);
    assert_eq!(
        got[0].as_ref().map(|o| o.value.clone()),
        Ok(Value::Scalar { t: 1000, v: 2.0 })
    );
    assert!(
        matches!(&got[1], Err(DatasourceError::BadQuery { message }) if message == "parse error")
    );
    // Answers for a different number of queries, or the request's own error: every query fails.
    let short = parse_batch_answer(200, body, T, 3);
    assert_eq!(short.len(), 3);
    assert!(
        short
            .iter()
            .all(|r| matches!(r, Err(DatasourceError::InvalidResponse { .. })))
    );
    let refused =
        br#"{"status":"error","errorType":"bad_data","error":"no query parameter provided"}"#;
    let all = parse_batch_answer(400, refused, T, 2);
    assert!(
        all.iter()
            .all(|r| matches!(r, Err(DatasourceError::BadQuery { .. })))
    );
    let garbage = parse_batch_answer(502, b"<html>bad gateway</html>", T, 1);
    assert!(matches!(&garbage[0], Err(e) if e.fault() == Fault::Datasource));
}
