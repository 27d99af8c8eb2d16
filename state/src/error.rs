//! The state crate's error type.

use std::path::PathBuf;

/// Errors starting or running a store node.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The data directory cannot be used (missing permissions, not a directory, ...).
    #[error("data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    /// The data directory was created by another node or another cluster.
    #[error(
        "data dir {path} belongs to {found}, but this node was started as {expected}; use the right --data-dir or an empty one"
    )]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// Configuration that cannot work.
    #[error("invalid {field}: {reason}")]
    Config { field: String, reason: String },
    /// Opening storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The Raft core failed.
    #[error("raft: {0}")]
    Raft(String),
}
