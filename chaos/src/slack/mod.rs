//! Slack emulator (providers.md §2, §8).
//!
//! - `POST /services/{T}/{B}/{X}`: incoming webhook. `200 ok` (text/html); errors as
//!   plain-text bodies (`webhook`); 1 message/s per webhook by default, past which 429 +
//!   `Retry-After` + `{"retry_after":N,"ok":false,"error":"rate_limited"}`.
//!   `PUT /hooks` `{"path": "/services/T/B/X", "state": "channel_is_archived"}` (or
//!   [`Slack::set_hook_state`]) makes a hook answer one of Slack's hook errors.
//! - `POST /api/chat.postMessage`, `POST /api/chat.update`: bearer token, JSON or form; always
//!   HTTP 200 with `ok:true|false` except 429 `ratelimited` + `Retry-After` (1 message/s per
//!   channel by default). `GET /messages` lists what was posted, with updates;
//!   `PUT /channels` `{"channel": "#x", "state": "archived"}` sets a channel's state.

pub mod web_api;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_ms;
use crate::emulator::exchange::{Answer, Incoming, InjectedFailure};
use crate::emulator::{Core, Emulator, EmulatorKind, bind_loopback};
use crate::error::ChaosError;
use crate::rate_limit::{Limiter, Rate};
use web_api::{ChannelState, StoredMessage, Workspace};
use webhook::HookState;

/// Slack's text limit; longer text is truncated by Slack, `chat.postMessage` refuses it.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// The `Retry-After` Slack sends when a fault does not say.
const DEFAULT_RETRY_AFTER_S: u64 = 1;

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Per webhook URL; `None` = unlimited. Default: 1/s, no burst.
    pub webhook_rate: Option<Rate>,
    /// `chat.postMessage` per channel; `None` = unlimited. Default: 1/s, no burst.
    pub post_message_rate: Option<Rate>,
    /// Accepted bot tokens; `None` accepts any `xox…` token.
    pub tokens: Option<Vec<String>>,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            webhook_rate: Some(Rate::per_second(1, 1)),
            post_message_rate: Some(Rate::per_second(1, 1)),
            tokens: None,
        }
    }
}

struct SlackState {
    core: Arc<Core>,
    config: SlackConfig,
    hooks: Mutex<HashMap<String, HookState>>,
    workspace: Mutex<Workspace>,
    webhook_limiter: Option<Mutex<Limiter>>,
    post_limiter: Option<Mutex<Limiter>>,
    origin: Instant,
}

impl std::fmt::Debug for SlackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackState").finish_non_exhaustive()
    }
}

/// A running Slack emulator.
#[derive(Debug)]
pub struct Slack {
    emulator: Emulator,
    state: Arc<SlackState>,
}

impl Slack {
    /// Serves on `listener` until `shutdown` fires or the handle is dropped.
    pub fn start(
        listener: TcpListener,
        config: SlackConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let limiter = |rate: Option<Rate>| rate.map(|r| Mutex::new(Limiter::new(r)));
        let state = Arc::new(SlackState {
            core: core.clone(),
            webhook_limiter: limiter(config.webhook_rate),
            post_limiter: limiter(config.post_message_rate),
            config,
            hooks: Mutex::default(),
            workspace: Mutex::default(),
            origin: Instant::now(),
        });
        let routes = Router::new()
            .route("/services/{team}/{bot}/{secret}", post(incoming_webhook))
            .route("/api/{method}", post(web_api_call))
            .route("/hooks", put(put_hook))
            .route("/channels", put(put_channel))
            .route("/messages", get(get_messages))
            .with_state(state.clone());
        let emulator = Emulator::spawn(EmulatorKind::Slack, listener, core, routes)?;
        Ok(Self { emulator, state })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(
        config: SlackConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        Self::start(bind_loopback("slack").await?, config, shutdown)
    }

    /// The shared emulator handle.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Makes the webhook at `path` (`/services/T/B/X`) answer `state`.
    pub fn set_hook_state(&self, path: &str, state: HookState) {
        self.state.hooks().insert(path.to_owned(), state);
    }

    /// Sets a channel's state for the Web API (by id or name).
    pub fn set_channel_state(&self, channel: &str, state: ChannelState) {
        self.state.workspace().set_state(channel, state);
    }

    /// Messages posted through the Web API, with their updates.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.state.workspace().messages()
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

impl SlackState {
    fn hooks(&self) -> MutexGuard<'_, HashMap<String, HookState>> {
        self.hooks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn workspace(&self) -> MutexGuard<'_, Workspace> {
        self.workspace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now_mono_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `Err(retry_after_s)` when `key` is over `limiter`'s rate.
    fn admit(&self, limiter: Option<&Mutex<Limiter>>, key: &str) -> Result<(), u64> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(key, self.now_mono_ms())
            .map_err(|r| r.seconds())
    }

    fn webhook(&self, req: &Incoming) -> Answer {
        let hook_state = self.hooks().get(&req.path).copied().unwrap_or_default();
        if let Some((status, code)) = hook_state.error() {
            return Answer::text(status, "text/html", code);
        }
        if let Err(retry_after_s) = self.admit(self.webhook_limiter.as_ref(), &req.path) {
            return webhook_rate_limited(retry_after_s);
        }
        let msg = match webhook::parse_body(&req.body, req.is_form()) {
            Ok(msg) => msg,
            Err(err) => return Answer::text(StatusCode::BAD_REQUEST, "text/html", err.code()),
        };
        if let Err(err) = webhook::check_content(&msg) {
            return Answer::text(StatusCode::BAD_REQUEST, "text/html", err.code());
        }
        Answer::text(StatusCode::OK, "text/html", "ok").processed()
    }

    fn web_api(&self, method: &str, req: &Incoming) -> Answer {
        let params = match api_params(req) {
            Some(params) => params,
            None => return api_error("invalid_json"),
        };
        if let Err(code) = self.authenticate(req, &params) {
            return api_error(code);
        }
        match method {
            "chat.postMessage" => self.post_message(&params),
            "chat.update" => self.update_message(&params),
            _ => api_error("unknown_method"),
        }
    }

    fn authenticate(
        &self,
        req: &Incoming,
        params: &serde_json::Map<String, Value>,
    ) -> Result<(), &'static str> {
        let token = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_owned)
            .or_else(|| {
                params
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or("not_authed")?;
        let accepted = match &self.config.tokens {
            Some(tokens) => tokens.contains(&token),
            None => token.starts_with("xox"),
        };
        if accepted {
            Ok(())
        } else {
            Err("invalid_auth")
        }
    }

    fn resolve_channel(&self, params: &serde_json::Map<String, Value>) -> Result<String, Answer> {
        let Some(channel) = params.get("channel").and_then(Value::as_str) else {
            return Err(api_error("channel_not_found"));
        };
        let mut ws = self.workspace();
        let id = ws.channel_id(channel);
        match ws.state(&id) {
            ChannelState::Active => Ok(id),
            ChannelState::Archived => Err(api_error("is_archived")),
            ChannelState::NotFound => Err(api_error("channel_not_found")),
            ChannelState::NotInChannel => Err(api_error("not_in_channel")),
        }
    }

    fn post_message(&self, params: &serde_json::Map<String, Value>) -> Answer {
        let channel = match self.resolve_channel(params) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        if let Err(err) = webhook::check_content(params) {
            return api_error(err.code());
        }
        let text = params
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if text.chars().count() > MAX_TEXT_CHARS {
            return api_error("msg_too_long");
        }
        if let Err(retry_after_s) = self.admit(self.post_limiter.as_ref(), &channel) {
            return web_api_rate_limited(retry_after_s);
        }
        let now = wall_ms();
        let mut ws = self.workspace();
        let ts = ws.next_ts(now);
        ws.insert(StoredMessage {
            channel: channel.clone(),
            ts: ts.clone(),
            text: text.to_owned(),
            blocks: params.get("blocks").cloned().unwrap_or(Value::Null),
            attachments: params.get("attachments").cloned().unwrap_or(Value::Null),
            thread_ts: params
                .get("thread_ts")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: params.get("metadata").cloned().unwrap_or(Value::Null),
            posted_ms: now,
            updates: Vec::new(),
        });
        let body = json!({
            "ok": true, "channel": channel, "ts": ts,
            "message": {"type": "message", "subtype": "bot_message", "text": text,
                        "bot_id": "B0EMULATOR", "user": "U0EMULATOR", "ts": ts},
        });
        Answer::json(StatusCode::OK, &body)
            .processed()
            .details(json!({"channel": channel, "ts": ts}))
    }

    fn update_message(&self, params: &serde_json::Map<String, Value>) -> Answer {
        let channel = match self.resolve_channel(params) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let Some(ts) = params.get("ts").and_then(Value::as_str) else {
            return api_error("message_not_found");
        };
        if let Err(err) = webhook::check_content(params) {
            return api_error(err.code());
        }
        let mut ws = self.workspace();
        let Some(stored) = ws.update(&channel, ts, params, wall_ms()) else {
            return api_error("message_not_found");
        };
        let body = json!({
            "ok": true, "channel": channel, "ts": ts, "text": stored.text,
            "message": {"type": "message", "text": stored.text, "bot_id": "B0EMULATOR",
                        "user": "U0EMULATOR"},
        });
        Answer::json(StatusCode::OK, &body)
            .processed()
            .details(json!({"channel": channel, "ts": ts, "updates": stored.updates.len()}))
    }
}

/// The Web API's parameters: a JSON object, or a form.
fn api_params(req: &Incoming) -> Option<serde_json::Map<String, Value>> {
    if req.is_form() {
        let mut params = serde_json::Map::new();
        for (k, v) in req.form() {
            // Structured fields arrive JSON-encoded in forms.
            let value = match k.as_str() {
                "blocks" | "attachments" | "metadata" => {
                    serde_json::from_str(&v).unwrap_or(Value::String(v))
                }
                _ => Value::String(v),
            };
            params.insert(k, value);
        }
        return Some(params);
    }
    if req.body.is_empty() {
        return Some(serde_json::Map::new());
    }
    match serde_json::from_slice(&req.body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn api_error(code: &str) -> Answer {
    Answer::json(StatusCode::OK, &json!({"ok": false, "error": code}))
}

fn webhook_rate_limited(retry_after_s: u64) -> Answer {
    Answer::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"retry_after": retry_after_s, "ok": false, "error": "rate_limited"}),
    )
    .retry_after(Some(retry_after_s))
}

fn web_api_rate_limited(retry_after_s: u64) -> Answer {
    Answer::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"ok": false, "error": "ratelimited"}),
    )
    .retry_after(Some(retry_after_s))
}

fn shape_webhook(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => Answer::text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "text/html",
            "rollup_error",
        ),
        InjectedFailure::RateLimited { retry_after_s } => {
            webhook_rate_limited(retry_after_s.unwrap_or(DEFAULT_RETRY_AFTER_S))
        }
    }
}

fn shape_web_api(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => Answer::json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &json!({"ok": false, "error": "service_unavailable"}),
        ),
        InjectedFailure::RateLimited { retry_after_s } => {
            web_api_rate_limited(retry_after_s.unwrap_or(DEFAULT_RETRY_AFTER_S))
        }
    }
}

async fn incoming_webhook(State(slack): State<Arc<SlackState>>, req: Incoming) -> Response {
    slack
        .core
        .exchange(req, shape_webhook, |req| slack.webhook(req))
        .await
}

async fn web_api_call(
    State(slack): State<Arc<SlackState>>,
    Path(method): Path<String>,
    req: Incoming,
) -> Response {
    slack
        .core
        .exchange(req, shape_web_api, |req| slack.web_api(&method, req))
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookStateBody {
    path: String,
    state: HookState,
}

async fn put_hook(State(slack): State<Arc<SlackState>>, body: bytes::Bytes) -> Response {
    match serde_json::from_slice::<HookStateBody>(&body) {
        Ok(b) => {
            slack.hooks().insert(b.path, b.state);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => control_error(&err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelStateBody {
    channel: String,
    state: ChannelState,
}

async fn put_channel(State(slack): State<Arc<SlackState>>, body: bytes::Bytes) -> Response {
    match serde_json::from_slice::<ChannelStateBody>(&body) {
        Ok(b) => {
            slack.workspace().set_state(&b.channel, b.state);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => control_error(&err),
    }
}

fn control_error(err: &serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": err.to_string()})),
    )
        .into_response()
}

async fn get_messages(State(slack): State<Arc<SlackState>>) -> Response {
    axum::Json(slack.workspace().messages()).into_response()
}
