//! The files of `templates:`.
//!
//! Alertmanager reads its template files from its own disk. Tocsin's workers cannot read the
//! operator's disk, so the files travel with the config and are replicated with it:
//! `tocsin notify apply FILE` reads each pattern's files relative to FILE's directory (as
//! Alertmanager resolves them relative to its config file) and appends them to the config
//! text as a second YAML document ([`bundle`]):
//!
//! ```yaml
//! ---
//! # Tocsin: the files of `templates:`, uploaded with the config.
//! tocsin_template_files:
//!   'templates/*.tmpl':
//!     templates/team.tmpl: |
//!       {{ define "team.title" }}[{{ .Status }}] {{ .GroupLabels.alertname }}{{ end }}
//! ```
//!
//! [`super::load`] takes the first document as the `alertmanager.yml` (unchanged, so its line
//! numbers are the file's) and requires the second to hold every listed pattern: a config that
//! lists templates whose files were not uploaded is refused, naming the pattern, rather than
//! failing later at send time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ConfigError, ConfigErrorKind};
use crate::notify::deliver::text::TemplateLibrary;

/// The key of the second document.
pub const BUNDLE_KEY: &str = "tocsin_template_files";

/// The uploaded files: pattern as listed in `templates:` → file path → text.
pub type TemplateFiles = BTreeMap<String, BTreeMap<String, String>>;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    tocsin_template_files: TemplateFiles,
}

/// The config document and, if present, the template-files document with its first line.
pub(super) fn split(text: &str) -> (&str, Option<(&str, u64)>) {
    let mut offset = 0;
    let mut seen_content = false;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" && seen_content {
            let rest = &text[offset + line.len()..];
            return (&text[..offset], Some((rest, n as u64 + 2)));
        }
        if !trimmed.trim_start().is_empty() && !trimmed.trim_start().starts_with('#') {
            seen_content = true;
        }
        offset += line.len();
    }
    (text, None)
}

/// The patterns of `templates:` in `text` (an `alertmanager.yml`), leniently: fields other
/// than `templates` are not looked at (the full validation reports them).
pub fn patterns(text: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct OnlyTemplates {
        #[serde(default)]
        templates: Option<Vec<String>>,
    }
    let (config, _) = split(text);
    serde_saphyr::from_str::<Option<OnlyTemplates>>(config)
        .ok()
        .flatten()
        .and_then(|t| t.templates)
        .unwrap_or_default()
}

/// Whether `text` already carries its template files (e.g. the output of `tocsin notify
/// show`, applied again).
pub fn has_files(text: &str) -> bool {
    split(text).1.is_some()
}

/// `text` with `files` appended as the template-files document.
pub fn bundle(text: &str, files: &TemplateFiles) -> String {
    let doc = serde_saphyr::to_string(&RawBundle {
        tocsin_template_files: files.clone(),
    })
    .unwrap_or_default();
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("---\n# Tocsin: the files of `templates:`, uploaded with the config.\n");
    out.push_str(&doc);
    out
}

/// `text`, the contents of the config file at `file`, with the files of its `templates:`
/// patterns appended ([`bundle`]), read relative to the file's directory as Alertmanager
/// resolves them (Go glob syntax; a pattern matching nothing uploads nothing, as Alertmanager
/// accepts). Unchanged when it lists none or already carries its files. What `tocsin notify
/// check|apply FILE` send.
pub fn with_files_from_disk(file: &Path, text: &str) -> Result<String, ConfigError> {
    let patterns = patterns(text);
    if patterns.is_empty() || has_files(text) {
        return Ok(text.to_owned());
    }
    let base = file.parent().unwrap_or_else(|| Path::new("."));
    let mut files = TemplateFiles::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format!("templates[{i}]");
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base.join(pattern).display().to_string()
        };
        let paths = glob::glob(&full).map_err(|e| {
            error(
                field.clone(),
                0,
                format!("{pattern:?} is not a valid pattern: {e}"),
            )
        })?;
        let entry = files.entry(pattern.clone()).or_default();
        for path in paths {
            let path = path.map_err(|e| error(field.clone(), 0, format!("{pattern:?}: {e}")))?;
            let body = std::fs::read_to_string(&path).map_err(|e| {
                error(
                    field.clone(),
                    0,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // Named as written in the config (relative paths stay relative).
            let name = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string();
            entry.insert(name, body);
        }
    }
    Ok(bundle(text, &files))
}

fn error(path: String, line: u64, message: String) -> ConfigError {
    ConfigError {
        path,
        line,
        column: if line > 0 { 1 } else { 0 },
        kind: ConfigErrorKind::Invalid(message),
    }
}

/// Checks the uploaded files against `patterns` and parses them into a library (every
/// problem goes to `errors`).
pub(super) fn load(
    patterns: &[String],
    doc: Option<(&str, u64)>,
    errors: &mut Vec<ConfigError>,
) -> TemplateLibrary {
    let files: TemplateFiles = match doc {
        None => TemplateFiles::new(),
        Some((text, first_line)) => match serde_saphyr::from_str::<Option<RawBundle>>(text) {
            Ok(Some(b)) => b.tocsin_template_files,
            Ok(None) => TemplateFiles::new(),
            Err(e) => {
                let line = e
                    .location()
                    .map_or(first_line, |l| first_line + l.line() - 1);
                let msg = e.to_string();
                let msg = match msg.rfind(" at line ") {
                    Some(i) => msg[..i].to_owned(),
                    None => msg,
                };
                errors.push(error(
                        BUNDLE_KEY.into(),
                        line,
                        format!(
                            "a second YAML document may only hold `{BUNDLE_KEY}: {{pattern: {{path: text}}}}`: {msg}"
                        ),
                    ));
                return TemplateLibrary::defaults();
            }
        },
    };
    let before = errors.len();
    for (i, p) in patterns.iter().enumerate() {
        if !files.contains_key(p) {
            errors.push(error(
                format!("templates[{i}]"),
                0,
                format!(
                    "the files of {p:?} were not uploaded with the config: apply it with `tocsin notify apply FILE`, which reads them relative to FILE"
                ),
            ));
        }
    }
    for p in files.keys() {
        if !patterns.contains(p) {
            errors.push(error(
                format!("{BUNDLE_KEY}.{p:?}"),
                0,
                "uploaded files for a pattern that `templates:` does not list".into(),
            ));
        }
    }
    if errors.len() > before {
        return TemplateLibrary::defaults();
    }
    // In `templates:` order, each pattern's files by path (Alertmanager's glob order).
    let mut named = Vec::new();
    let mut origin = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        for (path, text) in files.get(p).into_iter().flatten() {
            named.push((path.clone(), text.clone()));
            origin.push(format!("templates[{i}] ({path})"));
        }
    }
    match TemplateLibrary::with_files(&named) {
        Ok(lib) => lib,
        Err((k, reason)) => {
            errors.push(error(origin[k].clone(), 0, reason));
            TemplateLibrary::defaults()
        }
    }
}
