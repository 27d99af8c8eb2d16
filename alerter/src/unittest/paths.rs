//! `rule_files` resolution as promtool does it: joined to the test file's directory with
//! Go's `filepath.Join` (which cleans the path), then expanded with `filepath.Glob`.

use std::path::{Path, PathBuf};

/// Most directory entries one glob may read; bounds work on a mistaken pattern.
const MAX_GLOB_ENTRIES: usize = 100_000;

/// `filepath.Join(base, pattern)` for relative patterns, `filepath.Clean` for absolute ones.
pub(crate) fn resolve(base: &Path, pattern: &str) -> String {
    if pattern.is_empty() || pattern.starts_with('/') {
        return if pattern.is_empty() {
            String::new()
        } else {
            clean(pattern)
        };
    }
    let base = base.to_string_lossy();
    let base = if base.is_empty() { "." } else { &base };
    clean(&format!("{base}/{pattern}"))
}

/// Go's `path.Clean`.
pub(crate) fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Go's `filepath.Glob`: sorted matches per directory; no match is an empty list.
pub(crate) fn glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !has_meta(pattern) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![PathBuf::from(pattern)]
        } else {
            Vec::new()
        });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(i) => (clean(&pattern[..=i]), &pattern[i + 1..]),
        None => (".".to_owned(), pattern),
    };
    // Validate the pattern once, as Go does, so a bad one is an error even without entries.
    wildcard(file, "").map_err(|_| "syntax error in pattern".to_owned())?;
    let dirs = if has_meta(&dir) {
        glob(&dir)?
    } else {
        vec![PathBuf::from(&dir)]
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .take(MAX_GLOB_ENTRIES)
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            if wildcard(file, &n).unwrap_or(false) {
                let joined = if pattern.contains('/') {
                    format!("{}/{n}", d.display())
                } else {
                    n
                };
                out.push(PathBuf::from(clean(&joined)));
            }
        }
    }
    Ok(out)
}

/// Go's `filepath.Match` (`*`, `?`, `[...]` with ranges and `^`, `\` escapes); `Err` for a
/// malformed pattern.
fn wildcard(pattern: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let mut memo = vec![None; (p.len() + 1) * (n.len() + 1)];
    match_from(&p, &n, 0, 0, &mut memo)
}

fn match_from(
    p: &[char],
    n: &[char],
    pi: usize,
    ni: usize,
    memo: &mut [Option<bool>],
) -> Result<bool, ()> {
    let key = pi * (n.len() + 1) + ni;
    if let Some(v) = memo[key] {
        return Ok(v);
    }
    let r = match p.get(pi) {
        None => ni == n.len(),
        Some('*') => {
            match_from(p, n, pi + 1, ni, memo)?
                || (ni < n.len() && n[ni] != '/' && match_from(p, n, pi, ni + 1, memo)?)
        }
        Some('?') => ni < n.len() && n[ni] != '/' && match_from(p, n, pi + 1, ni + 1, memo)?,
        Some('[') => {
            let (matched, next) = class(p, pi + 1, n.get(ni).copied())?;
            matched && match_from(p, n, next, ni + 1, memo)?
        }
        Some('\\') => {
            let c = *p.get(pi + 1).ok_or(())?;
            n.get(ni) == Some(&c) && match_from(p, n, pi + 2, ni + 1, memo)?
        }
        Some(c) => n.get(ni) == Some(c) && match_from(p, n, pi + 1, ni + 1, memo)?,
    };
    memo[key] = Some(r);
    Ok(r)
}

/// A `[...]` class starting after `[`; returns whether `c` matches and the index after `]`.
fn class(p: &[char], mut i: usize, c: Option<char>) -> Result<(bool, usize), ()> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = match p.get(i) {
            None => return Err(()),
            Some(']') if !first => break,
            Some('\\') => {
                i += 1;
                *p.get(i).ok_or(())?
            }
            Some(&ch) => ch,
        };
        first = false;
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            i += 2;
            p[i - 1]
        } else {
            lo
        };
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    Ok((c.is_some() && c != Some('/') && matched != negated, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_resolve_like_go() {
        assert_eq!(clean("./a/../b//c/."), "b/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(resolve(Path::new(""), "rules.yml"), "rules.yml");
        assert_eq!(resolve(Path::new("d/t"), "../r/*.yml"), "d/r/*.yml");
        assert_eq!(resolve(Path::new("d"), "/abs/x.yml"), "/abs/x.yml");
    }

    #[test]
    fn wildcards() {
        assert_eq!(wildcard("*.yml", "a.yml"), Ok(true));
        assert_eq!(wildcard("a?c", "abc"), Ok(true));
        assert_eq!(wildcard("[a-c]x", "bx"), Ok(true));
        assert_eq!(wildcard("[^a-c]x", "bx"), Ok(false));
        assert_eq!(wildcard("*", "a/b"), Ok(false));
        assert!(wildcard("[a", "a").is_err());
    }
}
