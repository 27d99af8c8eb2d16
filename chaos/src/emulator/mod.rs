//! The emulator core every provider shares: an HTTP server on a given listener, the request
//! log, the fault switch, and the control routes (`GET|DELETE /requests`, `GET|PUT|DELETE
//! /faults`).

pub mod exchange;
pub mod faults;
pub mod log;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::ChaosError;
use exchange::{Answer, Incoming};
use faults::{FaultSpec, FaultSwitch};
use log::{RecordedRequest, RequestLog};

/// How long shutdown waits for open connections to finish their current exchange.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which provider an emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmulatorKind {
    Pagerduty,
    Slack,
    Twilio,
    Vonage,
    Webhook,
    Smtp,
}

impl EmulatorKind {
    /// The name used in `emulators.json` and `cluster.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pagerduty => "pagerduty",
            Self::Slack => "slack",
            Self::Twilio => "twilio",
            Self::Vonage => "vonage",
            Self::Webhook => "webhook",
            Self::Smtp => "smtp",
        }
    }
}

/// State shared by an emulator's handlers: its log, its fault switch, its shutdown token.
#[derive(Debug)]
pub struct Core {
    pub log: RequestLog,
    pub faults: FaultSwitch,
    /// Cancelled when the emulator stops; bounds every held request.
    pub shutdown: CancellationToken,
}

impl Core {
    pub(crate) fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            log: RequestLog::default(),
            faults: FaultSwitch::default(),
            shutdown,
        })
    }
}

/// A running emulator. Dropping it stops the server (without waiting); [`Emulator::shutdown`]
/// stops it and waits for the drain.
#[derive(Debug)]
pub struct Emulator {
    kind: EmulatorKind,
    addr: SocketAddr,
    core: Arc<Core>,
    task: Option<JoinHandle<()>>,
    _stop_on_drop: DropGuard,
}

impl Emulator {
    /// Serves `provider` routes plus the control routes on `listener` until `shutdown`
    /// (or the returned handle's drop) fires.
    pub(crate) fn spawn(
        kind: EmulatorKind,
        listener: TcpListener,
        core: Arc<Core>,
        provider: Router<Arc<Core>>,
    ) -> Result<Self, ChaosError> {
        let addr = listener.local_addr().map_err(ChaosError::LocalAddr)?;
        let router = provider
            .merge(control_routes(core.clone()))
            .fallback(unknown_route)
            .with_state(core.clone());
        let shutdown = core.shutdown.clone();
        let task = tokio::spawn(serve::accept_loop(kind, listener, router, shutdown.clone()));
        tracing::info!(kind = kind.as_str(), %addr, "emulator listening");
        Ok(Self {
            kind,
            addr,
            core,
            task: Some(task),
            _stop_on_drop: shutdown.drop_guard(),
        })
    }

    /// Which provider this is.
    pub fn kind(&self) -> EmulatorKind {
        self.kind
    }

    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.core.log.snapshot()
    }

    /// How many requests are recorded (without copying them, unlike [`Self::requests`]).
    pub fn request_count(&self) -> usize {
        self.core.log.len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.core.log.clear();
    }

    /// The fault switch (`set`, `clear`, `get`).
    pub fn faults(&self) -> &FaultSwitch {
        &self.core.faults
    }

    /// Stops accepting, releases held requests, and waits (bounded by [`SHUTDOWN_GRACE`]
    /// per connection) for the server task to end.
    pub async fn shutdown(mut self) {
        self.core.shutdown.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::warn!(kind = self.kind.as_str(), %err, "emulator task failed");
        }
    }
}

/// Binds `127.0.0.1:0`.
pub(crate) async fn bind_loopback(what: &'static str) -> Result<TcpListener, ChaosError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| ChaosError::Bind {
            what,
            addr: "127.0.0.1:0".into(),
            source,
        })
}

/// The routes every emulator serves besides its provider's.
pub(crate) fn control_routes<S>(core: Arc<Core>) -> Router<S> {
    Router::new()
        .route("/requests", get(list_requests).delete(clear_requests))
        .route(
            "/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .with_state(core)
}

async fn list_requests(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.log.snapshot()).into_response()
}

async fn clear_requests(State(core): State<Arc<Core>>) -> StatusCode {
    core.log.clear();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.faults.get()).into_response()
}

async fn put_faults(State(core): State<Arc<Core>>, body: bytes::Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(err) => return control_error(&format!("invalid fault spec: {err}")),
    };
    match core.faults.set(spec) {
        Ok(()) => axum::Json(core.faults.get()).into_response(),
        Err(err) => control_error(&err.to_string()),
    }
}

async fn delete_faults(State(core): State<Arc<Core>>) -> StatusCode {
    core.faults.clear();
    StatusCode::NO_CONTENT
}

fn control_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Unknown paths are recorded (a misconfigured client shows up in the log) and answered 404.
async fn unknown_route(State(core): State<Arc<Core>>, req: Incoming) -> Response {
    let answer = Answer::text(StatusCode::NOT_FOUND, "text/plain", "not found");
    core.record_plain(&req, answer)
}
