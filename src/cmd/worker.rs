//! `tocsin worker`: a stateless worker. It registers with the cluster through its balancer
//! session, heartbeats, and acts for the shards the leader assigns it; it fences itself when
//! it loses the leader for longer than its lease.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tocsin_alerter::datasource::{RawDatasourceConfig, RawPrometheusConfig};
use tocsin_alerter::eval::EvalOptions;
use tocsin_alerter::notify::config::Config;
use tocsin_alerter::notify::deliver::build::{self, ChannelOptions};
use tocsin_alerter::notify::deliver::channel::Channel;
use tocsin_alerter::notify::deliver::retry::RetryPolicy;
use tocsin_alerter::notify::ratelimit::{RateLimiter, RedisLimiterConfig};
use tocsin_alerter::worker::evaluator::DatasourceEvaluator;
use tocsin_alerter::worker::group::GroupCtx;
use tocsin_alerter::worker::notify::{self, ChannelFactory, NotifyCtx};
use tocsin_alerter::worker::runner;
use tocsin_alerter::worker::session::{self, SessionConfig, WorkStats};
use tocsin_balancer::BalancerConfig;
use tocsin_proto::ids::{WorkerId, ZoneId};
use tocsin_proto::worker::{Hello, MAX_CAPACITY};
use tocsin_state::client::StoreClient;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::EXIT_USAGE;

/// Flags of `tocsin worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The worker's availability zone.
    #[arg(long)]
    zone: String,
    /// gRPC addresses of any nodes, comma-separated (the worker finds the leader).
    #[arg(long, value_delimiter = ',', required = true)]
    join: Vec<String>,
    /// Stable worker id [default: w-ZONE-PID].
    #[arg(long)]
    id: Option<String>,
    /// Placement weight relative to other workers (1..=1024).
    #[arg(long, default_value_t = 1)]
    capacity: u32,
    /// Timing profile matching the nodes': `production` or `test`.
    #[arg(long, default_value = "production")]
    profile: String,
    /// `/proc/stat`-format file to sample CPU steal time from.
    #[arg(long, default_value = "/proc/stat")]
    stat_file: PathBuf,
    /// Address the balancer may probe this worker at (informational).
    #[arg(long, default_value = "")]
    advertise: String,
    /// Prometheus-compatible query API to evaluate rules against (a Prometheus, Mimir, Thanos
    /// or VictoriaMetrics URL, or a Tocsin node's embedded store: `http://NODE_HTTP`).
    /// Without it the worker holds its shards but evaluates nothing.
    #[arg(long, conflicts_with = "datasource_config")]
    datasource: Option<String>,
    /// TOML file describing the datasource in full, instead of `--datasource`: `url`, and
    /// optionally `basic_auth = { username, password }` or `bearer_token`, `headers`,
    /// `query_offset_ms`, `connect_timeout_ms`, `response_bytes_max`, and for an https URL
    /// `[tls]` with `ca_file`, `cert_file` + `key_file` (mutual TLS), `insecure_skip_verify`.
    #[arg(long)]
    datasource_config: Option<PathBuf>,
    /// Deadline of one datasource query, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    query_timeout_ms: u64,
    /// Most datasource queries in flight from this worker.
    #[arg(long, default_value_t = 16)]
    max_concurrent_queries: usize,
    /// Base URL of Tocsin's HTTP API for links in notifications.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    external_url: String,
    /// How long a notification claimed by another (possibly dead) worker is trusted before a
    /// channel without provider-side dedup (SMS, Slack) sends it again, milliseconds.
    #[arg(long, default_value_t = 15_000)]
    claim_timeout_ms: u64,
    /// Redis (`HOST:PORT` or `redis://...`) that workers share per-endpoint rate limits
    /// through; without it (or while it is down) each worker limits to its share locally.
    #[arg(long)]
    redis: Option<String>,
    /// Serve `/metrics` (evaluations, deliveries, owned shards) and `/healthz` here, e.g.
    /// `127.0.0.1:9201`.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Deadline of one request to a notification provider, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    provider_timeout_ms: u64,
}

/// Builds channels from the replicated config with the process's HTTP client.
#[derive(Debug)]
struct ConfigChannels {
    http: reqwest::Client,
    opts: ChannelOptions,
}

impl ChannelFactory for ConfigChannels {
    fn build(&self, config: &Config, receiver: &str) -> Result<Vec<Arc<dyn Channel>>, String> {
        build::channels(config, receiver, &self.http, &self.opts)
            .map(|v| v.into_iter().map(Arc::from).collect())
            .map_err(|e| e.to_string())
    }
}

/// Reads a `--datasource-config` file: a [`RawPrometheusConfig`] in TOML.
fn read_datasource_config(path: &std::path::Path) -> Result<RawPrometheusConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let raw: RawPrometheusConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // Checked here so errors name the field as written in the file.
    raw.validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(raw)
}

/// Runs the worker until SIGTERM/SIGINT.
pub async fn run(args: WorkerArgs) -> i32 {
    let zone = match ZoneId::new(args.zone.clone()) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("tocsin: invalid --zone: {e}");
            return EXIT_USAGE;
        }
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("w-{zone}-{}", std::process::id()));
    let worker = match WorkerId::new(id) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tocsin: invalid --id: {e}");
            return EXIT_USAGE;
        }
    };
    if args.capacity == 0 || args.capacity > MAX_CAPACITY {
        eprintln!(
            "tocsin: invalid --capacity {}: must be 1..={MAX_CAPACITY}",
            args.capacity
        );
        return EXIT_USAGE;
    }
    for seed in &args.join {
        if seed.parse::<std::net::SocketAddr>().is_err() && !seed.contains(':') {
            eprintln!("tocsin: invalid --join address {seed:?}: expected HOST:PORT");
            return EXIT_USAGE;
        }
    }
    let balancer = match args.profile.as_str() {
        "production" => BalancerConfig::production(),
        "test" => BalancerConfig::test(),
        other => {
            eprintln!("tocsin: invalid --profile {other:?}: use \"production\" or \"test\"");
            return EXIT_USAGE;
        }
    };
    let heartbeat = Duration::from_millis(balancer.liveness.heartbeat_interval_ms as u64);
    // Fence a heartbeat before the balancer would declare us dead, so the old and the new
    // owner rarely act at once (safety does not depend on it: the store fences by epoch).
    let lease = Duration::from_millis(balancer.liveness.lease_ms as u64)
        .saturating_sub(heartbeat)
        .max(heartbeat);
    let client = match StoreClient::new(args.join.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tocsin: invalid --join: {e}");
            return EXIT_USAGE;
        }
    };
    let config = SessionConfig {
        seeds: args.join.clone(),
        hello: Hello {
            worker: worker.clone(),
            zone: zone.clone(),
            capacity: args.capacity,
            addr: args.advertise.clone(),
        },
        heartbeat,
        lease,
        stat_path: Some(args.stat_file.clone()),
        store: Some(client.clone()),
    };
    let prometheus = match (&args.datasource, &args.datasource_config) {
        (Some(url), _) => Some(RawPrometheusConfig::with_url(url)),
        (None, Some(path)) => match read_datasource_config(path) {
            Ok(raw) => Some(raw),
            Err(e) => {
                eprintln!("tocsin: invalid --datasource-config: {e}");
                return EXIT_USAGE;
            }
        },
        (None, None) => None,
    };
    let datasource = match prometheus {
        None => None,
        Some(prometheus) => {
            let raw = RawDatasourceConfig {
                name: "default".into(),
                prometheus: Some(prometheus),
                embedded: false,
                max_concurrent_queries: args.max_concurrent_queries,
                query_timeout_ms_max: args.query_timeout_ms,
                cache: None,
            };
            match raw.validate().and_then(|d| d.build(None)) {
                Ok(gate) => Some(gate),
                Err(e) => {
                    let flag = if args.datasource.is_some() {
                        "--datasource"
                    } else {
                        "--datasource-config"
                    };
                    eprintln!("tocsin: invalid {flag}: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let stats = Arc::new(WorkStats::default());
    let mut ownership = session::start(config, stats.clone(), cancel.clone(), &tracker);
    // Every provider request names its sender, so a provider's (or an emulator's) request
    // log tells which worker sent what.
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_millis(args.provider_timeout_ms))
        .user_agent(user_agent(&worker.to_string()))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tocsin: cannot build the HTTP client: {e}");
            return crate::EXIT_FATAL;
        }
    };
    // Without Redis every worker takes an equal share; three zones with one worker each is the
    // smallest production layout.
    let limiter = match RateLimiter::new(args.redis.clone().map(RedisLimiterConfig::new), 3) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tocsin: invalid --redis: {e}");
            return EXIT_USAGE;
        }
    };
    let metrics = crate::worker_metrics::WorkerMetrics::new();
    if let Some(addr) = args.metrics_listen {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tocsin: cannot listen on --metrics-listen {addr}: {e}");
                return EXIT_USAGE;
            }
        };
        // The bound address, not the requested one: `--metrics-listen=127.0.0.1:0` lets the OS
        // pick the port and the log says which.
        let addr = listener.local_addr().unwrap_or(addr);
        let app = metrics.router();
        let stop = cancel.clone();
        tracker.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        info!(%addr, "worker metrics listening");
    }
    let notify = NotifyCtx {
        client: client.clone(),
        worker: worker.clone(),
        channels: Arc::new(ConfigChannels {
            http,
            opts: ChannelOptions {
                external_url: args.external_url.clone(),
                request_timeout: Duration::from_millis(args.provider_timeout_ms),
                ..ChannelOptions::default()
            },
        }),
        retry: RetryPolicy::default(),
        claim_timeout: Duration::from_millis(args.claim_timeout_ms),
        external_url: args.external_url.clone(),
        now_ms: crate::clock::wall_ms,
        limiter: Some(limiter),
        observer: metrics.clone(),
        claim_on_enqueue: true,
    };
    tracker.spawn(notify::run(
        notify,
        ownership.clone(),
        cancel.clone(),
        tracker.clone(),
    ));
    match datasource {
        Some(ds) => {
            let evaluator = DatasourceEvaluator::new(
                ds,
                EvalOptions::default(),
                Duration::from_millis(args.query_timeout_ms),
                stats.clone(),
            );
            let ctx = GroupCtx {
                client,
                evaluator: Arc::new(evaluator),
                stats,
                now_ms: crate::clock::wall_ms,
                observer: metrics.clone(),
            };
            tracker.spawn(runner::run(
                ctx,
                ownership.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
        }
        None => warn!("no --datasource: this worker holds shards but evaluates nothing"),
    }
    info!(worker = %worker, zone = %zone, "worker started");
    loop {
        tokio::select! {
            () = crate::cmd::node::shutdown_signal() => break,
            changed = ownership.changed() => {
                if changed.is_err() {
                    break;
                }
                let o = ownership.borrow().clone();
                let eval = o.shards.keys().filter(|s| s.kind == tocsin_proto::ids::ShardKind::Eval).count();
                metrics.set_owned(eval, o.shards.len() - eval);
                info!(shards = o.shards.len(), fenced = o.fenced, log_index = o.log_index, "ownership");
            }
        }
    }
    info!("shutting down");
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    0
}

/// `User-Agent` of a worker's provider requests: `Tocsin/VERSION (worker ID)`.
pub fn user_agent(worker: &str) -> String {
    format!("Tocsin/{} (worker {worker})", env!("CARGO_PKG_VERSION"))
}
