//! Prometheus's template functions (`template/template.go`): `humanize*`, `query` and the
//! sample helpers, string and regex helpers, links, time and duration conversions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::QueryFn;
use super::builtins::{query_escape, want_args};
use super::gofmt::format_float;
use super::gotime::{float_secs_to_nanos, format_time};
use super::value::Value;

/// Prometheus's function names.
pub(crate) const PROM_FUNCS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "stripPort",
    "stripDomain",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "pathPrefix",
    "externalURL",
    "parseDuration",
];

/// Compiled-regex size cap: a template must not make the regex compiler allocate unboundedly.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What Prometheus functions need from the caller.
pub(crate) struct FnEnv<'a> {
    pub(crate) query: Option<&'a dyn QueryFn>,
    pub(crate) external_url: &'a str,
}

/// Calls Prometheus function `name`; `None` if it is not one.
pub(crate) fn call(name: &str, args: &[Value], env: &FnEnv<'_>) -> Option<Result<Value, String>> {
    let one = || want_args(name, args, 1);
    Some(match name {
        "humanize" => one()
            .and_then(|()| to_float(&args[0]))
            .map(|v| Value::String(humanize(v))),
        "humanize1024" => one()
            .and_then(|()| to_float(&args[0]))
            .map(|v| Value::String(humanize1024(v))),
        "humanizeDuration" => one()
            .and_then(|()| to_float(&args[0]))
            .map(|v| Value::String(humanize_duration(v))),
        "humanizePercentage" => one()
            .and_then(|()| to_float(&args[0]))
            .map(|v| Value::String(format!("{}%", g4(v * 100.0)))),
        "humanizeTimestamp" => one().and_then(|()| to_float(&args[0])).and_then(|v| {
            if !v.is_finite() {
                return Ok(Value::String(g4(v)));
            }
            to_time(v).map(|ns| Value::String(format_time(ns)))
        }),
        "toTime" => one().and_then(|()| to_float(&args[0])).and_then(|v| {
            if !v.is_finite() {
                return Err("value is NaN or Inf".to_owned());
            }
            to_time(v).map(Value::Time)
        }),
        "parseDuration" => one().and_then(|()| string_arg(&args[0])).and_then(|s| {
            crate::rules::duration::parse_duration(s)
                .map(|d| Value::Float(d.as_millis() as f64 / 1000.0))
                .map_err(|e| e.to_string())
        }),
        "title" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(title(s))),
        "toUpper" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(map_case(s, true))),
        "toLower" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(map_case(s, false))),
        "safeHtml" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(s.to_owned())),
        "stripPort" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(strip_port(s))),
        "stripDomain" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(strip_domain(s))),
        "graphLink" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(format!("/graph?g0.expr={}&g0.tab=0", query_escape(s)))),
        "tableLink" => one()
            .and_then(|()| string_arg(&args[0]))
            .map(|s| Value::String(format!("/graph?g0.expr={}&g0.tab=1", query_escape(s)))),
        "match" => want_args(name, args, 2).and_then(|()| {
            let re = compile(string_arg(&args[0])?)?;
            Ok(Value::Bool(re.is_match(string_arg(&args[1])?)))
        }),
        "reReplaceAll" => want_args(name, args, 3).and_then(|()| {
            let re = compile(string_arg(&args[0])?)?;
            let repl = string_arg(&args[1])?;
            Ok(Value::String(
                re.replace_all(string_arg(&args[2])?, repl).into_owned(),
            ))
        }),
        "args" => Ok(Value::map(
            args.iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a.clone()))
                .collect::<BTreeMap<_, _>>(),
        )),
        "pathPrefix" => {
            want_args(name, args, 0).map(|()| Value::String(url_path(env.external_url).to_owned()))
        }
        "externalURL" => {
            want_args(name, args, 0).map(|()| Value::String(env.external_url.to_owned()))
        }
        "query" => one()
            .and_then(|()| string_arg(&args[0]))
            .and_then(|q| query(q, env)),
        "first" => one().and_then(|()| match &args[0] {
            Value::List(l) => l
                .first()
                .cloned()
                .ok_or_else(|| "first() called on vector with no elements".to_owned()),
            other => Err(format!(
                "wrong type for value; expected queryResult; got {}",
                other.type_name()
            )),
        }),
        "label" => want_args(name, args, 2).and_then(|()| {
            let l = string_arg(&args[0])?;
            sample_labels(&args[1]).map(|m| Value::String(m.get(l).cloned().unwrap_or_default()))
        }),
        "strvalue" => one().and_then(|()| {
            sample_labels(&args[0])
                .map(|m| Value::String(m.get("__value__").cloned().unwrap_or_default()))
        }),
        "value" => one().and_then(|()| args[0].field("Value")),
        "sortByLabel" => want_args(name, args, 2).and_then(|()| {
            let l = string_arg(&args[0])?.to_owned();
            let Value::List(list) = &args[1] else {
                return Err(format!(
                    "wrong type for value; expected queryResult; got {}",
                    args[1].type_name()
                ));
            };
            let mut keyed = Vec::with_capacity(list.len());
            for s in list.iter() {
                keyed.push((
                    sample_labels(s)?.get(&l).cloned().unwrap_or_default(),
                    s.clone(),
                ));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Value::list(keyed.into_iter().map(|(_, s)| s).collect()))
        }),
        _ => return None,
    })
}

fn string_arg(v: &Value) -> Result<&str, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

fn sample_labels(v: &Value) -> Result<std::sync::Arc<BTreeMap<String, String>>, String> {
    match v.field("Labels") {
        Ok(Value::StringMap(m)) => Ok(m),
        _ => Err(format!(
            "wrong type for value; expected *template.sample; got {}",
            v.type_name()
        )),
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("regexp: Compile({pattern:?}): {e}"))
}

fn query(q: &str, env: &FnEnv<'_>) -> Result<Value, String> {
    let Some(qf) = env.query else {
        return Err("query: no query engine is available in this context".to_owned());
    };
    let samples = qf.query(q)?;
    Ok(Value::list(
        samples
            .into_iter()
            .map(|s| {
                Value::structure(
                    "*template.sample",
                    vec![
                        ("Labels".to_owned(), Value::string_map(s.labels)),
                        ("Value".to_owned(), Value::Float(s.value)),
                    ],
                )
            })
            .collect(),
    ))
}

/// Prometheus's `convertToFloat`: float64, int, or a string parsed as a float.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::String(s) => parse_go_float(s)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if matches!(body, "inf" | "infinity" | "nan")
        || body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'+' || b == b'-')
    {
        return s.parse::<f64>().ok().or_else(|| lower.parse::<f64>().ok());
    }
    None
}

/// Prometheus's `floatToTime` for finite `v`: nanoseconds, or its overflow error.
fn to_time(v: f64) -> Result<i128, String> {
    float_secs_to_nanos(v).ok_or_else(|| {
        let v = format_float(v, 'g', None);
        format!("{v} cannot be represented as a nanoseconds timestamp since it overflows int64")
    })
}

fn g4(v: f64) -> String {
    format_float(v, 'g', Some(4))
}

/// `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

/// `humanize1024`: binary prefixes.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`, or sub-second with SI prefixes.
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let whole = v as i64;
        let (seconds, minutes, hours, days) = (
            whole % 60,
            (whole / 60) % 60,
            (whole / 3600) % 24,
            whole / 86_400,
        );
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// Go's `strings.ToUpper`/`ToLower`: per-rune simple case mapping, so a rune whose full
/// mapping is several runes (`ß` → `SS`) is left unchanged, as Go leaves it.
fn map_case(s: &str, upper: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mut m: Vec<char> = if upper {
            c.to_uppercase().collect()
        } else {
            c.to_lowercase().collect()
        };
        if m.len() != 1 {
            m = vec![c];
        }
        out.extend(m);
    }
    out
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.push_str(&map_case(&c.to_string(), true));
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

/// Go's `net.SplitHostPort`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = rest[end + 1..].strip_prefix(':')?;
        if port.contains([':', '[', ']']) {
            return None;
        }
        return Some((host, port));
    }
    let i = s.rfind(':')?;
    let (host, port) = (&s[..i], &s[i + 1..]);
    if host.contains([':', '[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

fn strip_port(s: &str) -> String {
    split_host_port(s).map_or_else(|| s.to_owned(), |(h, _)| h.to_owned())
}

fn strip_domain(s: &str) -> String {
    let (host, port) = split_host_port(s).unwrap_or((s, ""));
    if host.parse::<IpAddr>().is_ok() {
        return s.to_owned();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        host.to_owned()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The path of an absolute URL (`pathPrefix`).
fn url_path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_prometheus() {
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.00123), "1.23m");
        assert_eq!(humanize(-1500.0), "-1.5k");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(0.5), "0.5");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(3.5), "3.5s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(-65.0), "-1m 5s");
    }

    #[test]
    fn host_helpers() {
        assert_eq!(strip_port("example.com:9090"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_domain("node1.example.com:9100"), "node1:9100");
        assert_eq!(strip_domain("10.0.0.1:9100"), "10.0.0.1:9100");
        assert_eq!(strip_domain("node1.example.com"), "node1");
        assert_eq!(url_path("http://x.org/prom/sub?q=1"), "/prom/sub");
        assert_eq!(title("hello wORLD-foo_bar"), "Hello WORLD-Foo_bar");
        assert_eq!(map_case("straße ﬁ", true), "STRAßE ﬁ");
    }

    #[test]
    fn timestamps_overflow_like_prometheus() {
        let env = FnEnv {
            query: None,
            external_url: "",
        };
        let call1 = |name: &str, v: f64| call(name, &[Value::Float(v)], &env).unwrap();
        assert_eq!(
            call1("humanizeTimestamp", 253_402_300_799.0),
            Err("2.53402300799e+11 cannot be represented as a nanoseconds timestamp since it overflows int64".to_owned())
        );
        assert_eq!(call1("humanizeTimestamp", f64::NAN), Ok(Value::from("NaN")));
        assert_eq!(
            call1("toTime", f64::INFINITY),
            Err("value is NaN or Inf".to_owned())
        );
        assert_eq!(call1("toTime", 1.5), Ok(Value::Time(1_500_000_000)));
    }
}
