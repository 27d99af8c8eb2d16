//! Runner tests on small files written to a temp dir; the differential test against the
//! real promtool lives in `tests/unittest_promtool.rs`.

use std::path::PathBuf;

use super::*;

const RULES: &str = r#"
groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    for: 1m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} down"}
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(test: &str) -> UnitTestReport {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", RULES);
    let t = write(dir.path(), "test.yml", test);
    run_files(&[t], &UnitTestOptions::default())
}

#[test]
fn passing_test_prints_success() {
    let r = run(r#"
rule_files: [rules.yml]
tests:
- interval: 1m
  input_series:
  - series: 'up{instance="a"}'
    values: '1 0 0 0'
  alert_rule_test:
  - eval_time: 1m
    alertname: Down
  - eval_time: 2m
    alertname: Down
    exp_alerts:
    - exp_labels: {instance: a, severity: page}
      exp_annotations: {summary: a down}
  promql_expr_test:
  - expr: ALERTS_FOR_STATE
    eval_time: 2m
    exp_samples:
    - labels: 'ALERTS_FOR_STATE{alertname="Down", instance="a", severity="page"}'
      value: 60
"#);
    assert!(r.success(), "{r}");
    assert!(r.to_string().ends_with("  SUCCESS\n\n"));
}

#[test]
fn failing_alert_test_prints_promtool_format() {
    let r = run(r#"
rule_files: [rules.yml]
tests:
- interval: 1m
  name: grp
  input_series:
  - series: 'up{instance="a"}'
    values: '0x3'
  alert_rule_test:
  - eval_time: 2m
    alertname: Down
"#);
    assert!(!r.success());
    let text = r.to_string();
    assert!(
        text.contains(
            "  FAILED:\n    name: grp,\n    alertname: Down, time: 2m, \n        exp:[], \n        got:[\n            0:\n              Labels:{alertname=\"Down\", instance=\"a\", severity=\"page\"}\n              Annotations:{summary=\"a down\"}\n            ]\n\n"
        ),
        "{text}"
    );
}

#[test]
fn huge_expansion_is_refused() {
    let r = run(r#"
rule_files: [rules.yml]
tests:
- interval: 1m
  input_series:
  - series: 'up'
    values: '0+1x100000000'
"#);
    assert!(!r.success());
    assert!(r.files[0].errors[0].contains("limit"), "{r}");
}

#[test]
fn too_many_eval_steps_are_refused() {
    let r = run(r#"
rule_files: [rules.yml]
evaluation_interval: 1s
tests:
- promql_expr_test:
  - expr: up
    eval_time: 100y
"#);
    assert!(r.files[0].errors[0].contains("the limit is"), "{r}");
}

#[test]
fn missing_rule_file_warns_and_bad_yaml_fails() {
    let r = run("rule_files: [nope*.yml]\ntests: []\n");
    assert!(r.success());
    assert!(r.files[0].warnings[0].starts_with("  WARNING: no file match pattern "));
    let r = run("rule_files: [rules.yml]\nunknown: 1\n");
    assert!(!r.success());
}
