//! `tocsin-chaos`: the provider emulators as a process.
//!
//! `tocsin-chaos emulators --dir DIR` starts every emulator on free loopback ports, writes
//! `DIR/emulators.json`, and runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin_chaos::set::EmulatorSet;

#[derive(Debug, Parser)]
#[command(
    name = "tocsin-chaos",
    about = "Tocsin's chaos tooling: provider emulators"
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
}

#[allow(clippy::disallowed_methods)] // only main decides the exit code
fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: starting the runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Emulators { dir } => emulators(dir).await,
    }
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
