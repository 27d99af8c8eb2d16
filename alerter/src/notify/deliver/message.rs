//! The content of a notification: Alertmanager's template data, which is also the body of its
//! webhook payload (version 4). It is built once, when the group flushes, and stored in the
//! outbox entry, so every send of that entry — a retry, or a resend by a new owner after a
//! handoff — carries the same content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tocsin_state::model::{AlertInstance, AlertState, NotificationKey};

/// Go's zero time, which Alertmanager sends as `endsAt` of an alert still firing.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert of a notification (`.Alerts[i]` in templates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertData {
    /// `firing` or `resolved`.
    pub status: String,
    /// Full label set.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, UTC, millisecond precision.
    pub starts_at: String,
    /// RFC 3339, or [`GO_ZERO_TIME`] while firing.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link to the alert in Tocsin.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// 16 lowercase hex digits of the label-set hash.
    pub fingerprint: String,
}

/// A notification's data (`.` in notification templates; the webhook v4 body without
/// `version`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationData {
    /// Receiver name.
    pub receiver: String,
    /// `firing` if any alert fires, else `resolved`.
    pub status: String,
    /// The alerts, firing first, each part in fingerprint order.
    pub alerts: Vec<AlertData>,
    /// The route's `group_by` labels and their values.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert shares.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert shares.
    pub common_annotations: BTreeMap<String, String>,
    /// Base URL of the Tocsin UI/API for links.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Alertmanager's group key (`{}/{route matchers}:{group labels}`).
    pub group_key: String,
    /// Alerts left out because the payload hit a size limit.
    pub truncated_alerts: u64,
}

impl NotificationData {
    /// Builds the data of one flush. `alerts` are the flush's alerts as replicated (firing and
    /// resolved); `group_labels` come from the route.
    pub fn build(
        key: &NotificationKey,
        group_labels: BTreeMap<String, String>,
        alerts: &[&AlertInstance],
        external_url: &str,
    ) -> Self {
        let mut firing: Vec<&AlertInstance> = Vec::new();
        let mut resolved: Vec<&AlertInstance> = Vec::new();
        for a in alerts {
            match a.state {
                AlertState::Resolved => resolved.push(a),
                _ => firing.push(a),
            }
        }
        firing.sort_by_key(|a| a.fingerprint);
        resolved.sort_by_key(|a| a.fingerprint);
        let base = external_url.trim_end_matches('/');
        let data: Vec<AlertData> = firing
            .iter()
            .chain(&resolved)
            .map(|a| {
                let is_resolved = a.state == AlertState::Resolved;
                AlertData {
                    status: if is_resolved { "resolved" } else { "firing" }.into(),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: rfc3339_ms(a.fired_at_ms.unwrap_or(a.active_at_ms)),
                    ends_at: match (is_resolved, a.resolved_at_ms) {
                        (true, Some(t)) => rfc3339_ms(t),
                        _ => GO_ZERO_TIME.into(),
                    },
                    generator_url: format!("{base}/api/v1/alerts?fingerprint={}", a.fingerprint),
                    fingerprint: a.fingerprint.to_string(),
                }
            })
            .collect();
        let common = |f: fn(&AlertData) -> &BTreeMap<String, String>| {
            let mut it = data.iter();
            let Some(first) = it.next() else {
                return BTreeMap::new();
            };
            let mut c = f(first).clone();
            for a in it {
                c.retain(|k, v| f(a).get(k) == Some(v));
            }
            c
        };
        Self {
            receiver: key.receiver.clone(),
            status: if firing.is_empty() {
                "resolved"
            } else {
                "firing"
            }
            .into(),
            common_labels: common(|a| &a.labels),
            common_annotations: common(|a| &a.annotations),
            alerts: data,
            group_labels,
            external_url: base.to_string(),
            group_key: key.group_key.clone(),
            truncated_alerts: 0,
        }
    }

    /// The firing alerts.
    pub fn firing(&self) -> impl Iterator<Item = &AlertData> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    /// The resolved alerts.
    pub fn resolved(&self) -> impl Iterator<Item = &AlertData> {
        self.alerts.iter().filter(|a| a.status == "resolved")
    }

    /// The stored form (the outbox entry's payload).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored payload.
    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

pub use crate::rfc3339::{parse_rfc3339_ms, rfc3339_ms};
