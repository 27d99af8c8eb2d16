//! `input_series` in promtool's expanding notation, and the series descriptors used by
//! `input_series.series` and `exp_samples.labels` (Prometheus's `ParseSeriesDesc` and
//! `ParseMetric`).
//!
//! Values: `1`, `-2.5`, `Inf`, `NaN`, `_` (no sample), `stale` (staleness marker), `_xN`
//! (N missing samples), `axN` (N+1 copies of `a`), `a+bxN` / `a-bxN` (N+1 values starting at
//! `a`, accumulated as Prometheus accumulates them).

use crate::promql::STALE_NAN;
use crate::rules::is_valid_label_name;

/// Labels as sorted `(name, value)` pairs, empty values kept.
pub(crate) type Pairs = Vec<(String, String)>;

/// One position of a series: a value or nothing.
pub(crate) type Slot = Option<f64>;

/// Parses a descriptor `name{a="b", …}`, `name` or `{…}` into sorted `(name, value)` pairs
/// (`__name__` included; empty values kept, as `labels.New` keeps them).
pub(crate) fn parse_metric(text: &str) -> Result<Pairs, String> {
    let (pairs, rest) = parse_metric_prefix(text)?;
    if !rest.trim().is_empty() {
        return Err(format!(
            "unexpected {:?} after the series descriptor",
            rest.trim()
        ));
    }
    Ok(pairs)
}

/// Parses the descriptor at the start of `text`; returns the pairs and the rest.
fn parse_metric_prefix(text: &str) -> Result<(Pairs, &str), String> {
    let mut rest = text.trim_start();
    let mut pairs = Vec::new();
    let name_len = rest
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_alphabetic() || *c == '_' || *c == ':' || (*i > 0 && c.is_ascii_digit())
        })
        .count();
    if name_len > 0 {
        pairs.push(("__name__".to_owned(), rest[..name_len].to_owned()));
        rest = &rest[name_len..];
    }
    let trimmed = rest.trim_start();
    if let Some(body) = trimmed.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let n = rest
                .char_indices()
                .take_while(|(i, c)| {
                    c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit())
                })
                .count();
            let name = &rest[..n];
            if !is_valid_label_name(name) {
                return Err(format!("invalid label name at {:?}", preview(rest)));
            }
            rest = rest[n..].trim_start();
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected \"=\" after label {name}"))?
                .trim_start();
            let (value, r) = parse_string(rest)?;
            pairs.push((name.to_owned(), value));
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("unexpected {:?} inside braces", preview(rest)));
            }
        }
    } else if name_len == 0 {
        return Err(format!(
            "expected a metric name or \"{{\" at {:?}",
            preview(text)
        ));
    }
    pairs.sort();
    for w in pairs.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!("label {} given twice", w[0].0));
        }
    }
    Ok((pairs, rest))
}

fn preview(s: &str) -> String {
    s.chars().take(20).collect()
}

/// A PromQL string literal (`"…"`, `'…'` with Go escapes, or a raw `` `…` ``).
fn parse_string(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, c @ ('"' | '\'' | '`'))) => c,
        _ => return Err(format!("expected a quoted label value at {:?}", preview(s))),
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, &s[i + c.len_utf8()..]));
        }
        if c != '\\' || quote == '`' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("invalid escape \\{e}{hex}"))?;
                out.push(code);
            }
            other => return Err(format!("unknown escape sequence \\{other}")),
        }
    }
    Err("unterminated quoted string".to_owned())
}

/// Parses a line of values, refusing to expand beyond `budget` slots in total (the budget is
/// decremented, so one budget can bound a whole test group).
pub(crate) fn parse_values(text: &str, budget: &mut u64) -> Result<Vec<Slot>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        let (base, times) = match item.rfind('x') {
            Some(i) if i > 0 && item[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                let n: u64 = item[i + 1..]
                    .parse()
                    .map_err(|_| format!("invalid repetition count in {item:?}"))?;
                (&item[..i], Some(n))
            }
            _ => (item, None),
        };
        let count = match (base, times) {
            ("_", Some(n)) => n,
            (_, Some(n)) => n.saturating_add(1),
            (_, None) => 1,
        };
        if count > *budget {
            return Err(format!(
                "input series values {text:?} expand beyond the limit of samples per test group"
            ));
        }
        *budget -= count;
        if base == "_" {
            out.extend(std::iter::repeat_n(None, count as usize));
            continue;
        }
        let (start, step) = split_step(base, item)?;
        let mut v = start;
        for _ in 0..count {
            out.push(Some(v));
            v += step;
        }
    }
    Ok(out)
}

/// `a`, `a+b` or `a-b` → `(a, ±b)`; `stale` is the staleness marker.
fn split_step(base: &str, item: &str) -> Result<(f64, f64), String> {
    let bad = || format!("invalid input series value {item:?}: expected a number or \"stale\"");
    if base == "stale" {
        return Ok((STALE_NAN, 0.0));
    }
    // The operator is a `+`/`-` not at the start and not right after an exponent `e`.
    let bytes = base.as_bytes();
    let op = (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    match op {
        None => Ok((number(base).ok_or_else(bad)?, 0.0)),
        Some(i) => {
            let a = number(&base[..i]).ok_or_else(bad)?;
            let b = number(&base[i..]).ok_or_else(bad)?;
            Ok((a, b))
        }
    }
}

/// A PromQL number: decimal or scientific, `Inf`, `NaN`, optionally signed.
fn number(s: &str) -> Option<f64> {
    let (sign, body) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let lower = body.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ if lower.starts_with("0x") => u64::from_str_radix(&lower[2..], 16).ok()? as f64,
        _ if body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            body.parse::<f64>().ok()?
        }
        _ => return None,
    };
    Some(sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::is_stale;

    fn vals(s: &str) -> Vec<Slot> {
        parse_values(s, &mut 1_000).unwrap()
    }

    #[test]
    fn expanding_notation() {
        assert_eq!(vals("1+2x3"), [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(vals("5-1x2"), [Some(5.0), Some(4.0), Some(3.0)]);
        assert_eq!(vals("_x2 7x1"), [None, None, Some(7.0), Some(7.0)]);
        assert_eq!(
            vals("_ -1 +2 1e3"),
            [None, Some(-1.0), Some(2.0), Some(1e3)]
        );
        assert_eq!(vals("-1-1x1"), [Some(-1.0), Some(-2.0)]);
        let s = vals("1 stale");
        assert!(is_stale(s[1].unwrap()));
        assert!(vals("Inf")[0].unwrap().is_infinite());
        assert!(parse_values("1 foo", &mut 10).is_err());
    }

    #[test]
    fn huge_expansion_is_refused_without_allocating() {
        let mut budget = 1_000_000;
        let e = parse_values("0+1x100000000", &mut budget).unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn metric_descriptors() {
        assert_eq!(
            parse_metric(r#"up{job="a", instance='b\n',}"#).unwrap(),
            [
                ("__name__".to_owned(), "up".to_owned()),
                ("instance".to_owned(), "b\n".to_owned()),
                ("job".to_owned(), "a".to_owned()),
            ]
        );
        assert!(parse_metric("{}").unwrap().is_empty());
        assert!(parse_metric("up{").is_err());
        assert!(parse_metric(r#"up{a="1",a="2"}"#).is_err());
    }
}
