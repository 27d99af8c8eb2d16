//! A deterministic cluster simulation around the pure core: workers heartbeat on schedule
//! unless stopped, the "state machine" applies every decision at once, time is explicit.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use tocsin_balancer::{Balancer, BalancerConfig, Decision, HeartbeatReport};
use tocsin_state::model::{
    Assignment, Epoch, ShardId, ShardLayout, WorkerId, WorkerInfo, ZoneId, ZoneRecord, ZoneState,
};

/// Per-tick observations worth asserting on.
pub type Report = fn(&ZoneId, i64) -> HeartbeatReport;

pub fn healthy(_: &ZoneId, _: i64) -> HeartbeatReport {
    HeartbeatReport {
        probe_rtt_ms: Some(2.0),
        ..Default::default()
    }
}

pub struct Sim {
    pub b: Balancer,
    pub layout: ShardLayout,
    pub workers: Vec<WorkerInfo>,
    pub assignments: BTreeMap<ShardId, Assignment>,
    pub records: BTreeMap<ZoneId, ZoneRecord>,
    pub stopped: BTreeSet<WorkerId>,
    pub report: Report,
    pub now: i64,
    pub tick_ms: i64,
    pub epoch: u64,
    pub decisions: Vec<(i64, Decision)>,
    /// (time, zone, new state) for every committed state change.
    pub state_changes: Vec<(i64, ZoneId, ZoneState)>,
    /// (time, zone, new weight) for every committed weight change.
    pub weight_changes: Vec<(i64, ZoneId, f64)>,
    next_heartbeat: i64,
}

pub fn zone(name: &str) -> ZoneId {
    ZoneId::new(name).unwrap()
}

impl Sim {
    /// `per_zone` workers in each of zones a, b, c...; leader from t = 0.
    pub fn new(config: BalancerConfig, per_zone: &[usize]) -> Self {
        let mut b = Balancer::new(config).unwrap();
        let mut workers = Vec::new();
        for (k, n) in per_zone.iter().enumerate() {
            let z = ((b'a' + k as u8) as char).to_string();
            for i in 0..*n {
                workers.push(WorkerInfo {
                    id: WorkerId::new(format!("w-{z}-{i}")).unwrap(),
                    zone: zone(&z),
                    addr: String::new(),
                    capacity: 1,
                    registered_at_ms: 0,
                });
            }
        }
        b.sync_workers(&workers, 0);
        b.became_leader(0, &[]);
        let tick_ms = b.config().liveness.heartbeat_interval_ms;
        Self {
            b,
            layout: ShardLayout::default(),
            workers,
            assignments: BTreeMap::new(),
            records: BTreeMap::new(),
            stopped: BTreeSet::new(),
            report: healthy,
            now: 0,
            tick_ms,
            epoch: 0,
            decisions: Vec::new(),
            state_changes: Vec::new(),
            weight_changes: Vec::new(),
            next_heartbeat: 0,
        }
    }

    pub fn stop_zone(&mut self, z: &str) {
        for w in &self.workers {
            if w.zone.as_str() == z {
                self.stopped.insert(w.id.clone());
            }
        }
    }

    pub fn start_zone(&mut self, z: &str) {
        let ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|w| w.zone.as_str() == z)
            .map(|w| w.id.clone())
            .collect();
        for id in ids {
            self.stopped.remove(&id);
        }
    }

    /// Runs for `ms`: heartbeats every heartbeat interval, a tick every `tick_ms`, applying
    /// each decision as a committed entry would be. Validates the core after every step.
    pub fn run(&mut self, ms: i64) {
        let end = self.now + ms;
        let hb = self.b.config().liveness.heartbeat_interval_ms;
        while self.now < end {
            self.now += self.tick_ms.min(hb);
            while self.next_heartbeat <= self.now {
                let t = self.next_heartbeat;
                for w in &self.workers {
                    if !self.stopped.contains(&w.id) {
                        let r = (self.report)(&w.zone, t);
                        self.b.observe_heartbeat(&w.id, t, r).unwrap();
                    }
                }
                self.next_heartbeat += hb;
            }
            self.tick();
        }
    }

    pub fn tick(&mut self) -> &Decision {
        let current: Vec<(ShardId, Assignment)> = self
            .assignments
            .iter()
            .map(|(s, a)| (*s, a.clone()))
            .collect();
        let d = self.b.tick(self.now, &current, &self.layout);
        self.b.validate().unwrap();
        if !d.assign.is_empty() {
            self.epoch += 1;
            for (s, o) in &d.assign {
                self.assignments.insert(
                    *s,
                    Assignment {
                        owner: o.clone(),
                        epoch: Epoch(self.epoch),
                    },
                );
            }
        }
        for (z, r) in &d.zone_records {
            let old = self.records.insert(z.clone(), r.clone());
            let Some(old) = old else { continue };
            if old.state != r.state {
                self.state_changes.push((self.now, z.clone(), r.state));
            }
            if old.weight != r.weight {
                self.weight_changes.push((self.now, z.clone(), r.weight));
            }
        }
        self.decisions.push((self.now, d));
        &self.decisions.last().unwrap().1
    }

    pub fn last_opt(&self) -> Option<&Decision> {
        self.decisions.last().map(|(_, d)| d)
    }

    pub fn last(&self) -> &Decision {
        &self.decisions.last().unwrap().1
    }

    pub fn zone_of(&self, w: &WorkerId) -> &ZoneId {
        &self.workers.iter().find(|x| &x.id == w).unwrap().zone
    }

    /// Shards owned by workers of zone `z`.
    pub fn shards_in(&self, z: &str) -> usize {
        self.assignments
            .values()
            .filter_map(|a| a.owner.as_ref())
            .filter(|o| self.zone_of(o).as_str() == z)
            .count()
    }

    pub fn owned(&self) -> usize {
        self.assignments
            .values()
            .filter(|a| a.owner.is_some())
            .count()
    }

    pub fn total_shards(&self) -> usize {
        self.layout.all().count()
    }

    pub fn state(&self, z: &str) -> ZoneState {
        self.b.zone_record(&zone(z)).unwrap().state
    }

    /// State changes of one zone.
    pub fn changes_of(&self, z: &str) -> Vec<(i64, ZoneState)> {
        self.state_changes
            .iter()
            .filter(|(_, zz, _)| zz.as_str() == z)
            .map(|(t, _, s)| (*t, *s))
            .collect()
    }
}
