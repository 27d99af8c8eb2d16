//! Differential test: Tocsin's PromQL engine against a real Prometheus 2.x.
//!
//! A deterministic dataset is written as OpenMetrics, backfilled with `promtool tsdb
//! create-blocks-from openmetrics`, served by a `prometheus` child process, and loaded into a
//! `MemStore` (and a `ChunkedStore`, which must answer exactly like the `MemStore`). Every
//! expression of `tests/data/promql/corpus.txt` is evaluated by both as an instant query at
//! several times and as two range queries; results must agree (values to 1e-9 relative, NaN
//! equal to NaN, label sets exactly, `sort*` order, error vs error).

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{ChildGuard, find_binary, free_port};

use tocsin_alerter::promql::{ChunkedStore, Engine, EngineOptions, Labels, MemStore, Value};

/// 2024-03-10T00:00:00Z: the dataset lives at a fixed historical time, far behind the head.
const T0_MS: i64 = 1_710_028_800_000;
const SCRAPE_MS: i64 = 15_000;
/// Number of scrape intervals: two hours.
const STEPS: i64 = 480;
/// Instant evaluation times (ms): near the start, on a scrape (closed window boundaries), off
/// the scrape grid, after `flaky_gauge{instance="i0"}` stopped at +60m (inside the lookback,
/// exactly at its 5m edge), late, and past the data's end.
const EVAL_TIMES_MS: [i64; 7] = [
    T0_MS + 30_000,
    T0_MS + 600_000,
    T0_MS + 2_850_500,
    T0_MS + 3_780_000,
    T0_MS + 3_900_000,
    T0_MS + 6_017_000,
    T0_MS + 7_320_000,
];
/// The range queries every expression is also run as (start, end, step in ms): on the scrape
/// grid across `flaky_gauge{instance="i0"}`'s end, and off the grid with an odd step (subquery
/// alignment, lookback edges) over most of the data.
const RANGES_MS: [(i64, i64, i64); 2] = [
    (T0_MS + 3_000_000, T0_MS + 4_200_000, 240_000),
    (T0_MS + 1_207_500, T0_MS + 6_900_000, 97_000),
];
/// Bound on waiting for Prometheus to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one HTTP exchange with Prometheus.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

type Dataset = Vec<(Labels, Vec<(i64, f64)>)>;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform integer in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform float in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut all = vec![("__name__", name)];
    all.extend_from_slice(pairs);
    Labels::from_pairs(all)
}

fn scrape_times() -> impl Iterator<Item = i64> {
    (0..=STEPS).map(|i| T0_MS + i * SCRAPE_MS)
}

/// Rounds to two decimals so the text form is short and exact on both sides.
fn cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn dataset() -> Dataset {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out: Dataset = Vec::new();
    for job in ["api", "web"] {
        for inst in ["i0", "i1", "i2"] {
            for method in ["get", "post"] {
                let mut v = rng.below(100) as f64;
                let pts = scrape_times()
                    .map(|t| {
                        if rng.below(100) == 0 {
                            v = rng.below(3) as f64;
                        } else {
                            v += rng.below(6) as f64;
                        }
                        (t, v)
                    })
                    .collect();
                let l = [("job", job), ("instance", inst), ("method", method)];
                out.push((labels("http_requests_total", &l), pts));
            }
        }
    }
    for (inst, zone, base) in [
        ("i0", "a", 20.0),
        ("i1", "a", 24.0),
        ("i2", "b", 18.0),
        ("i3", "b", 1.0),
    ] {
        let mut v: f64 = base;
        let pts = scrape_times()
            .map(|t| {
                v = cents(v + (rng.unit() - 0.5) * 1.5);
                (t, v)
            })
            .collect();
        let l = [("job", "node"), ("instance", inst), ("zone", zone)];
        out.push((labels("node_temp_celsius", &l), pts));
    }
    histogram(&mut rng, &mut out);
    for inst in ["i0", "i1", "i2"] {
        let pts = scrape_times()
            .filter(|t| match inst {
                "i0" => *t <= T0_MS + 3_600_000,
                "i1" => *t < T0_MS + 1_800_000 || *t > T0_MS + 2_400_000,
                _ => true,
            })
            .map(|t| (t, (rng.below(1000) as f64) / 10.0))
            .collect();
        out.push((labels("flaky_gauge", &[("instance", inst)]), pts));
    }
    for (job, insts) in [("api", 3), ("web", 3), ("node", 4)] {
        for i in 0..insts {
            let inst = format!("i{i}");
            let pts = scrape_times()
                .map(|t| (t, if rng.below(20) == 0 { 0.0 } else { 1.0 }))
                .collect();
            out.push((labels("up", &[("job", job), ("instance", &inst)]), pts));
        }
    }
    for (inst, version) in [("i0", "1.0"), ("i1", "2.0"), ("i2", "1.0")] {
        let pts = scrape_times().map(|t| (t, 1.0)).collect();
        let l = [("job", "api"), ("instance", inst), ("version", version)];
        out.push((labels("build_info", &l), pts));
    }
    let nan_pts = scrape_times()
        .enumerate()
        .map(|(i, t)| {
            let v = match i {
                200 => f64::INFINITY,
                300 => f64::NEG_INFINITY,
                _ if i % 7 == 3 => f64::NAN,
                _ => cents(rng.unit() * 10.0),
            };
            (t, v)
        })
        .collect();
    out.push((labels("nan_gauge", &[("instance", "i0")]), nan_pts));
    for name in ["dup_a", "dup_b"] {
        let pts = scrape_times()
            .map(|t| (t, (1 + rng.below(10)) as f64))
            .collect();
        out.push((labels(name, &[("x", "1")]), pts));
    }
    // Two series that differ only in name and never overlap in time (nor within the
    // lookback): probes whether the "same labelset" check spans steps or not.
    for (name, from, to) in [("phase_a", 0, 3_300_000), ("phase_b", 3_900_000, 7_200_000)] {
        let pts = scrape_times()
            .filter(|t| *t >= T0_MS + from && *t <= T0_MS + to)
            .map(|t| (t, (1 + rng.below(10)) as f64))
            .collect();
        out.push((labels(name, &[("x", "1")]), pts));
    }
    let mut sparse = 0.0;
    let sparse_pts = scrape_times()
        .step_by(16)
        .map(|t| {
            sparse += rng.below(50) as f64;
            (t, sparse)
        })
        .collect();
    out.push((labels("sparse_counter", &[("instance", "i0")]), sparse_pts));
    let irregular = scrape_times()
        .map(|t| (t + rng.below(8000) as i64 - 4000, cents(rng.unit() * 50.0)))
        .filter(|(t, _)| *t >= T0_MS)
        .collect();
    out.push((labels("irregular_gauge", &[("instance", "i0")]), irregular));
    let konst = scrape_times().map(|t| (t, 42.0)).collect();
    out.push((labels("const_gauge", &[("instance", "i0")]), konst));
    out
}

/// Classic histogram `request_duration_seconds` with `_bucket`, `_count` and `_sum`.
fn histogram(rng: &mut Rng, out: &mut Dataset) {
    const BOUNDS: [&str; 6] = ["0.05", "0.1", "0.5", "1", "5", "+Inf"];
    for inst in ["i0", "i1"] {
        let mut counts = [0.0f64; 6];
        let mut sum = 0.0;
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 8];
        for t in scrape_times() {
            for _ in 0..rng.below(10) {
                let bucket = [0, 1, 1, 2, 2, 2, 3, 4, 5][rng.below(9) as usize];
                for c in counts.iter_mut().skip(bucket) {
                    *c += 1.0;
                }
                sum = cents(sum + rng.unit() * 2.0);
            }
            for (i, c) in counts.iter().enumerate() {
                series[i].push((t, *c));
            }
            series[6].push((t, counts[5]));
            series[7].push((t, sum));
        }
        let l = |le: &'static str| vec![("job", "api"), ("instance", inst), ("le", le)];
        for (i, b) in BOUNDS.iter().enumerate() {
            out.push((
                labels("request_duration_seconds_bucket", &l(b)),
                series[i].clone(),
            ));
        }
        let base = [("job", "api"), ("instance", inst)];
        out.push((
            labels("request_duration_seconds_count", &base),
            series[6].clone(),
        ));
        out.push((
            labels("request_duration_seconds_sum", &base),
            series[7].clone(),
        ));
    }
}

/// Go's float formatting for sample values.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn openmetrics(data: &Dataset) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&(Labels, Vec<(i64, f64)>)> = data.iter().collect();
    sorted.sort_by(|a, b| a.0.get("__name__").cmp(b.0.get("__name__")));
    for (l, pts) in sorted {
        let name = l.get("__name__");
        let rest: Vec<String> = l
            .iter()
            .filter(|(n, _)| *n != "__name__")
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect();
        for (t, v) in pts {
            let _ = writeln!(
                s,
                "{name}{{{}}} {} {}.{:03}",
                rest.join(","),
                fmt_value(*v),
                t / 1000,
                t % 1000
            );
        }
    }
    s.push_str("# EOF\n");
    s
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

/// A minimal HTTP/1.0 GET (no chunking, no keep-alive). Returns status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

type LabelMap = BTreeMap<String, String>;

/// A query result normalised for comparison.
#[derive(Debug, Clone)]
enum Outcome {
    Error(String),
    Scalar(f64),
    String(String),
    /// In result order.
    Vector(Vec<(LabelMap, f64)>),
    Matrix(Vec<(LabelMap, Vec<(i64, f64)>)>),
}

fn parse_prom_value(v: &serde_json::Value) -> (i64, f64) {
    let t = v[0].as_f64().unwrap_or(f64::NAN);
    let s = v[1].as_str().unwrap_or("");
    let x = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    };
    ((t * 1000.0).round() as i64, x)
}

fn parse_prom_metric(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn prom_outcome(body: &str) -> Outcome {
    let Ok(j) = serde_json::from_str::<serde_json::Value>(body) else {
        return Outcome::Error(format!("unparsable response: {body}"));
    };
    if j["status"] != "success" {
        return Outcome::Error(j["error"].as_str().unwrap_or("?").to_string());
    }
    let data = &j["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => Outcome::Scalar(parse_prom_value(result).1),
        Some("string") => Outcome::String(result[1].as_str().unwrap_or("").to_string()),
        Some("vector") => Outcome::Vector(
            result
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                parse_prom_metric(&e["metric"]),
                                parse_prom_value(&e["value"]).1,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("matrix") => Outcome::Matrix(
            result
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let pts = e["values"]
                                .as_array()
                                .map(|p| p.iter().map(parse_prom_value).collect())
                                .unwrap_or_default();
                            (parse_prom_metric(&e["metric"]), pts)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        other => Outcome::Error(format!("unknown result type {other:?}")),
    }
}

fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn our_outcome(r: Result<Value, tocsin_alerter::promql::QueryError>) -> Outcome {
    match r {
        Err(e) => Outcome::Error(e.to_string()),
        Ok(Value::Scalar { v, .. }) => Outcome::Scalar(v),
        Ok(Value::String { s, .. }) => Outcome::String(s),
        Ok(Value::Vector(v)) => {
            Outcome::Vector(v.iter().map(|s| (label_map(&s.labels), s.v)).collect())
        }
        Ok(Value::Matrix(m)) => Outcome::Matrix(
            m.iter()
                .map(|s| {
                    (
                        label_map(&s.labels),
                        s.points.iter().map(|p| (p.t, p.v)).collect(),
                    )
                })
                .collect(),
        ),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `None` when equal, else why not.
fn compare(expr: &str, prom: &Outcome, ours: &Outcome) -> Option<String> {
    match (prom, ours) {
        (Outcome::Error(_), Outcome::Error(_)) => None,
        (Outcome::Scalar(a), Outcome::Scalar(b)) if close(*a, *b) => None,
        (Outcome::String(a), Outcome::String(b)) if a == b => None,
        (Outcome::Vector(a), Outcome::Vector(b)) => {
            if expr.starts_with("sort") {
                let av: Vec<f64> = a.iter().map(|x| x.1).collect();
                let bv: Vec<f64> = b.iter().map(|x| x.1).collect();
                if av.len() != bv.len() || av.iter().zip(&bv).any(|(x, y)| !close(*x, *y)) {
                    return Some("sort order differs".into());
                }
            }
            let am: BTreeMap<_, _> = a.iter().cloned().collect();
            let bm: BTreeMap<_, _> = b.iter().cloned().collect();
            if am.len() != a.len() || bm.len() != b.len() {
                return Some("duplicate label sets in a result".into());
            }
            if am.keys().ne(bm.keys()) {
                return Some("label sets differ".into());
            }
            am.iter()
                .find(|(k, v)| !close(**v, bm[*k]))
                .map(|(k, v)| format!("value differs for {k:?}: prometheus {v} vs ours {}", bm[k]))
        }
        (Outcome::Matrix(a), Outcome::Matrix(b)) => {
            let am: BTreeMap<_, _> = a.iter().cloned().collect();
            let bm: BTreeMap<_, _> = b.iter().cloned().collect();
            if am.keys().ne(bm.keys()) {
                return Some("series label sets differ".into());
            }
            am.iter().find_map(|(k, pa)| {
                let pb = &bm[k];
                let same = pa.len() == pb.len()
                    && pa
                        .iter()
                        .zip(pb)
                        .all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
                (!same).then(|| format!("points differ for {k:?}"))
            })
        }
        _ => Some("result kinds differ".into()),
    }
}

/// Records both error texts when both sides failed with differently worded messages.
fn note_error_texts(
    notes: &mut BTreeMap<String, (String, String)>,
    expr: &str,
    prom: &Outcome,
    ours: &Outcome,
) {
    if let (Outcome::Error(p), Outcome::Error(o)) = (prom, ours) {
        // Prometheus prefixes parse errors with `invalid parameter "query": LINE:COL: `.
        let p_core = p
            .split_once("parse error: ")
            .map_or(p.as_str(), |(_, rest)| rest);
        let o_core = o
            .split_once("parse error: ")
            .map_or(o.as_str(), |(_, rest)| rest);
        if p_core != o_core {
            notes.insert(expr.to_string(), (p.clone(), o.clone()));
        }
    }
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Error(_) => "error",
        Outcome::Scalar(_) => "scalar",
        Outcome::String(_) => "string",
        Outcome::Vector(v) if v.is_empty() => "empty vector",
        Outcome::Vector(_) => "vector",
        Outcome::Matrix(m) if m.is_empty() => "empty matrix",
        Outcome::Matrix(_) => "matrix",
    }
}

fn summarize(o: &Outcome) -> String {
    let s = format!("{o:?}");
    if s.len() > 700 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(700).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

fn start_prometheus(dir: &Path, data: &Dataset) -> (ChildGuard, u16) {
    let prometheus = find_binary("prometheus", "prometheus");
    let promtool = find_binary("promtool", "prometheus");
    let om = dir.join("data.om.txt");
    std::fs::write(&om, openmetrics(data)).expect("write openmetrics");
    let tsdb = dir.join("tsdb");
    std::fs::create_dir_all(&tsdb).expect("create tsdb dir");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool backfill failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n",
    )
    .expect("write config");
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let log2 = log.try_clone().expect("clone log");
    let child = Command::new(&prometheus)
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .expect("spawn prometheus");
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited early ({status}):\n{log}");
        }
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus not ready after {READY_TIMEOUT:?}:\n{log}");
        }
        // Bounded polling interval while waiting for the readiness condition.
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, port)
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[test]
fn promql_matches_prometheus() {
    let started = Instant::now();
    let data = dataset();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_guard, port) = start_prometheus(dir.path(), &data);

    // The same samples in both in-process stores; the compressed one must answer identically.
    let mut store = MemStore::new();
    let mut chunked = ChunkedStore::new();
    for (l, pts) in &data {
        for (t, v) in pts {
            store.append(l.clone(), *t, *v).expect("append");
            chunked.append(l.clone(), *t, *v).expect("append");
        }
    }
    let engine = Engine::new(EngineOptions::default());

    // Sanity: Prometheus sees the backfilled data.
    let probe = format!(
        "/api/v1/query?query=count(up)&time={}",
        secs(T0_MS + 600_000)
    );
    let (_, body) = http_get(port, &probe).expect("probe query");
    assert!(
        matches!(prom_outcome(&body), Outcome::Vector(v) if v.len() == 1 && v[0].1 == 10.0),
        "backfilled data not visible to Prometheus: {body}"
    );

    let corpus_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/promql/corpus.txt");
    let corpus = std::fs::read_to_string(&corpus_path).expect("read corpus");
    let exprs: Vec<&str> = corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        exprs.len() >= 300,
        "corpus must hold at least 300 expressions"
    );

    let mut failing_exprs = 0usize;
    let mut evaluations = 0usize;
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut report = String::new();
    for line in &exprs {
        let (expr, instant_only) = match line.strip_prefix("instant-only ") {
            Some(e) => (e.trim(), true),
            None => (*line, false),
        };
        let mut failed = false;
        for &t in &EVAL_TIMES_MS {
            let path = format!("/api/v1/query?query={}&time={}", url_encode(expr), secs(t));
            let (_, body) = http_get(port, &path).expect("prometheus query");
            let prom = prom_outcome(&body);
            let ours = our_outcome(engine.instant(&store, expr, t));
            let ours_chunked = our_outcome(engine.instant(&chunked, expr, t));
            if let Some(why) = compare(expr, &ours, &ours_chunked) {
                failed = true;
                let _ = writeln!(
                    report,
                    "MISMATCH {expr} @ {}: MemStore vs ChunkedStore: {why}",
                    secs(t)
                );
            }
            evaluations += 1;
            *kinds.entry(kind(&prom)).or_default() += 1;
            note_error_texts(&mut errors, expr, &prom, &ours);
            if let Some(why) = compare(expr, &prom, &ours) {
                failed = true;
                let _ = writeln!(
                    report,
                    "MISMATCH {expr}  @ {}: {why}\n  prometheus: {}\n  ours:       {}",
                    secs(t),
                    summarize(&prom),
                    summarize(&ours)
                );
            }
        }
        if instant_only {
            failing_exprs += usize::from(failed);
            continue;
        }
        for (start, end, step) in RANGES_MS {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                url_encode(expr),
                secs(start),
                secs(end),
                secs(step)
            );
            let (_, body) = http_get(port, &path).expect("prometheus range query");
            let prom = prom_outcome(&body);
            let ours = our_outcome(engine.range(&store, expr, start, end, step));
            evaluations += 1;
            note_error_texts(&mut errors, expr, &prom, &ours);
            if let Some(why) = compare(expr, &prom, &ours) {
                failed = true;
                let _ = writeln!(
                    report,
                    "MISMATCH {expr}  range {}..{} step {}: {why}\n  prometheus: {}\n  ours:       {}",
                    secs(start),
                    secs(end),
                    secs(step),
                    summarize(&prom),
                    summarize(&ours)
                );
            }
        }
        failing_exprs += usize::from(failed);
    }
    // Informational: both sides failed, but with different messages (parser wording, or the
    // parse position Prometheus adds). Not a mismatch.
    for (expr, (p, o)) in &errors {
        println!("error text differs for {expr}\n  prometheus: {p}\n  ours:       {o}");
    }
    println!("{report}");
    println!("prometheus instant outcomes by kind: {kinds:?}");
    println!(
        "differential: {} expressions, {} passing, {} failing; {evaluations} evaluations in {:?}",
        exprs.len(),
        exprs.len() - failing_exprs,
        failing_exprs,
        started.elapsed()
    );
    assert_eq!(
        failing_exprs, 0,
        "expressions disagree with Prometheus:\n{report}"
    );
}
