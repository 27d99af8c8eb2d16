//! The evaluation benchmark behind `tocsin bench eval`: typical alert expressions over
//! synthetic series of typical shapes, timed in our engine over a [`ChunkedStore`] and in a
//! real Prometheus holding the same data (backfilled with `promtool tsdb
//! create-blocks-from openmetrics`, queried over its HTTP API).
//!
//! Prometheus's figure is its median HTTP query time minus the median of a trivial query
//! (`vector(0)`), which stands for the HTTP and JSON round trip; ours is the in-process
//! median, the two taken alternately so that other load affects both alike; Prometheus's
//! own engine time (`stats=all`, `execTotalTime`) is reported beside it.
//! Both answer at the same timestamp and must return the same number of series,
//! or the run fails. The caller provides the working directory (no environment is read).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::promql::{ChunkedStore, Engine, Labels, Value};

/// 2024-03-10T00:00:00Z: data lives at a fixed past time, far behind Prometheus's head.
const T0_MS: i64 = 1_710_028_800_000;
/// Most series one run may generate (memory of the store and size of the backfill file).
pub const MAX_SERIES: usize = 1_000_000;
/// Most timed repetitions per expression.
pub const MAX_ITERATIONS: usize = 10_000;
/// Deadline for one HTTP exchange with Prometheus.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for Prometheus to become ready after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Histogram bucket bounds of the latency histograms (`+Inf` added).
const BUCKETS: [&str; 9] = [
    "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
];

/// The benchmarked expressions: `(name, PromQL)`.
pub const EXPRESSIONS: [(&str, &str); 3] = [
    ("rate_threshold", "rate(http_requests_total[5m]) > 1"),
    (
        "sum_rate_by_job",
        "sum by (job) (rate(http_requests_total[5m]))",
    ),
    (
        "histogram_p99",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
];

/// What to run.
#[derive(Debug, Clone)]
pub struct EvalBenchOptions {
    /// Series counts to benchmark, each a separate dataset (typically `[10_000]`, optionally
    /// `100_000` too).
    pub series_counts: Vec<usize>,
    /// Span of the data (ms).
    pub span_ms: i64,
    /// Scrape interval of the data (ms).
    pub scrape_interval_ms: i64,
    /// Timed repetitions per expression (the median is reported).
    pub iterations: usize,
    /// Compare with a real Prometheus (needs the two binaries below).
    pub compare_with_prometheus: bool,
    /// The `prometheus` binary.
    pub prometheus: PathBuf,
    /// The `promtool` binary.
    pub promtool: PathBuf,
    /// Scratch directory for the backfill file and the TSDB; removed content is not assumed.
    pub work_dir: PathBuf,
}

impl EvalBenchOptions {
    /// 10k series over 30 minutes at 15 s, 20 repetitions, compared with Debian's Prometheus.
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            series_counts: vec![10_000],
            span_ms: 30 * 60_000,
            scrape_interval_ms: 15_000,
            iterations: 20,
            compare_with_prometheus: true,
            prometheus: PathBuf::from("/usr/bin/prometheus"),
            promtool: PathBuf::from("/usr/bin/promtool"),
            work_dir,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.series_counts.is_empty() || self.series_counts.contains(&0) {
            return Err("series_counts must list at least one positive count".into());
        }
        if self.series_counts.iter().any(|&n| n > MAX_SERIES) {
            return Err(format!(
                "series_counts: at most {MAX_SERIES} series per dataset"
            ));
        }
        if self.scrape_interval_ms <= 0 || self.span_ms < 6 * 60_000 {
            return Err(
                "scrape_interval_ms must be positive and span_ms at least 6 minutes (5m windows)"
                    .into(),
            );
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!("iterations must be within 1..={MAX_ITERATIONS}"));
        }
        if self.compare_with_prometheus {
            for (what, p) in [
                ("prometheus", &self.prometheus),
                ("promtool", &self.promtool),
            ] {
                if !p.exists() {
                    return Err(format!(
                        "{what} not found at {}: install it with `apt-get install prometheus`, or set compare_with_prometheus = false",
                        p.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One generated series: labels and a value function of the step index.
pub(crate) type Dataset = Vec<(Labels, Shape)>;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// A counter growing by `rate` per second.
    Counter { rate: f64 },
    /// A cumulative histogram bucket growing by `rate` per second.
    Bucket { rate: f64 },
}

impl Shape {
    pub(crate) fn value(self, step: i64, interval_ms: i64) -> f64 {
        let secs = (step * interval_ms) as f64 / 1000.0;
        match self {
            Shape::Counter { rate } | Shape::Bucket { rate } => (rate * secs).floor(),
        }
    }
}

/// `n` series: 60 % request counters, 40 % latency histogram buckets.
pub(crate) fn dataset(n: usize) -> Dataset {
    let mut out = Vec::with_capacity(n);
    let counters = n * 6 / 10;
    let codes = ["200", "201", "400", "404", "500"];
    for i in 0..counters {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total".to_owned()),
            ("job", format!("job{}", i % 20)),
            ("instance", format!("host{}:9090", i / codes.len())),
            ("code", codes[i % codes.len()].to_owned()),
        ]);
        // Rates from 0 to ~3/s, so `> 1` keeps about two thirds.
        let rate = (i % 31) as f64 / 10.0;
        out.push((labels, Shape::Counter { rate }));
    }
    let histograms = (n - counters).div_ceil(BUCKETS.len() + 1);
    'outer: for h in 0..histograms {
        for (b, le) in BUCKETS.iter().chain(std::iter::once(&"+Inf")).enumerate() {
            if out.len() == n {
                break 'outer;
            }
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    "http_request_duration_seconds_bucket".to_owned(),
                ),
                ("job", format!("job{}", h % 20)),
                ("instance", format!("host{h}:9090")),
                ("le", (*le).to_owned()),
            ]);
            let rate = 0.5 * (b + 1) as f64 + (h % 7) as f64 * 0.1;
            out.push((labels, Shape::Bucket { rate }));
        }
    }
    out
}

/// Runs the benchmark; returns `name: value unit` lines.
pub fn run(opts: EvalBenchOptions) -> Result<String, String> {
    opts.validate()?;
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| format!("create {}: {e}", opts.work_dir.display()))?;
    let mut out = String::new();
    for &n in &opts.series_counts {
        run_one(&opts, n, &mut out)?;
    }
    Ok(out)
}

fn run_one(opts: &EvalBenchOptions, n: usize, out: &mut String) -> Result<(), String> {
    let data = dataset(n);
    let steps = opts.span_ms / opts.scrape_interval_ms + 1;
    let end_ms = T0_MS + (steps - 1) * opts.scrape_interval_ms;
    let p = format!("series_{n}");
    let started = Instant::now();
    let mut store = ChunkedStore::new();
    for step in 0..steps {
        for (l, shape) in &data {
            store
                .append(
                    l.clone(),
                    T0_MS + step * opts.scrape_interval_ms,
                    shape.value(step, opts.scrape_interval_ms),
                )
                .map_err(|e| e.to_string())?;
        }
    }
    let load = started.elapsed();
    let (bytes, samples) = store.encoded_stats();
    line(out, &p, "samples", samples as f64, "samples");
    line(out, &p, "ours_load", ms(load), "ms");
    line(
        out,
        &p,
        "chunked_store_bytes_per_sample",
        bytes as f64 / samples.max(1) as f64,
        "bytes",
    );
    let engine = Engine::default();
    let prom = if opts.compare_with_prometheus {
        let started = Instant::now();
        let prom = Prometheus::start(opts, &opts.work_dir.join(&p), &data, steps)?;
        let took = ms(started.elapsed());
        line(out, &p, "prometheus_backfill_and_start", took, "ms");
        Some(prom)
    } else {
        None
    };
    let empty = match &prom {
        Some(prom) => {
            let mut http = Vec::with_capacity(opts.iterations);
            for _ in 0..opts.iterations {
                http.push(prom.query_once("vector(0)", end_ms)?.http_ms);
            }
            let empty = median(http);
            line(out, &p, "prometheus_empty_query_median", empty, "ms");
            empty
        }
        None => 0.0,
    };
    for (name, expr) in EXPRESSIONS {
        let m = measure(
            &engine,
            &store,
            prom.as_ref(),
            expr,
            end_ms,
            opts.iterations,
        )?;
        let ours = median(m.ours);
        line(out, &p, &format!("{name}.ours_median"), ours, "ms");
        if prom.is_none() {
            continue;
        }
        let net = (median(m.http) - empty).max(0.0);
        line(out, &p, &format!("{name}.prometheus_median"), net, "ms");
        let r = ratio(ours, net);
        line(
            out,
            &p,
            &format!("{name}.ratio_ours_over_prometheus"),
            r,
            "x",
        );
        if !m.engine.is_empty() {
            let engine_ms = median(m.engine);
            line(
                out,
                &p,
                &format!("{name}.prometheus_engine_median"),
                engine_ms,
                "ms",
            );
            let r = ratio(ours, engine_ms);
            line(
                out,
                &p,
                &format!("{name}.ratio_ours_over_prometheus_engine"),
                r,
                "x",
            );
        }
    }
    Ok(())
}

/// Timings of one expression (ms), ours and Prometheus's taken alternately so that load
/// from elsewhere on the machine affects both alike.
struct Measured {
    ours: Vec<f64>,
    http: Vec<f64>,
    engine: Vec<f64>,
}

fn measure(
    engine: &Engine,
    store: &ChunkedStore,
    prom: Option<&Prometheus>,
    expr: &str,
    ts: i64,
    iterations: usize,
) -> Result<Measured, String> {
    let q = engine.parse(expr).map_err(|e| format!("{expr}: {e}"))?;
    let mut m = Measured {
        ours: Vec::with_capacity(iterations),
        http: Vec::with_capacity(iterations),
        engine: Vec::with_capacity(iterations),
    };
    for _ in 0..iterations {
        let started = Instant::now();
        let v = engine
            .instant_parsed(store, &q, ts)
            .map_err(|e| format!("{expr}: {e}"))?;
        m.ours.push(ms(started.elapsed()));
        let ours_count = match v {
            Value::Vector(v) => v.len(),
            Value::Matrix(m) => m.len(),
            Value::Scalar { .. } | Value::String { .. } => 1,
        };
        let Some(prom) = prom else { continue };
        let t = prom.query_once(expr, ts)?;
        if t.count != ours_count {
            return Err(format!(
                "{expr}: Prometheus returned {} series, ours {ours_count}: results differ",
                t.count
            ));
        }
        m.http.push(t.http_ms);
        m.engine.extend(t.engine_ms);
    }
    Ok(m)
}

pub(crate) fn line(out: &mut String, prefix: &str, name: &str, value: f64, unit: &str) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = writeln!(out, "{prefix}.{name}: {value:.0} {unit}");
    } else {
        let _ = writeln!(out, "{prefix}.{name}: {value:.3} {unit}");
    }
}

pub(crate) fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs > 0.0 {
        ours / theirs
    } else {
        f64::INFINITY
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A Prometheus child process serving the backfilled dataset; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(
        opts: &EvalBenchOptions,
        dir: &Path,
        data: &Dataset,
        steps: i64,
    ) -> Result<Self, String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let tsdb = dir.join("tsdb");
        if tsdb.exists() {
            std::fs::remove_dir_all(&tsdb).map_err(|e| io("clear old tsdb", e))?;
        }
        std::fs::create_dir_all(&tsdb).map_err(|e| io("create tsdb dir", e))?;
        let om = dir.join("data.om.txt");
        write_openmetrics(&om, data, steps, opts.scrape_interval_ms)
            .map_err(|e| io("write openmetrics", e))?;
        let out = Command::new(&opts.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&tsdb)
            .output()
            .map_err(|e| io("run promtool", e))?;
        let _ = std::fs::remove_file(&om);
        if !out.status.success() {
            return Err(format!(
                "promtool backfill failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n")
            .map_err(|e| io("write config", e))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| io("pick a port", e))?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| io("log", e))?;
        let log2 = log.try_clone().map_err(|e| io("log", e))?;
        let child = Command::new(&opts.prometheus)
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| io("start prometheus", e))?;
        let mut prom = Self { child, port };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = prom.child.try_wait() {
                return Err(format!(
                    "prometheus exited early ({status}); see {}",
                    dir.display()
                ));
            }
            if matches!(http_get(port, "/-/ready"), Ok((200, _))) {
                return Ok(prom);
            }
            if Instant::now() > deadline {
                return Err(format!("prometheus not ready after {READY_TIMEOUT:?}"));
            }
            // Bounded polling while waiting for readiness.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One instant query: the HTTP round trip, Prometheus's own engine time (`stats=all`'s
    /// `execTotalTime`, which excludes JSON encoding), and the number of series returned.
    fn query_once(&self, expr: &str, ts_ms: i64) -> Result<PromTiming, String> {
        let path = format!(
            "/api/v1/query?query={}&time={}.{:03}&stats=all",
            url_encode(expr),
            ts_ms / 1000,
            ts_ms % 1000
        );
        let started = Instant::now();
        let (status, body) = http_get(self.port, &path).map_err(|e| format!("{expr}: {e}"))?;
        let http_ms = ms(started.elapsed());
        if status != 200 {
            return Err(format!("{expr}: HTTP {status}: {body}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{expr}: bad JSON: {e}"))?;
        let count = match &v["data"]["result"] {
            serde_json::Value::Array(a) => a.len(),
            _ => 1,
        };
        let engine_ms = v["data"]["stats"]["timings"]["execTotalTime"]
            .as_f64()
            .map(|secs| secs * 1000.0);
        Ok(PromTiming {
            http_ms,
            engine_ms,
            count,
        })
    }
}

/// What [`Prometheus::query_once`] measured.
struct PromTiming {
    /// HTTP round trip (ms).
    http_ms: f64,
    /// Engine time reported by Prometheus (ms), when it reports one.
    engine_ms: Option<f64>,
    /// Series returned.
    count: usize,
}

fn write_openmetrics(
    path: &Path,
    data: &Dataset,
    steps: i64,
    interval_ms: i64,
) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(f);
    // OpenMetrics wants the samples of one metric family together.
    let mut sorted: Vec<&(Labels, Shape)> = data.iter().collect();
    sorted.sort_by(|a, b| a.0.get("__name__").cmp(b.0.get("__name__")));
    for (l, shape) in sorted {
        let rest: Vec<String> = l
            .iter()
            .filter(|(n, _)| *n != "__name__")
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect();
        let head = format!("{}{{{}}}", l.get("__name__"), rest.join(","));
        for step in 0..steps {
            let t = T0_MS + step * interval_ms;
            writeln!(
                w,
                "{head} {} {}.{:03}",
                shape.value(step, interval_ms),
                t / 1000,
                t % 1000
            )?;
        }
    }
    w.write_all(b"# EOF\n")?;
    w.flush()
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A minimal HTTP/1.0 GET with deadlines; returns status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_has_the_requested_shapes() {
        let d = dataset(1000);
        assert_eq!(d.len(), 1000);
        let buckets = d
            .iter()
            .filter(|(l, _)| l.get("__name__") == "http_request_duration_seconds_bucket")
            .count();
        assert_eq!(buckets, 400);
    }

    #[test]
    fn ours_only_run_reports_every_expression() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = EvalBenchOptions::new(dir.path().to_path_buf());
        opts.series_counts = vec![200];
        opts.iterations = 2;
        opts.compare_with_prometheus = false;
        let out = run(opts).unwrap();
        for (name, _) in EXPRESSIONS {
            assert!(
                out.contains(&format!("series_200.{name}.ours_median: ")),
                "{out}"
            );
        }
        assert!(out.lines().all(|l| l.split(": ").count() == 2), "{out}");
    }

    #[test]
    fn bad_options_are_refused() {
        let mut opts = EvalBenchOptions::new(PathBuf::from("/nonexistent"));
        opts.series_counts = vec![MAX_SERIES + 1];
        assert!(run(opts).is_err());
    }
}
