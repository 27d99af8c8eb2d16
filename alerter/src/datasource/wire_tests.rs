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
