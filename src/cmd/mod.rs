//! Subcommands.

pub mod alerts;
pub mod bench;
mod bench_e2e;
mod bench_ingest;
mod bench_rules;
pub mod dev;
mod dev_demo;
pub mod node;
pub mod notify;
pub mod rules;
pub mod status;
pub mod worker;
