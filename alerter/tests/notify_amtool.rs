//! Differential tests against Alertmanager's own `amtool` (Debian `prometheus-alertmanager`):
//! `amtool check-config` and our loader must agree on every corpus file, and
//! `amtool config routes test` and our routing tree must pick the same receivers.
//!
//! Fails (does not skip) when `amtool` is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tocsin_alerter::notify::config::{ConfigErrorKind, load_file};
use tocsin_alerter::notify::route::RouteTree;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notify")
}

fn require_amtool() {
    let ok = Command::new("amtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "amtool is not installed; install it with `apt-get install -y prometheus-alertmanager`"
    );
}

/// `good_*.yml` must load and `bad_*.yml` must be refused, by amtool and by us alike.
#[test]
fn check_config_agrees_with_amtool() {
    require_amtool();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "corpus too small: {}", files.len());
    let mut disagreements = Vec::new();
    let (mut good, mut bad) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let expect_ok = name.starts_with("good_");
        let out = Command::new("amtool")
            .arg("check-config")
            .arg(f)
            .output()
            .unwrap();
        let amtool_ok = out.status.success();
        let ours = load_file(f);
        if expect_ok {
            good += 1;
        } else {
            bad += 1;
        }
        if amtool_ok != expect_ok || ours.is_ok() != expect_ok {
            disagreements.push(format!(
                "{name}: expected {}, amtool {} ({}), ours {}",
                if expect_ok { "ok" } else { "error" },
                if amtool_ok { "ok" } else { "error" },
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .replace('\n', " | "),
                match &ours {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
    }
    eprintln!(
        "check-config differential: {} files ({good} good, {bad} bad), {} disagreements",
        files.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Files Alertmanager accepts but Tocsin deliberately refuses (receiver types, `oauth2`, time
/// zones it does not implement): amtool passes them, we refuse them with `Unsupported` only.
#[test]
fn unsupported_features_are_refused_by_name() {
    require_amtool();
    let mut n = 0;
    for e in std::fs::read_dir(data().join("unsupported")).unwrap() {
        let f = e.unwrap().path();
        let status = Command::new("amtool")
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap()
            .status;
        assert!(status.success(), "amtool refuses {}", f.display());
        let errors = load_file(&f).expect_err(&format!("{} should be refused", f.display()));
        assert!(
            errors
                .0
                .iter()
                .all(|e| matches!(e.kind, ConfigErrorKind::Unsupported(_))),
            "{}: {errors}",
            f.display()
        );
        n += 1;
    }
    assert!(n >= 8);
}

/// `amtool config routes show` prints each route's matchers as Alertmanager's
/// `Matchers.String()`, the parts of its route keys: ours must print the same, in tree order.
#[test]
fn route_keys_agree_with_amtool() {
    require_amtool();
    let file = data().join("corpus/good_full.yml");
    let out = Command::new("amtool")
        .args(["config", "routes", "show"])
        .arg(format!("--config.file={}", file.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let start = l.find('{')?;
            let end = l.find("}  ")?;
            Some(l[start..=end].to_owned())
        })
        .collect();
    let config = load_file(&file).unwrap();
    let tree = RouteTree::new(&config.route);
    let ours: Vec<String> = tree.nodes()[1..]
        .iter()
        .map(|n| n.matchers.to_string())
        .collect();
    assert_eq!(theirs, ours);
    assert!(
        ours.iter().any(|m| m.contains("^(?:")),
        "match_re keeps its anchors"
    );
}

/// Matcher strings (label syntax, quoting, escapes, RE2 regexes) in a route's `matchers`:
/// amtool and our loader accept and refuse the same ones.
#[test]
fn matcher_syntax_agrees_with_amtool() {
    require_amtool();
    let cases = [
        r#"a=b"#,
        r#"a="b""#,
        r#"a = "b c""#,
        r#"a=~"x|y""#,
        r#"a!~x.*"#,
        r#"{a="b"}"#,
        r#"a="b\"c""#,
        r#"a="b"#,
        r#"a=b""#,
        r#"a=~"(x""#,
        r#"1a=b"#,
        r#"a:b=c"#,
        r#"a"#,
        r#"=b"#,
        r#"a=~["#,
        r#"a!="#,
        r#"a="""#,
        r#"a="x,y",b=c"#,
        r#"a==b"#,
        r#"a=~\d+"#,
        r#"a="日本""#,
        r#"_a=b"#,
        r#"a-b=c"#,
        r#"a =~ "x""#,
        r#" a=b "#,
        r#"a=~"(?i)foo""#,
        r#"a=~"\p{L}+""#,
        r#"a=~"(?P<n>x)""#,
        r#"a=~"x{2,}""#,
        r#"a=~"a**""#,
        r#"a=~"(?=x)""#,
        r#"a=~"x{1001}""#,
        r#"a=~"[[:alpha:]]""#,
        r#"a=~"\z""#,
        r#"a=~"(?s).""#,
        r#"a=~"[^\n]""#,
        r#"a=~"x++""#,
        r#"a=~"\C""#,
        r#"a=~"(?U)x*""#,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    for (i, m) in cases.iter().enumerate() {
        let text = format!(
            "route:\n  receiver: r\n  routes:\n    - matchers: ['{}']\nreceivers:\n  - name: r\n",
            m.replace('\'', "''")
        );
        let path = dir.path().join(format!("m{i}.yml"));
        std::fs::write(&path, &text).unwrap();
        let amtool_ok = Command::new("amtool")
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap()
            .status
            .success();
        let ours = load_file(&path);
        if amtool_ok != ours.is_ok() {
            disagreements.push(format!(
                "{m}: amtool {}, ours {}",
                if amtool_ok { "ok" } else { "error" },
                match &ours {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
    }
    eprintln!(
        "matcher differential: {} strings, {} disagreements",
        cases.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// A small deterministic generator (no rand dependency needed for a fixed corpus).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[test]
fn routes_test_agrees_with_amtool() {
    require_amtool();
    let file = data().join("corpus/good_full.yml");
    let config = load_file(&file).unwrap();
    let tree = RouteTree::new(&config.route);
    let vocab: &[(&str, &[&str])] = &[
        ("severity", &["page", "critical", "warning", "info"]),
        ("service", &["db", "mysql", "postgres", "web"]),
        ("env", &["dev", "prod"]),
        ("team", &["frontend", "ops", "db"]),
        ("kind", &["audit", "metric"]),
        ("channel", &["sns", "chat"]),
        ("alertname", &["Down", "HighLatency"]),
    ];
    let mut rng = Lcg(42);
    let mut sets: Vec<BTreeMap<String, String>> = Vec::new();
    for _ in 0..60 {
        let mut labels = BTreeMap::new();
        for (name, values) in vocab {
            if rng.next(3) > 0 {
                labels.insert(
                    (*name).to_owned(),
                    values[rng.next(values.len())].to_owned(),
                );
            }
        }
        labels
            .entry("alertname".to_owned())
            .or_insert_with(|| "Down".to_owned());
        sets.push(labels);
    }
    let mut mismatches = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for labels in &sets {
        let out = Command::new("amtool")
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", file.display()))
            .args(labels.iter().map(|(k, v)| format!("{k}={v}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let ours = tree.receivers(labels).join(",");
        seen.insert(ours.clone());
        if theirs != ours {
            mismatches.push(format!("{labels:?}: amtool {theirs:?}, ours {ours:?}"));
        }
    }
    eprintln!(
        "routes-test differential: {} label sets, {} mismatches",
        sets.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(seen.len() >= 6, "label sets reach too few routes: {seen:?}");
}
