//! The ingest benchmark behind `tocsin bench ingest` (issue #4): how fast the embedded store
//! takes samples in (remote write and scrape), how many bytes a sample costs it, and how fast
//! its HTTP query API answers, each beside a real Prometheus fed the same data in the same
//! run.
//!
//! A subcommand of its own rather than more sections of `tocsin bench eval`: that benchmark
//! backfills data at a fixed past time into Prometheus with promtool and times our engine
//! in-process, while this one needs data at *recent* timestamps (Prometheus's remote-write
//! receiver refuses samples older than its head's newest minus one hour), a Prometheus with the
//! remote-write receiver, admin API and reload endpoint enabled, and our store served over
//! HTTP as a node serves it. Sharing a run would make both slower and their rerun lines
//! ambiguous.
//!
//! What one run does, in order (each phase bounded by deadlines):
//! 1. `load::Workload`: `series` series of [`bench_eval`]'s shapes (request counters and
//!    latency histogram buckets) × `samples_per_series` samples at 15 s, ending now, encoded
//!    as real remote-write requests (protobuf + snappy, [`remote_write::encode`]) shaped as
//!    Prometheus's sender shapes them: one sample of each of `series_per_request` series per
//!    request, step after step.
//! 2. In process, on one thread, timed by that thread's CPU clock (`ours::in_process`):
//!    the decoded requests through [`Ingest::append_series`] (the append path alone, each
//!    body decoded outside the timed spans), then every body through
//!    [`EmbeddedStore::remote_write`] (decode + append), both into memory. These are the
//!    "samples/s on one core" figures.
//! 3. Over HTTP (`load::post_all`, `in_flight` shards each sending one request at a time,
//!    as Prometheus's queue manager does): the bodies to our store's `POST /api/v1/write`,
//!    served on loopback on a runtime of its own with the on-disk log a node has by default
//!    (`ours::Server`), then to Prometheus's receiver (which has its WAL). Wall-clock
//!    samples/s for each, and samples per CPU-second of the receiving side (our server's
//!    threads and log writer; every thread of Prometheus).
//! 4. Bytes per sample: ours from the store's accounting (encoded chunk bytes / samples held);
//!    Prometheus's from a snapshot of its head (the XOR chunk data bytes of the block it
//!    writes / its samples, `prometheus::Prometheus::chunk_bytes`). Its
//!    `prometheus_tsdb_head_chunks_storage_size_bytes` is not used: it is the size of the
//!    memory-mapped *full* chunks on disk and misses the open head chunks, i.e. all of a
//!    120-sample series.
//! 5. Query latency (`query::compare`): the same expressions at the same timestamp through
//!    both HTTP APIs, alternately, one untimed warm-up each; medians and the ratio. Beside
//!    them, ours through the store's in-process datasource (no HTTP, no JSON). All must
//!    return the same number of series, or the run fails.
//! 6. Scrape (`scrape`): an in-process exporter serves `series` series as text exposition;
//!    our scrape loop ([`EmbeddedStore::spawn_scrapers`], a node's) and then Prometheus scrape
//!    it every second, one after the other so they do not compete for the cores; each
//!    store's own `scrape_duration_seconds` of the first `scrapes` full scrapes after the
//!    first (which creates the series), median. Prometheus's figure covers fetch, parse and
//!    buffering the samples in its appender (the commit that appends them to chunks and
//!    writes its WAL comes after it); ours covers fetch and parse only. So the bench also
//!    drives our loop's steps itself (fetch, [`TargetState::on_success`],
//!    [`Ingest::append_samples`] into memory) and times the whole cycle: that figure, which
//!    does more than Prometheus's, is the one compared.
//!
//! The caller provides the working directory and the Prometheus binary (no environment is
//! read). Output: `name: value unit` lines.
//!
//! [`bench_eval`]: crate::bench_eval
//! [`remote_write::encode`]: crate::datasource::embedded::remote_write::encode
//! [`Ingest::append_series`]: crate::datasource::embedded::Ingest::append_series
//! [`Ingest::append_samples`]: crate::datasource::embedded::Ingest::append_samples
//! [`EmbeddedStore::remote_write`]: crate::datasource::embedded::EmbeddedStore::remote_write
//! [`EmbeddedStore::spawn_scrapers`]: crate::datasource::embedded::EmbeddedStore::spawn_scrapers
//! [`TargetState::on_success`]: crate::datasource::embedded::scrape::TargetState::on_success

mod cpu;
mod load;
mod ours;
mod prometheus;
mod query;
mod scrape;

use std::path::PathBuf;
use std::time::Duration;

use crate::bench_eval::{line, ratio};
use crate::datasource::embedded::now_ms;

/// Most series one run may generate (memory of both stores and of the request bodies).
pub const MAX_SERIES: usize = 1_000_000;
/// Fewest samples per series: `rate(…[5m])` needs more than five minutes of 15 s samples.
pub const MIN_SAMPLES_PER_SERIES: usize = 25;
/// Most samples per series: two hours at 15 s. Prometheus compacts its head once it spans
/// 1.5 × its 2 h block range; staying within one range keeps compaction out of the measured
/// ingest.
pub const MAX_SAMPLES_PER_SERIES: usize = 480;
/// Most samples one run may generate: every request body is held in memory.
pub const MAX_SAMPLES: usize = 10_000_000;
/// Most series in one request (one sample each): keeps a body well under the store's 16 MiB
/// cap.
pub const MAX_SERIES_PER_REQUEST: usize = 100_000;
/// Most requests in flight at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// Most timed repetitions per query expression.
pub const MAX_ITERATIONS: usize = 1_000;
/// Most scrapes measured per store.
pub const MAX_SCRAPES: usize = 50;
/// Spacing of the generated samples (ms), a typical scrape interval.
const INTERVAL_MS: i64 = 15_000;
/// Deadline of one HTTP exchange (a request body, a query, a snapshot).
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    /// Series generated.
    pub series: usize,
    /// Samples per series, 15 s apart, ending now.
    pub samples_per_series: usize,
    /// Series per remote-write request, one sample each (Prometheus 2.x sends at most 500
    /// samples per request by default).
    pub series_per_request: usize,
    /// Remote-write shards, each with one request in flight.
    pub in_flight: usize,
    /// Timed repetitions per query expression (the median is reported).
    pub iterations: usize,
    /// Scrapes measured per store (after a first, untimed one).
    pub scrapes: usize,
    /// The `prometheus` binary.
    pub prometheus: PathBuf,
    /// Scratch directory: Prometheus's TSDB and config, our store's on-disk log.
    pub work_dir: PathBuf,
}

impl IngestBenchOptions {
    /// 10k series × 120 samples (1.2M samples, 30 minutes), 500 series per request, 4 shards,
    /// 20 query repetitions, 5 scrapes, against Debian's Prometheus.
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            series: 10_000,
            samples_per_series: 120,
            series_per_request: 500,
            in_flight: 4,
            iterations: 20,
            scrapes: 5,
            prometheus: PathBuf::from("/usr/bin/prometheus"),
            work_dir,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.series == 0 || self.series > MAX_SERIES {
            return Err(format!("series must be within 1..={MAX_SERIES}"));
        }
        if !(MIN_SAMPLES_PER_SERIES..=MAX_SAMPLES_PER_SERIES).contains(&self.samples_per_series) {
            return Err(format!(
                "samples_per_series must be within {MIN_SAMPLES_PER_SERIES}..={MAX_SAMPLES_PER_SERIES} \
                 (more than 5 minutes for rate(…[5m]), at most one 2 h Prometheus block)"
            ));
        }
        if self.series * self.samples_per_series > MAX_SAMPLES {
            return Err(format!(
                "series × samples_per_series must be at most {MAX_SAMPLES}"
            ));
        }
        if self.series_per_request == 0 || self.series_per_request > MAX_SERIES_PER_REQUEST {
            return Err(format!(
                "series_per_request must be within 1..={MAX_SERIES_PER_REQUEST}"
            ));
        }
        if self.in_flight == 0 || self.in_flight > MAX_IN_FLIGHT {
            return Err(format!("in_flight must be within 1..={MAX_IN_FLIGHT}"));
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!("iterations must be within 1..={MAX_ITERATIONS}"));
        }
        if self.scrapes == 0 || self.scrapes > MAX_SCRAPES {
            return Err(format!("scrapes must be within 1..={MAX_SCRAPES}"));
        }
        if !self.prometheus.exists() {
            return Err(format!(
                "prometheus not found at {}: apt-get install prometheus",
                self.prometheus.display()
            ));
        }
        Ok(())
    }
}

/// Runs the benchmark; returns `name: value unit` lines. Call it on a multi-threaded tokio
/// runtime: our store is served on a runtime of its own, the clients run on the caller's.
pub async fn run(opts: IngestBenchOptions) -> Result<String, String> {
    opts.validate()?;
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| format!("create {}: {e}", opts.work_dir.display()))?;
    tocsin_proto::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut out = String::new();

    let work = load::Workload::generate(&opts, now_ms());
    line(&mut out, "data", "series", opts.series as f64, "series");
    line(&mut out, "data", "samples", work.samples as f64, "samples");
    line(
        &mut out,
        "data",
        "requests",
        work.bodies.len() as f64,
        "requests",
    );
    line(
        &mut out,
        "data",
        "request_body_bytes_mean",
        (work.body_bytes() as f64 / work.bodies.len().max(1) as f64).round(),
        "bytes",
    );

    let work = std::sync::Arc::new(work);
    let in_process = {
        let work = std::sync::Arc::clone(&work);
        tokio::task::spawn_blocking(move || ours::in_process(&work))
            .await
            .map_err(|e| format!("in-process ingest: {e}"))??
    };
    let p = "in_process";
    line(
        &mut out,
        p,
        "append_samples_per_cpu_sec",
        in_process.append.round(),
        "samples/s",
    );
    line(
        &mut out,
        p,
        "decode_append_samples_per_cpu_sec",
        in_process.decode_append.round(),
        "samples/s",
    );

    let prom =
        prometheus::Prometheus::start(&opts.prometheus, &opts.work_dir, client.clone()).await?;
    let server = ours::Server::start(&opts.work_dir.join("ours-wal"))?;
    remote_write_phase(&opts, &work, &client, &server, &prom, &mut out).await?;
    bytes_phase(&work, &server, &prom, &mut out).await?;
    query::compare(
        &client,
        (&server.base_url(), server.store()),
        &prom.base_url(),
        work.end_ms,
        opts.iterations,
        &mut out,
    )
    .await?;
    scrape::compare(&opts, &client, &server, &prom, &mut out).await?;
    server.stop().await;
    Ok(out)
}

/// Phase 3: the same bodies to both receivers over HTTP.
async fn remote_write_phase(
    opts: &IngestBenchOptions,
    work: &load::Workload,
    client: &reqwest::Client,
    server: &ours::Server,
    prom: &prometheus::Prometheus,
    out: &mut String,
) -> Result<(), String> {
    let samples = work.samples as f64;
    let cpu_before = server.cpu_ns();
    let ours = load::post_all(client, &server.write_url(), work, opts.in_flight).await?;
    let ours_cpu = server.cpu_ns().saturating_sub(cpu_before);
    let held = server.store_stats().samples;
    if held != work.samples {
        return Err(format!(
            "our store holds {held} samples after the remote write, {} were sent",
            work.samples
        ));
    }
    let cpu_before = prom.cpu_ns()?;
    let theirs = load::post_all(client, &prom.write_url(), work, opts.in_flight).await?;
    let theirs_cpu = prom.cpu_ns()?.saturating_sub(cpu_before);
    let p = "remote_write";
    let ours_rate = samples / ours.as_secs_f64();
    let theirs_rate = samples / theirs.as_secs_f64();
    line(
        out,
        p,
        "ours_samples_per_sec",
        ours_rate.round(),
        "samples/s",
    );
    line(
        out,
        p,
        "prometheus_samples_per_sec",
        theirs_rate.round(),
        "samples/s",
    );
    line(
        out,
        p,
        "ratio_ours_over_prometheus",
        ratio(ours_rate, theirs_rate),
        "x",
    );
    line(out, p, "ours_server_cpu", ours_cpu as f64 / 1e6, "ms");
    line(out, p, "prometheus_cpu", theirs_cpu as f64 / 1e6, "ms");
    let per_cpu = |ns: u64| samples / (ns.max(1) as f64 / 1e9);
    line(
        out,
        p,
        "ours_server_samples_per_cpu_sec",
        per_cpu(ours_cpu).round(),
        "samples/s",
    );
    line(
        out,
        p,
        "prometheus_samples_per_cpu_sec",
        per_cpu(theirs_cpu).round(),
        "samples/s",
    );
    line(
        out,
        p,
        "ours_wal_dropped_batches",
        server.wal_dropped() as f64,
        "batches",
    );
    Ok(())
}

/// Phase 4: bytes per sample of the same samples in each store.
async fn bytes_phase(
    work: &load::Workload,
    server: &ours::Server,
    prom: &prometheus::Prometheus,
    out: &mut String,
) -> Result<(), String> {
    let stats = server.store_stats();
    let theirs = prom.chunk_bytes().await?;
    if theirs.samples != work.samples as u64 {
        return Err(format!(
            "Prometheus's snapshot holds {} samples, {} were sent",
            theirs.samples, work.samples
        ));
    }
    let p = "bytes";
    line(
        out,
        p,
        "ours_chunk_bytes_per_sample",
        stats.chunk_bytes as f64 / stats.samples.max(1) as f64,
        "bytes",
    );
    line(
        out,
        p,
        "prometheus_chunk_bytes_per_sample",
        theirs.data_bytes as f64 / theirs.samples.max(1) as f64,
        "bytes",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_refused_with_the_fix() {
        let mut ok = IngestBenchOptions::new(PathBuf::from("/nonexistent"));
        ok.prometheus = PathBuf::from("/");
        assert_eq!(ok.validate(), Ok(()));
        let refused = |change: fn(&mut IngestBenchOptions)| {
            let mut o = ok.clone();
            change(&mut o);
            o.validate().unwrap_err()
        };
        let missing = refused(|o| o.prometheus = PathBuf::from("/nonexistent/prometheus"));
        assert!(missing.contains("apt-get install prometheus"), "{missing}");
        assert!(refused(|o| o.samples_per_series = 24).contains("samples_per_series"));
        assert!(refused(|o| o.samples_per_series = 481).contains("samples_per_series"));
        assert!(refused(|o| o.series = 0).contains("series"));
        assert!(refused(|o| o.series = 100_000).contains("at most"));
        assert!(refused(|o| o.series_per_request = 0).contains("series_per_request"));
        assert!(refused(|o| o.in_flight = MAX_IN_FLIGHT + 1).contains("in_flight"));
        assert!(refused(|o| o.iterations = 0).contains("iterations"));
        assert!(refused(|o| o.scrapes = 0).contains("scrapes"));
    }
}
