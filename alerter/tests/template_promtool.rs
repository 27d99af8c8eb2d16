//! Differential test: our template renderer against Prometheus itself.
//!
//! Every case becomes an alerting rule whose annotation is the template; a `promtool test
//! rules` file expects, as that annotation, exactly what OUR renderer produces for the same
//! labels and value. `promtool` passing proves Prometheus renders the same text.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use support::promtool;

use tocsin_alerter::template::{AlertContext, Limits, Template};

/// (template, value as a PromQL literal, value as f64).
const CASES: &[(&str, &str, f64)] = &[
    ("{{ $value }}", "1234.5678", 1234.5678),
    ("{{ $value }}", "1e6", 1e6),
    ("{{ $value }}", "123456", 123456.0),
    (
        "{{ $value }}",
        "0.30000000000000004",
        0.300_000_000_000_000_04,
    ),
    ("{{ $value }}", "1e-5", 1e-5),
    ("{{ $value }}", "NaN", f64::NAN),
    ("{{ $value }}", "+Inf", f64::INFINITY),
    ("{{ $value }}", "-2.5", -2.5),
    ("{{ .Value }}", "42", 42.0),
    ("{{ $value }}", "1e21", 1e21),
    ("{{ humanize $value }}", "1234.5678", 1234.5678),
    ("{{ humanize $value }}", "0", 0.0),
    ("{{ humanize $value }}", "0.00123", 0.00123),
    ("{{ humanize $value }}", "1e12", 1e12),
    ("{{ humanize $value }}", "-1500", -1500.0),
    ("{{ humanize $value }}", "999.95", 999.95),
    ("{{ humanize $value }}", "1e-9", 1e-9),
    ("{{ humanize $value }}", "+Inf", f64::INFINITY),
    ("{{ humanize 5 }} {{ humanize \"2048\" }}", "1", 1.0),
    ("{{ humanize1024 $value }}", "1048576", 1_048_576.0),
    ("{{ humanize1024 $value }}", "0.5", 0.5),
    ("{{ humanize1024 $value }}", "1536", 1536.0),
    ("{{ humanize1024 $value }}", "1e18", 1e18),
    ("{{ humanizeDuration $value }}", "90061", 90061.0),
    ("{{ humanizeDuration $value }}", "3.5", 3.5),
    ("{{ humanizeDuration $value }}", "0.0015", 0.0015),
    ("{{ humanizeDuration $value }}", "0", 0.0),
    ("{{ humanizeDuration $value }}", "-65", -65.0),
    ("{{ humanizeDuration $value }}", "259205.5", 259_205.5),
    ("{{ humanizeDuration $value }}", "59.99", 59.99),
    ("{{ humanizePercentage $value }}", "0.1234", 0.1234),
    ("{{ $value | humanizePercentage }}", "0.000012", 0.000_012),
    (
        "{{ humanizeTimestamp $value }}",
        "1435065584.128",
        1_435_065_584.128,
    ),
    ("{{ humanizeTimestamp $value }}", "0", 0.0),
    ("{{ printf \"%.2f\" $value }}", "1234.5678", 1234.5678),
    ("{{ printf \"%d|%+d|%03d|%-4d|\" 7 5 -5 3 }}", "1", 1.0),
    (
        "{{ printf \"%5.1f|%-8s|%8s|\" $value \"ab\" \"cd\" }}",
        "1234.5678",
        1234.5678,
    ),
    (
        "{{ printf \"%q %x %X %t\" \"a\\\"b\" 255 \"hi\" true }}",
        "1",
        1.0,
    ),
    (
        "{{ printf \"%g|%e|%G|%E\" $value $value 1e-7 12345.678 }}",
        "1234.5678",
        1234.5678,
    ),
    (
        "{{ printf \"%08.3f|%6.2e|%10.3v|\" $value 12345.678 $value }}",
        "1234.5678",
        1234.5678,
    ),
    (
        "{{ printf \"%s\" $value }}|{{ printf \"%d\" $value }}",
        "1234.5678",
        1234.5678,
    ),
    ("{{ printf \"%v\" $labels }}", "1", 1.0),
    (
        "{{ printf \"%5.2f%%\" 12.345 }} {{ printf \"%.3s\" \"abcdef\" }} {{ printf \"%x\" \"hi\" }}",
        "1",
        1.0,
    ),
    ("{{ printf \"%.0f %.1f %.2f\" 2.5 0.25 2.675 }}", "1", 1.0),
    (
        "{{ printf \"%s %s\" \"only\" }}|{{ printf \"%s\" \"a\" \"extra\" }}",
        "1",
        1.0,
    ),
    ("{{ print 1 2 \"a\" 3 \"b\" \"c\" }}", "1", 1.0),
    ("{{ println \"a\" 1 2 }}", "1", 1.0),
    (
        "{{ html $labels.desc }}|{{ js $labels.desc }}|{{ urlquery $labels.desc }}",
        "1",
        1.0,
    ),
    (
        "{{ html \"<a href='x'>\" }}|{{ js \"a'b\\\"c\\n\" }}|{{ urlquery \"a b&c=d/é\" }}",
        "1",
        1.0,
    ),
    (
        "{{ title \"hello world-foo bar_baz\" }}|{{ toUpper $labels.job }}|{{ toLower \"ÀBC\" }}",
        "1",
        1.0,
    ),
    (
        "{{ match \"^node\" $labels.instance }} {{ match \"^x\" $labels.instance }}",
        "1",
        1.0,
    ),
    (
        "{{ reReplaceAll \"node(\\\\d+)\\\\..*\" \"n-$1\" $labels.instance }}",
        "1",
        1.0,
    ),
    (
        "{{ stripPort $labels.instance }} {{ stripPort \"[::1]:80\" }} {{ stripPort \"host\" }}",
        "1",
        1.0,
    ),
    (
        "{{ graphLink \"up == 0\" }} {{ tableLink \"rate(x[5m])\" }}",
        "1",
        1.0,
    ),
    // `pathPrefix` and `externalURL` (functions) panic in promtool, which has no URL to give
    // them; they are covered by unit tests.
    ("{{ $externalURL }}|{{ .ExternalURL }}", "1", 1.0),
    (
        "{{ $externalLabels.region }}|{{ .ExternalLabels }}",
        "1",
        1.0,
    ),
    (
        "{{ parseDuration \"1h30m\" }} {{ parseDuration \"100ms\" }}",
        "1",
        1.0,
    ),
    ("{{ toTime $value }}", "1435065584.128", 1_435_065_584.128),
    ("{{ safeHtml \"<b>x</b>\" }}", "1", 1.0),
    (
        "{{ stripDomain $labels.instance }} {{ stripDomain \"10.0.0.1:80\" }} {{ stripDomain \"a.b\" }}",
        "1",
        1.0,
    ),
    (
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
        "1",
        1.0,
    ),
    ("{{ range $labels }}[{{ . }}]{{ end }}", "1", 1.0),
    (
        "{{ range $i, $e := args 10 20 30 }}{{ $i }}:{{ $e }} {{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ range (args).nope }}x{{ else }}empty{{ end }}{{ range args }}y{{ else }}none{{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ range $k, $v := $labels }}{{ if eq $k \"job\" }}{{ break }}{{ end }}{{ $k }} {{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ range $k, $v := $labels }}{{ if eq $k \"job\" }}{{ continue }}{{ end }}{{ $k }} {{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ $n := 0 }}{{ range $labels }}{{ $n = len . }}{{ end }}{{ $n }}",
        "1",
        1.0,
    ),
    (
        "{{ if lt $value 100.0 }}low{{ else if lt $value 2000.0 }}mid{{ else }}high{{ end }}",
        "1234.5678",
        1234.5678,
    ),
    (
        "{{ if and (gt $value 1.0) (lt $value 1e9) }}ok{{ end }}",
        "1234.5678",
        1234.5678,
    ),
    (
        "{{ with $labels.job }}job={{ . }}{{ else }}none{{ end }}|{{ with $labels.zzz }}{{ . }}{{ else }}none{{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ define \"x\" }}[{{ .job }}]{{ end }}{{ template \"x\" $labels }}{{ template \"x\" .Labels }}",
        "1",
        1.0,
    ),
    ("{{ block \"b\" $value }}<{{ . }}>{{ end }}", "7", 7.0),
    (
        "{{ define \"n\" }}{{ if . }}{{ len . }}{{ end }}{{ end }}{{ template \"n\" \"abc\" }}{{ template \"n\" \"\" }}",
        "1",
        1.0,
    ),
    ("{{ $x := 1 }}{{ $x = \"two\" }}{{ $x }}", "1", 1.0),
    (
        "{{ eq $labels.job \"a\" \"node\" }} {{ ne 1 2 }} {{ le \"a\" \"b\" }} {{ ge 2.5 2.5 }} {{ gt 3 2 }}",
        "1",
        1.0,
    ),
    (
        "{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" \"x\" }} {{ or 0 false }} {{ not true }} {{ not \"\" }}",
        "1",
        1.0,
    ),
    (
        "{{ or $labels.missing \"default\" }} {{ not (eq $labels.job \"x\") }}",
        "1",
        1.0,
    ),
    (
        "{{ len $labels }} {{ len \"héllo\" }} {{ index $labels \"job\" }} {{ index $labels \"none\" }}|",
        "1",
        1.0,
    ),
    (
        "{{ slice \"abcdef\" 1 3 }} {{ slice \"abcdef\" 2 }} {{ index \"abc\" 1 }}",
        "1",
        1.0,
    ),
    (
        "{{ with args 1 \"x\" 2.5 }}{{ .arg0 }} {{ .arg1 }} {{ .arg2 }} {{ len . }}{{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ $labels.nonexistent }}|{{ (args 1).arg5 }}|{{ .Labels.job }}",
        "1",
        1.0,
    ),
    (
        "{{ 0x1F }} {{ 'a' }} {{ 1e3 }} {{ 1.0 }} {{ -5 }} {{ true }} {{ \"s\" }} {{ `raw\\n` }} {{ 1_000 }}",
        "1",
        1.0,
    ),
    (
        "a  {{- \" b \" -}}  c\n  {{- /* comment */ -}}\n  d {{/* x */}}e",
        "1",
        1.0,
    ),
    ("line1\n{{- if true }}\n  yes\n{{- end }}\nend", "1", 1.0),
    (
        "{{ index $labels \"job\" | toUpper | printf \"<%s>\" }}",
        "1",
        1.0,
    ),
    (
        "{{ $value | humanize | printf \"%s!\" }} {{ $value | printf \"%.1f\" }}",
        "1234.5678",
        1234.5678,
    ),
    ("{{ $labels }}", "1", 1.0),
    ("{{ $value }} {{ $value }}", "2.5e-3", 0.0025),
    (
        "{{ (printf \"%s-%s\" $labels.job $labels.severity) | len }}",
        "1",
        1.0,
    ),
    (
        "{{ if not $labels.missing }}absent{{ end }}{{ if $labels.job }}present{{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ range $k, $v := .Labels }}{{ range $k2, $v2 := $labels }}{{ if eq $k $k2 }}{{ $k }}{{ end }}{{ end }}{{ end }}",
        "1",
        1.0,
    ),
    (
        "{{ printf \"%c%c\" 72 105 }} {{ printf \"%o %b\" 8 5 }} {{ printf \"%#x\" 255 }}",
        "1",
        1.0,
    ),
    ("{{ printf \"% d|%+.2f|%-8.3f|\" 5 3.14159 2.0 }}", "1", 1.0),
    (
        "{{ humanize 1e30 }} {{ humanize 1e-30 }} {{ humanize1024 1e30 }}",
        "1",
        1.0,
    ),
    (
        "{{ printf \"%T %T %T %T %T\" 1 1.5 \"s\" true $labels }}",
        "1",
        1.0,
    ),
    (
        "{{ printf \"%U %x %X %.0e %.3E|%6.1f|%-7.2g|\" 65 -255 3054 12345.0 0.000123 -2.25 1234.5 }}",
        "1",
        1.0,
    ),
    (
        "{{ toUpper \"straße ﬁ\" }} {{ toLower \"ÀÉÎ\" }} {{ title \"élan vital\" }}",
        "1",
        1.0,
    ),
    (
        "{{ printf \"%5s|%-5s|%.2s\" \"é\" \"日本\" \"日本語\" }}",
        "1",
        1.0,
    ),
    ("{{ $value }}", "1e100", 1e100),
    ("{{ $value }}", "-0.000001234", -0.000_001_234),
    ("{{ $value }}", "999999", 999_999.0),
    ("{{ $value }}", "1234567", 1_234_567.0),
    ("{{ $value }}", "0.1", 0.1),
    (
        "{{ $value | humanize }} {{ $value | humanizeDuration }}",
        "0.000999999",
        0.000_999_999,
    ),
    (
        "{{ humanize 999999.5 }} {{ humanize 1000 }} {{ humanize 0.001 }} {{ humanize1024 1024 }}",
        "1",
        1.0,
    ),
    (
        "{{ humanizeDuration 86400 }} {{ humanizeDuration 3600.5 }} {{ humanizeDuration 60 }} {{ humanizeDuration 1 }}",
        "1",
        1.0,
    ),
    (
        "{{ humanizeTimestamp 1e9 }} {{ humanizeTimestamp -1.5 }} {{ humanizeTimestamp 9.2e9 }} {{ humanizeTimestamp \"NaN\" }}",
        "1",
        1.0,
    ),
];

const SERIES_LABELS: &[(&str, &str)] = &[
    ("desc", "a<b>&c d/é"),
    ("instance", "node1.example.com:9100"),
    ("job", "node"),
    ("severity", "page"),
];
const EXTERNAL_URL: &str = "http://prom.example.com/prometheus";

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

#[test]
fn templates_render_like_prometheus() {
    let promtool = promtool();
    let labels: BTreeMap<String, String> = SERIES_LABELS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let selector = SERIES_LABELS
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect::<Vec<_>>()
        .join(",");

    let mut rules = String::from("groups:\n- name: templates\n  rules:\n");
    let mut tests = String::new();
    writeln!(
        tests,
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m"
    )
    .unwrap();
    writeln!(
        tests,
        "  external_labels: {{region: eu}}\n  external_url: {EXTERNAL_URL}"
    )
    .unwrap();
    writeln!(
        tests,
        "  input_series:\n  - series: {}\n    values: '1x10'",
        quote(&format!("m{{{selector}}}"))
    )
    .unwrap();
    tests.push_str("  alert_rule_test:\n");
    for (i, (text, promql_value, value)) in CASES.iter().enumerate() {
        let ctx = AlertContext {
            labels: labels.clone(),
            external_labels: [("region".to_owned(), "eu".to_owned())]
                .into_iter()
                .collect(),
            external_url: EXTERNAL_URL.to_owned(),
            value: *value,
        };
        let ours = Template::parse(&format!("__alert_T{i}"), text)
            .and_then(|t| t.render(&ctx, &Limits::default(), None))
            .unwrap_or_else(|e| panic!("case T{i} {text:?}: our renderer failed: {e}"));
        writeln!(
            rules,
            "  - alert: T{i}\n    expr: m * 0 + ({promql_value})\n    annotations:\n      a: {}",
            quote(text)
        )
        .unwrap();
        writeln!(
            tests,
            "  - eval_time: 2m\n    alertname: T{i}\n    exp_alerts:\n    - exp_labels:"
        )
        .unwrap();
        for (k, v) in &labels {
            writeln!(tests, "        {k}: {}", quote(v)).unwrap();
        }
        writeln!(tests, "      exp_annotations:\n        a: {}", quote(&ours)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), &tests).unwrap();
    let out = Command::new(&promtool)
        .current_dir(dir.path())
        .args(["test", "rules", "test.yml"])
        .output()
        .expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool disagrees with our renderer ({} cases):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        CASES.len()
    );
    println!(
        "{} template cases rendered identically by promtool",
        CASES.len()
    );
}

/// Templates that parse but fail at execution. Prometheus renders such an annotation as
/// `<error expanding template: ...>`; we must return an error for exactly these.
const EXEC_ERROR_CASES: &[&str] = &[
    "{{ gt $value 1 }}",
    "{{ .Nope }}",
    "{{ index $labels 1 }}",
    "{{ len 3 }}",
    "{{ toUpper 1 }}",
    "{{ template \"nope\" }}",
    "{{ first (args) }}",
    "{{ $y = 1 }}",
    "{{ nil }}",
    "{{ humanize \"abc\" }}",
    "{{ reReplaceAll \"(\" \"\" \"x\" }}",
    "{{ match \"(\" \"x\" }}",
    "{{ slice \"abc\" 2 1 }}",
    "{{ range 5 }}{{ end }}",
    "{{ \"x\" 1 }}",
    "{{ printf 1 }}",
    "{{ eq $labels 1 }}",
    "{{ lt true false }}",
    "{{ and }}",
    "{{ toTime \"NaN\" }}",
    "{{ parseDuration \"5x\" }}",
    "{{ label \"x\" $labels }}",
    "{{ (args).x.y }}",
    "{{ $labels.job.x }}",
    "{{ index (args 1 2) \"arg0\" \"x\" }}",
    "{{ humanizeTimestamp 1e300 }}",
    "{{ not }}",
    "{{ ne 1 }}",
    "{{ eq 1 }}",
    "{{ html }}x{{ .Value.x }}",
];

#[test]
fn templates_fail_where_prometheus_fails() {
    let promtool = promtool();
    let mut rules = String::from("groups:\n- name: errors\n  rules:\n");
    let mut tests = String::new();
    writeln!(
        tests,
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m"
    )
    .unwrap();
    writeln!(
        tests,
        "  input_series:\n  - series: 'm{{job=\"node\"}}'\n    values: '1x10'"
    )
    .unwrap();
    tests.push_str("  alert_rule_test:\n");
    let ctx = AlertContext {
        labels: [("job".to_owned(), "node".to_owned())]
            .into_iter()
            .collect(),
        value: 1.0,
        ..AlertContext::default()
    };
    for (i, text) in EXEC_ERROR_CASES.iter().enumerate() {
        let t = Template::parse(&format!("__alert_E{i}"), text)
            .unwrap_or_else(|e| panic!("case E{i} {text:?} must parse: {e}"));
        let ours = t.render(&ctx, &Limits::default(), None);
        assert!(
            ours.is_err(),
            "case E{i} {text:?}: we rendered {ours:?}; Prometheus fails"
        );
        writeln!(
            rules,
            "  - alert: E{i}\n    expr: m * 1\n    annotations:\n      a: {}",
            quote(text)
        )
        .unwrap();
        // A placeholder that cannot match: promtool then prints what Prometheus rendered.
        writeln!(
            tests,
            "  - eval_time: 2m\n    alertname: E{i}\n    exp_alerts:\n    - exp_labels: {{job: node}}\n      exp_annotations: {{a: placeholder}}"
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), &tests).unwrap();
    let out = Command::new(&promtool)
        .current_dir(dir.path())
        .args(["test", "rules", "test.yml"])
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut missing = Vec::new();
    for (i, case) in EXEC_ERROR_CASES.iter().enumerate() {
        let block = text
            .split("alertname: ")
            .find(|b| b.starts_with(&format!("E{i},")))
            .unwrap_or("");
        let got = block.split("got:").nth(1).unwrap_or("");
        if !got.contains("<error expanding template") {
            missing.push(format!(
                "E{i} {case:?}: Prometheus rendered without error:\n{block}"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} cases disagree:\n{}\n\nfull output:\n{text}",
        missing.len(),
        missing.join("\n")
    );
    println!(
        "{} failing templates: Prometheus and our renderer both fail on all",
        EXEC_ERROR_CASES.len()
    );
}
