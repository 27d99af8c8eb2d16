//! The crate's one error type.

use tocsin_state::model::WorkerId;

/// Why a balancer call was refused. None of these is retryable: each is a caller bug or bad
/// configuration, and the core's state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BalancerError {
    /// A configuration field is out of range; `field` is the dotted path of the field.
    #[error("invalid balancer config `{field}`: {reason}")]
    InvalidConfig {
        /// Dotted field path, e.g. `liveness.lease_ms`.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A heartbeat from a worker that is not registered with the core.
    #[error("heartbeat from unregistered worker {worker}")]
    UnknownWorker {
        /// The worker that sent it.
        worker: WorkerId,
    },
    /// A heartbeat report field is out of range (e.g. steal outside [0, 1]).
    #[error("invalid heartbeat from {worker}: {reason}")]
    InvalidHeartbeat {
        /// The worker that sent it.
        worker: WorkerId,
        /// Which field and why.
        reason: String,
    },
}
