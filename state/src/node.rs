//! A store node: storage, Raft, the batcher, and the gRPC services on one listener.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_proto::codec::{MAX_ENCODED_BYTES, MAX_STATE_BYTES};
use tocsin_proto::pb::raft::raft_server::RaftServer;
use tocsin_proto::pb::store::store_server::StoreServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::batcher::{BatchConfig, Proposer};
use crate::error::StateError;
use crate::model::{NodeId, NodeInfo, ZoneId};
use crate::probe::{Probe, StageObserver};
use crate::raft::Raft;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, NetworkFaults};
use crate::raft::sm_store::{SmReader, SmStore};
use crate::raft::timing::RaftTiming;
use crate::service::{RaftService, StoreService};

const IDENTITY_FILE: &str = "identity.json";

/// Adds gRPC services built from the node handle to the node's listener.
pub type ExtraServices =
    Box<dyn FnOnce(&StoreNode, tonic::service::Routes) -> tonic::service::Routes + Send>;

/// Everything a store node needs to start.
#[derive(Clone)]
pub struct StoreConfig {
    /// This node's id (must be a key of `peers`).
    pub id: NodeId,
    /// Where the log, snapshots and identity live.
    pub data_dir: PathBuf,
    /// The initial members (id → zone and addresses), used to bootstrap a fresh cluster.
    pub peers: BTreeMap<NodeId, NodeInfo>,
    /// Cluster name: part of the cluster identity stored in the data dir.
    pub cluster_name: String,
    /// Raft timers.
    pub timing: RaftTiming,
    /// Proposal batching.
    pub batch: BatchConfig,
    /// Receives the write path's stage durations (see [`crate::probe`]).
    pub observer: Option<StageObserver>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("id", &self.id)
            .field("data_dir", &self.data_dir)
            .field("peers", &self.peers)
            .field("cluster_name", &self.cluster_name)
            .field("timing", &self.timing)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// Checks the config before anything is opened or bound.
    pub fn validate(&self) -> Result<(), StateError> {
        let bad = |field: &str, reason: String| {
            Err(StateError::Config {
                field: field.into(),
                reason,
            })
        };
        let Some(me) = self.peers.get(&self.id) else {
            return bad(
                "id",
                format!(
                    "node {} is not among the peers {:?}",
                    self.id,
                    self.peers.keys().collect::<Vec<_>>()
                ),
            );
        };
        if self.peers.len() > 1 && self.peers.len().is_multiple_of(2) {
            // Allowed, but worth a loud note: an even count tolerates no more failures.
            tracing::warn!(
                peers = self.peers.len(),
                "an even number of voters tolerates no more failures than one fewer"
            );
        }
        let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for (id, p) in &self.peers {
            if let Err(e) = ZoneId::new(p.zone.clone()) {
                return bad(&format!("peer.{id}.zone"), e);
            }
            if p.grpc.parse::<std::net::SocketAddr>().is_err() && !p.grpc.contains(':') {
                return bad(
                    &format!("peer.{id}.grpc"),
                    format!("{:?} is not host:port", p.grpc),
                );
            }
            zones.entry(p.zone.as_str()).or_default().push(*id);
        }
        if zones.len() > 1
            && let Some((zone, ids)) = zones
                .iter()
                .find(|(_, ids)| ids.len() * 2 >= self.peers.len())
        {
            return bad(
                "peer",
                format!(
                    "zone {zone} holds voters {ids:?}, half or more of {}: losing that zone would lose the quorum",
                    self.peers.len()
                ),
            );
        }
        let _ = me;
        Ok(())
    }

    /// The identity recorded in the data dir: cluster name and the (id, zone) of every peer.
    fn cluster_id(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(id, p)| format!("{id}={}", p.zone))
            .collect();
        format!(
            "cluster {:?} with peers [{}]",
            self.cluster_name,
            peers.join(", ")
        )
    }
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Identity {
    node_id: NodeId,
    cluster: String,
}

/// A running store node.
#[derive(Clone)]
pub struct StoreNode {
    /// The Raft handle.
    pub raft: Raft,
    /// Read access to the state machine.
    pub reader: SmReader,
    /// Proposal batcher.
    pub proposer: Proposer,
    /// Link faults (tests only; empty in production).
    pub faults: Arc<NetworkFaults>,
    /// This node's id.
    pub id: NodeId,
}

impl std::fmt::Debug for StoreNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl StoreNode {
    /// Opens storage, starts Raft and serves the Raft and store services on `listener` until
    /// `cancel` fires. A fresh data dir bootstraps the cluster from `config.peers`; an existing
    /// one must carry the same identity. `fatal` is cancelled if the Raft core dies, so the
    /// process can exit non-zero and be restarted rather than limp on.
    pub async fn start(
        config: StoreConfig,
        listener: TcpListener,
        faults: Arc<NetworkFaults>,
        cancel: CancellationToken,
        fatal: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, StateError> {
        Self::start_with(config, listener, faults, cancel, fatal, tracker, None).await
    }

    /// Like [`Self::start`], also serving the gRPC services `extra` builds from the node
    /// handle (the balancer's worker sessions) on the same listener.
    pub async fn start_with(
        config: StoreConfig,
        listener: TcpListener,
        faults: Arc<NetworkFaults>,
        cancel: CancellationToken,
        fatal: CancellationToken,
        tracker: &TaskTracker,
        extra: Option<ExtraServices>,
    ) -> Result<Self, StateError> {
        config.validate()?;
        let fresh = prepare_data_dir(&config)?;
        let raft_dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&raft_dir).map_err(|e| dir_err(&raft_dir, e))?;
        let probe = Probe::new(config.observer.clone());
        let log = LogStore::open(&raft_dir, probe.clone()).map_err(StateError::Storage)?;
        let sm = SmStore::open(&raft_dir, probe.clone()).map_err(StateError::Storage)?;
        let reader = sm.reader();
        let raft_config =
            config
                .timing
                .to_config(&config.cluster_name)
                .map_err(|e| StateError::Config {
                    field: "raft timing".into(),
                    reason: e,
                })?;
        let network = Network::new(config.id, faults.clone(), probe.clone());
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| StateError::Raft(e.to_string()))?;
        let proposer = Proposer::start(
            raft.clone(),
            config.batch.clone(),
            cancel.clone(),
            tracker,
            probe.clone(),
        );

        let raft_svc = RaftServer::new(RaftService::new(raft.clone()))
            .max_decoding_message_size(MAX_ENCODED_BYTES)
            .max_encoding_message_size(MAX_ENCODED_BYTES);
        let store_svc = StoreServer::new(StoreService::new(
            raft.clone(),
            config.id,
            proposer.clone(),
            reader.clone(),
            cancel.clone(),
            tracker.clone(),
            probe,
        ))
        .max_decoding_message_size(MAX_ENCODED_BYTES)
        // A read's answer (a whole-machine replica) is as large as the state.
        .max_encoding_message_size(MAX_STATE_BYTES);
        let node = Self {
            raft: raft.clone(),
            reader: reader.clone(),
            proposer: proposer.clone(),
            faults: faults.clone(),
            id: config.id,
        };
        let mut routes = tonic::service::Routes::new(raft_svc).add_service(store_svc);
        if let Some(extra) = extra {
            routes = extra(&node, routes);
        }
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server_cancel = cancel.clone();
        tracker.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, server_cancel.cancelled())
                .await;
            if let Err(e) = result {
                error!(error = %e, "gRPC server failed");
            }
        });

        if fresh {
            info!(peers = ?config.peers.keys().collect::<Vec<_>>(), "bootstrapping a fresh cluster");
            match raft.initialize(config.peers.clone()).await {
                Ok(()) => {}
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(_),
                )) => {}
                Err(e) => return Err(StateError::Raft(format!("initialize: {e}"))),
            }
        }

        // Watch for a fatal Raft core error; shut the Raft core down on cancel.
        let monitor_raft = raft.clone();
        tracker.spawn(async move {
            let mut metrics = monitor_raft.metrics();
            loop {
                if let Err(f) = &metrics.borrow().running_state {
                    error!(error = %f, "raft core stopped with a fatal error");
                    fatal.cancel();
                    break;
                }
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { break },
                    () = cancel.cancelled() => break,
                }
            }
            let _ = monitor_raft.shutdown().await;
        });

        Ok(node)
    }
}

fn dir_err(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::DataDir {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Creates the data dir if needed, checks it is writable and belongs to this node and cluster.
/// Returns whether it was fresh.
fn prepare_data_dir(config: &StoreConfig) -> Result<bool, StateError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| dir_err(dir, e))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(|e| dir_err(dir, format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    let expected = Identity {
        node_id: config.id,
        cluster: config.cluster_id(),
    };
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| dir_err(&path, format!("unreadable identity file: {e}")))?;
            if found != expected {
                return Err(StateError::WrongCluster {
                    path: dir.clone(),
                    found: format!("node {} of {}", found.node_id, found.cluster),
                    expected: format!("node {} of {}", expected.node_id, expected.cluster),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let raft = dir.join("raft");
            if raft.join("raft-log").exists() || raft.join("raft-log.redb").exists() {
                return Err(dir_err(
                    dir,
                    "holds a Raft log but no identity file; refusing to guess",
                ));
            }
            let bytes = serde_json::to_vec_pretty(&expected).expect("identity serializes");
            crate::raft::sm_store::write_atomically(dir, IDENTITY_FILE, &bytes)
                .map_err(|e| dir_err(dir, e))?;
            Ok(true)
        }
        Err(e) => Err(dir_err(&path, e)),
    }
}
