//! Everything openraft: nothing outside this module names an openraft type.
//!
//! - [`TypeConfig`]: a Raft entry carries a [`Batch`] of commands; its response is a
//!   [`BatchResult`] with one result per command.
//! - [`log_store`]: the durable Raft log (a segmented append-only file, a WAL, written by a
//!   dedicated I/O thread with group commit).
//! - [`sm_store`]: the state-machine adapter: applies batches to [`crate::Machine`], builds,
//!   persists and installs snapshots, feeds the watch hub.
//! - [`network`]: the tonic transport between nodes, with a fault hook for tests.
//! - [`timing`]: Raft timing profiles (production, test).

pub mod log_store;
pub mod network;
pub mod sm_store;
pub mod timing;

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Command, CommandResult, NodeId, NodeInfo};

openraft::declare_raft_types!(
    /// Tocsin's openraft type configuration.
    pub TypeConfig:
        D = Batch,
        R = BatchResult,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The application payload of one Raft entry: commands coalesced from many proposers.
///
/// Shared (`Arc`): openraft clones entries on every replication read, and the state machine
/// hands the same commands to the watch hub; none of them copies the commands. The encoding
/// is a plain sequence, as a `Vec` would be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Commands in proposal order.
    pub commands: Arc<[Command]>,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            commands: Arc::from([]),
        }
    }
}

/// The response to one entry: `results[i]` answers `commands[i]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    /// One result per command.
    pub results: Vec<CommandResult>,
}

/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id of this config.
pub type LogId = openraft::LogId<NodeId>;
/// An entry of this config.
pub type Entry = openraft::Entry<TypeConfig>;
/// Storage errors of this config.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;

pub(crate) fn io_err(e: impl std::fmt::Display) -> openraft::AnyError {
    openraft::AnyError::error(e.to_string())
}
