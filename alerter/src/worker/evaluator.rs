//! The worker's [`Evaluator`]: queries a group's expressions from a [`Datasource`] (usually
//! another process: a Prometheus-compatible API or a node's embedded store) at the group's
//! query time — in one request where the datasource answers batches
//! ([`Datasource::instant_many`]), else concurrently — then runs the pure evaluation on the
//! answers.
//!
//! If every query failed for the datasource's fault (down, timing out), nothing is evaluated:
//! the caller keeps the state and counts bad work. A query's own fault (a bad expression)
//! fails only that rule, which keeps its state.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;

use super::group::Evaluator;
use super::session::WorkStats;
use crate::datasource::{Datasource, Fault, InstantQuery};
use crate::eval::{
    EvalOptions, GroupEval, GroupState, Prefetched, eval_group_prefetched, group_queries,
};
use crate::promql::Engine;
use crate::rules::RuleGroup;

/// Evaluates groups against a datasource.
#[derive(Debug)]
pub struct DatasourceEvaluator {
    datasource: Arc<dyn Datasource>,
    engine: Engine,
    options: EvalOptions,
    query_timeout: Duration,
    stats: Arc<WorkStats>,
}

impl DatasourceEvaluator {
    /// An evaluator over `datasource`; each query gets `query_timeout`.
    pub fn new(
        datasource: Arc<dyn Datasource>,
        options: EvalOptions,
        query_timeout: Duration,
        stats: Arc<WorkStats>,
    ) -> Self {
        Self {
            datasource,
            engine: Engine::default(),
            options,
            query_timeout,
            stats,
        }
    }
}

impl Evaluator for DatasourceEvaluator {
    fn evaluate<'a>(
        &'a self,
        group: &'a RuleGroup,
        ts_ms: i64,
        prev: &'a GroupState,
    ) -> BoxFuture<'a, Result<GroupEval, String>> {
        Box::pin(async move {
            let (exprs, query_ts) = group_queries(group, ts_ms, &self.options);
            let started = std::time::Instant::now();
            let qs: Vec<InstantQuery> = exprs
                .iter()
                .map(|expr| InstantQuery {
                    expr: expr.clone(),
                    ts_ms: query_ts,
                    timeout: self.query_timeout,
                })
                .collect();
            let answers: Vec<_> = exprs
                .into_iter()
                .zip(self.datasource.instant_many(&qs).await)
                .collect();
            let per_query = started.elapsed().as_micros() as u64 / answers.len().max(1) as u64;
            self.stats
                .datasource_rtt_us
                .store(per_query, Ordering::Relaxed);
            if !answers.is_empty()
                && answers
                    .iter()
                    .all(|(_, r)| r.as_ref().is_err_and(|e| e.fault() == Fault::Datasource))
            {
                let first = answers
                    .iter()
                    .find_map(|(_, r)| r.as_ref().err())
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Err(format!("datasource unavailable: {first}"));
            }
            let prefetched = Prefetched {
                answers: answers
                    .into_iter()
                    .map(|(e, r)| (e, r.map(|o| o.value).map_err(|e| e.to_string())))
                    .collect(),
            };
            eval_group_prefetched(&self.engine, group, &prefetched, ts_ms, prev, &self.options)
                .map_err(|e| e.to_string())
        })
    }
}
