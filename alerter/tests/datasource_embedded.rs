//! The embedded store end to end: its HTTP API read with the Prometheus client, fed by
//! remote write (from a sender written to the real protocol, and from a real Prometheus) and by
//! scraping exporters served by the test; staleness, retention, and bad input.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ChildGuard, find_binary};

use prost::Message;
use tocsin_alerter::datasource::embedded::scrape::RawScrapeConfig;
use tocsin_alerter::datasource::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use tocsin_alerter::datasource::{
    Datasource, DatasourceError, Fault, InstantQuery, PrometheusClient, RangeQuery,
    RawPrometheusConfig,
};
use tocsin_alerter::promql::{Labels, STALE_NAN, Store, Value, is_stale};
use tocsin_proto::pb::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// 2024-03-10T00:00:00Z.
const T0_MS: i64 = 1_710_028_800_000;
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for scrapes and remote writes to land.
const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or `within` passes.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        // Bounded polling interval while waiting for the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An embedded store serving its API on a free loopback port.
struct Served {
    svc: Arc<EmbeddedStore>,
    url: String,
    client: PrometheusClient,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve(cfg: EmbeddedStoreConfig) -> Served {
    let svc = EmbeddedStore::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = svc.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = PrometheusClient::new(
        RawPrometheusConfig::with_url(url.clone())
            .validate()
            .unwrap(),
    )
    .unwrap();
    Served {
        svc,
        url,
        client,
        _server: server,
    }
}

fn iq(expr: &str, ts_ms: i64) -> InstantQuery {
    InstantQuery {
        expr: expr.into(),
        ts_ms,
        timeout: QUERY_TIMEOUT,
    }
}

/// A remote-write sender built from the protocol itself: protobuf `WriteRequest`, snappy
/// block compression, the documented headers.
/// A series to send: labels and `(t_ms, value)` samples.
type WireSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

async fn remote_write(url: &str, series: &[WireSeries<'_>]) -> (u16, String) {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|(t, v)| Sample {
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    post_write(url, body).await
}

async fn post_write(url: &str, body: Vec<u8>) -> (u16, String) {
    let resp = support::http()
        .post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn get_json(url: &str) -> serde_json::Value {
    support::http()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn vector(v: &Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(s) => s.iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        other => panic!("expected a vector, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_then_read_back_through_the_http_api() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let pts: Vec<(i64, f64)> = (0..100).map(|i| (T0_MS + i * 15_000, i as f64)).collect();
    let (status, body) = remote_write(
        &s.url,
        &[
            (
                vec![
                    ("__name__", "requests_total"),
                    ("job", "api"),
                    ("instance", "a"),
                ],
                pts.clone(),
            ),
            (
                vec![
                    ("__name__", "requests_total"),
                    ("job", "api"),
                    ("instance", "b"),
                ],
                pts,
            ),
            (
                vec![("__name__", "special"), ("kind", "nan")],
                vec![(T0_MS, f64::NAN)],
            ),
            (
                vec![("__name__", "special"), ("kind", "inf")],
                vec![(T0_MS, f64::INFINITY)],
            ),
        ],
    )
    .await;
    assert_eq!(status, 204, "{body}");

    let at = T0_MS + 60 * 15_000;
    let out = s
        .client
        .instant(&iq("sum(requests_total)", at))
        .await
        .unwrap();
    assert_eq!(vector(&out.value), vec![("{}".to_string(), 120.0)]);
    let out = s.client.instant(&iq("special", T0_MS)).await.unwrap();
    let got = vector(&out.value);
    assert_eq!(got.len(), 2);
    assert!(got.iter().any(|(_, v)| v.is_nan()) && got.iter().any(|(_, v)| *v == f64::INFINITY));
    let out = s.client.instant(&iq("1 / 0", at)).await.unwrap();
    assert_eq!(
        out.value,
        Value::Scalar {
            t: at,
            v: f64::INFINITY
        }
    );
    let out = s.client.instant(&iq("\"s\"", at)).await.unwrap();
    assert_eq!(
        out.value,
        Value::String {
            t: at,
            s: "s".into()
        }
    );
    let range = RangeQuery {
        expr: "rate(requests_total{instance=\"a\"}[1m])".into(),
        start_ms: T0_MS + 300_000,
        end_ms: T0_MS + 600_000,
        step_ms: 60_000,
        timeout: QUERY_TIMEOUT,
    };
    let Value::Matrix(m) = s.client.range(&range).await.unwrap().value else {
        panic!("matrix expected");
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].points.len(), 6);
    assert!(m[0].points.iter().all(|p| (p.v - 1.0 / 15.0).abs() < 1e-12));
    let out = s
        .client
        .instant(&iq("requests_total[1m]", at))
        .await
        .unwrap();
    assert!(matches!(out.value, Value::Matrix(ref m) if m.len() == 2 && m[0].points.len() == 5));

    // Metadata endpoints, in Prometheus's shapes.
    let series = get_json(&format!(
        "{}/api/v1/series?match[]=requests_total%7Binstance%3D%22a%22%7D",
        s.url
    ))
    .await;
    assert_eq!(
        series,
        serde_json::json!({"status":"success","data":[{"__name__":"requests_total","instance":"a","job":"api"}]})
    );
    let labels = get_json(&format!("{}/api/v1/labels", s.url)).await;
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "instance", "job", "kind"])
    );
    let values = get_json(&format!("{}/api/v1/label/__name__/values", s.url)).await;
    assert_eq!(
        values["data"],
        serde_json::json!(["requests_total", "special"])
    );
    let values = get_json(&format!(
        "{}/api/v1/label/instance/values?match[]=special",
        s.url
    ))
    .await;
    assert_eq!(values["data"], serde_json::json!([]));
    let bad = get_json(&format!("{}/api/v1/series", s.url)).await;
    assert_eq!(bad["errorType"], "bad_data");

    let err = s.client.instant(&iq("sum(", at)).await.unwrap_err();
    assert!(matches!(err, DatasourceError::BadQuery { .. }), "{err}");
    assert_eq!(s.svc.stats().counts().samples_appended, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staleness_marker_ends_a_series_and_out_of_order_samples_are_refused() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let l = vec![("__name__", "g"), ("job", "x")];
    let (status, _) = remote_write(
        &s.url,
        &[(l.clone(), vec![(T0_MS, 1.0), (T0_MS + 15_000, STALE_NAN)])],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        vector(
            &s.client
                .instant(&iq("g", T0_MS + 10_000))
                .await
                .unwrap()
                .value
        )
        .len(),
        1
    );
    // Within the 5m lookback, but after the marker: gone.
    assert!(
        vector(
            &s.client
                .instant(&iq("g", T0_MS + 20_000))
                .await
                .unwrap()
                .value
        )
        .is_empty()
    );
    let (status, body) = remote_write(&s.url, &[(l, vec![(T0_MS, 5.0)])]).await;
    assert_eq!(status, 400);
    assert!(body.contains("out-of-order"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_remote_write_bodies_are_refused_and_the_store_keeps_serving() {
    let cfg = EmbeddedStoreConfig {
        write_body_bytes_max: 64 * 1024,
        ..EmbeddedStoreConfig::default()
    };
    let s = serve(cfg).await;
    let (status, body) = post_write(&s.url, b"\xff\xfe not snappy at all".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("not snappy"), "{body}");
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff\xff")
        .unwrap();
    let (status, body) = post_write(&s.url, not_proto).await;
    assert_eq!(status, 400);
    assert!(body.contains("not a protobuf"), "{body}");
    let (status, body) = post_write(&s.url, vec![0u8; 1024 * 1024]).await;
    assert_eq!(status, 413, "{body}");
    let nameless = remote_write(&s.url, &[(vec![("job", "x")], vec![(T0_MS, 1.0)])]).await;
    assert_eq!(nameless.0, 400);
    assert!(nameless.1.contains("metric name"), "{}", nameless.1);
    assert_eq!(s.svc.stats().counts().writes_refused, 2);
    // Still serving.
    let (status, _) = remote_write(&s.url, &[(vec![("__name__", "ok")], vec![(T0_MS, 1.0)])]).await;
    assert_eq!(status, 204);
    assert_eq!(
        vector(&s.client.instant(&iq("ok", T0_MS)).await.unwrap().value).len(),
        1
    );
}

/// Writes 1 000 series with a sample every 4 minutes over 3 hours: every 1 s step of a
/// 3 h range query sees every series, 11 M points in all. Returns that query.
async fn wide_data(s: &Served, timeout: Duration) -> RangeQuery {
    let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let series: Vec<_> = names
        .iter()
        .map(|n| {
            (
                vec![("__name__", "wide"), ("i", n.as_str())],
                (0..46).map(|k| (T0_MS + k * 240_000, 1.0)).collect(),
            )
        })
        .collect();
    assert_eq!(remote_write(&s.url, &series).await.0, 204);
    RangeQuery {
        expr: "wide".into(),
        start_ms: T0_MS,
        end_ms: T0_MS + 10_999_000,
        step_ms: 1_000,
        timeout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_for_ten_million_points_is_refused() {
    let cfg = EmbeddedStoreConfig {
        query_samples_max: 200_000,
        ..EmbeddedStoreConfig::default()
    };
    let s = serve(cfg).await;
    let q = wide_data(&s, QUERY_TIMEOUT).await;
    let err = s.client.range(&q).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Execution { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Query);
    assert!(err.to_string().contains("too many samples"), "{err}");
    let ok = s
        .client
        .instant(&iq("count(wide)", T0_MS + 60_000))
        .await
        .unwrap();
    assert_eq!(vector(&ok.value)[0].1, 1000.0, "the store keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_deadline_stops_evaluating_and_ingestion_continues() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let q = wide_data(&s, Duration::from_millis(300)).await;
    let baseline = Arc::strong_count(s.svc.store());
    let start = Instant::now();
    let err = s.client.range(&q).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(3));
    // The evaluation itself stops (it held a handle on the store while running).
    let svc = Arc::clone(&s.svc);
    wait_until("evaluation stopped", Duration::from_secs(5), || {
        let done = Arc::strong_count(svc.store()) == baseline;
        async move { done }
    })
    .await;
    let (status, _) =
        remote_write(&s.url, &[(vec![("__name__", "later")], vec![(T0_MS, 1.0)])]).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_data() {
    let cfg = EmbeddedStoreConfig {
        retention_ms: 3_600_000,
        ..EmbeddedStoreConfig::default()
    };
    let s = serve(cfg).await;
    let old: Vec<(i64, f64)> = (0..200).map(|i| (T0_MS + i * 15_000, 1.0)).collect();
    let late = T0_MS + 10 * 3_600_000;
    let (status, _) = remote_write(
        &s.url,
        &[
            (vec![("__name__", "old")], old),
            (vec![("__name__", "new")], vec![(late, 1.0)]),
        ],
    )
    .await;
    assert_eq!(status, 204);
    let dropped = s.svc.store().write().unwrap().apply_retention(late);
    assert_eq!(dropped, 200);
    let values = get_json(&format!("{}/api/v1/label/__name__/values", s.url)).await;
    assert_eq!(values["data"], serde_json::json!(["new"]));
    assert!(
        vector(
            &s.client
                .instant(&iq("old", T0_MS + 60_000))
                .await
                .unwrap()
                .value
        )
        .is_empty()
    );
}

/// An exporter served by the test; its body and status can be changed between scrapes.
#[derive(Clone)]
struct Exporter {
    body: Arc<Mutex<(u16, String)>>,
    addr: String,
}

async fn exporter(initial: &str) -> Exporter {
    let body = Arc::new(Mutex::new((200, initial.to_string())));
    let state = Arc::clone(&body);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = Arc::clone(&state);
            async move {
                let (status, text) = state.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Exporter { body, addr }
}

fn job(name: &str, targets: Vec<String>) -> RawScrapeConfig {
    RawScrapeConfig {
        job_name: name.into(),
        targets,
        metrics_path: "/metrics".into(),
        scrape_interval_ms: 100,
        scrape_timeout_ms: 100,
        body_size_limit_bytes: 1024 * 1024,
        sample_limit: 1000,
    }
}

/// The newest sample of the series matching `{__name__=name, instance=instance}`.
fn newest(svc: &EmbeddedStore, name: &str, instance: &str) -> Option<f64> {
    use promql_parser::label::{MatchOp, Matcher};
    let m = [
        Matcher::new(MatchOp::Equal, "__name__", name),
        Matcher::new(MatchOp::Equal, "instance", instance),
    ];
    let got = svc
        .store()
        .read()
        .unwrap()
        .select(&m, i64::MIN, i64::MAX)
        .unwrap();
    got.first().and_then(|s| s.points.last()).map(|p| p.v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraping_an_exporter_with_up_duration_and_staleness() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let exp = exporter("# TYPE a gauge\na{x=\"1\"} 7\nb 2\n").await;
    let cfg = job("node", vec![exp.addr.clone()]).validate().unwrap();
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    s.svc
        .spawn_scrapers(&[cfg], &support::http(), &cancel, &mut tasks);
    let svc = Arc::clone(&s.svc);
    let inst = exp.addr.clone();
    wait_until("first scrape", WAIT, || {
        let ok = newest(&svc, "up", &inst) == Some(1.0) && newest(&svc, "b", &inst) == Some(2.0);
        async move { ok }
    })
    .await;
    // Read back through the HTTP API at the current time.
    let now = newest_time(&s.svc, "up", &exp.addr);
    let out = s.client.instant(&iq("a", now)).await.unwrap();
    let want = Labels::from_pairs([
        ("__name__", "a"),
        ("instance", exp.addr.as_str()),
        ("job", "node"),
        ("x", "1"),
    ]);
    assert!(
        matches!(out.value, Value::Vector(ref v) if v.len() == 1 && v[0].labels == want && v[0].v == 7.0)
    );
    let d = newest(&s.svc, "scrape_duration_seconds", &exp.addr).unwrap();
    assert!(d > 0.0 && d < 1.0, "{d}");
    assert_eq!(
        newest(&s.svc, "scrape_samples_scraped", &exp.addr),
        Some(2.0)
    );

    // `b` vanishes from the exporter: a staleness marker ends it.
    exp.body.lock().unwrap().1 = "a{x=\"1\"} 8\n".into();
    wait_until("b marked stale", WAIT, || {
        let ok = newest(&svc, "b", &inst).is_some_and(is_stale);
        async move { ok }
    })
    .await;
    let now = newest_time(&s.svc, "up", &exp.addr);
    assert!(vector(&s.client.instant(&iq("b", now)).await.unwrap().value).is_empty());
    assert_eq!(
        vector(&s.client.instant(&iq("a", now)).await.unwrap().value)[0].1,
        8.0
    );

    // The target fails: `up` is 0 and its series go stale.
    *exp.body.lock().unwrap() = (500, "oops".into());
    wait_until("up = 0", WAIT, || {
        let ok = newest(&svc, "up", &inst) == Some(0.0)
            && newest(&svc, "a", &inst).is_some_and(is_stale);
        async move { ok }
    })
    .await;

    // The target is removed: even `up` goes stale.
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    assert!(newest(&s.svc, "up", &exp.addr).is_some_and(is_stale));
    assert!(s.svc.stats().counts().scrape_failures >= 1);
}

fn newest_time(svc: &EmbeddedStore, name: &str, instance: &str) -> i64 {
    use promql_parser::label::{MatchOp, Matcher};
    let m = [
        Matcher::new(MatchOp::Equal, "__name__", name),
        Matcher::new(MatchOp::Equal, "instance", instance),
    ];
    let got = svc
        .store()
        .read()
        .unwrap()
        .select(&m, i64::MIN, i64::MAX)
        .unwrap();
    got[0].points.last().unwrap().t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_endless_and_flooding_targets_fail_alone() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let good = exporter("fine 1\n").await;
    let garbage = exporter("<html><body>this is not metrics</body></html>\n").await;
    let flood: String = (0..1_000_000)
        .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
        .collect();
    let flood = exporter(&flood).await;
    // Endless: a body that never ends, streamed.
    let endless = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let line = "endless_metric 1\n".repeat(4096);
                    while sock.write_all(line.as_bytes()).await.is_ok() {}
                });
            }
        });
        addr
    };
    let mut raw = job(
        "mixed",
        vec![
            good.addr.clone(),
            garbage.addr.clone(),
            flood.addr.clone(),
            endless.clone(),
        ],
    );
    raw.scrape_interval_ms = 1_000;
    raw.scrape_timeout_ms = 1_000;
    raw.body_size_limit_bytes = 32 * 1024 * 1024;
    let cfg = raw.validate().unwrap();
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    s.svc
        .spawn_scrapers(&[cfg], &support::http(), &cancel, &mut tasks);
    let svc = Arc::clone(&s.svc);
    let addrs = [
        good.addr.clone(),
        garbage.addr.clone(),
        flood.addr.clone(),
        endless.clone(),
    ];
    wait_until("every target scraped once", WAIT, || {
        let ok = addrs.iter().all(|a| newest(&svc, "up", a).is_some());
        async move { ok }
    })
    .await;
    assert_eq!(newest(&s.svc, "up", &good.addr), Some(1.0));
    assert_eq!(newest(&s.svc, "fine", &good.addr), Some(1.0));
    for bad in [&garbage.addr, &flood.addr, &endless] {
        assert_eq!(newest(&s.svc, "up", bad), Some(0.0), "{bad}");
    }
    assert!(
        newest(&s.svc, "m", &flood.addr).is_none(),
        "nothing of the flood is stored"
    );
    assert!(newest(&s.svc, "endless_metric", &endless).is_none());
    assert!(s.svc.stats().counts().scrape_failures >= 3);
    let now = newest_time(&s.svc, "up", &good.addr);
    let out = s.client.instant(&iq("sum(up)", now)).await.unwrap();
    assert_eq!(vector(&out.value)[0].1, 1.0, "the store keeps serving");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_into_the_store() {
    let prometheus = find_binary("prometheus", "prometheus");
    let s = serve(EmbeddedStoreConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n",
        s.url
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _child = ChildGuard(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let svc = Arc::clone(&s.svc);
    let instance = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("prometheus.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if newest(&svc, "up", &instance) == Some(1.0)
            && newest(&svc, "prometheus_build_info", &instance).is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no remote write from prometheus:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        // Bounded polling interval while waiting for the first remote-write batch.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = newest_time(&s.svc, "up", &instance);
    let out = s.client.instant(&iq("up{job=\"self\"}", t)).await.unwrap();
    assert_eq!(vector(&out.value).len(), 1);
    assert_eq!(s.svc.stats().counts().writes_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_on_disk_log_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (svc, report) = EmbeddedStore::open(EmbeddedStoreConfig::default(), &path).unwrap();
    assert_eq!(report.samples, 0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, svc.router()).into_future());
    let pts: Vec<(i64, f64)> = (0..300).map(|i| (T0_MS + i * 15_000, i as f64)).collect();
    let (status, _) = remote_write(
        &url,
        &[
            (vec![("__name__", "kept"), ("job", "a")], pts),
            (
                vec![("__name__", "gone")],
                vec![(T0_MS, 1.0), (T0_MS + 15_000, STALE_NAN)],
            ),
        ],
    )
    .await;
    assert_eq!(status, 204);
    server.abort();
    let _ = server.await;
    // Shutdown: flush and fsync, then close (dropping the last handle joins the writer).
    let closing = Arc::clone(&svc);
    tokio::task::spawn_blocking(move || closing.wal().unwrap().sync())
        .await
        .unwrap();
    drop(svc);

    let (svc, report) = EmbeddedStore::open(EmbeddedStoreConfig::default(), &path).unwrap();
    assert_eq!(report.samples, 302);
    assert_eq!(report.truncated_bytes, 0);
    let at = T0_MS + 299 * 15_000;
    let out = svc.datasource().instant(&iq("kept", at)).await.unwrap();
    assert_eq!(vector(&out.value)[0].1, 299.0);
    let out = svc
        .datasource()
        .instant(&iq("gone", T0_MS + 20_000))
        .await
        .unwrap();
    assert!(
        vector(&out.value).is_empty(),
        "the staleness marker survived the restart"
    );
}

/// A rule group's queries in one `/api/v1/query_batch` request: each answer is what
/// `/api/v1/query` gives, in order, a bad query failing alone; bad batches are refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_queries_answers_each_as_a_single_query_would() {
    let s = serve(EmbeddedStoreConfig::default()).await;
    let pts: Vec<(i64, f64)> = (0..40).map(|i| (T0_MS + i * 15_000, i as f64)).collect();
    let (status, body) = remote_write(
        &s.url,
        &[
            (vec![("__name__", "up"), ("job", "a")], pts.clone()),
            (vec![("__name__", "up"), ("job", "b")], pts),
        ],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let at = T0_MS + 30 * 15_000;
    let qs = [
        iq("up", at),
        iq("sum(up) by (", at),
        iq("sum(up)", at),
        iq("scalar(up{job=\"a\"})", at),
        iq("missing_metric", at),
    ];
    let batch = s.client.instant_many(&qs).await;
    assert_eq!(batch.len(), qs.len());
    assert!(
        s.client.batches_queries(),
        "the store answered the batch endpoint"
    );
    for (q, got) in qs.iter().zip(&batch) {
        let alone = s.client.instant(q).await;
        assert_eq!(got, &alone, "{}", q.expr);
    }
    assert!(matches!(batch[1], Err(DatasourceError::BadQuery { .. })));
    assert_eq!(
        vector(&batch[2].as_ref().unwrap().value),
        vec![("{}".into(), 60.0)]
    );

    // The raw endpoint: answers in order, in the API's shapes.
    let url = format!(
        "{}/api/v1/query_batch?query=up&query=up%20%2B&time={}",
        s.url,
        at as f64 / 1000.0
    );
    let v = get_json(&url).await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"][0]["data"]["resultType"], "vector");
    assert_eq!(v["data"][1]["status"], "error");
    assert_eq!(v["data"][1]["errorType"], "bad_data");
    // No query, or more than the cap: the whole request is refused.
    let v = get_json(&format!("{}/api/v1/query_batch?time=1", s.url)).await;
    assert_eq!(v["errorType"], "bad_data", "{v}");
    let many = "query=up&".repeat(tocsin_alerter::datasource::embedded::api::BATCH_QUERIES_MAX + 1);
    let v = get_json(&format!("{}/api/v1/query_batch?{many}time=1", s.url)).await;
    assert_eq!(v["errorType"], "bad_data", "{v}");
    assert!(v["error"].as_str().unwrap().contains("at most"), "{v}");
}
