//! The balancer's async adapter on every node: the worker session service and the leader loop
//! that feeds the pure core (`tocsin_balancer::Balancer`) and commits its decisions.
//!
//! Only the Raft leader acts. On becoming leader the core resumes zone states from the
//! committed `ZoneRecord`s and the registered workers from the state machine, then settles
//! (collects heartbeats) before moving anything. Each tick's decision becomes one `Assign`
//! command (epoch = its log index) plus one `SetZone` per changed zone, proposed through the
//! local batcher; a follower's sessions are refused with a `NotLeader` hint.

pub mod session;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tocsin_balancer::{Balancer, BalancerConfig, MetaAlert, ZoneView};
use tocsin_state::model::{Command, Query, QueryResult, ZoneState};
use tocsin_state::node::StoreNode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::wall_ms;

/// What the leader's balancer last concluded, for status and meta-alerts.
#[derive(Debug, Default, Clone)]
pub struct BalancerView {
    /// Per-zone signals and state.
    pub zones: Vec<ZoneView>,
    /// Why placement is frozen, if it is.
    pub frozen: Option<String>,
    /// Conditions for a human.
    pub meta_alerts: Vec<MetaAlert>,
    /// Whether this node's balancer is acting (leader, settled).
    pub active: bool,
    /// Shards this node's balancer has moved (committed), since the process started.
    pub shard_moves: u64,
}

/// Shared between the loop, the session service and the HTTP API.
#[derive(Clone)]
pub struct BalancerHandle {
    pub(crate) core: Arc<Mutex<Balancer>>,
    pub(crate) node: StoreNode,
    pub(crate) config: BalancerConfig,
    view: Arc<Mutex<BalancerView>>,
    /// When this node last asked another to take leadership (rate limit).
    last_handoff: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Per-zone meta-alerts as last committed by this leader: (alert name, zone) → firing.
    zone_meta: Arc<Mutex<BTreeMap<(String, String), bool>>>,
    /// Since when each per-zone condition has held (ms), for the `for` delay.
    zone_meta_since: Arc<Mutex<BTreeMap<(String, String), i64>>>,
    /// When a quorum last confirmed this node's leadership (see [`Self::is_leader`]).
    quorum_ok_at: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl std::fmt::Debug for BalancerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancerHandle").finish_non_exhaustive()
    }
}

impl BalancerHandle {
    /// A balancer for `node` with `config` (validated).
    pub fn new(node: StoreNode, config: BalancerConfig) -> Result<Self, String> {
        let core = Balancer::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Self {
            core: Arc::new(Mutex::new(core)),
            node,
            config,
            view: Arc::default(),
            last_handoff: Arc::default(),
            zone_meta: Arc::default(),
            zone_meta_since: Arc::default(),
            quorum_ok_at: Arc::default(),
        })
    }

    /// The latest view.
    pub fn view(&self) -> BalancerView {
        self.view.lock().expect("view lock").clone()
    }

    /// Whether this node leads *and* a quorum confirmed it within one worker lease. openraft
    /// 0.9 has no check-quorum: a leader cut off by a partition still believes it leads. Its
    /// balancer must then stop acting and stop renewing its workers' leases, so that they
    /// fence themselves and look for the majority's leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft_says_leader()
            && self
                .quorum_ok_at
                .lock()
                .expect("quorum lock")
                .is_some_and(|t| t.elapsed() <= self.lease())
    }

    fn raft_says_leader(&self) -> bool {
        let m = self.node.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(m.id)
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.config.liveness.lease_ms.max(1) as u64)
    }

    /// Confirms leadership with a quorum every heartbeat interval while Raft says this node
    /// leads, until `cancel`.
    pub async fn confirm_quorum(self, cancel: CancellationToken) {
        let period =
            Duration::from_millis(self.config.liveness.heartbeat_interval_ms.max(50) as u64);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            if !self.raft_says_leader() {
                continue;
            }
            let asked = tokio::time::Instant::now();
            let confirmed =
                tokio::time::timeout(self.lease(), self.node.raft.ensure_linearizable())
                    .await
                    .is_ok_and(|r| r.is_ok());
            if confirmed {
                *self.quorum_ok_at.lock().expect("quorum lock") = Some(asked);
            }
        }
    }

    /// Per-zone meta-alerts (replicated, routed like any alert), committed when they change:
    /// `TocsinZoneUnhealthy` (degraded or drained), `TocsinWorkersLost` (a zone has dead
    /// workers) and `TocsinEvaluationsFailing` (a zone's evaluations mostly fail or run late:
    /// the datasource, or the workers, are in trouble).
    fn zone_meta_alerts(&self, zones: &[ZoneView], now: i64) -> Vec<Command> {
        let mut out = Vec::new();
        let mut last = self.zone_meta.lock().expect("zone meta lock");
        let mut since = self.zone_meta_since.lock().expect("zone meta lock");
        // Like a rule's `for`: a condition must hold this long before it pages anyone (a worker
        // whose first heartbeat is still in flight is not "lost").
        let hold_ms = self.config.liveness.heartbeat_interval_ms.max(50) * 10;
        for z in zones {
            let zone = z.zone.to_string();
            let state = z.state.as_str();
            let checks = [
                (
                    "TocsinZoneUnhealthy",
                    matches!(z.state, ZoneState::Degraded | ZoneState::Drained),
                    format!(
                        "Zone {zone} is {state} (health score {:.2}); its shards move to healthy zones",
                        z.score
                    ),
                ),
                (
                    "TocsinWorkersLost",
                    z.alive_workers < z.workers,
                    format!(
                        "{} of {} workers in zone {zone} stopped heartbeating",
                        z.workers - z.alive_workers.min(z.workers),
                        z.workers
                    ),
                ),
                (
                    "TocsinEvaluationsFailing",
                    z.penalties.work > 0.5,
                    format!(
                        "Most evaluations in zone {zone} fail or finish late (work penalty {:.2}): check the datasource",
                        z.penalties.work
                    ),
                ),
            ];
            for (name, holds, summary) in checks {
                let key = (name.to_string(), zone.clone());
                let firing = if holds {
                    let start = *since.entry(key.clone()).or_insert(now);
                    now - start >= hold_ms
                } else {
                    since.remove(&key);
                    false
                };
                if last.get(&key) == Some(&firing) {
                    continue;
                }
                last.insert(key, firing);
                out.push(Command::SetMetaAlert {
                    name: name.into(),
                    labels: BTreeMap::from([
                        ("zone".to_string(), zone.clone()),
                        ("severity".to_string(), "warning".to_string()),
                    ]),
                    annotations: BTreeMap::from([("summary".to_string(), summary)]),
                    firing,
                    at_ms: now,
                });
            }
        }
        out
    }

    /// DESIGN.md §5: the leader should sit in a healthy zone. openraft 0.9 has no leadership
    /// transfer, so when this (leader) node's zone is degraded or drained, it asks a voter in
    /// a healthy zone to start an election (`POST /api/v1/admin/elect` on that node); that
    /// node's log is current, so it wins, and this node steps down on the higher term. At most
    /// once per ten heartbeat intervals.
    fn maybe_hand_off_leadership(&self, zones: &[ZoneView]) {
        let info = tocsin_state::service::cluster_info(&self.node.raft, &self.node.reader);
        let state_of = |zone: &str| {
            zones
                .iter()
                .find(|z| z.zone.as_str() == zone)
                .map(|z| z.state)
        };
        if !matches!(
            state_of(&info.node.info.zone),
            Some(ZoneState::Degraded | ZoneState::Drained)
        ) {
            return;
        }
        let Some(target) = info
            .members
            .iter()
            .filter(|m| m.voter && m.id != info.node.id && !m.info.http.is_empty())
            .find(|m| state_of(&m.info.zone) == Some(ZoneState::Healthy))
        else {
            return;
        };
        let gap =
            Duration::from_millis((self.config.liveness.heartbeat_interval_ms.max(50) * 10) as u64);
        {
            let mut last = self.last_handoff.lock().expect("handoff lock");
            if last.is_some_and(|t| t.elapsed() < gap) {
                return;
            }
            *last = Some(tokio::time::Instant::now());
        }
        let url = format!("http://{}/api/v1/admin/elect", target.info.http);
        let (from, to, zone) = (info.node.id, target.id, target.info.zone.clone());
        info!(from, to, %zone, "leader's zone is unhealthy: asking a healthy zone's node to take leadership");
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build();
            match client {
                Ok(c) => {
                    if let Err(e) = c.post(&url).send().await {
                        warn!(error = %e, %url, "leadership handoff request failed");
                    }
                }
                Err(e) => warn!(error = %e, "cannot build an HTTP client"),
            }
        });
    }

    /// Runs the leader loop until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let period =
            Duration::from_millis(self.config.liveness.heartbeat_interval_ms.max(50) as u64);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leader = false;
        let mut last_meta: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            let leader = self.is_leader();
            if leader && !was_leader {
                // Our own blank entry must be applied so the state we resume from is current.
                if tocsin_state::service::ensure_linearizable(&self.node.raft)
                    .await
                    .is_err()
                {
                    continue;
                }
                let q = |q: Query| self.node.reader.query(&q).1;
                let (QueryResult::Zones(zones), QueryResult::Workers(workers)) =
                    (q(Query::Zones), q(Query::Workers))
                else {
                    continue;
                };
                let now = wall_ms();
                let mut core = self.core.lock().expect("balancer lock");
                core.became_leader(now, &zones);
                core.sync_workers(&workers, now);
                // The first step states the freeze meta-alert either way (a previous leader
                // may have raised it).
                last_meta.clear();
                last_meta.push("unknown".into());
                self.zone_meta.lock().expect("zone meta lock").clear();
                info!(
                    zones = zones.len(),
                    workers = workers.len(),
                    "became leader: balancer resumes from committed state and settles"
                );
            } else if !leader && was_leader {
                self.core.lock().expect("balancer lock").stepped_down();
                let mut view = self.view.lock().expect("view lock");
                *view = BalancerView {
                    shard_moves: view.shard_moves,
                    ..BalancerView::default()
                };
                drop(view);
                info!("lost leadership: balancer stands down");
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            self.step(&mut last_meta).await;
        }
    }

    async fn step(&self, last_meta: &mut Vec<String>) {
        let q = |q: Query| self.node.reader.query(&q).1;
        let (
            QueryResult::Assignments(current),
            QueryResult::Layout(layout),
            QueryResult::Workers(workers),
        ) = (q(Query::Assignments), q(Query::Layout), q(Query::Workers))
        else {
            return;
        };
        let now = wall_ms();
        let decision = {
            let mut core = self.core.lock().expect("balancer lock");
            core.sync_workers(&workers, now);
            core.tick(now, &current, &layout)
        };
        let mut commands = Vec::new();
        if !decision.assign.is_empty() {
            commands.push(Command::Assign {
                shards: decision.assign.clone(),
            });
        }
        for (zone, record) in &decision.zone_records {
            commands.push(Command::SetZone {
                zone: zone.clone(),
                record: record.clone(),
            });
        }
        let meta: Vec<String> = decision
            .meta_alerts
            .iter()
            .map(|m| format!("{m:?}"))
            .collect();
        if meta != *last_meta {
            for m in &meta {
                warn!(alert = %m, "balancer meta-alert");
            }
            *last_meta = meta;
            // Freezing is an alert SREs must see where they see every other: a replicated
            // meta-alert, routed and notified like any rule's alert.
            commands.push(Command::SetMetaAlert {
                name: "TocsinPlacementFrozen".into(),
                labels: BTreeMap::from([("severity".to_string(), "critical".to_string())]),
                annotations: BTreeMap::from([(
                    "summary".to_string(),
                    format!(
                        "Shard placement is frozen: {}",
                        decision.frozen.as_deref().unwrap_or("-")
                    ),
                )]),
                firing: decision.frozen.is_some(),
                at_ms: now,
            });
        }
        {
            let mut view = self.view.lock().expect("view lock");
            let shard_moves = view.shard_moves;
            *view = BalancerView {
                zones: decision.zones.clone(),
                frozen: decision.frozen.clone(),
                meta_alerts: decision.meta_alerts.clone(),
                active: matches!(decision.phase, tocsin_balancer::Phase::Active),
                shard_moves,
            };
        }
        let active = matches!(decision.phase, tocsin_balancer::Phase::Active);
        if active {
            commands.extend(self.zone_meta_alerts(&decision.zones, now));
        }
        if !commands.is_empty() {
            self.propose_decision(commands, decision.assign.len()).await;
        }
        if active {
            // Only once settled, and after this tick's decision is committed: a leader that
            // has just won an election (a zone died; its own zone may look bad on stale
            // records) first reassigns the dead zone's shards. Handing off at once would cost
            // another election and another settle before anything moves (S4, leader's zone
            // cut off).
            self.maybe_hand_off_leadership(&decision.zones);
        }
    }

    /// Commits one tick's commands; `moves` of them are shard reassignments.
    async fn propose_decision(&self, commands: Vec<Command>, moves: usize) {
        match self.node.proposer.propose(commands).await {
            Ok((index, results)) => {
                for r in results.iter().filter_map(|r| r.as_ref().err()) {
                    warn!(error = %r, "balancer command refused");
                }
                if moves > 0 {
                    self.view.lock().expect("view lock").shard_moves += moves as u64;
                    info!(moves, epoch = index, "shards reassigned");
                }
            }
            Err(e) => {
                // State every zone meta-alert again next time.
                self.zone_meta.lock().expect("zone meta lock").clear();
                warn!(error = %e, "balancer decision not committed");
            }
        }
    }
}
