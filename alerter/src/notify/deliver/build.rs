//! Builds a receiver's channels from the loaded config: one [`Channel`] per delivery unit, in
//! [`units`] order (the index is the unit number the outbox keys its slots by). Secrets in
//! files are read here, once; templates are parsed here and rendered at each send.

use std::time::Duration;

use super::channel::{Channel, units};
use super::text::TemplateLibrary;
use super::{email, pagerduty, slack, sms, webhook};
use crate::notify::config::{Config, HttpAuth, HttpConfig, Integration, Receiver, SecretSource};

/// Settings shared by every channel of a process.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// Base URL of Tocsin's UI/API. Templates read `.ExternalURL` from the notification data
    /// (fixed at flush, so every resend says the same); this is the process's own setting,
    /// kept for callers that build the data.
    pub external_url: String,
    /// How long an SMS chain keeps retrying one provider before the next one sends
    /// (measured from the outbox entry's enqueue time).
    pub sms_fallback_after: Duration,
    /// Deadline of one provider request (connect, send, answer).
    pub request_timeout: Duration,
    /// Most SMS segments a message may use; longer text is truncated to fit.
    pub sms_max_segments: u32,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            external_url: String::new(),
            // A page that has not gone out after a minute should go out another way.
            sms_fallback_after: Duration::from_secs(60),
            // Providers answer in well under a second; 10 s leaves room for a slow one
            // without holding an outbox claim for long.
            request_timeout: Duration::from_secs(10),
            // Two segments hold a subject and a summary; more costs and annoys.
            sms_max_segments: 2,
        }
    }
}

/// Why a receiver's channels cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No receiver has this name.
    #[error("no receiver named {0:?}")]
    UnknownReceiver(String),
    /// The integration at `path` is of a kind Tocsin does not deliver to.
    #[error("{path}: {message}")]
    Unsupported {
        /// `receivers[2].sns_configs[0]`.
        path: String,
        /// What is unsupported and what to use instead.
        message: String,
    },
    /// A setting cannot be used (unreadable secret file, bad address...).
    #[error("{path}: {message}")]
    Invalid {
        /// Path of the field.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The channels of `receiver`, one per delivery unit in [`units`] order.
pub fn channels(
    config: &Config,
    receiver: &str,
    http: &reqwest::Client,
    opts: &ChannelOptions,
) -> Result<Vec<Box<dyn Channel>>, BuildError> {
    let (ri, r) = config
        .receivers
        .iter()
        .enumerate()
        .find(|(_, r)| r.name == receiver)
        .ok_or_else(|| BuildError::UnknownReceiver(receiver.to_owned()))?;
    let mut out: Vec<Box<dyn Channel>> = Vec::new();
    for (n, unit) in units(r).into_iter().enumerate() {
        let paths: Vec<String> = unit.iter().map(|i| integration_path(ri, r, i)).collect();
        let ctx = BuildCtx {
            http,
            opts,
            unit: n,
            library: &config.library,
        };
        match unit.as_slice() {
            [single] if !super::channel::is_sms(single) => {
                out.push(one(&ctx, &paths[0], single)?);
            }
            _ => out.push(Box::new(sms::SmsChain::new(&ctx, &paths, &unit)?)),
        }
    }
    Ok(out)
}

/// What every channel constructor gets.
#[derive(Clone, Copy, Debug)]
pub struct BuildCtx<'a> {
    /// The shared HTTP client.
    pub http: &'a reqwest::Client,
    /// Process-wide options.
    pub opts: &'a ChannelOptions,
    /// The unit's number in [`units`] order (part of idempotency keys).
    pub unit: usize,
    /// The templates the config's text fields can call.
    pub library: &'a TemplateLibrary,
}

fn one(ctx: &BuildCtx<'_>, path: &str, i: &Integration) -> Result<Box<dyn Channel>, BuildError> {
    Ok(match i {
        Integration::PagerDuty(c) => Box::new(pagerduty::PagerDutyChannel::new(ctx, path, c)?),
        Integration::Slack(c) => Box::new(slack::SlackChannel::new(ctx, path, c)?),
        Integration::Webhook(c) => Box::new(webhook::WebhookChannel::new(ctx, path, c)?),
        Integration::Email(c) => Box::new(email::EmailChannel::new(ctx, path, c)?),
        Integration::Opsgenie(_) => return Err(unsupported(path, "Opsgenie")),
        Integration::Sns(_) | Integration::Twilio(_) | Integration::Vonage(_) => {
            return Err(unsupported(path, "SNS"));
        }
    })
}

/// The error for SNS and Opsgenie, which are parsed (Alertmanager accepts them) but not
/// delivered to.
pub fn unsupported(path: &str, what: &str) -> BuildError {
    let instead = if what == "SNS" {
        "use twilio_configs or vonage_configs"
    } else {
        "use pagerduty_configs or webhook_configs"
    };
    BuildError::Unsupported {
        path: path.to_owned(),
        message: format!("{what} delivery is not supported by Tocsin; {instead}"),
    }
}

/// `receivers[ri].<kind>_configs[n]` of integration `i` (n counts integrations of its kind).
fn integration_path(ri: usize, r: &Receiver, i: &Integration) -> String {
    let n = r
        .integrations
        .iter()
        .take_while(|x| !std::ptr::eq(*x, i))
        .filter(|x| x.kind() == i.kind())
        .count();
    format!("receivers[{ri}].{}_configs[{n}]", i.kind())
}

/// The value of a secret, reading a file source (trailing newline trimmed, as Prometheus).
pub fn secret(path: &str, field: &str, s: &SecretSource) -> Result<String, BuildError> {
    match s {
        SecretSource::Inline(v) => Ok(v.expose().to_owned()),
        SecretSource::File(f) => std::fs::read_to_string(f)
            .map(|v| v.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| BuildError::Invalid {
                path: format!("{path}.{field}"),
                message: format!("cannot read {f}: {e}"),
            }),
    }
}

/// The `Authorization` header value of `http_config`, if it sets one.
pub fn auth_header(path: &str, http: &HttpConfig) -> Result<Option<String>, BuildError> {
    use base64_like::encode;
    let p = format!("{path}.http_config");
    Ok(match &http.auth {
        None => None,
        Some(HttpAuth::Basic { username, password }) => {
            let pw = match password {
                Some(s) => secret(&p, "basic_auth.password", s)?,
                None => String::new(),
            };
            Some(format!(
                "Basic {}",
                encode(format!("{username}:{pw}").as_bytes())
            ))
        }
        Some(HttpAuth::Authorization {
            scheme,
            credentials,
        }) => Some(format!(
            "{scheme} {}",
            secret(&p, "authorization.credentials", credentials)?
        )),
    })
}

/// Standard base64 (RFC 4648, padded) for basic auth.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_rfc4648_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
    }
}
