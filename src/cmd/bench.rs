//! `tocsin bench …`: benchmarks. Each prints `name: value unit` lines (and a header naming the
//! machine), so figures in README.md can be reproduced with the printed command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand};
use tocsin_state::batcher::BatchConfig;
use tocsin_state::client::StoreClient;
use tocsin_state::model::{
    AlertInstance, AlertState, AlertUpdate, Command, Epoch, Fingerprint, GroupKey, QueryResult,
    ShardId, ShardLayout, ShardOp, WorkerId, WorkerInfo, ZoneId,
};
use tocsin_state::probe::Stage;
use tocsin_state::raft::timing::RaftTiming;
use tocsin_state::testing::{NodeObservers, TestCluster};
use tokio::sync::mpsc;

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Replicated store: committed alert transitions/s on 3 local nodes with fsync, and commit
    /// latency at half that load.
    Store(StoreBenchArgs),
    /// Rule evaluation: typical alert expressions over 10k (and 100k) series in Tocsin's
    /// engine and in a real Prometheus on the same data, timed alternately; medians and
    /// ratios, plus bytes per sample of the compressed store.
    Eval(EvalBenchArgs),
    /// End to end: notifications/s through the outbox to a local webhook sink, and latency
    /// from the committed `firing` transition to the sink, at 1k and 10k active alerts; rule
    /// evaluations/s per worker core against the embedded datasource, and latency from a
    /// condition becoming true to its committed `firing` transition, at 1k and 10k rules.
    E2e(super::bench_e2e::E2eBenchArgs),
    /// Ingest: remote-write and scrape samples/s, bytes per sample, and query latency
    /// through the HTTP API, of the embedded store beside a real Prometheus fed the same data.
    Ingest(super::bench_ingest::IngestBenchArgs),
}

/// Flags of `tocsin bench eval`.
#[derive(Args, Debug)]
pub struct EvalBenchArgs {
    /// Series counts, comma-separated (each a separate dataset).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    series: Vec<usize>,
    /// Timed repetitions per expression (the median is reported).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Skip the comparison with Prometheus (time only Tocsin's engine).
    #[arg(long)]
    no_prometheus: bool,
    /// Scratch directory (default: a fresh temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Flags of `tocsin bench store`.
#[derive(Args, Debug)]
pub struct StoreBenchArgs {
    /// Concurrent proposers (each a worker's evaluation loop for one rule group).
    #[arg(long, default_value_t = 256)]
    proposers: usize,
    /// Evaluation-cycle commands per proposal (a worker batches the groups of a shard).
    #[arg(long, default_value_t = 1)]
    commands_per_proposal: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where the nodes' data dirs go (default: a fresh temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Raft entries the batcher keeps in flight (node config `[batch] max_in_flight`).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Most commands per Raft entry (node config `[batch] max_commands`).
    #[arg(long)]
    max_commands: Option<usize>,
    /// Coalesced calls the load generator's client keeps in flight.
    #[arg(long, default_value_t = tocsin_state::client::CALLS_IN_FLIGHT)]
    calls_in_flight: usize,
    /// One call per proposal (`StoreClient::propose_alone`) instead of coalescing the
    /// proposers' concurrent proposals into `ProposeMany` calls.
    #[arg(long)]
    no_coalesce: bool,
    /// Commands per second offered in the open-loop phase (default: half the measured peak).
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct alert instances each rule group's transitions cycle through (a group of ten
    /// rules, each firing for one series, has ten). The replicas' alert state grows to
    /// groups × this many instances and then stays that size, as a running rule set's does.
    #[arg(long, default_value_t = 10)]
    instances_per_group: u64,
    #[command(flatten)]
    nodes: NodeArgs,
}

/// How the benchmarks run their three store nodes.
#[derive(Args, Clone, Copy, Debug)]
pub struct NodeArgs {
    /// Worker threads of each store node's own runtime, as if each node were its own process
    /// (the operating system, not one task queue, then shares the cores between them); 0: the
    /// nodes share the benchmark's runtime with the load generator.
    #[arg(long, default_value_t = 1)]
    pub node_threads: usize,
}

/// Runs a benchmark; exit code 0 on success.
pub async fn run(cmd: BenchCommand) -> i32 {
    match cmd {
        BenchCommand::Ingest(args) => super::bench_ingest::run(args).await,
        BenchCommand::E2e(args) => match super::bench_e2e::run(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tocsin bench e2e: {e:#}");
                1
            }
        },
        BenchCommand::Eval(args) => {
            let tmp = match tempfile::tempdir() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("tocsin bench eval: {e}");
                    return 1;
                }
            };
            let mut opts = tocsin_alerter::bench_eval::EvalBenchOptions::new(
                args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf()),
            );
            opts.series_counts = args.series.clone();
            opts.iterations = args.iterations;
            opts.compare_with_prometheus = !args.no_prometheus;
            println!(
                "# tocsin bench eval: machine {} cores, {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                cpu_model()
            );
            println!(
                "# rerun: tocsin bench eval --series {} --iterations {}{}",
                args.series
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                args.iterations,
                if args.no_prometheus {
                    " --no-prometheus"
                } else {
                    ""
                }
            );
            match tokio::task::spawn_blocking(move || tocsin_alerter::bench_eval::run(opts)).await {
                Ok(Ok(text)) => {
                    print!("{text}");
                    0
                }
                Ok(Err(e)) => {
                    eprintln!("tocsin bench eval: {e}");
                    1
                }
                Err(e) => {
                    eprintln!("tocsin bench eval: {e}");
                    1
                }
            }
        }
        BenchCommand::Store(args) => match store(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tocsin bench store: {e:#}");
                1
            }
        },
    }
}

struct Lat(Vec<u32>); // microseconds

impl Lat {
    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.0[i]) / 1000.0
    }
}

/// The store's write-path stage durations (`tocsin_state::probe`), per node, recorded while
/// switched on: one phase's breakdown of where a commit's time goes.
#[derive(Default)]
pub(super) struct StageSamples {
    on: AtomicBool,
    samples: std::sync::Mutex<BTreeMap<(Stage, u64), Vec<u32>>>,
}

/// The stage samples' source for the load generator's client (nodes are 1, 2, 3).
const CLIENT_SOURCE: u64 = 0;

impl StageSamples {
    /// Each node's observer.
    fn observers(self: &Arc<Self>) -> NodeObservers {
        let me = self.clone();
        Arc::new(move |node| me.observer(node))
    }

    /// A probe for the load generator's client ([`Stage::CLIENT`]).
    pub(super) fn client_probe(self: &Arc<Self>) -> tocsin_state::probe::Probe {
        tocsin_state::probe::Probe::new(Some(self.observer(CLIENT_SOURCE)))
    }

    fn observer(self: &Arc<Self>, node: u64) -> tocsin_state::probe::StageObserver {
        let me = self.clone();
        Arc::new(move |stage, d: Duration| {
            if me.on.load(Ordering::Relaxed) {
                let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                me.samples
                    .lock()
                    .expect("stage samples lock")
                    .entry((stage, node))
                    .or_default()
                    .push(us);
            }
        })
    }

    /// Starts a fresh recording.
    pub(super) fn start(&self) {
        self.samples.lock().expect("stage samples lock").clear();
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stops recording and prints each stage's percentiles, the leader's apart from the
    /// followers' and the client's.
    pub(super) fn print(&self, phase: &str, leader: u64) {
        self.on.store(false, Ordering::Relaxed);
        let samples = std::mem::take(&mut *self.samples.lock().expect("stage samples lock"));
        let mut merged: BTreeMap<(Stage, &str), Vec<u32>> = BTreeMap::new();
        for ((stage, node), v) in samples {
            let role = if node == CLIENT_SOURCE {
                "client"
            } else if node == leader {
                "leader"
            } else {
                "followers"
            };
            merged.entry((stage, role)).or_default().extend(v);
        }
        for ((stage, role), v) in merged {
            let n = v.len();
            let mut lat = Lat(v);
            println!(
                "{phase}_stage_{}_{role}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({n} samples)",
                stage.name(),
                lat.pct(0.50),
                lat.pct(0.99),
                lat.pct(1.0),
            );
        }
    }
}

fn cycle(shard: ShardId, epoch: Epoch, group: &GroupKey, eval_ms: i64, fp: u64) -> Command {
    let alert = AlertInstance {
        fingerprint: Fingerprint(fp),
        group: group.clone(),
        rule: "BenchAlert".into(),
        labels: BTreeMap::from([
            ("alertname".into(), "BenchAlert".into()),
            ("instance".into(), format!("i-{fp}")),
        ]),
        annotations: BTreeMap::new(),
        state: if eval_ms % 2 == 0 {
            AlertState::Firing
        } else {
            AlertState::Pending
        },
        active_at_ms: 0,
        fired_at_ms: None,
        resolved_at_ms: None,
        keep_firing_since_ms: None,
        value: eval_ms as f64,
    };
    Command::Shard {
        shard,
        epoch,
        op: ShardOp::EvalCycle {
            group: group.clone(),
            eval_ms,
            updates: vec![AlertUpdate::Upsert(alert.into())],
        },
    }
}

/// One proposer's rule groups (one per command of a proposal), with their shard and epoch,
/// and how many alert instances each group's transitions cycle through.
struct Groups(Vec<(ShardId, Epoch, GroupKey)>, u64);

async fn store(args: StoreBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.proposers > 0 && args.commands_per_proposal > 0,
        "--proposers and --commands-per-proposal must be positive"
    );
    anyhow::ensure!(
        args.instances_per_group > 0,
        "--instances-per-group must be positive"
    );
    anyhow::ensure!(
        args.calls_in_flight > 0,
        "--calls-in-flight must be positive"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of commands per second, got {rate}"
        );
    }
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "# tocsin bench store: 3 nodes in one process ({}), real WAL Raft log with fsync under {}",
        nodes_desc(args.nodes),
        dir.display()
    );
    println!(
        "# machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!(
        "# rerun: tocsin bench store --proposers {} --commands-per-proposal {} --seconds {} --instances-per-group {} --node-threads {} --calls-in-flight {}{}{}",
        args.proposers,
        args.commands_per_proposal,
        args.seconds,
        args.instances_per_group,
        args.nodes.node_threads,
        args.calls_in_flight,
        if args.no_coalesce {
            " --no-coalesce"
        } else {
            ""
        },
        args.rate
            .map(|r| format!(" --rate {r}"))
            .unwrap_or_default()
    );
    let mut batch = BatchConfig::default();
    if let Some(n) = args.max_in_flight {
        anyhow::ensure!(n > 0, "--max-in-flight must be positive");
        batch.max_in_flight = n;
    }
    if let Some(n) = args.max_commands {
        anyhow::ensure!(n > 0, "--max-commands must be positive");
        batch.max_commands = n;
    }
    println!(
        "# batching: max_in_flight {} entries, max_commands {} per entry",
        batch.max_in_flight, batch.max_commands
    );
    let stages = Arc::new(StageSamples::default());
    let (cluster, leader) =
        start_cluster_with(dir, batch, Some(stages.observers()), args.nodes).await;
    let client = cluster
        .client()
        .with_probe(stages.client_probe())
        .with_calls_in_flight(args.calls_in_flight);

    // One worker owns every eval shard; each proposer drives its own groups.
    let layout = ShardLayout::default();
    let worker = register_worker(&client).await?;
    let shards: Vec<(ShardId, Option<WorkerId>)> = (0..layout.eval_shards)
        .map(|i| (ShardId::eval(i), Some(worker.clone())))
        .collect();
    let (epoch, _) = client.propose(vec![Command::Assign { shards }]).await?;
    let groups: Vec<Arc<Groups>> = (0..args.proposers)
        .map(|p| {
            Arc::new(Groups(
                (0..args.commands_per_proposal)
                    .map(|c| {
                        let g = GroupKey {
                            namespace: "bench".into(),
                            name: format!("g-{p}-{c}"),
                        };
                        (layout.eval_shard(&g), Epoch(epoch), g)
                    })
                    .collect(),
                args.instances_per_group,
            ))
        })
        .collect();
    let clock = Arc::new(AtomicU64::new(1));

    // Phase 1: closed loop, every proposer as fast as it can.
    let stats_before = cluster
        .node(leader)
        .proposer
        .stats()
        .commands
        .load(Ordering::Relaxed);
    let entries_before = cluster
        .node(leader)
        .proposer
        .stats()
        .entries
        .load(Ordering::Relaxed);
    let jiffies_before = cpu_jiffies();
    let calls_before = client.propose_stats().calls.load(Ordering::Relaxed);
    let proposals_before = client.propose_stats().proposals.load(Ordering::Relaxed);
    stages.start();
    let (committed, lat, refused) = closed_loop(
        &client,
        &groups,
        &clock,
        Duration::from_secs(args.seconds),
        args.no_coalesce,
    )
    .await;
    let calls = client.propose_stats().calls.load(Ordering::Relaxed) - calls_before;
    let proposals = client.propose_stats().proposals.load(Ordering::Relaxed) - proposals_before;
    let commands = cluster
        .node(leader)
        .proposer
        .stats()
        .commands
        .load(Ordering::Relaxed)
        - stats_before;
    let entries = cluster
        .node(leader)
        .proposer
        .stats()
        .entries
        .load(Ordering::Relaxed)
        - entries_before;
    anyhow::ensure!(
        refused == 0,
        "{refused} commands were refused; the benchmark is broken"
    );
    let peak = committed as f64 / args.seconds as f64;
    let mut lat = lat;
    println!("commits_per_sec: {peak:.0} commands/s");
    println!("transitions_per_sec: {peak:.0} alert transitions/s");
    println!("commit_p50_ms: {:.2} ms (at peak)", lat.pct(0.50));
    println!("commit_p99_ms: {:.2} ms (at peak)", lat.pct(0.99));
    println!(
        "mean_batch_size: {:.1} commands/entry",
        commands as f64 / entries.max(1) as f64
    );
    println!(
        "mean_call_size: {:.1} proposals/call (the client coalesces concurrent proposals)",
        proposals as f64 / calls.max(1) as f64
    );

    println!(
        "cpu_steal: {} of the machine's CPU time during the peak phase (another tenant's load; figures drop with it)",
        steal_pct(jiffies_before, cpu_jiffies())
    );
    stages.print("peak", leader);

    // Phase 2: open loop at the asked rate, or half the peak.
    let rate = args.rate.unwrap_or((peak / 2.0).max(1.0));
    let jiffies_before = cpu_jiffies();
    stages.start();
    let (mut lat, mut service) = open_loop(
        &client,
        &groups,
        &clock,
        rate,
        Duration::from_secs(args.seconds),
        args.no_coalesce,
    )
    .await;
    let phase = if args.rate.is_some() {
        "open_loop"
    } else {
        "half_load"
    };
    println!("{phase}_rate: {rate:.0} commands/s");
    println!("{phase}_p50_ms: {:.2} ms", lat.pct(0.50));
    println!("{phase}_p99_ms: {:.2} ms", lat.pct(0.99));
    println!(
        "{phase}_from_send_p50_ms: {:.2} ms (from the proposal's send, not its scheduled time)",
        service.pct(0.50)
    );
    println!("{phase}_from_send_p99_ms: {:.2} ms", service.pct(0.99));
    println!(
        "{phase}_cpu_steal: {}",
        steal_pct(jiffies_before, cpu_jiffies())
    );
    stages.print(phase, leader);

    // Every replica must agree on what was committed.
    let (index, _) = client
        .read(&tocsin_state::model::Query::Stats, true)
        .await?;
    cluster
        .wait_applied(&[1, 2, 3], index, Duration::from_secs(30))
        .await;
    let digests: Vec<u64> = [1, 2, 3].iter().map(|id| cluster.digest(*id)).collect();
    anyhow::ensure!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "replicas diverged: {digests:?}"
    );
    if let (_, QueryResult::Stats(s)) = client
        .read(&tocsin_state::model::Query::Stats, false)
        .await?
    {
        println!(
            "# replicas agree; state machine applied {} commands, refused {} stale",
            s.applied, s.stale_epoch
        );
    }
    cluster.shutdown().await;
    Ok(())
}

async fn closed_loop(
    client: &StoreClient,
    groups: &[Arc<Groups>],
    clock: &Arc<AtomicU64>,
    d: Duration,
    alone: bool,
) -> (u64, Lat, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for g in groups {
        let (client, g, clock, stop) = (client.clone(), g.clone(), clock.clone(), stop.clone());
        tasks.spawn(async move {
            let (mut n, mut refused, mut lat) = (0u64, 0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let now = clock.fetch_add(1, Ordering::Relaxed) as i64;
                let cmds =
                    g.0.iter()
                        .map(|(s, e, gk)| cycle(*s, *e, gk, now, now as u64 % g.1))
                        .collect::<Vec<_>>();
                let k = cmds.len() as u64;
                let t = tokio::time::Instant::now();
                let outcome = if alone {
                    client.propose_alone(cmds).await
                } else {
                    client.propose(cmds).await
                };
                match outcome {
                    Ok((_, r)) => {
                        lat.push(t.elapsed().as_micros() as u32);
                        n += k;
                        refused += r.iter().filter(|r| r.is_err()).count() as u64;
                    }
                    Err(e) => tracing::warn!(error = %e, "proposal failed"),
                }
            }
            (n, refused, lat)
        });
    }
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut refused, mut lat) = (0, 0, Vec::new());
    while let Some(Ok((n, r, l))) = tasks.join_next().await {
        total += n;
        refused += r;
        lat.extend(l);
    }
    (total, Lat(lat), refused)
}

async fn open_loop(
    client: &StoreClient,
    groups: &[Arc<Groups>],
    clock: &Arc<AtomicU64>,
    rate: f64,
    d: Duration,
    alone: bool,
) -> (Lat, Lat) {
    // Each group is proposed by one task at a time (its watermark must grow in commit order),
    // so the offered load is spread over the groups, their phases spread over the period.
    let per_group = rate / groups.len() as f64 / groups[0].0.len() as f64;
    let period = Duration::from_secs_f64(1.0 / per_group.max(0.001));
    // The schedule is kept by one OS thread sleeping to each send time (the kernel's
    // high-resolution timers, tens of microseconds late) rather than by tokio's timer wheel,
    // which fires up to a millisecond late: that lateness is the load generator's, not the
    // store's, yet a latency measured from the scheduled time would count it.
    let mut senders = Vec::with_capacity(groups.len());
    let mut tasks = tokio::task::JoinSet::new();
    for g in groups {
        let (tx, mut rx) = mpsc::unbounded_channel::<std::time::Instant>();
        senders.push(tx);
        let (client, g, clock) = (client.clone(), g.clone(), clock.clone());
        tasks.spawn(async move {
            let (mut lat, mut service) = (Vec::new(), Vec::new());
            // A slot that comes while this group's previous proposal is in flight waits here,
            // and its latency counts the wait.
            while let Some(scheduled) = rx.recv().await {
                let sent = std::time::Instant::now();
                let now = clock.fetch_add(1, Ordering::Relaxed) as i64;
                let cmds =
                    g.0.iter()
                        .map(|(s, e, gk)| cycle(*s, *e, gk, now, now as u64 % g.1))
                        .collect::<Vec<_>>();
                let outcome = if alone {
                    client.propose_alone(cmds).await
                } else {
                    client.propose(cmds).await
                };
                if outcome.is_ok() {
                    // Latency from the scheduled time, so queueing behind a slow commit counts;
                    // and from the send, which leaves out the wait behind this group's
                    // previous proposal.
                    lat.push(scheduled.elapsed().as_micros() as u32);
                    service.push(sent.elapsed().as_micros() as u32);
                }
            }
            (lat, service)
        });
    }
    let n = senders.len() as u32;
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            let end = start + d;
            let step = period / n;
            for slot in 0u64.. {
                let at = start
                    + step * (slot % u64::from(n)) as u32
                    + period * (slot / u64::from(n)) as u32;
                if at >= end {
                    break;
                }
                if let Some(wait) = at.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                // A group task gone (its runtime shutting down) ends nothing here.
                let _ = senders[(slot % u64::from(n)) as usize].send(at);
            }
            // Dropping the senders ends each group task once its queue is drained.
        })
        .expect("spawn the load generator's pacer thread");
    let (mut all, mut all_service) = (Vec::new(), Vec::new());
    while let Some(Ok((l, s))) = tasks.join_next().await {
        all.extend(l);
        all_service.extend(s);
    }
    let _ = pacer.join();
    (Lat(all), Lat(all_service))
}

/// A comma-separated list of positive sizes (`1000,10000`), each a separate run; an empty
/// value (`''`) lists none, which skips that part of a benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes(pub Vec<usize>);

impl Sizes {
    /// Parses a flag's value.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        s.split(',')
            .map(|p| {
                let p = p.trim();
                p.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{p:?} is not a positive count"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl std::fmt::Display for Sizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("''");
        }
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The machine's (all CPUs) total and steal jiffies from `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total = fields.iter().take(8).sum();
    Some((total, *fields.get(7)?))
}

/// Share of CPU time the hypervisor stole between two [`cpu_jiffies`] readings, in percent.
fn steal_pct(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> String {
    match (before, after) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => {
            format!("{:.1} %", (s1 - s0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => "unknown".into(),
    }
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The benchmarks' store: 3 in-process nodes on `dir` (WAL + fsync, production Raft timing),
/// once they have a leader (returned with it), recording the write path's stages (see
/// [`StageSamples`]).
pub(super) async fn start_cluster_observed(
    dir: std::path::PathBuf,
    nodes: NodeArgs,
) -> (TestCluster, u64, Arc<StageSamples>) {
    let stages = Arc::new(StageSamples::default());
    let (cluster, leader) =
        start_cluster_with(dir, BatchConfig::default(), Some(stages.observers()), nodes).await;
    (cluster, leader, stages)
}

/// How the nodes run, for the benchmarks' headers.
pub(super) fn nodes_desc(nodes: NodeArgs) -> String {
    match nodes.node_threads {
        0 => "sharing the benchmark's runtime".into(),
        n => format!(
            "each on its own runtime of {n} thread{}",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// [`start_cluster_observed`] with other batching limits and any observers.
async fn start_cluster_with(
    dir: std::path::PathBuf,
    batch: BatchConfig,
    observe: Option<NodeObservers>,
    nodes: NodeArgs,
) -> (TestCluster, u64) {
    let node_threads = (nodes.node_threads > 0).then_some(nodes.node_threads);
    let cluster = TestCluster::start_isolated(
        dir,
        3,
        RaftTiming::production(),
        batch,
        observe,
        node_threads,
    )
    .await;
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await;
    (cluster, leader)
}

/// Registers the benchmarks' one worker (`bench-worker`, zone `z1`) and returns its id.
pub(super) async fn register_worker(
    client: &tocsin_state::client::StoreClient,
) -> anyhow::Result<WorkerId> {
    let worker = WorkerId::new("bench-worker").map_err(anyhow::Error::msg)?;
    client
        .propose(vec![Command::RegisterWorker(WorkerInfo {
            id: worker.clone(),
            zone: ZoneId::new("z1").map_err(anyhow::Error::msg)?,
            addr: String::new(),
            capacity: 1,
            registered_at_ms: 0,
        })])
        .await?;
    Ok(worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(node_threads: usize, instances_per_group: u64) -> StoreBenchArgs {
        StoreBenchArgs {
            proposers: 4,
            commands_per_proposal: 2,
            seconds: 1,
            dir: None,
            max_in_flight: None,
            max_commands: None,
            calls_in_flight: 4,
            no_coalesce: false,
            rate: Some(200.0),
            instances_per_group,
            nodes: NodeArgs { node_threads },
        }
    }

    /// `tocsin bench store` runs end to end at a tiny size with its nodes on their own
    /// runtimes and on the shared one; each run fails unless the three replicas' digests
    /// agree at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_store_bench_runs_and_its_replicas_agree() {
        for node_threads in [1, 0] {
            store(tiny(node_threads, 2))
                .await
                .unwrap_or_else(|e| panic!("bench with --node-threads {node_threads}: {e:#}"));
        }
    }

    #[tokio::test]
    async fn zero_instances_per_group_is_refused_naming_the_flag() {
        let err = store(tiny(1, 0)).await.expect_err("refused");
        assert!(err.to_string().contains("--instances-per-group"), "{err:#}");
    }

    #[tokio::test]
    async fn zero_calls_in_flight_is_refused_naming_the_flag() {
        let mut args = tiny(1, 2);
        args.calls_in_flight = 0;
        let err = store(args).await.expect_err("refused");
        assert!(err.to_string().contains("--calls-in-flight"), "{err:#}");
    }
}
