//! Go's `fmt` package as templates observe it: `%v` printing, `Sprint`, `Sprintln` and the
//! `Sprintf` verbs alert templates use, plus `strconv`-exact float formatting.

use super::value::Value;

/// Formats `v` as Go's `%v` does.
pub(crate) fn format_v(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_float(*f, 'g', None)),
        Value::String(s) => out.push_str(s),
        Value::StringMap(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(val);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                format_v(val, out);
            }
            out.push(']');
        }
        Value::List(l) => {
            out.push('[');
            for (i, val) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_v(val, out);
            }
            out.push(']');
        }
        Value::Struct(s) => {
            out.push('{');
            for (i, (_, val)) in s.fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_v(val, out);
            }
            out.push('}');
        }
        Value::Time(ns) => out.push_str(&super::gotime::format_time(*ns)),
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        format_v(a, &mut out);
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln`: spaces between all operands and a trailing newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        format_v(a, &mut out);
    }
    out.push('\n');
    out
}

/// Formats a float like `strconv.FormatFloat(v, verb, prec, 64)` for verbs `e`, `f`, `g`
/// (`prec` `None` means the shortest representation that round-trips). Infinities are
/// `+Inf`/`-Inf` and NaN is `NaN`, as `fmt` prints them.
pub(crate) fn format_float(v: f64, verb: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let neg = v.is_sign_negative();
    let body = match verb {
        'e' => {
            let (digits, exp) = decimal_digits(v.abs(), Some(prec.unwrap_or(6) + 1));
            format_e(&digits, exp, prec.unwrap_or(6))
        }
        'f' => match prec {
            Some(p) => format!("{:.*}", p, v.abs()),
            None => {
                let (digits, exp) = decimal_digits(v.abs(), None);
                let decimals = (digits.len() as i64 - (exp + 1)).max(0) as usize;
                format_f(&digits, exp, decimals)
            }
        },
        _ => format_g(v.abs(), prec),
    };
    if neg { format!("-{body}") } else { body }
}

/// Decimal digits (trailing zeros trimmed, at least one digit) and the decimal exponent of the
/// first digit, for `v >= 0`; `sig` digits if given, else the shortest round-trip digits.
fn decimal_digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i64) {
    if v == 0.0 {
        return (vec![b'0'], 0);
    }
    let s = match sig {
        Some(n) => format!("{:.*e}", n.saturating_sub(1), v),
        None => format!("{v:e}"),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp)
}

fn format_e(digits: &[u8], exp: i64, decimals: usize) -> String {
    let mut out = String::new();
    out.push(digits[0] as char);
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(*digits.get(i + 1).unwrap_or(&b'0') as char);
        }
    }
    let exp = if digits == [b'0'] { 0 } else { exp };
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
    out
}

/// Fixed notation from digits `d0.d1d2... x 10^exp` with `decimals` digits after the point.
fn format_f(digits: &[u8], exp: i64, decimals: usize) -> String {
    let digit = |i: i64| -> char {
        if i < 0 || i as usize >= digits.len() {
            '0'
        } else {
            digits[i as usize] as char
        }
    };
    let mut out = String::new();
    // Integer part: positions exp, exp-1, ..., 0 correspond to digit indices 0.. .
    if exp < 0 {
        out.push('0');
    } else {
        for i in 0..=exp {
            out.push(digit(i));
        }
    }
    if decimals > 0 {
        out.push('.');
        for k in 1..=decimals as i64 {
            out.push(digit(exp + k));
        }
    }
    out
}

fn format_g(v: f64, prec: Option<usize>) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let (digits, exp) = match prec {
        Some(p) => decimal_digits(v, Some(p.max(1))),
        None => decimal_digits(v, None),
    };
    let nd = digits.len() as i64;
    let eprec = match prec {
        None => 6,
        Some(p) => p.max(1) as i64,
    };
    if exp < -4 || exp >= eprec {
        return format_e(&digits, exp, (nd - 1) as usize);
    }
    let dp = exp + 1;
    let decimals = (nd - dp).max(0) as usize;
    format_f(&digits, exp, decimals)
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One parsed `%` directive.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's `fmt.Sprintf` for the verbs `%v %s %d %f %F %e %E %g %G %q %x %X %t %c %b %o %U %T
/// %%` with flags `-+ 0#`, widths and precisions. Argument indexes (`%[1]d`), `*` widths,
/// `%#v` and hexadecimal/binary float verbs are unsupported and reported as errors;
/// mismatched verbs print Go's `%!d(float64=1.5)` form, as Go does.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut argi = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = read_num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(read_num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '*' || verb == '[' {
            return Err(format!(
                "printf: unsupported directive %{verb} in {format:?}"
            ));
        }
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        if verb == 'T' {
            out.push_str(&pad(&spec, &arg.type_name(), false));
            continue;
        }
        if spec.sharp && verb == 'v' {
            return Err(format!("printf: unsupported directive %#v in {format:?}"));
        }
        if matches!(arg, Value::Float(_)) && matches!(verb, 'x' | 'X' | 'b') {
            return Err(format!(
                "printf: unsupported directive %{verb} for a float in {format:?}"
            ));
        }
        let body = format_arg(arg, verb, &spec);
        out.push_str(&body);
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&a.type_name());
            out.push('=');
            format_v(a, &mut out);
        }
        out.push(')');
    }
    Ok(out)
}

fn read_num(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(
            n.unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize)
                .min(1 << 16),
        );
        chars.next();
    }
    n
}

fn bad_verb(arg: &Value, verb: char) -> String {
    let mut s = format!("%!{verb}(");
    match arg {
        Value::Nil => s.push_str("<nil>"),
        _ => {
            s.push_str(&arg.type_name());
            s.push('=');
            format_v(arg, &mut s);
        }
    }
    s.push(')');
    s
}

fn format_arg(arg: &Value, verb: char, spec: &Spec) -> String {
    match arg {
        Value::Bool(b) => match verb {
            't' | 'v' => pad(spec, if *b { "true" } else { "false" }, false),
            _ => bad_verb(arg, verb),
        },
        Value::Int(i) => format_int(*i, verb, spec).unwrap_or_else(|| bad_verb(arg, verb)),
        Value::Float(f) => format_float_verb(*f, verb, spec).unwrap_or_else(|| bad_verb(arg, verb)),
        Value::String(s) => match verb {
            's' | 'v' => {
                let s = match spec.prec {
                    Some(p) => s.chars().take(p).collect::<String>(),
                    None => s.clone(),
                };
                pad(spec, &s, false)
            }
            'q' => pad(spec, &quote(s), false),
            'x' => pad(spec, &hex_bytes(s, false), false),
            'X' => pad(spec, &hex_bytes(s, true), false),
            _ => bad_verb(arg, verb),
        },
        Value::Nil => match verb {
            'v' => pad(spec, "<nil>", false),
            _ => bad_verb(arg, verb),
        },
        _ => {
            // Composite values: Go applies the verb element-wise; `%v`/`%s` cover templates.
            let mut s = String::new();
            format_v(arg, &mut s);
            pad(spec, &s, false)
        }
    }
}

fn hex_bytes(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn format_int(i: i64, verb: char, spec: &Spec) -> Option<String> {
    let neg = i < 0;
    let a = i.unsigned_abs();
    let digits = match verb {
        'd' | 'v' => a.to_string(),
        'x' => format!("{a:x}"),
        'X' => format!("{a:X}"),
        'o' => format!("{a:o}"),
        'b' => format!("{a:b}"),
        'c' => {
            let c = char::from_u32(u32::try_from(i).ok()?).unwrap_or('\u{FFFD}');
            return Some(pad(spec, &c.to_string(), false));
        }
        'q' => {
            let c = char::from_u32(u32::try_from(i).ok()?).unwrap_or('\u{FFFD}');
            return Some(pad(spec, &format!("'{c}'"), false));
        }
        'U' => return Some(pad(spec, &format!("U+{a:04X}"), false)),
        _ => return None,
    };
    let mut digits = digits;
    if let Some(p) = spec.prec {
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    if spec.sharp {
        match verb {
            'x' => digits.insert_str(0, "0x"),
            'X' => digits.insert_str(0, "0X"),
            'o' => digits.insert(0, '0'),
            _ => {}
        }
    }
    Some(pad_number(spec, neg, &digits, spec.prec.is_none()))
}

fn format_float_verb(f: f64, verb: char, spec: &Spec) -> Option<String> {
    let (base, upper) = match verb {
        'v' | 'g' => ('g', false),
        'G' => ('g', true),
        'e' => ('e', false),
        'E' => ('e', true),
        'f' | 'F' => ('f', false),
        _ => return None,
    };
    let prec = match (base, spec.prec) {
        ('g', p) => p,
        (_, None) => Some(6),
        (_, p) => p,
    };
    let s = format_float(f, base, prec);
    let s = if upper {
        s.to_uppercase().replace("INF", "Inf").replace("NAN", "NaN")
    } else {
        s
    };
    if f.is_nan() || f.is_infinite() {
        let body = if f.is_nan() {
            if spec.plus {
                "+NaN".to_owned()
            } else if spec.space {
                " NaN".to_owned()
            } else {
                "NaN".to_owned()
            }
        } else {
            s
        };
        return Some(pad(spec, &body, false));
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.to_owned()),
        None => (false, s),
    };
    Some(pad_number(spec, neg, &digits, true))
}

/// Pads a number: sign first, then zeros (if the `0` flag applies), then digits.
fn pad_number(spec: &Spec, neg: bool, digits: &str, zero_ok: bool) -> String {
    let sign = if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let len = sign.len() + digits.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        return format!("{sign}{digits}");
    }
    let fill = width - len;
    if spec.minus {
        format!("{sign}{digits}{}", " ".repeat(fill))
    } else if spec.zero && zero_ok {
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{sign}{digits}", " ".repeat(fill))
    }
}

fn pad(spec: &Spec, s: &str, _numeric: bool) -> String {
    let len = s.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        return s.to_owned();
    }
    let fill = width - len;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero {
        format!("{}{s}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_go() {
        let cases: &[(f64, char, Option<usize>, &str)] = &[
            (1.0, 'g', None, "1"),
            (1e6, 'g', None, "1e+06"),
            (123456.0, 'g', None, "123456"),
            (0.0001, 'g', None, "0.0001"),
            (0.00001, 'g', None, "1e-05"),
            (1.5, 'g', Some(4), "1.5"),
            (1234.5678, 'g', Some(4), "1235"),
            (12345.678, 'g', Some(4), "1.235e+04"),
            (100.0, 'g', Some(4), "100"),
            (0.0, 'g', Some(4), "0"),
            (1.23456, 'f', Some(2), "1.23"),
            (1234.5, 'e', None, "1.234500e+03"),
            (-2.5, 'g', None, "-2.5"),
            (f64::INFINITY, 'g', Some(4), "+Inf"),
            (f64::NAN, 'g', None, "NaN"),
            (0.1 + 0.2, 'g', None, "0.30000000000000004"),
        ];
        for (v, verb, prec, want) in cases {
            assert_eq!(format_float(*v, *verb, *prec), *want, "{v} {verb} {prec:?}");
        }
    }

    #[test]
    fn sprintf_verbs() {
        let s = |f: &str, a: &[Value]| sprintf(f, a).unwrap();
        assert_eq!(
            s(
                "%5.2f|%-4d|%04d",
                &[1.23456.into(), 7i64.into(), 42i64.into()]
            ),
            " 1.23|7   |0042"
        );
        assert_eq!(
            s("%q %x %t", &["a\"b".into(), 255i64.into(), true.into()]),
            "\"a\\\"b\" ff true"
        );
        assert_eq!(s("%d", &[1.5.into()]), "%!d(float64=1.5)");
        assert_eq!(s("%s %s", &["a".into()]), "a %!s(MISSING)");
        assert_eq!(s("%s", &["a".into(), 1i64.into()]), "a%!(EXTRA int=1)");
        assert!(sprintf("%[1]d", &[1i64.into()]).is_err());
    }

    #[test]
    fn sprint_spacing() {
        assert_eq!(
            sprint(&[1i64.into(), 2i64.into(), "a".into(), 3i64.into()]),
            "1 2a3"
        );
        assert_eq!(sprintln(&["a".into(), 1i64.into()]), "a 1\n");
    }
}
