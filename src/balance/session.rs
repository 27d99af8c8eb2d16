//! `Balancer.Session`: a worker's stream with the leader. Hello → (register if new or changed)
//! → heartbeats in, assignments and probes out. Refused on followers with a `NotLeader` hint;
//! ended with one when this node loses leadership.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tocsin_balancer::HeartbeatReport;
use tocsin_proto::ServiceError;
use tocsin_proto::ids::{Epoch, ShardId, WorkerId};
use tocsin_proto::pb::worker::{
    BalancerUpdate as PbUpdate, WorkerReport as PbReport, balancer_server,
};
use tocsin_proto::worker::{BalancerUpdate, Hello, WorkerReport};
use tocsin_state::model::{Command, Query, QueryResult, WorkerInfo};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::BalancerHandle;
use crate::clock::wall_ms;

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Outbound messages buffered per session.
const SESSION_BUFFER: usize = 32;
/// Probes remembered for RTT matching.
const PROBES_KEPT: usize = 16;

/// The gRPC service.
#[derive(Clone, Debug)]
pub struct SessionService {
    handle: BalancerHandle,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl SessionService {
    /// A service over `handle`.
    pub fn new(handle: BalancerHandle, cancel: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            handle,
            cancel,
            tracker,
        }
    }
}

fn owned_by(handle: &BalancerHandle, worker: &WorkerId) -> (u64, Vec<(ShardId, Epoch)>) {
    let (index, result) = handle.node.reader.query(&Query::Assignments);
    let QueryResult::Assignments(all) = result else {
        return (index, Vec::new());
    };
    let shards = all
        .into_iter()
        .filter(|(_, a)| a.owner.as_ref() == Some(worker))
        .map(|(s, a)| (s, a.epoch))
        .collect();
    (index, shards)
}

async fn register(handle: &BalancerHandle, hello: &Hello) -> Result<(), ServiceError> {
    let (_, workers) = handle.node.reader.query(&Query::Workers);
    let known = match workers {
        QueryResult::Workers(ws) => ws.into_iter().find(|w| w.id == hello.worker),
        _ => None,
    };
    let info = WorkerInfo {
        id: hello.worker.clone(),
        zone: hello.zone.clone(),
        addr: hello.addr.clone(),
        capacity: hello.capacity,
        registered_at_ms: known.as_ref().map_or_else(wall_ms, |k| k.registered_at_ms),
    };
    let same = known
        .as_ref()
        .is_some_and(|k| k.zone == info.zone && k.capacity == info.capacity && k.addr == info.addr);
    if !same {
        let (_, results) = handle
            .node
            .proposer
            .propose(vec![Command::RegisterWorker(info.clone())])
            .await
            .map_err(|e| tocsin_state::service::propose_error(&handle.node.raft, e))?;
        if let Some(Err(e)) = results.into_iter().next() {
            return Err(ServiceError::invalid("hello", e.to_string()));
        }
        info!(worker = %info.id, zone = %info.zone, capacity = info.capacity, "worker registered");
    }
    handle
        .core
        .lock()
        .expect("balancer lock")
        .register_worker(info, wall_ms());
    Ok(())
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<PbUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl balancer_server::Balancer for SessionService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<PbReport>>,
    ) -> Result<Response<SessionStream>, Status> {
        let h = self.handle.clone();
        if !h.is_leader() {
            return Err(ServiceError::NotLeader {
                leader: tocsin_state::service::leader_hint(&h.node.raft),
            }
            .into());
        }
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| ServiceError::Timeout("no hello within 5 s".into()))??
            .ok_or_else(|| ServiceError::invalid("session", "closed before hello"))?;
        let WorkerReport::Hello(hello) = WorkerReport::try_from(first)? else {
            return Err(
                ServiceError::invalid("session", "the first message must be a hello").into(),
            );
        };
        register(&h, &hello).await?;
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let worker = hello.worker.clone();
            if let Err(e) = drive(&h, &hello, inbound, &tx, cancel).await {
                debug!(worker = %worker, error = %e, "session ended");
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn drive(
    h: &BalancerHandle,
    hello: &Hello,
    mut inbound: Streaming<PbReport>,
    tx: &mpsc::Sender<Result<PbUpdate, Status>>,
    cancel: CancellationToken,
) -> Result<(), ServiceError> {
    let worker = &hello.worker;
    let period = Duration::from_millis(h.config.liveness.heartbeat_interval_ms.max(50) as u64);
    let mut probe_tick = tokio::time::interval(period);
    let mut applied = h.node.reader.hub().subscribe();
    let mut sent: Option<Vec<(ShardId, Epoch)>> = None;
    let mut probes: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut probe_seq = 0u64;
    // The latest probe round trip, reported with the next heartbeat.
    let mut rtt_ms: Option<f64> = None;
    let send = |u: BalancerUpdate| async move {
        tx.send(Ok(u.into()))
            .await
            .map_err(|_| ServiceError::Unavailable("worker went away".into()))
    };
    loop {
        if !h.is_leader() {
            return Err(ServiceError::NotLeader {
                leader: tocsin_state::service::leader_hint(&h.node.raft),
            });
        }
        let (index, shards) = owned_by(h, worker);
        if sent.as_ref() != Some(&shards) {
            send(BalancerUpdate::Assignments {
                log_index: index,
                shards: shards.clone(),
            })
            .await?;
            sent = Some(shards);
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(ServiceError::Unavailable("node is shutting down".into())),
            changed = applied.changed() => {
                if changed.is_err() {
                    return Err(ServiceError::Unavailable("state machine stopped".into()));
                }
            }
            _ = probe_tick.tick() => {
                probe_seq += 1;
                probes.insert(probe_seq, Instant::now());
                while probes.len() > PROBES_KEPT {
                    probes.pop_first();
                }
                send(BalancerUpdate::Probe { seq: probe_seq }).await?;
            }
            msg = inbound.next() => {
                let report = match msg {
                    None => return Ok(()),
                    Some(Err(s)) => return Err(ServiceError::from_status(&s)),
                    Some(Ok(m)) => WorkerReport::try_from(m)?,
                };
                let hb = match report {
                    WorkerReport::Hello(_) => return Err(ServiceError::invalid("session", "hello sent twice")),
                    WorkerReport::ProbeAck { seq } => {
                        if let Some(t) = probes.remove(&seq) {
                            rtt_ms = Some(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        continue;
                    }
                    WorkerReport::Heartbeat(hb) => hb,
                };
                let probe_rtt_ms = rtt_ms.take();
                let positive = |v: f64| (v > 0.0).then_some(v);
                let report = HeartbeatReport {
                    steal: Some(hb.steal_fraction),
                    evals: hb.evals,
                    failed_evals: hb.failed_evals,
                    late_evals: hb.late_evals,
                    probe_rtt_ms,
                    datasource_rtt_ms: positive(hb.datasource_rtt_ms),
                    store_rtt_ms: positive(hb.store_rtt_ms),
                };
                let result = h.core.lock().expect("balancer lock").observe_heartbeat(worker, wall_ms(), report);
                if let Err(e) = result {
                    warn!(worker = %worker, error = %e, "heartbeat refused");
                    return Err(ServiceError::invalid("heartbeat", e.to_string()));
                }
            }
        }
    }
}
