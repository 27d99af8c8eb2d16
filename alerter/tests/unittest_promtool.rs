//! Differential test: our `promtool test rules` runner against the real `promtool` (Debian's
//! Prometheus 2.42) on every test file of `tests/data/unittest/` (rule files live in its
//! `rules/` folder). Both must agree on pass/fail for every file, files named `pass_*` must
//! pass and `fail_*` must fail, and the printed text (stdout and stderr interleaved, as on a
//! terminal) must be identical except for the files listed in [`WORDING_DIFFERS`], whose
//! messages come from components worded differently (YAML decoder, PromQL parser).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::promtool;

use tocsin_alerter::unittest::{UnitTestOptions, run_files};

/// Files whose failure text is expected to differ, and why. Pass/fail must still agree.
const WORDING_DIFFERS: &[(&str, &str)] = &[
    (
        "fail_bad_yaml_key.yml",
        "YAML errors are worded by serde-saphyr, not Go's yaml.v2",
    ),
    (
        "fail_promql_parse_error.yml",
        "PromQL parse errors are worded by promql-parser",
    ),
    (
        "fail_bad_rule_file.yml",
        "rule-file errors are worded by our checker (tests/rules_promtool.rs)",
    ),
    (
        "fail_template_errors.yml",
        "template execution errors are worded by our template engine (no `at <node>` context; \
         Prometheus 2.42 types `.Value` as float64)",
    ),
    (
        "fail_bad_input_series.yml",
        "series-notation errors are worded by our parser",
    ),
];

/// Runs promtool with stdout and stderr on one pipe, so the interleaving is preserved.
fn run_promtool(promtool: &Path, file: &Path) -> (bool, String) {
    let out_path = std::env::temp_dir().join(format!(
        "tocsin-unittest-{}-{}.out",
        std::process::id(),
        file.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let out = std::fs::File::create(&out_path).expect("create output file");
    let err = out.try_clone().expect("clone output file");
    let status = Command::new(promtool)
        .args(["test", "rules"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("run promtool");
    let text = std::fs::read_to_string(&out_path).expect("read promtool output");
    let _ = std::fs::remove_file(&out_path);
    (status.success(), text)
}

#[test]
fn runner_agrees_with_promtool() {
    let promtool = promtool();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/unittest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read tests/data/unittest")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 25,
        "expected the unit-test corpus, found {} files",
        files.len()
    );
    let mut verdict_mismatches = Vec::new();
    let mut text_mismatches = Vec::new();
    let mut expected_wording = Vec::new();
    let (mut passing, mut failing) = (0, 0);
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (theirs_ok, theirs) = run_promtool(&promtool, f);
        let report = run_files(std::slice::from_ref(f), &UnitTestOptions::default());
        let ours = report.to_string();
        let intended = name.starts_with("pass_");
        if intended {
            passing += 1;
        } else {
            failing += 1;
        }
        if theirs_ok != report.success() || theirs_ok != intended {
            verdict_mismatches.push(format!(
                "{name}: promtool {} / ours {} / intended {}\n--- promtool:\n{theirs}--- ours:\n{ours}",
                verdict(theirs_ok),
                verdict(report.success()),
                verdict(intended)
            ));
        }
        if theirs != ours {
            let diff = format!("{name}:\n--- promtool:\n{theirs}--- ours:\n{ours}");
            match WORDING_DIFFERS.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => expected_wording.push(format!("{name} ({why})")),
                None => text_mismatches.push(diff),
            }
        }
    }
    println!(
        "{} unit-test files ({passing} pass_*, {failing} fail_*): verdicts agree on {}, text identical on {}; \
         expected wording differences: {:?}",
        files.len(),
        files.len() - verdict_mismatches.len(),
        files.len() - text_mismatches.len() - expected_wording.len(),
        expected_wording
    );
    assert!(
        verdict_mismatches.is_empty(),
        "{} of {} files disagree on pass/fail:\n\n{}",
        verdict_mismatches.len(),
        files.len(),
        verdict_mismatches.join("\n\n")
    );
    assert!(
        text_mismatches.is_empty(),
        "{} of {} files print different text:\n\n{}",
        text_mismatches.len(),
        files.len(),
        text_mismatches.join("\n\n")
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "SUCCESS" } else { "FAILED" }
}
