//! The worker's session with the leader's balancer.
//!
//! One bidirectional stream to the leader: a `Hello`, then a heartbeat every interval (steal
//! fraction, evaluation counts since the last report, measured round trips, the last probe
//! seen); downstream, the worker's complete set of owned shards (from committed state) and
//! probes. A node that is not the leader refuses the stream with a typed `NotLeader` hint and
//! the worker goes there at once; other failures reconnect with capped, fully jittered
//! backoff.
//!
//! **Self-fencing**: every message from the leader renews a lease. When the lease runs out
//! (partition, paused leader, paused worker) the worker publishes an empty, `fenced` ownership
//! and stops acting for all its shards until a leader assigns them again. This only bounds
//! wasted work: safety comes from epoch fencing in the store, which refuses a stale owner's
//! writes whatever the worker believes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tocsin_proto::ServiceError;
use tocsin_proto::ids::{Epoch, ShardId};
use tocsin_proto::pb::worker::balancer_client::BalancerClient;
use tocsin_proto::worker::{BalancerUpdate, Heartbeat, Hello, WorkerReport};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::steal;

/// Reconnect backoff bounds (full jitter in between).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Connection attempt bound.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// gRPC addresses of any nodes.
    pub seeds: Vec<String>,
    /// Who this worker is.
    pub hello: Hello,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Silence from the leader after which the worker fences itself.
    pub lease: Duration,
    /// `/proc/stat`-format file for steal sampling; `None` disables steal reporting.
    pub stat_path: Option<PathBuf>,
    /// The worker's store client, told the leader's address whenever a session opens (only
    /// the leader accepts sessions), so its next call skips a deposed or cut-off leader.
    pub store: Option<tocsin_state::client::StoreClient>,
}

/// Counters the evaluation loops feed and each heartbeat drains.
#[derive(Debug, Default)]
pub struct WorkStats {
    /// Evaluations finished.
    pub evals: AtomicU64,
    /// Evaluations that failed.
    pub failed: AtomicU64,
    /// Evaluations that finished late.
    pub late: AtomicU64,
    /// Last measured datasource round trip, µs (0: none).
    pub datasource_rtt_us: AtomicU64,
    /// Last measured store round trip, µs (0: none).
    pub store_rtt_us: AtomicU64,
}

/// What the worker currently owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Owned shards and the epochs to write with.
    pub shards: BTreeMap<ShardId, Epoch>,
    /// Log index the assignment reflects.
    pub log_index: u64,
    /// True when the worker fenced itself (lease expired); `shards` is then empty.
    pub fenced: bool,
}

struct Shared {
    ownership: watch::Sender<Ownership>,
    last_contact: std::sync::Mutex<Instant>,
}

/// Starts the session; the returned receiver always holds the current ownership.
pub fn start(
    config: SessionConfig,
    stats: Arc<WorkStats>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> watch::Receiver<Ownership> {
    let (tx, rx) = watch::channel(Ownership::default());
    let shared = Arc::new(Shared {
        ownership: tx,
        last_contact: std::sync::Mutex::new(Instant::now()),
    });
    tracker.spawn(fence_loop(shared.clone(), config.lease, cancel.clone()));
    tracker.spawn(session_loop(config, stats, shared, cancel));
    rx
}

async fn fence_loop(shared: Arc<Shared>, lease: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval((lease / 4).max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let silent = shared.last_contact.lock().expect("lease lock").elapsed();
        if silent > lease {
            shared.ownership.send_if_modified(|o| {
                if o.fenced || o.shards.is_empty() {
                    return false;
                }
                warn!(
                    silent_ms = silent.as_millis() as u64,
                    shards = o.shards.len(),
                    "lease expired: fencing myself, acting for no shard until reassigned"
                );
                *o = Ownership {
                    shards: BTreeMap::new(),
                    log_index: o.log_index,
                    fenced: true,
                };
                true
            });
        }
    }
}

async fn session_loop(
    config: SessionConfig,
    stats: Arc<WorkStats>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    let mut hint: Option<String> = None;
    let mut seed = rand::rng().random_range(0..config.seeds.len().max(1));
    let mut avoid: Option<String> = None;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let target = hint.take().unwrap_or_else(|| {
            // Not the node just left (a silent or refusing one): the next seed after it.
            for _ in 0..config.seeds.len() {
                seed = (seed + 1) % config.seeds.len().max(1);
                if config.seeds.get(seed) != avoid.as_ref() {
                    break;
                }
            }
            config.seeds.get(seed).cloned().unwrap_or_default()
        });
        let mut established = false;
        match run_session(&config, &target, &stats, &shared, &cancel, &mut established).await {
            Ok(()) => return, // cancelled
            Err(ServiceError::NotLeader { leader: Some(l) }) if l.grpc != target => {
                hint = Some(l.grpc);
                continue;
            }
            Err(e) => {
                warn!(node = %target, error = %e, "balancer session ended; reconnecting");
                avoid = Some(target);
            }
        }
        if established {
            // A session that worked says the cluster is fine: reconnect fast (the leader
            // probably just changed), not after the backoff accumulated earlier.
            backoff = MIN_BACKOFF;
        }
        let sleep = rand::rng().random_range(Duration::ZERO..=backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One session with `target`; returns Ok only when cancelled.
async fn run_session(
    config: &SessionConfig,
    target: &str,
    stats: &WorkStats,
    shared: &Shared,
    cancel: &CancellationToken,
    established: &mut bool,
) -> Result<(), ServiceError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| ServiceError::invalid("seed", e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ServiceError::Unavailable(format!("connect {target}: {e}")))?;
    let mut client = BalancerClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    tx.send(WorkerReport::Hello(config.hello.clone()).into())
        .await
        .map_err(|_| ServiceError::Internal("session channel closed".into()))?;
    let mut inbound =
        tokio::time::timeout(CONNECT_TIMEOUT * 5, client.session(ReceiverStream::new(rx)))
            .await
            .map_err(|_| ServiceError::Timeout(format!("{target} did not open the session")))?
            .map_err(|s| ServiceError::from_status(&s))?
            .into_inner();
    info!(node = %target, worker = %config.hello.worker, "balancer session open");
    *established = true;
    if let Some(store) = &config.store {
        store.prefer_leader(target);
    }
    // The balancer probes every heartbeat interval; a session silent for a whole lease is
    // with a node that lost the leadership or is cut off (a partition closes nothing), so
    // it is dropped and the leader looked for elsewhere.
    let mut heard = Instant::now();

    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut probe_echo = 0u64;
    let mut cpu = config
        .stat_path
        .as_deref()
        .and_then(|p| steal::read(p).ok());
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if heard.elapsed() > config.lease {
                    return Err(ServiceError::Unavailable(format!(
                        "no word from the balancer for {} ms",
                        heard.elapsed().as_millis()
                    )));
                }
                seq += 1;
                let steal_fraction = match config.stat_path.as_deref() {
                    None => 0.0,
                    Some(p) => match steal::read(p) {
                        Ok(now) => {
                            let f = cpu.and_then(|prev| steal::fraction(prev, now)).unwrap_or(0.0);
                            cpu = Some(now);
                            f
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot sample steal time");
                            0.0
                        }
                    },
                };
                let hb = Heartbeat {
                    seq,
                    steal_fraction,
                    evals: stats.evals.swap(0, Ordering::Relaxed),
                    failed_evals: stats.failed.swap(0, Ordering::Relaxed),
                    late_evals: stats.late.swap(0, Ordering::Relaxed),
                    datasource_rtt_ms: stats.datasource_rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    store_rtt_ms: stats.store_rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    probe_echo,
                };
                // Keep failed/late within evals even if the loops raced the swap.
                let hb = Heartbeat { failed_evals: hb.failed_evals.min(hb.evals), late_evals: hb.late_evals.min(hb.evals), ..hb };
                // Never wait on a stalled stream: a full queue drops this heartbeat (the lease
                // check above ends the session if the node stays silent).
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send(WorkerReport::Heartbeat(hb).into())
                {
                    return Err(ServiceError::Unavailable("session closed by the node".into()));
                }
            }
            msg = inbound.next() => {
                let update = match msg {
                    None => return Err(ServiceError::Unavailable("session closed by the node".into())),
                    Some(Err(status)) => return Err(ServiceError::from_status(&status)),
                    Some(Ok(m)) => BalancerUpdate::try_from(m)?,
                };
                heard = Instant::now();
                *shared.last_contact.lock().expect("lease lock") = heard;
                match update {
                    BalancerUpdate::Probe { seq } => {
                        probe_echo = seq;
                        if let Err(mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send(WorkerReport::ProbeAck { seq }.into())
                        {
                            return Err(ServiceError::Unavailable("session closed by the node".into()));
                        }
                    }
                    BalancerUpdate::Assignments { log_index, shards } => {
                        let ownership = Ownership { shards: shards.into_iter().collect(), log_index, fenced: false };
                        shared.ownership.send_if_modified(|o| {
                            if *o == ownership {
                                return false;
                            }
                            info!(shards = ownership.shards.len(), log_index, "assignments changed");
                            *o = ownership;
                            true
                        });
                    }
                }
            }
        }
    }
}
