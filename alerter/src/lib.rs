//! Tocsin's alerting logic.
//!
//! Layout:
//! - [`promql`]: the PromQL engine (parsed with `promql-parser`) over an in-memory sample
//!   store; it serves the embedded datasource and `tocsin rules test`.
//! - [`template`]: Prometheus's Go `text/template` dialect for annotations, labels and
//!   notification text, with bounded rendering.
//! - [`rules`]: the Prometheus rule-file format, its validation (`tocsin rules check`).

pub mod promql;
pub mod rules;
pub mod template;
