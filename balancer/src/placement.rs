//! Shard placement: weighted rendezvous (HRW) hashing over the fixed shard spaces with a
//! bounded-load pass, sticky to the current assignment (zone-health.md §4).
//!
//! Score of worker w for shard s: `−weight_w / ln(u(s, w))`, `u` in (0, 1) from a fixed hash,
//! `weight_w = capacity × zone weight`. Each worker holds at most
//! `⌈load_factor × shards × weight_w / Σ weight⌉` shards of a space: 1.25× its expected
//! share (with equal weights, ⌈1.25 × mean⌉). The cap follows the weight, so a degraded zone
//! does not get its shards back through other workers' overflow.
//!
//! Passes, per space:
//! 1. pinned owners keep their shards;
//! 2. shards already on their HRW first choice stay (up to the cap);
//! 3. shards on another eligible worker stay (up to the cap);
//! 4. pulls: a shard not on its first choice moves there if it has room, until none can;
//! 5. the rest (unowned, owner gone or drained, over a cap) go to their best worker with room.
//!
//! Applied to its own output this moves nothing (a fixed point), so repeated ticks are quiet.

use std::collections::BTreeMap;

use tocsin_state::model::{ShardId, ShardKind, ShardLayout, WorkerId, ZoneId, stable_hash};

/// What placement may do with a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Alive: may own shards, weighted by capacity × zone weight (weight 0 means `Drained`).
    Eligible,
    /// Keeps the shards it owns, gets no new ones (not yet heard from; or in a frozen zone).
    Pinned,
    /// Alive in a zone of weight 0: loses its shards to anyone eligible, keeps them only if
    /// nobody is.
    Drained,
    /// Dead: loses its shards, even if nobody can take them (they become unowned).
    Gone,
}

/// A worker as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Worker id.
    pub id: WorkerId,
    /// Its zone.
    pub zone: ZoneId,
    /// Relative capacity (>= 1 for registered workers).
    pub capacity: u32,
    /// Role this tick.
    pub role: Role,
}

/// One change of owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    /// The shard.
    pub shard: ShardId,
    /// Current owner (`None`: unowned).
    pub from: Option<WorkerId>,
    /// New owner (`None`: left unowned; nobody can take it).
    pub to: Option<WorkerId>,
}

/// Placement of every shard of a layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Minimal changes from the current assignment, in shard order.
    pub moves: Vec<Move>,
    /// Shards that end up unowned.
    pub unplaced: Vec<ShardId>,
}

/// Computes the target placement. `current` maps shards to owners (missing = unowned);
/// owners that are not in `workers` count as gone.
pub fn place(
    layout: &ShardLayout,
    current: &BTreeMap<ShardId, WorkerId>,
    workers: &[Candidate],
    zone_weights: &BTreeMap<ZoneId, f64>,
    load_factor: f64,
) -> Plan {
    let mut plan = Plan::default();
    for kind in [ShardKind::Eval, ShardKind::Notify] {
        let shards: Vec<ShardId> = (0..layout.count(kind))
            .map(|index| ShardId { kind, index })
            .collect();
        Space::new(&shards, current, workers, zone_weights, load_factor).run(&mut plan);
    }
    plan
}

/// One space's working state. Workers are indices into `workers`.
struct Space<'a> {
    shards: &'a [ShardId],
    workers: &'a [Candidate],
    /// Current owner per shard, as given (may be a worker placement does not know).
    current: Vec<Option<WorkerId>>,
    /// Current owner index per shard (`None`: unowned or unknown owner).
    owner: Vec<Option<usize>>,
    /// Effective role per worker (zone weight 0 turns Eligible into Drained).
    role: Vec<Role>,
    /// Eligible workers per shard, best first.
    rank: Vec<Vec<usize>>,
    cap: Vec<usize>,
    load: Vec<usize>,
    result: Vec<Option<usize>>,
}

impl<'a> Space<'a> {
    fn new(
        shards: &'a [ShardId],
        current: &BTreeMap<ShardId, WorkerId>,
        workers: &'a [Candidate],
        zone_weights: &BTreeMap<ZoneId, f64>,
        load_factor: f64,
    ) -> Self {
        let weight = |c: &Candidate| {
            f64::from(c.capacity) * zone_weights.get(&c.zone).copied().unwrap_or(1.0)
        };
        let role: Vec<Role> = workers
            .iter()
            .map(|c| match c.role {
                Role::Eligible if weight(c) <= 0.0 => Role::Drained,
                r => r,
            })
            .collect();
        let eligible: Vec<usize> = (0..workers.len())
            .filter(|&i| role[i] == Role::Eligible)
            .collect();
        let total_weight: f64 = eligible.iter().map(|&i| weight(&workers[i])).sum();
        let cap = (0..workers.len())
            .map(|i| {
                if role[i] != Role::Eligible {
                    return 0;
                }
                let share = weight(&workers[i]) / total_weight;
                (load_factor * shards.len() as f64 * share - 1e-9).ceil() as usize
            })
            .collect();
        let worker_hash: Vec<u64> = workers
            .iter()
            .map(|c| stable_hash(&[c.id.as_str()]))
            .collect();
        let rank = shards
            .iter()
            .map(|s| {
                let sh = shard_hash(*s);
                let mut r: Vec<(f64, usize)> = eligible
                    .iter()
                    .map(|&i| (hrw_score(weight(&workers[i]), sh, worker_hash[i]), i))
                    .collect();
                r.sort_by(|a, b| {
                    b.0.total_cmp(&a.0)
                        .then(workers[a.1].id.cmp(&workers[b.1].id))
                });
                r.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        let index: BTreeMap<&WorkerId, usize> = workers
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect();
        let current: Vec<Option<WorkerId>> =
            shards.iter().map(|s| current.get(s).cloned()).collect();
        let owner = current
            .iter()
            .map(|w| w.as_ref().and_then(|w| index.get(w).copied()))
            .collect();
        Self {
            shards,
            workers,
            current,
            owner,
            role,
            rank,
            cap,
            load: vec![0; workers.len()],
            result: vec![None; shards.len()],
        }
    }

    fn run(mut self, plan: &mut Plan) {
        let placed = self.keep();
        self.pull();
        self.fill(&placed);
        self.check();
        for s in 0..self.shards.len() {
            let to = self.result[s].map(|i| self.workers[i].id.clone());
            if to.is_none() {
                plan.unplaced.push(self.shards[s]);
            }
            if self.current[s] != to {
                plan.moves.push(Move {
                    shard: self.shards[s],
                    from: self.current[s].clone(),
                    to,
                });
            }
        }
    }

    /// Passes 1–3: pinned owners, then first choices, then other eligible owners keep their
    /// shards (up to the cap). Returns which shards are placed.
    fn keep(&mut self) -> Vec<bool> {
        let mut placed = vec![false; self.shards.len()];
        for pass in 0..3 {
            for (s, done) in placed.iter_mut().enumerate() {
                let Some(o) = self.owner[s] else { continue };
                let keep = match (pass, self.role[o]) {
                    (0, Role::Pinned) | (2, Role::Eligible) => true,
                    (1, Role::Eligible) => self.rank[s].first() == Some(&o),
                    _ => false,
                };
                if keep && !*done && (pass == 0 || self.load[o] < self.cap[o]) {
                    self.result[s] = Some(o);
                    *done = true;
                    if pass > 0 {
                        self.load[o] += 1;
                    }
                }
            }
        }
        placed
    }

    /// Pass 4: pulls to the first choice, until stable (a pull frees a slot another shard's
    /// first choice may be waiting for). Each pull puts a shard on its first choice for good,
    /// so this ends after at most one pull per shard.
    fn pull(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for s in 0..self.shards.len() {
                let Some(o) = self.result[s] else { continue };
                if self.role[o] != Role::Eligible {
                    continue;
                }
                let better = self.rank[s]
                    .first()
                    .filter(|&&x| x != o && self.load[x] < self.cap[x])
                    .copied();
                if let Some(x) = better {
                    self.load[o] -= 1;
                    self.load[x] += 1;
                    self.result[s] = Some(x);
                    changed = true;
                }
            }
        }
    }

    /// Pass 5: every shard not yet placed goes to its best worker with room.
    fn fill(&mut self, placed: &[bool]) {
        for (s, &done) in placed.iter().enumerate() {
            if done {
                continue;
            }
            let best = self.rank[s]
                .iter()
                .find(|&&x| self.load[x] < self.cap[x])
                .copied();
            self.result[s] = match best {
                Some(x) => {
                    self.load[x] += 1;
                    Some(x)
                }
                // Nobody eligible: a drained but alive owner keeps its shard.
                None => self.owner[s].filter(|&o| self.role[o] == Role::Drained),
            };
        }
    }

    /// Invariants of a finished space: caps hold, nothing new on a non-eligible worker.
    fn check(&self) {
        for (i, &l) in self.load.iter().enumerate() {
            assert!(
                l <= self.cap[i],
                "worker {} over its cap",
                self.workers[i].id
            );
        }
        for s in 0..self.shards.len() {
            if let Some(t) = self.result[s]
                && self.role[t] != Role::Eligible
            {
                assert_eq!(Some(t), self.owner[s], "new shard for non-eligible worker");
                assert_ne!(self.role[t], Role::Gone, "shard left on a gone worker");
            }
        }
    }
}

/// Key of a shard for hashing (kind and index).
fn shard_hash(s: ShardId) -> u64 {
    let kind = match s.kind {
        ShardKind::Eval => "eval",
        ShardKind::Notify => "notify",
    };
    stable_hash(&[kind, &s.index.to_string()])
}

/// Weighted HRW score: `−w / ln(u)`, `u` uniform in (0, 1) from the pair's hash.
fn hrw_score(weight: f64, shard_hash: u64, worker_hash: u64) -> f64 {
    let h = mix(shard_hash ^ mix(worker_hash));
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    debug_assert!(u > 0.0 && u < 1.0);
    -weight / u.ln()
}

/// SplitMix64 finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The HRW preference of one shard among `workers` (eligible ones, by weight), best first.
/// Exposed for warm standbys (rank 2 in another zone) and for tests.
pub fn preference(
    shard: ShardId,
    workers: &[Candidate],
    zone_weights: &BTreeMap<ZoneId, f64>,
) -> Vec<WorkerId> {
    let sh = shard_hash(shard);
    let mut r: Vec<(f64, &WorkerId)> = workers
        .iter()
        .filter(|c| c.role == Role::Eligible)
        .filter_map(|c| {
            let w = f64::from(c.capacity) * zone_weights.get(&c.zone).copied().unwrap_or(1.0);
            (w > 0.0).then(|| (hrw_score(w, sh, stable_hash(&[c.id.as_str()])), &c.id))
        })
        .collect();
    r.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    r.into_iter().map(|(_, id)| id.clone()).collect()
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
