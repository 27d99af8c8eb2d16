//! Lexer for Go `text/template`: text, `{{ }}` actions with `{{-`/`-}}` trim markers,
//! comments, and the tokens inside actions.

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Literal text between actions (already trimmed by trim markers).
    Text(String),
    /// `{{`
    Left,
    /// `}}`
    Right,
    /// A bare identifier: function name.
    Ident(String),
    /// A keyword: `if`, `else`, `end`, `range`, `with`, `define`, `template`, `block`,
    /// `break`, `continue`.
    Keyword(&'static str),
    /// `.Name` (the name without the dot).
    Field(String),
    /// `.` alone.
    Dot,
    /// `$name` (the name without `$`; empty for `$`).
    Var(String),
    /// A quoted or raw string, unescaped.
    Str(String),
    /// A number or character constant, as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`
    Nil,
    /// `|`
    Pipe,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `:=`
    Declare,
    /// `=`
    Assign,
    /// `,`
    Comma,
    /// End of input.
    Eof,
}

/// A token with its byte offset and whether whitespace preceded it inside an action.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
    pub(crate) space_before: bool,
}

/// A lexing error at a byte offset.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) pos: usize,
    pub(crate) msg: String,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits `src` into tokens.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let bytes = src.as_bytes();
    let mut toks: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut trim_next_text = false;
    while i < bytes.len() {
        let start = i;
        let next = src[i..].find("{{").map(|o| i + o).unwrap_or(bytes.len());
        let mut text = &src[start..next];
        if trim_next_text {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        // `{{- ` (dash then whitespace) trims the whitespace before the action.
        let left_trim =
            bytes.get(next + 2) == Some(&b'-') && bytes.get(next + 3).is_some_and(|b| is_space(*b));
        if left_trim {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
        }
        if !text.is_empty() {
            toks.push(Token {
                tok: Tok::Text(text.to_owned()),
                pos: start,
                space_before: false,
            });
        }
        if next >= bytes.len() {
            break;
        }
        i = next + 2;
        if left_trim {
            i += 2;
        }
        let (end, trim_after) = lex_action(src, i, next, &mut toks)?;
        trim_next_text = trim_after;
        i = end;
    }
    toks.push(Token {
        tok: Tok::Eof,
        pos: bytes.len(),
        space_before: false,
    });
    Ok(toks)
}

/// Lexes one action starting after `{{` (and any `- `); returns the offset after `}}` and
/// whether the action ended with a right trim marker.
fn lex_action(
    src: &str,
    mut i: usize,
    left_pos: usize,
    toks: &mut Vec<Token>,
) -> Result<(usize, bool), LexError> {
    let bytes = src.as_bytes();
    // Comments: `{{/*` or `{{- /*`, ending with `*/}}` or `*/ -}}`.
    if src[i..].starts_with("/*") {
        let Some(close) = src[i + 2..].find("*/") else {
            return Err(LexError {
                pos: left_pos,
                msg: "unclosed comment".to_owned(),
            });
        };
        let after = i + 2 + close + 2;
        if src[after..].starts_with("}}") {
            return Ok((after + 2, false));
        }
        if src[after..].starts_with(" -}}") {
            return Ok((after + 4, true));
        }
        return Err(LexError {
            pos: left_pos,
            msg: "comment ends before closing delimiter".to_owned(),
        });
    }
    toks.push(Token {
        tok: Tok::Left,
        pos: left_pos,
        space_before: false,
    });
    let mut space = false;
    let mut paren_depth = 0usize;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(LexError {
                pos: left_pos,
                msg: "unclosed action".to_owned(),
            });
        };
        if is_space(b) {
            // Right trim marker: space, '-', '}}'.
            if src[i..].len() >= 4 && bytes[i + 1] == b'-' && src[i + 2..].starts_with("}}") {
                toks.push(Token {
                    tok: Tok::Right,
                    pos: i + 1,
                    space_before: true,
                });
                return Ok((i + 4, true));
            }
            space = true;
            i += 1;
            continue;
        }
        if src[i..].starts_with("}}") {
            if paren_depth > 0 {
                return Err(LexError {
                    pos: i,
                    msg: "unclosed left paren".to_owned(),
                });
            }
            toks.push(Token {
                tok: Tok::Right,
                pos: i,
                space_before: space,
            });
            return Ok((i + 2, false));
        }
        let pos = i;
        let (tok, len) = lex_item(src, i, &mut paren_depth)?;
        toks.push(Token {
            tok,
            pos,
            space_before: space,
        });
        space = false;
        i += len;
    }
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !is_alnum(*c))
        .map(|(o, _)| o)
        .unwrap_or(s.len())
}

/// Lexes one token at `i`, returning it and its byte length.
fn lex_item(src: &str, i: usize, paren_depth: &mut usize) -> Result<(Tok, usize), LexError> {
    let rest = &src[i..];
    let c = rest.chars().next().unwrap_or('\0');
    let err = |msg: String| LexError { pos: i, msg };
    Ok(match c {
        '|' => (Tok::Pipe, 1),
        '(' => {
            *paren_depth += 1;
            (Tok::LParen, 1)
        }
        ')' => {
            if *paren_depth == 0 {
                return Err(err("unexpected right paren".to_owned()));
            }
            *paren_depth -= 1;
            (Tok::RParen, 1)
        }
        ',' => (Tok::Comma, 1),
        '=' => (Tok::Assign, 1),
        ':' => {
            if rest.starts_with(":=") {
                (Tok::Declare, 2)
            } else {
                return Err(err("expected :=".to_owned()));
            }
        }
        '"' => lex_quote(rest).map_err(err)?,
        '`' => match rest[1..].find('`') {
            Some(end) => (Tok::Str(rest[1..1 + end].to_owned()), end + 2),
            None => return Err(err("unterminated raw quoted string".to_owned())),
        },
        '\'' => lex_char(rest).map_err(err)?,
        '$' => {
            let n = ident_len(&rest[1..]);
            (Tok::Var(rest[1..1 + n].to_owned()), 1 + n)
        }
        '.' => {
            let after = &rest[1..];
            match after.chars().next() {
                Some(d) if d.is_ascii_digit() => lex_number(rest),
                Some(a) if is_alnum(a) => {
                    let n = ident_len(after);
                    (Tok::Field(after[..n].to_owned()), 1 + n)
                }
                _ => (Tok::Dot, 1),
            }
        }
        '+' | '-' | '0'..='9' => lex_number(rest),
        c if is_alnum(c) => {
            let n = ident_len(rest);
            let word = &rest[..n];
            let tok = match word {
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "nil" => Tok::Nil,
                w => match KEYWORDS.iter().find(|k| **k == w) {
                    Some(k) => Tok::Keyword(k),
                    None => Tok::Ident(w.to_owned()),
                },
            };
            (tok, n)
        }
        c => return Err(err(format!("unrecognized character in action: {c:?}"))),
    })
}

fn lex_number(rest: &str) -> (Tok, usize) {
    let n = rest
        .char_indices()
        .skip(1)
        .find(|(_, c)| {
            !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '+' || *c == '-')
        })
        .map(|(o, _)| o)
        .unwrap_or(rest.len());
    // Signs are only part of a number at the start or right after an exponent marker.
    let bytes = rest.as_bytes();
    let mut end = n;
    for k in 1..n {
        if (bytes[k] == b'+' || bytes[k] == b'-')
            && !matches!(bytes[k - 1], b'e' | b'E' | b'p' | b'P')
        {
            end = k;
            break;
        }
    }
    (Tok::Number(rest[..end].to_owned()), end)
}

fn lex_quote(rest: &str) -> Result<(Tok, usize), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((o, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(out), o + 1)),
            '\n' => return Err("unterminated quoted string".to_owned()),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => return Err("invalid escape \\' in string".to_owned()),
                    'x' | 'u' | 'U' => {
                        let len = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String =
                            (0..len).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| format!("invalid escape \\{e}{hex}"))?;
                        let ch = char::from_u32(code)
                            .ok_or_else(|| format!("invalid escape \\{e}{hex}"))?;
                        out.push(ch);
                    }
                    other => return Err(format!("invalid escape \\{other} in string")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".to_owned())
}

fn lex_char(rest: &str) -> Result<(Tok, usize), String> {
    let mut escaped = false;
    for (o, c) in rest.char_indices().skip(1) {
        if c == '\n' {
            break;
        }
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if c == '\'' {
            return Ok((Tok::Number(rest[..=o].to_owned()), o + 1));
        }
    }
    Err("unterminated character constant".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn trims_and_fields() {
        assert_eq!(
            kinds("a  {{- .Labels.x -}}  b"),
            vec![
                Tok::Text("a".into()),
                Tok::Left,
                Tok::Field("Labels".into()),
                Tok::Field("x".into()),
                Tok::Right,
                Tok::Text("b".into()),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("x{{/* c */}}y"),
            vec![Tok::Text("x".into()), Tok::Text("y".into()), Tok::Eof]
        );
    }

    #[test]
    fn errors() {
        assert!(lex("{{ .x ").is_err());
        assert!(lex("{{ \"abc }}").is_err());
        assert!(lex("{{/* x }}").is_err());
    }
}
