//! Raft transport over tonic, plus [`NetworkFaults`], the hook chaos tests use to cut links.
//!
//! One lazily connected `Channel` per peer (it reconnects by itself). openraft's messages
//! travel codec-encoded in `bytes` fields. Errors are mapped so openraft backs off correctly:
//! refused/broken connections and cut links → `Unreachable` (backoff), deadlines → `Timeout`,
//! a Raft error from the peer → `RemoteError`.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::RPCTypes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tocsin_proto::codec::{self, MAX_ENCODED_BYTES};
use tocsin_proto::pb::raft::RaftRequest;
use tocsin_proto::pb::raft::raft_client::RaftClient;
use tonic::transport::{Channel, Endpoint};

use super::TypeConfig;
use crate::model::{NodeId, NodeInfo};
use crate::probe::{Probe, Stage};

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 pings on a peer connection that received nothing for this long.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A peer connection whose ping goes unanswered this long is closed (and reopened on use).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most encoded bytes of one AppendEntries with more than one entry (see
/// `PeerClient::append_entries`): 2 MiB crosses a 1 Gbit/s zone link in about 17 ms.
const APPEND_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Links that tests have cut. Production nodes hold an empty one.
#[derive(Debug, Default)]
pub struct NetworkFaults {
    /// Directed links (from, to) that drop every RPC.
    cut: RwLock<BTreeSet<(NodeId, NodeId)>>,
}

impl NetworkFaults {
    /// Cuts both directions between `a` and `b`.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        let mut cut = self.cut.write().expect("faults lock poisoned");
        cut.insert((a, b));
        cut.insert((b, a));
    }

    /// Cuts `node` off from every node in `others`.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        for o in others {
            self.partition(node, o);
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cut.write().expect("faults lock poisoned").clear();
    }

    /// Whether `from` can reach `to`.
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
        !self
            .cut
            .read()
            .expect("faults lock poisoned")
            .contains(&(from, to))
    }
}

/// Creates a [`PeerClient`] per peer.
#[derive(Debug, Clone)]
pub struct Network {
    self_id: NodeId,
    faults: Arc<NetworkFaults>,
    probe: Probe,
}

impl Network {
    /// A network for node `self_id`, subject to `faults`; AppendEntries durations go to
    /// `probe`.
    pub fn new(self_id: NodeId, faults: Arc<NetworkFaults>, probe: Probe) -> Self {
        Self {
            self_id,
            faults,
            probe,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        let client = Endpoint::from_shared(format!("http://{}", node.grpc))
            .map(|e| {
                let channel = e
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    // A partition resets nothing: without pings a stalled connection waits
                    // out TCP's retransmission backoff after the heal (seconds) before the
                    // peer hears from the leader again.
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                RaftClient::new(channel)
                    .max_decoding_message_size(MAX_ENCODED_BYTES)
                    .max_encoding_message_size(MAX_ENCODED_BYTES)
            })
            .map_err(|e| format!("bad address {:?} for node {target}: {e}", node.grpc));
        PeerClient {
            self_id: self.self_id,
            target,
            client,
            faults: self.faults.clone(),
            probe: self.probe.clone(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    self_id: NodeId,
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
    faults: Arc<NetworkFaults>,
    probe: Probe,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.call_encoded(action, codec::encode(req), ttl).await
    }

    async fn call_encoded<Resp, E>(
        &mut self,
        action: RPCTypes,
        data: Vec<u8>,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable =
            |msg: String| RPCError::Unreachable(Unreachable::new(&TransportError(msg)));
        if !self.faults.allows(self.self_id, self.target) {
            return Err(unreachable(format!(
                "link {} -> {} is cut",
                self.self_id, self.target
            )));
        }
        let client = self.client.as_mut().map_err(|e| unreachable(e.clone()))?;
        let mut request = tonic::Request::new(RaftRequest { data });
        request.set_timeout(ttl);
        let fut = async {
            match action {
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let timeout = || {
            RPCError::Timeout(Timeout {
                action,
                id: self.self_id,
                target: self.target,
                timeout: ttl,
            })
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => return Err(timeout()),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => timeout(),
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        unreachable(status.message().to_string())
                    }
                    _ => RPCError::Network(NetworkError::new(&TransportError(format!(
                        "{:?}: {}",
                        status.code(),
                        status.message()
                    )))),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        // A partition cuts replies too: a reply crossing a cut link is lost.
        if !self.faults.allows(self.target, self.self_id) {
            return Err(timeout());
        }
        let decoded: Result<Resp, E> = codec::decode("raft reply", &reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&TransportError(e.to_string()))))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let started = std::time::Instant::now();
        // openraft 0.9 gives an AppendEntries one heartbeat interval, however many entries it
        // carries (up to `max_payload_entries`): a follower catching up on big entries would
        // time out on every try and never catch up. Past a byte budget, ask openraft for fewer
        // entries per call (it retries at once with the hint).
        let data = codec::encode(&rpc);
        if data.len() > APPEND_BYTES_MAX && rpc.entries.len() > 1 {
            let per_entry = data.len() / rpc.entries.len();
            let hint = (APPEND_BYTES_MAX / per_entry.max(1)).clamp(1, rpc.entries.len() - 1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint as u64),
            ));
        }
        let result = self
            .call_encoded(RPCTypes::AppendEntries, data, option.hard_ttl())
            .await;
        self.probe.since(Stage::AppendEntries, started);
        result
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(RPCTypes::Vote, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(RPCTypes::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A dead peer is retried every 200 ms, not in a tight loop and not so slowly that a
        // restarted zone waits long to catch up.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
