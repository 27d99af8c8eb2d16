//! `tocsin bench ingest`: the flags, the header naming the machine and the rerun command, and
//! the call into [`tocsin_alerter::bench_ingest`], where the benchmark lives.

use std::path::PathBuf;

use clap::Args;
use tocsin_alerter::bench_ingest::{IngestBenchOptions, run as run_bench};

/// Where Debian's `prometheus` package puts the binary.
const DEFAULT_PROMETHEUS: &str = "/usr/bin/prometheus";

/// Flags of `tocsin bench ingest`.
#[derive(Args, Debug)]
pub struct IngestBenchArgs {
    /// Series generated (remote-written to both stores, and exposed to both scrapers).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per series, 15 s apart, ending now (25 to 240).
    #[arg(long, default_value_t = 120)]
    samples: usize,
    /// Series per remote-write request (each with all its samples).
    #[arg(long, default_value_t = 500)]
    series_per_request: usize,
    /// Remote-write requests in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Timed repetitions per query expression (the median is reported).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Scrapes measured per store (after a first, untimed one).
    #[arg(long, default_value_t = 5)]
    scrapes: usize,
    /// The `prometheus` binary.
    #[arg(long, default_value = DEFAULT_PROMETHEUS)]
    prometheus: PathBuf,
    /// Scratch directory (default: a fresh temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the benchmark and prints its figures; exit code 0 on success.
pub async fn run(args: IngestBenchArgs) -> i32 {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tocsin bench ingest: {e}");
            return 1;
        }
    };
    let mut opts =
        IngestBenchOptions::new(args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf()));
    opts.series = args.series;
    opts.samples_per_series = args.samples;
    opts.series_per_request = args.series_per_request;
    opts.in_flight = args.in_flight;
    opts.iterations = args.iterations;
    opts.scrapes = args.scrapes;
    opts.prometheus = args.prometheus.clone();
    println!(
        "# tocsin bench ingest: machine {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        super::bench::cpu_model()
    );
    println!(
        "# prometheus: {}",
        prometheus_version(&args.prometheus).unwrap_or_else(|| "version unknown".into())
    );
    let prometheus_flag = if args.prometheus == std::path::Path::new(DEFAULT_PROMETHEUS) {
        String::new()
    } else {
        format!(" --prometheus {}", args.prometheus.display())
    };
    println!(
        "# rerun: tocsin bench ingest --series {} --samples {} --series-per-request {} \
         --in-flight {} --iterations {} --scrapes {}{prometheus_flag}",
        args.series,
        args.samples,
        args.series_per_request,
        args.in_flight,
        args.iterations,
        args.scrapes
    );
    match run_bench(opts).await {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("tocsin bench ingest: {e}");
            1
        }
    }
}

/// The first line of `prometheus --version`, if it runs.
fn prometheus_version(binary: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().next().map(|l| l.trim().to_string())
}
