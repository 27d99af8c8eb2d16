//! Go `text/template`'s predefined functions (except `and`/`or`, which short-circuit and
//! live in the evaluator): comparison, `len`, `index`, `slice`, `not`, printing and escaping.

use std::cmp::Ordering;

use super::gofmt::{sprint, sprintf, sprintln};
use super::value::Value;

/// Names of the builtins this module implements, plus `and`/`or` (evaluator) and `call`.
pub(crate) const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "html", "js",
    "urlquery", "eq", "ne", "lt", "le", "gt", "ge", "call",
];

pub(crate) fn want_args(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

/// Calls builtin `name`; `None` if `name` is not a builtin handled here.
pub(crate) fn call(name: &str, args: &[Value]) -> Option<Result<Value, String>> {
    Some(match name {
        "not" => want_args(name, args, 1).map(|()| Value::Bool(!args[0].is_true())),
        "len" => want_args(name, args, 1).and_then(|()| match &args[0] {
            Value::Nil => Err("len of nil pointer".to_owned()),
            v => v
                .len()
                .map(|n| Value::Int(n as i64))
                .ok_or_else(|| format!("len of type {}", v.type_name())),
        }),
        "index" => index(args),
        "slice" => slice(args),
        "print" => Ok(Value::String(sprint(args))),
        "println" => Ok(Value::String(sprintln(args))),
        "printf" => match args.first() {
            Some(Value::String(f)) => sprintf(f, &args[1..]).map(Value::String),
            Some(v) => Err(format!(
                "wrong type for value; expected string; got {}",
                v.type_name()
            )),
            None => Err("wrong number of args for printf: want at least 1 got 0".to_owned()),
        },
        "html" => Ok(Value::String(html_escape(&eval_args(args)))),
        "js" => Ok(Value::String(js_escape(&eval_args(args)))),
        "urlquery" => Ok(Value::String(query_escape(&eval_args(args)))),
        "eq" => eq(args).map(Value::Bool),
        "ne" => want_args(name, args, 2)
            .and_then(|()| eq(args))
            .map(|b| Value::Bool(!b)),
        "lt" => want_args(name, args, 2)
            .and_then(|()| less(&args[0], &args[1]))
            .map(Value::Bool),
        "le" => want_args(name, args, 2)
            .and_then(|()| less_eq(&args[0], &args[1]))
            .map(Value::Bool),
        "gt" => want_args(name, args, 2)
            .and_then(|()| less_eq(&args[0], &args[1]))
            .map(|b| Value::Bool(!b)),
        "ge" => want_args(name, args, 2)
            .and_then(|()| less(&args[0], &args[1]))
            .map(|b| Value::Bool(!b)),
        "call" => Err("call: this data model has no function values".to_owned()),
        _ => return None,
    })
}

/// Go's `evalArgs`: a lone string argument as is, otherwise `fmt.Sprint(args...)`.
fn eval_args(args: &[Value]) -> String {
    match args {
        [Value::String(s)] => s.clone(),
        _ => sprint(args),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    String,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::String,
        _ => Kind::Other,
    }
}

const BAD_COMPARISON: &str = "incompatible types for comparison";
const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";

fn eq(args: &[Value]) -> Result<bool, String> {
    let Some((a, rest)) = args.split_first() else {
        return Err("wrong number of args for eq: want at least 1 got 0".to_owned());
    };
    if rest.is_empty() {
        return Err("missing argument for comparison".to_owned());
    }
    for b in rest {
        let truth = match (a, b) {
            (Value::Nil, Value::Nil) => true,
            (Value::Nil, _) | (_, Value::Nil) => false,
            _ if kind(a) != kind(b) => return Err(BAD_COMPARISON.to_owned()),
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Time(x), Value::Time(y)) => x == y,
            _ => return Err(format!("non-comparable type {}", a.type_name())),
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn less(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if matches!(ka, Kind::Other | Kind::Bool) || matches!(kb, Kind::Other | Kind::Bool) {
        if ka != kb && ka != Kind::Other && kb != Kind::Other {
            return Err(BAD_COMPARISON.to_owned());
        }
        return Err(BAD_COMPARISON_TYPE.to_owned());
    }
    if ka != kb {
        return Err(BAD_COMPARISON.to_owned());
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y) == Some(Ordering::Less),
        (Value::String(x), Value::String(y)) => x < y,
        _ => false,
    })
}

fn less_eq(a: &Value, b: &Value) -> Result<bool, String> {
    if less(a, b)? {
        return Ok(true);
    }
    eq(&[a.clone(), b.clone()])
}

fn index(args: &[Value]) -> Result<Value, String> {
    let Some((item, idxs)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".to_owned());
    };
    let mut item = item.clone();
    for idx in idxs {
        item = match (&item, idx) {
            (Value::Nil, _) => return Err("index of untyped nil".to_owned()),
            (Value::StringMap(m), Value::String(k)) => {
                Value::String(m.get(k).cloned().unwrap_or_default())
            }
            (Value::Map(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Nil),
            (Value::StringMap(_) | Value::Map(_), other) => {
                return Err(format!(
                    "value has type {}; should be string",
                    other.type_name()
                ));
            }
            (Value::List(l), Value::Int(i)) => {
                let i = usize::try_from(*i).ok().filter(|i| *i < l.len());
                l[i.ok_or_else(|| format!("error calling index: index out of range: {idx:?}"))?]
                    .clone()
            }
            (Value::String(s), Value::Int(i)) => {
                let i = usize::try_from(*i).ok().filter(|i| *i < s.len());
                Value::Int(i64::from(
                    s.as_bytes()
                        [i.ok_or_else(|| "error calling index: index out of range".to_owned())?],
                ))
            }
            (Value::List(_) | Value::String(_), other) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    other.type_name()
                ));
            }
            (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let Some((item, idxs)) = args.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".to_owned());
    };
    let mut ix = Vec::new();
    for i in idxs {
        match i {
            Value::Int(n) if *n >= 0 => ix.push(*n as usize),
            Value::Int(n) => return Err(format!("index out of range: {n}")),
            other => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    other.type_name()
                ));
            }
        }
    }
    let len = match item {
        Value::String(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Nil => return Err("slice of untyped nil".to_owned()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    if ix.len() > 3 || (ix.len() == 3 && matches!(item, Value::String(_))) {
        return Err("too many slice indexes".to_owned());
    }
    let lo = ix.first().copied().unwrap_or(0);
    let hi = ix.get(1).copied().unwrap_or(len);
    let cap = ix.get(2).copied().unwrap_or(len);
    if lo > hi || hi > cap || cap > len {
        return Err(format!("invalid slice index: {lo} > {hi} or out of range"));
    }
    Ok(match item {
        Value::String(s) => match s.get(lo..hi) {
            Some(sub) => Value::String(sub.to_owned()),
            None => Value::String(String::from_utf8_lossy(&s.as_bytes()[lo..hi]).into_owned()),
        },
        Value::List(l) => Value::list(l[lo..hi].to_vec()),
        _ => Value::Nil,
    })
}

/// Go's `template.HTMLEscapeString`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(crate) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) >= 0x80 && c.is_control() => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_follow_go_kinds() {
        let c = |n: &str, a: Vec<Value>| call(n, &a).unwrap();
        assert_eq!(
            c("eq", vec![1i64.into(), 2i64.into(), 1i64.into()]),
            Ok(Value::Bool(true))
        );
        assert_eq!(c("lt", vec![1.5.into(), 2.0.into()]), Ok(Value::Bool(true)));
        assert_eq!(
            c("gt", vec![1.5.into(), 1i64.into()]),
            Err(BAD_COMPARISON.to_owned())
        );
        assert_eq!(
            c("lt", vec![true.into(), false.into()]),
            Err(BAD_COMPARISON_TYPE.to_owned())
        );
        assert_eq!(c("ge", vec!["b".into(), "a".into()]), Ok(Value::Bool(true)));
        assert_eq!(
            c("eq", vec![Value::Nil, "a".into()]),
            Ok(Value::Bool(false))
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"
        );
        assert_eq!(
            js_escape("a'b\"<=>\n"),
            "a\\'b\\\"\\u003C\\u003D\\u003E\\u000A"
        );
        assert_eq!(query_escape("a b&c/d"), "a+b%26c%2Fd");
    }

    #[test]
    fn index_and_slice() {
        let l = Value::list(vec![1i64.into(), 2i64.into(), 3i64.into()]);
        assert_eq!(index(&[l.clone(), 1i64.into()]), Ok(Value::Int(2)));
        assert!(index(&[l.clone(), 5i64.into()]).is_err());
        assert_eq!(
            slice(&["hello".into(), 1i64.into(), 3i64.into()]),
            Ok(Value::from("el"))
        );
        assert_eq!(slice(&[l, 2i64.into()]), Ok(Value::list(vec![3i64.into()])));
    }
}
