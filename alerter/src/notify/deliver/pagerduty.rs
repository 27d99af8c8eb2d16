//! PagerDuty Events API v2 (`/v2/enqueue`) and, for a `service_key`, the legacy v1 API,
//! as Alertmanager sends them: `trigger` while any alert fires, `resolve` when all resolved,
//! `dedup_key` = SHA-256 hex of the group key (so a resend lands on the same incident), summary
//! at most 1024 characters, `custom_details` dropped when the event would pass 512 KB.
//! `acknowledge` is not sent (acks are future work).

use serde_json::{Value, json};

use super::build::{BuildCtx, BuildError, secret};
use super::channel::{
    Channel, Delivery, SendFuture, SendOutcome, classify_failure, for_integration, read_answer,
    snippet, stable_hash_hex,
};
use super::message::NotificationData;
use super::text::{Renderer, TextTemplate};
use crate::notify::config::{PagerDutyConfig, PagerDutyKey};

/// PagerDuty's summary limit, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// PagerDuty's event size limit (Alertmanager's `maxEventSize`).
pub const MAX_EVENT_BYTES: usize = 512_000;
/// The v1 endpoint path, used when the configured URL is the default v2 one.
const V1_PATH: &str = "/generic/2010-04-15/create_event.json";

/// Templated fields of one integration.
#[derive(Debug)]
struct Fields {
    client: TextTemplate,
    client_url: TextTemplate,
    description: TextTemplate,
    source: TextTemplate,
    severity: TextTemplate,
    class: TextTemplate,
    component: TextTemplate,
    group: TextTemplate,
    details: Vec<(String, TextTemplate)>,
    images: Vec<[TextTemplate; 3]>,
    links: Vec<[TextTemplate; 2]>,
}

/// One `pagerduty_configs` entry.
#[derive(Debug)]
pub struct PagerDutyChannel {
    http: reqwest::Client,
    url: String,
    key: String,
    v1: bool,
    send_resolved: bool,
    timeout: std::time::Duration,
    fields: Fields,
}

impl PagerDutyChannel {
    /// Builds the channel of the integration at `path`.
    pub fn new(ctx: &BuildCtx<'_>, path: &str, c: &PagerDutyConfig) -> Result<Self, BuildError> {
        let (key, v1) = match &c.key {
            PagerDutyKey::Routing(s) => (secret(path, "routing_key", s)?, false),
            PagerDutyKey::Service(s) => (secret(path, "service_key", s)?, true),
        };
        let url = match (v1, c.url.strip_suffix("/v2/enqueue")) {
            (true, Some(base)) => format!("{base}{V1_PATH}"),
            _ => c.url.clone(),
        };
        let t = |f: &str, s: &str| TextTemplate::new(&format!("{path}.{f}"), s, ctx.library);
        let fields = Fields {
            client: t("client", &c.client),
            client_url: t("client_url", &c.client_url),
            description: t("description", &c.description),
            source: t("source", &c.source),
            severity: t("severity", &c.severity),
            class: t("class", &c.class),
            component: t("component", &c.component),
            group: t("group", &c.group),
            details: c
                .details
                .iter()
                .map(|(k, v)| (k.clone(), t(&format!("details.{k}"), v)))
                .collect(),
            images: c
                .images
                .iter()
                .enumerate()
                .map(|(i, (src, alt, href))| {
                    [
                        t(&format!("images[{i}].src"), src),
                        t(&format!("images[{i}].alt"), alt),
                        t(&format!("images[{i}].href"), href),
                    ]
                })
                .collect(),
            links: c
                .links
                .iter()
                .enumerate()
                .map(|(i, (href, text))| {
                    [
                        t(&format!("links[{i}].href"), href),
                        t(&format!("links[{i}].text"), text),
                    ]
                })
                .collect(),
        };
        Ok(Self {
            http: ctx.http.clone(),
            url,
            key,
            v1,
            send_resolved: c.send_resolved,
            timeout: ctx.opts.request_timeout,
            fields,
        })
    }

    /// The event body for `delivery`, or the template error.
    fn event(&self, delivery: &Delivery) -> Result<Option<Value>, String> {
        let Some(data) = for_integration(&delivery.data, self.send_resolved) else {
            return Ok(None);
        };
        let r = Renderer::new(&data);
        let f = &self.fields;
        let dedup_key = dedup_key(&data.group_key);
        let resolve = data.status == "resolved";
        if data.status == "acknowledged" {
            return Ok(Some(if self.v1 {
                json!({"service_key": self.key, "event_type": "acknowledge", "incident_key": dedup_key})
            } else {
                json!({"routing_key": self.key, "event_action": "acknowledge", "dedup_key": dedup_key})
            }));
        }
        let mut details = serde_json::Map::new();
        for (k, t) in &f.details {
            details.insert(k.clone(), Value::String(r.render(t)?));
        }
        let summary = truncate_chars(&r.render(&f.description)?, MAX_SUMMARY_CHARS);
        let client = r.render(&f.client)?;
        let client_url = r.render(&f.client_url)?;
        if self.v1 {
            let mut ev = json!({
                "service_key": self.key,
                "event_type": if resolve { "resolve" } else { "trigger" },
                "incident_key": dedup_key,
                "description": summary,
                "details": details,
            });
            if !resolve {
                ev["client"] = client.into();
                ev["client_url"] = client_url.into();
            }
            return Ok(Some(ev));
        }
        let mut ev = json!({
            "routing_key": self.key,
            "event_action": if resolve { "resolve" } else { "trigger" },
            "dedup_key": dedup_key,
        });
        if resolve {
            return Ok(Some(ev));
        }
        ev["payload"] = self.trigger_payload(&r, &data, summary, details, &client)?;
        ev["client"] = client.into();
        ev["client_url"] = client_url.into();
        let mut images = Vec::new();
        for [src, alt, href] in &f.images {
            let src = r.render(src)?;
            if !src.is_empty() {
                images.push(json!({"src": src, "alt": r.render(alt)?, "href": r.render(href)?}));
            }
        }
        let mut links = Vec::new();
        for [href, text] in &f.links {
            let href = r.render(href)?;
            if !href.is_empty() {
                links.push(json!({"href": href, "text": r.render(text)?}));
            }
        }
        if !images.is_empty() {
            ev["images"] = images.into();
        }
        if !links.is_empty() {
            ev["links"] = links.into();
        }
        Ok(Some(ev))
    }

    /// The `payload` of a trigger.
    fn trigger_payload(
        &self,
        r: &Renderer<'_>,
        data: &NotificationData,
        summary: String,
        details: serde_json::Map<String, Value>,
        client: &str,
    ) -> Result<Value, String> {
        let f = &self.fields;
        let mut source = r.render(&f.source)?;
        if source.is_empty() {
            client.clone_into(&mut source);
        }
        let severity = r.render(&f.severity)?;
        let mut payload = json!({
            "summary": summary,
            "source": source,
            "severity": if severity.is_empty() { "error".to_owned() } else { severity },
            "custom_details": details,
        });
        if let Some(ts) = data.firing().map(|a| a.starts_at.as_str()).max() {
            payload["timestamp"] = ts.into();
        }
        for (name, t) in [
            ("class", &f.class),
            ("component", &f.component),
            ("group", &f.group),
        ] {
            let v = r.render(t)?;
            if !v.is_empty() {
                payload[name] = v.into();
            }
        }
        Ok(payload)
    }

    async fn send_one(&self, delivery: &Delivery) -> SendOutcome {
        let mut ev = match self.event(delivery) {
            Ok(Some(ev)) => ev,
            Ok(None) => return SendOutcome::Skipped,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        fit_size(&mut ev, self.v1);
        let req = self.http.post(&self.url).timeout(self.timeout).json(&ev);
        let (status, headers, body) = match read_answer("pagerduty", req.send().await).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        if (200..300).contains(&status) {
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let key = parsed
                .get(if self.v1 { "incident_key" } else { "dedup_key" })
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| ev["dedup_key"].as_str().map(str::to_owned))
                .or_else(|| ev["incident_key"].as_str().map(str::to_owned));
            return SendOutcome::Delivered { provider_id: key };
        }
        if self.v1 && status == 403 {
            // v1 answers 403 when rate limited.
            return SendOutcome::Retry {
                retry_after: None,
                reason: format!("pagerduty v1 rate limited: {}", snippet(&body)),
            };
        }
        if status == 400 {
            return SendOutcome::Permanent {
                reason: format!("pagerduty refused the event: {}", error_details(&body)),
            };
        }
        classify_failure("pagerduty", status, &headers, &body)
    }
}

/// Alertmanager's dedup key of a group: SHA-256 hex of the group key.
pub fn dedup_key(group_key: &str) -> String {
    stable_hash_hex(&[group_key])
}

/// `"<message>: <errors joined by , >"` from PagerDuty's error body.
fn error_details(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let errors: Vec<&str> = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if message.is_empty() && errors.is_empty() {
        return snippet(body).to_owned();
    }
    format!("{message}: {}", errors.join(", "))
}

/// At most `max` characters, the last one `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Replaces `custom_details` (v1: `details`) when the event is over [`MAX_EVENT_BYTES`].
fn fit_size(ev: &mut Value, v1: bool) {
    let size = serde_json::to_vec(ev).map_or(0, |b| b.len());
    if size <= MAX_EVENT_BYTES {
        return;
    }
    let replacement = json!({
        "error": "Custom details have been removed because the original event exceeds the maximum size of 512KB",
    });
    if v1 {
        ev["details"] = replacement;
    } else if ev.get("payload").is_some() {
        ev["payload"]["custom_details"] = replacement;
    }
}

impl Channel for PagerDutyChannel {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn acknowledges(&self) -> bool {
        true
    }
    fn rate_key(&self) -> Option<String> {
        Some(format!(
            "pagerduty:{}",
            &stable_hash_hex(&[&self.key])[..16]
        ))
    }
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.send_one(delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn details_of(ev: &Value) -> BTreeMap<String, String> {
        ev["payload"]["custom_details"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn summary_truncates_in_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        let long = "é".repeat(2000);
        assert_eq!(
            truncate_chars(&long, MAX_SUMMARY_CHARS).chars().count(),
            1024
        );
    }

    #[test]
    fn oversized_events_lose_custom_details() {
        let mut ev =
            json!({"payload": {"summary": "s", "custom_details": {"x": "y".repeat(600_000)}}});
        fit_size(&mut ev, false);
        assert!(serde_json::to_vec(&ev).unwrap().len() < MAX_EVENT_BYTES);
        assert!(details_of(&ev)["error"].contains("512KB"));
    }
}
