//! Group commit: concurrent proposals are coalesced into one Raft entry.
//!
//! Each Raft entry costs a replication round (an AppendEntries per follower, a follower fsync,
//! the leader's core work), so throughput comes from commands per entry. The batcher takes proposals from a bounded queue, and
//! whenever a write slot is free it drains everything queued (up to `max_commands` and
//! `max_bytes`, optionally lingering for more) into one [`Batch`]. Under light load an entry
//! holds one proposal and waits for nothing; under heavy load the queue fills while earlier
//! entries are in flight, so entries grow and fsyncs are amortised. `max_in_flight` entries may
//! be pipelined through openraft at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::model::{Command, CommandResult, NodeId, NodeInfo};
use crate::probe::{Probe, Stage};
use crate::raft::{Batch, Raft};

/// Batching limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most commands in one entry (a single larger proposal still goes alone).
    pub max_commands: usize,
    /// Most encoded bytes in one entry (approximate, from the proposals' encoded sizes).
    pub max_bytes: usize,
    /// How long to wait for more proposals once one is queued and a slot is free. Zero: do not
    /// wait; batching then comes only from back-pressure.
    pub linger: Duration,
    /// Entries in flight through Raft at once.
    pub max_in_flight: usize,
    /// Proposals queued before `propose` waits (back-pressure to callers).
    pub queue_depth: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_commands: 4096,
            max_bytes: 512 * 1024,
            linger: Duration::ZERO,
            max_in_flight: 4,
            queue_depth: 16_384,
        }
    }
}

/// Why a proposal did not commit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    /// The Raft core stopped with a fatal error.
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Outcome of a committed proposal: the entry's log index and one result per command.
pub type Committed = (u64, Vec<CommandResult>);

struct Proposal {
    commands: Vec<Command>,
    bytes: usize,
    reply: oneshot::Sender<Result<Committed, ProposeError>>,
    /// When it reached the batcher (for [`Stage::BatchQueue`]).
    arrived: Instant,
}

/// Entry-size statistics, for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Entries written.
    pub entries: std::sync::atomic::AtomicU64,
    /// Commands written.
    pub commands: std::sync::atomic::AtomicU64,
}

/// Handle to submit proposals.
#[derive(Clone, Debug)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
    stats: Arc<BatchStats>,
}

impl Proposer {
    /// Starts the batcher task on `tracker`; it stops when `cancel` fires. Queueing and
    /// write durations go to `probe`.
    pub fn start(
        raft: Raft,
        config: BatchConfig,
        cancel: CancellationToken,
        tracker: &TaskTracker,
        probe: Probe,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let stats = Arc::new(BatchStats::default());
        let t2 = tracker.clone();
        tracker.spawn(run(raft, config, rx, cancel, t2, stats.clone(), probe));
        Self { tx, stats }
    }

    /// Proposes `commands` (committed together, in order, in one entry) and waits for commit.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Committed, ProposeError> {
        let bytes = tocsin_proto::codec::encode(&commands).len();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal {
                commands,
                bytes,
                reply,
                arrived: Instant::now(),
            })
            .await
            .map_err(|_| ProposeError::ShuttingDown)?;
        rx.await.map_err(|_| ProposeError::ShuttingDown)?
    }

    /// Entry-size statistics.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

async fn run(
    raft: Raft,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Proposal>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<BatchStats>,
    probe: Probe,
) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut carry: Option<Proposal> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                () = cancel.cancelled() => return,
            },
        };
        // Waiting for a slot is where batches grow under load.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = cancel.cancelled() => return,
        };
        let mut group = vec![first];
        let mut count = group[0].commands.len();
        let mut bytes = group[0].bytes;
        let fits = |count: usize, bytes: usize, p: &Proposal| {
            count + p.commands.len() <= config.max_commands && bytes + p.bytes <= config.max_bytes
        };
        let deadline = tokio::time::Instant::now() + config.linger;
        loop {
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(_) if !config.linger.is_zero() && count < config.max_commands => {
                    tokio::select! {
                        p = rx.recv() => p,
                        () = tokio::time::sleep_until(deadline) => None,
                    }
                }
                Err(_) => None,
            };
            let Some(p) = next else { break };
            if fits(count, bytes, &p) {
                count += p.commands.len();
                bytes += p.bytes;
                group.push(p);
            } else {
                carry = Some(p);
                break;
            }
        }
        let mut commands = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(group.len());
        let submitted = Instant::now();
        for p in group {
            probe.observe(Stage::BatchQueue, submitted.duration_since(p.arrived));
            replies.push((p.commands.len(), p.reply));
            commands.extend(p.commands);
        }
        stats
            .entries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .commands
            .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
        match raft
            .client_write_ff(Batch {
                commands: commands.into(),
            })
            .await
        {
            Ok(responder) => {
                let probe = probe.clone();
                tracker.spawn(async move {
                    let outcome = responder.await;
                    probe.since(Stage::RaftWrite, submitted);
                    drop(permit);
                    deliver(outcome, replies);
                });
            }
            Err(fatal) => {
                warn!(error = %fatal, "raft core stopped; failing proposals");
                for (_, reply) in replies {
                    let _ = reply.send(Err(ProposeError::Fatal(fatal.to_string())));
                }
            }
        }
    }
}

type WriteOutcome = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        ClientWriteError<NodeId, NodeInfo>,
    >,
    oneshot::error::RecvError,
>;

fn deliver(
    outcome: WriteOutcome,
    replies: Vec<(usize, oneshot::Sender<Result<Committed, ProposeError>>)>,
) {
    let fail = |e: ProposeError, replies: Vec<(usize, oneshot::Sender<_>)>| {
        for (_, reply) in replies {
            let _ = reply.send(Err(e.clone()));
        }
    };
    match outcome {
        Err(_) => fail(ProposeError::ShuttingDown, replies),
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            let leader = f.leader_id.zip(f.leader_node);
            fail(ProposeError::NotLeader { leader }, replies);
        }
        Ok(Err(e)) => fail(ProposeError::Fatal(e.to_string()), replies),
        Ok(Ok(resp)) => {
            let index = resp.log_id.index;
            let mut results = resp.data.results.into_iter();
            for (n, reply) in replies {
                let mine: Vec<CommandResult> = results.by_ref().take(n).collect();
                debug_assert_eq!(mine.len(), n, "one result per command");
                let _ = reply.send(Ok((index, mine)));
            }
        }
    }
}
