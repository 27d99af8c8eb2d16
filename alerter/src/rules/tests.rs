use super::*;

fn errors(text: &str) -> Vec<RuleError> {
    parse_rule_file("f.yml", text).expect_err("expected errors")
}

/// (rule index, rule name).
type RuleId = Option<(usize, String)>;
/// (line, column, group, rule, message).
type Summary = (u64, u64, Option<String>, RuleId, String);
/// A body, its expected (line, column), rule and message.
type Case = (&'static str, (u64, u64), RuleId, &'static str);

/// Exactly one error, summarized.
fn one(text: &str) -> Summary {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    let e = e.into_iter().next().unwrap();
    assert_eq!(e.file, "f.yml");
    (
        e.line,
        e.column,
        e.group,
        e.rule.map(|r| (r.index, r.name)),
        e.kind.to_string(),
    )
}

fn rule(index: usize, name: &str) -> RuleId {
    Some((index, name.to_owned()))
}

fn g() -> Option<String> {
    Some("g".to_owned())
}

const HDR: &str = "groups:\n- name: g\n  rules:\n";

#[test]
fn parses_the_full_format() {
    let text = "groups:\n- name: example\n  interval: 1m\n  limit: 5\n  query_offset: 30s\n  labels: {team: db}\n  rules:\n  - alert: High\n    expr: up == 0\n    for: 10m\n    keep_firing_for: 5m\n    labels: {severity: page}\n    annotations:\n      summary: \"{{ $labels.instance }}\"\n  - record: job:up:sum\n    expr: sum by (job) (up)\n";
    let f = parse_rule_file("ns", text).unwrap();
    assert_eq!(f.namespace, "ns");
    assert_eq!(f.rule_count(), 2);
    let g = &f.groups[0];
    assert_eq!(g.name, "example");
    assert_eq!(g.interval, Some(std::time::Duration::from_secs(60)));
    assert_eq!(g.query_offset, Some(std::time::Duration::from_secs(30)));
    assert_eq!(g.limit.map(|l| l.get()), Some(5));
    assert_eq!(g.labels.get("team").map(String::as_str), Some("db"));
    let Rule::Alerting(a) = &g.rules[0] else {
        panic!("alerting rule expected")
    };
    assert_eq!(
        (
            a.name.as_str(),
            a.for_.as_secs(),
            a.keep_firing_for.as_secs()
        ),
        ("High", 600, 300)
    );
    assert_eq!(
        a.annotations.get("summary").map(String::as_str),
        Some("{{ $labels.instance }}")
    );
    assert!(
        matches!(&g.rules[1], Rule::Recording(r) if r.name == "job:up:sum" && r.expr == "sum by (job) (up)")
    );
    assert_eq!(parse_rule_file("e", "").unwrap().rule_count(), 0);
    assert_eq!(
        parse_rule_file("e", "# only a comment\n")
            .unwrap()
            .rule_count(),
        0
    );
}

#[test]
fn yaml_and_shape_errors_have_positions() {
    let (l, c, ..) =
        one("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n   labels: {}\n");
    assert_eq!((l, c), (6, 4));
    let (l, c, _, _, msg) = one(&format!(
        "{HDR}  - alert: A\n    expr: up\n    annotation: {{}}\n"
    ));
    assert_eq!((l, c), (6, 5));
    assert!(msg.contains("unknown field `annotation`"), "{msg}");
    let (l, c, _, _, msg) = one("groups:\n- name: g\n  bogus: 1\n");
    assert_eq!((l, c), (3, 3));
    assert!(msg.contains("bogus"), "{msg}");
    let (l, c, _, _, msg) = one(&format!("{HDR}  - alert: A\n    expr: up\n    expr: up\n"));
    assert_eq!((l, c), (6, 5));
    assert_eq!(msg, "duplicate mapping key: expr");
}

#[test]
fn group_errors() {
    assert_eq!(
        one("groups:\n- name: \"\"\n").4,
        "Groupname must not be empty"
    );
    let (l, c, grp, r, msg) = one("groups:\n- name: g\n- name: h\n- name: g\n");
    assert_eq!((l, c, grp, r), (4, 9, None, None));
    assert_eq!(
        msg,
        "groupname: \"g\" is repeated in the same file (first at line 2)"
    );
    let (l, c, grp, _, msg) = one("groups:\n- name: g\n  interval: 5\n");
    assert_eq!((l, c, grp), (3, 13, g()));
    assert_eq!(msg, "field 'interval': not a valid duration string: \"5\"");
    let (l, c, _, r, msg) = one("groups:\n- name: g\n  labels: {ok: x, __name__: y}\n");
    assert_eq!((l, c, r), (3, 19, None));
    assert_eq!(msg, "invalid label name: __name__");
}

#[test]
fn rule_errors_name_group_rule_and_position() {
    let cases: &[Case] = &[
        (
            "  - alert: A\n    record: b\n    expr: up\n",
            (5, 13),
            rule(1, "A"),
            "only one of 'record' and 'alert' must be set",
        ),
        (
            "  - expr: up\n",
            (4, 5),
            rule(1, ""),
            "one of 'record' or 'alert' must be set",
        ),
        (
            "  - alert: A\n",
            (4, 5),
            rule(1, "A"),
            "field 'expr' must be set in rule",
        ),
        (
            "  - alert: A\n    expr: sum(up\n",
            (5, 11),
            rule(1, "A"),
            "could not parse expression: unclosed left parenthesis",
        ),
        (
            "  - record: a:b\n    expr: up\n    for: 1m\n",
            (6, 10),
            rule(1, "a:b"),
            "invalid field 'for' in recording rule",
        ),
        (
            "  - record: a:b\n    expr: up\n    keep_firing_for: 1m\n",
            (6, 22),
            rule(1, "a:b"),
            "invalid field 'keep_firing_for' in recording rule",
        ),
        (
            "  - record: a:b\n    expr: up\n    annotations:\n      x: y\n",
            (7, 7),
            rule(1, "a:b"),
            "invalid field 'annotations' in recording rule",
        ),
        (
            "  - record: a-b\n    expr: up\n",
            (4, 13),
            rule(1, "a-b"),
            "invalid recording rule name: a-b",
        ),
        (
            "  - alert: A\n    expr: up\n    labels:\n      a-b: x\n",
            (7, 7),
            rule(1, "A"),
            "invalid label name: a-b",
        ),
        (
            "  - alert: A\n    expr: up\n    annotations:\n      1x: y\n",
            (7, 7),
            rule(1, "A"),
            "invalid annotation name: 1x",
        ),
        (
            "  - alert: A\n    expr: up\n    for: 1h1d\n",
            (6, 10),
            rule(1, "A"),
            "field 'for': not a valid duration string: \"1h1d\"",
        ),
        (
            "  - alert: A\n    expr: up\n  - alert: B\n    expr: up\n    annotations:\n      s: \"x{{ nope }}\"\n",
            (9, 10),
            rule(2, "B"),
            "annotation \"s\": template: __alert_B:1:5: function \"nope\" not defined",
        ),
        (
            "  - alert: A\n    expr: up\n    labels:\n      sev: \"{{ if $value }}\"\n",
            (7, 12),
            rule(1, "A"),
            "label \"sev\": template: __alert_A:1:16: unexpected EOF",
        ),
    ];
    for (body, (line, col), r, msg) in cases {
        let got = one(&format!("{HDR}{body}"));
        assert_eq!(
            got,
            (*line, *col, g(), r.clone(), (*msg).to_owned()),
            "{body}"
        );
    }
}

#[test]
fn collects_all_errors() {
    let text = format!(
        "{HDR}  - alert: A\n    expr: up ==\n    labels:\n      bad-label: x\n  - record: bad-name\n    expr: up\n    for: 1m\n- name: g\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 5, "{e:#?}");
    let lines: Vec<u64> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![5, 7, 10, 8, 11]);
    assert_eq!(
        e[3].to_string(),
        "f.yml: 8:13: group \"g\", rule 2, \"bad-name\": invalid recording rule name: bad-name"
    );
}

#[test]
fn recording_rule_templates_are_not_checked() {
    // Prometheus only parses templates of alerting rules.
    assert!(
        parse_rule_file(
            "f",
            &format!(
                "{HDR}  - record: a\n    expr: up\n    labels:\n      x: \"{{{{ nope }}}}\"\n"
            )
        )
        .is_ok()
    );
}

#[test]
fn hostile_inputs_fail_cleanly() {
    let deep = format!(
        "{HDR}  - alert: A\n    expr: up\n    labels: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(!errors(&deep).is_empty());
    let deep_maps = format!("groups: {}{}\n", "{a: ".repeat(50_000), "}".repeat(50_000));
    assert!(!errors(&deep_maps).is_empty());
    let big = "#".repeat(MAX_RULE_FILE_BYTES as usize + 1);
    let e = errors(&big);
    assert!(
        matches!(e[0].kind, RuleErrorKind::FileTooLarge { .. }),
        "{e:?}"
    );
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    assert!(!errors(bomb).is_empty());
}

#[test]
fn check_files_reports_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&good, format!("{HDR}  - alert: A\n    expr: up == 0\n")).unwrap();
    std::fs::write(&bad, format!("{HDR}  - record: a-b\n    expr: up\n")).unwrap();
    let missing = dir.path().join("missing.yml");
    let report = check_files(&[good.clone(), bad.clone(), missing]);
    assert!(!report.success());
    assert_eq!(report.files[0].result, Ok(1));
    let text = report.to_string();
    let want_good = format!("Checking {}\n  SUCCESS: 1 rules found\n\n", good.display());
    assert!(text.starts_with(&want_good), "{text}");
    let want_bad = format!(
        "Checking {0}\n  FAILED:\n{0}: 4:13: group \"g\", rule 1, \"a-b\": invalid recording rule name: a-b\n\n",
        bad.display()
    );
    assert!(text.contains(&want_bad), "{text}");
    assert!(text.contains("cannot read file"), "{text}");
    assert!(check_files(&[good]).success());
}

#[test]
fn oversized_promql_is_refused_before_parsing() {
    // promql-parser recurses per nesting level and per operator; without these bounds a
    // hostile expression overflows the stack (observed at ~30k operators, ~3k nested calls).
    let refused = |expr: String| {
        let text = format!("{HDR}  - record: a\n    expr: \"{expr}\"\n");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|e| matches!(e.kind, RuleErrorKind::ExprTooComplex(_))),
            "{e:?}"
        );
    };
    refused(format!("{}up{}", "(".repeat(100_000), ")".repeat(100_000)));
    refused(format!(
        "{}up{}",
        "sum(".repeat(MAX_EXPR_NESTING + 1),
        ")".repeat(MAX_EXPR_NESTING + 1)
    ));
    refused(vec!["up"; 100_000].join(" + "));
    // The largest accepted shapes parse without overflowing a 2 MiB test-thread stack.
    let n = MAX_EXPR_NESTING - 1;
    let _ = parse_rule_file(
        "f",
        &format!(
            "{HDR}  - record: a\n    expr: \"{}up{}\"\n",
            "sum(".repeat(n),
            ")".repeat(n)
        ),
    );
    let ops = vec!["1"; MAX_EXPR_BYTES / 2].join("+");
    let _ = parse_rule_file(
        "f",
        &format!(
            "{HDR}  - record: a\n    expr: \"{}\"\n",
            &ops[..MAX_EXPR_BYTES - 1]
        ),
    );
    let neg = format!("{}1", "-".repeat(MAX_EXPR_BYTES - 1));
    let _ = parse_rule_file("f", &format!("{HDR}  - record: a\n    expr: \"{neg}\"\n"));
    let parens = format!("{}1{}", "(".repeat(n), ")".repeat(n));
    assert!(
        parse_rule_file(
            "f",
            &format!("{HDR}  - record: a\n    expr: \"{parens}\"\n")
        )
        .is_ok()
    );
}
