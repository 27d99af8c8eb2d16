//! Scrape throughput: an in-process exporter serves `series` series as text exposition; our
//! scrape loop and then Prometheus scrape it (one after the other, so they do not compete for
//! the cores), and each store's own `scrape_duration_seconds` is read back.
//!
//! The two durations do not cover the same work. Prometheus takes its figure after fetching,
//! parsing and buffering the samples in its appender, before the commit that writes its WAL
//! and appends to chunks; ours is taken after fetch and parse, before anything is appended.
//! So the bench also drives our loop's steps itself — [`scrape::scrape`] (fetch and parse),
//! [`TargetState::on_success`], [`Ingest::append_samples`] into memory — and times the whole
//! cycle: that figure, which includes the chunk appends Prometheus's excludes, is the one
//! compared.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use bytes::Bytes;
use promql_parser::label::{MatchOp, Matcher};
use serde_json::Value as Json;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::ours::Server;
use super::prometheus::Prometheus;
use super::query::instant;
use super::{INTERVAL_MS, IngestBenchOptions};
use crate::bench_eval::{self, line, median, ms, ratio};
use crate::datasource::embedded::scrape::{
    self, DEFAULT_BODY_SIZE_LIMIT_BYTES, RawScrapeConfig, ScrapeConfig, TargetState,
};
use crate::datasource::embedded::{
    EmbeddedStore, EmbeddedStoreConfig, Ingest, MetricStore, now_ms,
};
use crate::promql::Store as _;

/// The scrape job's name in both stores.
const JOB: &str = "bench_scrape";
/// What the exporter answers with: Prometheus's text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Pause between looks at a store while waiting for its scrapes.
const POLL: Duration = Duration::from_millis(200);
/// How long the exporter and our scrape loops get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Scrape interval for `series` series: 1 s, longer for big targets so that a scrape (with
/// its timeout equal to the interval) can finish.
fn interval_ms(series: usize) -> u64 {
    (series as u64 / 20).clamp(1_000, 30_000)
}

/// How long to wait for `scrapes + 1` full scrapes at `interval_ms`.
fn wait_for(scrapes: usize, interval_ms: u64) -> Duration {
    Duration::from_millis(interval_ms * (scrapes as u64 + 2) * 3) + Duration::from_secs(30)
}

/// Runs the scrape phase and reports it.
pub(super) async fn compare(
    opts: &IngestBenchOptions,
    client: &reqwest::Client,
    server: &Server,
    prom: &Prometheus,
    out: &mut String,
) -> Result<(), String> {
    let (n, scrapes) = (opts.series, opts.scrapes);
    let body = exposition(n);
    let exporter = Exporter::start(body.clone()).await?;
    let interval = interval_ms(n);
    let wait = wait_for(scrapes, interval);
    let cfg = RawScrapeConfig {
        job_name: JOB.into(),
        targets: vec![exporter.addr.to_string()],
        metrics_path: "/metrics".into(),
        scrape_interval_ms: interval,
        scrape_timeout_ms: interval,
        body_size_limit_bytes: (body.len() as u64 * 2).max(DEFAULT_BODY_SIZE_LIMIT_BYTES),
        sample_limit: n + 16,
    }
    .validate()
    .map_err(|e| format!("scrape config: {e}"))?;
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("scrape client: {e}"))?;
    let recorded = ours_loop(server, &cfg, &http, n, scrapes, wait).await?;
    let cycle = ours_cycle(server, &cfg, &http, n, scrapes, wait).await?;
    let theirs = prometheus_loop(client, prom, exporter.addr, interval, n, scrapes, wait).await?;
    exporter.stop().await;
    let fetch_parse = median(cycle.fetch_parse);
    let (recorded, cycle, theirs) = (median(recorded), median(cycle.total), median(theirs));
    let p = "scrape";
    line(out, p, "series", n as f64, "series");
    line(out, p, "interval", interval as f64, "ms");
    line(out, p, "body_bytes", body.len() as f64, "bytes");
    line(out, p, "ours_scrape_duration_median", recorded, "ms");
    line(out, p, "ours_cycle_median", cycle, "ms");
    line(out, p, "ours_cycle_fetch_parse_median", fetch_parse, "ms");
    line(out, p, "prometheus_scrape_duration_median", theirs, "ms");
    let rate = |took_ms: f64| n as f64 / (took_ms.max(1e-6) / 1000.0);
    line(
        out,
        p,
        "ours_samples_per_sec",
        rate(cycle).round(),
        "samples/s",
    );
    line(
        out,
        p,
        "prometheus_samples_per_sec",
        rate(theirs).round(),
        "samples/s",
    );
    line(
        out,
        p,
        "ratio_ours_over_prometheus",
        ratio(rate(cycle), rate(theirs)),
        "x",
    );
    Ok(())
}

/// `n` series of [`bench_eval`]'s shapes as an exporter would expose them; the names get an
/// `exporter_` prefix and `job`/`instance` become `app`/`pod`, so they clash neither with the
/// remote-written series nor with the target's own labels.
fn exposition(n: usize) -> Bytes {
    let mut data = bench_eval::dataset(n);
    data.sort_by(|a, b| a.0.get("__name__").cmp(b.0.get("__name__")));
    let mut s = String::with_capacity(n * 96);
    for (labels, shape) in &data {
        let _ = write!(s, "exporter_{}{{", labels.get("__name__"));
        let rest = labels.iter().filter(|(k, _)| *k != "__name__");
        for (i, (k, v)) in rest.enumerate() {
            let k = match k {
                "job" => "app",
                "instance" => "pod",
                other => other,
            };
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}{k}=\"{v}\"");
        }
        let _ = writeln!(s, "}} {}", shape.value(100, INTERVAL_MS));
    }
    Bytes::from(s)
}

/// The exporter: one static body on `GET /metrics`, on a loopback port of the caller's
/// runtime. Stopped on drop.
struct Exporter {
    addr: SocketAddr,
    cancel: CancellationToken,
    served: Option<JoinHandle<()>>,
}

impl Exporter {
    async fn start(body: Bytes) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("exporter: bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("exporter: {e}"))?;
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, TEXT_FORMAT)], body) }
            }),
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let served = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "bench: exporter failed");
            }
        });
        Ok(Self {
            addr,
            cancel,
            served: Some(served),
        })
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(STOP_GRACE, served).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Our scrape loop, as a node runs it, into a fresh in-memory store on the server's runtime;
/// the recorded `scrape_duration_seconds` (ms) of `scrapes` full scrapes after the first.
async fn ours_loop(
    server: &Server,
    cfg: &ScrapeConfig,
    http: &reqwest::Client,
    n: usize,
    scrapes: usize,
    wait: Duration,
) -> Result<Vec<f64>, String> {
    let store = EmbeddedStore::new(EmbeddedStoreConfig::default());
    let cancel = CancellationToken::new();
    let loops = {
        let (store, cancel, cfg, http) = (
            Arc::clone(&store),
            cancel.clone(),
            cfg.clone(),
            http.clone(),
        );
        server.spawn(async move {
            let mut tasks = JoinSet::new();
            store.spawn_scrapers(std::slice::from_ref(&cfg), &http, &cancel, &mut tasks);
            while tasks.join_next().await.is_some() {}
        })?
    };
    let deadline = Instant::now() + wait;
    let got = loop {
        let full = ours_recorded(&store, n)?;
        if full.len() > scrapes {
            break Ok(full[1..=scrapes].to_vec());
        }
        if Instant::now() > deadline {
            break Err(format!(
                "our scrape loop made {} full scrapes of {n} series in {wait:?}; {} needed",
                full.len(),
                scrapes + 1
            ));
        }
        // Bounded polling: the loop's progress is only visible in the store.
        tokio::time::sleep(POLL).await;
    };
    cancel.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, loops).await;
    got
}

/// Durations (ms) of the full scrapes our store recorded for [`JOB`], in time order.
fn ours_recorded(store: &EmbeddedStore, n: usize) -> Result<Vec<f64>, String> {
    let guard = store.store().read().unwrap_or_else(PoisonError::into_inner);
    let points = |name: &str| -> Result<Vec<(i64, f64)>, String> {
        let m = [
            Matcher::new(MatchOp::Equal, "__name__", name),
            Matcher::new(MatchOp::Equal, "job", JOB),
        ];
        let series = guard
            .select(&m, i64::MIN, i64::MAX)
            .map_err(|e| e.to_string())?;
        Ok(series
            .into_iter()
            .flat_map(|s| s.points)
            .map(|p| (p.t, p.v))
            .collect())
    };
    Ok(full_scrapes(
        &points("scrape_samples_scraped")?,
        &points("scrape_duration_seconds")?,
        n,
    ))
}

/// Times (ms) of the cycles of [`ours_cycle`].
struct Cycles {
    /// Fetch and parse.
    fetch_parse: Vec<f64>,
    /// Fetch, parse, target labels and staleness, append.
    total: Vec<f64>,
}

/// Our loop's steps driven by the bench, into a fresh in-memory store on the server's
/// runtime, for `scrapes` cycles after a first one (which creates the series).
async fn ours_cycle(
    server: &Server,
    cfg: &ScrapeConfig,
    http: &reqwest::Client,
    n: usize,
    scrapes: usize,
    wait: Duration,
) -> Result<Cycles, String> {
    let (cfg, http) = (cfg.clone(), http.clone());
    let work = server.spawn(async move {
        let ingest = Ingest::new(Arc::new(RwLock::new(MetricStore::default())), None);
        let target = cfg.targets.first().ok_or("no scrape target")?.clone();
        let mut state = TargetState::default();
        let mut last_ts = i64::MIN;
        let mut took = Cycles {
            fetch_parse: Vec::with_capacity(scrapes),
            total: Vec::with_capacity(scrapes),
        };
        for i in 0..=scrapes {
            // Back-to-back cycles of a tiny target may share a millisecond.
            let ts = now_ms().max(last_ts.saturating_add(1));
            last_ts = ts;
            let started = Instant::now();
            let scraped = scrape::scrape(&http, &target, &cfg, &mut state)
                .await
                .map_err(|e| format!("our scrape of {}: {e}", target.url))?;
            if scraped.len() != n {
                return Err(format!("our scrape read {} of {n} series", scraped.len()));
            }
            let fetched = started.elapsed();
            let samples = state.on_success(&target.labels, scraped, ts, fetched);
            let summary = ingest.append_samples(&samples);
            let cycle = started.elapsed();
            if let Some(e) = summary.first_error {
                return Err(format!("our scrape's append refused samples: {e}"));
            }
            if i > 0 {
                took.fetch_parse.push(ms(fetched));
                took.total.push(ms(cycle));
            }
        }
        Ok::<_, String>(took)
    })?;
    tokio::time::timeout(wait, work)
        .await
        .map_err(|_| format!("our scrape cycles took more than {wait:?}"))?
        .map_err(|e| format!("our scrape cycles: {e}"))?
}

/// Prometheus scraping the exporter: its recorded `scrape_duration_seconds` (ms) of `scrapes`
/// full scrapes after the first.
async fn prometheus_loop(
    client: &reqwest::Client,
    prom: &Prometheus,
    target: SocketAddr,
    interval_ms: u64,
    n: usize,
    scrapes: usize,
    wait: Duration,
) -> Result<Vec<f64>, String> {
    prom.scrape(JOB, target, interval_ms).await?;
    let base = prom.base_url();
    let window = format!("{}s", wait.as_secs() + 60);
    let points = |name: &'static str| {
        let expr = format!("{name}{{job=\"{JOB}\"}}[{window}]");
        let (client, base) = (client.clone(), base.clone());
        async move {
            instant(&client, &base, &expr, None)
                .await
                .map(|a| matrix(&a.data))
        }
    };
    let deadline = Instant::now() + wait;
    loop {
        let scraped = points("scrape_samples_scraped").await??;
        let durations = points("scrape_duration_seconds").await??;
        let full = full_scrapes(&scraped, &durations, n);
        if full.len() > scrapes {
            return Ok(full[1..=scrapes].to_vec());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "Prometheus made {} full scrapes of {n} series in {wait:?}; {} needed",
                full.len(),
                scrapes + 1
            ));
        }
        // Bounded polling: Prometheus's progress is only visible through its API.
        tokio::time::sleep(POLL).await;
    }
}

/// The points `(t_ms, v)` of a one-series matrix answer.
fn matrix(data: &Json) -> Result<Vec<(i64, f64)>, String> {
    let Some(values) = data["result"][0]["values"].as_array() else {
        return Ok(Vec::new());
    };
    values
        .iter()
        .map(|pair| {
            let t = pair[0].as_f64().ok_or("matrix point without a time")?;
            let v = pair[1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or("matrix point without a value")?;
            Ok(((t * 1000.0).round() as i64, v))
        })
        .collect()
}

/// Durations (s → ms) at the times where `scraped` says all `n` series were read, in time
/// order of `durations`.
fn full_scrapes(scraped: &[(i64, f64)], durations: &[(i64, f64)], n: usize) -> Vec<f64> {
    let full: BTreeSet<i64> = scraped
        .iter()
        .filter(|(_, v)| *v == n as f64)
        .map(|(t, _)| *t)
        .collect();
    durations
        .iter()
        .filter(|(t, v)| full.contains(t) && v.is_finite())
        .map(|(_, v)| v * 1000.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::embedded::exposition::{self, Format};

    #[test]
    fn the_exposition_parses_to_every_series() {
        let body = exposition(300);
        let text = std::str::from_utf8(&body).unwrap();
        let parsed = exposition::parse(text, Format::from_content_type(TEXT_FORMAT), 1000).unwrap();
        assert_eq!(parsed.len(), 300);
        assert!(
            parsed
                .iter()
                .all(|s| s.labels.get("__name__").starts_with("exporter_")
                    && s.labels.get("job").is_empty()
                    && !s.labels.get("app").is_empty())
        );
    }

    #[test]
    fn only_full_scrapes_count() {
        let scraped = [(1, 10.0), (2, 3.0), (3, 10.0)];
        let durations = [(1, 0.5), (2, 0.25), (3, f64::NAN), (4, 1.0)];
        assert_eq!(full_scrapes(&scraped, &durations, 10), vec![500.0]);
    }
}
