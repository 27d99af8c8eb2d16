//! Tocsin balancer: the pure decision core (DESIGN.md §5, zone-health.md §6).
//!
//! Nothing here does I/O, reads a clock or draws random numbers: events and `now` (ms) in,
//! decisions out. The async adapter (not in this crate yet) feeds [`Balancer`] and proposes
//! its [`Decision`]s through Raft.
//!
//! # Layout
//!
//! - `config`: every threshold of zone-health.md §6; `production()` and `test()` profiles.
//! - `liveness`: per-worker phi-accrual failure detector plus a hard lease.
//! - `signals`: per-worker report windows → per-zone penalties (A_z, P_lat, P_steal, P_work).
//! - `zone_health`: raw score, time-step-aware fast-down/slow-up smoothing, quantised weight.
//! - `zone_state`: one zone's hysteresis state machine, resumable from a `ZoneRecord`.
//! - `guards`: freeze, at most one non-healthy zone, capacity precheck.
//! - `placement`: weighted rendezvous hashing with bounded load, sticky to current owners.
//! - `decision`: what a tick returns.
//! - `balancer`: [`Balancer`], which ties them together per tick: liveness → signals →
//!   scores → proposals → guards → placement → freeze filter → rate limit → records.
//!
//! # Driving it (the adapter's contract)
//!
//! ```text
//! on RegisterWorker / RemoveWorker applied   → register_worker / deregister_worker
//! on heartbeat (leader only)                 → observe_heartbeat(worker, now, report)
//! on becoming leader                         → became_leader(now, committed zone records)
//! on losing leadership                       → stepped_down()
//! every 200 ms – 1 s while leader            → tick(now, committed assignments, layout)
//!     propose Command::Assign { shards: decision.assign }      (if not empty)
//!     propose Command::SetZone for each decision.zone_records
//!     and wait for both to apply before the next tick
//! ```
//!
//! # Decisions made here
//!
//! - A worker never heard from (since registration or since this node became leader) is
//!   `Unknown` for one lease: it counts as alive for zone health, keeps what it owns, gets
//!   nothing new. Settle: nothing is decided for `settle_ms` after `became_leader`.
//! - Freeze exception: a zone whose every worker is dead is still drained while frozen if it
//!   is the only dead zone (the observer evidently hears the others). Two dead zones freeze
//!   everything, and their workers keep their shards (a deaf observer is the likelier fault).
//! - While frozen, only shards of dead workers in zones that are not themselves bad (and of
//!   the exempt zone) move; nothing is rebalanced.
//! - The dead-zone fast path bypasses the one-non-healthy-zone rule (`SecondZoneDown`) and
//!   the capacity precheck: dead workers evaluate nothing whatever the placement says.
//! - Bounded load uses the weighted cap `⌈1.25 × S × w / Σw⌉` (= `⌈1.25 × mean⌉` with equal
//!   weights), so overflow cannot hand a degraded zone its shards back.

mod balancer;
pub mod config;
pub mod decision;
pub mod error;
pub mod guards;
pub mod liveness;
pub mod placement;
pub mod signals;
pub mod zone_health;
pub mod zone_state;

pub use balancer::Balancer;
pub use config::BalancerConfig;
pub use decision::{Decision, MetaAlert, Phase, ZoneView};
pub use error::BalancerError;
pub use signals::HeartbeatReport;
