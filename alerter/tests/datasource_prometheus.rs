//! The Prometheus HTTP client against a real Prometheus (the Debian package), started by each
//! test on a free loopback port with backfilled data; and against a tiny canned server only for
//! what Prometheus cannot produce (auth and header checks, warnings, hung or endless answers).
//!
//! The same dataset is loaded into Tocsin's embedded datasource, so every answer read from
//! Prometheus through the client is also compared with the in-process engine's answer.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use support::{ChildGuard, find_binary, free_port};

use tocsin_alerter::datasource::prometheus::RawBasicAuth;
use tocsin_alerter::datasource::{
    Datasource, DatasourceError, EmbeddedDatasource, Fault, InstantQuery, PrometheusClient,
    RangeQuery, RawPrometheusConfig,
};
use tocsin_alerter::promql::{ChunkedStore, Engine, EngineOptions, Labels, Value};

/// 2024-03-10T00:00:00Z: data at a fixed historical time, behind Prometheus's head.
const T0_MS: i64 = 1_710_028_800_000;
const SCRAPE_MS: i64 = 15_000;
/// One hour of samples.
const STEPS: i64 = 240;
/// Bound on waiting for Prometheus to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of ordinary test queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

type Dataset = Vec<(Labels, Vec<(i64, f64)>)>;

fn dataset() -> Dataset {
    let times = || (0..=STEPS).map(|i| T0_MS + i * SCRAPE_MS);
    let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
    let mut out: Dataset = Vec::new();
    for (inst, per_step) in [("a", 10.0), ("b", 3.0)] {
        let pts = times()
            .enumerate()
            .map(|(i, t)| (t, i as f64 * per_step))
            .collect();
        out.push((
            l(&[
                ("__name__", "requests_total"),
                ("job", "api"),
                ("instance", inst),
            ]),
            pts,
        ));
        let up = times().map(|t| {
            (
                t,
                if inst == "b" && (t / SCRAPE_MS) % 7 == 0 {
                    0.0
                } else {
                    1.0
                },
            )
        });
        out.push((
            l(&[("__name__", "up"), ("job", "api"), ("instance", inst)]),
            up.collect(),
        ));
    }
    for (kind, v) in [
        ("nan", f64::NAN),
        ("pinf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
    ] {
        let pts = times().map(|t| (t, v)).collect();
        out.push((l(&[("__name__", "special"), ("kind", kind)]), pts));
    }
    out
}

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
    for (l, pts) in data {
        let rest: Vec<String> = l
            .iter()
            .filter(|(n, _)| *n != "__name__")
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect();
        for (t, v) in pts {
            s.push_str(&format!(
                "{}{{{}}} {} {}.{:03}\n",
                l.get("__name__"),
                rest.join(","),
                fmt_value(*v),
                t / 1000,
                t % 1000
            ));
        }
    }
    s.push_str("# EOF\n");
    s
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200")
}

/// A running Prometheus serving [`dataset`], and the same data in the embedded datasource.
struct Fixture {
    _dir: tempfile::TempDir,
    prometheus: ChildGuard,
    port: u16,
    embedded: EmbeddedDatasource<ChunkedStore>,
}

impl Fixture {
    fn start() -> Self {
        let prometheus = find_binary("prometheus", "prometheus");
        let promtool = find_binary("promtool", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dataset();
        let om = dir.path().join("data.om.txt");
        std::fs::write(&om, openmetrics(&data)).expect("write openmetrics");
        let tsdb = dir.path().join("tsdb");
        std::fs::create_dir_all(&tsdb).expect("create tsdb dir");
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&tsdb)
            .output()
            .expect("run promtool");
        assert!(out.status.success(), "promtool backfill failed: {out:?}");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(&prometheus)
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        let mut guard = ChildGuard(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        while !ready(port) {
            if let Ok(Some(status)) = guard.0.try_wait() {
                panic!("prometheus exited early ({status}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                log()
            );
            // Bounded polling interval while waiting for the readiness condition.
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut store = ChunkedStore::new();
        for (l, pts) in &data {
            for (t, v) in pts {
                store.append(l.clone(), *t, *v).expect("append");
            }
        }
        let embedded = EmbeddedDatasource::new(
            Arc::new(Engine::new(EngineOptions::default())),
            Arc::new(RwLock::new(store)),
        );
        Self {
            _dir: dir,
            prometheus: guard,
            port,
            embedded,
        }
    }

    fn client(&self) -> PrometheusClient {
        client_for(RawPrometheusConfig::with_url(format!(
            "http://127.0.0.1:{}",
            self.port
        )))
    }
}

fn client_for(raw: RawPrometheusConfig) -> PrometheusClient {
    PrometheusClient::new(raw.validate().expect("valid config")).expect("client")
}

fn iq(expr: &str, ts_ms: i64) -> InstantQuery {
    InstantQuery {
        expr: expr.into(),
        ts_ms,
        timeout: QUERY_TIMEOUT,
    }
}

fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Asserts two results are the same value: same type, labels, timestamps, values (NaN = NaN).
fn assert_same(what: &str, a: &Value, b: &Value) {
    let ok = match (a, b) {
        (Value::Scalar { t, v }, Value::Scalar { t: t2, v: v2 }) => t == t2 && same_f64(*v, *v2),
        (Value::String { .. }, Value::String { .. }) => a == b,
        (Value::Vector(x), Value::Vector(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort_by(|p, q| p.labels.cmp(&q.labels));
            y.sort_by(|p, q| p.labels.cmp(&q.labels));
            x.len() == y.len()
                && x.iter()
                    .zip(&y)
                    .all(|(p, q)| p.labels == q.labels && p.t == q.t && same_f64(p.v, q.v))
        }
        (Value::Matrix(x), Value::Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p.labels == q.labels
                        && p.points.len() == q.points.len()
                        && p.points
                            .iter()
                            .zip(&q.points)
                            .all(|(u, w)| u.t == w.t && same_f64(u.v, w.v))
                })
        }
        _ => false,
    };
    assert!(
        ok,
        "{what}: results differ\n  prometheus: {a:?}\n  embedded:   {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_queries_read_every_result_type_from_real_prometheus() {
    let fx = Fixture::start();
    let client = fx.client();
    let ts = T0_MS + 1_800_000;
    let cases = [
        ("up", "vector"),
        ("special", "vector"),
        ("sum by (job) (rate(requests_total[5m]))", "vector"),
        ("1 / 0", "scalar"),
        ("-1 / 0", "scalar"),
        ("0 / 0", "scalar"),
        ("scalar(sum(up))", "scalar"),
        ("\"hello\"", "string"),
        ("requests_total[1m]", "matrix"),
        ("special[30s]", "matrix"),
        ("absent(nonexistent)", "vector"),
        ("nonexistent", "vector"),
    ];
    for (expr, kind) in cases {
        let ours = fx.embedded.instant(&iq(expr, ts)).await.expect(expr);
        let got = client.instant(&iq(expr, ts)).await.expect(expr);
        assert!(got.warnings.is_empty(), "{expr}: {:?}", got.warnings);
        let got_kind = match got.value {
            Value::Scalar { .. } => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String { .. } => "string",
        };
        assert_eq!(got_kind, kind, "{expr}");
        assert_same(expr, &got.value, &ours.value);
    }
    let Value::Vector(specials) = client.instant(&iq("special", ts)).await.unwrap().value else {
        panic!("special is a vector");
    };
    let by_kind = |k: &str| {
        specials
            .iter()
            .find(|s| s.labels.get("kind") == k)
            .unwrap()
            .v
    };
    assert!(by_kind("nan").is_nan());
    assert_eq!(by_kind("pinf"), f64::INFINITY);
    assert_eq!(by_kind("ninf"), f64::NEG_INFINITY);

    // A rule group's queries at once: Prometheus has no batch endpoint (it answers 404), so
    // the client asks each on its own, then and afterwards, with the same answers.
    let qs: Vec<InstantQuery> = cases.iter().map(|(e, _)| iq(e, ts)).collect();
    assert!(client.batches_queries(), "no batch tried yet");
    for round in 0..2 {
        let answers = client.instant_many(&qs).await;
        assert!(!client.batches_queries(), "the 404 switched batching off");
        assert_eq!(answers.len(), qs.len());
        for (q, got) in qs.iter().zip(answers) {
            let got = got.unwrap_or_else(|e| panic!("round {round}, {}: {e}", q.expr));
            let ours = fx.embedded.instant(q).await.expect(&q.expr);
            assert_same(&q.expr, &got.value, &ours.value);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_match_the_embedded_engine() {
    let fx = Fixture::start();
    let client = fx.client();
    for expr in [
        "rate(requests_total[2m])",
        "sum(up)",
        "1 / 0",
        "special",
        "time()",
    ] {
        let q = RangeQuery {
            expr: expr.into(),
            start_ms: T0_MS + 600_000,
            end_ms: T0_MS + 1_200_000,
            step_ms: 45_000,
            timeout: QUERY_TIMEOUT,
        };
        let got = client.range(&q).await.expect(expr);
        let ours = fx.embedded.range(&q).await.expect(expr);
        assert!(
            matches!(got.value, Value::Matrix(ref m) if !m.is_empty()),
            "{expr}"
        );
        assert_same(expr, &got.value, &ours.value);
    }
    let bad_step = RangeQuery {
        expr: "up".into(),
        start_ms: T0_MS,
        end_ms: T0_MS + 1_000,
        step_ms: 0,
        timeout: QUERY_TIMEOUT,
    };
    let err = client.range(&bad_step).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Query, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_offset_moves_the_evaluation_time_back() {
    let fx = Fixture::start();
    let mut raw = RawPrometheusConfig::with_url(format!("http://127.0.0.1:{}", fx.port));
    raw.query_offset_ms = 60_000;
    let offset = client_for(raw);
    let plain = fx.client();
    let ts = T0_MS + 1_800_000;
    let shifted = offset.instant(&iq("requests_total", ts)).await.unwrap();
    let earlier = plain
        .instant(&iq("requests_total", ts - 60_000))
        .await
        .unwrap();
    assert_eq!(shifted, earlier);
    let now = plain.instant(&iq("requests_total", ts)).await.unwrap();
    assert_ne!(shifted, now, "the offset must change the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_are_typed_by_fault() {
    let fx = Fixture::start();
    let client = fx.client();
    let ts = T0_MS + 1_800_000;
    let err = client.instant(&iq("sum(up", ts)).await.unwrap_err();
    assert!(matches!(err, DatasourceError::BadQuery { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Query);
    assert!(!err.is_retryable());
    // Many-to-many matching is an evaluation error (`execution`, HTTP 422).
    let err = client
        .instant(&iq("special + on() requests_total", ts))
        .await
        .unwrap_err();
    assert!(matches!(err, DatasourceError::Execution { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_times_out_as_a_datasource_fault() {
    let fx = Fixture::start();
    let client = fx.client();
    // Millions of subquery steps: far longer than the deadline on any machine.
    let q = InstantQuery {
        expr: "count_over_time(vector(1)[6h:1ms])".into(),
        ts_ms: T0_MS + 3_600_000,
        timeout: Duration::from_millis(1_000),
    };
    let start = Instant::now();
    let err = client.instant(&q).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "bounded by the deadline"
    );
    // Prometheus itself gave up (its `timeout=` is under our deadline) and said so.
    assert!(err.to_string().contains("query timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datasource_that_is_down_is_unavailable_and_retryable() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let ts = T0_MS + 1_800_000;
    client
        .instant(&iq("up", ts))
        .await
        .expect("up while running");
    fx.prometheus.0.kill().expect("kill prometheus");
    fx.prometheus.0.wait().expect("reap prometheus");
    let err = client.instant(&iq("up", ts)).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    let never = client_for(RawPrometheusConfig::with_url(format!(
        "http://127.0.0.1:{}",
        free_port()
    )));
    let err = never.instant(&iq("up", ts)).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unavailable { .. }), "{err}");
}

/// What the canned server saw of one request.
#[derive(Debug, Clone, Default)]
struct Seen {
    authorization: Option<String>,
    tenant: Option<String>,
    body: String,
}

/// A canned Prometheus-API server: records headers and answers `body` with `status`.
async fn canned(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let handler = move |headers: HeaderMap, req_body: String| {
        let log = Arc::clone(&log);
        async move {
            let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
            log.lock().unwrap().push(Seen {
                authorization: get("authorization"),
                tenant: get("x-scope-orgid"),
                body: req_body,
            });
            (StatusCode::from_u16(status).unwrap(), body)
        }
    };
    let app = axum::Router::new().route("/prefix/api/v1/query", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/prefix", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn auth_headers_and_warnings_reach_the_wire() {
    let (url, seen) = canned(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]},"warnings":["partial data"]}"#,
    )
    .await;
    let mut raw = RawPrometheusConfig::with_url(url.clone());
    raw.basic_auth = Some(RawBasicAuth {
        username: "alice".into(),
        password: "s3cret".into(),
    });
    raw.headers
        .insert("X-Scope-OrgID".into(), "tenant-1".into());
    let out = client_for(raw).instant(&iq("up", 1_500)).await.unwrap();
    assert_eq!(out.value, Value::Scalar { t: 1_000, v: 2.0 });
    assert_eq!(out.warnings, vec!["partial data".to_string()]);
    let mut raw = RawPrometheusConfig::with_url(url);
    raw.bearer_token = Some("tok123".into());
    client_for(raw).instant(&iq("up", 1_500)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    // base64("alice:s3cret")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic YWxpY2U6czNjcmV0")
    );
    assert_eq!(seen[0].tenant.as_deref(), Some("tenant-1"));
    assert!(
        seen[0].body.contains("query=up&time=1.500&timeout="),
        "{}",
        seen[0].body
    );
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok123"));
    assert_eq!(seen[1].tenant, None);
}

#[tokio::test]
async fn auth_failures_and_gateway_errors_are_datasource_faults() {
    let (url, _) = canned(401, "unauthorized").await;
    let err = client_for(RawPrometheusConfig::with_url(url))
        .instant(&iq("up", 0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DatasourceError::Http {
            status: 401,
            message: "unauthorized".into()
        }
    );
    assert_eq!(err.fault(), Fault::Datasource);
    let (url, _) = canned(502, "<html>bad gateway</html>").await;
    let err = client_for(RawPrometheusConfig::with_url(url))
        .instant(&iq("up", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatasourceError::Http { status: 502, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_hung_server_and_an_endless_answer_are_bounded() {
    // Accepts connections and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let q = InstantQuery {
        expr: "up".into(),
        ts_ms: 0,
        timeout: Duration::from_millis(300),
    };
    let start = Instant::now();
    let err = client_for(RawPrometheusConfig::with_url(url))
        .instant(&q)
        .await
        .unwrap_err();
    assert!(matches!(err, DatasourceError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(hung);

    // Streams an endless body: refused once it passes `response_bytes_max`.
    let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", endless.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = endless.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    });
    let mut raw = RawPrometheusConfig::with_url(url);
    raw.response_bytes_max = 1024 * 1024;
    let q = InstantQuery {
        timeout: QUERY_TIMEOUT,
        ..q
    };
    let err = client_for(raw).instant(&q).await.unwrap_err();
    assert!(
        matches!(err, DatasourceError::InvalidResponse { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("response_bytes_max"), "{err}");
}
