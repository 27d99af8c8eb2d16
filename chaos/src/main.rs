//! `tocsin-chaos`: the provider emulators as a process, and the chaos harness.
//!
//! - `tocsin-chaos emulators --dir DIR` starts every emulator on free loopback ports, writes
//!   `DIR/emulators.json`, and runs until Ctrl-C or SIGTERM.
//! - `tocsin-chaos run --scenario S2 --seed 42` (or `--all --seeds N`) runs scenarios of
//!   SCENARIOS.md against a real cluster of the `tocsin` binary (`--tocsin PATH`, else the
//!   one next to this executable), prints a table and writes one `report.json` per run.
//!   When a selected scenario cuts or slows links between zones (S4, S5, S6, S8), the process first enters a
//!   private network namespace (root, iproute2 and nftables needed), before the runtime
//!   starts any thread.
//! - `tocsin-chaos kill-zone b --cluster DIR/cluster.json` SIGKILLs every node and worker of
//!   zone b of a cluster started by `tocsin dev` (or by the harness).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin_chaos::harness::netns::{self, Hub};
use tocsin_chaos::harness::{self, RunConfig, ScenarioId};
use tocsin_chaos::set::EmulatorSet;

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-chaos",
    about = "Tocsin's chaos tooling: provider emulators, the chaos harness, zone kills"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every provider emulator on loopback and write DIR/emulators.json.
    Emulators {
        /// Directory for emulators.json (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run chaos scenarios against a real cluster and report the figures.
    Run(RunArgs),
    /// SIGKILL every node and worker of one zone listed in a cluster.json.
    KillZone {
        /// The zone (`a`, `b`, ...).
        zone: String,
        /// The cluster file written by `tocsin dev` (DIR/cluster.json).
        #[arg(long)]
        cluster: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario to run (S1 to S13).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    scenario: Option<String>,
    /// Run every implemented scenario.
    #[arg(long)]
    all: bool,
    /// The seed (topology, workload, fault times); random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Run each scenario with this many seeds (SEED, SEED+1, ...).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Length of the scripted workload, seconds.
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// The `tocsin` binary (default: next to this executable).
    #[arg(long)]
    tocsin: Option<PathBuf>,
    /// Directory for the runs' data, logs and reports (default: a fresh one under the
    /// system's temporary directory, kept).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to write all reports as one JSON array.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[allow(clippy::disallowed_methods)] // only main decides the exit code
fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    // Namespaces are per thread: the hub must be entered before the runtime's threads exist.
    let hub = match enter_hub_if_needed(&cli) {
        Ok(hub) => hub,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: starting the runtime: {err}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(cli, hub)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}

/// The private hub namespace, when a selected scenario needs one.
fn enter_hub_if_needed(cli: &Cli) -> anyhow::Result<Option<Arc<Hub>>> {
    let Command::Run(args) = &cli.command else {
        return Ok(None);
    };
    if !selected(args)?.iter().any(|s| s.needs_private_network()) {
        return Ok(None);
    }
    let hub = netns::enter_private_hub().context("entering a private network namespace")?;
    Ok(Some(Arc::new(hub)))
}

/// The scenarios `args` select.
fn selected(args: &RunArgs) -> anyhow::Result<Vec<ScenarioId>> {
    Ok(match &args.scenario {
        Some(s) => vec![s.parse()?],
        None => ScenarioId::ALL.to_vec(),
    })
}

/// Ok(false): the command ran but a scenario failed (or a kill did not land).
async fn run(cli: Cli, hub: Option<Arc<Hub>>) -> anyhow::Result<bool> {
    match cli.command {
        Command::Emulators { dir } => emulators(dir).await.map(|()| true),
        Command::Run(args) => run_scenarios(args, hub).await,
        Command::KillZone { zone, cluster } => kill_zone(&zone, &cluster),
    }
}

fn kill_zone(zone: &str, cluster: &std::path::Path) -> anyhow::Result<bool> {
    let outcomes = harness::cluster_file::kill_zone(cluster, zone)?;
    let mut all = true;
    for o in &outcomes {
        match &o.error {
            None => println!(
                "SIGKILL {} {} (zone {}, pid {})",
                o.entry.role, o.entry.id, zone, o.entry.pid
            ),
            Some(e) => {
                all = false;
                println!(
                    "could not kill {} {} (pid {}): {e}",
                    o.entry.role, o.entry.id, o.entry.pid
                );
            }
        }
    }
    Ok(all)
}

async fn run_scenarios(args: RunArgs, hub: Option<Arc<Hub>>) -> anyhow::Result<bool> {
    let scenarios = selected(&args)?;
    let binary = match args.tocsin {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("tocsin"),
    };
    anyhow::ensure!(
        binary.exists(),
        "no tocsin binary at {} (build it, or pass --tocsin PATH)",
        binary.display()
    );
    let base = match args.seed {
        Some(s) => s,
        None => rand::random::<u32>().into(),
    };
    // Runs are kept (data dirs, logs, report.json, timeline.svg) for the post-mortem.
    let root = match args.dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("tocsin-chaos-")
            .tempdir()?
            .keep(),
    };
    println!("runs in {}", root.display());
    let mut reports = Vec::new();
    for scenario in scenarios {
        for k in 0..args.seeds.max(1) {
            let seed = base.wrapping_add(k);
            let cfg = RunConfig {
                scenario,
                seed,
                binary: binary.clone(),
                dir: root.join(format!("{}-{seed}", scenario.as_str())),
                duration: std::time::Duration::from_secs(args.duration_s),
                hub: hub.clone(),
            };
            println!(
                "running {} seed {seed}   replay: {}",
                scenario.as_str(),
                cfg.replay()
            );
            let report = harness::run(&cfg).await?;
            println!("{}", harness::report::table(std::slice::from_ref(&report)));
            reports.push(report);
        }
    }
    println!("{}", harness::report::table(&reports));
    print!("{}", harness::report::summary(&reports));
    if let Some(path) = args.report {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(reports.iter().all(|r| r.pass))
}

async fn emulators(dir: PathBuf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let set = EmulatorSet::start_local(&shutdown)
        .await
        .context("starting the emulators")?;
    let path = set.write_manifest(&dir)?;
    for entry in set.manifest() {
        match entry.smtp {
            Some(smtp) => println!(
                "{:<10} http://{}  smtp {}",
                entry.kind.as_str(),
                entry.http,
                smtp
            ),
            None => println!("{:<10} http://{}", entry.kind.as_str(), entry.http),
        }
    }
    println!("wrote {}", path.display());
    wait_for_signal().await?;
    tracing::info!("stopping the emulators");
    shutdown.cancel();
    set.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
