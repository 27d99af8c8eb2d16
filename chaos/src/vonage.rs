//! Vonage (Nexmo) SMS API emulator (providers.md §4.4). Chosen over Amazon SNS: its quirk —
//! HTTP 200 for every outcome, the result in `messages[].status` — is the one a delivery
//! engine most easily gets wrong, and it needs no SigV4.
//!
//! `POST /sms/json`, form or JSON: `api_key`, `api_secret`, `from`, `to`, `text`, optional
//! `type` (`text` | `unicode`) and `client-ref`. Success: `status` "0" per part. Errors:
//! "1" throttled (over the configured rate, or an injected `rate_limit`), "2" missing
//! parameter, "3" invalid parameter, "4" bad credentials, "7" number barred, "9" partner
//! quota (no credit), "12" message too long. An injected `error5xx` answers a real 5xx (a
//! gateway failure in front of the API).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_ms;
use crate::emulator::exchange::{Answer, Incoming, InjectedFailure};
use crate::emulator::{Core, Emulator, EmulatorKind, bind_loopback};
use crate::error::ChaosError;
use crate::rate_limit::{Limiter, Rate};
use crate::sms::{Encoding, segments};

/// Longest `text` accepted before status 12 (unverified; Vonage documents the status, not
/// the exact length).
pub const MAX_TEXT_CHARS: usize = 3200;

/// Price charged per part, as a string like Vonage's.
const PRICE_PER_PART: &str = "0.03330000";

/// Emulator settings.
#[derive(Debug, Clone, Default)]
pub struct VonageConfig {
    /// Accepted `(api_key, api_secret)`; `None` accepts any non-empty pair.
    pub credentials: Option<(String, String)>,
    /// Requests per account (`api_key`); `None` = unlimited. Vonage: ~30/s.
    pub rate: Option<Rate>,
    /// Destination numbers that are barred (status 7).
    pub barred: HashSet<String>,
}

struct VonageState {
    core: Arc<Core>,
    config: VonageConfig,
    limiter: Option<Mutex<Limiter>>,
    out_of_credit: AtomicBool,
    next_id: AtomicU64,
    origin: Instant,
}

impl std::fmt::Debug for VonageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageState").finish_non_exhaustive()
    }
}

/// A running Vonage emulator.
#[derive(Debug)]
pub struct Vonage {
    emulator: Emulator,
    state: Arc<VonageState>,
}

impl Vonage {
    /// Serves on `listener` until `shutdown` fires or the handle is dropped.
    pub fn start(
        listener: TcpListener,
        config: VonageConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let state = Arc::new(VonageState {
            core: core.clone(),
            limiter: config.rate.map(|r| Mutex::new(Limiter::new(r))),
            config,
            out_of_credit: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            origin: Instant::now(),
        });
        let routes = Router::new()
            .route("/sms/json", post(send_sms))
            .with_state(state.clone());
        let emulator = Emulator::spawn(EmulatorKind::Vonage, listener, core, routes)?;
        Ok(Self { emulator, state })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(
        config: VonageConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        Self::start(bind_loopback("vonage").await?, config, shutdown)
    }

    /// The shared emulator handle.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Makes every send answer status 9 (quota) until set back.
    pub fn set_out_of_credit(&self, out: bool) {
        self.state.out_of_credit.store(out, Ordering::Relaxed);
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

/// Vonage's error shape: HTTP 200, one message with a non-zero status.
fn failed(status: &str, error_text: &str) -> Answer {
    Answer::json(
        StatusCode::OK,
        &json!({"message-count": "1", "messages": [{"status": status, "error-text": error_text}]}),
    )
}

fn throttled() -> Answer {
    failed(
        "1",
        "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
    )
}

fn params(req: &Incoming) -> Option<Vec<(String, String)>> {
    if req
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&req.body) else {
            return None;
        };
        return Some(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        );
    }
    let mut pairs = req.form();
    if let Some(query) = &req.query {
        pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    Some(pairs)
}

impl VonageState {
    fn send(&self, req: &Incoming) -> Answer {
        let Some(params) = params(req) else {
            return failed("3", "Invalid JSON body");
        };
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let (Some(key), Some(secret)) = (get("api_key"), get("api_secret")) else {
            return failed("2", "Missing api_key");
        };
        let credentials_ok = match &self.config.credentials {
            Some((k, s)) => k == key && s == secret,
            None => true,
        };
        if !credentials_ok {
            return failed("4", "Bad Credentials");
        }
        if let Some(limiter) = &self.limiter {
            let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            let admitted = limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .check(key, now);
            if admitted.is_err() {
                return throttled();
            }
        }
        let Some(from) = get("from") else {
            return failed("2", "Missing from param");
        };
        let Some(to) = get("to") else {
            return failed("2", "Missing to param");
        };
        let Some(text) = get("text") else {
            return failed("2", "Missing text param");
        };
        let digits = to.strip_prefix('+').unwrap_or(to);
        if !(7..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return failed("3", "Invalid to param");
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return failed("12", "Message too long");
        }
        if self.config.barred.contains(digits) || self.config.barred.contains(to) {
            return failed("7", "Number barred");
        }
        if self.out_of_credit.load(Ordering::Relaxed) {
            return failed("9", "Partner quota exceeded");
        }
        let mut seg = segments(text);
        if get("type") == Some("unicode") && seg.encoding == Encoding::Gsm7 {
            seg = segments_ucs2(text);
        }
        let client_ref = get("client-ref");
        let now = wall_ms();
        let messages: Vec<Value> = (0..seg.segments)
            .map(|_| {
                let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut m = json!({
                    "to": digits, "message-id": format!("{:08X}{n:08X}", now & 0xFFFF_FFFF),
                    "status": "0", "remaining-balance": "10.00000000",
                    "message-price": PRICE_PER_PART, "network": "23410",
                });
                if let Some(r) = client_ref {
                    m["client-ref"] = json!(r);
                }
                m
            })
            .collect();
        Answer::json(
            StatusCode::OK,
            &json!({"message-count": seg.segments.to_string(), "messages": messages}),
        )
        .processed()
        .details(json!({"from": from, "to": digits, "segments": seg}))
    }
}

/// Segments when the client asked for `type=unicode` on GSM-7 text.
fn segments_ucs2(text: &str) -> crate::sms::Segments {
    let units = text.encode_utf16().count();
    crate::sms::Segments {
        encoding: Encoding::Ucs2,
        units,
        segments: if units <= 70 { 1 } else { units.div_ceil(67) },
    }
}

fn shape(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => Answer::text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "text/html",
            "<html><body><h1>Service Unavailable</h1></body></html>",
        ),
        // Vonage throttles in the body, with HTTP 200.
        InjectedFailure::RateLimited { .. } => throttled(),
    }
}

async fn send_sms(State(vonage): State<Arc<VonageState>>, req: Incoming) -> Response {
    vonage
        .core
        .exchange(req, shape, |req| vonage.send(req))
        .await
}
