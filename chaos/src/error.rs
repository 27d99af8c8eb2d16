//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong starting or controlling an emulator.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A listener could not be bound.
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    /// A bound listener could not report its address.
    #[error("reading the local address of a listener: {0}")]
    LocalAddr(std::io::Error),
    /// The emulator manifest could not be written.
    #[error("writing {path}: {source}")]
    WriteManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The manifest could not be read or parsed.
    #[error("reading {path}: {reason}")]
    ReadManifest { path: PathBuf, reason: String },
    /// A call to a remote emulator failed (transport, timeout, or an unexpected status).
    #[error("{method} {url}: {reason}")]
    Remote {
        method: &'static str,
        url: String,
        reason: String,
    },
    /// A fault specification was refused; `field` names what to fix.
    #[error("invalid fault spec: `{field}` {reason}")]
    InvalidFault { field: &'static str, reason: String },
}
