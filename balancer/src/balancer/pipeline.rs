//! The stages of one tick: score the zones, gather the guards' facts, place shards, limit
//! the rate, and report.

use std::collections::{BTreeMap, BTreeSet};

use tocsin_state::model::{
    ShardId, ShardKind, ShardLayout, WorkerId, ZoneId, ZoneRecord, ZoneState,
};

use super::{Balancer, WorkerEntry};
use crate::decision::{Decision, MetaAlert, ZoneView};
use crate::guards::ZoneFacts;
use crate::liveness::Liveness;
use crate::placement::{Candidate, Move, Role, place};
use crate::signals::{Penalties, penalties, sample_zone};
use crate::zone_health::{quantised_weight, raw_score};

impl Balancer {
    /// Samples every zone and feeds its tracker. Returns (raw score, penalties) per zone.
    pub(super) fn score_zones(
        &mut self,
        now: i64,
        liveness: &BTreeMap<WorkerId, Liveness>,
    ) -> BTreeMap<ZoneId, (f64, Penalties)> {
        let health = &self.config.health;
        let samples: BTreeMap<ZoneId, _> = self
            .zones
            .keys()
            .map(|zone| {
                let members: Vec<_> = self
                    .workers
                    .values()
                    .filter(|e| &e.info.zone == zone)
                    .map(|e| (&e.signals, liveness[&e.info.id]))
                    .collect();
                (zone.clone(), sample_zone(health, now, &members))
            })
            .collect();
        let mut out = BTreeMap::new();
        for (zone, sample) in &samples {
            let others: Vec<_> = samples
                .iter()
                .filter(|(z, _)| *z != zone)
                .map(|(_, s)| s)
                .collect();
            let p = penalties(health, sample, &others);
            let raw = raw_score(&p);
            let z = self.zones.get_mut(zone).expect("sampled zones exist");
            z.tracker
                .observe(health, &self.config.zone, now, raw, p.alive_fraction);
            out.insert(zone.clone(), (raw, p));
        }
        out
    }

    pub(super) fn facts(
        &self,
        scored: &BTreeMap<ZoneId, (f64, Penalties)>,
        liveness: &BTreeMap<WorkerId, Liveness>,
    ) -> Vec<ZoneFacts> {
        let (h, zc) = (&self.config.health, &self.config.zone);
        self.zones
            .iter()
            .map(|(zone, z)| {
                let t = &z.tracker;
                let alive = scored[zone].1.alive_fraction;
                let members = self.workers.values().filter(|e| &e.info.zone == zone);
                let alive_capacity = members
                    .clone()
                    .filter(|e| liveness[&e.info.id] == Liveness::Alive)
                    .map(|e| f64::from(e.info.capacity.max(1)))
                    .sum();
                let bad = alive < zc.dead_alive_below
                    || quantised_weight(h, t.score()) < 1.0
                    || t.score() < zc.drain_score_below
                    || (t.state() == ZoneState::Probation && t.score() < zc.relapse_score_below);
                ZoneFacts {
                    zone: zone.clone(),
                    state: t.state(),
                    weight: t.weight(),
                    workers: members.count(),
                    alive_fraction: alive,
                    alive_capacity,
                    bad,
                    proposal: t.propose(h, zc, self.now_ms, alive),
                }
            })
            .collect()
    }

    /// Placement, then the freeze filter and the degraded-zone rate limit.
    pub(super) fn place(
        &mut self,
        now: i64,
        layout: &ShardLayout,
        owners: &BTreeMap<ShardId, WorkerId>,
        liveness: &BTreeMap<WorkerId, Liveness>,
        frozen_zones: &[ZoneId],
        decision: &mut Decision,
    ) {
        let frozen = decision.frozen.is_some();
        // Zones the observer still hears: at least one worker alive.
        let heard: BTreeSet<&ZoneId> = self
            .workers
            .values()
            .filter(|e| liveness[&e.info.id] == Liveness::Alive)
            .map(|e| &e.info.zone)
            .collect();
        let candidates: Vec<Candidate> = self
            .workers
            .values()
            .map(|e| Candidate {
                id: e.info.id.clone(),
                zone: e.info.zone.clone(),
                capacity: e.info.capacity.max(1),
                role: match liveness[&e.info.id] {
                    // A frozen zone keeps its shards (the observer may be the fault), except
                    // those of a worker dead in a zone whose other workers are heard: that is
                    // the worker's fault, not the observer's, and the worker has fenced itself
                    // when its lease ran out, so its shards would go unevaluated. Fencing makes
                    // moving them safe even if it is alive after all.
                    Liveness::Dead if heard.contains(&e.info.zone) => Role::Gone,
                    _ if frozen_zones.contains(&e.info.zone) => Role::Pinned,
                    Liveness::Alive => Role::Eligible,
                    Liveness::Unknown => Role::Pinned,
                    Liveness::Dead => Role::Gone,
                },
            })
            .collect();
        let weights: BTreeMap<ZoneId, f64> = self
            .zones
            .iter()
            .map(|(z, e)| (z.clone(), e.tracker.weight()))
            .collect();
        let plan = place(
            layout,
            owners,
            &candidates,
            &weights,
            self.config.placement.load_factor,
        );
        let role: BTreeMap<&WorkerId, (&ZoneId, Role)> = candidates
            .iter()
            .map(|c| (&c.id, (&c.zone, c.role)))
            .collect();
        // While frozen only shards whose owner is gone (or unknown) move: no rebalancing.
        let mut moves: Vec<Move> = plan
            .moves
            .into_iter()
            .filter(|m| {
                !frozen
                    || m.from
                        .as_ref()
                        .and_then(|f| role.get(f))
                        .is_none_or(|(_, r)| *r == Role::Gone)
            })
            .collect();
        self.rate_limit(now, layout, &role, &mut moves);
        // Unowned after this decision: unplaced by the plan, unless the move that would
        // have unowned it was filtered out (its owner keeps it).
        let unowning: BTreeMap<ShardId, bool> =
            moves.iter().map(|m| (m.shard, m.to.is_none())).collect();
        decision.unplaced = plan
            .unplaced
            .into_iter()
            .filter(|s| unowning.get(s).copied().unwrap_or(!owners.contains_key(s)))
            .collect();
        if !decision.unplaced.is_empty() {
            decision.meta_alerts.push(MetaAlert::Unplaced {
                shards: decision.unplaced.len(),
            });
        }
        decision.assign = moves.into_iter().map(|m| (m.shard, m.to)).collect();
    }

    /// Drops moves beyond a degraded zone's budget: its *alive* workers lose at most
    /// `degraded_move_fraction` of each space per period. Moves off dead workers and drained
    /// zones are never limited.
    pub(super) fn rate_limit(
        &mut self,
        now: i64,
        layout: &ShardLayout,
        role: &BTreeMap<&WorkerId, (&ZoneId, Role)>,
        moves: &mut Vec<Move>,
    ) {
        let p = &self.config.placement;
        for z in self.zones.values_mut() {
            if now - z.period_start_ms >= p.degraded_move_period_ms {
                z.period_start_ms = now;
                z.moved = [0; 2];
            }
        }
        let zones = &mut self.zones;
        moves.retain(|m| {
            let Some((zone, Role::Eligible)) = m.from.as_ref().and_then(|f| role.get(f)) else {
                return true;
            };
            let z = zones.get_mut(*zone).expect("workers' zones exist");
            if z.tracker.state() != ZoneState::Degraded {
                return true;
            }
            let k = usize::from(m.shard.kind == ShardKind::Notify);
            let budget =
                (p.degraded_move_fraction * f64::from(layout.count(m.shard.kind))).ceil() as usize;
            if z.moved[k] < budget {
                z.moved[k] += 1;
                true
            } else {
                false
            }
        });
    }

    /// Records that changed enough to commit; remembers them as emitted.
    pub(super) fn changed_records(&mut self) -> Vec<(ZoneId, ZoneRecord)> {
        let delta = self.config.record_score_delta;
        let mut out = Vec::new();
        for (zone, z) in &mut self.zones {
            let r = z.tracker.to_record();
            let changed = z.emitted.as_ref().is_none_or(|e| {
                e.state != r.state
                    || e.weight != r.weight
                    || e.since_ms != r.since_ms
                    || e.recent_drains != r.recent_drains
                    || (e.score - r.score).abs() >= delta
            });
            if changed {
                z.emitted = Some(r.clone());
                out.push((zone.clone(), r));
            }
        }
        out
    }

    pub(super) fn views(
        &self,
        now: i64,
        scored: &BTreeMap<ZoneId, (f64, Penalties)>,
        liveness: &BTreeMap<WorkerId, Liveness>,
        owners: &BTreeMap<ShardId, WorkerId>,
        assign: &[(ShardId, Option<WorkerId>)],
    ) -> Vec<ZoneView> {
        let mut after = owners.clone();
        for (s, o) in assign {
            match o {
                Some(o) => after.insert(*s, o.clone()),
                None => after.remove(s),
            };
        }
        let mut counts: BTreeMap<&ZoneId, [usize; 2]> = BTreeMap::new();
        for (s, o) in &after {
            if let Some(e) = self.workers.get(o) {
                counts.entry(&e.info.zone).or_default()
                    [usize::from(s.kind == ShardKind::Notify)] += 1;
            }
        }
        self.zones
            .iter()
            .map(|(zone, z)| {
                let t = &z.tracker;
                let members: Vec<&WorkerEntry> = self
                    .workers
                    .values()
                    .filter(|e| &e.info.zone == zone)
                    .collect();
                let [eval_shards, notify_shards] = counts.get(zone).copied().unwrap_or_default();
                let (raw_score, penalties) = scored[zone];
                ZoneView {
                    zone: zone.clone(),
                    state: t.state(),
                    score: t.score(),
                    raw_score,
                    weight: t.weight(),
                    penalties,
                    workers: members.len(),
                    alive_workers: members
                        .iter()
                        .filter(|e| liveness[&e.info.id] == Liveness::Alive)
                        .count(),
                    recent_drains: t.recent_drains(),
                    quarantine_left_ms: (t.state() == ZoneState::Drained).then(|| {
                        let since = t.to_record().since_ms;
                        (since + t.quarantine_ms(&self.config.zone) - now).max(0)
                    }),
                    eval_shards,
                    notify_shards,
                }
            })
            .collect()
    }
}
