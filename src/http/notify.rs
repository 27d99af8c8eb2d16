//! The notification API: the replicated `alertmanager.yml`, the outbox as users see it,
//! silences and acknowledgements (DESIGN.md §9).
//!
//! - `GET|PUT /api/v1/notify/config`: the config text; a PUT is loaded and validated in full
//!   (every error, with field paths) before it is proposed, so a refused file changes nothing.
//! - `GET /api/v1/notifications`: every notification stream with its log and per-unit outbox
//!   state.
//! - `GET|POST /api/v1/silences`, `DELETE /api/v1/silences/{id}` (expire).
//! - `POST /api/v1/acks`: acknowledge a group's notifications (stops repeats until it escalates).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value as J, json};
use tocsin_alerter::notify::config;
use tocsin_alerter::notify::deliver::message::{parse_rfc3339_ms, rfc3339_ms};
use tocsin_alerter::notify::matchers::Matchers;
use tocsin_alerter::notify::silence::{self, SilenceState};
use tocsin_state::model::{
    Ack, Command, DeliveryState, NotificationKey, OutboxEntry, Query, QueryResult, Silence,
    SilenceMatcher,
};

use super::AppState;
use super::rules::{api_error, commit, store_error};

fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

/// `GET /api/v1/notify/config`.
pub async fn get_config(State(s): State<AppState>) -> Response {
    match s.client.read(&Query::NotifyConfig, true).await {
        Ok((_, QueryResult::NotifyConfig(c))) => {
            Json(json!({"version": c.version, "source": c.source})).into_response()
        }
        Ok(_) => unexpected(),
        Err(e) => store_error(e),
    }
}

/// `PUT /api/v1/notify/config`: the body is an `alertmanager.yml`.
pub async fn put_config(State(s): State<AppState>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return api_error(StatusCode::BAD_REQUEST, "the config is not UTF-8", vec![]);
    };
    if let Err(errors) = config::load(text) {
        let details: Vec<J> = errors
            .0
            .iter()
            .map(|e| json!({"message": e.to_string()}))
            .collect();
        return api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the notification config is invalid ({} errors); nothing was changed",
                details.len()
            ),
            details,
        );
    }
    match commit(
        &s,
        Command::SetNotifyConfig {
            source: text.to_string(),
        },
    )
    .await
    {
        Ok(index) => Json(json!({"version": index})).into_response(),
        Err(r) => r,
    }
}

fn entry_json(e: &OutboxEntry) -> J {
    let (state, extra) = match &e.state {
        DeliveryState::Pending => ("pending", json!({})),
        DeliveryState::Claimed {
            worker,
            epoch,
            at_ms,
        } => (
            "claimed",
            json!({"worker": worker.to_string(), "epoch": epoch.0, "claimed_at": rfc3339_ms(*at_ms)}),
        ),
        DeliveryState::Delivered { provider_id, at_ms } => (
            "delivered",
            json!({"provider_id": provider_id, "delivered_at": rfc3339_ms(*at_ms)}),
        ),
        DeliveryState::Dead { reason, at_ms } => (
            "dead",
            json!({"reason": reason, "dead_at": rfc3339_ms(*at_ms)}),
        ),
    };
    let mut v = json!({
        "seq": e.seq,
        "state": state,
        "resolved": e.notification.resolved,
        "alerts": e.notification.alerts.len(),
        "attempts": e.attempts,
        "next_attempt": rfc3339_ms(e.next_attempt_ms),
    });
    if let (J::Object(m), J::Object(x)) = (&mut v, extra) {
        m.extend(x);
    }
    v
}

/// `GET /api/v1/notifications`.
pub async fn get_notifications(State(s): State<AppState>) -> Response {
    let streams = match s.client.read(&Query::Outbox { shard: None }, true).await {
        Ok((_, QueryResult::Outbox(o))) => o,
        Ok(_) => return unexpected(),
        Err(e) => return store_error(e),
    };
    let out: Vec<J> = streams
        .iter()
        .map(|(k, st)| {
            json!({
                "receiver": k.receiver,
                "group_key": k.group_key,
                "seq": st.seq,
                "log": st.log.as_ref().map(|l| json!({
                    "firing": l.firing.len(), "resolved": l.resolved.len(),
                    "at": rfc3339_ms(l.at_ms),
                })),
                "units": st.units.iter().map(|u| json!({
                    "head": u.head.as_ref().map(entry_json),
                    "queued": u.queued.as_ref().map(entry_json),
                    "last": u.last.as_ref().map(entry_json),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({"streams": out})).into_response()
}

/// A silence as the API takes and shows it (Alertmanager v2's field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceBody {
    /// Set by the server on create.
    #[serde(default)]
    pub id: Option<String>,
    /// Matchers (all must match).
    pub matchers: Vec<MatcherBody>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339.
    pub ends_at: String,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// `pending`, `active` or `expired` (output only).
    #[serde(default, skip_deserializing)]
    pub status: Option<String>,
}

/// One matcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatcherBody {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    #[serde(default)]
    pub is_regex: bool,
    /// Equality (default) vs negation.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

fn silence_view(s: &Silence, now: i64) -> SilenceBody {
    SilenceBody {
        id: Some(s.id.clone()),
        matchers: s
            .matchers
            .iter()
            .map(|m| MatcherBody {
                name: m.name.clone(),
                value: m.value.clone(),
                is_regex: m.is_regex,
                is_equal: m.is_equal,
            })
            .collect(),
        starts_at: Some(rfc3339_ms(s.starts_at_ms)),
        ends_at: rfc3339_ms(s.ends_at_ms),
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
        status: Some(
            match silence::state(s, now) {
                SilenceState::Pending => "pending",
                SilenceState::Active => "active",
                SilenceState::Expired => "expired",
            }
            .into(),
        ),
    }
}

/// `GET /api/v1/silences`.
pub async fn get_silences(State(s): State<AppState>) -> Response {
    match s.client.read(&Query::Silences, true).await {
        Ok((_, QueryResult::Silences(list))) => {
            let now = now_ms();
            let views: Vec<SilenceBody> = list.iter().map(|x| silence_view(x, now)).collect();
            Json(json!({"silences": views})).into_response()
        }
        Ok(_) => unexpected(),
        Err(e) => store_error(e),
    }
}

/// Validates a silence body into the replicated record; the error names the field.
pub fn silence_from_body(b: &SilenceBody, id: String, now: i64) -> Result<Silence, String> {
    let starts_at_ms = match &b.starts_at {
        Some(t) => parse_rfc3339_ms(t).map_err(|e| format!("startsAt: {e}"))?,
        None => now,
    };
    let ends_at_ms = parse_rfc3339_ms(&b.ends_at).map_err(|e| format!("endsAt: {e}"))?;
    if ends_at_ms <= now {
        return Err("endsAt: must be in the future".into());
    }
    if b.created_by.trim().is_empty() {
        return Err("createdBy: must not be empty".into());
    }
    if b.comment.trim().is_empty() {
        return Err("comment: must not be empty".into());
    }
    let s = Silence {
        id,
        matchers: b
            .matchers
            .iter()
            .map(|m| SilenceMatcher {
                name: m.name.clone(),
                value: m.value.clone(),
                is_regex: m.is_regex,
                is_equal: m.is_equal,
            })
            .collect(),
        starts_at_ms,
        ends_at_ms,
        created_by: b.created_by.clone(),
        comment: b.comment.clone(),
    };
    silence::compile(&s).map_err(|e| format!("matchers: {e}"))?;
    Ok(s)
}

/// `POST /api/v1/silences`: creates a silence; answers `{"silenceID": ...}`.
pub async fn post_silence(State(s): State<AppState>, body: Bytes) -> Response {
    let b: SilenceBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: {e}"),
                vec![],
            );
        }
    };
    let id =
        b.id.clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let silence = match silence_from_body(&b, id.clone(), now_ms()) {
        Ok(x) => x,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: {e}"),
                vec![],
            );
        }
    };
    match commit(&s, Command::PutSilence(silence)).await {
        Ok(_) => Json(json!({"silenceID": id})).into_response(),
        Err(r) => r,
    }
}

/// `DELETE /api/v1/silences/{id}`: expires the silence now.
pub async fn delete_silence(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match commit(
        &s,
        Command::ExpireSilence {
            id: id.clone(),
            at_ms: now_ms(),
        },
    )
    .await
    {
        Ok(_) => Json(json!({"expired": id})).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/v1/acks` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The group key, or a `{label="value",...}` matcher list selecting groups by their
    /// group labels.
    pub group: String,
    /// Only this receiver's stream (default: every receiver of the group).
    #[serde(default)]
    pub receiver: Option<String>,
    /// Who acknowledges.
    pub by: String,
}

/// `POST /api/v1/acks`: acknowledges every matching notification stream.
pub async fn post_ack(State(s): State<AppState>, body: Bytes) -> Response {
    let b: AckBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("invalid ack: {e}"), vec![]),
    };
    if b.by.trim().is_empty() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid ack: by: must not be empty",
            vec![],
        );
    }
    let streams = match s.client.read(&Query::Outbox { shard: None }, true).await {
        Ok((_, QueryResult::Outbox(o))) => o,
        Ok(_) => return unexpected(),
        Err(e) => return store_error(e),
    };
    let selector = Matchers::parse(&b.group).ok();
    let keys: Vec<NotificationKey> = streams
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| b.receiver.as_ref().is_none_or(|r| *r == k.receiver))
        .filter(|k| {
            k.group_key == b.group
                || selector
                    .as_ref()
                    .is_some_and(|m| m.matches(&group_labels_of(&k.group_key)))
        })
        .collect();
    if keys.is_empty() {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("no notification group matches {:?}", b.group),
            vec![],
        );
    }
    let at_ms = now_ms();
    for k in &keys {
        if let Err(r) = commit(
            &s,
            Command::Ack {
                key: k.clone(),
                ack: Ack {
                    by: b.by.clone(),
                    at_ms,
                },
            },
        )
        .await
        {
            return r;
        }
    }
    let acked: Vec<J> = keys
        .iter()
        .map(|k| json!({"receiver": k.receiver, "group_key": k.group_key}))
        .collect();
    Json(json!({"acknowledged": acked})).into_response()
}

/// The group labels encoded at the end of an Alertmanager group key (`...:{a="b", c="d"}`).
fn group_labels_of(group_key: &str) -> BTreeMap<String, String> {
    let Some(i) = group_key.rfind(":{") else {
        return BTreeMap::new();
    };
    Matchers::parse(&group_key[i + 1..])
        .map(|m| {
            m.as_slice()
                .iter()
                .map(|x| (x.name().to_string(), x.value().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn unexpected() -> Response {
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unexpected query result",
        vec![],
    )
}
