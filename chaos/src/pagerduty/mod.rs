//! PagerDuty Events API emulator (providers.md §1, §8).
//!
//! - `POST /v2/enqueue`: v2 events, validated like PagerDuty (`validate`), applied to the
//!   stateful incident table (`incidents`), answered 202 with the dedup key.
//! - `POST /v2/change/enqueue`: change events (validated, recorded, never open incidents).
//! - `POST /generic/2010-04-15/create_event.json`: the legacy v1 API on the same table
//!   (200 on success, 403 when rate limited).
//! - `GET /incidents`: the table with each incident's history; `DELETE /incidents` empties it.
//! - Rate limit per routing key (off by default): 429 with no `Retry-After`, as documented.

pub mod incidents;
pub mod validate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_ms;
use crate::emulator::exchange::{Answer, Incoming, InjectedFailure};
use crate::emulator::{Core, Emulator, EmulatorKind, bind_loopback};
use crate::error::ChaosError;
use crate::rate_limit::{Limiter, Rate};
use incidents::{Event, EventAction, IncidentTable, IncidentsView, Outcome};
use validate::{Rejection, ValidEvent};

/// Emulator settings.
#[derive(Debug, Clone, Default)]
pub struct PagerDutyConfig {
    /// Events admitted per routing key; `None` = unlimited. PagerDuty staff quote ~120/min
    /// per integration key (`Rate::per_minute(120, 120)`).
    pub rate_limit: Option<Rate>,
}

struct PdState {
    core: Arc<Core>,
    table: Mutex<IncidentTable>,
    limiter: Option<Mutex<Limiter>>,
    origin: Instant,
    generated_keys: AtomicU64,
}

impl std::fmt::Debug for PdState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdState").finish_non_exhaustive()
    }
}

/// A running PagerDuty emulator.
#[derive(Debug)]
pub struct PagerDuty {
    emulator: Emulator,
    state: Arc<PdState>,
}

impl PagerDuty {
    /// Serves on `listener` until `shutdown` fires or the handle is dropped.
    pub fn start(
        listener: TcpListener,
        config: PagerDutyConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let state = Arc::new(PdState {
            core: core.clone(),
            table: Mutex::new(IncidentTable::default()),
            limiter: config.rate_limit.map(|rate| Mutex::new(Limiter::new(rate))),
            origin: Instant::now(),
            generated_keys: AtomicU64::new(0),
        });
        let routes = Router::new()
            .route("/v2/enqueue", post(enqueue_v2))
            .route("/v2/change/enqueue", post(enqueue_change))
            .route("/generic/2010-04-15/create_event.json", post(enqueue_v1))
            .route("/incidents", get(get_incidents).delete(clear_incidents))
            .with_state(state.clone());
        let emulator = Emulator::spawn(EmulatorKind::Pagerduty, listener, core, routes)?;
        Ok(Self { emulator, state })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(
        config: PagerDutyConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        Self::start(bind_loopback("pagerduty").await?, config, shutdown)
    }

    /// The shared emulator handle (address, request log, faults, shutdown).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The incident table.
    pub fn incidents(&self) -> IncidentsView {
        self.state.table().view()
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

impl PdState {
    fn table(&self) -> MutexGuard<'_, IncidentTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err(())` when `routing_key` is over its rate.
    fn admit(&self, routing_key: &str) -> Result<(), ()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(routing_key, now_ms)
            .map_err(|_| ())
    }

    fn generate_dedup_key(&self) -> String {
        let n = self.generated_keys.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", wall_ms(), n)
    }

    fn apply(&self, routing_key: String, dedup_key: String, ev: &ValidEvent) -> Outcome {
        self.table().apply(Event {
            routing_key,
            dedup_key,
            action: ev.action,
            summary: ev.summary.clone(),
            severity: ev.severity.clone(),
            time_ms: wall_ms(),
        })
    }

    fn enqueue_v2(&self, req: &Incoming) -> Answer {
        let ev = match validate::validate(&req.body) {
            Ok(ev) => ev,
            Err(rejection) => return Answer::json(StatusCode::BAD_REQUEST, &rejection.body()),
        };
        if self.admit(&ev.routing_key).is_err() {
            return throttled(None);
        }
        let dedup_key = match (&ev.dedup_key, ev.action) {
            (Some(key), _) => key.clone(),
            (None, _) => self.generate_dedup_key(),
        };
        let outcome = self.apply(ev.routing_key.clone(), dedup_key.clone(), &ev);
        Answer::json(
            StatusCode::ACCEPTED,
            &json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        )
        .processed()
        .details(outcome_details(&outcome, &dedup_key, ev.action))
    }

    fn enqueue_change(&self, req: &Incoming) -> Answer {
        let routing_key = match validate::validate_change(&req.body) {
            Ok(key) => key,
            Err(rejection) => return Answer::json(StatusCode::BAD_REQUEST, &rejection.body()),
        };
        if self.admit(&routing_key).is_err() {
            return throttled(None);
        }
        Answer::json(
            StatusCode::ACCEPTED,
            &json!({"status": "success", "message": "Change event processed"}),
        )
        .processed()
        .details(json!({"change_event": true}))
    }

    fn enqueue_v1(&self, req: &Incoming) -> Answer {
        let ev = match validate_v1(&req.body) {
            Ok(ev) => ev,
            Err(rejection) => return Answer::json(StatusCode::BAD_REQUEST, &rejection.body()),
        };
        if self.admit(&ev.routing_key).is_err() {
            // v1 signals its rate limit with 403.
            return Answer::json(
                StatusCode::FORBIDDEN,
                &json!({"status": "throttle event", "message": "Too many API calls at a time."}),
            );
        }
        let key = ev
            .dedup_key
            .clone()
            .unwrap_or_else(|| self.generate_dedup_key());
        let outcome = self.apply(ev.routing_key.clone(), key.clone(), &ev);
        Answer::json(
            StatusCode::OK,
            &json!({"status": "success", "message": "Event processed", "incident_key": key}),
        )
        .processed()
        .details(outcome_details(&outcome, &key, ev.action))
    }
}

fn outcome_details(outcome: &Outcome, dedup_key: &str, action: EventAction) -> Value {
    let (outcome, incident) = match outcome {
        Outcome::Opened { incident } => ("opened", Some(incident)),
        Outcome::Appended { incident } => ("appended", Some(incident)),
        Outcome::Dropped => ("dropped", None),
    };
    json!({"dedup_key": dedup_key, "action": action, "outcome": outcome, "incident": incident})
}

/// PagerDuty's 429: the body is undocumented (this one is our choice) and there is no
/// `Retry-After` unless a test's fault asks for one.
fn throttled(retry_after_s: Option<u64>) -> Answer {
    Answer::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"status": "throttle event", "message": "Too many API calls at a time."}),
    )
    .retry_after(retry_after_s)
}

/// Injected failures in PagerDuty's shape.
fn shape(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => Answer::json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &json!({"status": "Internal Server Error", "message": "Internal Server Error",
                    "errors": ["Internal Server Error"]}),
        ),
        InjectedFailure::RateLimited { retry_after_s } => throttled(retry_after_s),
    }
}

/// v1: `service_key`, `event_type`, `incident_key`, `description`.
fn validate_v1(body: &[u8]) -> Result<ValidEvent, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::Unrecognized("JSON parse error".into()))?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut errors = Vec::new();
    let service_key = text("service_key").unwrap_or_default();
    if service_key.chars().count() != validate::ROUTING_KEY_LEN {
        errors.push("Service key is the wrong length (should be 32 characters)".to_owned());
    }
    let action = text("event_type").as_deref().and_then(EventAction::parse);
    if action.is_none() {
        errors.push("Event type is invalid (must be one of: trigger, acknowledge, resolve)".into());
    }
    let incident_key = text("incident_key").filter(|k| !k.trim().is_empty());
    let description = text("description");
    match action {
        Some(EventAction::Trigger) => match &description {
            None => errors.push("Description is missing or blank".into()),
            Some(d) if d.chars().count() > validate::MAX_SUMMARY_CHARS => {
                errors.push("Description is too long (should be at most 1024 characters)".into());
            }
            Some(_) => {}
        },
        Some(_) if incident_key.is_none() => errors.push("Incident key is missing or blank".into()),
        _ => {}
    }
    match action {
        Some(action) if errors.is_empty() => Ok(ValidEvent {
            routing_key: service_key,
            action,
            dedup_key: incident_key,
            summary: description,
            severity: None,
        }),
        _ => Err(Rejection::Invalid(errors)),
    }
}

async fn enqueue_v2(State(pd): State<Arc<PdState>>, req: Incoming) -> Response {
    pd.core.exchange(req, shape, |req| pd.enqueue_v2(req)).await
}

async fn enqueue_change(State(pd): State<Arc<PdState>>, req: Incoming) -> Response {
    pd.core
        .exchange(req, shape, |req| pd.enqueue_change(req))
        .await
}

async fn enqueue_v1(State(pd): State<Arc<PdState>>, req: Incoming) -> Response {
    pd.core.exchange(req, shape, |req| pd.enqueue_v1(req)).await
}

async fn get_incidents(State(pd): State<Arc<PdState>>) -> Response {
    axum::Json(pd.table().view()).into_response()
}

async fn clear_incidents(State(pd): State<Arc<PdState>>) -> StatusCode {
    *pd.table() = IncidentTable::default();
    StatusCode::NO_CONTENT
}
