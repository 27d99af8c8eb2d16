//! What a worker reports about its work, for its `/metrics`: every evaluation (group, duration,
//! outcome, lateness) and every delivery attempt (receiver, integration, outcome). The worker
//! loops call a [`WorkerObserver`]; the binary implements it with its metrics registry.

use tocsin_state::model::GroupKey;

/// How one evaluation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalOutcome {
    /// Evaluated and committed.
    Ok,
    /// Committed, but some rules failed (their state kept).
    RulesFailed,
    /// Nothing evaluated (datasource down): state kept.
    Failed,
    /// Took longer than the interval: state kept.
    Timeout,
    /// Evaluated but the commit failed: retried at the next slot.
    NotCommitted,
}

impl EvalOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalOutcome::Ok => "ok",
            EvalOutcome::RulesFailed => "rules_failed",
            EvalOutcome::Failed => "failed",
            EvalOutcome::Timeout => "timeout",
            EvalOutcome::NotCommitted => "not_committed",
        }
    }
}

/// Receives the worker's work reports. Implementations must be cheap and never block.
pub trait WorkerObserver: Send + Sync + std::fmt::Debug {
    /// One evaluation of `group` took `seconds`; `late` when it finished more than half an
    /// interval after its slot.
    fn evaluation(&self, group: &GroupKey, seconds: f64, outcome: EvalOutcome, late: bool);
    /// One delivery attempt to `receiver` through a channel of `integration` kind ended in
    /// `outcome` (`delivered`, `skipped`, `retry`, `dead`).
    fn delivery(&self, receiver: &str, integration: &str, outcome: &'static str, seconds: f64);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl WorkerObserver for NoObserver {
    fn evaluation(&self, _: &GroupKey, _: f64, _: EvalOutcome, _: bool) {}
    fn delivery(&self, _: &str, _: &str, _: &'static str, _: f64) {}
}
