//! `tocsin rules check` through the real binary: promtool's output shape and exit codes.

mod support;

#[test]
fn check_reports_success_and_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "groups:\n- name: api\n  rules:\n  - alert: HighErrorRate\n    expr: rate(http_errors_total[5m]) > 0.1\n    for: 5m\n    labels: {severity: page}\n    annotations: {summary: \"{{ $labels.instance }} at {{ $value | humanizePercentage }}\"}\n  - record: job:http_errors:rate5m\n    expr: sum by (job) (rate(http_errors_total[5m]))\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n- name: api\n  rules:\n  - alert: Broken\n    expr: rate(x[5m] >\n    for: 5x\n",
    )
    .unwrap();

    let out = std::process::Command::new(support::bin())
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 2 rules found"), "{text}");

    let out = std::process::Command::new(support::bin())
        .args(["rules", "check"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("SUCCESS: 2 rules found") && text.contains("FAILED"),
        "{text}"
    );
    assert!(
        text.contains("bad.yml") && text.contains("Broken"),
        "names the file and rule: {text}"
    );
    assert!(text.contains("5x"), "names the bad duration: {text}");
}
