//! Test fixtures: an in-process multi-node cluster on loopback with a fault-injecting network.
//! Enabled by the `testing` feature; used by this crate's tests and by `tocsin bench store`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batcher::BatchConfig;
use crate::client::StoreClient;
use crate::model::{NodeId, NodeInfo, Query, QueryResult};
use crate::node::{StoreConfig, StoreNode};
use crate::probe::StageObserver;
use crate::raft::network::NetworkFaults;
use crate::raft::timing::RaftTiming;

/// Polls `cond` every 20 ms until it holds or `timeout` passes; panics naming `what`.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    node: StoreNode,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A node's own runtime (see [`TestCluster::start_isolated`]); shut down without blocking
/// when the cluster is dropped, which may happen inside another runtime.
struct NodeRuntime(Option<tokio::runtime::Runtime>);

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A cluster of store nodes in this process, one per zone (`z1`, `z2`, ...).
pub struct TestCluster {
    /// Root of the nodes' data dirs.
    pub dir: PathBuf,
    /// Shared link faults.
    pub faults: Arc<NetworkFaults>,
    peers: BTreeMap<NodeId, NodeInfo>,
    running: BTreeMap<NodeId, Running>,
    timing: RaftTiming,
    batch: BatchConfig,
    observe: Option<NodeObservers>,
    /// Worker threads of each node's own runtime; `None`: nodes share the caller's.
    node_threads: Option<usize>,
    runtimes: BTreeMap<NodeId, NodeRuntime>,
}

/// Gives each node (by id) its stage observer.
pub type NodeObservers = Arc<dyn Fn(NodeId) -> StageObserver + Send + Sync>;

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts `n` nodes under `dir` with `timing`.
    pub async fn start(dir: PathBuf, n: u64, timing: RaftTiming, batch: BatchConfig) -> Self {
        Self::start_observed(dir, n, timing, batch, None).await
    }

    /// Like [`Self::start`], each node reporting its write-path stages to the observer
    /// `observe` gives it.
    pub async fn start_observed(
        dir: PathBuf,
        n: u64,
        timing: RaftTiming,
        batch: BatchConfig,
        observe: Option<NodeObservers>,
    ) -> Self {
        Self::start_isolated(dir, n, timing, batch, observe, None).await
    }

    /// Like [`Self::start_observed`]; with `node_threads`, each node runs on a runtime of its
    /// own with that many worker threads, as it would in its own process (the operating
    /// system, not one shared task queue, then shares the cores between the nodes).
    pub async fn start_isolated(
        dir: PathBuf,
        n: u64,
        timing: RaftTiming,
        batch: BatchConfig,
        observe: Option<NodeObservers>,
        node_threads: Option<usize>,
    ) -> Self {
        let mut listeners = BTreeMap::new();
        let mut peers = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = l.local_addr().expect("addr").to_string();
            peers.insert(
                id,
                NodeInfo {
                    zone: format!("z{id}"),
                    grpc: addr,
                    http: String::new(),
                },
            );
            listeners.insert(id, l);
        }
        let mut c = Self {
            dir,
            faults: Arc::default(),
            peers,
            running: BTreeMap::new(),
            timing,
            batch,
            observe,
            node_threads,
            runtimes: BTreeMap::new(),
        };
        for (id, l) in listeners {
            c.start_node(id, l).await;
        }
        c
    }

    async fn start_node(&mut self, id: NodeId, listener: TcpListener) {
        let config = StoreConfig {
            id,
            data_dir: self.dir.join(format!("n{id}")),
            peers: self.peers.clone(),
            cluster_name: "test".into(),
            timing: self.timing.clone(),
            batch: self.batch.clone(),
            observer: self.observe.as_ref().map(|o| o(id)),
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let faults = self.faults.clone();
        let start = |listener: TcpListener, cancel: CancellationToken, tracker: TaskTracker| async move {
            StoreNode::start(
                config,
                listener,
                faults,
                cancel,
                CancellationToken::new(),
                &tracker,
            )
            .await
            .expect("start node")
        };
        let node = match self.node_threads {
            None => start(listener, cancel.clone(), tracker.clone()).await,
            Some(threads) => {
                let rt = self.runtimes.entry(id).or_insert_with(|| {
                    NodeRuntime(Some(
                        tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(threads)
                            .thread_name(format!("node-{id}"))
                            .enable_all()
                            .build()
                            .expect("node runtime"),
                    ))
                });
                let handle = rt.0.as_ref().expect("runtime alive").handle().clone();
                // The listener must be registered with the node's own reactor.
                let std_listener = listener.into_std().expect("listener into std");
                let (cancel, tracker) = (cancel.clone(), tracker.clone());
                handle
                    .spawn(async move {
                        let listener = TcpListener::from_std(std_listener).expect("listener");
                        start(listener, cancel, tracker).await
                    })
                    .await
                    .expect("node start task")
            }
        };
        self.running.insert(
            id,
            Running {
                node,
                cancel,
                tracker,
            },
        );
    }

    /// Stops node `id` (as if its process died: nothing more is written).
    pub async fn kill(&mut self, id: NodeId) {
        let r = self.running.remove(&id).expect("node running");
        r.cancel.cancel();
        let _ = r.node.raft.shutdown().await;
        r.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), r.tracker.wait())
            .await
            .expect("node tasks stop");
    }

    /// Restarts node `id` from its data dir on its old address.
    pub async fn restart(&mut self, id: NodeId) {
        let addr = self.peers[&id].grpc.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        self.start_node(id, listener).await;
    }

    /// A running node.
    pub fn node(&self, id: NodeId) -> &StoreNode {
        &self.running[&id].node
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.running.keys().copied().collect()
    }

    /// gRPC address of node `id`.
    pub fn addr(&self, id: NodeId) -> String {
        self.peers[&id].grpc.clone()
    }

    /// A client seeded with every node.
    pub fn client(&self) -> StoreClient {
        StoreClient::new(self.peers.values().map(|p| p.grpc.clone()).collect()).expect("client")
    }

    /// A client that only talks to node `id`.
    pub fn client_of(&self, id: NodeId) -> StoreClient {
        StoreClient::new(vec![self.addr(id)]).expect("client")
    }

    /// The leader that every running node in `among` agrees on, once there is one.
    pub async fn wait_leader(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let mut leader = None;
        wait_until(timeout, "one leader agreed by the given nodes", || {
            let views: Vec<Option<NodeId>> = among
                .iter()
                .map(|id| self.node(*id).raft.metrics().borrow().current_leader)
                .collect();
            leader = views[0].filter(|l| among.contains(l) && views.iter().all(|v| *v == Some(*l)));
            leader.is_some()
        })
        .await;
        leader.expect("leader")
    }

    /// Waits until every node in `among` has applied at least `index`.
    pub async fn wait_applied(&self, among: &[NodeId], index: u64, timeout: Duration) {
        wait_until(
            timeout,
            &format!("nodes {among:?} applied index {index}"),
            || {
                among
                    .iter()
                    .all(|id| self.node(*id).reader.applied_index() >= index)
            },
        )
        .await;
    }

    /// The state digest of node `id`.
    pub fn digest(&self, id: NodeId) -> u64 {
        match self.node(id).reader.query(&Query::Digest).1 {
            QueryResult::Digest(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.kill(id).await;
        }
    }
}
