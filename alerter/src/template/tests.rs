use super::*;

fn ctx() -> AlertContext {
    AlertContext {
        labels: [
            ("instance", "node1.example.com:9100"),
            ("job", "node"),
            ("severity", "page"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        external_labels: [("region".to_owned(), "eu".to_owned())]
            .into_iter()
            .collect(),
        external_url: "http://prom.example.com/prometheus".to_owned(),
        value: 1234.5678,
    }
}

fn render(text: &str) -> Result<String, TemplateError> {
    Template::parse("t", text)?.render(&ctx(), &Limits::default(), None)
}

#[test]
fn renders_common_constructs() {
    let cases: &[(&str, &str)] = &[
        (
            "{{ $labels.instance }} is {{ $value }}",
            "node1.example.com:9100 is 1234.5678",
        ),
        ("{{ .Labels.job }}/{{ $externalLabels.region }}", "node/eu"),
        (
            "{{ if gt $value 1000.0 }}high{{ else }}low{{ end }}",
            "high",
        ),
        (
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            "instance=node1.example.com:9100;job=node;severity=page;",
        ),
        (
            "{{ range $labels }}{{ . }},{{ break }}{{ end }}",
            "node1.example.com:9100,",
        ),
        ("a {{- \" b \" -}} c", "a b c"),
        ("{{/* comment */}}x", "x"),
        ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
        ("{{ with $labels.missing }}yes{{ else }}no{{ end }}", "no"),
        (
            "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" \"hi\" }}",
            "[hi]",
        ),
        ("{{ block \"b\" 3 }}<{{ . }}>{{ end }}", "<3>"),
        ("{{ humanize $value }}", "1.235k"),
        (
            "{{ printf \"%.2f|%5s|%-3d|\" $value \"ab\" 7 }}",
            "1234.57|   ab|7  |",
        ),
        ("{{ $labels.job | toUpper | printf \"%s!\" }}", "NODE!"),
        ("{{ len $labels }} {{ index $labels \"job\" }}", "3 node"),
        (
            "{{ and 1 0 }} {{ or 0 \"\" \"x\" }} {{ not true }}",
            "0 x false",
        ),
        ("{{ eq $labels.job \"a\" \"node\" }}", "true"),
        (
            "{{ 1e6 }} {{ 1.5 }} {{ 0x10 }} {{ 'a' }}",
            "1e+06 1.5 16 97",
        ),
        (
            "{{ reReplaceAll \"(.*)\\\\.example\\\\.com.*\" \"$1\" $labels.instance }}",
            "node1",
        ),
        ("{{ $labels.nope }}|{{ (args 1).arg1 }}", "|<no value>"),
        (
            "{{ pathPrefix }} {{ externalURL }}",
            "/prometheus http://prom.example.com/prometheus",
        ),
        ("{{ \"1h30m\" | parseDuration }}", "5400"),
        (
            "{{ 1435065584.128 | humanizeTimestamp }}",
            "2015-06-23 13:19:44.128 +0000 UTC",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(render(text).as_deref(), Ok(*want), "{text}");
    }
}

#[test]
fn parse_errors_name_position() {
    let e = Template::parse("t", "ok\n  {{ nosuch 1 }}").unwrap_err();
    assert_eq!(
        e,
        TemplateError::Parse {
            template: "t".into(),
            line: 2,
            column: 6,
            message: "function \"nosuch\" not defined".into()
        }
    );
    for bad in [
        "{{ $x }}",
        "{{ if 1 }}",
        "{{ end }}",
        "{{ else }}",
        "{{ break }}",
        "{{ }}",
        "{{ .a",
        "{{ \"a\" | 1 }}",
    ] {
        assert!(Template::parse("t", bad).is_err(), "{bad}");
    }
}

#[test]
fn exec_errors_name_position() {
    let e = render("x{{ gt $value 1 }}").unwrap_err();
    assert!(
        matches!(
            e,
            TemplateError::Exec {
                line: 1,
                column: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("incompatible types for comparison"),
        "{e}"
    );
    assert!(
        render("{{ nil }}")
            .unwrap_err()
            .to_string()
            .contains("nil is not a command")
    );
    assert!(
        render("{{ $y = 2 }}")
            .unwrap_err()
            .to_string()
            .contains("undefined variable: $y")
    );
    let e = render("{{ .Nope }}").unwrap_err();
    assert!(e.to_string().contains("can't evaluate field Nope"), "{e}");
}

#[test]
fn limits_stop_runaway_templates() {
    let limits = Limits {
        max_output_bytes: 1000,
        max_steps: 10_000,
        max_depth: 50,
    };
    let t = Template::parse(
        "t",
        "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
    )
    .unwrap();
    assert!(matches!(
        t.render(&ctx(), &limits, None),
        Err(TemplateError::Limit { .. })
    ));
    let t = Template::parse("t", "{{ $s := \"xx\" }}{{ range $labels }}{{ $s = printf \"%s%s%s%s%s%s%s%s%s%s\" $s $s $s $s $s $s $s $s $s $s }}{{ end }}{{ $s }}").unwrap();
    assert!(matches!(
        t.render(&ctx(), &limits, None),
        Err(TemplateError::Limit { .. })
    ));
    let deep = "{{ if 1 }}".repeat(500);
    assert!(Template::parse("t", &deep).is_err());
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(500), ")".repeat(500));
    assert!(Template::parse("t", &parens).is_err());
}

struct FakeQuery;

impl QueryFn for FakeQuery {
    fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        if expr == "fail" {
            return Err("boom".into());
        }
        Ok(["b", "a"]
            .iter()
            .enumerate()
            .map(|(i, n)| Sample {
                labels: [("name".to_owned(), (*n).to_owned())].into_iter().collect(),
                value: i as f64,
            })
            .collect())
    }
}

#[test]
fn query_functions_use_the_query_fn() {
    let t = Template::parse(
        "t",
        "{{ range query \"up\" | sortByLabel \"name\" }}{{ label \"name\" . }}={{ value . }} {{ end }}{{ with query \"up\" }}{{ . | first | value }}{{ end }}",
    )
    .unwrap();
    assert_eq!(
        t.render(&ctx(), &Limits::default(), Some(&FakeQuery))
            .unwrap(),
        "a=1 b=0 0"
    );
    assert!(t.render(&ctx(), &Limits::default(), None).is_err());
    let t = Template::parse("t", "{{ query \"fail\" }}").unwrap();
    assert!(
        t.render(&ctx(), &Limits::default(), Some(&FakeQuery))
            .unwrap_err()
            .to_string()
            .contains("boom")
    );
}

#[test]
fn render_data_over_generic_values() {
    let t = Template::parse_plain(
        "n",
        "{{ range .Alerts }}{{ .name }} {{ end }}{{ len .Alerts }}",
    )
    .unwrap();
    let data = Value::map(
        [(
            "Alerts".to_owned(),
            Value::list(vec![
                Value::map(
                    [("name".to_owned(), Value::from("a"))]
                        .into_iter()
                        .collect(),
                ),
                Value::map(
                    [("name".to_owned(), Value::from("b"))]
                        .into_iter()
                        .collect(),
                ),
            ]),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(
        t.render_data(&data, "", &Limits::default(), None).unwrap(),
        "a b 2"
    );
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Template-ish fragments so random inputs reach deep into the parser and evaluator.
    const PIECES: &[&str] = &[
        "{{", "}}", "{{-", " -}}", " ", "if", "else", "end", "range", "with", "define", "template",
        "block", "break", "continue", "\"x\"", "$labels", "$value", "$x", ":=", "=", "|", "(", ")",
        ".", ".Labels", ".job", "1", "1.5", "printf", "\"%s%s\"", "len", "index", "humanize", "eq",
        "and", "or", "not", "/*", "*/", "text", "\n", "$", ",", "$k", "'a'", "nil", "true",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_respects_limits(idx in proptest::collection::vec(0..PIECES.len(), 0..40)) {
            let text: String = idx.iter().map(|i| PIECES[*i]).collect();
            if let Ok(t) = Template::parse("fuzz", &text) {
                let limits = Limits { max_output_bytes: 4096, max_steps: 10_000, max_depth: 20 };
                if let Ok(out) = t.render(&ctx(), &limits, None) {
                    prop_assert!(out.len() <= 4096);
                }
            }
        }

        #[test]
        fn float_formatting_round_trips(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            // Go's %v prints the shortest representation that parses back to the same value.
            let s = gofmt::format_float(v, 'g', None);
            prop_assert_eq!(s.parse::<f64>().ok(), Some(v), "{}", s);
        }
    }
}

#[test]
fn default_depth_fits_the_stack() {
    // Test threads have 2 MiB stacks; the default depth must fail cleanly, not overflow.
    let t = Template::parse(
        "t",
        "{{ define \"r\" }}{{ if . }}{{ with . }}{{ range (args 1 2) }}{{ end }}{{ template \"r\" (printf \"%s\" .) }}{{ end }}{{ end }}{{ end }}{{ template \"r\" \"x\" }}",
    )
    .unwrap();
    let e = t.render(&ctx(), &Limits::default(), None).unwrap_err();
    assert!(matches!(e, TemplateError::Limit { .. }), "{e}");
}

#[test]
fn deepest_parsable_template_fits_the_stack() {
    // Maximum parse nesting inside a recursive template, at default limits, in a 2 MiB stack.
    let depth = parse::MAX_PARSE_DEPTH - 3;
    let body = format!(
        "{}{{{{ template \"r\" . }}}}{}",
        "{{ if (not (not .)) }}".repeat(depth),
        "{{ end }}".repeat(depth)
    );
    let t = Template::parse(
        "t",
        &format!("{{{{ define \"r\" }}}}{body}{{{{ end }}}}{{{{ template \"r\" 1 }}}}"),
    )
    .unwrap();
    let e = t.render(&ctx(), &Limits::default(), None).unwrap_err();
    assert!(matches!(e, TemplateError::Limit { .. }), "{e}");
    assert!(Template::parse("t", &"{{ if 1 }}".repeat(parse::MAX_PARSE_DEPTH + 1)).is_err());
}
