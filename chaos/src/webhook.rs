//! Generic webhook sink (providers.md §5.2): records the Alertmanager v4 payload and the
//! `Idempotency-Key` header of every `POST` to any path, answers 200 (or the injected fault).
//!
//! The sink never refuses a payload (a real receiver's validation is its own business), but
//! it checks the v4 shape and records what it found in `details`: `valid_v4`, `problems`,
//! `idempotency_key`, `group_key`, `status`, `alerts`. That lets tests assert the sender's
//! payload without re-parsing it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::emulator::exchange::{Answer, Incoming, InjectedFailure};
use crate::emulator::{Core, Emulator, EmulatorKind, bind_loopback};
use crate::error::ChaosError;

/// A running webhook sink.
#[derive(Debug)]
pub struct WebhookSink {
    emulator: Emulator,
}

impl WebhookSink {
    /// Serves on `listener` until `shutdown` fires or the handle is dropped.
    pub fn start(listener: TcpListener, shutdown: &CancellationToken) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let routes = Router::new()
            .route("/", post(receive))
            .route("/{*path}", post(receive))
            .with_state(core.clone());
        let emulator = Emulator::spawn(EmulatorKind::Webhook, listener, core, routes)?;
        Ok(Self { emulator })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(shutdown: &CancellationToken) -> Result<Self, ChaosError> {
        Self::start(bind_loopback("webhook").await?, shutdown)
    }

    /// The shared emulator handle.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops the sink.
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

/// Problems with an Alertmanager v4 payload; empty when it is well formed.
pub fn v4_problems(payload: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = payload.as_object() else {
        return vec!["body is not a JSON object".into()];
    };
    if obj.get("version").and_then(Value::as_str) != Some("4") {
        problems.push("`version` is not \"4\"".into());
    }
    for field in ["groupKey", "receiver", "externalURL"] {
        if !obj.get(field).is_some_and(Value::is_string) {
            problems.push(format!("`{field}` is missing or not a string"));
        }
    }
    if !matches!(
        obj.get("status").and_then(Value::as_str),
        Some("firing" | "resolved")
    ) {
        problems.push("`status` is not firing|resolved".into());
    }
    for field in ["groupLabels", "commonLabels", "commonAnnotations"] {
        if !obj.get(field).is_some_and(Value::is_object) {
            problems.push(format!("`{field}` is missing or not an object"));
        }
    }
    match obj.get("alerts").and_then(Value::as_array) {
        None => problems.push("`alerts` is missing or not an array".into()),
        Some(alerts) => {
            for (i, alert) in alerts.iter().enumerate() {
                if !matches!(
                    alert.get("status").and_then(Value::as_str),
                    Some("firing" | "resolved")
                ) {
                    problems.push(format!("`alerts[{i}].status` is not firing|resolved"));
                }
                if !alert.get("labels").is_some_and(Value::is_object) {
                    problems.push(format!("`alerts[{i}].labels` is not an object"));
                }
                for field in ["startsAt", "endsAt", "fingerprint"] {
                    if !alert.get(field).is_some_and(Value::is_string) {
                        problems.push(format!("`alerts[{i}].{field}` is missing or not a string"));
                    }
                }
            }
        }
    }
    problems
}

fn receive_one(req: &Incoming) -> Answer {
    let payload: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let problems = v4_problems(&payload);
    let details = json!({
        "valid_v4": problems.is_empty(),
        "problems": problems,
        "idempotency_key": req.header("idempotency-key").or(req.header("x-idempotency-key")),
        "group_key": payload.get("groupKey"),
        "status": payload.get("status"),
        "alerts": payload.get("alerts").and_then(Value::as_array).map(Vec::len),
    });
    Answer::text(StatusCode::OK, "text/plain", "")
        .processed()
        .details(details)
}

fn shape(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => Answer::text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "text/plain",
            "injected server error",
        ),
        InjectedFailure::RateLimited { retry_after_s } => {
            Answer::text(StatusCode::TOO_MANY_REQUESTS, "text/plain", "rate limited")
                .retry_after(retry_after_s)
        }
    }
}

async fn receive(State(core): State<Arc<Core>>, req: Incoming) -> Response {
    core.exchange(req, shape, receive_one).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_valid_v4() {
        let payload = json!({
            "version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "r", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://x",
            "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "annotations": {},
                        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": "c4a1d3b2e5f60718"}],
        });
        assert_eq!(v4_problems(&payload), Vec::<String>::new());
        assert_eq!(v4_problems(&json!({"version": "4"})).len(), 8);
    }
}
