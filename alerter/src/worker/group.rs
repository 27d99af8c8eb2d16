//! One rule group's evaluation loop on its shard's owner.
//!
//! Resume from the committed watermark and alert instances, catch up at most one missed slot,
//! then evaluate on schedule. Each evaluation commits its transitions and the new watermark in
//! one `EvalCycle` command tagged with the shard's epoch; the in-memory state advances only
//! when that commit succeeds, so it always equals the committed state. A `StaleEpoch` answer
//! drops the whole shard at once. A failed evaluation (datasource down) keeps the state: no
//! alert ever resolves because a query failed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use tocsin_proto::ids::{Epoch, ShardId};
use tocsin_state::client::StoreClient;
use tocsin_state::model::{Command, CommandError, GroupKey, Query, QueryResult, ShardOp};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::convert;
use super::observe::{EvalOutcome, WorkerObserver};
use super::schedule;
use super::session::WorkStats;
use crate::eval::{GroupEval, GroupState};
use crate::rules::RuleGroup;

/// Evaluates a group at a slot timestamp from a previous state.
pub trait Evaluator: Send + Sync + std::fmt::Debug {
    /// `Err` means nothing could be evaluated (e.g. the datasource is down): keep the state.
    fn evaluate<'a>(
        &'a self,
        group: &'a RuleGroup,
        ts_ms: i64,
        prev: &'a GroupState,
    ) -> BoxFuture<'a, Result<GroupEval, String>>;
}

/// Everything a group loop needs.
#[derive(Clone, Debug)]
pub struct GroupCtx {
    /// Store client (proposals go to the leader).
    pub client: StoreClient,
    /// The evaluator.
    pub evaluator: Arc<dyn Evaluator>,
    /// Counters for heartbeats.
    pub stats: Arc<WorkStats>,
    /// Wall clock, ms since the Unix epoch (injected so tests can drive it).
    pub now_ms: fn() -> i64,
    /// Where evaluations are reported (the worker's `/metrics`).
    pub observer: Arc<dyn WorkerObserver>,
}

/// What ended a group loop.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupExit {
    /// Cancelled by the shard manager.
    Cancelled,
    /// The store refused our epoch: drop the shard.
    StaleEpoch,
}

/// Runs the loop for `group` of `shard` at `epoch` until cancelled or fenced.
pub async fn run(
    ctx: GroupCtx,
    shard: ShardId,
    epoch: Epoch,
    key: GroupKey,
    group: RuleGroup,
    interval_ms: i64,
    cancel: CancellationToken,
) -> GroupExit {
    let Some((watermark, mut state)) = resume(&ctx, shard, &key, &group, &cancel).await else {
        return GroupExit::Cancelled;
    };
    let offset = schedule::slot_offset(&key.namespace, &key.name, interval_ms);
    let plan = schedule::plan(watermark, (ctx.now_ms)(), offset, interval_ms);
    if plan.skipped > 0 {
        warn!(group = %key, skipped = plan.skipped, "missed evaluations skipped on takeover (catching up the latest only)");
    }
    let mut due = plan.catch_up.unwrap_or(plan.next);
    loop {
        let wait = Duration::from_millis((due - (ctx.now_ms)()).max(0) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return GroupExit::Cancelled,
        }
        let started = (ctx.now_ms)();
        let outcome = tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(interval_ms as u64), ctx.evaluator.evaluate(&group, due, &state)) => r,
            () = cancel.cancelled() => return GroupExit::Cancelled,
        };
        ctx.stats.evals.fetch_add(1, Ordering::Relaxed);
        let result = match outcome {
            Ok(Ok(eval)) => {
                let mut result = EvalOutcome::Ok;
                if !eval.failures.is_empty() {
                    ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                    result = EvalOutcome::RulesFailed;
                    debug!(group = %key, failures = eval.failures.len(), "rules failed; their state is kept");
                }
                match commit(&ctx, shard, epoch, &key, &group, due, &eval).await {
                    Ok(()) => state = eval.state,
                    Err(CommitError::Stale) => return GroupExit::StaleEpoch,
                    Err(CommitError::Other(e)) => {
                        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        result = EvalOutcome::NotCommitted;
                        warn!(group = %key, error = %e, "evaluation not committed; state kept, retried at the next slot");
                    }
                }
                result
            }
            Ok(Err(e)) => {
                ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                warn!(group = %key, error = %e, "evaluation failed; alert state kept");
                EvalOutcome::Failed
            }
            Err(_) => {
                ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                warn!(group = %key, "evaluation took longer than the interval; alert state kept");
                EvalOutcome::Timeout
            }
        };
        let finished = (ctx.now_ms)();
        let late = finished - due > interval_ms / 2;
        if late {
            ctx.stats.late.fetch_add(1, Ordering::Relaxed);
        }
        ctx.observer.evaluation(
            &key,
            (finished - started).max(0) as f64 / 1000.0,
            result,
            late,
        );
        debug!(group = %key, slot = due, took_ms = finished - started, "evaluated");
        due = schedule::next_slot_after(due.max(finished), offset, interval_ms);
    }
}

/// Reads the group's watermark and instances (linearizable) and rebuilds its state.
async fn resume(
    ctx: &GroupCtx,
    shard: ShardId,
    key: &GroupKey,
    group: &RuleGroup,
    cancel: &CancellationToken,
) -> Option<(Option<i64>, GroupState)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let read = async {
            let (_, w) = ctx
                .client
                .read(&Query::Watermarks { shard: Some(shard) }, true)
                .await?;
            let (_, a) = ctx
                .client
                .read(&Query::Alerts { shard: Some(shard) }, true)
                .await?;
            Ok::<_, tocsin_proto::ServiceError>((w, a))
        };
        match read.await {
            Ok((QueryResult::Watermarks(ws), QueryResult::Alerts(alerts))) => {
                let watermark = ws
                    .into_iter()
                    .find(|(g, _)| g == key)
                    .map(|(_, w)| w.last_eval_ms);
                let mine: Vec<_> = alerts.into_iter().filter(|a| &a.group == key).collect();
                let state = GroupState::from_stored(group, convert::from_instances(group, &mine)).unwrap_or_else(|e| {
                    warn!(group = %key, error = %e, "stored alerts do not fit the group; starting from empty state");
                    GroupState::new(group)
                });
                info!(group = %key, watermark = ?watermark, alerts = mine.len(), "resumed group");
                return Some((watermark, state));
            }
            Ok(_) => warn!(group = %key, "unexpected query result while resuming"),
            Err(e) => warn!(group = %key, error = %e, "cannot read the group's state yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum CommitError {
    Stale,
    Other(String),
}

async fn commit(
    ctx: &GroupCtx,
    shard: ShardId,
    epoch: Epoch,
    key: &GroupKey,
    group: &RuleGroup,
    ts: i64,
    eval: &GroupEval,
) -> Result<(), CommitError> {
    let updates = eval
        .transitions
        .iter()
        .map(|t| convert::to_update(key, group, t))
        .collect();
    let command = Command::Shard {
        shard,
        epoch,
        op: ShardOp::EvalCycle {
            group: key.clone(),
            eval_ms: ts,
            updates,
        },
    };
    let started = std::time::Instant::now();
    let result = ctx.client.propose(vec![command]).await;
    ctx.stats
        .store_rtt_us
        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match result {
        Ok((_, mut results)) => match results.pop() {
            Some(Ok(_)) => Ok(()),
            Some(Err(CommandError::StaleEpoch { current, got, .. })) => {
                warn!(group = %key, %shard, %current, %got, "store refused our epoch: dropping the shard");
                Err(CommitError::Stale)
            }
            Some(Err(e)) => Err(CommitError::Other(e.to_string())),
            None => Err(CommitError::Other("no result".into())),
        },
        Err(e) => Err(CommitError::Other(e.to_string())),
    }
}
