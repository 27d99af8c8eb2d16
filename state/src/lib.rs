//! Tocsin's replicated state store.
//!
//! Layout:
//! - [`model`]: the replicated data model (ids, records, commands, queries, changes).
//! - [`machine`]: the pure state machine that applies commands; home of the fencing invariant.
//! - `raft`: everything openraft: type config, the redb log store, the state-machine store
//!   with snapshots, the tonic network, and timing config. Only this module uses openraft.

pub mod machine;
pub mod model;
pub mod raft;

pub use machine::Machine;

pub mod watch;
