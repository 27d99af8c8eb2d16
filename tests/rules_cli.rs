//! `tocsin rules check|apply|list|test` and `tocsin notify check|apply|show` through the real
//! binary: promtool's output shape, exit codes, and what reaches the store.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_list_through_any_node_and_bad_files_change_nothing() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = support::three_nodes(dir.path());
    for n in &mut nodes {
        n.start();
    }
    let http = support::http_client();
    let ready = |h: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("http://{h}/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    };
    for n in &nodes {
        support::wait_for(Duration::from_secs(30), "node ready", || {
            ready(n.http.clone())
        })
        .await;
    }
    let rules = dir.path().join("api.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: api\n  interval: 15s\n  rules:\n  - alert: HighErrorRate\n    expr: rate(http_errors_total[5m]) > 0.1\n    for: 1m\n  - record: job:errors:rate5m\n    expr: sum by (job) (rate(http_errors_total[5m]))\n",
    )
    .unwrap();
    // Apply through node 2, list through node 3.
    let s2 = format!("http://{}", nodes[1].http);
    let s3 = format!("http://{}", nodes[2].http);
    let (code, out) = tocsin(&["rules", "apply", rules.to_str().unwrap(), "--server", &s2]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("namespace \"api\": 1 groups, 2 rules"),
        "{out}"
    );
    let (code, listed) = tocsin(&["rules", "list", "--server", &s3]);
    assert_eq!(code, Some(0), "{listed}");
    assert!(
        listed.contains("group api (every 15s") && listed.contains("HighErrorRate"),
        "{listed}"
    );

    // A bad file is refused with positions and changes nothing.
    let bad = dir.path().join("api-bad.yml");
    std::fs::write(
        &bad,
        "groups:\n- name: api\n  rules:\n  - alert: Broken\n    expr: rate(x[5m]\n",
    )
    .unwrap();
    let (code, out) = tocsin(&[
        "rules",
        "apply",
        bad.to_str().unwrap(),
        "--namespace",
        "api",
        "--server",
        &s3,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("nothing was changed") && out.contains("Broken"),
        "{out}"
    );
    let (_, after) = tocsin(&["rules", "list", "--server", &s2]);
    assert_eq!(after, listed, "the running rule set is untouched");

    // Optimistic locking: a stale expected_version is a 409 that changes nothing.
    let r = http
        .put(format!("{s2}/api/v1/rules/api?expected_version=1"))
        .body(std::fs::read(&rules).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CONFLICT);
    let r = http
        .put(format!("{s2}/api/v1/rules/bad%20name"))
        .body("groups: []")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
}

#[test]
fn rules_test_runs_promtool_unit_tests_with_its_exit_codes() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerter/tests/data/unittest");
    let pass = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pass_")
        })
        .expect("a passing unit-test file in the corpus");
    let out = std::process::Command::new(support::bin())
        .args(["rules", "test"])
        .arg(&pass)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");

    let fail = data.join("fail_basic_alert_wrong_labels.yml");
    let out = std::process::Command::new(support::bin())
        .args(["rules", "test"])
        .arg(&fail)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED") && text.contains("exp:") && text.contains("got:"),
        "{text}"
    );
}

/// `tocsin notify check|apply` read a config's `templates:` files relative to it and upload
/// them with it; the stored config shows them; a config listing templates whose files were
/// not uploaded (a plain PUT) is refused naming the pattern, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_apply_uploads_template_files_and_refuses_a_config_without_them() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("tmpl")).unwrap();
    let am = conf.join("alertmanager.yml");
    let yaml = "route:\n  receiver: team\ntemplates: ['tmpl/*.tmpl']\nreceivers:\n- name: team\n  webhook_configs:\n  - url: http://127.0.0.1:9/hook\n";
    std::fs::write(&am, yaml).unwrap();
    std::fs::write(
        conf.join("tmpl/team.tmpl"),
        "{{ define \"team.title\" }}[{{ .Status }}]{{ end }}\n{{ define \"team.body\" }}body{{ end }}\n",
    )
    .unwrap();
    let (code, out) = tocsin(&["notify", "check", am.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 templates defined"), "{out}");

    std::fs::write(
        conf.join("tmpl/bad.tmpl"),
        "{{ define \"x\" }}{{ if }}{{ end }}",
    )
    .unwrap();
    let (code, out) = tocsin(&["notify", "check", am.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("templates[0] (tmpl/bad.tmpl)"), "{out}");
    std::fs::remove_file(conf.join("tmpl/bad.tmpl")).unwrap();

    let mut nodes = support::three_nodes(dir.path());
    for n in &mut nodes {
        n.start();
    }
    let http = support::http_client();
    let server = format!("http://{}", nodes[0].http);
    let applied = support::wait_for(Duration::from_secs(30), "notify apply", || {
        let (code, out) = tocsin(&["notify", "apply", am.to_str().unwrap(), "--server", &server]);
        async move { (code == Some(0)).then_some(out) }
    })
    .await;
    assert!(applied.contains("applied as version"), "{applied}");
    let (code, shown) = tocsin(&["notify", "show", "--server", &server]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("tocsin_template_files") && shown.contains("team.title"),
        "{shown}"
    );
    // What `show` prints applies again unchanged (it carries its files).
    let again = conf.join("shown.yml");
    std::fs::write(&again, &shown).unwrap();
    let (code, out) = tocsin(&["notify", "check", again.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");

    let r = http
        .put(format!("{server}/api/v1/notify/config"))
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("templates[0]") && text.contains("nothing was changed"),
        "{text}"
    );
    let (_, after) = tocsin(&["notify", "show", "--server", &server]);
    assert_eq!(after, shown, "the stored config is untouched");
}

/// `tocsin worker --datasource-config FILE`: a bad file is refused before anything starts,
/// naming the field.
#[test]
fn a_bad_datasource_config_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let run = |toml: &str| {
        let file = dir.path().join("datasource.toml");
        std::fs::write(&file, toml).unwrap();
        let out = std::process::Command::new(support::bin())
            .args([
                "worker",
                "--zone=a",
                "--join=127.0.0.1:1",
                "--datasource-config",
            ])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run("url = \"http://prom:9090\"\n[tls]\nca_file = \"/ca.pem\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`tls`") && err.contains("https"), "{err}");
    let (code, err) =
        run("url = \"https://prom:9090\"\n[tls]\nca_file = \"/nonexistent/ca.pem\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("tls.ca_file") && err.contains("cannot read"),
        "{err}"
    );
    let (code, err) = run("url = \"https://prom:9090\"\ntimeout = 3\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("timeout"), "{err}");
}

/// Runs the `tocsin` binary with `args`: its exit code, and stdout followed by stderr.
fn tocsin(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(support::bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}
