//! Subcommands.

pub mod bench;
pub mod node;
pub mod status;
