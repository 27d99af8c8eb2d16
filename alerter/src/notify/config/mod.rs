//! Alertmanager's configuration file (`alertmanager.yml`), loaded unchanged.
//!
//! `load(text)` parses with `serde-saphyr` into raw types (unknown keys refused), then validates
//! like `amtool check-config` (receivers defined and unique, matchers, durations, timers, time
//! interval names, root-route constraints, per-integration required fields) and returns a typed
//! [`Config`] with Alertmanager's defaults applied. Every error names the path of the bad field
//! (`route.routes[2].matchers[0]`) and its line and column.
//!
//! Not implemented (refused with an error naming them): receiver types other than PagerDuty,
//! Slack, webhook, email, Twilio and Vonage (`opsgenie_configs` and `sns_configs` are parsed
//! and checked, then refused: there is no channel for them); `http_config.oauth2`; time zones
//! other than UTC and fixed offsets (see [`super::time_interval`]). Templated fields are kept
//! as source and not checked here (Alertmanager checks them only when rendering).

mod email;
mod http;
mod integrations;
mod raw;
mod receivers;
mod sms;
pub mod templates;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_saphyr::Location;

use crate::notify::deliver::text::TemplateLibrary;

pub use receivers::{
    EmailConfig, HttpAuth, HttpConfig, Integration, OpsgenieConfig, PagerDutyConfig, PagerDutyKey,
    Receiver, Responder, Secret, SecretSource, SigV4, SlackAction, SlackConfig, SlackField,
    SmsSender, SnsConfig, SnsTarget, TlsConfig, TwilioConfig, VonageConfig, WebhookConfig,
};

use super::inhibit::InhibitRule;
use super::matchers::{MatcherError, Matchers};
use super::time_interval::TimeInterval;

/// Largest accepted configuration file; a bigger one is a mistake, not a config.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// Alertmanager's `group_wait` default.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Alertmanager's `group_interval` default.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Alertmanager's `repeat_interval` default.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Alertmanager's `global.resolve_timeout` default.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// Not YAML, or not of the configuration's shape (includes unknown fields).
    #[error("{0}")]
    Syntax(String),
    /// A feature Tocsin does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// A route names a receiver that is not defined.
    #[error("undefined receiver {0:?} used in route")]
    UndefinedReceiver(String),
    /// Two receivers with one name.
    #[error("notification config name {0:?} is not unique")]
    DuplicateReceiver(String),
    /// A route names a time interval that is not defined.
    #[error("undefined time interval {0:?} used in route")]
    UndefinedTimeInterval(String),
    /// Two time intervals with one name.
    #[error("time interval {0:?} is not unique")]
    DuplicateTimeInterval(String),
    /// A matcher does not parse.
    #[error("{0}")]
    Matcher(#[from] MatcherError),
    /// A duration does not parse.
    #[error("{0}")]
    Duration(String),
    /// Any other rule.
    #[error("{0}")]
    Invalid(String),
}

/// One problem, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field (`route.routes[2].matchers[0]`), empty for the whole file.
    pub path: String,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<file>"
        } else {
            &self.path
        };
        write!(f, "{path}")?;
        if self.line > 0 {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Every problem found in a file (at least one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors during validation.
pub(crate) struct Ctx {
    errors: Vec<ConfigError>,
}

impl Ctx {
    pub(crate) fn err(&mut self, path: impl Into<String>, loc: &Location, kind: ConfigErrorKind) {
        self.errors.push(ConfigError {
            path: path.into(),
            line: loc.line(),
            column: loc.column(),
            kind,
        });
    }
}

/// `global.smtp_*`.
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpDefaults {
    /// `smtp_from`.
    pub from: String,
    /// `smtp_hello` (default `localhost`).
    pub hello: String,
    /// `smtp_smarthost` (`host:port`).
    pub smarthost: String,
    /// `smtp_auth_username`.
    pub auth_username: String,
    /// `smtp_auth_password(_file)`.
    pub auth_password: Option<SecretSource>,
    /// `smtp_auth_secret`.
    pub auth_secret: Option<Secret>,
    /// `smtp_auth_identity`.
    pub auth_identity: String,
    /// `smtp_require_tls` (default true).
    pub require_tls: bool,
    /// `smtp_tls_config`.
    pub tls: TlsConfig,
}

/// `global:` with Alertmanager's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    /// `resolve_timeout` (default 5m).
    pub resolve_timeout: Duration,
    /// Default `http_config` of every HTTP integration.
    pub http_config: HttpConfig,
    /// SMTP defaults of email integrations.
    pub smtp: SmtpDefaults,
    /// Default Slack URL.
    pub slack_api_url: Option<SecretSource>,
    /// Default PagerDuty events URL.
    pub pagerduty_url: String,
    /// Default Opsgenie API URL.
    pub opsgenie_api_url: String,
    /// Default Opsgenie API key.
    pub opsgenie_api_key: Option<SecretSource>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
            http_config: HttpConfig::default(),
            smtp: SmtpDefaults {
                from: String::new(),
                hello: "localhost".into(),
                smarthost: String::new(),
                auth_username: String::new(),
                auth_password: None,
                auth_secret: None,
                auth_identity: String::new(),
                require_tls: true,
                tls: TlsConfig::default(),
            },
            slack_api_url: None,
            pagerduty_url: "https://events.pagerduty.com/v2/enqueue".into(),
            opsgenie_api_url: "https://api.opsgenie.com/".into(),
            opsgenie_api_key: None,
        }
    }
}

/// `group_by` of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// These labels (possibly none: one group for the route).
    Labels(Vec<String>),
    /// `['...']`: every label, i.e. no aggregation.
    All,
}

/// A routing-tree node as configured (before inheritance, see [`super::route::RouteTree`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Receiver, inherited when `None`.
    pub receiver: Option<String>,
    /// `group_by`, inherited when `None` (an empty list also inherits, as in Alertmanager).
    pub group_by: Option<GroupBy>,
    /// `match` + `match_re` + `matchers`, sorted.
    pub matchers: Matchers,
    /// `continue`.
    pub continue_matching: bool,
    /// Inherited when `None`.
    pub group_wait: Option<Duration>,
    /// Inherited when `None`; never zero.
    pub group_interval: Option<Duration>,
    /// Inherited when `None`; never zero.
    pub repeat_interval: Option<Duration>,
    /// Names of intervals that mute this route (not inherited).
    pub mute_time_intervals: Vec<String>,
    /// Names of intervals outside which this route is muted (not inherited).
    pub active_time_intervals: Vec<String>,
    /// Child routes in order.
    pub routes: Vec<RouteConfig>,
}

/// A loaded, validated `alertmanager.yml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// `global:`.
    pub global: GlobalConfig,
    /// The root route.
    pub route: RouteConfig,
    /// Receivers in file order, names unique.
    pub receivers: Vec<Receiver>,
    /// Inhibition rules in file order.
    pub inhibit_rules: Vec<InhibitRule>,
    /// `time_intervals` and the deprecated `mute_time_intervals`, by name.
    pub time_intervals: BTreeMap<String, Vec<TimeInterval>>,
    /// Template file paths or globs, as listed.
    pub templates: Vec<String>,
    /// The templates text fields can call: the defaults and the uploaded `templates:` files.
    pub library: TemplateLibrary,
}

impl Config {
    /// The receiver called `name`.
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Whether `now_ms` lies in any of the named time interval's ranges (false if unknown).
    pub fn in_time_interval(&self, name: &str, now_ms: i64) -> bool {
        self.time_intervals
            .get(name)
            .is_some_and(|tis| tis.iter().any(|ti| ti.contains(now_ms)))
    }
}

/// Loads the `alertmanager.yml` at `path`, with its `templates:` files read relative to it
/// ([`templates::with_files_from_disk`]), as `tocsin notify check` does.
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: 0,
            column: 0,
            kind: ConfigErrorKind::Invalid(format!("cannot read {}: {e}", path.display())),
        }])
    })?;
    let text = templates::with_files_from_disk(path, &text).map_err(|e| ConfigErrors(vec![e]))?;
    load(&text)
}

/// Loads `alertmanager.yml` text.
pub fn load(text: &str) -> Result<Config, ConfigErrors> {
    let whole = |kind| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: 0,
            column: 0,
            kind,
        }])
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(whole(ConfigErrorKind::Invalid(format!(
            "file is {} bytes, larger than the {MAX_CONFIG_BYTES}-byte limit",
            text.len()
        ))));
    }
    let (text, files) = templates::split(text);
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed: Result<Option<raw::RawConfig>, _> =
        serde_saphyr::from_str_with_options(text, options);
    let raw = match parsed {
        Ok(Some(r)) => r,
        Ok(None) => return Err(whole(ConfigErrorKind::Invalid("no routes provided".into()))),
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let options = serde_saphyr::options! { with_snippet: false };
            let path = serde_saphyr::from_str_with_options::<raw::Node>(text, options)
                .map(|root| raw::path_at(&root, line, column))
                .unwrap_or_default();
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) if msg[i..].contains("column") => msg[..i].to_owned(),
                _ => msg,
            };
            return Err(ConfigErrors(vec![ConfigError {
                path,
                line,
                column,
                kind: ConfigErrorKind::Syntax(msg),
            }]));
        }
    };
    let mut ctx = Ctx { errors: Vec::new() };
    let mut config = validate::validate(&mut ctx, raw);
    if let Some(c) = &mut config {
        c.library = templates::load(&c.templates, files, &mut ctx.errors);
    }
    match config {
        Some(c) if ctx.errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(ctx.errors)),
    }
}

#[cfg(test)]
mod tests;
