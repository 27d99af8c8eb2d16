//! One provider request end to end: read it, consult the fault switch, let the provider
//! process it, record it, and answer (or withhold the answer).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Core;
use super::faults::Injected;
use super::log::{RecordedAnswer, RecordedRequest};
use crate::clock::wall_ms;

/// The largest request body read. PagerDuty's own limit is 512 KB; anything past 4 MiB is
/// refused with 413 before it reaches a provider.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Closes the connection a request arrived on, without an answer. Inserted into every
/// request's extensions by the connection loop.
#[derive(Debug, Clone)]
pub struct ConnKill(pub CancellationToken);

/// A request as providers see it.
#[derive(Debug)]
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    kill: Option<ConnKill>,
}

impl Incoming {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the content type is `application/x-www-form-urlencoded`.
    pub fn is_form(&self) -> bool {
        self.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
    }

    /// The body parsed as a form: pairs in order (repeated keys kept).
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
        Ok(Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
            kill: parts.extensions.get::<ConnKill>().cloned(),
        })
    }
}

/// A provider's answer, plus what it wants logged beside it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    pub retry_after_s: Option<u64>,
    /// Whether the request changed the provider's state.
    pub processed: bool,
    /// Provider-specific facts for the log.
    pub details: serde_json::Value,
}

impl Answer {
    /// A JSON answer that did not change state.
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
            retry_after_s: None,
            processed: false,
            details: serde_json::Value::Null,
        }
    }

    /// A plain-text answer that did not change state.
    pub fn text(status: StatusCode, content_type: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type,
            body: body.to_owned(),
            retry_after_s: None,
            processed: false,
            details: serde_json::Value::Null,
        }
    }

    /// Marks the request as applied.
    #[must_use]
    pub fn processed(mut self) -> Self {
        self.processed = true;
        self
    }

    /// Adds a `Retry-After` header.
    #[must_use]
    pub fn retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after_s = seconds;
        self
    }

    /// Attaches provider facts for the log.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The injected faults a provider must shape like itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// An injected 5xx with this status.
    ServerError { status: u16 },
    /// An injected throttle; `retry_after_s` as configured on the switch.
    RateLimited { retry_after_s: Option<u64> },
}

impl Core {
    /// Runs one request through the fault switch and the provider. `shape` answers injected
    /// failures in the provider's shape; `process` applies the request and answers it.
    pub async fn exchange(
        &self,
        req: Incoming,
        shape: impl FnOnce(InjectedFailure) -> Answer,
        process: impl FnOnce(&Incoming) -> Answer,
    ) -> Response {
        let injected = self.faults.take();
        let answer = match injected {
            Injected::None | Injected::Hang { .. } | Injected::DropAfterProcessing => process(&req),
            Injected::ServerError { status } => shape(InjectedFailure::ServerError { status }),
            Injected::RateLimited { retry_after_s } => {
                shape(InjectedFailure::RateLimited { retry_after_s })
            }
        };
        let delivered = !matches!(
            injected,
            Injected::Hang { .. } | Injected::DropAfterProcessing
        );
        self.record(&req, injected, &answer, delivered);
        match injected {
            Injected::Hang { hold } => {
                tokio::select! {
                    () = tokio::time::sleep(hold) => {}
                    () = self.shutdown.cancelled() => {}
                }
                withhold(req.kill).await
            }
            Injected::DropAfterProcessing => withhold(req.kill).await,
            _ => answer.into_response(),
        }
    }

    /// Records a request that bypassed the fault switch (unknown paths, method errors).
    pub fn record_plain(&self, req: &Incoming, answer: Answer) -> Response {
        self.record(req, Injected::None, &answer, true);
        answer.into_response()
    }

    fn record(&self, req: &Incoming, injected: Injected, answer: &Answer, delivered: bool) {
        self.log.push(RecordedRequest {
            seq: 0,
            time_ms: wall_ms(),
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: header_map(&req.headers),
            body: req.body_text(),
            fault: injected.mode(),
            processed: answer.processed,
            answer: RecordedAnswer {
                status: answer.status.as_u16(),
                body: answer.body.clone(),
                delivered,
                retry_after_s: answer.retry_after_s,
            },
            details: answer.details.clone(),
        });
    }
}

/// Closes the request's connection without an answer. The connection loop drops the hyper
/// connection (and with it this future) as soon as the token fires, so this never returns
/// in practice; if it has no connection to close it answers 500 rather than pretending.
async fn withhold(kill: Option<ConnKill>) -> Response {
    match kill {
        Some(ConnKill(token)) => {
            token.cancel();
            std::future::pending::<Response>().await
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}
