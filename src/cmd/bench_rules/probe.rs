//! Instruments the worker's group loops without changing them: [`TimedEvaluator`] wraps the
//! real [`DatasourceEvaluator`] (the group loop calls it at each slot), and [`Probe`] is the
//! loops' [`WorkerObserver`], which a group loop calls once the evaluation's `EvalCycle` commit
//! has returned. Between the two lie exactly the commit and its bookkeeping, so a record splits
//! an evaluation into slot lateness, evaluation (queries over HTTP + rule evaluation) and
//! commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use futures::future::BoxFuture;
use tocsin_alerter::eval::{GroupEval, GroupState, TransitionKind};
use tocsin_alerter::rules::RuleGroup;
use tocsin_alerter::worker::evaluator::DatasourceEvaluator;
use tocsin_alerter::worker::group::Evaluator;
use tocsin_alerter::worker::observe::{EvalOutcome, WorkerObserver};
use tocsin_state::model::GroupKey;

/// Maps instants to wall-clock time, aligned at a millisecond boundary of the wall clock the
/// group loops schedule by (`crate::clock::wall_ms`), so instants and slot timestamps compare
/// to well under a millisecond.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    wall_ms: i64,
}

impl WallClock {
    /// Samples the pair at the next millisecond tick (spinning at most a few milliseconds).
    pub fn sample() -> Self {
        let first = crate::clock::wall_ms();
        let spin = Instant::now();
        loop {
            let now = crate::clock::wall_ms();
            if now != first || spin.elapsed().as_millis() > 5 {
                return Self {
                    at: Instant::now(),
                    wall_ms: now,
                };
            }
        }
    }

    /// `t` in ms since the Unix epoch.
    pub fn wall_ms(&self, t: Instant) -> f64 {
        let since = if t >= self.at {
            t.duration_since(self.at).as_secs_f64()
        } else {
            -self.at.duration_since(t).as_secs_f64()
        };
        self.wall_ms as f64 + since * 1000.0
    }
}

/// An evaluation that started and has not been reported yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot_ms: i64,
    rules: usize,
    start: Instant,
    end: Option<Instant>,
    firing: usize,
    rule_failures: usize,
}

/// One evaluation of one group, as the loop reported it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The group.
    pub group: GroupKey,
    /// The slot (the evaluation timestamp), ms since the epoch.
    pub slot_ms: i64,
    /// Rules in the group.
    pub rules: usize,
    /// When the evaluator was called.
    pub start: Instant,
    /// When it returned an evaluation (`None`: it failed or was cut at the interval).
    pub end: Option<Instant>,
    /// When the loop reported it: after the commit returned, for an evaluated group.
    pub reported: Instant,
    /// Alerts that turned `firing` in this evaluation.
    pub firing: usize,
    /// Rules whose query or evaluation failed.
    pub rule_failures: usize,
    /// How the loop classified it.
    pub outcome: EvalOutcome,
    /// Finished more than half an interval after its slot.
    pub late: bool,
}

impl Record {
    /// Evaluated and committed (some rules may have failed).
    pub fn committed(&self) -> bool {
        matches!(self.outcome, EvalOutcome::Ok | EvalOutcome::RulesFailed)
    }
}

/// Collects the records.
#[derive(Debug, Default)]
pub struct Probe {
    pending: Mutex<HashMap<String, Pending>>,
    records: Mutex<Vec<Record>>,
    groups_seen: Mutex<HashSet<String>>,
}

impl Probe {
    fn started(&self, group: &str, slot_ms: i64, rules: usize) {
        let p = Pending {
            slot_ms,
            rules,
            start: Instant::now(),
            end: None,
            firing: 0,
            rule_failures: 0,
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group.to_string(), p);
    }

    fn evaluated(&self, group: &str, eval: &GroupEval) {
        let end = Instant::now();
        let firing = eval
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Firing)
            .count();
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(group)
        {
            p.end = Some(end);
            p.firing = firing;
            p.rule_failures = eval.failures.len();
        }
    }

    /// Groups that reported at least one evaluation, whatever its outcome.
    pub fn groups_reported(&self) -> usize {
        self.groups_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Groups that reported at least `n` evaluations, whatever their outcome.
    pub fn groups_with_reports(&self, n: usize) -> usize {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut per_group: HashMap<&GroupKey, usize> = HashMap::new();
        for r in records.iter() {
            *per_group.entry(&r.group).or_insert(0) += 1;
        }
        per_group.values().filter(|c| **c >= n).count()
    }

    /// A copy of every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Alerts committed `firing` by evaluations at slots at or after `from_slot_ms`.
    pub fn firing_committed_since(&self, from_slot_ms: i64) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.committed() && r.slot_ms >= from_slot_ms)
            .map(|r| r.firing)
            .sum()
    }
}

impl WorkerObserver for Probe {
    fn evaluation(&self, group: &GroupKey, _seconds: f64, outcome: EvalOutcome, late: bool) {
        let reported = Instant::now();
        let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group.name)
        else {
            return;
        };
        let record = Record {
            group: group.clone(),
            slot_ms: p.slot_ms,
            rules: p.rules,
            start: p.start,
            end: p.end,
            reported,
            firing: p.firing,
            rule_failures: p.rule_failures,
            outcome,
            late,
        };
        self.groups_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group.name.clone());
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    fn delivery(&self, _: &str, _: &str, _: &'static str, _: f64) {}
}

/// The worker's evaluator, timed.
#[derive(Debug)]
pub struct TimedEvaluator {
    /// The evaluator `tocsin worker` uses.
    pub inner: DatasourceEvaluator,
    /// Where the timings go.
    pub probe: std::sync::Arc<Probe>,
}

impl Evaluator for TimedEvaluator {
    fn evaluate<'a>(
        &'a self,
        group: &'a RuleGroup,
        ts_ms: i64,
        prev: &'a GroupState,
    ) -> BoxFuture<'a, Result<GroupEval, String>> {
        Box::pin(async move {
            self.probe.started(&group.name, ts_ms, group.rules.len());
            let result = self.inner.evaluate(group, ts_ms, prev).await;
            if let Ok(eval) = &result {
                self.probe.evaluated(&group.name, eval);
            }
            result
        })
    }
}
