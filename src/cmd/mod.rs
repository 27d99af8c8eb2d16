//! Subcommands.

pub mod alerts;
pub mod bench;
mod bench_e2e;
pub mod dev;
mod dev_demo;
pub mod node;
pub mod notify;
pub mod rules;
pub mod status;
pub mod worker;
