//! Parse tree for Go `text/template`.

/// A node of a template body.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Literal text.
    Text(String),
    /// `{{ pipeline }}`.
    Action(Pipe),
    /// `{{if}}`, `{{with}}`, `{{range}}`.
    Control(Box<Control>),
    /// `{{template "name" pipeline}}`.
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    /// `{{break}}`.
    Break,
    /// `{{continue}}`.
    Continue,
}

/// Which control structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlKind {
    If,
    With,
    Range,
}

/// `{{if|with|range pipe}} list {{else}} else_list {{end}}`.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub(crate) kind: ControlKind,
    pub(crate) pipe: Pipe,
    pub(crate) list: Vec<Node>,
    pub(crate) else_list: Option<Vec<Node>>,
}

/// A pipeline: optional variable declaration/assignment and `|`-separated commands.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) pos: usize,
    /// `true` for `$x = ...`, `false` for `$x := ...`.
    pub(crate) is_assign: bool,
    /// Declared or assigned variable names (without `$`).
    pub(crate) decl: Vec<String>,
    pub(crate) cmds: Vec<Cmd>,
}

/// One pipeline stage: operands; a leading identifier is a function call.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Operand>,
}

/// A term followed by an optional field chain (`$x.a.b`, `(pipe).a`).
#[derive(Debug, Clone)]
pub(crate) struct Operand {
    pub(crate) pos: usize,
    pub(crate) term: Term,
    pub(crate) chain: Vec<String>,
}

/// A primary term.
#[derive(Debug, Clone)]
pub(crate) enum Term {
    Dot,
    Nil,
    Bool(bool),
    Str(String),
    /// A numeric constant: its text and its Go constant kinds.
    Number(Number),
    /// A variable (`$` is the empty name).
    Var(String),
    /// `.A.B` starting from dot.
    Field(Vec<String>),
    /// A function identifier.
    Func(String),
    /// `( pipeline )`.
    Pipe(Box<Pipe>),
}

/// A numeric template constant. Go gives constants an "ideal" type: an `int` unless the
/// text is a float literal (contains `.`, `e`, `p` and is not hex/char).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Number {
    pub(crate) int: Option<i64>,
    pub(crate) float: Option<f64>,
    /// The literal reads as a float (`1.0`, `1e3`): as an untyped argument it is a float64.
    pub(crate) float_literal: bool,
}
