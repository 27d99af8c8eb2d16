//! Twilio Programmable Messaging emulator (providers.md §4.2, §8).
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form-encoded, HTTP Basic
//!   (`AccountSid:AuthToken` or `SK…:secret`). 201 with the Message resource (`sid` `SM…`,
//!   `status` `queued`, or `accepted` with a messaging service); errors in Twilio's envelope
//!   `{code, message, more_info, status}`; 429/20429 when over the configured rate. The log
//!   records each message's encoding and segment count.
//! - `GET /2010-04-01/Accounts/{AccountSid}/Messages.json[?To=…]`: the messages sent (what
//!   a client checks before resending after an ambiguous failure).
//!
//! Not emulated: `StatusCallback` delivery reports, MMS, scheduling.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{rfc2822, wall_ms};
use crate::emulator::exchange::{Answer, Incoming, InjectedFailure};
use crate::emulator::{Core, Emulator, EmulatorKind, bind_loopback};
use crate::error::ChaosError;
use crate::rate_limit::{Limiter, Rate};
use crate::sms::{Segments, segments};

/// Twilio's Body limit (error 21617 past it).
pub const MAX_BODY_CHARS: usize = 1600;

/// Emulator settings. Numbers are E.164 strings.
#[derive(Debug, Clone, Default)]
pub struct TwilioConfig {
    /// The accepted auth token (or API key secret); `None` accepts any non-empty one.
    pub auth_token: Option<String>,
    /// Messages admitted per account; `None` = unlimited (Twilio limits concurrency, which
    /// this approximates as a rate).
    pub rate: Option<Rate>,
    /// Recipients that replied STOP (21610).
    pub unsubscribed: HashSet<String>,
    /// Recipients that are landlines (21614).
    pub landlines: HashSet<String>,
    /// `To` prefixes outside the enabled geo permissions (21408), e.g. `+882`.
    pub blocked_prefixes: Vec<String>,
    /// The account's sending numbers; `None` accepts any valid `From` (21606 otherwise).
    pub from_numbers: Option<HashSet<String>>,
}

/// A message the emulator accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwilioMessage {
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub num_segments: usize,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    pub created_ms: i64,
}

struct TwilioState {
    core: Arc<Core>,
    config: TwilioConfig,
    limiter: Option<Mutex<Limiter>>,
    messages: Mutex<Vec<TwilioMessage>>,
    next_sid: AtomicU64,
    origin: Instant,
}

impl std::fmt::Debug for TwilioState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioState").finish_non_exhaustive()
    }
}

/// A running Twilio emulator.
#[derive(Debug)]
pub struct Twilio {
    emulator: Emulator,
    state: Arc<TwilioState>,
}

impl Twilio {
    /// Serves on `listener` until `shutdown` fires or the handle is dropped.
    pub fn start(
        listener: TcpListener,
        config: TwilioConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let state = Arc::new(TwilioState {
            core: core.clone(),
            limiter: config.rate.map(|r| Mutex::new(Limiter::new(r))),
            config,
            messages: Mutex::default(),
            next_sid: AtomicU64::new(0),
            origin: Instant::now(),
        });
        let routes = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create_message).get(list_messages),
            )
            .with_state(state.clone());
        let emulator = Emulator::spawn(EmulatorKind::Twilio, listener, core, routes)?;
        Ok(Self { emulator, state })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(
        config: TwilioConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        Self::start(bind_loopback("twilio").await?, config, shutdown)
    }

    /// The shared emulator handle.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Every accepted message.
    pub fn messages(&self) -> Vec<TwilioMessage> {
        self.state.messages().clone()
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

/// Twilio's error envelope.
fn error(status: StatusCode, code: u32, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        }),
    )
}

fn bad_request(code: u32, message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn is_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A dialable E.164 number: `+`, then 8 to 15 digits, the first not 0, and exactly 11 for
/// the North American plan (`+1`); a `whatsapp:` prefix is allowed. (Twilio checks the
/// numbering plan itself; this is the part that catches typos such as `+1555`.)
pub fn is_e164(number: &str) -> bool {
    let number = number.strip_prefix("whatsapp:").unwrap_or(number);
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    let plan_ok = !digits.starts_with('1') || digits.len() == 11;
    (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
        && plan_ok
}

/// An alphanumeric sender id: 1–11 characters, letters, digits and spaces, not all digits.
fn is_alphanumeric_sender(from: &str) -> bool {
    (1..=11).contains(&from.len())
        && from.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && from.chars().any(|c| c.is_ascii_alphabetic())
}

impl TwilioState {
    fn messages(&self) -> MutexGuard<'_, Vec<TwilioMessage>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticate(&self, account: &str, req: &Incoming) -> Result<(), Answer> {
        if !is_account_sid(account) {
            return Err(error(
                StatusCode::NOT_FOUND,
                20404,
                &format!("The requested resource {} was not found", req.path),
            ));
        }
        let unauthorized = || error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        let credentials = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or_else(unauthorized)?;
        let (user, secret) = credentials.split_once(':').ok_or_else(unauthorized)?;
        let user_ok = user == account || user.starts_with("SK");
        let secret_ok = match &self.config.auth_token {
            Some(token) => secret == token,
            None => !secret.is_empty(),
        };
        if user_ok && secret_ok {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }

    fn create(&self, account: &str, req: &Incoming) -> Answer {
        if let Err(answer) = self.authenticate(account, req) {
            return answer;
        }
        if let Some(limiter) = &self.limiter {
            let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            let admitted = limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .check(account, now);
            if admitted.is_err() {
                return too_many_requests(None);
            }
        }
        let form = req.form();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let (to, from, service) = (field("To"), field("From"), field("MessagingServiceSid"));
        let (body, media) = (field("Body"), field("MediaUrl").or(field("ContentSid")));
        let to = match self.check_to(to.as_deref()) {
            Ok(to) => to,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.check_from(from.as_deref(), service.as_deref()) {
            return answer;
        }
        let body = body.unwrap_or_default();
        if body.is_empty() && media.is_none() {
            return bad_request(21602, "Message body is required.");
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return bad_request(
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            );
        }
        self.accept(account, to, from, service, body)
    }

    fn check_to(&self, to: Option<&str>) -> Result<String, Answer> {
        let Some(to) = to else {
            return Err(bad_request(21604, "A 'To' phone number is required."));
        };
        if !is_e164(to) {
            return Err(bad_request(
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            ));
        }
        if self
            .config
            .blocked_prefixes
            .iter()
            .any(|p| to.starts_with(p.as_str()))
        {
            return Err(bad_request(
                21408,
                &format!(
                    "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                ),
            ));
        }
        if self.config.landlines.contains(to) {
            return Err(bad_request(
                21614,
                &format!("'To' number {to} is not a valid mobile number"),
            ));
        }
        if self.config.unsubscribed.contains(to) {
            return Err(bad_request(
                21610,
                "Attempt to send to unsubscribed recipient",
            ));
        }
        Ok(to.to_owned())
    }

    fn check_from(&self, from: Option<&str>, service: Option<&str>) -> Result<(), Answer> {
        match (from, service) {
            (None, None) => Err(bad_request(21603, "A 'From' phone number is required.")),
            (None, Some(_)) => Ok(()),
            (Some(from), _) if !is_e164(from) && !is_alphanumeric_sender(from) => Err(bad_request(
                21212,
                &format!(
                    "The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."
                ),
            )),
            (Some(from), _) => match &self.config.from_numbers {
                Some(owned) if !owned.contains(from) => Err(bad_request(
                    21606,
                    &format!(
                        "The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."
                    ),
                )),
                _ => Ok(()),
            },
        }
    }

    fn accept(
        &self,
        account: &str,
        to: String,
        from: Option<String>,
        service: Option<String>,
        body: String,
    ) -> Answer {
        let now = wall_ms();
        let n = self.next_sid.fetch_add(1, Ordering::Relaxed);
        let sid = format!("SM{:016x}{n:016x}", now);
        let seg: Segments = segments(&body);
        let status = if service.is_some() {
            "accepted"
        } else {
            "queued"
        };
        let date = rfc2822(now);
        let uri = format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json");
        let resource = json!({
            "account_sid": account, "api_version": "2010-04-01", "body": body,
            "date_created": date, "date_sent": null, "date_updated": date,
            "direction": "outbound-api", "error_code": null, "error_message": null,
            "from": from, "messaging_service_sid": service,
            "num_media": "0", "num_segments": seg.segments.to_string(),
            "price": null, "price_unit": "USD", "sid": sid, "status": status,
            "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json")},
            "to": to, "uri": uri,
        });
        self.messages().push(TwilioMessage {
            sid: sid.clone(),
            account_sid: account.to_owned(),
            to,
            from,
            messaging_service_sid: service,
            body,
            num_segments: seg.segments,
            encoding: serde_json::to_value(seg.encoding)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            created_ms: now,
        });
        Answer::json(StatusCode::CREATED, &resource)
            .processed()
            .details(json!({"sid": sid, "segments": seg}))
    }
}

fn too_many_requests(retry_after_s: Option<u64>) -> Answer {
    error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests").retry_after(retry_after_s)
}

fn shape(failure: InjectedFailure) -> Answer {
    match failure {
        InjectedFailure::ServerError { status } => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            20500,
            "Internal Server Error",
        ),
        InjectedFailure::RateLimited { retry_after_s } => too_many_requests(retry_after_s),
    }
}

async fn create_message(
    State(twilio): State<Arc<TwilioState>>,
    Path(account): Path<String>,
    req: Incoming,
) -> Response {
    twilio
        .core
        .exchange(req, shape, |req| twilio.create(&account, req))
        .await
}

async fn list_messages(
    State(twilio): State<Arc<TwilioState>>,
    Path(account): Path<String>,
    req: Incoming,
) -> Response {
    if let Err(answer) = twilio.authenticate(&account, &req) {
        return (answer.status, answer.body).into_response();
    }
    let to = req.query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned())
    });
    let messages: Vec<Value> = twilio
        .messages()
        .iter()
        .filter(|m| m.account_sid == account && to.as_ref().is_none_or(|t| &m.to == t))
        .map(|m| {
            json!({"sid": m.sid, "to": m.to, "from": m.from, "body": m.body,
                   "status": "queued", "num_segments": m.num_segments.to_string(),
                   "date_created": rfc2822(m.created_ms)})
        })
        .collect();
    axum::Json(json!({"messages": messages, "page": 0})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_and_sender_ids() {
        assert!(is_e164("+14155550100"));
        assert!(is_e164("whatsapp:+447700900000"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+1555"));
        assert!(!is_e164("+1415555010"));
        assert!(is_e164("+4930123456"));
        assert!(!is_e164("+0123456"));
        assert!(!is_e164("+1234567890123456"));
        assert!(is_alphanumeric_sender("Tocsin"));
        assert!(!is_alphanumeric_sender("123"));
        assert!(!is_alphanumeric_sender("TooLongSenderId"));
    }
}
