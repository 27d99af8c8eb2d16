//! Label matchers with Alertmanager's syntax and semantics, shared by routes, inhibition rules
//! and silences.
//!
//! Parsing follows Alertmanager 0.25's classic parser (`pkg/labels/parse.go`): `{a="b", c=~"x|y"}`
//! (braces optional), values quoted or not, `\"`, `\\` and `\n` escapes in quoted values, several
//! matchers per string split on commas outside quotes. Regexes are fully anchored
//! (`^(?:re)$`). A missing label matches like an empty one.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use tocsin_state::model::SilenceMatcher;

/// The matching operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored)
    Regex,
    /// `!~` (anchored)
    NotRegex,
}

impl MatchOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// Why a matcher was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// Not `name op value`.
    #[error("bad matcher format: {0}")]
    BadFormat(String),
    /// A `"` inside the value that is neither escaped nor the closing quote.
    #[error("matcher value contains unescaped double quote: {0}")]
    UnescapedQuote(String),
    /// The label name is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    /// The regex does not compile.
    #[error("invalid regular expression {value:?}: {message}")]
    InvalidRegex { value: String, message: String },
}

/// One label matcher. The regex of `=~`/`!~` is compiled once, anchored at both ends.
#[derive(Clone, Debug)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}
impl Eq for Matcher {}

impl PartialOrd for Matcher {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Alertmanager's `labels.Matchers` order: name, then value, then operator.
impl Ord for Matcher {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.name, &self.value, self.op).cmp(&(&other.name, &other.value, other.op))
    }
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compiles `value` as Alertmanager does: `^(?:value)$`.
pub fn anchored_regex(value: &str) -> Result<Regex, MatcherError> {
    super::regex_compat::check(value).map_err(|message| MatcherError::InvalidRegex {
        value: value.to_owned(),
        message,
    })?;
    Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError::InvalidRegex {
        value: value.to_owned(),
        message: e.to_string(),
    })
}

impl Matcher {
    /// A matcher; the name must be a valid label name and a regex must compile.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        if !is_valid_label_name(name) {
            return Err(MatcherError::InvalidName(name.to_owned()));
        }
        Self::unchecked_name(op, name, value)
    }

    /// As [`Self::new`] without the label-name check: Alertmanager's matcher grammar also
    /// admits `:` in names, and its parser does not validate them further.
    fn unchecked_name(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored_regex(value)?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            re,
        })
    }

    /// Label name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }
    /// Value or (unanchored) regex source.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the matcher accepts a label value (`""` for a missing label).
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (MatchOp::Regex | MatchOp::NotRegex, None) => {
                unreachable!("regex matchers are compiled on construction")
            }
        }
    }

    /// Whether the matcher accepts a label set (a missing label is the empty value).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }

    /// Parses one matcher (`name op value`, value optionally double-quoted).
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let (name, op, raw) = split_matcher(s).ok_or_else(|| MatcherError::BadFormat(s.into()))?;
        let value = unescape_value(raw)?;
        Self::unchecked_name(op, name, &value)
    }
}

/// `name op value` after trimming, per Alertmanager's
/// `^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$`.
fn split_matcher(s: &str) -> Option<(&str, MatchOp, &str)> {
    let s = s.trim();
    let name_len = s
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = s.split_at(name_len);
    let rest = rest.trim_start();
    let (op, rest) = [
        ("=~", MatchOp::Regex),
        ("=", MatchOp::Equal),
        ("!=", MatchOp::NotEqual),
        ("!~", MatchOp::NotRegex),
    ]
    .into_iter()
    .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (op, r)))?;
    Some((name, op, rest.trim()))
}

/// Alertmanager's value unescaping: an optional leading quote that must then close the value.
fn unescape_value(raw: &str) -> Result<String, MatcherError> {
    let (body, mut expect_close) = match raw.strip_prefix('"') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        let last = i + c.len_utf8() == body.len();
        if escaped {
            escaped = false;
            match c {
                'n' => out.push('\n'),
                '"' | '\\' => out.push(c),
                _ => {
                    out.push('\\');
                    out.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' if !last => escaped = true,
            '"' => {
                if !expect_close || !last {
                    return Err(MatcherError::UnescapedQuote(raw.to_owned()));
                }
                expect_close = false;
            }
            _ => out.push(c),
        }
    }
    if expect_close {
        return Err(MatcherError::UnescapedQuote(raw.to_owned()));
    }
    Ok(out)
}

/// `openMetricsEscape`: the value as Alertmanager prints it inside double quotes.
fn escape_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('\n', r"\n")
        .replace('"', "\\\"")
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.name,
            self.op.as_str(),
            escape_value(&self.value)
        )
    }
}

/// A conjunction of matchers, kept in Alertmanager's sort order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers(Vec<Matcher>);

impl Matchers {
    /// Sorts `ms` into Alertmanager's order.
    pub fn new(mut ms: Vec<Matcher>) -> Self {
        ms.sort();
        Self(ms)
    }

    /// Parses a matcher list (`{a="b", c=~"x"}` or `a=b, c=~x`), as `ParseMatchers`.
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let s = s.trim();
        let s = s.strip_prefix('{').unwrap_or(s);
        let s = s.strip_suffix('}').unwrap_or(s);
        let mut tokens = Vec::new();
        let (mut inside, mut escaped) = (false, false);
        let mut tok = String::new();
        for c in s.chars() {
            match c {
                ',' if !inside => {
                    tokens.push(std::mem::take(&mut tok));
                    continue;
                }
                ',' => {}
                '"' if !escaped => inside = !inside,
                '"' => escaped = false,
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
            tok.push(c);
        }
        if !tok.trim().is_empty() {
            tokens.push(tok);
        }
        let ms = tokens
            .iter()
            .map(|t| Matcher::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(ms))
    }

    /// The matchers, sorted.
    pub fn as_slice(&self) -> &[Matcher] {
        &self.0
    }
    /// Whether there are none (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Adds more matchers, keeping the order.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Matcher>) {
        self.0.extend(more);
        self.0.sort();
    }
    /// Whether every matcher accepts the label set.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }
}

/// `{a="b",c=~"x"}` exactly as Alertmanager's `Matchers.String()` (used in route keys).
impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

impl From<&Matcher> for SilenceMatcher {
    fn from(m: &Matcher) -> Self {
        SilenceMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

impl TryFrom<&SilenceMatcher> for Matcher {
    type Error = MatcherError;
    fn try_from(m: &SilenceMatcher) -> Result<Self, MatcherError> {
        let op = match (m.is_regex, m.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(op, &m.name, &m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_alertmanager_syntax() {
        let ms =
            Matchers::parse(r#"{severity="page", team=~"db|infra",env!=dev, x!~"a\"b"}"#).unwrap();
        assert_eq!(
            ms.to_string(),
            r#"{env!="dev",severity="page",team=~"db|infra",x!~"a\"b"}"#
        );
        let m = Matcher::parse(r#"foo = "bar baz""#).unwrap();
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("foo", MatchOp::Equal, "bar baz")
        );
        assert_eq!(Matcher::parse("a=").unwrap().value(), "");
        assert_eq!(Matcher::parse(r#"a="x\ny""#).unwrap().value(), "x\ny");
        assert_eq!(Matcher::parse(r#"a=x\d"#).unwrap().value(), r"x\d");
    }

    #[test]
    fn refuses_bad_matchers() {
        assert!(matches!(
            Matcher::parse("=b"),
            Err(MatcherError::BadFormat(_))
        ));
        assert_eq!(Matcher::parse("a==b").unwrap().value(), "=b");
        assert!(matches!(
            Matcher::parse(r#"a="b"#),
            Err(MatcherError::UnescapedQuote(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a=b"c"#),
            Err(MatcherError::UnescapedQuote(_))
        ));
        assert!(matches!(
            Matcher::parse("a=~(x"),
            Err(MatcherError::InvalidRegex { .. })
        ));
        assert_eq!(Matcher::parse("a:b=c").unwrap().name(), "a:b");
        assert!(matches!(
            Matcher::new(MatchOp::Equal, "a-b", "c"),
            Err(MatcherError::InvalidName(_))
        ));
    }

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let l = labels(&[("job", "api-server")]);
        assert!(!Matcher::parse("job=~api").unwrap().matches(&l));
        assert!(Matcher::parse("job=~api.*").unwrap().matches(&l));
        assert!(
            Matcher::parse("job=~\"api|api-server\"")
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::parse("env=\"\"").unwrap().matches(&l));
        assert!(Matcher::parse("env!~.+").unwrap().matches(&l));
        assert!(!Matcher::parse("env=~.+").unwrap().matches(&l));
    }

    #[test]
    fn silence_matcher_round_trip() {
        for s in ["a=b", "a!=b", "a=~b.*", "a!~b"] {
            let m = Matcher::parse(s).unwrap();
            let sm = SilenceMatcher::from(&m);
            assert_eq!(Matcher::try_from(&sm).unwrap(), m);
        }
    }
}
