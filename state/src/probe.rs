//! Where a write's time goes: each stage of the write path reports its durations to an
//! optional observer. The node feeds them to `/metrics` histograms; `tocsin bench store`
//! prints their percentiles, so a latency figure can be taken apart instead of guessed at.
//!
//! A write on the leader: a client's call ([`Stage::Call`]) carries proposals; each waits in the batcher ([`Stage::BatchQueue`]); its
//! entry goes to Raft ([`Stage::RaftWrite`], until applied), which appends it locally
//! ([`Stage::LogFlush`], of which [`Stage::LogFsync`] is the transaction) and sends it to each
//! follower ([`Stage::AppendEntries`]: network, decoding and the follower's own flush); once a
//! quorum has it, each replica applies it ([`Stage::Apply`]).
//!
//! Before that, on the client ([`crate::client::StoreClient::with_probe`]): a proposal waits to
//! be coalesced into a call ([`Stage::ClientQueue`]), and the call's round trip as the client
//! sees it ([`Stage::ClientCall`]) is [`Stage::Call`] plus both network hops and both ends'
//! HTTP/2 and task scheduling.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stage of the write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// A client's `Propose` or `ProposeMany` call on the leader, from its arrival at the
    /// service to its reply (every proposal it carries committed and applied).
    Call,
    /// A proposal from its arrival at the batcher to its entry's submission to Raft.
    BatchQueue,
    /// An entry from its submission to Raft to its applied result (the leader's append,
    /// replication to a quorum, commit, apply).
    RaftWrite,
    /// A log append from openraft's call to the flush callback: waiting for the I/O thread,
    /// then the transaction.
    LogFlush,
    /// One group commit on the I/O thread (the WAL write with its fsync).
    LogFsync,
    /// An AppendEntries call to a follower (heartbeats included), from send to response:
    /// encoding, network, the follower's decoding and flush.
    AppendEntries,
    /// Applying one run of committed entries to the state machine.
    Apply,
    /// On the client: a proposal from its `propose` to the start of the call carrying it
    /// (waiting for the coalescer and for one of its calls in flight).
    ClientQueue,
    /// On the client: a `Propose`/`ProposeMany` call from its send to its decoded reply
    /// (redirects and retries inside it included).
    ClientCall,
}

impl Stage {
    /// The client's stages, in write-path order.
    pub const CLIENT: [Stage; 2] = [Stage::ClientQueue, Stage::ClientCall];

    /// Every stage a node reports, in write-path order.
    pub const ALL: [Stage; 7] = [
        Stage::Call,
        Stage::BatchQueue,
        Stage::RaftWrite,
        Stage::LogFlush,
        Stage::LogFsync,
        Stage::AppendEntries,
        Stage::Apply,
    ];

    /// The stage's name in metrics labels and benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Call => "call",
            Stage::BatchQueue => "batch_queue",
            Stage::RaftWrite => "raft_write",
            Stage::LogFlush => "log_flush",
            Stage::LogFsync => "log_fsync",
            Stage::AppendEntries => "append_entries",
            Stage::Apply => "apply",
            Stage::ClientQueue => "client_queue",
            Stage::ClientCall => "client_call",
        }
    }
}

/// Receives each stage's durations.
pub type StageObserver = Arc<dyn Fn(Stage, Duration) + Send + Sync>;

/// A node's handle on its observer; cheap to clone, a no-op without an observer.
#[derive(Clone, Default)]
pub struct Probe(Option<StageObserver>);

impl Probe {
    /// A probe reporting to `observer`, if any.
    pub fn new(observer: Option<StageObserver>) -> Self {
        Self(observer)
    }

    /// Reports that `stage` took `d`.
    pub fn observe(&self, stage: Stage, d: Duration) {
        if let Some(o) = &self.0 {
            o(stage, d);
        }
    }

    /// Reports that `stage` took from `since` until now.
    pub fn since(&self, stage: Stage, since: Instant) {
        if let Some(o) = &self.0 {
            o(stage, since.elapsed());
        }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Probe").field(&self.0.is_some()).finish()
    }
}
