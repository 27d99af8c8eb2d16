//! The gRPC services a node serves: the Raft transport and the store's client service.
//!
//! Every decode failure is `InvalidArgument` naming the field; the node keeps running. Every
//! domain error leaves through [`ServiceError`] (proto's one `Status` map).

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::Stream;
use openraft::error::{CheckIsLeaderError, RaftError};
use tocsin_proto::codec;
use tocsin_proto::pb::raft::{RaftReply, RaftRequest, raft_server};
use tocsin_proto::pb::store::{
    ClusterInfoReply, ClusterInfoRequest, ProposeManyReply, ProposeManyRequest, ProposeOutcome,
    ProposeReply, ProposeRequest, ReadReply, ReadRequest, WatchEvent, WatchRequest, store_server,
};
use tocsin_proto::{LeaderHint, ServiceError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use crate::batcher::{ProposeError, Proposer};
use crate::model::{ClusterInfo, Command, MemberInfo, NodeId, NodeInfo, Query};
use crate::probe::{Probe, Stage};
use crate::raft::Raft;
use crate::raft::sm_store::SmReader;
use crate::watch::WatchError;

/// Most commands one proposal may carry.
pub const MAX_COMMANDS_PER_PROPOSAL: usize = 10_000;
/// Most proposals one `ProposeMany` call may carry.
pub const MAX_PROPOSALS_PER_CALL: usize = 1024;
/// Server-side bound on a proposal's wait for commit.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side bound on a linearizable read's leadership check.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Watch events buffered per subscriber before the stream applies back-pressure.
const WATCH_BUFFER: usize = 256;

/// Serves Raft RPCs from peers.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl RaftService {
    /// Wraps `raft`.
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = codec::decode("AppendEntriesRequest", &request.into_inner().data)
            .map_err(ServiceError::from)?;
        let result = self.raft.append_entries(rpc).await;
        Ok(Response::new(RaftReply {
            data: codec::encode(&result),
        }))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc =
            codec::decode("VoteRequest", &request.into_inner().data).map_err(ServiceError::from)?;
        let result = self.raft.vote(rpc).await;
        Ok(Response::new(RaftReply {
            data: codec::encode(&result),
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = codec::decode("InstallSnapshotRequest", &request.into_inner().data)
            .map_err(ServiceError::from)?;
        let result = self.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftReply {
            data: codec::encode(&result),
        }))
    }
}

/// Serves the store's client API.
#[derive(Clone)]
pub struct StoreService {
    raft: Raft,
    id: NodeId,
    proposer: Proposer,
    reader: SmReader,
    cancel: CancellationToken,
    tracker: TaskTracker,
    probe: Probe,
}

impl std::fmt::Debug for StoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreService")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl StoreService {
    /// A service for node `id`; call durations go to `probe` ([`Stage::Call`]).
    pub fn new(
        raft: Raft,
        id: NodeId,
        proposer: Proposer,
        reader: SmReader,
        cancel: CancellationToken,
        tracker: TaskTracker,
        probe: Probe,
    ) -> Self {
        Self {
            raft,
            id,
            proposer,
            reader,
            cancel,
            tracker,
            probe,
        }
    }

    /// The leader as this node knows it.
    pub fn leader_hint(&self) -> Option<LeaderHint> {
        leader_hint(&self.raft)
    }
}

/// The current leader's address as `raft` knows it.
pub fn leader_hint(raft: &Raft) -> Option<LeaderHint> {
    let m = raft.metrics();
    let m = m.borrow();
    let id = m.current_leader?;
    let node = m.membership_config.membership().get_node(&id)?;
    Some(LeaderHint {
        id,
        grpc: node.grpc.clone(),
        http: node.http.clone(),
    })
}

/// Maps a batcher error to the wire error.
pub fn propose_error(raft: &Raft, e: ProposeError) -> ServiceError {
    match e {
        ProposeError::NotLeader { leader } => ServiceError::NotLeader {
            leader: leader
                .map(|(id, n)| LeaderHint {
                    id,
                    grpc: n.grpc,
                    http: n.http,
                })
                .or_else(|| leader_hint(raft)),
        },
        ProposeError::Fatal(m) => ServiceError::Fatal(m),
        ProposeError::ShuttingDown => ServiceError::Unavailable("node is shutting down".into()),
    }
}

/// Confirms leadership with a quorum (ReadIndex) and waits until it is applied locally.
pub async fn ensure_linearizable(raft: &Raft) -> Result<(), ServiceError> {
    match tokio::time::timeout(READ_TIMEOUT, raft.ensure_linearizable()).await {
        Err(_) => Err(ServiceError::Timeout("leadership check timed out".into())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
            Err(ServiceError::NotLeader {
                leader: leader_hint(raft),
            })
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
            Err(ServiceError::Unavailable(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(ServiceError::Fatal(f.to_string())),
    }
}

/// This node's view of the cluster.
pub fn cluster_info(raft: &Raft, reader: &SmReader) -> ClusterInfo {
    let m = raft.metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let members: Vec<MemberInfo> = membership
        .nodes()
        .map(|(id, info)| MemberInfo {
            id: *id,
            info: info.clone(),
            voter: voters.contains(id),
        })
        .collect();
    let node = members
        .iter()
        .find(|mi| mi.id == m.id)
        .cloned()
        .unwrap_or(MemberInfo {
            id: m.id,
            info: NodeInfo::default(),
            voter: false,
        });
    let applied = reader.applied_index();
    ClusterInfo {
        node,
        leader: m.current_leader,
        term: m.current_term,
        // openraft 0.9 metrics expose applied, not committed; applied <= committed and a
        // node applies as soon as it learns of a commit.
        commit_index: applied,
        applied_index: applied,
        last_log_index: m.last_log_index.unwrap_or(0),
        members,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// A proposal's commands, decoded and within limits; errors name `field`.
fn decode_proposal(field: &str, bytes: &[u8]) -> Result<Vec<Command>, ServiceError> {
    let commands: Vec<Command> =
        codec::decode("commands", bytes).map_err(|e| ServiceError::invalid(field, e.reason))?;
    if commands.is_empty() {
        return Err(ServiceError::invalid(
            field,
            "at least one command is required",
        ));
    }
    if commands.len() > MAX_COMMANDS_PER_PROPOSAL {
        return Err(ServiceError::invalid(
            field,
            format!(
                "{} commands exceeds the limit of {MAX_COMMANDS_PER_PROPOSAL}",
                commands.len()
            ),
        ));
    }
    Ok(commands)
}

impl StoreService {
    /// Proposes one proposal and waits (boundedly) for its commit.
    async fn commit(
        &self,
        commands: Vec<Command>,
    ) -> Result<crate::batcher::Committed, ServiceError> {
        tokio::time::timeout(PROPOSE_TIMEOUT, self.proposer.propose(commands))
            .await
            .map_err(|_| ServiceError::Timeout("proposal not committed in time".into()))?
            .map_err(|e| propose_error(&self.raft, e))
    }
}

#[tonic::async_trait]
impl store_server::Store for StoreService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let arrived = Instant::now();
        let commands = decode_proposal("commands", &request.into_inner().commands)?;
        let (index, results) = self.commit(commands).await?;
        self.probe.since(Stage::Call, arrived);
        Ok(Response::new(ProposeReply {
            log_index: index,
            results: codec::encode(&results),
        }))
    }

    async fn propose_many(
        &self,
        request: Request<ProposeManyRequest>,
    ) -> Result<Response<ProposeManyReply>, Status> {
        let arrived = Instant::now();
        let proposals = request.into_inner().proposals;
        if proposals.is_empty() || proposals.len() > MAX_PROPOSALS_PER_CALL {
            return Err(ServiceError::invalid(
                "proposals",
                format!(
                    "{} proposals; a call carries 1 to {MAX_PROPOSALS_PER_CALL}",
                    proposals.len()
                ),
            )
            .into());
        }
        // Every proposal is checked before any is proposed: a bad one changes nothing.
        let decoded = proposals
            .iter()
            .enumerate()
            .map(|(i, p)| decode_proposal(&format!("proposals[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()?;
        // Polled in order, so the proposals enter the batcher's queue in request order.
        let outcomes = futures::future::join_all(decoded.into_iter().map(|c| self.commit(c))).await;
        self.probe.since(Stage::Call, arrived);
        if let Some(Err(first)) = outcomes.first()
            && outcomes.iter().all(Result::is_err)
        {
            // Nothing committed (typically: not the leader): the call fails as one proposal
            // would, so the client follows the redirect for all of them.
            return Err(first.clone().into());
        }
        Ok(Response::new(ProposeManyReply {
            outcomes: outcomes
                .into_iter()
                .map(|o| match o {
                    Ok((index, results)) => ProposeOutcome {
                        log_index: index,
                        results: codec::encode(&results),
                        error: String::new(),
                    },
                    Err(e) => ProposeOutcome {
                        log_index: 0,
                        results: Vec::new(),
                        error: e.to_string(),
                    },
                })
                .collect(),
        }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        let req = request.into_inner();
        let query: Query = codec::decode("query", &req.query).map_err(ServiceError::from)?;
        if req.linearizable {
            ensure_linearizable(&self.raft).await?;
        }
        let (applied_index, result) = self.reader.query(&query);
        Ok(Response::new(ReadReply {
            applied_index,
            result: codec::encode(&result),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = request.into_inner().from_index;
        let hub = self.reader.hub().clone();
        // Fail fast if the start is already gone.
        hub.read_from(from).map_err(watch_error)?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let mut applied = hub.subscribe();
            let mut next = from;
            loop {
                match hub.read_from(next) {
                    Err(e) => {
                        let _ = tx.send(Err(watch_error(e))).await;
                        return;
                    }
                    Ok(events) => {
                        for e in events {
                            next = e.index + 1;
                            let event = WatchEvent { log_index: e.index, changes: codec::encode(e.changes.as_ref()) };
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = cancel.cancelled() => {
                        let _ = tx.send(Err(ServiceError::Unavailable("node is shutting down".into()).into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cluster_info(
        &self,
        _request: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoReply>, Status> {
        let info = cluster_info(&self.raft, &self.reader);
        Ok(Response::new(ClusterInfoReply {
            info: codec::encode(&info),
        }))
    }
}

fn watch_error(e: WatchError) -> Status {
    match e {
        WatchError::Compacted {
            requested,
            earliest,
        } => ServiceError::Compacted {
            requested,
            earliest,
        }
        .into(),
    }
}
