use std::time::Duration;

use super::*;

fn err_of(text: &str) -> ConfigErrors {
    load(text).expect_err("config should be refused")
}

const HOOK: &str =
    "receivers:\n  - name: r\n    webhook_configs:\n      - url: 'http://hook.example.org/'\n";

#[test]
fn defaults_follow_alertmanager() {
    let c = load(&format!("route:\n  receiver: r\n{HOOK}")).unwrap();
    assert_eq!(c.global.resolve_timeout, Duration::from_secs(300));
    assert_eq!(c.global.smtp.hello, "localhost");
    assert!(c.global.smtp.require_tls);
    assert_eq!(c.route.group_wait, None);
    let Integration::Webhook(w) = &c.receivers[0].integrations[0] else {
        panic!("expected a webhook");
    };
    assert!(w.send_resolved);
    assert_eq!(w.max_alerts, 0);
}

#[test]
fn errors_name_path_line_and_column() {
    let text = format!(
        "route:\n  receiver: r\n  routes:\n    - receiver: r\n    - receiver: r\n    - matchers:\n        - 'a=~\"(x\"'\n{HOOK}"
    );
    let e = err_of(&text);
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "route.routes[2].matchers[0]");
    assert_eq!((e.0[0].line, e.0[0].column), (7, 11));
    assert!(e.to_string().contains("invalid regular expression"), "{e}");
}

#[test]
fn unknown_fields_are_located_by_path() {
    let e = err_of(&format!(
        "route:\n  receiver: r\n  routes:\n    - receiver: r\n      group_wiat: 1s\n{HOOK}"
    ));
    assert_eq!(e.0[0].path, "route.routes[0].group_wiat", "{e}");
    assert_eq!(e.0[0].line, 5);
    assert!(matches!(e.0[0].kind, ConfigErrorKind::Syntax(_)));
}

#[test]
fn unsupported_receivers_are_named() {
    let e = err_of(
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    victorops_configs:\n      - api_key: k\n        routing_key: x\n    telegram_configs:\n      - chat_id: 1\n",
    );
    let text = e.to_string();
    assert!(text.contains("receivers[0].victorops_configs"), "{text}");
    assert!(text.contains("telegram_configs"), "{text}");
    assert!(text.contains("Tocsin does not support"), "{text}");
    assert!(
        e.0.iter()
            .all(|x| matches!(x.kind, ConfigErrorKind::Unsupported(_)))
    );
}

#[test]
fn amtool_style_checks() {
    let cases = [
        ("route:\n  receiver: nope\n", "undefined receiver \"nope\""),
        (
            "route:\n  receiver: r\n  group_interval: 0s\n",
            "group_interval cannot be zero",
        ),
        (
            "route:\n  receiver: r\n  group_wait: 5 minutes\n",
            "route.group_wait",
        ),
        (
            "route:\n  receiver: r\n  routes:\n    - mute_time_intervals: [x]\n",
            "undefined time interval \"x\"",
        ),
        (
            "route:\n  receiver: r\n  matchers: [a=b]\n",
            "root route must not have any matchers",
        ),
        (
            "route:\n  receiver: r\n  group_by: ['...', a]\n",
            "wildcard group_by",
        ),
    ];
    for (route, want) in cases {
        let e = err_of(&format!("{route}{HOOK}")).to_string();
        assert!(e.contains(want), "{route:?}: {e}");
    }
    let dup = err_of("route:\n  receiver: r\nreceivers:\n  - name: r\n  - name: r\n");
    assert_eq!(dup.0[0].path, "receivers[1].name");
    assert!(matches!(
        dup.0[0].kind,
        ConfigErrorKind::DuplicateReceiver(_)
    ));
}

#[test]
fn time_zones_outside_utc_and_fixed_offsets_are_refused() {
    let e = err_of(&format!(
        "route:\n  receiver: r\ntime_intervals:\n  - name: x\n    time_intervals:\n      - location: Europe/Paris\n{HOOK}"
    ));
    assert_eq!(e.0[0].path, "time_intervals[0].time_intervals[0].location");
    assert!(e.to_string().contains("Etc/GMT"), "{e}");
}

#[test]
fn global_smtp_settings_reach_email_receivers() {
    let c = load(
        "global:\n  smtp_smarthost: 'mx:25'\n  smtp_from: a@b\n  smtp_require_tls: false\nroute:\n  receiver: e\nreceivers:\n  - name: e\n    email_configs:\n      - to: x@y\n        headers: {subject: hi}\n",
    )
    .unwrap();
    let Integration::Email(e) = &c.receivers[0].integrations[0] else {
        panic!("expected email");
    };
    assert_eq!((e.smarthost.as_str(), e.from.as_str()), ("mx:25", "a@b"));
    assert!(!e.require_tls);
    assert_eq!(e.headers.get("Subject").map(String::as_str), Some("hi"));
    assert!(!e.send_resolved);
}

#[test]
fn unknown_receiver_fields_are_located() {
    let e = err_of(
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: 'http://a/'\n        urll: x\n",
    );
    assert_eq!(e.0[0].path, "receivers[0].webhook_configs[0].urll", "{e}");
    assert_eq!(e.0[0].line, 7);
    assert!(e.to_string().contains("urll"), "{e}");
}

fn with_templates(pattern: &str) -> String {
    format!("route:\n  receiver: r\ntemplates:\n  - '{pattern}'\n{HOOK}")
}

fn files(pattern: &str, path: &str, text: &str) -> templates::TemplateFiles {
    [(
        pattern.to_string(),
        [(path.to_string(), text.to_string())].into(),
    )]
    .into()
}

#[test]
fn template_files_travel_with_the_config() {
    let text = with_templates("t/*.tmpl");
    assert_eq!(templates::patterns(&text), vec!["t/*.tmpl".to_string()]);
    assert!(!templates::has_files(&text));
    let bundled = templates::bundle(
        &text,
        &files(
            "t/*.tmpl",
            "t/team.tmpl",
            "{{ define \"team.title\" }}[{{ .Status }}]\n{{ .GroupLabels.SortedPairs.Values }}{{ end }}\n",
        ),
    );
    assert!(templates::has_files(&bundled));
    let c = load(&bundled).unwrap_or_else(|e| panic!("{e}\n{bundled}"));
    assert_eq!(c.templates, vec!["t/*.tmpl".to_string()]);
    assert_eq!(c.library.defined_names(), vec!["team.title".to_string()]);
    // The patterns and files survive a second round (the output of `notify show`).
    assert_eq!(templates::patterns(&bundled), vec!["t/*.tmpl".to_string()]);
}

#[test]
fn listed_templates_must_be_uploaded() {
    let e = err_of(&with_templates("t/*.tmpl"));
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "templates[0]");
    assert!(e.to_string().contains("tocsin notify apply"), "{e}");
    // A glob that matched nothing was uploaded as such: fine, as in Alertmanager.
    let empty: templates::TemplateFiles = [("t/*.tmpl".to_string(), Default::default())].into();
    load(&templates::bundle(&with_templates("t/*.tmpl"), &empty)).unwrap();
}

#[test]
fn a_bad_template_file_is_named() {
    let bundled = templates::bundle(
        &with_templates("t/*.tmpl"),
        &files(
            "t/*.tmpl",
            "t/bad.tmpl",
            "{{ define \"x\" }}{{ if }}{{ end }}",
        ),
    );
    let e = err_of(&bundled);
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "templates[0] (t/bad.tmpl)");
}

#[test]
fn uploaded_files_must_be_listed_and_the_second_document_well_formed() {
    let bundled = templates::bundle(
        &format!("route:\n  receiver: r\n{HOOK}"),
        &files(
            "other/*.tmpl",
            "other/a.tmpl",
            "{{ define \"a\" }}a{{ end }}",
        ),
    );
    let e = err_of(&bundled);
    assert!(e.0[0].path.starts_with("tocsin_template_files"), "{e}");
    let e = err_of(&format!(
        "route:\n  receiver: r\n{HOOK}---\nsomething_else: 1\n"
    ));
    assert_eq!(e.0[0].path, "tocsin_template_files", "{e}");
    assert_eq!(e.0[0].line, 8, "{e}");
}

#[test]
fn a_leading_document_marker_is_not_a_second_document() {
    load(&format!("---\n# comment\nroute:\n  receiver: r\n{HOOK}")).unwrap();
}
