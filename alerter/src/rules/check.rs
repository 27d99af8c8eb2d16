//! `tocsin rules check`: check files and report like `promtool check rules`.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use super::error::{RuleError, RuleErrorKind};
use super::{MAX_RULE_FILE_BYTES, parse_rule_file};

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// The path as given.
    pub path: PathBuf,
    /// Number of rules found, or every error found.
    pub result: Result<usize, Vec<RuleError>>,
}

/// The outcome for all files, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// One entry per input path.
    pub files: Vec<FileReport>,
}

impl CheckReport {
    /// True when every file passed; the CLI exits 0 then and 1 otherwise (as promtool does).
    pub fn success(&self) -> bool {
        self.files.iter().all(|f| f.result.is_ok())
    }
}

impl fmt::Display for CheckReport {
    /// promtool's layout: `Checking FILE`, then `  SUCCESS: N rules found` or `  FAILED:`
    /// followed by one error per line, and a blank line after each file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "Checking {}", file.path.display())?;
            match &file.result {
                Ok(n) => writeln!(f, "  SUCCESS: {n} rules found")?,
                Err(errors) => {
                    writeln!(f, "  FAILED:")?;
                    for e in errors {
                        writeln!(f, "{e}")?;
                    }
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Checks rule files as `promtool check rules FILE...` does.
///
/// Contract: every path is checked (a failing file does not stop the others); each file's
/// namespace is its path as given; a file is read only up to [`MAX_RULE_FILE_BYTES`]; every
/// error carries file, line, column, group and rule where they apply. Nothing is printed:
/// the caller prints `report` (its `Display` is promtool's format) and exits with status 0
/// when [`CheckReport::success`], else 1.
pub fn check_files(paths: &[PathBuf]) -> CheckReport {
    let files = paths
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            let result = read_bounded(p)
                .map_err(|kind| {
                    vec![RuleError {
                        file: name.clone(),
                        line: 0,
                        column: 0,
                        group: None,
                        rule: None,
                        kind,
                    }]
                })
                .and_then(|text| parse_rule_file(&name, &text))
                .map(|rf| rf.rule_count());
            FileReport {
                path: p.clone(),
                result,
            }
        })
        .collect();
    CheckReport { files }
}

fn read_bounded(path: &PathBuf) -> Result<String, RuleErrorKind> {
    let file = std::fs::File::open(path).map_err(|e| RuleErrorKind::Io(e.to_string()))?;
    let mut buf = Vec::new();
    file.take(MAX_RULE_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| RuleErrorKind::Io(e.to_string()))?;
    if buf.len() as u64 > MAX_RULE_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(buf.len() as u64, |m| m.len());
        return Err(RuleErrorKind::FileTooLarge {
            size,
            limit: MAX_RULE_FILE_BYTES,
        });
    }
    String::from_utf8(buf).map_err(|_| RuleErrorKind::NotUtf8)
}
