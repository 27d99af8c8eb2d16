//! `tocsin`: the node, worker, dev cluster, operator CLI and benchmarks in one binary.
//!
//! Layout:
//! - [`balance`]: the balancer's async adapter: worker sessions and the leader loop.
//! - [`clock`]: the one wall-clock read.
//! - [`config`]: node configuration (TOML file + flags → validated settings).
//! - [`cmd`]: one module per subcommand (`node`, `worker`, `dev`, `rules`, `alerts`, `status`, `bench`).
//! - [`http`]: the node's HTTP API (health, readiness, metrics, status).
//! - [`metrics`]: the Prometheus registry and scrape-time collectors.

mod balance;
mod clock;
mod cmd;
mod config;
mod http;
mod metrics;
mod worker_metrics;

use clap::{Parser, Subcommand};

/// Exit code for invalid configuration or usage.
const EXIT_USAGE: i32 = 2;
/// Exit code when the Raft core failed fatally (a supervisor should restart the node).
pub(crate) const EXIT_FATAL: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "tocsin",
    version,
    about = "Zone-aware, highly available alerting"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `tocsin=debug,openraft=warn`.
    #[arg(
        long,
        global = true,
        env = "TOCSIN_LOG",
        default_value = "info,openraft=warn"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: one Raft replica of the state store plus its HTTP API.
    Node(cmd::node::NodeArgs),
    /// Run a stateless worker that evaluates and notifies for the shards it is assigned.
    Worker(cmd::worker::WorkerArgs),
    /// Run a whole cluster on this machine (one node per zone) for a first look.
    Dev(cmd::dev::DevArgs),
    /// Work with Prometheus rule files (`check`, `apply`, `list`).
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
    /// List the cluster's alert instances (pending, firing, resolved).
    Alerts(cmd::alerts::AlertsArgs),
    /// The notification config (`alertmanager.yml`): `check`, `apply`, `show`, `status`.
    #[command(subcommand)]
    Notify(cmd::notify::NotifyCommand),
    /// Silences: `add`, `list`, `expire`.
    #[command(subcommand)]
    Silences(cmd::notify::SilencesCommand),
    /// Acknowledge a notification group: stops its repeats until it escalates.
    Ack(cmd::notify::AckArgs),
    /// Show a node's view of the cluster.
    Status(cmd::status::StatusArgs),
    /// Benchmarks (they print `name: value unit` lines).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("tocsin: invalid --log filter {:?}: {e}", cli.log);
        exit(EXIT_USAGE)
    });
    // Colour only on a terminal: logs redirected to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    tocsin_proto::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tocsin: cannot start the async runtime: {e}");
            exit(1)
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => cmd::node::run(args).await,
            Command::Dev(args) => cmd::dev::run(args).await,
            Command::Worker(args) => cmd::worker::run(args).await,
            Command::Rules(c) => cmd::rules::run(c).await,
            Command::Alerts(args) => cmd::alerts::run(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Notify(c) => cmd::notify::run_notify(c).await,
            Command::Silences(c) => cmd::notify::run_silences(c).await,
            Command::Ack(a) => cmd::notify::run_ack(a).await,
            Command::Bench(b) => cmd::bench::run(b).await,
        }
    });
    // Do not wait for stray blocking tasks (e.g. a stuck disk) beyond a short grace.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit(code)
}

#[allow(clippy::disallowed_methods)] // main alone decides the exit code
fn exit(code: i32) -> ! {
    std::process::exit(code)
}
