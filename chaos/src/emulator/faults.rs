//! The fault switch: how the next requests should fail, settable over HTTP and from Rust.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ChaosError;

/// The longest a `hang` holds a request: long enough for any client timeout we use, short
/// enough that a forgotten fault cannot pin connections for the rest of a run.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// The largest `Retry-After` an injected 429 may carry.
pub const MAX_RETRY_AFTER_S: u64 = 3600;

/// How the emulator treats a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FaultMode {
    /// Behave like the provider.
    #[default]
    #[serde(rename = "ok")]
    Ok,
    /// Answer a 5xx (in the provider's error shape) without applying the request.
    #[serde(rename = "error5xx")]
    Error5xx,
    /// Answer the provider's throttling response (429, or Vonage's HTTP 200 status "1")
    /// without applying the request.
    #[serde(rename = "rate_limit")]
    RateLimit,
    /// Record and apply the request, then hold the answer until the hold elapses (the client
    /// gives up first); the connection is then closed without an answer.
    #[serde(rename = "hang")]
    Hang,
    /// Record and apply the request, then close the connection without an answer: the
    /// ambiguous failure.
    #[serde(rename = "drop_after_processing")]
    DropAfterProcessing,
}

/// The body of `PUT /faults`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub mode: FaultMode,
    /// `Retry-After` for `rate_limit`, in seconds; when absent, the provider's own habit
    /// (Slack sends 1; PagerDuty and Twilio send none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// How many requests the fault affects before the switch returns to `ok`; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// How long `hang` holds a request, in milliseconds (default and maximum [`MAX_HOLD`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
    /// The status `error5xx` answers (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl FaultSpec {
    /// A fault of `mode` for every request until changed.
    pub fn new(mode: FaultMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Limits the fault to the next `count` requests.
    #[must_use]
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Sets the `Retry-After` of `rate_limit`.
    #[must_use]
    pub fn retry_after_s(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// Sets how long `hang` holds a request.
    #[must_use]
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold_ms = Some(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the status of `error5xx`.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Refuses out-of-range fields, naming them.
    pub fn validate(&self) -> Result<(), ChaosError> {
        if let Some(status) = self.status
            && !(500..=599).contains(&status)
        {
            return Err(ChaosError::InvalidFault {
                field: "status",
                reason: format!("must be a 5xx status, got {status}"),
            });
        }
        if let Some(hold_ms) = self.hold_ms
            && u128::from(hold_ms) > MAX_HOLD.as_millis()
        {
            return Err(ChaosError::InvalidFault {
                field: "hold_ms",
                reason: format!("must be at most {} ms, got {hold_ms}", MAX_HOLD.as_millis()),
            });
        }
        if let Some(seconds) = self.retry_after_s
            && seconds > MAX_RETRY_AFTER_S
        {
            return Err(ChaosError::InvalidFault {
                field: "retry_after_s",
                reason: format!("must be at most {MAX_RETRY_AFTER_S}, got {seconds}"),
            });
        }
        Ok(())
    }
}

/// The fault applied to one request, as the exchange executes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    None,
    ServerError { status: u16 },
    RateLimited { retry_after_s: Option<u64> },
    Hang { hold: Duration },
    DropAfterProcessing,
}

impl Injected {
    /// The mode this came from, for the log.
    pub fn mode(self) -> FaultMode {
        match self {
            Self::None => FaultMode::Ok,
            Self::ServerError { .. } => FaultMode::Error5xx,
            Self::RateLimited { .. } => FaultMode::RateLimit,
            Self::Hang { .. } => FaultMode::Hang,
            Self::DropAfterProcessing => FaultMode::DropAfterProcessing,
        }
    }
}

/// The current fault; `count` in the stored spec is what remains.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    spec: Mutex<FaultSpec>,
}

impl FaultSwitch {
    /// Replaces the current fault.
    pub fn set(&self, spec: FaultSpec) -> Result<(), ChaosError> {
        spec.validate()?;
        *self.lock() = spec;
        Ok(())
    }

    /// Back to `ok`.
    pub fn clear(&self) {
        *self.lock() = FaultSpec::default();
    }

    /// The current fault (with the remaining count).
    pub fn get(&self) -> FaultSpec {
        self.lock().clone()
    }

    /// Decides the fault for one request, consuming one from `count`.
    pub fn take(&self) -> Injected {
        let mut spec = self.lock();
        if spec.mode == FaultMode::Ok {
            return Injected::None;
        }
        if let Some(remaining) = spec.count.as_mut() {
            if *remaining == 0 {
                *spec = FaultSpec::default();
                return Injected::None;
            }
            *remaining -= 1;
        }
        let injected = match spec.mode {
            FaultMode::Ok => Injected::None,
            FaultMode::Error5xx => Injected::ServerError {
                status: spec.status.unwrap_or(503),
            },
            FaultMode::RateLimit => Injected::RateLimited {
                retry_after_s: spec.retry_after_s,
            },
            FaultMode::Hang => Injected::Hang {
                hold: spec.hold_ms.map_or(MAX_HOLD, Duration::from_millis),
            },
            FaultMode::DropAfterProcessing => Injected::DropAfterProcessing,
        };
        if spec.count == Some(0) {
            *spec = FaultSpec::default();
        }
        injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSpec> {
        // Every mutation replaces or decrements in one step; a poisoned lock is still consistent.
        self.spec
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limits_the_fault_then_the_switch_returns_to_ok() {
        let switch = FaultSwitch::default();
        switch
            .set(FaultSpec::new(FaultMode::Error5xx).count(2))
            .unwrap();
        assert_eq!(switch.take(), Injected::ServerError { status: 503 });
        assert_eq!(switch.take(), Injected::ServerError { status: 503 });
        assert_eq!(switch.take(), Injected::None);
        assert_eq!(switch.get(), FaultSpec::default());
    }

    #[test]
    fn spec_parses_the_documented_json() {
        let spec: FaultSpec =
            serde_json::from_str(r#"{"mode":"rate_limit","retry_after_s":7,"count":1}"#).unwrap();
        assert_eq!(
            spec,
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(7)
                .count(1)
        );
        let spec: FaultSpec = serde_json::from_str(r#"{"mode":"error5xx"}"#).unwrap();
        assert_eq!(spec.mode, FaultMode::Error5xx);
        assert!(serde_json::from_str::<FaultSpec>(r#"{"mode":"ok","bogus":1}"#).is_err());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let err = FaultSpec::new(FaultMode::Error5xx)
            .status(404)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`status`"), "{err}");
        let err = FaultSpec::new(FaultMode::Hang)
            .hold(MAX_HOLD * 2)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`hold_ms`"), "{err}");
    }
}
