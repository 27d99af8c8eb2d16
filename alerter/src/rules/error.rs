//! Rule-file errors: what is wrong, and exactly where (file, line, column, group, rule).

use std::fmt;

/// The rule an error belongs to: 1-based index within its group and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// 1-based position in the group's `rules` list (as promtool counts).
    pub index: usize,
    /// The `alert` or `record` name (empty if neither is set).
    pub name: String,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    /// The file could not be read.
    #[error("cannot read file: {0}")]
    Io(String),
    /// The file exceeds [`super::MAX_RULE_FILE_BYTES`].
    #[error("file is {size} bytes, larger than the {limit}-byte limit for rule files")]
    FileTooLarge { size: u64, limit: u64 },
    /// Not valid UTF-8.
    #[error("file is not valid UTF-8")]
    NotUtf8,
    /// Invalid YAML, or YAML not of the rule-file shape (includes unknown fields).
    #[error("{0}")]
    Yaml(String),
    /// `name: ""` or missing.
    #[error("Groupname must not be empty")]
    EmptyGroupName,
    /// Two groups with the same name in one namespace.
    #[error("groupname: {name:?} is repeated in the same file (first at line {first_line})")]
    DuplicateGroup { name: String, first_line: u64 },
    /// A duration field does not parse.
    #[error("field '{field}': {message}")]
    BadDuration {
        field: &'static str,
        message: String,
    },
    /// Both `alert` and `record`.
    #[error("only one of 'record' and 'alert' must be set")]
    BothAlertAndRecord,
    /// Neither `alert` nor `record`.
    #[error("one of 'record' or 'alert' must be set")]
    NeitherAlertNorRecord,
    /// `expr` missing or empty.
    #[error("field 'expr' must be set in rule")]
    MissingExpr,
    /// `expr` is not valid PromQL.
    #[error("could not parse expression: {0}")]
    BadExpr(String),
    /// `expr` exceeds [`super::MAX_EXPR_BYTES`] or [`super::MAX_EXPR_NESTING`].
    #[error("expression too complex: {0}")]
    ExprTooComplex(String),
    /// `for`, `keep_firing_for` or `annotations` on a recording rule.
    #[error("invalid field '{0}' in recording rule")]
    FieldOnRecordingRule(&'static str),
    /// `record` is not a valid metric name.
    #[error("invalid recording rule name: {0}")]
    InvalidRecordName(String),
    /// A label name is invalid (or is `__name__`).
    #[error("invalid label name: {0}")]
    InvalidLabelName(String),
    /// An annotation name is invalid.
    #[error("invalid annotation name: {0}")]
    InvalidAnnotationName(String),
    /// A label or annotation template of an alerting rule does not parse.
    #[error("{field} {key:?}: {message}")]
    Template {
        field: &'static str,
        key: String,
        message: String,
    },
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// File name (or namespace) the error is in.
    pub file: String,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when the error concerns the whole file.
    pub column: u64,
    /// The group's name, when the error is inside a group.
    pub group: Option<String>,
    /// The rule, when the error is inside a rule.
    pub rule: Option<RuleRef>,
    /// What is wrong.
    pub kind: RuleErrorKind,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        }
        if let Some(g) = &self.group {
            write!(f, "group {g:?}, ")?;
        }
        if let Some(r) = &self.rule {
            write!(f, "rule {}, {:?}: ", r.index, r.name)?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for RuleError {}
