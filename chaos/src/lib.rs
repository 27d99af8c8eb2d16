//! Provider emulators for Tocsin's tests, `tocsin dev` and the chaos harness: local servers
//! that speak PagerDuty's, Slack's, Twilio's and Vonage's real HTTP contracts (including their
//! errors), a generic webhook sink and an SMTP sink, each recording what it received and
//! failing on command.
//!
//! # Layout
//!
//! - [`emulator`]: the core every emulator shares. [`emulator::Emulator`] is the handle (its
//!   address, request log, fault switch, shutdown); `emulator::exchange` runs one request
//!   through the fault switch and the provider and records it; `emulator::log` is the bounded
//!   request log served at `GET /requests`; `emulator::faults` is the fault switch served at
//!   `PUT /faults`; `emulator::serve` is the per-connection loop that lets a handler close its
//!   connection without answering.
//! - Providers, each a thin axum adapter over pure validation and state:
//!   [`pagerduty`] (Events API v2 and v1, stateful incident table), [`slack`] (incoming
//!   webhooks, `chat.postMessage`, `chat.update`), [`twilio`] (Messages.json), [`vonage`] (SMS
//!   API, HTTP 200 with per-message status), [`webhook`] (Alertmanager v4 sink), [`smtp`]
//!   (plain SMTP sink with an HTTP companion).
//! - Pure helpers: [`rate_limit`] (GCRA limiter with an injected clock), [`sms`] (GSM-7 /
//!   UCS-2 segment counting).
//! - [`set`]: starts every emulator on loopback and writes `emulators.json`; [`remote`]
//!   reads that manifest and drives emulators running in another process.
//! - [`clock`]: the crate's one wall-clock read.
//! - [`harness`]: the chaos harness (issue #7): launches a real cluster from the `tocsin`
//!   binary, runs a seeded workload and fault plan (SCENARIOS.md), and checks the emulators'
//!   logs and the store's committed log against an independent oracle.
//!
//! # Use from a test
//!
//! ```no_run
//! use tocsin_chaos::pagerduty::{PagerDuty, PagerDutyConfig};
//! use tocsin_chaos::{FaultMode, FaultSpec};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), tocsin_chaos::ChaosError> {
//! let stop = CancellationToken::new(); // cancelling it stops every emulator started with it
//! let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop).await?; // 127.0.0.1:0
//! let events_url = pd.emulator().url("/v2/enqueue"); // point the client here
//! pd.emulator()
//!     .faults()
//!     .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))?;
//! // ... exercise the client ...
//! let log = pd.emulator().requests(); // what arrived, when, and what was answered
//! let per_key = pd.incidents().per_dedup_key(); // incidents opened per dedup key
//! # let _ = (events_url, log, per_key);
//! pd.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # HTTP surface shared by every emulator
//!
//! - `GET /requests`: the JSON list of [`RecordedRequest`]s; `DELETE /requests` clears it.
//! - `GET /faults`, `PUT /faults` with a [`FaultSpec`] (`{"mode": "ok" | "error5xx" |
//!   "rate_limit" | "hang" | "drop_after_processing", "retry_after_s": N, "count": N,
//!   "hold_ms": N, "status": 5xx}`), `DELETE /faults` (back to `ok`).
//! - Any other unknown path: recorded, answered 404.
//!
//! No library code reads the environment, installs signal handlers or exits; the binary
//! (`src/main.rs`) does.

pub mod clock;
pub mod emulator;
pub mod error;
pub mod harness;
pub mod pagerduty;
pub mod rate_limit;
pub mod remote;
pub mod set;
pub mod slack;
pub mod sms;
pub mod smtp;
pub mod twilio;
pub mod vonage;
pub mod webhook;

pub use emulator::faults::{FaultMode, FaultSpec};
pub use emulator::log::{RecordedAnswer, RecordedRequest};
pub use emulator::{Emulator, EmulatorKind};
pub use error::ChaosError;

/// Installs ring as the process's default rustls crypto provider (reqwest is built without
/// one); idempotent. Call it before building an HTTP client.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
