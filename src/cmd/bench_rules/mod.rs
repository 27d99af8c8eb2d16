//! `tocsin bench e2e --rules N,…`: rule evaluations per worker core against the embedded
//! datasource, and the time from a condition becoming true to its committed `firing`
//! transition.
//!
//! Each run is the production path end to end, in one process: three store nodes (real WAL
//! logs with fsync, production Raft timing) and the embedded store, whose Prometheus query API
//! is served over HTTP on a loopback port, run on the process's runtimes; one worker's group
//! loops (`runner` → `group` → `DatasourceEvaluator` → `QueryGate` → `PrometheusClient`, each
//! evaluation committed as an `EvalCycle` fenced by the shard's epoch) run on a runtime of
//! their own with **one** worker thread, whose CPU time is read from `/proc` — the worker
//! core. The workload is in [`dataset`]; the timing points are in [`probe`].
//!
//! After every group has run an evaluation and two more intervals have passed, a window
//! of `--rules-seconds` is measured; a third of the way into it, the samples of a tenth of the
//! jobs change so that a tenth of the rules (`for: 0s`) become true. Reported: rule
//! evaluations per second (wall clock) and per CPU-second of the worker core, the CPU per 10k
//! rules per interval, slot lateness and missed slots, evaluation and commit times of every
//! evaluation, and for every alert that fired: slot → committed, split into evaluation and
//! commit, and sample → committed.

mod cpu;
mod dataset;
mod probe;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tocsin_alerter::datasource::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use tocsin_alerter::datasource::{RawDatasourceConfig, RawPrometheusConfig};
use tocsin_alerter::eval::EvalOptions;
use tocsin_alerter::worker::evaluator::DatasourceEvaluator;
use tocsin_alerter::worker::group::GroupCtx;
use tocsin_alerter::worker::{Ownership, WorkStats, runner};
use tocsin_state::client::StoreClient;
use tocsin_state::model::{
    AlertState, Command, Epoch, Query, QueryResult, ShardId, ShardKind, ShardLayout, WorkerId,
};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bench::{NodeArgs, Sizes};
use cpu::Snapshot;
use dataset::{Dataset, Feeder};
use probe::{Probe, TimedEvaluator, WallClock};
use report::{Report, Window};

/// Most datasource queries in flight from the worker (`tocsin worker`'s default).
const MAX_CONCURRENT_QUERIES: usize = 16;
/// Deadline of one datasource query (`tocsin worker`'s default).
const QUERY_TIMEOUT: Duration = Duration::from_millis(10_000);
/// How long every group may take to resume and run its first evaluation.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the firing transitions may take after the window, beyond five intervals.
const FIRING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the worker's tasks get to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll period of the waits.
const POLL: Duration = Duration::from_millis(20);

/// Flags of the rule-evaluation section of `tocsin bench e2e`.
#[derive(Args, Debug, Clone)]
pub struct RulesBenchArgs {
    /// Alerting-rule counts, comma-separated (each a separate run); `--rules ''` skips the
    /// rule-evaluation section.
    #[arg(long, value_parser = Sizes::parse, default_value = "1000,10000")]
    pub rules: Sizes,
    /// Alerting rules per rule group.
    #[arg(long, default_value_t = 10)]
    pub rules_per_group: usize,
    /// Evaluation interval of every rule group, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub rules_interval_ms: u64,
    /// Length of the measured window of each run, seconds.
    #[arg(long, default_value_t = 10)]
    pub rules_seconds: u64,
    /// Jobs the rules watch (rounded up to a multiple of ten), each of four targets with a
    /// counter and a gauge: the embedded store holds eight series per job, every rule selects
    /// the four of one metric of one job.
    #[arg(long, default_value_t = 100)]
    pub rules_jobs: usize,
}

impl RulesBenchArgs {
    /// The flags as they would be typed again.
    pub fn rerun_flags(&self) -> String {
        format!(
            "--rules {} --rules-per-group {} --rules-interval-ms {} --rules-seconds {} \
             --rules-jobs {}",
            self.rules,
            self.rules_per_group,
            self.rules_interval_ms,
            self.rules_seconds,
            self.rules_jobs
        )
    }
}

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rules: usize,
    per_group: usize,
    interval: Duration,
    window: Duration,
    jobs: usize,
    nodes: NodeArgs,
}

/// Runs the section (nothing when `--rules ''`); each run must finish within `timeout`.
pub async fn run(args: &RulesBenchArgs, nodes: NodeArgs, timeout: Duration) -> anyhow::Result<()> {
    if args.rules.0.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        args.rules_per_group > 0,
        "--rules-per-group must be positive"
    );
    anyhow::ensure!(
        args.rules_interval_ms >= 100,
        "--rules-interval-ms must be at least 100"
    );
    anyhow::ensure!(
        args.rules_seconds.saturating_mul(1000) >= 4 * args.rules_interval_ms,
        "--rules-seconds must cover at least four evaluation intervals"
    );
    println!(
        "# rule evaluation: per run, 3 store nodes (WAL + fsync, production Raft timing; {}) \
         and the embedded store, its query API served over loopback HTTP, on the process's \
         other runtimes; one worker's group loops (runner, DatasourceEvaluator, PrometheusClient, \
         EvalCycle commits fenced by epoch) on a runtime with one worker thread (the worker \
         core); rules `rate(x[1m]) > t`, `sum by (job) (rate(x[1m])) > t`, `x > t` with \
         `for: 0s`; a tenth become true a third of the way into the measured window",
        super::bench::nodes_desc(nodes)
    );
    for &n in &args.rules.0 {
        let plan = Plan {
            rules: n,
            per_group: args.rules_per_group,
            interval: Duration::from_millis(args.rules_interval_ms),
            window: Duration::from_secs(args.rules_seconds),
            jobs: args.rules_jobs,
            nodes,
        };
        let report = tokio::time::timeout(timeout, one(plan))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the run with {n} rules did not finish within {timeout:?} (--timeout-s)"
                )
            })??;
        report.print();
    }
    Ok(())
}

/// A runtime for one part of the benchmark, with one worker thread named `name` (a thread
/// name is what the CPU split goes by). Dropped without blocking: a runtime dropped the
/// ordinary way inside async code panics.
pub(super) struct Rt {
    rt: Option<tokio::runtime::Runtime>,
    pub(super) handle: tokio::runtime::Handle,
}

impl Rt {
    pub(super) fn new(name: &str) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("cannot start the {name} runtime"))?;
        let handle = rt.handle().clone();
        Ok(Self {
            rt: Some(rt),
            handle,
        })
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Polls `cond` every [`POLL`] until it holds (true) or `timeout` passes (false).
async fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Serves the embedded store's query API on a loopback port from `rt`; returns its URL.
async fn serve(
    rt: &Rt,
    tracker: &TaskTracker,
    embedded: &Arc<EmbeddedStore>,
    stop: &CancellationToken,
) -> anyhow::Result<String> {
    let app = embedded.router();
    let stop = stop.clone();
    let (tx, rx) = oneshot::channel();
    tracker.spawn_on(
        async move {
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr());
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the benchmark's datasource server failed");
            }
        },
        &rt.handle,
    );
    let addr = rx
        .await
        .context("the datasource server stopped before listening")?
        .context("cannot listen on 127.0.0.1:0 for the datasource")?;
    Ok(format!("http://{addr}"))
}

/// Stores the rule files, one `PutRules` per namespace, as `PUT /api/v1/rules/{ns}` does.
async fn put_rules(client: &StoreClient, dataset: &Dataset) -> anyhow::Result<()> {
    for (namespace, text) in dataset.rule_files() {
        let (_, groups) = crate::http::rules::to_records(&namespace, &text).map_err(|errors| {
            anyhow::anyhow!(
                "the generated rule file {namespace} is invalid: {}",
                errors.first().map(ToString::to_string).unwrap_or_default()
            )
        })?;
        let (_, results) = client
            .propose(vec![Command::PutRules {
                namespace,
                groups,
                expected_version: None,
            }])
            .await?;
        anyhow::ensure!(
            results.iter().all(Result::is_ok),
            "the rules were refused: {results:?}"
        );
    }
    Ok(())
}

/// Registers the benchmark's worker and assigns it every eval shard; returns what its
/// balancer session would publish.
async fn assign(client: &StoreClient) -> anyhow::Result<Ownership> {
    let worker = super::bench::register_worker(client).await?;
    let shards: Vec<(ShardId, Option<WorkerId>)> = ShardLayout::default()
        .all()
        .filter(|s| s.kind == ShardKind::Eval)
        .map(|s| (s, Some(worker.clone())))
        .collect();
    let (epoch, results) = client
        .propose(vec![Command::Assign {
            shards: shards.clone(),
        }])
        .await?;
    anyhow::ensure!(
        results.iter().all(Result::is_ok),
        "the assignment was refused: {results:?}"
    );
    Ok(Ownership {
        shards: shards.iter().map(|(s, _)| (*s, Epoch(epoch))).collect(),
        log_index: epoch,
        fenced: false,
    })
}

/// Starts the worker's group loops on `rt`, built as `tocsin worker` builds them.
fn start_worker(
    rt: &Rt,
    seeds: Vec<String>,
    url: &str,
    probe: &Arc<Probe>,
    ownership: watch::Receiver<Ownership>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    // Inside the worker's runtime, so the clients' connection tasks run on the worker core.
    let _enter = rt.handle.enter();
    let client = StoreClient::new(seeds)?;
    let datasource = RawDatasourceConfig {
        name: "default".into(),
        prometheus: Some(RawPrometheusConfig::with_url(url)),
        embedded: false,
        max_concurrent_queries: MAX_CONCURRENT_QUERIES,
        query_timeout_ms_max: QUERY_TIMEOUT.as_millis() as u64,
        cache: None,
    }
    .validate()
    .and_then(|d| d.build(None))?;
    let stats = Arc::new(WorkStats::default());
    let evaluator = TimedEvaluator {
        inner: DatasourceEvaluator::new(
            datasource,
            EvalOptions::default(),
            QUERY_TIMEOUT,
            stats.clone(),
        ),
        probe: probe.clone(),
    };
    let ctx = GroupCtx {
        client,
        evaluator: Arc::new(evaluator),
        stats,
        now_ms: crate::clock::wall_ms,
        observer: probe.clone(),
    };
    tracker.spawn_on(
        runner::run(ctx, ownership, cancel.clone(), tracker.clone()),
        &rt.handle,
    );
    Ok(())
}

/// One run.
async fn one(plan: Plan) -> anyhow::Result<Report> {
    let dataset = Dataset::new(
        plan.rules,
        plan.per_group,
        plan.interval.as_millis() as u64,
        plan.jobs,
    );
    let tmp = tempfile::tempdir()?;
    let (cluster, leader, stages) =
        super::bench::start_cluster_observed(tmp.path().to_path_buf(), plan.nodes).await;
    let setup = cluster.client();

    // The datasource: the embedded store, written by the feeder, served over HTTP.
    let ds_rt = Rt::new("bench-ds")?;
    let ds_tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let embedded = EmbeddedStore::new(EmbeddedStoreConfig::default());
    let feeder = Arc::new(Feeder::new(
        &dataset,
        embedded.store().clone(),
        crate::clock::wall_ms(),
    ));
    let backfill = feeder.clone();
    tokio::task::spawn_blocking(move || backfill.backfill(crate::clock::wall_ms())).await?;
    let url = serve(&ds_rt, &ds_tracker, &embedded, &stop).await?;
    ds_tracker.spawn_on(
        feeder.clone().run(crate::clock::wall_ms, stop.clone()),
        &ds_rt.handle,
    );

    put_rules(&setup, &dataset).await?;
    let ownership = assign(&setup).await?;
    let (_ownership_tx, ownership_rx) = watch::channel(ownership);

    // The worker.
    let worker_rt = Rt::new("bench-eval")?;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let probe = Arc::new(Probe::default());
    let seeds = (1..=3).map(|id| cluster.addr(id)).collect();
    start_worker(
        &worker_rt,
        seeds,
        &url,
        &probe,
        ownership_rx,
        &cancel,
        &tracker,
    )?;
    let worker_tid = worker_rt
        .handle
        .spawn(async { cpu::current_tid() })
        .await?
        .context("cannot find the worker thread's id in /proc")?;

    // Every loop resumed and ran an evaluation (committed or not: a worker that cannot keep
    // up is measured, not refused).
    let groups = dataset.groups();
    let ready = poll_until(READY_TIMEOUT, || probe.groups_reported() >= groups).await;
    anyhow::ensure!(
        ready,
        "only {} of {groups} rule groups ran an evaluation within {READY_TIMEOUT:?}",
        probe.groups_reported()
    );
    // Every loop and connection past its first evaluations: each group reported three (or,
    // for a worker that cannot keep up, four intervals went by; it is measured as it is).
    let _ = poll_until(plan.interval * 4, || probe.groups_with_reports(3) >= groups).await;

    // The measured window, with the change a third of the way in.
    let clock = WallClock::sample();
    let before = Snapshot::take(worker_tid)?;
    stages.start();
    let start = Instant::now();
    // The measured window is a schedule (the change a third of the way in), not a wait.
    tokio::time::sleep(plan.window / 3).await;
    let flip_ms = feeder.flip(crate::clock::wall_ms);
    tokio::time::sleep_until((start + plan.window).into()).await;
    let end = Instant::now();
    let after = Snapshot::take(worker_tid)?;
    // Where the store's commits spent their time during the window.
    stages.print(&format!("rules_{}_store", plan.rules), leader);

    let expected = dataset.expected_firing();
    poll_until(FIRING_TIMEOUT + plan.interval * 5, || {
        probe.firing_committed_since(flip_ms) >= expected
    })
    .await;
    let firing_in_store = firing_in_store(&setup).await?;

    cancel.cancel();
    tracker.close();
    let stopped = tokio::time::timeout(STOP_TIMEOUT, tracker.wait())
        .await
        .is_ok();
    drop(worker_rt);
    stop.cancel();
    ds_tracker.close();
    let _ = tokio::time::timeout(STOP_TIMEOUT, ds_tracker.wait()).await;
    drop(ds_rt);
    cluster.shutdown().await;
    anyhow::ensure!(
        stopped,
        "the worker's loops did not stop within {STOP_TIMEOUT:?}"
    );

    let window = Window {
        start,
        end,
        clock,
        flip_ms,
        before,
        after,
    };
    Ok(Report::build(
        &dataset,
        &plan,
        &window,
        &probe.records(),
        firing_in_store,
        feeder.refused(),
    ))
}

/// Alert instances of the benchmark's rules that the store holds as firing.
async fn firing_in_store(client: &StoreClient) -> anyhow::Result<usize> {
    let (_, answer) = client.read(&Query::Alerts { shard: None }, true).await?;
    let QueryResult::Alerts(alerts) = answer else {
        anyhow::bail!("unexpected answer to the alerts query");
    };
    Ok(alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing && a.group.namespace.starts_with("bench-"))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole path at a tiny size: every group evaluates, and exactly the alerts of the
    /// rules made true are committed firing. Asserts counts only, never timings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_run_evaluates_and_commits_the_rules_made_true() {
        let plan = Plan {
            rules: 50,
            per_group: 10,
            interval: Duration::from_millis(1000),
            window: Duration::from_secs(4),
            jobs: 100,
            nodes: NodeArgs { node_threads: 1 },
        };
        let r = tokio::time::timeout(Duration::from_secs(120), one(plan))
            .await
            .expect("the run finishes")
            .expect("the run succeeds");
        assert_eq!((r.groups, r.hot_rules), (5, 5));
        assert!(r.rule_evals > 0 && r.group_evals > 0, "{r:?}");
        assert!(r.worker_cpu_s > 0.0, "{r:?}");
        assert_eq!(r.firing_committed, r.expected_firing, "{r:?}");
        assert_eq!(r.firing_in_store, r.expected_firing, "{r:?}");
        assert_eq!((r.spurious, r.failed, r.not_committed), (0, 0, 0), "{r:?}");
        assert_eq!((r.rule_failures, r.samples_refused), (0, 0), "{r:?}");
    }
}
