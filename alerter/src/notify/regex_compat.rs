//! The RE2 (Go `regexp/syntax`) rules that the `regex` crate does not enforce, so that a regex
//! Alertmanager refuses is refused here too: nested repetition operators (`a**`, `x++`,
//! `x{2}{3}`; a single `?` after a repetition is the non-greedy flag) and repeat counts above
//! 1000.

/// Go's maximum repeat count.
const MAX_REPEAT: u32 = 1000;

/// `{n}`, `{n,}` or `{n,m}` at the start of `rest`: (length in chars, n, m).
fn repeat_at(rest: &[char]) -> Option<(usize, u32, Option<u32>)> {
    let close = rest.iter().position(|&c| c == '}')?;
    let body: String = rest[1..close].iter().collect();
    let (n, m) = match body.split_once(',') {
        Some((n, "")) => (n.parse().ok()?, None),
        Some((n, m)) => (n.parse().ok()?, Some(m.parse().ok()?)),
        None => (body.parse().ok()?, Some(body.parse().ok()?)),
    };
    Some((close + 1, n, m))
}

/// Index just past the character class starting at `i` (`chars[i] == '['`).
fn skip_class(chars: &[char], mut i: usize) -> usize {
    i += 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' if chars.get(i + 1) == Some(&':') => {
                let rest = &chars[i + 2..];
                let end = rest.windows(2).position(|w| w == [':', ']']);
                i += end.map_or(1, |e| e + 4);
            }
            ']' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Checks `pattern` against the RE2 rules above.
pub fn check(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let (mut i, mut after_repeat, mut lazy) = (0, false, false);
    while i < chars.len() {
        let c = chars[i];
        let repeat = match c {
            '*' | '+' | '?' => Some(1),
            '{' => match repeat_at(&chars[i..]) {
                Some((len, n, m)) => {
                    if n > MAX_REPEAT || m.is_some_and(|m| m > MAX_REPEAT) {
                        return Err(format!("invalid repeat count in {pattern:?}"));
                    }
                    Some(len)
                }
                None => None,
            },
            _ => None,
        };
        match repeat {
            Some(len) => {
                if after_repeat {
                    if c == '?' && !lazy {
                        lazy = true;
                    } else {
                        return Err(format!("invalid nested repetition operator in {pattern:?}"));
                    }
                } else {
                    (after_repeat, lazy) = (true, false);
                }
                i += len;
            }
            None => {
                after_repeat = false;
                i = match c {
                    '\\' => i + 2,
                    '[' => skip_class(&chars, i),
                    '(' if chars.get(i + 1) == Some(&'?') => i + 2,
                    _ => i + 1,
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn re2_rules() {
        for ok in [
            "a*?",
            "a+?b",
            "x{2,5}?",
            "[*+]+",
            r"\*+",
            "(?i)a+",
            "(?P<n>x)*",
            "x{1000}",
            "a{,3}",
            "[[:alpha:]*]+",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a**",
            "x++",
            "a*??",
            "x{2}{3}",
            "x{1001}",
            "x{1,1001}",
            "a?*",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
