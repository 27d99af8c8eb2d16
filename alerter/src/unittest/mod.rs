//! `promtool test rules`: rule unit-test files run unchanged on [`crate::eval`], with
//! promtool 2.42's output and verdicts (`tests/unittest_promtool.rs` checks both against
//! the real promtool).
//!
//! Layout:
//! - `file`: the test-file format, decoded strictly.
//! - `series`: `input_series` expanding notation and series descriptors, bounded.
//! - `paths`: `rule_files` resolution (relative to the test file, globs).
//! - `runner`: one test group — the lazy loading of input samples, the evaluation loop,
//!   alert and PromQL checks, and promtool's failure messages.
//! - `gofmt`: the Go formatting those messages use.
//!
//! Bounds ([`UnitTestOptions`]): the samples one test group's `input_series` expand to, and
//! the evaluation steps up to the largest `eval_time`; beyond either the test group fails
//! with an error naming the limit instead of exhausting memory or time.
//!
//! Differences from promtool 2.42: error texts that come from other components (YAML
//! decoding, rule-file validation, PromQL parse and evaluation errors) are worded by those
//! components; groups not named in `group_eval_order` run in file order (promtool's order
//! is random); Prometheus 3.x group fields (`labels`, `query_offset`) are accepted.

mod file;
mod gofmt;
mod paths;
mod runner;
mod series;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::rules::MAX_RULE_FILE_BYTES;

/// Default bound on the samples one test group's `input_series` may expand to (16 bytes
/// each in the store: 5M samples ≈ 80 MB). Real tests hold thousands.
pub const DEFAULT_MAX_INPUT_SAMPLES: u64 = 5_000_000;
/// Default bound on evaluation steps per test group (one step evaluates every group):
/// two years of one-minute steps.
pub const DEFAULT_MAX_EVAL_STEPS: u64 = 1_051_200;

/// Limits for [`run_files`].
#[derive(Debug, Clone)]
pub struct UnitTestOptions {
    /// Most samples the `input_series` of one test group may expand to.
    pub max_input_samples: u64,
    /// Most evaluation steps (`max eval_time / evaluation_interval + 1`) per test group.
    pub max_eval_steps: u64,
}

impl Default for UnitTestOptions {
    fn default() -> Self {
        Self {
            max_input_samples: DEFAULT_MAX_INPUT_SAMPLES,
            max_eval_steps: DEFAULT_MAX_EVAL_STEPS,
        }
    }
}

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The path as given.
    pub path: PathBuf,
    /// Warnings printed while resolving `rule_files` (promtool writes them to stderr).
    pub warnings: Vec<String>,
    /// Failure messages, each formatted as promtool formats it; empty on success.
    pub errors: Vec<String>,
}

impl FileReport {
    /// Whether every test of the file passed.
    pub fn success(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The outcome of [`run_files`]; `Display` prints promtool's text (stdout and stderr
/// interleaved as on a terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitTestReport {
    /// One report per file, in the order given.
    pub files: Vec<FileReport>,
}

/// Which of promtool's output streams a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl UnitTestReport {
    /// Whether every file passed (promtool's exit status 0).
    pub fn success(&self) -> bool {
        self.files.iter().all(FileReport::success)
    }

    /// promtool's output as `(stream, text)` chunks in the order it writes them.
    pub fn chunks(&self) -> Vec<(Stream, String)> {
        let mut out = Vec::new();
        for f in &self.files {
            out.push((
                Stream::Stdout,
                format!("Unit Testing:  {}\n", f.path.display()),
            ));
            for w in &f.warnings {
                out.push((Stream::Stderr, format!("{w}\n")));
            }
            if f.errors.is_empty() {
                out.push((Stream::Stdout, "  SUCCESS\n".to_owned()));
            } else {
                out.push((Stream::Stderr, "  FAILED:\n".to_owned()));
                for e in &f.errors {
                    out.push((Stream::Stderr, format!("{e}\n")));
                    out.push((Stream::Stdout, "\n".to_owned()));
                }
            }
            out.push((Stream::Stdout, "\n".to_owned()));
        }
        out
    }
}

impl fmt::Display for UnitTestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (_, text) in self.chunks() {
            f.write_str(&text)?;
        }
        Ok(())
    }
}

/// Runs every test file, as `promtool test rules FILE...` does.
pub fn run_files(paths: &[PathBuf], opts: &UnitTestOptions) -> UnitTestReport {
    UnitTestReport {
        files: paths.iter().map(|p| run_file(p, opts)).collect(),
    }
}

fn run_file(path: &Path, opts: &UnitTestOptions) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    let text = match read_text(path) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let parsed: file::TestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut rule_files = Vec::new();
    for pattern in &parsed.rule_files {
        let resolved = paths::resolve(base, pattern);
        match paths::glob(&resolved) {
            Ok(m) if m.is_empty() => report
                .warnings
                .push(format!("  WARNING: no file match pattern {resolved}")),
            Ok(m) => rule_files.extend(m),
            Err(e) => {
                report.errors.push(e);
                return report;
            }
        }
    }
    let eval_interval_ms = match parsed.evaluation_interval {
        Some(d) if d.0 > 0 => d.0,
        _ => 60_000,
    };
    let mut order = std::collections::BTreeMap::new();
    for (i, g) in parsed.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            report
                .errors
                .push(format!("group name repeated in evaluation order: {g}"));
            return report;
        }
    }
    let suite = runner::Suite {
        rule_files: &rule_files,
        eval_interval_ms,
        group_order: &order,
        opts,
    };
    for tg in &parsed.tests {
        report.errors.extend(suite.run(tg));
    }
    report
}

/// Reads a file, refusing sizes no test or rule file has; errors worded like Go's.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| io_error(&shown.to_string(), &e))?;
    if meta.len() > MAX_RULE_FILE_BYTES {
        return Err(format!(
            "{shown}: file is {} bytes; the limit is {MAX_RULE_FILE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| io_error(&shown.to_string(), &e))
}

fn io_error(path: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("open {path}: no such file or directory"),
        std::io::ErrorKind::PermissionDenied => format!("open {path}: permission denied"),
        _ => format!("open {path}: {e}"),
    }
}

#[cfg(test)]
mod tests;
