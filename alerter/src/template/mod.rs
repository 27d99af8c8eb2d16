//! Go `text/template` dialect used by Prometheus for alert labels and annotations, and for
//! notification text. The goal is byte-for-byte the output Prometheus produces; the
//! differential tests in `tests/template_promtool.rs` check that against `promtool`.
//!
//! Layout:
//! - `lex` / `parse` / `ast`: Go's template syntax, with Go's parse-time checks (undefined
//!   functions and variables, misplaced `else`/`end`/`break`/`continue`, empty pipelines).
//! - `exec`: the bounded evaluator ([`Limits`]: steps, output bytes, nesting depth).
//! - `builtins`: Go's predefined functions; `prom_funcs`: Prometheus's functions.
//! - `gofmt` / `gotime`: Go's `fmt` and `time.Time.String()` formatting.
//! - [`value`]: the data model templates run over.
//!
//! [`Template::parse`] treats the text as an alert template: Prometheus's prelude
//! `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL :=
//! .ExternalURL}}{{$value := .Value}}` is in effect exactly as if prepended, but error
//! positions refer to the text the user wrote.
//!
//! Not supported (each is a clear parse or execution error, never a guess): method calls on
//! values (`(toTime 1).Unix`, `.Format`), the `call` builtin, complex and hexadecimal-float
//! constants, `printf` argument indexes (`%[1]d`), `*` widths, `%#v` and `%x`/`%b` on floats,
//! native-histogram `$value`s, and html/template mode (console templates). Unicode case
//! mapping uses Rust's tables with Go's one-rune-to-one-rune rule; `title` follows
//! `strings.Title`'s word boundaries. `{{else with}}` (Go 1.23) is accepted although
//! Prometheus 2.42's Go rejects it.

mod ast;
mod builtins;
mod exec;
mod gofmt;
mod gotime;
mod lex;
mod parse;
mod prom_funcs;
pub mod value;

use std::collections::BTreeMap;

pub use value::{Struct, Value};

/// Variables Prometheus's prelude defines for alert templates, and the fields they read.
const PRELUDE: &[(&str, &str)] = &[
    ("labels", "Labels"),
    ("externalLabels", "ExternalLabels"),
    ("externalURL", "ExternalURL"),
    ("value", "Value"),
];

/// Bounds on one render.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum bytes of output (and of any string a function returns).
    pub max_output_bytes: usize,
    /// Maximum evaluation steps (nodes, commands, loop iterations).
    pub max_steps: u64,
    /// Maximum evaluation nesting: `{{template}}` calls, `if`/`with`/`range` and
    /// parenthesized pipelines together. Go allows 100000 template calls; we bound the
    /// evaluator's native stack instead (the default fits a 2 MiB thread stack in debug builds).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // An annotation is a few hundred bytes; 1 MiB leaves room for notification bodies.
            max_output_bytes: 1 << 20,
            // Enough for ranging over thousands of labels or query results.
            max_steps: 1_000_000,
            // Real templates nest a handful of levels; see `default_depth_fits_the_stack`.
            max_depth: 250,
        }
    }
}

/// What an alert template sees: `.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`.
#[derive(Debug, Clone, Default)]
pub struct AlertContext {
    /// The alert's labels (`$labels`): as in Prometheus, the labels of the sample that
    /// produced the alert, without the rule's own labels or `alertname`.
    pub labels: BTreeMap<String, String>,
    /// The evaluator's external labels (`$externalLabels`).
    pub external_labels: BTreeMap<String, String>,
    /// The external URL (`$externalURL`, `externalURL`, `pathPrefix`).
    pub external_url: String,
    /// The sample value that triggered the alert (`$value`).
    pub value: f64,
}

impl AlertContext {
    /// The data value Prometheus's `AlertTemplateData` builds.
    pub fn to_value(&self) -> Value {
        Value::structure(
            "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }",
            vec![
                ("Labels".to_owned(), Value::string_map(self.labels.clone())),
                (
                    "ExternalLabels".to_owned(),
                    Value::string_map(self.external_labels.clone()),
                ),
                (
                    "ExternalURL".to_owned(),
                    Value::String(self.external_url.clone()),
                ),
                ("Value".to_owned(), Value::Float(self.value)),
            ],
        )
    }
}

/// One instant-vector sample returned by [`QueryFn`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series labels, including `__name__` if present.
    pub labels: BTreeMap<String, String>,
    /// Sample value.
    pub value: f64,
}

/// The PromQL engine behind the `query` template function.
pub trait QueryFn {
    /// Evaluates `expr` as an instant query at the evaluation time.
    fn query(&self, expr: &str) -> Result<Vec<Sample>, String>;
}

/// Template parse, execution and limit errors. Each names the template and the 1-based
/// line and column (in bytes) of the construct that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template.
    #[error("template: {template}:{line}:{column}: {message}")]
    Parse {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Evaluation failed (bad field, wrong argument type, failing function, ...).
    #[error("template: {template}:{line}:{column}: executing {template:?}: {message}")]
    Exec {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A [`Limits`] bound was hit.
    #[error("template: {template}:{line}:{column}: limit exceeded: {message}")]
    Limit {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A parsed template, ready to render many times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    source: String,
    parsed: parse::Parsed,
    alert: bool,
}

fn is_func(name: &str) -> bool {
    builtins::BUILTINS.contains(&name) || prom_funcs::PROM_FUNCS.contains(&name)
}

impl Template {
    /// Parses an alert label/annotation template (Prometheus's prelude variables defined).
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        Self::parse_inner(name, text, true)
    }

    /// Parses a template without the alert prelude, for [`Template::render_data`].
    pub fn parse_plain(name: &str, text: &str) -> Result<Template, TemplateError> {
        Self::parse_inner(name, text, false)
    }

    /// Parses `text` like [`Template::parse_plain`], with the `define`d templates of
    /// `libraries` callable from it. Definitions are looked up last first, as Go's
    /// `text/template` lets a later definition of a name replace an earlier one: a later
    /// library's override an earlier one's, and `text`'s own override them all.
    pub fn parse_plain_with(
        name: &str,
        text: &str,
        libraries: &[&Template],
    ) -> Result<Template, TemplateError> {
        let mut t = Self::parse_inner(name, text, false)?;
        let mut defines: Vec<(String, Vec<ast::Node>)> = libraries
            .iter()
            .flat_map(|l| l.parsed.defines.iter().cloned())
            .collect();
        defines.append(&mut t.parsed.defines);
        t.parsed.defines = defines;
        Ok(t)
    }

    /// The names this template `define`s, in order.
    pub fn defined_names(&self) -> impl Iterator<Item = &str> {
        self.parsed.defines.iter().map(|(n, _)| n.as_str())
    }

    fn parse_inner(name: &str, text: &str, alert: bool) -> Result<Template, TemplateError> {
        let predeclared: Vec<&str> = if alert {
            PRELUDE.iter().map(|(v, _)| *v).collect()
        } else {
            Vec::new()
        };
        let parsed = parse::parse(text, &predeclared, &is_func).map_err(|e| {
            let (line, column) = line_col(text, e.pos);
            TemplateError::Parse {
                template: name.to_owned(),
                line,
                column,
                message: e.msg,
            }
        })?;
        Ok(Template {
            name: name.to_owned(),
            source: text.to_owned(),
            parsed,
            alert,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders an alert template as Prometheus does for an alert with `ctx`.
    pub fn render(
        &self,
        ctx: &AlertContext,
        limits: &Limits,
        query: Option<&dyn QueryFn>,
    ) -> Result<String, TemplateError> {
        self.render_data(&ctx.to_value(), &ctx.external_url, limits, query)
    }

    /// Renders with an arbitrary data value as dot. `external_url` backs the `externalURL`
    /// and `pathPrefix` functions. For alert templates the prelude variables are read from
    /// dot's `Labels`, `ExternalLabels`, `ExternalURL` and `Value` fields.
    pub fn render_data(
        &self,
        data: &Value,
        external_url: &str,
        limits: &Limits,
        query: Option<&dyn QueryFn>,
    ) -> Result<String, TemplateError> {
        let env = prom_funcs::FnEnv {
            query,
            external_url,
        };
        let mut ex = exec::Exec::new(
            &self.name,
            &self.parsed.main,
            &self.parsed.defines,
            limits,
            env,
        );
        let mut predeclared = Vec::new();
        if self.alert {
            for (var, field) in PRELUDE {
                let v = data.field(field).map_err(|m| TemplateError::Exec {
                    template: self.name.clone(),
                    line: 1,
                    column: 1,
                    message: format!("prelude: {m}"),
                })?;
                predeclared.push(((*var).to_owned(), v));
            }
        }
        match ex.run(data, predeclared) {
            Ok(()) => Ok(ex.out),
            Err(e) => {
                let (line, column) = line_col(&self.source, e.pos);
                Err(if e.limit {
                    TemplateError::Limit {
                        template: e.template,
                        line,
                        column,
                        message: e.msg,
                    }
                } else {
                    TemplateError::Exec {
                        template: e.template,
                        line,
                        column,
                        message: e.msg,
                    }
                })
            }
        }
    }
}

/// 1-based line and byte column of `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = pos
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
