//! The store client: finds the leader from any seed, follows `NotLeader` redirects from typed
//! metadata, retries what is safe to retry with jittered backoff, and bounds every call by a
//! deadline.
//!
//! Retry policy: `NotLeader` and connection failures are retried (on the hinted leader, then
//! the other seeds) until the deadline. Proposals are also retried after an ambiguous
//! transport failure, so every command must tolerate being applied twice: the state machine
//! makes that safe (watermarks only move forward, outbox steps name their sequence number,
//! fencing refuses stale epochs). A proposal's own server-side timeout is returned as
//! [`ServiceError::Timeout`] (outcome unknown) and not retried. One attempt on one node gets
//! 1 s for a read and a quarter of the deadline (at least 1 s) for a proposal: a node that stays
//! silent (cut off by a partition) is then treated like one that refused the connection,
//! skipped for a while, and the others are tried.
//!
//! **Coalescing**: concurrent proposals from one client (a worker's group loops, a notify
//! loop's sends) are gathered into one `ProposeMany` call: a background task takes the first
//! queued proposal, waits for one of [`CALLS_IN_FLIGHT`] call slots, then takes everything
//! else queued (up to [`MAX_PROPOSALS_PER_CALL`] proposals, [`MAX_CALL_BYTES`]). Under light
//! load a call carries one proposal and waits for nothing; under load the per-call cost
//! (HTTP/2 framing, task hops, syscalls) is shared. Each proposal keeps its own outcome: one
//! that the leader did not commit while others in the call did is retried alone through the
//! same path as [`StoreClient::propose_alone`]. The task ends when the last clone of the
//! client is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rand::Rng;
use tocsin_proto::ServiceError;
use tocsin_proto::codec::{self, MAX_ENCODED_BYTES, MAX_STATE_BYTES};
use tocsin_proto::pb::store::store_client::StoreClient as PbClient;
use tocsin_proto::pb::store::{
    ClusterInfoRequest, ProposeManyRequest, ProposeRequest, ReadRequest, WatchRequest,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};

use crate::model::{Change, ClusterInfo, Command, CommandResult, Query, QueryResult};
use crate::probe::{Probe, Stage};

/// Default overall deadline of one client call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// First retry delay; doubles up to [`MAX_BACKOFF`], with full jitter.
const MIN_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Least time one attempt on one node gets (else a quarter of the call's deadline).
const ATTEMPT_MIN: Duration = Duration::from_millis(1000);
/// How long a node that answered nothing is skipped when picking a seed.
const SILENT_AVOID: Duration = Duration::from_secs(5);
/// `ProposeMany` calls one client keeps in flight by default ([`StoreClient::with_calls_in_flight`]).
pub const CALLS_IN_FLIGHT: usize = 4;
/// Most proposals one coalesced call carries (the server's limit).
pub const MAX_PROPOSALS_PER_CALL: usize = crate::service::MAX_PROPOSALS_PER_CALL;
/// Most encoded bytes one coalesced call carries (a larger proposal goes alone).
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
/// Proposals queued for coalescing before `propose` waits.
const COALESCE_QUEUE: usize = 4096;

/// One proposal waiting to be coalesced.
#[derive(Debug)]
struct Queued {
    /// Commands in the proposal.
    n: usize,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<(u64, Vec<CommandResult>), ServiceError>>,
    /// When `propose` queued it (for [`Stage::ClientQueue`]).
    queued: std::time::Instant,
}

/// What a call needs of the node it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// A proposal: the leader, and time for the commit.
    Propose,
    /// A linearizable read: the leader.
    Leader,
    /// Any node that answers.
    AnyNode,
}

/// A client of the store service.
#[derive(Clone, Debug)]
pub struct StoreClient {
    seeds: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Nodes that recently did not answer at all, and until when they are avoided.
    silent: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
    deadline: Duration,
    /// The coalescing task's queue, started by the first proposal.
    coalescer: Arc<OnceLock<mpsc::Sender<Queued>>>,
    stats: Arc<ProposeStats>,
    /// Where the proposals' client-side stages are reported ([`Stage::CLIENT`]).
    probe: Probe,
    /// Coalesced calls kept in flight.
    calls_in_flight: usize,
}

/// How proposals left this client (shared by its clones), for benchmarks and tests.
#[derive(Debug, Default)]
pub struct ProposeStats {
    /// Proposals made.
    pub proposals: std::sync::atomic::AtomicU64,
    /// `Propose` and `ProposeMany` calls that carried them (redirects and retries inside a
    /// call not counted; a proposal retried alone after a partial failure counts again).
    pub calls: std::sync::atomic::AtomicU64,
}

impl StoreClient {
    /// A client that starts from `seeds` (gRPC `host:port` of any nodes).
    pub fn new(seeds: Vec<String>) -> Result<Self, ServiceError> {
        if seeds.is_empty() {
            return Err(ServiceError::invalid(
                "seeds",
                "at least one node address is required",
            ));
        }
        for s in &seeds {
            Endpoint::from_shared(format!("http://{s}")).map_err(|e| {
                ServiceError::invalid("seeds", format!("{s:?} is not host:port: {e}"))
            })?;
        }
        Ok(Self {
            seeds: Arc::new(seeds),
            leader: Arc::default(),
            channels: Arc::default(),
            silent: Arc::default(),
            deadline: DEFAULT_DEADLINE,
            coalescer: Arc::default(),
            stats: Arc::default(),
            probe: Probe::default(),
            calls_in_flight: CALLS_IN_FLIGHT,
        })
    }

    /// The same client keeping at most `n` (at least 1) coalesced calls in flight.
    pub fn with_calls_in_flight(mut self, n: usize) -> Self {
        self.calls_in_flight = n.max(1);
        self.coalescer = Arc::default();
        self
    }

    /// The same client reporting its proposals' client-side stages ([`Stage::CLIENT`]) to
    /// `probe`.
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probe = probe;
        // The coalescing task reports through the probe of the client that started it.
        self.coalescer = Arc::default();
        self
    }

    /// The same client with another overall deadline per call.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        // Coalesced calls run with the deadline of the client that started the task.
        self.coalescer = Arc::default();
        self
    }

    fn client(&self, addr: &str) -> Result<PbClient<Channel>, ServiceError> {
        let mut channels = self.channels.lock().expect("channel cache poisoned");
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| ServiceError::invalid("address", e.to_string()))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(PbClient::new(channel)
            // Answers (a whole-machine replica) may be as large as the state; requests are
            // commands and queries.
            .max_decoding_message_size(MAX_STATE_BYTES)
            .max_encoding_message_size(MAX_ENCODED_BYTES))
    }

    /// Runs `call` against the leader (or, with `any_node`, the first node that answers),
    /// following redirects and retrying until the deadline.
    async fn run<T, F, Fut>(&self, kind: Call, mut call: F) -> Result<T, ServiceError>
    where
        F: FnMut(PbClient<Channel>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let start = tokio::time::Instant::now();
        let deadline = start + self.deadline;
        let mut backoff = MIN_BACKOFF;
        let mut seed = rand::rng().random_range(0..self.seeds.len());
        let mut last_err = ServiceError::Unavailable("no node answered".into());
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(match last_err {
                    ServiceError::Unavailable(m) => {
                        ServiceError::Unavailable(format!("gave up after {:?}: {m}", self.deadline))
                    }
                    e => e,
                });
            }
            let target = self
                .leader
                .lock()
                .expect("leader cache poisoned")
                .clone()
                .unwrap_or_else(|| self.next_seed(&mut seed));
            // One node gets a share of the deadline, not all of it: a node cut off by a
            // partition answers nothing (no reset arrives), and the call must reach the others
            // in time.
            let remaining = deadline - now;
            // A commit may wait on fsyncs under load; a read is answered at once.
            let share = if kind == Call::Propose {
                (self.deadline / 4).max(ATTEMPT_MIN)
            } else {
                ATTEMPT_MIN
            };
            let any_node = kind == Call::AnyNode;
            let attempt = remaining.min(share);
            let result = tokio::time::timeout(attempt, call(self.client(&target)?, attempt)).await;
            let err = match result {
                Ok(Ok(v)) => {
                    if !any_node {
                        *self.leader.lock().expect("leader cache poisoned") = Some(target);
                    }
                    return Ok(v);
                }
                Ok(Err(status)) => ServiceError::from_status(&status),
                Err(_) if attempt < remaining => {
                    // Transport-level silence: retried elsewhere like a failed connection
                    // (every command tolerates being applied twice, see the module docs), and
                    // the node is avoided for a while.
                    self.silent
                        .lock()
                        .expect("silent cache poisoned")
                        .insert(target.clone(), tokio::time::Instant::now() + SILENT_AVOID);
                    ServiceError::Unavailable(format!("no answer from {target} within {attempt:?}"))
                }
                Err(_) => {
                    ServiceError::Timeout(format!("no answer from {target} within the deadline"))
                }
            };
            match &err {
                ServiceError::NotLeader { leader: Some(hint) } if hint.grpc != target => {
                    *self.leader.lock().expect("leader cache poisoned") = Some(hint.grpc.clone());
                    last_err = err;
                    continue; // a redirect is worth an immediate retry
                }
                e if e.is_retryable() && !matches!(e, ServiceError::Timeout(_)) => {
                    // Forget the leader only if it is the node that failed: a newer hint
                    // (`prefer_leader`, another call's redirect) is kept.
                    let mut leader = self.leader.lock().expect("leader cache poisoned");
                    if leader.as_deref() == Some(target.as_str()) {
                        *leader = None;
                    }
                    drop(leader);
                    last_err = err;
                }
                _ => return Err(err),
            }
            let sleep = rand::rng().random_range(Duration::ZERO..=backoff);
            tokio::time::sleep(
                sleep.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Tells the client where the leader is (learnt elsewhere, e.g. from the node that accepted
    /// a balancer session): the next call goes there first.
    pub fn prefer_leader(&self, grpc: &str) {
        *self.leader.lock().expect("leader cache poisoned") = Some(grpc.to_owned());
        self.silent
            .lock()
            .expect("silent cache poisoned")
            .remove(grpc);
    }

    /// The next seed after `seed` that has not gone silent recently (any, if all have).
    fn next_seed(&self, seed: &mut usize) -> String {
        let now = tokio::time::Instant::now();
        let mut silent = self.silent.lock().expect("silent cache poisoned");
        silent.retain(|_, until| *until > now);
        for _ in 0..self.seeds.len() {
            *seed = (*seed + 1) % self.seeds.len();
            if !silent.contains_key(&self.seeds[*seed]) {
                return self.seeds[*seed].clone();
            }
        }
        *seed = (*seed + 1) % self.seeds.len();
        self.seeds[*seed].clone()
    }

    /// Proposes `commands` (committed together in one entry, in order); returns the entry's log
    /// index and one result per command. Concurrent proposals of this client share calls (see
    /// the module docs).
    pub async fn propose(
        &self,
        commands: Vec<Command>,
    ) -> Result<(u64, Vec<CommandResult>), ServiceError> {
        let payload = codec::encode(&commands);
        let n = commands.len();
        if payload.len() >= MAX_CALL_BYTES {
            return self.propose_encoded(n, payload).await;
        }
        let tx = self.coalescer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(COALESCE_QUEUE);
            // The task's own handle has no queue, so it does not keep itself alive.
            let mut worker = self.clone();
            worker.coalescer = Arc::default();
            tokio::spawn(coalesce(worker, rx));
            tx
        });
        let (reply, rx) = oneshot::channel();
        let queued = std::time::Instant::now();
        if let Err(mpsc::error::SendError(q)) = tx
            .send(Queued {
                n,
                payload,
                reply,
                queued,
            })
            .await
        {
            // The task's runtime has shut down (a client outliving it): go alone.
            return self.propose_encoded(q.n, q.payload).await;
        }
        rx.await.map_err(|_| {
            ServiceError::Unavailable("the proposal coalescer stopped (runtime shut down)".into())
        })?
    }

    /// How this client's proposals were carried.
    pub fn propose_stats(&self) -> &ProposeStats {
        &self.stats
    }

    /// Proposes `commands` in a call of its own (no coalescing).
    pub async fn propose_alone(
        &self,
        commands: Vec<Command>,
    ) -> Result<(u64, Vec<CommandResult>), ServiceError> {
        let payload = codec::encode(&commands);
        self.propose_encoded(commands.len(), payload).await
    }

    async fn propose_encoded(
        &self,
        n: usize,
        payload: Vec<u8>,
    ) -> Result<(u64, Vec<CommandResult>), ServiceError> {
        self.count(1);
        let sent = std::time::Instant::now();
        let reply = self
            .run(Call::Propose, |mut c, ttl| {
                let mut req = tonic::Request::new(ProposeRequest {
                    commands: payload.clone(),
                });
                req.set_timeout(ttl);
                async move { c.propose(req).await }
            })
            .await?
            .into_inner();
        self.probe.since(Stage::ClientCall, sent);
        committed(n, reply.log_index, &reply.results)
    }

    fn count(&self, proposals: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.calls.fetch_add(1, Relaxed);
        self.stats.proposals.fetch_add(proposals as u64, Relaxed);
    }

    /// One `ProposeMany` call for `batch`, each proposal answered on its own channel.
    async fn propose_batch(&self, batch: Vec<Queued>) {
        if batch.len() == 1 {
            let q = batch.into_iter().next().expect("one proposal");
            let _ = q.reply.send(self.propose_encoded(q.n, q.payload).await);
            return;
        }
        self.count(batch.len());
        let proposals: Vec<Vec<u8>> = batch.iter().map(|q| q.payload.clone()).collect();
        let sent = std::time::Instant::now();
        let reply = self
            .run(Call::Propose, |mut c, ttl| {
                let mut req = tonic::Request::new(ProposeManyRequest {
                    proposals: proposals.clone(),
                });
                req.set_timeout(ttl);
                async move { c.propose_many(req).await }
            })
            .await;
        let outcomes = match reply {
            Ok(r) => {
                self.probe.since(Stage::ClientCall, sent);
                r.into_inner().outcomes
            }
            Err(e) => {
                for q in batch {
                    let _ = q.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        if outcomes.len() != batch.len() {
            let e = ServiceError::Internal(format!(
                "{} outcomes for {} proposals",
                outcomes.len(),
                batch.len()
            ));
            for q in batch {
                let _ = q.reply.send(Err(e.clone()));
            }
            return;
        }
        for (q, o) in batch.into_iter().zip(outcomes) {
            if !o.error.is_empty() {
                // Not committed while others were (leadership moved mid-call): retry it alone.
                // Every command tolerates being applied twice (module docs).
                let client = self.clone();
                tokio::spawn(async move {
                    let _ = q.reply.send(client.propose_encoded(q.n, q.payload).await);
                });
                continue;
            }
            let _ = q.reply.send(committed(q.n, o.log_index, &o.results));
        }
    }

    /// Reads `query`. Linearizable reads go to the leader, which confirms its leadership with a
    /// quorum first; other reads are answered by any node from its local state.
    pub async fn read(
        &self,
        query: &Query,
        linearizable: bool,
    ) -> Result<(u64, QueryResult), ServiceError> {
        let payload = codec::encode(query);
        let reply = self
            .run(
                if linearizable {
                    Call::Leader
                } else {
                    Call::AnyNode
                },
                |mut c, ttl| {
                    let mut req = tonic::Request::new(ReadRequest {
                        query: payload.clone(),
                        linearizable,
                    });
                    req.set_timeout(ttl);
                    async move { c.read(req).await }
                },
            )
            .await?
            .into_inner();
        Ok((
            reply.applied_index,
            codec::decode_state("result", &reply.result)?,
        ))
    }

    /// Streams the changes of every applied entry from `from_index` on. The stream ends with an
    /// error if the node goes away or the start is compacted ([`ServiceError::Compacted`]).
    pub async fn watch(
        &self,
        from_index: u64,
    ) -> Result<impl Stream<Item = Result<(u64, Vec<Change>), ServiceError>> + use<>, ServiceError>
    {
        let stream = self
            .run(Call::AnyNode, |mut c, _| async move {
                c.watch(WatchRequest { from_index }).await
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| {
            let event = item.map_err(|s| ServiceError::from_status(&s))?;
            let changes: Vec<Change> = codec::decode("changes", &event.changes)?;
            Ok((event.log_index, changes))
        }))
    }

    /// One specific node's view of the cluster (no redirect, no retry beyond the deadline).
    pub async fn cluster_info_of(&self, addr: &str) -> Result<ClusterInfo, ServiceError> {
        let mut c = self.client(addr)?;
        let mut req = tonic::Request::new(ClusterInfoRequest {});
        req.set_timeout(self.deadline);
        let reply = tokio::time::timeout(self.deadline, c.cluster_info(req))
            .await
            .map_err(|_| ServiceError::Timeout(format!("{addr} did not answer")))?
            .map_err(|s| ServiceError::from_status(&s))?
            .into_inner();
        Ok(codec::decode("cluster info", &reply.info)?)
    }
}

/// A committed proposal of `n` commands: its entry's index and the decoded results, one per
/// command.
fn committed(
    n: usize,
    index: u64,
    results: &[u8],
) -> Result<(u64, Vec<CommandResult>), ServiceError> {
    let results: Vec<CommandResult> = codec::decode("results", results)?;
    if results.len() != n {
        return Err(ServiceError::Internal(format!(
            "{} results for {n} commands",
            results.len()
        )));
    }
    Ok((index, results))
}

/// The coalescing task: gathers queued proposals into calls, at most the client's
/// `calls_in_flight` at once. Ends when every client handle (and so the queue's sender) is gone.
async fn coalesce(client: StoreClient, mut rx: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(client.calls_in_flight));
    let mut carry: Option<Queued> = None;
    loop {
        let first = match carry.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // Waiting for a slot is where calls grow under load.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_PROPOSALS_PER_CALL {
            let Ok(q) = rx.try_recv() else { break };
            if bytes + q.payload.len() > MAX_CALL_BYTES {
                carry = Some(q);
                break;
            }
            bytes += q.payload.len();
            batch.push(q);
        }
        for q in &batch {
            client.probe.since(Stage::ClientQueue, q.queued);
        }
        let client = client.clone();
        tokio::spawn(async move {
            client.propose_batch(batch).await;
            drop(permit);
        });
    }
}
