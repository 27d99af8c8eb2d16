//! Subcommands.

pub mod alerts;
pub mod bench;
pub mod dev;
mod dev_demo;
pub mod node;
pub mod rules;
pub mod status;
pub mod worker;
