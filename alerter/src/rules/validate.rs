//! Validation of a parsed rule file with `promtool check rules`'s rules, collecting every
//! error with its position.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::duration::parse_duration;
use super::error::{RuleError, RuleErrorKind, RuleRef};
use super::raw::{PairList, RawFile, RawGroup, RawRule};
use super::{
    AlertingRule, MAX_EXPR_BYTES, MAX_EXPR_NESTING, RecordingRule, Rule, RuleFile, RuleGroup,
};
use crate::template::Template;

/// Legacy (Prometheus 2.x) label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Legacy metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Refuses expressions too large or too deeply nested to parse safely.
fn check_expr_size(expr: &str) -> Result<(), String> {
    if expr.len() > MAX_EXPR_BYTES {
        return Err(format!(
            "{} bytes, the limit is {MAX_EXPR_BYTES}",
            expr.len()
        ));
    }
    let (mut depth, mut max, mut quote) = (0usize, 0usize, None::<char>);
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                max = max.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_EXPR_NESTING {
        return Err(format!(
            "nesting depth {max}, the limit is {MAX_EXPR_NESTING}"
        ));
    }
    Ok(())
}

/// Collects errors with shared context.
struct Ctx<'a> {
    file: &'a str,
    errors: Vec<RuleError>,
}

impl Ctx<'_> {
    fn push(
        &mut self,
        loc: Location,
        group: Option<&str>,
        rule: Option<&RuleRef>,
        kind: RuleErrorKind,
    ) {
        self.errors.push(RuleError {
            file: self.file.to_owned(),
            line: loc.line(),
            column: loc.column(),
            group: group.map(str::to_owned),
            rule: rule.cloned(),
            kind,
        });
    }

    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &'static str,
        group: Option<&str>,
        rule: Option<&RuleRef>,
    ) -> Option<Duration> {
        let v = v.as_ref()?;
        match parse_duration(&v.value) {
            Ok(d) => Some(d),
            Err(e) => {
                let kind = RuleErrorKind::BadDuration {
                    field,
                    message: e.to_string(),
                };
                self.push(v.referenced, group, rule, kind);
                None
            }
        }
    }
}

/// Validates `raw`; `file` names the file (or namespace) in errors.
pub(crate) fn validate(
    file: &str,
    namespace: &str,
    raw: RawFile,
) -> Result<RuleFile, Vec<RuleError>> {
    let mut cx = Ctx {
        file,
        errors: Vec::new(),
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut groups = Vec::new();
    for g in raw.groups.unwrap_or_default() {
        let loc = g.referenced;
        if let Some(group) = validate_group(&mut cx, loc, g.value, &mut seen) {
            groups.push(group);
        }
    }
    if cx.errors.is_empty() {
        Ok(RuleFile {
            namespace: namespace.to_owned(),
            groups,
        })
    } else {
        Err(cx.errors)
    }
}

fn validate_group(
    cx: &mut Ctx<'_>,
    loc: Location,
    g: RawGroup,
    seen: &mut HashMap<String, u64>,
) -> Option<RuleGroup> {
    let name = g.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
    let gname = Some(name.as_str());
    let before = cx.errors.len();
    let name_loc = g.name.as_ref().map_or(loc, |n| n.referenced);
    if name.is_empty() {
        cx.push(name_loc, None, None, RuleErrorKind::EmptyGroupName);
    } else if let Some(first_line) = seen.get(&name) {
        let kind = RuleErrorKind::DuplicateGroup {
            name: name.clone(),
            first_line: *first_line,
        };
        cx.push(name_loc, None, None, kind);
    } else {
        seen.insert(name.clone(), name_loc.line());
    }
    let interval = cx.duration(&g.interval, "interval", gname, None);
    let query_offset = cx.duration(&g.query_offset, "query_offset", gname, None);
    let labels = validate_labels(cx, g.labels.as_ref(), gname, None);
    let mut rules = Vec::new();
    for (i, r) in g.rules.unwrap_or_default().into_iter().enumerate() {
        if let Some(rule) = validate_rule(cx, gname, i + 1, r.referenced, r.value) {
            rules.push(rule);
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    // Prometheus applies a limit only when it is positive.
    let limit = g
        .limit
        .and_then(|l| u64::try_from(l.value).ok())
        .and_then(NonZeroU64::new);
    Some(RuleGroup {
        name,
        interval,
        query_offset,
        limit,
        labels,
        rules,
    })
}

fn validate_labels(
    cx: &mut Ctx<'_>,
    labels: Option<&PairList>,
    group: Option<&str>,
    rule: Option<&RuleRef>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in labels.map(|l| l.0.as_slice()).unwrap_or_default() {
        if !is_valid_label_name(&k.value) || k.value == "__name__" {
            cx.push(
                k.referenced,
                group,
                rule,
                RuleErrorKind::InvalidLabelName(k.value.clone()),
            );
        }
        out.insert(k.value.clone(), v.value.clone());
    }
    out
}

fn validate_rule(
    cx: &mut Ctx<'_>,
    group: Option<&str>,
    index: usize,
    loc: Location,
    r: RawRule,
) -> Option<Rule> {
    let text = |s: &Option<Spanned<String>>| {
        s.as_ref()
            .map(|s| s.value.clone())
            .filter(|s| !s.is_empty())
    };
    let (alert, record) = (text(&r.alert), text(&r.record));
    let rref = RuleRef {
        index,
        name: alert.clone().or_else(|| record.clone()).unwrap_or_default(),
    };
    let rr = Some(&rref);
    let before = cx.errors.len();
    let pos = |s: &Option<Spanned<String>>| s.as_ref().map_or(loc, |s| s.referenced);
    match (&alert, &record) {
        (Some(_), Some(_)) => cx.push(pos(&r.record), group, rr, RuleErrorKind::BothAlertAndRecord),
        (None, None) => cx.push(loc, group, rr, RuleErrorKind::NeitherAlertNorRecord),
        _ => {}
    }
    let expr = text(&r.expr).unwrap_or_default();
    if expr.is_empty() {
        cx.push(pos(&r.expr), group, rr, RuleErrorKind::MissingExpr);
    } else if let Err(why) = check_expr_size(&expr) {
        cx.push(pos(&r.expr), group, rr, RuleErrorKind::ExprTooComplex(why));
    } else if let Err(e) = promql_parser::parser::parse(&expr) {
        cx.push(
            pos(&r.expr),
            group,
            rr,
            RuleErrorKind::BadExpr(e.trim().to_owned()),
        );
    }
    let for_ = cx.duration(&r.for_, "for", group, rr).unwrap_or_default();
    let keep = cx
        .duration(&r.keep_firing_for, "keep_firing_for", group, rr)
        .unwrap_or_default();
    let labels = validate_labels(cx, r.labels.as_ref(), group, rr);
    let mut annotations = BTreeMap::new();
    for (k, v) in r
        .annotations
        .as_ref()
        .map(|l| l.0.as_slice())
        .unwrap_or_default()
    {
        if !is_valid_label_name(&k.value) {
            cx.push(
                k.referenced,
                group,
                rr,
                RuleErrorKind::InvalidAnnotationName(k.value.clone()),
            );
        }
        annotations.insert(k.value.clone(), v.value.clone());
    }
    if let Some(name) = &record {
        let rec_loc = pos(&r.record);
        if !annotations.is_empty() {
            let at = r
                .annotations
                .as_ref()
                .and_then(|a| a.0.first())
                .map_or(rec_loc, |(k, _)| k.referenced);
            cx.push(
                at,
                group,
                rr,
                RuleErrorKind::FieldOnRecordingRule("annotations"),
            );
        }
        if !for_.is_zero() {
            cx.push(
                pos(&r.for_),
                group,
                rr,
                RuleErrorKind::FieldOnRecordingRule("for"),
            );
        }
        if !keep.is_zero() {
            cx.push(
                pos(&r.keep_firing_for),
                group,
                rr,
                RuleErrorKind::FieldOnRecordingRule("keep_firing_for"),
            );
        }
        if !is_valid_metric_name(name) {
            cx.push(
                rec_loc,
                group,
                rr,
                RuleErrorKind::InvalidRecordName(name.clone()),
            );
        }
    }
    if let Some(name) = &alert {
        let tmpl_name = format!("__alert_{name}");
        for (field, list) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in list.as_ref().map(|l| l.0.as_slice()).unwrap_or_default() {
                if let Err(e) = Template::parse(&tmpl_name, &v.value) {
                    let kind = RuleErrorKind::Template {
                        field,
                        key: k.value.clone(),
                        message: e.to_string(),
                    };
                    cx.push(v.referenced, group, rr, kind);
                }
            }
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(match (alert, record) {
        (Some(name), _) => Rule::Alerting(AlertingRule {
            name,
            expr,
            for_,
            keep_firing_for: keep,
            labels,
            annotations,
        }),
        (None, Some(name)) => Rule::Recording(RecordingRule { name, expr, labels }),
        (None, None) => return None,
    })
}
