//! `tocsin bench e2e`: notifications through the outbox to a local webhook sink.
//!
//! Three store nodes (real WAL Raft logs with fsync) and one notify loop run in this process; a
//! webhook sink emulator records every arrival. For each size N, N alerts start firing in
//! evaluation-cycle commits (each alert its own group, `group_wait: 0s`), and the benchmark
//! reports the notification throughput (N over the time from the first commit to the last
//! arrival) and the p50/p99 of arrival time minus the commit time of the alert's `firing`
//! transition. Each notification takes two commits (the enqueue, which claims it for the
//! sender, and the outcome after the send; `--two-commit-claims`: three). Each run also
//! prints where the time went: the store's write-path stages over the run, and the HTTP
//! send to the sink (`alerts_N_send_*`).
//!
//! The rule-evaluation section (`--rules`) is [`super::bench_rules`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use tocsin_alerter::notify::config::Config;
use tocsin_alerter::notify::deliver::build::{self, ChannelOptions};
use tocsin_alerter::notify::deliver::channel::Channel;
use tocsin_alerter::notify::deliver::retry::RetryPolicy;
use tocsin_alerter::worker::Ownership;
use tocsin_alerter::worker::notify::{self, ChannelFactory, NotifyCtx};
use tocsin_alerter::worker::observe::{EvalOutcome, WorkerObserver};
use tocsin_state::model::{
    AlertInstance, AlertState, AlertUpdate, Command, Epoch, Fingerprint, GroupKey, OutboxOp, Query,
    ShardId, ShardLayout, ShardOp, WorkerId,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bench::{NodeArgs, Sizes};
use super::bench_rules::RulesBenchArgs;

/// Flags of `tocsin bench e2e`.
#[derive(Args, Debug)]
pub struct E2eBenchArgs {
    /// Active alert counts, comma-separated (each a separate run); `--alerts ''` skips the
    /// notification section.
    #[arg(long, value_parser = Sizes::parse, default_value = "1000,10000")]
    alerts: Sizes,
    /// Alert transitions per evaluation-cycle commit.
    #[arg(long, default_value_t = 100)]
    per_commit: usize,
    /// Firing transitions per second the producer offers (paced commits); without it the
    /// producer commits as fast as its commits return, which measures the most the pipeline
    /// takes, and its latency includes the backlog it builds.
    #[arg(long)]
    alerts_rate: Option<f64>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Enqueue and claim each notification in two commits (the protocol before
    /// `EnqueueClaimed`), to measure what claiming with the enqueue saves.
    #[arg(long)]
    two_commit_claims: bool,
    /// The rule-evaluation section.
    #[command(flatten)]
    rules: RulesBenchArgs,
    #[command(flatten)]
    nodes: NodeArgs,
}

#[derive(Debug)]
struct Factory {
    http: reqwest::Client,
}

impl ChannelFactory for Factory {
    fn build(&self, config: &Config, receiver: &str) -> Result<Vec<Arc<dyn Channel>>, String> {
        build::channels(config, receiver, &self.http, &ChannelOptions::default())
            .map(|v| v.into_iter().map(Arc::from).collect())
            .map_err(|e| e.to_string())
    }
}

/// The notify loop's HTTP sends to the sink that delivered, in milliseconds.
#[derive(Debug, Default)]
struct Sends(std::sync::Mutex<Vec<f64>>);

impl WorkerObserver for Sends {
    fn evaluation(&self, _: &GroupKey, _: f64, _: EvalOutcome, _: bool) {}

    fn delivery(&self, _: &str, _: &str, outcome: &'static str, seconds: f64) {
        if outcome == "delivered" {
            self.0.lock().expect("sends lock").push(seconds * 1000.0);
        }
    }
}

/// The `instance` label's value in an Alertmanager group key (`{}:{alertname="…", instance="…"}`).
fn instance_of(group_key: &str) -> Option<&str> {
    let rest = &group_key[group_key.find("instance=\"")? + "instance=\"".len()..];
    rest.find('"').map(|end| &rest[..end])
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the benchmark.
pub async fn run(args: E2eBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.per_commit > 0, "--per-commit must be positive");
    if let Some(rate) = args.alerts_rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--alerts-rate must be a positive number of transitions per second, got {rate}"
        );
    }
    anyhow::ensure!(
        !args.alerts.0.is_empty() || !args.rules.rules.0.is_empty(),
        "nothing to run: both --alerts and --rules are empty"
    );
    println!(
        "# tocsin bench e2e: machine {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        super::bench::cpu_model()
    );
    println!(
        "# rerun: tocsin bench e2e --node-threads {} --alerts {} --per-commit {}{}{} {}",
        args.nodes.node_threads,
        args.alerts,
        args.per_commit,
        args.alerts_rate
            .map(|r| format!(" --alerts-rate {r}"))
            .unwrap_or_default(),
        if args.two_commit_claims {
            " --two-commit-claims"
        } else {
            ""
        },
        args.rules.rerun_flags()
    );
    let timeout = Duration::from_secs(args.timeout_s);
    if !args.alerts.0.is_empty() {
        println!(
            "# notifications: 3 store nodes (WAL + fsync; {}) and one notify loop in one \
             process, the webhook sink emulator on its own runtime of one thread",
            super::bench::nodes_desc(args.nodes)
        );
    }
    for n in &args.alerts.0 {
        one(
            *n,
            args.per_commit,
            args.alerts_rate,
            !args.two_commit_claims,
            args.nodes,
            timeout,
        )
        .await?;
    }
    super::bench_rules::run(&args.rules, args.nodes, timeout).await
}

async fn one(
    n: usize,
    per_commit: usize,
    rate: Option<f64>,
    claim_on_enqueue: bool,
    nodes: NodeArgs,
    timeout: Duration,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (cluster, leader, stages) =
        super::bench::start_cluster_observed(tmp.path().to_path_buf(), nodes).await;
    let client = cluster.client();
    let stop = CancellationToken::new();
    let sends = Arc::new(Sends::default());
    // The sink stands for a provider on another machine: it gets its own runtime, so its
    // requests are not queued behind the store's tasks (the cores are still shared).
    let sink_rt = super::bench_rules::Rt::new("bench-sink")?;
    let sink = {
        let stop = stop.clone();
        sink_rt
            .handle
            .spawn(async move { tocsin_chaos::webhook::WebhookSink::start_local(&stop).await })
            .await??
    };

    let layout = ShardLayout::default();
    let worker = super::bench::register_worker(&client).await?;
    let shards: Vec<(ShardId, Option<WorkerId>)> =
        layout.all().map(|s| (s, Some(worker.clone()))).collect();
    let (epoch, _) = client
        .propose(vec![Command::Assign {
            shards: shards.clone(),
        }])
        .await?;
    let config = format!(
        "route:\n  receiver: sink\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 5m\n  repeat_interval: 4h\nreceivers:\n- name: sink\n  webhook_configs:\n  - url: {}\n",
        sink.emulator().url("/bench")
    );
    client
        .propose(vec![Command::SetNotifyConfig { source: config }])
        .await?;

    tocsin_proto::tls::install_crypto_provider();
    let ctx = NotifyCtx {
        client: client.clone(),
        worker: worker.clone(),
        channels: Arc::new(Factory {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        }),
        retry: RetryPolicy::default(),
        claim_timeout: Duration::from_secs(15),
        external_url: "http://127.0.0.1:9101".into(),
        now_ms: crate::clock::wall_ms,
        limiter: None,
        observer: sends.clone(),
        claim_on_enqueue,
    };
    let (_tx, rx) = tokio::sync::watch::channel(Ownership {
        shards: shards.iter().map(|(s, _)| (*s, Epoch(epoch))).collect(),
        log_index: epoch,
        fenced: false,
    });
    let tracker = TaskTracker::new();
    tracker.spawn(notify::run(ctx, rx, stop.clone(), tracker.clone()));

    // The leader's watch stream shows when each alert's enqueue committed, which splits the
    // latency into the notify loop's part before the enqueue and the send's part after it.
    let enqueued: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let (from, _) = client.read(&Query::Stats, true).await?;
        let mut stream = cluster.client_of(leader).watch(from + 1).await?;
        let (enqueued, stop) = (enqueued.clone(), stop.clone());
        tracker.spawn(async move {
            loop {
                let item = tokio::select! {
                    () = stop.cancelled() => return,
                    item = stream.next() => item,
                };
                let Some(Ok((_, changes))) = item else { return };
                let seen = Instant::now();
                let mut map = enqueued.lock().expect("enqueued lock");
                for change in changes {
                    if let Command::Shard {
                        op:
                            ShardOp::Outbox {
                                key,
                                op: OutboxOp::EnqueueClaimed { .. } | OutboxOp::Enqueue { .. },
                            },
                        ..
                    } = change
                        && let Some(instance) = instance_of(&key.group_key)
                    {
                        map.entry(instance.to_string()).or_insert(seen);
                    }
                }
            }
        });
    }

    // Commit N firing alerts, `per_commit` per evaluation cycle, one group per commit.
    stages.start();
    let start = Instant::now();
    let mut committed_at: HashMap<String, f64> = HashMap::with_capacity(n);
    let now_ms = crate::clock::wall_ms();
    let mut k = 0usize;
    let mut commit = 0usize;
    while k < n {
        if let Some(rate) = rate {
            // Paced: the commit carrying transition k goes at k / rate.
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let group = GroupKey {
            namespace: "bench".into(),
            name: format!("g{commit}"),
        };
        let shard = layout.eval_shard(&group);
        let mut updates = Vec::new();
        for _ in 0..per_commit.min(n - k) {
            let labels = BTreeMap::from([
                ("alertname".to_string(), "BenchAlert".to_string()),
                ("instance".to_string(), format!("i-{k}")),
            ]);
            let fp = Fingerprint(tocsin_state::model::stable_hash(&[&format!("i-{k}")]));
            updates.push(AlertUpdate::Upsert(Arc::new(AlertInstance {
                fingerprint: fp,
                group: group.clone(),
                rule: "BenchAlert".into(),
                labels,
                annotations: BTreeMap::new(),
                state: AlertState::Firing,
                active_at_ms: now_ms,
                fired_at_ms: Some(now_ms),
                resolved_at_ms: None,
                keep_firing_since_ms: None,
                value: 1.0,
            })));
            k += 1;
        }
        let keys: Vec<String> = updates
            .iter()
            .filter_map(|u| match u {
                AlertUpdate::Upsert(a) => a.labels.get("instance").cloned(),
                AlertUpdate::Remove(_) => None,
            })
            .collect();
        let (_, results) = client
            .propose(vec![Command::Shard {
                shard,
                epoch: Epoch(epoch),
                op: ShardOp::EvalCycle {
                    group,
                    eval_ms: now_ms,
                    updates,
                },
            }])
            .await?;
        anyhow::ensure!(
            results.iter().all(Result::is_ok),
            "an evaluation commit was refused: {results:?}"
        );
        let t = start.elapsed().as_secs_f64();
        for key in keys {
            committed_at.insert(key, t);
        }
        commit += 1;
    }
    let committed_s = start.elapsed().as_secs_f64();
    let start_wall_ms = crate::clock::wall_ms() as f64 - start.elapsed().as_secs_f64() * 1000.0;

    // Wait for every notification, reporting progress.
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    let arrivals = loop {
        // Counted, not copied: a copy of every recorded request each poll would load the
        // cores the pipeline is being measured on.
        let arrived = sink.emulator().request_count();
        if arrived >= n {
            break sink.emulator().requests();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {arrived} of {n} notifications arrived within {timeout:?}"
        );
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  ... {arrived} of {n} notifications arrived");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut latencies = Vec::with_capacity(n);
    let (mut to_enqueue, mut after_enqueue) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let enqueued = std::mem::take(&mut *enqueued.lock().expect("enqueued lock"));
    let mut last_arrival = 0f64;
    for r in &arrivals {
        let body: serde_json::Value = serde_json::from_str(&r.body)?;
        let Some(instance) = body["alerts"][0]["labels"]["instance"].as_str() else {
            continue;
        };
        let arrived = (r.time_ms as f64 - start_wall_ms) / 1000.0;
        last_arrival = last_arrival.max(arrived);
        if let Some(c) = committed_at.get(instance) {
            latencies.push((arrived - c) * 1000.0);
            if let Some(e) = enqueued.get(instance) {
                let e = e.saturating_duration_since(start).as_secs_f64();
                to_enqueue.push((e - c) * 1000.0);
                after_enqueue.push((arrived - e) * 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let distinct: std::collections::BTreeSet<&str> = arrivals
        .iter()
        .map(|r| r.body.as_str())
        .collect::<std::collections::BTreeSet<_>>();
    println!("alerts_{n}_notifications: {} delivered", arrivals.len());
    println!(
        "alerts_{n}_distinct: {} (duplicates: {})",
        distinct.len(),
        arrivals.len() - distinct.len()
    );
    println!(
        "alerts_{n}_throughput: {:.0} notifications/s",
        n as f64 / last_arrival.max(1e-3)
    );
    println!(
        "alerts_{n}_commit_rate: {:.0} firing transitions/s (the producer{}; throughput cannot exceed it)",
        n as f64 / committed_s.max(1e-3),
        rate.map(|r| format!(", paced at {r}/s"))
            .unwrap_or_default()
    );
    println!(
        "alerts_{n}_latency_p50: {:.1} ms (firing committed -> sink arrival)",
        pct(&latencies, 0.5)
    );
    println!("alerts_{n}_latency_p99: {:.1} ms", pct(&latencies, 0.99));
    to_enqueue.sort_by(f64::total_cmp);
    after_enqueue.sort_by(f64::total_cmp);
    println!(
        "alerts_{n}_to_enqueue_p50: {:.1} ms (firing committed -> its enqueue committed, seen on \
         the leader's watch; {} alerts)",
        pct(&to_enqueue, 0.5),
        to_enqueue.len()
    );
    println!(
        "alerts_{n}_to_enqueue_p99: {:.1} ms",
        pct(&to_enqueue, 0.99)
    );
    println!(
        "alerts_{n}_enqueue_to_arrival_p50: {:.1} ms (the enqueue committed -> sink arrival)",
        pct(&after_enqueue, 0.5)
    );
    println!(
        "alerts_{n}_enqueue_to_arrival_p99: {:.1} ms",
        pct(&after_enqueue, 0.99)
    );
    let mut sent = std::mem::take(&mut *sends.0.lock().expect("sends lock"));
    sent.sort_by(f64::total_cmp);
    println!(
        "alerts_{n}_send_p50: {:.1} ms (one notification's HTTP send to the sink, {} sends)",
        pct(&sent, 0.5),
        sent.len()
    );
    println!("alerts_{n}_send_p99: {:.1} ms", pct(&sent, 0.99));
    stages.print(&format!("alerts_{n}_store"), leader);
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    cluster.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::instance_of;

    #[test]
    fn the_instance_is_read_from_a_group_key() {
        assert_eq!(
            instance_of(r#"{}:{alertname="BenchAlert", instance="i-42"}"#),
            Some("i-42")
        );
        assert_eq!(instance_of(r#"{}:{alertname="BenchAlert"}"#), None);
    }
}
