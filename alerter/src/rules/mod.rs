//! Prometheus rule files: the format, its validation, and `tocsin rules check`.
//!
//! Layout:
//! - `raw`: serde types mirroring the YAML as written, with positions; unknown keys are
//!   errors (Prometheus decodes with `KnownFields(true)`).
//! - `validate`: `promtool check rules`'s checks, collecting every error with its position.
//! - [`duration`]: Prometheus's duration grammar.
//! - [`error`]: [`RuleError`], which always names file, line, column, group and rule.
//! - `check`: [`check_files`] and its promtool-style report.
//!
//! The typed result ([`RuleFile`] → [`RuleGroup`] → [`Rule`]) can only hold valid rules:
//! an alerting rule and a recording rule are different types.
//!
//! Differences from `promtool check rules` (2.42), all deliberate:
//! - Every error has a line and column (promtool omits them for label, annotation and
//!   template errors); YAML errors are worded by serde-saphyr, PromQL errors by
//!   `promql-parser`, so messages differ while pass/fail agrees (`tests/rules_promtool.rs`).
//! - Group `labels` and `query_offset` (Prometheus 3.x) are accepted; 2.42 rejects them.
//! - Names are validated with the classic (pre-UTF-8) rules, as 2.x does.
//! - Only the first YAML document is used, as in Prometheus, but every document must be
//!   well-formed YAML of the rule-file shape.
//! - Expressions over [`MAX_EXPR_BYTES`] or nested deeper than [`MAX_EXPR_NESTING`] are
//!   refused before parsing (the parser would overflow the stack); files over
//!   [`MAX_RULE_FILE_BYTES`] are refused; YAML nesting is capped by serde-saphyr's budget.
//! - Duplicate rules are not linted (promtool only warns).

mod check;
pub mod duration;
pub mod error;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

pub use check::{CheckReport, FileReport, check_files};
pub use error::{RuleError, RuleErrorKind, RuleRef};
pub use validate::{is_valid_label_name, is_valid_metric_name};

/// Largest rule file we read. Real rule files are kilobytes; this bounds memory and parse time
/// for a mistaken or hostile input.
pub const MAX_RULE_FILE_BYTES: u64 = 32 << 20;

/// Largest PromQL expression we hand to the parser. `promql-parser` recurses once per
/// operator, so a huge operator chain overflows the stack (≈30k operators in a debug build
/// on a 2 MiB stack); 16 KiB allows at most ~8k operators. Real rule expressions are a few KiB.
pub const MAX_EXPR_BYTES: usize = 16 << 10;

/// Deepest bracket nesting (`(`, `[`, `{`) we hand to the parser, for the same reason
/// (≈3k nested `sum(` overflow a debug build on a 2 MiB stack).
pub const MAX_EXPR_NESTING: usize = 256;

/// A validated rule file. Group names are unique within `namespace`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    /// The scope of group names: the file name, or a name given by the API caller.
    pub namespace: String,
    /// Groups in file order.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated sequentially at one timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    /// Non-empty, unique within the namespace.
    pub name: String,
    /// Evaluation interval; `None` means the global default.
    pub interval: Option<Duration>,
    /// Query offset; `None` means the global default.
    pub query_offset: Option<Duration>,
    /// Maximum alerts or series per rule; `None` when absent, zero or negative (no limit).
    pub limit: Option<NonZeroU64>,
    /// Labels added to every rule's output.
    pub labels: BTreeMap<String, String>,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
}

/// A rule: alerting or recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `alert:`
    Alerting(AlertingRule),
    /// `record:`
    Recording(RecordingRule),
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(a) => &a.name,
            Rule::Recording(r) => &r.name,
        }
    }

    /// The PromQL expression (known to parse).
    pub fn expr(&self) -> &str {
        match self {
            Rule::Alerting(a) => &a.expr,
            Rule::Recording(r) => &r.expr,
        }
    }
}

/// An alerting rule. Label values and annotations are templates known to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingRule {
    /// `alert:` name.
    pub name: String,
    /// PromQL expression.
    pub expr: String,
    /// How long the condition must hold before firing (`for`, default 0).
    pub for_: Duration,
    /// How long to keep firing after the condition clears (default 0).
    pub keep_firing_for: Duration,
    /// Labels (templates) added to alerts.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates).
    pub annotations: BTreeMap<String, String>,
}

/// A recording rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRule {
    /// `record:` metric name (a valid metric name).
    pub name: String,
    /// PromQL expression.
    pub expr: String,
    /// Labels added to the recorded series.
    pub labels: BTreeMap<String, String>,
}

impl RuleFile {
    /// Total number of rules, as `promtool check rules` counts them.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// Parses and validates rule-file text.
///
/// `name` is both the namespace that scopes group names and the file name used in errors.
/// Returns every error found (validation does not stop at the first); YAML syntax and
/// shape errors (including unknown keys) stop parsing, as in Prometheus, and are reported
/// alone. Text larger than [`MAX_RULE_FILE_BYTES`] is refused.
pub fn parse_rule_file(name: &str, text: &str) -> Result<RuleFile, Vec<RuleError>> {
    let whole_file = |kind| {
        vec![RuleError {
            file: name.to_owned(),
            line: 0,
            column: 0,
            group: None,
            rule: None,
            kind,
        }]
    };
    if text.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(whole_file(RuleErrorKind::FileTooLarge {
            size: text.len() as u64,
            limit: MAX_RULE_FILE_BYTES,
        }));
    }
    let raw = if is_blank_yaml(text) {
        raw::RawFile { groups: None }
    } else {
        let options = serde_saphyr::options! { with_snippet: false };
        // Prometheus decodes only the first YAML document of a file; so do we (every
        // document must still be well-formed, which is stricter).
        let first =
            serde_saphyr::from_str_multiple_with_options::<raw::RawFile, Vec<_>>(text, options)
                .map(|docs| {
                    docs.into_iter()
                        .next()
                        .unwrap_or(raw::RawFile { groups: None })
                });
        match first {
            Ok(r) => r,
            Err(e) => {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                let msg = e.to_string();
                let msg = strip_location_suffix(&msg)
                    .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
                return Err(vec![RuleError {
                    file: name.to_owned(),
                    line,
                    column,
                    group: None,
                    rule: None,
                    kind: RuleErrorKind::Yaml(msg),
                }]);
            }
        }
    };
    validate::validate(name, name, raw)
}

/// Empty input or only comments/whitespace/document markers: Prometheus treats it as no groups.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// serde-saphyr appends " at line L column C"; we report the position separately.
fn strip_location_suffix(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains("column") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests;
