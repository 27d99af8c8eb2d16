//! [`ServiceError`] and its one mapping to and from `tonic::Status`.
//!
//! Every error a Tocsin gRPC service returns goes through [`ServiceError::into_status`], and
//! every client turns a `Status` back with [`ServiceError::from_status`]. The error kind and
//! its structured fields travel as ASCII metadata (`tocsin-*` keys), so a client follows a
//! `NotLeader` redirect from typed fields, never by parsing the message text.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

const KIND: &str = "tocsin-error";
const LEADER_ID: &str = "tocsin-leader-id";
const LEADER_GRPC: &str = "tocsin-leader-grpc";
const LEADER_HTTP: &str = "tocsin-leader-http";
const FIELD: &str = "tocsin-field";
const EARLIEST: &str = "tocsin-earliest";
const REQUESTED: &str = "tocsin-requested";

/// Where the current leader can be reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderHint {
    /// Raft node id of the leader.
    pub id: u64,
    /// The leader's gRPC address (`host:port`).
    pub grpc: String,
    /// The leader's HTTP address (`host:port`).
    pub http: String,
}

/// An error returned by a Tocsin service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// This node is not the Raft leader; `leader` says where to go when it is known.
    #[error("not the leader (leader: {})", leader.as_ref().map_or("unknown".to_string(), |l| format!("node {} at {}", l.id, l.grpc)))]
    NotLeader { leader: Option<LeaderHint> },
    /// The request is malformed; nothing was changed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A watch asked for log entries that are no longer retained.
    #[error("log index {requested} is no longer retained; earliest available is {earliest}")]
    Compacted { requested: u64, earliest: u64 },
    /// The service cannot answer now (no quorum, shutting down, peer unreachable). Retryable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request's deadline passed. The outcome of a write is unknown.
    #[error("deadline exceeded: {0}")]
    Timeout(String),
    /// The node hit an unrecoverable error and is exiting.
    #[error("fatal: {0}")]
    Fatal(String),
    /// A bug or an unexpected condition on the server.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Shorthand for [`ServiceError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Whether the same request may succeed if retried (possibly on another node).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotLeader { .. } | Self::Unavailable(_) | Self::Timeout(_)
        )
    }

    /// The gRPC status for this error, with typed metadata.
    pub fn into_status(self) -> Status {
        let message = self.to_string();
        let mut meta = MetadataMap::new();
        let (code, kind) = match &self {
            Self::NotLeader { leader } => {
                if let Some(l) = leader {
                    insert(&mut meta, LEADER_ID, &l.id.to_string());
                    insert(&mut meta, LEADER_GRPC, &l.grpc);
                    insert(&mut meta, LEADER_HTTP, &l.http);
                }
                (Code::Unavailable, "not-leader")
            }
            Self::InvalidArgument { field, .. } => {
                insert(&mut meta, FIELD, field);
                (Code::InvalidArgument, "invalid-argument")
            }
            Self::Compacted {
                requested,
                earliest,
            } => {
                insert(&mut meta, EARLIEST, &earliest.to_string());
                insert(&mut meta, REQUESTED, &requested.to_string());
                (Code::OutOfRange, "compacted")
            }
            Self::Unavailable(_) => (Code::Unavailable, "unavailable"),
            Self::Timeout(_) => (Code::DeadlineExceeded, "timeout"),
            Self::Fatal(_) => (Code::Internal, "fatal"),
            Self::Internal(_) => (Code::Internal, "internal"),
        };
        insert(&mut meta, KIND, kind);
        Status::with_metadata(code, message, meta)
    }

    /// Reconstructs the error from a status produced by [`Self::into_status`], or classifies a
    /// transport-level status (connection refused, deadline) that no Tocsin service produced.
    pub fn from_status(status: &Status) -> Self {
        let meta = status.metadata();
        let text = status.message().to_string();
        match get(meta, KIND).as_deref() {
            Some("not-leader") => {
                let leader = match (
                    get(meta, LEADER_ID),
                    get(meta, LEADER_GRPC),
                    get(meta, LEADER_HTTP),
                ) {
                    (Some(id), Some(grpc), Some(http)) => {
                        id.parse().ok().map(|id| LeaderHint { id, grpc, http })
                    }
                    _ => None,
                };
                Self::NotLeader { leader }
            }
            Some("invalid-argument") => {
                let field = get(meta, FIELD).unwrap_or_default();
                let reason = strip(&text, &format!("invalid {field}: "));
                Self::InvalidArgument { field, reason }
            }
            Some("compacted") => Self::Compacted {
                requested: get(meta, REQUESTED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                earliest: get(meta, EARLIEST)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            },
            Some("unavailable") => Self::Unavailable(strip(&text, "unavailable: ")),
            Some("timeout") => Self::Timeout(strip(&text, "deadline exceeded: ")),
            Some("fatal") => Self::Fatal(strip(&text, "fatal: ")),
            Some("internal") => Self::Internal(strip(&text, "internal: ")),
            _ => match status.code() {
                Code::DeadlineExceeded => Self::Timeout(text),
                // A transport-level cancel (the peer's connection was reset, e.g. the node
                // died mid-call) is ambiguous, not a deadline: retryable elsewhere.
                Code::Cancelled => Self::Unavailable(text),
                Code::InvalidArgument => Self::InvalidArgument {
                    field: String::new(),
                    reason: text,
                },
                Code::Unavailable | Code::Unknown | Code::Aborted | Code::ResourceExhausted => {
                    Self::Unavailable(text)
                }
                _ => Self::Internal(format!("{:?}: {text}", status.code())),
            },
        }
    }
}

impl From<crate::codec::DecodeError> for ServiceError {
    fn from(e: crate::codec::DecodeError) -> Self {
        Self::InvalidArgument {
            field: e.what.to_string(),
            reason: e.reason,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        e.into_status()
    }
}

/// The message without the `Display` prefix `into_status` put in front of it.
fn strip(text: &str, prefix: &str) -> String {
    text.strip_prefix(prefix).unwrap_or(text).to_string()
}

fn insert(meta: &mut MetadataMap, key: &'static str, value: &str) {
    // Metadata values must be visible ASCII; anything else is dropped from the metadata (the
    // message still carries it) rather than failing the error path itself.
    if let Ok(v) = MetadataValue::try_from(value) {
        meta.insert(key, v);
    }
}

fn get(meta: &MetadataMap, key: &'static str) -> Option<String> {
    meta.get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_status() {
        let cases = [
            ServiceError::NotLeader {
                leader: Some(LeaderHint {
                    id: 2,
                    grpc: "127.0.0.1:7102".into(),
                    http: "127.0.0.1:9102".into(),
                }),
            },
            ServiceError::NotLeader { leader: None },
            ServiceError::Unavailable("no quorum".into()),
            ServiceError::Timeout("5s".into()),
            ServiceError::Fatal("panicked".into()),
            ServiceError::Internal("x".into()),
        ];
        for e in cases {
            assert_eq!(ServiceError::from_status(&e.clone().into_status()), e);
        }
        let e = ServiceError::from_status(
            &ServiceError::invalid("commands[3].epoch", "zero").into_status(),
        );
        assert!(
            matches!(e, ServiceError::InvalidArgument { ref field, .. } if field == "commands[3].epoch")
        );
        let c = ServiceError::Compacted {
            requested: 1,
            earliest: 50,
        };
        assert_eq!(ServiceError::from_status(&c.clone().into_status()), c);
    }

    #[test]
    fn transport_statuses_are_classified() {
        assert!(
            ServiceError::from_status(&Status::unavailable("connection refused")).is_retryable()
        );
        assert!(matches!(
            ServiceError::from_status(&Status::deadline_exceeded("t")),
            ServiceError::Timeout(_)
        ));
        let cancelled = ServiceError::from_status(&Status::cancelled("operation was canceled"));
        assert!(
            cancelled.is_retryable(),
            "a reset connection is retried elsewhere: {cancelled:?}"
        );
    }
}
