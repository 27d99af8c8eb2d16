//! The generic webhook: Alertmanager's v4 JSON (`version: "4"` plus the notification data),
//! `max_alerts` truncation, and an `Idempotency-Key` header (IETF
//! draft-ietf-httpapi-idempotency-key-header) that is the same for every resend of one outbox
//! entry, so a receiver can drop duplicates. Any 2xx is delivered.

use super::build::{BuildCtx, BuildError, auth_header, secret};
use super::channel::{
    Channel, Delivery, SendFuture, SendOutcome, classify_failure, for_integration, read_answer,
    stable_hash_hex,
};
use super::message::NotificationData;
use crate::notify::config::WebhookConfig;

/// One `webhook_configs` entry.
#[derive(Debug)]
pub struct WebhookChannel {
    http: reqwest::Client,
    url: String,
    auth: Option<String>,
    max_alerts: u64,
    send_resolved: bool,
    timeout: std::time::Duration,
    unit: usize,
}

impl WebhookChannel {
    /// Builds the channel of the integration at `path`.
    pub fn new(ctx: &BuildCtx<'_>, path: &str, c: &WebhookConfig) -> Result<Self, BuildError> {
        Ok(Self {
            http: ctx.http.clone(),
            url: secret(path, "url", &c.url)?,
            auth: auth_header(path, &c.http)?,
            max_alerts: c.max_alerts,
            send_resolved: c.send_resolved,
            timeout: ctx.opts.request_timeout,
            unit: ctx.unit,
        })
    }

    async fn send_one(&self, delivery: &Delivery) -> SendOutcome {
        let Some(data) = for_integration(&delivery.data, self.send_resolved) else {
            return SendOutcome::Skipped;
        };
        let body = payload(&data, self.max_alerts);
        let mut req = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header("Idempotency-Key", idempotency_key(delivery, self.unit))
            .json(&body);
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        match read_answer("webhook", req.send().await).await {
            Err(outcome) => outcome,
            Ok((status, _, _)) if (200..300).contains(&status) => {
                SendOutcome::Delivered { provider_id: None }
            }
            Ok((status, headers, body)) => classify_failure("webhook", status, &headers, &body),
        }
    }
}

/// The `Idempotency-Key` of one outbox entry of unit `unit`: a hash of (group key,
/// receiver, unit, seq), the same for every resend of the entry.
pub fn idempotency_key(d: &Delivery, unit: usize) -> String {
    stable_hash_hex(&[
        &d.key.group_key,
        &d.key.receiver,
        &unit.to_string(),
        &d.seq.to_string(),
    ])
}

/// The v4 body: the data with `version`, at most `max_alerts` alerts (0 = all) and
/// `truncatedAlerts` counting the rest.
pub fn payload(data: &NotificationData, max_alerts: u64) -> serde_json::Value {
    let mut data = data.clone();
    let max = usize::try_from(max_alerts).unwrap_or(usize::MAX);
    if max_alerts > 0 && data.alerts.len() > max {
        let dropped = data.alerts.len() - max;
        data.alerts.truncate(max);
        data.truncated_alerts += dropped as u64;
    }
    let mut v = serde_json::to_value(&data).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("version".into(), "4".into());
    }
    v
}

impl Channel for WebhookChannel {
    fn kind(&self) -> &'static str {
        "webhook"
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn rate_key(&self) -> Option<String> {
        None
    }
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.send_one(delivery))
    }
}
