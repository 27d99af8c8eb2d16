//! The SMS unit: a receiver's SMS integrations (Twilio, Vonage) as one fallback chain.
//!
//! Provider `i` owns the window `[i × fallback_after, (i+1) × fallback_after)` measured from
//! the entry's enqueue time (the last provider owns the rest). One send starts at the provider
//! whose window it is in; when that provider fails permanently (invalid number, barred,
//! credentials) the next one is tried in the same send; when it fails retryably the send is
//! retried, until its window ends and the next provider takes over. Each provider sends to all
//! of its recipients; the provider id lists the message ids (`twilio:SM…,SM…`,
//! `vonage:<id>`). Text is truncated to fit `sms_max_segments` (GSM-7 or UCS-2 aware).
//! Not idempotent: neither provider has an idempotency key, so an ambiguous failure (or a
//! fallback after a timeout) may duplicate a message.

use std::time::Duration;

use serde_json::Value;

use super::build::{BuildCtx, BuildError, secret, unsupported};
use super::channel::{
    Channel, Delivery, SendFuture, SendOutcome, classify_failure, for_integration, read_answer,
    snippet, stable_hash_hex,
};
use super::text::{Renderer, TemplateLibrary, TextTemplate};
use crate::notify::config::{Integration, SmsSender, TwilioConfig, VonageConfig};

/// One provider of the chain.
#[derive(Debug)]
enum Provider {
    Twilio {
        url: String,
        account_sid: String,
        token: String,
        sender: SmsSender,
        to: Vec<String>,
        message: TextTemplate,
        send_resolved: bool,
    },
    Vonage {
        url: String,
        api_key: String,
        api_secret: String,
        from: String,
        to: Vec<String>,
        message: TextTemplate,
        send_resolved: bool,
    },
}

/// The SMS fallback chain of one receiver.
#[derive(Debug)]
pub struct SmsChain {
    http: reqwest::Client,
    providers: Vec<Provider>,
    fallback_after: Duration,
    max_segments: u32,
    timeout: Duration,
    rate_key: String,
}

impl SmsChain {
    /// Builds the chain from the unit's integrations (`paths[i]` names `unit[i]`).
    pub fn new(
        ctx: &BuildCtx<'_>,
        paths: &[String],
        unit: &[&Integration],
    ) -> Result<Self, BuildError> {
        let mut providers = Vec::new();
        for (path, i) in paths.iter().zip(unit) {
            providers.push(match i {
                Integration::Twilio(c) => twilio(path, c, ctx.library)?,
                Integration::Vonage(c) => vonage(path, c, ctx.library)?,
                Integration::Sns(_) => return Err(unsupported(path, "SNS")),
                other => {
                    return Err(BuildError::Invalid {
                        path: path.clone(),
                        message: format!("{} is not an SMS integration", other.kind()),
                    });
                }
            });
        }
        let senders: Vec<String> = providers
            .iter()
            .map(|p| match p {
                Provider::Twilio { account_sid, .. } => format!("twilio/{account_sid}"),
                Provider::Vonage { api_key, .. } => format!("vonage/{api_key}"),
            })
            .collect();
        let refs: Vec<&str> = senders.iter().map(String::as_str).collect();
        Ok(Self {
            http: ctx.http.clone(),
            providers,
            fallback_after: ctx.opts.sms_fallback_after,
            max_segments: ctx.opts.sms_max_segments.max(1),
            timeout: ctx.opts.request_timeout,
            rate_key: format!("sms:{}", &stable_hash_hex(&refs)[..16]),
        })
    }

    async fn send_chain(&self, d: &Delivery) -> SendOutcome {
        let elapsed = u128::try_from((d.now_ms - d.enqueued_ms).max(0)).unwrap_or(0);
        let window = self.fallback_after.as_millis().max(1);
        let last = self.providers.len().saturating_sub(1);
        let start = usize::try_from(elapsed / window)
            .unwrap_or(usize::MAX)
            .min(last);
        let mut permanent = Vec::new();
        for p in &self.providers[start..] {
            match self.send_provider(p, d).await {
                SendOutcome::Permanent { reason } => permanent.push(reason),
                // Delivered, retryable (this provider's window is not over), or skipped (this
                // provider does not send resolved notifications): the chain stops here.
                other => return other,
            }
        }
        SendOutcome::Permanent {
            reason: permanent.join("; "),
        }
    }

    async fn send_provider(&self, p: &Provider, d: &Delivery) -> SendOutcome {
        let (message, send_resolved) = match p {
            Provider::Twilio {
                message,
                send_resolved,
                ..
            }
            | Provider::Vonage {
                message,
                send_resolved,
                ..
            } => (message, *send_resolved),
        };
        let Some(data) = for_integration(&d.data, send_resolved) else {
            return SendOutcome::Skipped;
        };
        let text = match Renderer::new(&data).render(message) {
            Ok(t) => fit_segments(&t, self.max_segments),
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        let mut ids = Vec::new();
        let recipients = match p {
            Provider::Twilio { to, .. } | Provider::Vonage { to, .. } => to,
        };
        for to in recipients {
            let sent = match p {
                Provider::Twilio { .. } => self.twilio(p, to, &text).await,
                Provider::Vonage { .. } => self.vonage(p, to, &text).await,
            };
            match sent {
                Ok(id) => ids.push(id),
                Err(outcome) => return outcome,
            }
        }
        let name = match p {
            Provider::Twilio { .. } => "twilio",
            Provider::Vonage { .. } => "vonage",
        };
        SendOutcome::Delivered {
            provider_id: Some(format!("{name}:{}", ids.join(","))),
        }
    }

    async fn twilio(&self, p: &Provider, to: &str, text: &str) -> Result<String, SendOutcome> {
        let Provider::Twilio {
            url,
            account_sid,
            token,
            sender,
            ..
        } = p
        else {
            return Err(SendOutcome::Permanent {
                reason: "not a Twilio provider".into(),
            });
        };
        let endpoint = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            url.trim_end_matches('/')
        );
        let (sender_field, sender_value) = match sender {
            SmsSender::From(f) => ("From", f.as_str()),
            SmsSender::MessagingService(m) => ("MessagingServiceSid", m.as_str()),
        };
        let form = [("To", to), (sender_field, sender_value), ("Body", text)];
        let req = self
            .http
            .post(endpoint)
            .timeout(self.timeout)
            .basic_auth(account_sid, Some(token))
            .form(&form);
        let (status, headers, body) = read_answer("twilio", req.send().await).await?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(v["sid"].as_str().unwrap_or_default().to_owned());
        }
        let code = v["code"].as_u64().unwrap_or(0);
        if code == 20429 {
            return Err(SendOutcome::Retry {
                retry_after: super::channel::retry_after_header(&headers),
                reason: format!("twilio 20429: {}", snippet(&body)),
            });
        }
        Err(match classify_failure("twilio", status, &headers, &body) {
            SendOutcome::Permanent { .. } => SendOutcome::Permanent {
                reason: format!(
                    "twilio {code} ({status}): {}",
                    v["message"].as_str().unwrap_or(snippet(&body))
                ),
            },
            other => other,
        })
    }

    async fn vonage(&self, p: &Provider, to: &str, text: &str) -> Result<String, SendOutcome> {
        let Provider::Vonage {
            url,
            api_key,
            api_secret,
            from,
            ..
        } = p
        else {
            return Err(SendOutcome::Permanent {
                reason: "not a Vonage provider".into(),
            });
        };
        let endpoint = format!("{}/sms/json", url.trim_end_matches('/'));
        let kind = if is_gsm7(text) { "text" } else { "unicode" };
        let form = [
            ("api_key", api_key.as_str()),
            ("api_secret", api_secret.as_str()),
            ("from", from.as_str()),
            ("to", to.trim_start_matches('+')),
            ("text", text),
            ("type", kind),
        ];
        let req = self.http.post(endpoint).timeout(self.timeout).form(&form);
        let (status, headers, body) = read_answer("vonage", req.send().await).await?;
        if !(200..300).contains(&status) {
            return Err(classify_failure("vonage", status, &headers, &body));
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return Err(SendOutcome::Retry {
                retry_after: None,
                reason: format!("vonage answered without messages: {}", snippet(&body)),
            });
        }
        let mut ids = Vec::new();
        for m in &messages {
            let st = m["status"].as_str().unwrap_or("?");
            let err = m["error-text"].as_str().unwrap_or("");
            match st {
                "0" => ids.push(m["message-id"].as_str().unwrap_or_default().to_owned()),
                // Throttled, internal error, too many binds: try again.
                "1" | "5" | "10" => {
                    return Err(SendOutcome::Retry {
                        retry_after: None,
                        reason: format!("vonage status {st}: {err}"),
                    });
                }
                _ => {
                    return Err(SendOutcome::Permanent {
                        reason: format!("vonage status {st}: {err}"),
                    });
                }
            }
        }
        Ok(ids.join(","))
    }
}

fn twilio(path: &str, c: &TwilioConfig, library: &TemplateLibrary) -> Result<Provider, BuildError> {
    Ok(Provider::Twilio {
        url: c.api_url.clone(),
        account_sid: c.account_sid.clone(),
        token: secret(path, "auth_token", &c.auth_token)?,
        sender: c.sender.clone(),
        to: c.to.clone(),
        message: TextTemplate::new(&format!("{path}.message"), &c.message, library),
        send_resolved: c.send_resolved,
    })
}

fn vonage(path: &str, c: &VonageConfig, library: &TemplateLibrary) -> Result<Provider, BuildError> {
    Ok(Provider::Vonage {
        url: c.api_url.clone(),
        api_key: c.api_key.clone(),
        api_secret: secret(path, "api_secret", &c.api_secret)?,
        from: c.from.clone(),
        to: c.to.clone(),
        message: TextTemplate::new(&format!("{path}.message"), &c.message, library),
        send_resolved: c.send_resolved,
    })
}

/// GSM 03.38 basic character set.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (two septets each).
const GSM7_EXT: &str = "^{}\\[~]|€\u{c}";

fn septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXT.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Whether `text` fits the GSM-7 alphabet.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

/// `text` cut to fit `max_segments` SMS segments (160/153 septets in GSM-7, 70/67 UTF-16
/// units in UCS-2), ending in `...` (GSM-7) or `…` (UCS-2) when cut.
pub fn fit_segments(text: &str, max_segments: u32) -> String {
    let gsm = is_gsm7(text);
    let cost = |c: char| {
        if gsm {
            septets(c).unwrap_or(1)
        } else {
            c.len_utf16()
        }
    };
    let segs = usize::try_from(max_segments.max(1)).unwrap_or(1);
    let (single, multi) = if gsm { (160, 153) } else { (70, 67) };
    let limit = if segs == 1 { single } else { multi * segs };
    let total: usize = text.chars().map(cost).sum();
    if total <= limit {
        return text.to_owned();
    }
    let (ellipsis, ellipsis_cost) = if gsm { ("...", 3) } else { ("…", 1) };
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        if used + cost(c) + ellipsis_cost > limit {
            break;
        }
        used += cost(c);
        out.push(c);
    }
    out.push_str(ellipsis);
    out
}

impl Channel for SmsChain {
    fn kind(&self) -> &'static str {
        "sms"
    }
    fn idempotent(&self) -> bool {
        false
    }
    fn rate_key(&self) -> Option<String> {
        Some(self.rate_key.clone())
    }
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.send_chain(delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_gsm_and_ucs2_segments() {
        let short = "[FIRING:1] DiskFull";
        assert_eq!(fit_segments(short, 1), short);
        let long = "a".repeat(400);
        let one = fit_segments(&long, 1);
        assert_eq!(one.len(), 160);
        assert!(one.ends_with("..."));
        assert_eq!(fit_segments(&long, 2).len(), 306);
        let ext = "{".repeat(100);
        assert_eq!(fit_segments(&ext, 1).chars().count(), 78 + 3);
        let emoji = "🔥".repeat(100);
        let cut = fit_segments(&emoji, 1);
        assert!(cut.encode_utf16().count() <= 70);
        assert!(cut.ends_with('…'));
        assert!(!is_gsm7("héllo “x”"));
        assert!(is_gsm7("Ü only"));
    }
}
