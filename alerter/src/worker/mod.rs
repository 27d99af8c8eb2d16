//! The stateless worker: its session with the leader's balancer (registration, heartbeats,
//! assignments, self-fencing) and, per owned shard, the evaluation and notification loops.
//!
//! - [`convert`]: evaluator state ↔ replicated alert instances.
//! - [`evaluator`]: evaluation through a `Datasource` (queries prefetched concurrently).
//! - [`group`]: one rule group's loop: resume, catch up, evaluate, commit fenced by epoch.
//! - [`notify`]: the notify loop: a read replica of the store followed through the watch
//!   stream, the owned streams' groups, and the outbox protocol (claim, send, record).
//! - [`observe`]: the evaluation and delivery reports behind the worker's `/metrics`.
//! - [`runner`]: the shard manager running one group loop per group of each owned eval shard.
//! - [`schedule`]: hash-derived evaluation slots and the one-slot catch-up on takeover (pure).
//! - [`steal`]: CPU steal sampling from a `/proc/stat`-format file.
//! - [`session`]: the balancer session: reconnects to the leader, heartbeats, publishes the
//!   owned shards on a `watch` channel, and fences itself (owns nothing) when it has not heard
//!   from a leader for longer than its lease.

pub mod convert;
pub mod evaluator;
pub mod group;
pub mod notify;
pub mod observe;
pub mod runner;
pub mod schedule;
pub mod session;
pub mod steal;

pub use session::{Ownership, SessionConfig, WorkStats};
