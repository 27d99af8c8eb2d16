//! The harness's error type (kept apart from [`crate::ChaosError`], which is about the
//! emulators: a harness failure is about processes, the cluster and the scenario's waits).

use std::path::PathBuf;

/// Everything that can go wrong launching a cluster, injecting a fault or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A process could not be started.
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    /// A file or directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("binding {what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("sending {signal} to {what} (pid {pid}): {reason}")]
    Signal {
        signal: &'static str,
        what: String,
        pid: u32,
        reason: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after_ms} ms waiting for {what}")]
    Timeout { what: String, after_ms: u64 },
    /// The cluster refused or failed an API call.
    #[error("{what}: {reason}")]
    Api { what: String, reason: String },
    /// An emulator could not be started or driven.
    #[error(transparent)]
    Emulator(#[from] crate::ChaosError),
    /// A `cluster.json` could not be parsed, or names nothing to act on.
    #[error("{path}: {reason}")]
    ClusterFile { path: PathBuf, reason: String },
    /// The scenario name is not one this harness knows.
    #[error("unknown scenario `{0}` (known: S1, S2, S3, S4, S7, S9, S10, S11, S12, S13)")]
    UnknownScenario(String),
    /// A system tool a scenario needs is not installed.
    #[error("{tool} not found: apt-get install {package}")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// A system tool (`ip`, `nft`) failed.
    #[error("`{command}` failed: {reason}")]
    Tool { command: String, reason: String },
    /// The scenario cuts links between zones, which needs the run to be inside a private
    /// network namespace.
    #[error(
        "{scenario} needs a private network namespace: call \
         harness::netns::enter_private_hub() before building the runtime, and pass the hub \
         in RunConfig::hub"
    )]
    NeedsPrivateNetwork { scenario: &'static str },
}

impl HarnessError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
