//! The evaluator: walks the parse tree against a [`Value`], with fuel, output and recursion
//! limits so that no template runs forever or allocates without bound.

use super::ast::{Cmd, Control, ControlKind, Node, Operand, Pipe, Term};
use super::gofmt::format_v;
use super::prom_funcs::FnEnv;
use super::value::Value;
use super::{Limits, builtins, prom_funcs};

/// Why execution stopped early.
#[derive(Debug)]
pub(crate) struct ExecError {
    /// Byte offset in the template source.
    pub(crate) pos: usize,
    /// Name of the (possibly `define`d) template executing.
    pub(crate) template: String,
    pub(crate) msg: String,
    /// A resource limit, not a template bug.
    pub(crate) limit: bool,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

type EResult<T> = Result<T, ExecError>;

/// Evaluation state of one render.
pub(crate) struct Exec<'a> {
    pub(crate) defines: &'a [(String, Vec<Node>)],
    pub(crate) main_name: &'a str,
    pub(crate) main: &'a [Node],
    pub(crate) limits: &'a Limits,
    pub(crate) env: FnEnv<'a>,
    pub(crate) out: String,
    steps: u64,
    depth: usize,
    vars: Vec<(String, Value)>,
    current: String,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(
        main_name: &'a str,
        main: &'a [Node],
        defines: &'a [(String, Vec<Node>)],
        limits: &'a Limits,
        env: FnEnv<'a>,
    ) -> Self {
        Exec {
            defines,
            main_name,
            main,
            limits,
            env,
            out: String::new(),
            steps: 0,
            depth: 0,
            vars: Vec::new(),
            current: main_name.to_owned(),
        }
    }

    /// Runs the main template with `dot` and the given predeclared variables.
    pub(crate) fn run(&mut self, dot: &Value, predeclared: Vec<(String, Value)>) -> EResult<()> {
        self.vars = vec![(String::new(), dot.clone())];
        self.vars.extend(predeclared);
        let main = self.main;
        self.list(main, dot)?;
        Ok(())
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ExecError {
        ExecError {
            pos,
            template: self.current.clone(),
            msg: msg.into(),
            limit: false,
        }
    }

    fn limit_err(&self, pos: usize, msg: String) -> ExecError {
        ExecError {
            pos,
            template: self.current.clone(),
            msg,
            limit: true,
        }
    }

    fn step(&mut self, pos: usize) -> EResult<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(self.limit_err(
                pos,
                format!("execution exceeded {} steps", self.limits.max_steps),
            ));
        }
        Ok(())
    }

    fn write(&mut self, pos: usize, s: &str) -> EResult<()> {
        if self.out.len() + s.len() > self.limits.max_output_bytes {
            return Err(self.limit_err(
                pos,
                format!("output exceeds {} bytes", self.limits.max_output_bytes),
            ));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> EResult<Flow> {
        for n in nodes {
            match self.node(n, dot)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, n: &Node, dot: &Value) -> EResult<Flow> {
        match n {
            Node::Text(t) => {
                self.step(0)?;
                self.write(0, t)?;
            }
            Node::Action(pipe) => {
                self.step(pipe.pos)?;
                let v = self.pipe(pipe, dot)?;
                if pipe.decl.is_empty() {
                    let mut s = String::new();
                    match v {
                        Value::Nil => s.push_str("<no value>"),
                        v => format_v(&v, &mut s),
                    }
                    self.write(pipe.pos, &s)?;
                }
            }
            Node::Control(c) => return self.control(c, dot),
            Node::Template { pos, name, pipe } => {
                self.step(*pos)?;
                let new_dot = match pipe {
                    Some(p) => self.pipe(p, dot)?,
                    None => Value::Nil,
                };
                self.call_template(*pos, name, &new_dot)?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn call_template(&mut self, pos: usize, name: &str, dot: &Value) -> EResult<()> {
        let body: &'a [Node] = match self.defines.iter().rev().find(|(n, _)| n == name) {
            Some((_, body)) => body,
            None if name == self.main_name => self.main,
            None => {
                return Err(self.err(
                    pos,
                    format!(
                        "template: no template {name:?} associated with template {:?}",
                        self.main_name
                    ),
                ));
            }
        };
        self.descend(pos)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec![(String::new(), dot.clone())]);
        let saved_name = std::mem::replace(&mut self.current, name.to_owned());
        let r = self.list(body, dot);
        self.current = saved_name;
        self.vars = saved_vars;
        self.depth -= 1;
        r.map(|_| ())
    }

    /// Enters one level of evaluation nesting (template call, control structure or
    /// parenthesized pipeline); the caller leaves it with `self.depth -= 1`.
    fn descend(&mut self, pos: usize) -> EResult<()> {
        if self.depth >= self.limits.max_depth {
            return Err(self.limit_err(
                pos,
                format!("exceeded maximum nesting depth ({})", self.limits.max_depth),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn control(&mut self, c: &Control, dot: &Value) -> EResult<Flow> {
        self.step(c.pipe.pos)?;
        self.descend(c.pipe.pos)?;
        let r = self.control_inner(c, dot);
        self.depth -= 1;
        r
    }

    fn control_inner(&mut self, c: &Control, dot: &Value) -> EResult<Flow> {
        let mark = self.vars.len();
        let flow = match c.kind {
            ControlKind::If | ControlKind::With => {
                let v = self.pipe(&c.pipe, dot)?;
                if v.is_true() {
                    let new_dot = if c.kind == ControlKind::With {
                        v
                    } else {
                        dot.clone()
                    };
                    self.list(&c.list, &new_dot)?
                } else if let Some(e) = &c.else_list {
                    self.list(e, dot)?
                } else {
                    Flow::Normal
                }
            }
            ControlKind::Range => self.range(c, dot)?,
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, c: &Control, dot: &Value) -> EResult<Flow> {
        let val = self.pipe_value(&c.pipe, dot)?;
        let items: Vec<(Value, Value)> = match &val {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::StringMap(m) => m
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
                .collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(self.err(
                    c.pipe.pos,
                    format!("range can't iterate over {}", printed(other)),
                ));
            }
        };
        if items.is_empty() {
            return match &c.else_list {
                Some(e) => self.list(e, dot),
                None => Ok(Flow::Normal),
            };
        }
        for (k, v) in items {
            self.step(c.pipe.pos)?;
            let mark = self.vars.len();
            match c.pipe.decl.as_slice() {
                [one] => self.set_var(c.pipe.pos, one, v.clone(), c.pipe.is_assign)?,
                [a, b] => {
                    self.set_var(c.pipe.pos, a, k, c.pipe.is_assign)?;
                    self.set_var(c.pipe.pos, b, v.clone(), c.pipe.is_assign)?;
                }
                _ => {}
            }
            let flow = self.list(&c.list, &v)?;
            self.vars.truncate(mark);
            if let Flow::Break = flow {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    fn set_var(&mut self, pos: usize, name: &str, v: Value, assign: bool) -> EResult<()> {
        if assign {
            match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v,
                None => return Err(self.err(pos, format!("undefined variable: ${name}"))),
            }
        } else {
            self.vars.push((name.to_owned(), v));
        }
        Ok(())
    }

    /// Evaluates a pipeline's commands without binding its declarations.
    fn pipe_value(&mut self, pipe: &Pipe, dot: &Value) -> EResult<Value> {
        let mut last: Option<Value> = None;
        for cmd in &pipe.cmds {
            last = Some(self.cmd(cmd, dot, last)?);
        }
        Ok(last.unwrap_or(Value::Nil))
    }

    /// Evaluates a pipeline and binds its declarations (not for `range`).
    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> EResult<Value> {
        let v = self.pipe_value(pipe, dot)?;
        for name in &pipe.decl {
            self.set_var(pipe.pos, name, v.clone(), pipe.is_assign)?;
        }
        Ok(v)
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Value, fin: Option<Value>) -> EResult<Value> {
        self.step(cmd.pos)?;
        let first = &cmd.args[0];
        if let Term::Func(name) = &first.term {
            return self.call(first.pos, name, &cmd.args[1..], dot, fin);
        }
        if cmd.args.len() > 1 || fin.is_some() {
            return Err(self.err(first.pos, "can't give argument to non-function"));
        }
        if matches!(first.term, Term::Nil) && first.chain.is_empty() {
            return Err(self.err(first.pos, "nil is not a command"));
        }
        self.operand(first, dot)
    }

    fn call(
        &mut self,
        pos: usize,
        name: &str,
        arg_ops: &[Operand],
        dot: &Value,
        fin: Option<Value>,
    ) -> EResult<Value> {
        if name == "and" || name == "or" {
            if arg_ops.is_empty() && fin.is_none() {
                return Err(self.err(
                    pos,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut v = Value::Nil;
            for op in arg_ops {
                v = self.operand(op, dot)?;
                if v.is_true() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut args = Vec::with_capacity(arg_ops.len() + 1);
        for op in arg_ops {
            args.push(self.operand(op, dot)?);
        }
        args.extend(fin);
        let result = builtins::call(name, &args)
            .or_else(|| prom_funcs::call(name, &args, &self.env))
            .unwrap_or_else(|| Err(format!("function {name:?} not defined")));
        let v = result.map_err(|m| self.err(pos, format!("error calling {name}: {m}")))?;
        if let Value::String(s) = &v
            && s.len() > self.limits.max_output_bytes
        {
            return Err(self.limit_err(
                pos,
                format!(
                    "{name} produced more than {} bytes",
                    self.limits.max_output_bytes
                ),
            ));
        }
        Ok(v)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> EResult<Value> {
        let mut v = match &op.term {
            Term::Dot => dot.clone(),
            Term::Nil => Value::Nil,
            Term::Bool(b) => Value::Bool(*b),
            Term::Str(s) => Value::String(s.clone()),
            Term::Number(n) => match (n.float_literal, n.int, n.float) {
                (false, Some(i), _) => Value::Int(i),
                (_, _, Some(f)) => Value::Float(f),
                _ => return Err(self.err(op.pos, "bad number")),
            },
            Term::Var(name) => match self.vars.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => v.clone(),
                None => return Err(self.err(op.pos, format!("undefined variable: ${name}"))),
            },
            Term::Field(fields) => {
                let mut v = dot.clone();
                for f in fields {
                    v = v.field(f).map_err(|m| self.err(op.pos, m))?;
                }
                v
            }
            Term::Func(name) => self.call(op.pos, name, &[], dot, None)?,
            Term::Pipe(p) => {
                self.step(op.pos)?;
                self.descend(op.pos)?;
                let v = self.pipe(p, dot);
                self.depth -= 1;
                v?
            }
        };
        for f in &op.chain {
            v = v.field(f).map_err(|m| self.err(op.pos, m))?;
        }
        Ok(v)
    }
}

fn printed(v: &Value) -> String {
    let mut s = String::new();
    format_v(v, &mut s);
    s
}
