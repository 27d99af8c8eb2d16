//! Tocsin's alerting logic.
//!
//! Layout:
//! - [`promql`]: the PromQL engine (parsed with `promql-parser`) over an in-memory sample
//!   store; it serves the embedded datasource and `tocsin rules test`.
//! - [`template`]: Prometheus's Go `text/template` dialect for annotations, labels and
//!   notification text, with bounded rendering.
//! - [`worker`]: the stateless worker: its balancer session (heartbeats, assignments,
//!   self-fencing), the evaluation loops per owned eval shard, and the notify loop (outbox)
//!   for its notify shards.
//! - [`rules`]: the Prometheus rule-file format, its validation (`tocsin rules check`).
//! - [`eval`]: one rule group at one timestamp, Prometheus's semantics as a pure function
//!   over [`promql`], [`template`] and [`rules`]; its state is what workers persist.
//! - [`unittest`]: `promtool test rules` files run on [`eval`] (`tocsin rules test`).
//! - [`bench_eval`]: the evaluation benchmark behind `tocsin bench eval` (ours vs a real
//!   Prometheus on the same data).
//! - [`bench_ingest`]: the ingest benchmark behind `tocsin bench ingest` (remote write,
//!   scrape, bytes per sample and HTTP query latency, ours vs a real Prometheus).
//! - [`datasource`]: the `Datasource` trait, the Prometheus-compatible HTTP client and the
//!   embedded store that answer rule queries.
//! - [`notify`]: the notification pipeline: `alertmanager.yml`, routing, grouping timers,
//!   inhibition, silences (pure cores), rate limits, and delivery through the channels.
//! - [`rfc3339`]: RFC 3339 timestamps without a date library.

pub mod bench_eval;
pub mod bench_ingest;
pub mod datasource;
pub mod eval;
pub mod notify;
pub mod procfs;
pub mod promql;
pub mod rfc3339;
pub mod rules;
pub mod template;
pub mod unittest;
pub mod worker;
