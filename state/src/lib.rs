//! Tocsin's replicated state store.
//!
//! Layout:
//! - [`model`]: the replicated data model (ids, records, commands, queries, changes).
//! - [`machine`]: the pure state machine that applies commands; home of the fencing invariant.
//! - [`raft`]: everything openraft: type config, the WAL log store, the state-machine store
//!   with snapshots, the tonic network, and timing profiles. Only this module uses openraft.
//! - [`watch`]: the hub that streams applied changes to watchers from a log index.
//! - [`audit`]: an independent check of the fencing invariant over applied commands.
//! - [`batcher`]: group commit of concurrent proposals into one Raft entry.
//! - [`service`]: the gRPC services (Raft transport, store API).
//! - [`probe`]: the write path's stages and their durations (metrics, `bench store`).
//! - [`node`]: assembles a store node: data dir identity, storage, Raft, batcher, services.
//! - [`client`]: the store client used by workers, the CLI and other nodes: leader discovery,
//!   redirects, retries, deadlines.
//!
//! Data flow: a client's `propose` → [`service`] → [`batcher`] → openraft (log store fsync,
//! replication, commit) → [`raft::sm_store`] applies to [`Machine`] → results back to the
//! proposer, changes to [`watch`] subscribers.

pub mod audit;
pub mod batcher;
pub mod client;
pub mod error;
pub mod machine;
pub mod model;
pub mod node;
pub mod probe;
pub mod raft;
pub mod service;
pub mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::StateError;
pub use machine::Machine;
