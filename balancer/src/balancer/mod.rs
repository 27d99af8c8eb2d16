//! The balancer core the Raft leader ticks.
//!
//! The adapter feeds it registrations, heartbeats and leadership changes, and on every tick
//! (every 200 ms – 1 s) passes the committed assignments; it proposes the returned
//! `assign` as one `Command::Assign` and each `zone_records` entry as a `Command::SetZone`.
//! **The adapter must wait for those proposals to apply before the next tick** (or pass the
//! assignments as they will be once applied): the core computes moves against what it is
//! given, so ticking on stale assignments re-proposes the same moves, and every `Assign`
//! bumps the shard's epoch.

mod pipeline;

use std::collections::BTreeMap;

use tocsin_state::model::{
    Assignment, ShardId, ShardLayout, WorkerId, WorkerInfo, ZoneId, ZoneRecord, ZoneState,
};
use tracing::{info, warn};

use crate::config::BalancerConfig;
use crate::decision::{Decision, Phase};
use crate::error::BalancerError;
use crate::guards::apply_guards;
use crate::liveness::{Detector, Liveness};
use crate::signals::{HeartbeatReport, WorkerSignals};
use crate::zone_state::ZoneTracker;

/// One registered worker.
#[derive(Clone, Debug)]
struct WorkerEntry {
    info: WorkerInfo,
    detector: Detector,
    signals: WorkerSignals,
}

/// One zone.
#[derive(Clone, Debug)]
struct ZoneEntry {
    tracker: ZoneTracker,
    /// The record last emitted (or resumed from): decides whether a new one is emitted.
    emitted: Option<ZoneRecord>,
    /// Start of the current rate-limit period and moves charged in it, per space.
    period_start_ms: i64,
    moved: [usize; 2],
}

/// The pure balancer core. See the module docs for how the adapter drives it.
#[derive(Clone, Debug)]
pub struct Balancer {
    config: BalancerConfig,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    zones: BTreeMap<ZoneId, ZoneEntry>,
    /// When this node became leader; `None` while it is not.
    leader_since_ms: Option<i64>,
    /// Latest `now` seen; time never runs backwards inside the core.
    now_ms: i64,
}

impl Balancer {
    /// A core that is not (yet) leader. Fails if the config does not validate.
    pub fn new(config: BalancerConfig) -> Result<Self, BalancerError> {
        config.validate()?;
        Ok(Self {
            config,
            workers: BTreeMap::new(),
            zones: BTreeMap::new(),
            leader_since_ms: None,
            now_ms: i64::MIN,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    fn clock(&mut self, now_ms: i64) -> i64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    /// Adds or updates a worker (from a committed `RegisterWorker`). A new worker is given one
    /// lease from `now_ms` to send its first heartbeat.
    pub fn register_worker(&mut self, info: WorkerInfo, now_ms: i64) {
        let now = self.clock(now_ms);
        self.ensure_zone(&info.zone, now);
        match self.workers.get_mut(&info.id) {
            Some(e) => e.info = info,
            None => {
                let entry = WorkerEntry {
                    info: info.clone(),
                    detector: Detector::new(now),
                    signals: WorkerSignals::default(),
                };
                self.workers.insert(info.id, entry);
            }
        }
    }

    /// Forgets a worker (from a committed `RemoveWorker`). Returns whether it was known.
    pub fn deregister_worker(&mut self, id: &WorkerId) -> bool {
        self.workers.remove(id).is_some()
    }

    /// Makes the registered set equal to `workers` (e.g. after reading the state machine).
    pub fn sync_workers(&mut self, workers: &[WorkerInfo], now_ms: i64) {
        let keep: BTreeMap<&WorkerId, &WorkerInfo> = workers.iter().map(|w| (&w.id, w)).collect();
        self.workers.retain(|id, _| keep.contains_key(id));
        for w in workers {
            self.register_worker(w.clone(), now_ms);
        }
    }

    /// Records a heartbeat from `worker` that arrived at `now_ms`.
    pub fn observe_heartbeat(
        &mut self,
        worker: &WorkerId,
        now_ms: i64,
        report: HeartbeatReport,
    ) -> Result<(), BalancerError> {
        report
            .check()
            .map_err(|reason| BalancerError::InvalidHeartbeat {
                worker: worker.clone(),
                reason,
            })?;
        let now = self.clock(now_ms);
        let (liveness, health) = (&self.config.liveness, &self.config.health);
        let e = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| BalancerError::UnknownWorker {
                worker: worker.clone(),
            })?;
        e.detector.heartbeat(liveness, now);
        e.signals.record(health, now, report);
        Ok(())
    }

    /// This node became Raft leader at `now_ms`. `zones` are the committed zone records:
    /// states, quarantines and drain counts resume from them. Heartbeat history is dropped
    /// (silence is counted from now) and nothing moves for `settle_ms`.
    pub fn became_leader(&mut self, now_ms: i64, zones: &[(ZoneId, ZoneRecord)]) {
        let now = self.clock(now_ms);
        self.leader_since_ms = Some(now);
        for e in self.workers.values_mut() {
            e.detector.reset(now);
            e.signals = WorkerSignals::default();
        }
        // Committed records win; zones without one start afresh (a tracker kept from an
        // earlier term may be stale: another leader decided since).
        let committed: BTreeMap<&ZoneId, &ZoneRecord> = zones.iter().map(|(z, r)| (z, r)).collect();
        let known: Vec<ZoneId> = self
            .zones
            .keys()
            .chain(zones.iter().map(|(z, _)| z))
            .cloned()
            .collect();
        for zone in known {
            let entry = match committed.get(&zone) {
                Some(record) => ZoneEntry {
                    emitted: Some((*record).clone()),
                    ..self.zone_entry(ZoneTracker::from_record(record, &self.config.zone, now))
                },
                None => self.zone_entry(ZoneTracker::new(&self.config.zone, now)),
            };
            self.zones.insert(zone, entry);
        }
        info!(
            now_ms = now,
            zones = zones.len(),
            "balancer leading; settling"
        );
    }

    /// This node is no longer leader: ticks decide nothing until `became_leader` again.
    pub fn stepped_down(&mut self) {
        self.leader_since_ms = None;
    }

    /// The phase at `now_ms`.
    pub fn phase(&self, now_ms: i64) -> Phase {
        match self.leader_since_ms {
            None => Phase::Follower,
            Some(t) if now_ms < t + self.config.settle_ms => Phase::Settling {
                until_ms: t + self.config.settle_ms,
            },
            Some(_) => Phase::Active,
        }
    }

    /// The current record of a zone.
    pub fn zone_record(&self, zone: &ZoneId) -> Option<ZoneRecord> {
        self.zones.get(zone).map(|z| z.tracker.to_record())
    }

    /// The current state of a zone (the adapter prefers a leader in a HEALTHY zone).
    pub fn zone_state(&self, zone: &ZoneId) -> Option<ZoneState> {
        self.zones.get(zone).map(|z| z.tracker.state())
    }

    /// A worker's liveness at `now_ms`, if it is registered.
    pub fn liveness(&self, worker: &WorkerId, now_ms: i64) -> Option<Liveness> {
        self.workers
            .get(worker)
            .map(|e| e.detector.liveness(&self.config.liveness, now_ms))
    }

    fn zone_entry(&self, tracker: ZoneTracker) -> ZoneEntry {
        ZoneEntry {
            tracker,
            emitted: None,
            period_start_ms: self.now_ms,
            moved: [0; 2],
        }
    }

    fn ensure_zone(&mut self, zone: &ZoneId, now: i64) {
        if !self.zones.contains_key(zone) {
            let e = self.zone_entry(ZoneTracker::new(&self.config.zone, now));
            self.zones.insert(zone.clone(), e);
        }
    }

    /// One decision step at `now_ms` against the committed `current` assignments.
    pub fn tick(
        &mut self,
        now_ms: i64,
        current: &[(ShardId, Assignment)],
        layout: &ShardLayout,
    ) -> Decision {
        let now = self.clock(now_ms);
        let phase = self.phase(now);
        let mut decision = Decision {
            phase,
            ..Decision::default()
        };
        if phase == Phase::Follower {
            return decision;
        }
        let liveness: BTreeMap<WorkerId, Liveness> = self
            .workers
            .iter()
            .map(|(id, e)| (id.clone(), e.detector.liveness(&self.config.liveness, now)))
            .collect();
        let scored = self.score_zones(now, &liveness);
        let owners: BTreeMap<ShardId, WorkerId> = current
            .iter()
            .filter(|(s, _)| layout.contains(*s))
            .filter_map(|(s, a)| a.owner.clone().map(|o| (*s, o)))
            .collect();
        if phase == Phase::Active {
            let facts = self.facts(&scored, &liveness);
            let total = usize::from(layout.eval_shards) + usize::from(layout.notify_shards);
            let outcome = apply_guards(&self.config.zone, &facts, total);
            for (zone, t) in &outcome.allowed {
                let z = self
                    .zones
                    .get_mut(zone)
                    .expect("guards only name known zones");
                info!(zone = %zone, transition = ?t, "zone transition");
                z.tracker.apply(&self.config.zone, now, *t);
            }
            if let Some(reason) = &outcome.frozen {
                warn!(reason = %reason, "placement frozen");
                for z in self.zones.values_mut() {
                    z.tracker.restart_lowering_dwells(now);
                }
            }
            decision.frozen = outcome.frozen;
            decision.meta_alerts = outcome.alerts;
            self.place(
                now,
                layout,
                &owners,
                &liveness,
                &outcome.frozen_zones,
                &mut decision,
            );
            decision.zone_records = self.changed_records();
        }
        decision.zones = self.views(now, &scored, &liveness, &owners, &decision.assign);
        debug_assert_eq!(self.validate(), Ok(()));
        decision
    }

    /// Checks the core's invariants: every worker's zone is tracked, every tracker is
    /// consistent, rate-limit counters are within budget periods.
    pub fn validate(&self) -> Result<(), String> {
        for e in self.workers.values() {
            if !self.zones.contains_key(&e.info.zone) {
                return Err(format!(
                    "worker {} in untracked zone {}",
                    e.info.id, e.info.zone
                ));
            }
        }
        for (zone, z) in &self.zones {
            z.tracker
                .validate(&self.config.zone)
                .map_err(|e| format!("zone {zone}: {e}"))?;
            if z.period_start_ms > self.now_ms {
                return Err(format!(
                    "zone {zone}: rate-limit period starts in the future"
                ));
            }
        }
        if let Some(t) = self.leader_since_ms
            && t > self.now_ms
        {
            return Err(format!(
                "leader since {t}, after the latest time {}",
                self.now_ms
            ));
        }
        Ok(())
    }
}
