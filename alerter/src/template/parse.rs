//! Recursive-descent parser for Go `text/template`, with Go's parse-time checks: undefined
//! functions and variables, misplaced `else`/`end`/`break`/`continue`, empty pipelines.

use super::ast::{Cmd, Control, ControlKind, Node, Number, Operand, Pipe, Term};
use super::lex::{Tok, Token, lex};

/// Maximum nesting of control structures and parentheses. Go has no limit; ours bounds the
/// parser's and evaluator's stack use on hostile input.
pub(crate) const MAX_PARSE_DEPTH: usize = 100;

/// A parse error at a byte offset of the source.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub(crate) pos: usize,
    pub(crate) msg: String,
}

/// A parsed template: its main body and the templates it `define`s.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) main: Vec<Node>,
    pub(crate) defines: Vec<(String, Vec<Node>)>,
}

/// What ended a list of nodes.
enum Stop {
    End,
    Else(usize),
    Eof,
}

struct Parser<'a> {
    toks: Vec<Token>,
    idx: usize,
    vars: Vec<String>,
    depth: usize,
    range_depth: usize,
    is_func: &'a dyn Fn(&str) -> bool,
    defines: Vec<(String, Vec<Node>)>,
}

type PResult<T> = Result<T, ParseError>;

/// Parses `src`. `predeclared` names variables defined before the body (Prometheus's
/// prelude); `is_func` says whether an identifier names a function.
pub(crate) fn parse(
    src: &str,
    predeclared: &[&str],
    is_func: &dyn Fn(&str) -> bool,
) -> PResult<Parsed> {
    let toks = lex(src).map_err(|e| ParseError {
        pos: e.pos,
        msg: e.msg,
    })?;
    let mut vars = vec![String::new()];
    vars.extend(predeclared.iter().map(|s| (*s).to_owned()));
    let mut p = Parser {
        toks,
        idx: 0,
        vars,
        depth: 0,
        range_depth: 0,
        is_func,
        defines: Vec::new(),
    };
    let (main, stop) = p.list(true)?;
    match stop {
        Stop::Eof => Ok(Parsed {
            main,
            defines: p.defines,
        }),
        Stop::End => Err(p.err_at(p.prev_pos(), "unexpected {{end}}")),
        Stop::Else(pos) => Err(p.err_at(pos, "unexpected {{else}}")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.idx].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        let i = (self.idx + k).min(self.toks.len() - 1);
        &self.toks[i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.idx].pos
    }

    fn prev_pos(&self) -> usize {
        self.toks[self.idx.saturating_sub(1)].pos
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.idx].clone();
        if self.idx + 1 < self.toks.len() {
            self.idx += 1;
        }
        t
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            msg: msg.into(),
        }
    }

    fn expect_right(&mut self, context: &str) -> PResult<()> {
        let t = self.next();
        if t.tok == Tok::Right {
            Ok(())
        } else {
            Err(self.err_at(
                t.pos,
                format!("unexpected {} in {context}", describe(&t.tok)),
            ))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return Err(self.err_at(self.pos(), format!("nesting deeper than {MAX_PARSE_DEPTH}")));
        }
        Ok(())
    }

    /// Parses nodes until `{{end}}`, `{{else}}` or end of input.
    fn list(&mut self, top: bool) -> PResult<(Vec<Node>, Stop)> {
        let mut nodes = Vec::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Eof => {
                    if top {
                        return Ok((nodes, Stop::Eof));
                    }
                    return Err(self.err_at(t.pos, "unexpected EOF"));
                }
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::Left => {
                    if let Some(stop) = self.action(top, &mut nodes)? {
                        return Ok((nodes, stop));
                    }
                }
                other => return Err(self.err_at(t.pos, format!("unexpected {}", describe(&other)))),
            }
        }
    }

    /// Parses the inside of `{{ ... }}`; returns `Some` when it ends the current list.
    fn action(&mut self, top: bool, nodes: &mut Vec<Node>) -> PResult<Option<Stop>> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Keyword("end") => {
                self.next();
                self.expect_right("end")?;
                Ok(Some(Stop::End))
            }
            Tok::Keyword("else") => {
                self.next();
                Ok(Some(Stop::Else(pos)))
            }
            Tok::Keyword("if") => {
                self.next();
                nodes.push(self.control(ControlKind::If)?);
                Ok(None)
            }
            Tok::Keyword("with") => {
                self.next();
                nodes.push(self.control(ControlKind::With)?);
                Ok(None)
            }
            Tok::Keyword("range") => {
                self.next();
                nodes.push(self.control(ControlKind::Range)?);
                Ok(None)
            }
            Tok::Keyword(kw @ ("break" | "continue")) => {
                self.next();
                if self.range_depth == 0 {
                    return Err(self.err_at(pos, format!("{{{{{kw}}}}} outside {{{{range}}}}")));
                }
                self.expect_right(kw)?;
                nodes.push(if kw == "break" {
                    Node::Break
                } else {
                    Node::Continue
                });
                Ok(None)
            }
            Tok::Keyword("template") => {
                self.next();
                nodes.push(self.template_call(pos, "template")?);
                Ok(None)
            }
            Tok::Keyword("define") => {
                self.next();
                if !top {
                    return Err(
                        self.err_at(pos, "unexpected {{define}}: only allowed at top level")
                    );
                }
                let name = self.template_name("define")?;
                self.expect_right("define clause")?;
                let body = self.define_body(pos)?;
                self.defines.push((name, body));
                Ok(None)
            }
            Tok::Keyword("block") => {
                self.next();
                let node = self.template_call(pos, "block")?;
                let Node::Template { name, .. } = &node else {
                    return Err(self.err_at(pos, "internal: block"));
                };
                let name = name.clone();
                let body = self.define_body(pos)?;
                self.defines.push((name, body));
                nodes.push(node);
                Ok(None)
            }
            _ => {
                let pipe = self.pipeline("command", false)?;
                nodes.push(Node::Action(pipe));
                Ok(None)
            }
        }
    }

    fn define_body(&mut self, pos: usize) -> PResult<Vec<Node>> {
        let saved_vars = std::mem::replace(&mut self.vars, vec![String::new()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        self.enter()?;
        let (body, stop) = self.list(false)?;
        self.depth -= 1;
        self.vars = saved_vars;
        self.range_depth = saved_range;
        match stop {
            Stop::End => Ok(body),
            _ => Err(self.err_at(pos, "unexpected {{else}} in define clause")),
        }
    }

    fn template_name(&mut self, context: &str) -> PResult<String> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            other => Err(self.err_at(
                t.pos,
                format!("unexpected {} in {context} clause", describe(&other)),
            )),
        }
    }

    fn template_call(&mut self, pos: usize, context: &str) -> PResult<Node> {
        let name = self.template_name(context)?;
        if *self.peek() == Tok::Right {
            self.next();
            return Ok(Node::Template {
                pos,
                name,
                pipe: None,
            });
        }
        let pipe = self.pipeline(context, false)?;
        Ok(Node::Template {
            pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn control(&mut self, kind: ControlKind) -> PResult<Node> {
        self.enter()?;
        let nvars = self.vars.len();
        let context = match kind {
            ControlKind::If => "if",
            ControlKind::With => "with",
            ControlKind::Range => "range",
        };
        let pipe = self.pipeline(context, kind == ControlKind::Range)?;
        if kind == ControlKind::Range {
            self.range_depth += 1;
        }
        let (list, stop) = self.list(false)?;
        if kind == ControlKind::Range {
            self.range_depth -= 1;
        }
        let else_list = match stop {
            Stop::End => None,
            Stop::Eof => return Err(self.err_at(self.pos(), "unexpected EOF")),
            Stop::Else(_) => {
                let chained = match self.peek() {
                    Tok::Keyword("if") => Some(ControlKind::If),
                    Tok::Keyword("with") if kind == ControlKind::With => Some(ControlKind::With),
                    _ => None,
                };
                if let Some(k) = chained {
                    // `{{else if ...}}` is `{{else}}{{if ...}}...{{end}}` sharing our `{{end}}`.
                    self.next();
                    Some(vec![self.control(k)?])
                } else {
                    self.expect_right("else")?;
                    let (else_list, stop) = self.list(false)?;
                    match stop {
                        Stop::End => Some(else_list),
                        Stop::Else(p) => return Err(self.err_at(p, "expected end; found {{else}}")),
                        Stop::Eof => return Err(self.err_at(self.pos(), "unexpected EOF")),
                    }
                }
            }
        };
        self.vars.truncate(nvars);
        self.depth -= 1;
        Ok(Node::Control(Box::new(Control {
            kind,
            pipe,
            list,
            else_list,
        })))
    }

    fn var_defined(&self, name: &str) -> bool {
        self.vars.iter().any(|v| v == name)
    }

    /// Parses a pipeline up to `}}` (or `)` when `context` is `"parenthesized pipeline"`).
    fn pipeline(&mut self, context: &str, allow_two: bool) -> PResult<Pipe> {
        let pos = self.pos();
        let mut decl = Vec::new();
        let mut is_assign = false;
        if let Tok::Var(first) = self.peek().clone() {
            let mut names = vec![first];
            let mut k = 1;
            if *self.peek_at(1) == Tok::Comma
                && let Tok::Var(second) = self.peek_at(2).clone()
            {
                names.push(second);
                k = 3;
            }
            let op = self.peek_at(k).clone();
            if op == Tok::Declare || op == Tok::Assign {
                if names.len() > 1 && !allow_two {
                    return Err(self.err_at(pos, format!("too many declarations in {context}")));
                }
                for _ in 0..=k {
                    self.next();
                }
                is_assign = op == Tok::Assign;
                // Go's parser accepts assignment to an undeclared variable; execution fails.
                if !is_assign {
                    self.vars.extend(names.iter().cloned());
                }
                decl = names;
            }
        }
        let end = if context == "parenthesized pipeline" {
            Tok::RParen
        } else {
            Tok::Right
        };
        let mut cmds = Vec::new();
        loop {
            if *self.peek() == end {
                self.next();
                break;
            }
            let cmd = self.command(&end)?;
            cmds.push(cmd);
            match self.peek() {
                Tok::Pipe => {
                    self.next();
                }
                t if *t == end => {}
                t => {
                    let msg = format!("unexpected {} in operand", describe(t));
                    return Err(self.err_at(self.pos(), msg));
                }
            }
        }
        if cmds.is_empty() {
            return Err(self.err_at(pos, format!("missing value for {context}")));
        }
        for (i, c) in cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0].term,
                Term::Bool(_) | Term::Dot | Term::Nil | Term::Number(_) | Term::Str(_)
            ) {
                return Err(self.err_at(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(Pipe {
            pos,
            is_assign,
            decl,
            cmds,
        })
    }

    fn command(&mut self, end: &Tok) -> PResult<Cmd> {
        let pos = self.pos();
        let mut args = Vec::new();
        loop {
            match self.peek() {
                Tok::Pipe => break,
                t if t == end => break,
                _ => {}
            }
            if !args.is_empty() && !self.toks[self.idx].space_before && *self.peek() != Tok::LParen
            {
                return Err(self.err_at(self.pos(), "missing space?"));
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return Err(self.err_at(pos, "empty command"));
        }
        Ok(Cmd { pos, args })
    }

    fn operand(&mut self) -> PResult<Operand> {
        let t = self.next();
        let pos = t.pos;
        let term = match t.tok {
            Tok::Dot => Term::Dot,
            Tok::Nil => Term::Nil,
            Tok::Bool(b) => Term::Bool(b),
            Tok::Str(s) => Term::Str(s),
            Tok::Number(n) => Term::Number(parse_number(&n).map_err(|m| self.err_at(pos, m))?),
            Tok::Var(v) => {
                if !self.var_defined(&v) {
                    return Err(self.err_at(pos, format!("undefined variable \"${v}\"")));
                }
                Term::Var(v)
            }
            Tok::Field(f) => Term::Field(vec![f]),
            Tok::Ident(name) => {
                if !(self.is_func)(&name) {
                    return Err(self.err_at(pos, format!("function {name:?} not defined")));
                }
                Term::Func(name)
            }
            Tok::LParen => {
                self.enter()?;
                let p = self.pipeline("parenthesized pipeline", false)?;
                self.depth -= 1;
                Term::Pipe(Box::new(p))
            }
            other => {
                return Err(self.err_at(pos, format!("unexpected {} in operand", describe(&other))));
            }
        };
        let mut chain = Vec::new();
        while let Tok::Field(_) = self.peek() {
            if self.toks[self.idx].space_before {
                break;
            }
            let Tok::Field(f) = self.next().tok else {
                break;
            };
            chain.push(f);
        }
        if !chain.is_empty() {
            match term {
                Term::Field(mut fs) => {
                    fs.extend(chain);
                    return Ok(Operand {
                        pos,
                        term: Term::Field(fs),
                        chain: Vec::new(),
                    });
                }
                Term::Bool(_)
                | Term::Str(_)
                | Term::Number(_)
                | Term::Nil
                | Term::Dot
                | Term::Func(_) => {
                    return Err(self.err_at(pos, "unexpected . after term"));
                }
                _ => {}
            }
        }
        Ok(Operand { pos, term, chain })
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Right => "\"}}\"".to_owned(),
        Tok::Eof => "EOF".to_owned(),
        Tok::Keyword(k) => format!("<{k}>"),
        Tok::Text(_) => "text".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Parses a Go numeric or character constant the way `text/template/parse` does.
pub(crate) fn parse_number(text: &str) -> Result<Number, String> {
    let bad = || format!("bad number syntax: {text:?}");
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'').ok_or_else(bad)?;
        let c = unquote_char(inner).ok_or_else(bad)?;
        let i = i64::from(u32::from(c));
        return Ok(Number {
            int: Some(i),
            float: Some(i as f64),
            float_literal: false,
        });
    }
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.ends_with('i') {
        return Err(if body.ends_with('i') {
            format!("complex constants are not supported: {text:?}")
        } else {
            bad()
        });
    }
    let clean = body.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let radix_int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains('p') || h.contains('.') {
            return Err(format!("hexadecimal floats are not supported: {text:?}"));
        }
        Some(u64::from_str_radix(h, 16).map_err(|_| bad())?)
    } else if let Some(o) = lower.strip_prefix("0o") {
        Some(u64::from_str_radix(o, 8).map_err(|_| bad())?)
    } else if let Some(b) = lower.strip_prefix("0b") {
        Some(u64::from_str_radix(b, 2).map_err(|_| bad())?)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        Some(u64::from_str_radix(&lower[1..], 8).map_err(|_| bad())?)
    } else if lower.bytes().all(|b| b.is_ascii_digit()) {
        Some(
            lower
                .parse::<u64>()
                .map_err(|_| format!("integer overflow: {text:?}"))?,
        )
    } else {
        None
    };
    if let Some(u) = radix_int {
        let i = i64::try_from(u).map_err(|_| format!("integer overflow: {text:?}"))?;
        let i = if neg { -i } else { i };
        return Ok(Number {
            int: Some(i),
            float: Some(i as f64),
            float_literal: false,
        });
    }
    if !lower
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return Err(bad());
    }
    let f: f64 = lower.parse().map_err(|_| bad())?;
    let f = if neg { -f } else { f };
    let int = if f.fract() == 0.0 && f.abs() < 9.2e18 {
        Some(f as i64)
    } else {
        None
    };
    Ok(Number {
        int,
        float: Some(f),
        float_literal: true,
    })
}

fn unquote_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    if c != '\\' {
        return if chars.next().is_none() {
            Some(c)
        } else {
            None
        };
    }
    let e = chars.next()?;
    let simple = match e {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'v' => Some('\u{b}'),
        '\\' => Some('\\'),
        '\'' => Some('\''),
        _ => None,
    };
    if let Some(c) = simple {
        return if chars.next().is_none() {
            Some(c)
        } else {
            None
        };
    }
    let hex: String = chars.collect();
    match e {
        'x' | 'u' | 'U' => char::from_u32(u32::from_str_radix(&hex, 16).ok()?),
        _ => None,
    }
}
