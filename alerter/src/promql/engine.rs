//! The public entry points: [`Engine`], its [`EngineOptions`], and [`ParsedQuery`].

use std::collections::BTreeMap;
use std::sync::Once;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, Function};

use super::error::QueryError;
use super::eval::{Evaluator, Val};
use super::labels::Labels;
use super::store::{Point, Series, Store};
use super::value::{Sample, Value};

/// Prometheus's default `query.max-samples`: the most samples one query may hold at once.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;
/// Prometheus's default lookback delta (5 minutes).
pub const DEFAULT_LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;
/// Deepest expression nesting accepted; bounds the evaluator's recursion (and stack use).
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Longest query text accepted; bounds parser work and AST size.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 64 * 1024;
/// Step of subqueries written without one (`x[5m:]`): Prometheus's default global
/// evaluation interval.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60 * 1000;
/// Most steps per range query, as Prometheus's HTTP API enforces (11,000 points per series).
pub const DEFAULT_MAX_RANGE_STEPS: usize = 11_000;
/// Most single-timestamp evaluations per query (range steps times subquery steps, nested).
/// The engine never reads a clock, so this stands in for Prometheus's query timeout: it bounds
/// the CPU of `x[100y:1s]` even when every step is empty.
pub const DEFAULT_MAX_EVAL_STEPS: usize = 5_000_000;

/// Engine limits and semantics knobs. `Default` gives Prometheus's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample (ms).
    pub lookback_delta_ms: i64,
    /// Most samples held in memory by one query (selected samples of a step plus the
    /// points of the result so far).
    pub max_samples: usize,
    /// Deepest nesting of the expression (and of brackets in the query text).
    pub max_depth: usize,
    /// Longest query text in bytes.
    pub max_query_bytes: usize,
    /// Step of subqueries without an explicit step (ms).
    pub subquery_step_default_ms: i64,
    /// Most evaluation steps per range query.
    pub max_range_steps: usize,
    /// Most single-timestamp evaluations per query, subquery steps included.
    pub max_eval_steps: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: DEFAULT_LOOKBACK_DELTA_MS,
            max_samples: DEFAULT_MAX_SAMPLES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_query_bytes: DEFAULT_MAX_QUERY_BYTES,
            subquery_step_default_ms: DEFAULT_SUBQUERY_STEP_MS,
            max_range_steps: DEFAULT_MAX_RANGE_STEPS,
            max_eval_steps: DEFAULT_MAX_EVAL_STEPS,
        }
    }
}

impl EngineOptions {
    /// Checks that every limit is positive; call it where configuration is loaded.
    pub fn validate(&self) -> Result<(), QueryError> {
        let checks = [
            ("lookback_delta_ms", self.lookback_delta_ms > 0),
            ("max_samples", self.max_samples > 0),
            ("max_depth", self.max_depth > 0),
            ("max_query_bytes", self.max_query_bytes > 0),
            (
                "subquery_step_default_ms",
                self.subquery_step_default_ms > 0,
            ),
            ("max_range_steps", self.max_range_steps > 0),
            ("max_eval_steps", self.max_eval_steps > 0),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((field, _)) => Err(QueryError::InvalidOptions(format!(
                "{field} must be positive"
            ))),
            None => Ok(()),
        }
    }
}

/// A parsed and checked expression; parse once, evaluate many times.
#[derive(Debug, Clone)]
pub struct ParsedQuery {
    text: String,
    expr: Expr,
}

impl ParsedQuery {
    /// The query text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed AST.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

/// A PromQL engine with Prometheus 2.x semantics over any [`Store`]. Stateless between
/// queries; cheap to share.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
}

impl Default for Engine {
    /// An engine with Prometheus's defaults (see [`EngineOptions::default`]).
    fn default() -> Self {
        Self::new(EngineOptions::default())
    }
}

static REGISTER_LEGACY_FUNCTIONS: Once = Once::new();

impl Engine {
    /// An engine with the given options (see [`EngineOptions::validate`]).
    pub fn new(opts: EngineOptions) -> Self {
        // Prometheus 2.x rule files use `holt_winters` (renamed in 3.x); teach the parser the
        // old name once per process. Failure only means it is already known.
        REGISTER_LEGACY_FUNCTIONS.call_once(|| {
            let _ = promql_parser::parser::function::register_extra_functions(vec![Function::new(
                "holt_winters",
                vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
                0,
                ValueType::Vector,
                false,
            )]);
        });
        Self { opts }
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses and checks `query` against the size and depth limits.
    pub fn parse(&self, query: &str) -> Result<ParsedQuery, QueryError> {
        if query.len() > self.opts.max_query_bytes {
            return Err(QueryError::TooLong {
                len: query.len(),
                limit: self.opts.max_query_bytes,
            });
        }
        if scan_brackets(query).max_depth > self.opts.max_depth {
            return Err(QueryError::TooDeep {
                limit: self.opts.max_depth,
            });
        }
        let expr = promql_parser::parser::parse(query).map_err(|message| {
            let position = parse_position(&message).or_else(|| scan_brackets(query).unbalanced_at);
            QueryError::Parse { message, position }
        })?;
        if expr_depth(&expr, 0, self.opts.max_depth).is_none() {
            return Err(QueryError::TooDeep {
                limit: self.opts.max_depth,
            });
        }
        Ok(ParsedQuery {
            text: query.to_string(),
            expr,
        })
    }

    /// Parses and evaluates `query` at `ts_ms`.
    pub fn instant(&self, store: &dyn Store, query: &str, ts_ms: i64) -> Result<Value, QueryError> {
        let q = self.parse(query)?;
        self.instant_parsed(store, &q, ts_ms)
    }

    /// Evaluates a parsed query at `ts_ms`.
    pub fn instant_parsed(
        &self,
        store: &dyn Store,
        query: &ParsedQuery,
        ts_ms: i64,
    ) -> Result<Value, QueryError> {
        let ev = Evaluator::new(store, &self.opts, ts_ms, ts_ms);
        Ok(match ev.eval(&query.expr, ts_ms)? {
            Val::Scalar(v) => Value::Scalar { t: ts_ms, v },
            Val::String(s) => Value::String { t: ts_ms, s },
            Val::Vector(v) => {
                Value::Vector(v.into_iter().map(|s| Sample { t: ts_ms, ..s }).collect())
            }
            Val::Matrix(m) => Value::Matrix(m),
        })
    }

    /// Parses and evaluates `query` at every step of `[start_ms, end_ms]`; returns a
    /// [`Value::Matrix`] sorted by labels.
    pub fn range(
        &self,
        store: &dyn Store,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        let q = self.parse(query)?;
        self.range_parsed(store, &q, start_ms, end_ms, step_ms)
    }

    /// Evaluates a parsed query as a range query (see [`Engine::range`]).
    pub fn range_parsed(
        &self,
        store: &dyn Store,
        query: &ParsedQuery,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::InvalidRange(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        let Some(span) = end_ms.checked_sub(start_ms).filter(|s| *s >= 0) else {
            return Err(QueryError::InvalidRange(
                "end timestamp must not be before start time".into(),
            ));
        };
        let steps = span / step_ms + 1;
        if usize::try_from(steps).map_or(true, |s| s > self.opts.max_range_steps) {
            return Err(QueryError::InvalidRange(format!(
                "exceeded maximum resolution of {} points per timeseries",
                self.opts.max_range_steps
            )));
        }
        let type_name = match query.expr.value_type() {
            ValueType::Vector | ValueType::Scalar => None,
            ValueType::Matrix => Some("range vector"),
            ValueType::String => Some("string"),
        };
        if let Some(t) = type_name {
            return Err(QueryError::InvalidRange(format!(
                "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
            )));
        }
        let ev = Evaluator::new(store, &self.opts, start_ms, end_ms);
        let mut series: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
        let mut held = 0usize;
        let mut ts = start_ms;
        while ts <= end_ms {
            ev.reset_held(held);
            ev.charge_step()?;
            match ev.eval(&query.expr, ts)? {
                Val::Scalar(v) => {
                    series
                        .entry(Labels::empty())
                        .or_default()
                        .push(Point { t: ts, v });
                    held += 1;
                }
                Val::Vector(vec) => {
                    held += vec.len();
                    for s in vec {
                        series
                            .entry(s.labels)
                            .or_default()
                            .push(Point { t: ts, v: s.v });
                    }
                }
                other => {
                    return Err(QueryError::InvalidRange(format!(
                        "invalid expression type \"{}\" for range query",
                        other.type_name()
                    )));
                }
            }
            ev.reset_held(held);
            ev.charge(0)?;
            match ts.checked_add(step_ms) {
                Some(next) => ts = next,
                None => break,
            }
        }
        Ok(Value::Matrix(
            series
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect(),
        ))
    }
}

/// Bracket structure of a query text, outside string literals.
#[derive(Debug, Default, PartialEq, Eq)]
struct Brackets {
    /// Deepest nesting.
    max_depth: usize,
    /// Byte offset of the first bracket that is unmatched or closes the wrong kind.
    unbalanced_at: Option<usize>,
}

/// Scans bracket nesting: rejects pathological input before the parser sees it, and locates
/// unbalanced brackets for parse errors (the parser reports no positions).
fn scan_brackets(q: &str) -> Brackets {
    let mut out = Brackets::default();
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in q.char_indices() {
        if let Some(qc) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && qc != '`' {
                escaped = true;
            } else if c == qc {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                stack.push((c, i));
                out.max_depth = out.max_depth.max(stack.len());
            }
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((open, _)) if open == want => {}
                    _ => {
                        out.unbalanced_at.get_or_insert(i);
                    }
                }
            }
            _ => {}
        }
    }
    if out.unbalanced_at.is_none() {
        out.unbalanced_at = stack.first().map(|(_, i)| *i);
    }
    out
}

/// The depth of `e`, or `None` once it exceeds `limit`.
fn expr_depth(e: &Expr, depth: usize, limit: usize) -> Option<usize> {
    if depth > limit {
        return None;
    }
    let d = depth + 1;
    let children: Vec<&Expr> = match e {
        Expr::Aggregate(a) => {
            let mut v = vec![a.expr.as_ref()];
            if let Some(p) = &a.param {
                v.push(p.as_ref());
            }
            v
        }
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(s) => vec![s.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        _ => Vec::new(),
    };
    let mut max = d;
    for c in children {
        max = max.max(expr_depth(c, d, limit)?);
    }
    Some(max)
}

/// Extracts a byte position from parser messages that carry one (`… at 12 …`, `pos 12`).
fn parse_position(msg: &str) -> Option<usize> {
    let words: Vec<&str> = msg
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .collect();
    words.windows(2).find_map(|w| {
        if matches!(w[0], "at" | "pos" | "position" | "offset") {
            w[1].trim_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_scan_ignores_strings_and_finds_unbalanced() {
        let b = scan_brackets(r#"sum(rate(x{a="(((("}[5m]))"#);
        assert_eq!((b.max_depth, b.unbalanced_at), (3, None));
        assert_eq!(scan_brackets("x").max_depth, 0);
        assert_eq!(scan_brackets("sum(rate(x[5m])").unbalanced_at, Some(3));
        assert_eq!(scan_brackets("x)").unbalanced_at, Some(1));
        let e = Engine::default();
        assert!(matches!(
            e.parse("sum(x"),
            Err(QueryError::Parse {
                position: Some(3),
                ..
            })
        ));
    }

    #[test]
    fn too_deep_and_too_long_are_rejected() {
        let e = Engine::new(EngineOptions {
            max_depth: 10,
            ..EngineOptions::default()
        });
        let deep = format!("{}1{}", "(".repeat(20), ")".repeat(20));
        assert!(matches!(e.parse(&deep), Err(QueryError::TooDeep { .. })));
        let long = "1+".repeat(40_000) + "1";
        assert!(matches!(e.parse(&long), Err(QueryError::TooLong { .. })));
        let chain = "1+".repeat(30) + "1";
        assert!(matches!(e.parse(&chain), Err(QueryError::TooDeep { .. })));
    }
}
