//! Tocsin's wire contract.
//!
//! Layout:
//! - [`pb`]: the tonic/prost code generated from `proto/tocsin/v1/*.proto`. Generated types
//!   never leave this crate's callers' adapter layers (the gRPC services and clients).
//! - [`ids`]: the identifier newtypes every crate shares (zones, workers, shards, epochs,
//!   fingerprints), validated on construction.
//! - [`codec`]: the versioned postcard encoding used for Raft messages, log entries, store
//!   commands, queries and changes. One encoding, one place that validates it.
//! - [`worker`]: the worker ↔ balancer session in domain types, with validated conversions
//!   from and to the generated messages.
//! - [`tls`]: the process's one TLS crypto provider (ring), installed before any HTTP client
//!   is built.
//! - [`error`]: [`ServiceError`], the errors a Tocsin service returns over the wire, and the one
//!   place they are mapped to and from `tonic::Status` (typed metadata, never parsed text).

pub mod codec;
pub mod error;
pub mod ids;
pub mod tls;
pub mod worker;

pub use error::{LeaderHint, ServiceError};

/// Generated protobuf and tonic code.
pub mod pb {
    /// Raft transport between nodes.
    pub mod raft {
        tonic::include_proto!("tocsin.raft.v1");
    }
    /// The replicated store's client service.
    pub mod store {
        tonic::include_proto!("tocsin.store.v1");
    }
    /// The worker ↔ balancer session.
    pub mod worker {
        tonic::include_proto!("tocsin.worker.v1");
    }
    /// Prometheus remote-write 1.0 messages (`WriteRequest` and its parts), received by the
    /// embedded metrics store.
    pub mod prometheus {
        tonic::include_proto!("prometheus");
    }
}
