//! The Redis query cache against a real Redis (`redis-server`, started by each test on a free
//! loopback port).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use support::{ChildGuard, free_port};

use tocsin_alerter::datasource::cache::{CacheConfig, CachedDatasource};
use tocsin_alerter::datasource::{
    Datasource, DatasourceError, EmbeddedDatasource, InstantQuery, QueryFuture, RangeQuery,
};
use tocsin_alerter::promql::{ChunkedStore, Engine, EngineOptions, Labels, Value};

const T0_MS: i64 = 1_710_028_800_000;

/// Starts `redis-server` on a free port and waits until it answers PING.
fn start_redis() -> (ChildGuard, String) {
    let bin = Path::new("/usr/bin/redis-server");
    assert!(
        bin.exists(),
        "`redis-server` not found: the cache tests need a real Redis. \
         Install it with `apt-get install redis-server`."
    );
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let guard = ChildGuard(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on {addr}"
        );
        // Bounded polling interval while waiting for Redis to listen.
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, addr)
}

/// Counts the queries that reach the datasource.
#[derive(Debug)]
struct Counting {
    inner: EmbeddedDatasource<ChunkedStore>,
    calls: AtomicUsize,
}

impl Datasource for Counting {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.instant(q)
    }
    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.range(q)
    }
}

fn counting() -> Arc<Counting> {
    let mut store = ChunkedStore::new();
    for (i, v) in [(0, 1.0), (1, f64::NAN), (2, f64::INFINITY)] {
        let l = Labels::from_pairs([("__name__", "m"), ("i", i.to_string().as_str())]);
        store.append(l, T0_MS, v).unwrap();
    }
    Arc::new(Counting {
        inner: EmbeddedDatasource::new(
            Arc::new(Engine::new(EngineOptions::default())),
            Arc::new(RwLock::new(store)),
        ),
        calls: AtomicUsize::new(0),
    })
}

fn cfg(addr: &str, datasource: &str, ttl_ms: u64) -> CacheConfig {
    CacheConfig {
        addr: addr.into(),
        datasource: datasource.into(),
        ttl: Duration::from_millis(ttl_ms),
        op_timeout: Duration::from_millis(500),
    }
}

fn iq(expr: &str, ts_ms: i64) -> InstantQuery {
    InstantQuery {
        expr: expr.into(),
        ts_ms,
        timeout: Duration::from_secs(5),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[tokio::test]
async fn identical_queries_are_answered_once_across_cache_clients() {
    let (_redis, addr) = start_redis();
    let inner = counting();
    // Two workers sharing one Redis, e.g. the old and new owner during a handoff.
    let a = CachedDatasource::new(inner.clone(), cfg(&addr, "prom-eu", 60_000));
    let b = CachedDatasource::new(inner.clone(), cfg(&addr, "prom-eu", 60_000));
    let first = a.instant(&iq("m", T0_MS + 1_000)).await.unwrap();
    let second = b.instant(&iq("m", T0_MS + 1_000)).await.unwrap();
    assert!(same(&first.value, &second.value), "{first:?} vs {second:?}");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.stats().counts(), (1, 0, 0));
    // Another timestamp, expression or datasource is another key.
    b.instant(&iq("m", T0_MS + 2_000)).await.unwrap();
    b.instant(&iq("sum(m)", T0_MS + 1_000)).await.unwrap();
    let other = CachedDatasource::new(inner.clone(), cfg(&addr, "prom-us", 60_000));
    other.instant(&iq("m", T0_MS + 1_000)).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn failures_are_not_cached_and_entries_expire() {
    let (_redis, addr) = start_redis();
    let inner = counting();
    let c = CachedDatasource::new(inner.clone(), cfg(&addr, "p", 200));
    for _ in 0..2 {
        let err = c.instant(&iq("sum(", T0_MS)).await.unwrap_err();
        assert!(matches!(err, DatasourceError::BadQuery { .. }));
    }
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    c.instant(&iq("m", T0_MS)).await.unwrap();
    c.instant(&iq("m", T0_MS)).await.unwrap();
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        3,
        "second read is a hit"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        c.instant(&iq("m", T0_MS)).await.unwrap();
        if inner.calls.load(Ordering::SeqCst) > 3 {
            break;
        }
        assert!(Instant::now() < deadline, "entry never expired");
        // Bounded polling interval while waiting for the 200 ms TTL to pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_missing_or_dying_redis_never_fails_a_query() {
    let inner = counting();
    let dead = CachedDatasource::new(
        inner.clone(),
        cfg(&format!("127.0.0.1:{}", free_port()), "p", 60_000),
    );
    dead.instant(&iq("m", T0_MS)).await.unwrap();
    assert!(dead.stats().counts().2 >= 1, "the error is counted");

    let (mut redis, addr) = start_redis();
    let c = CachedDatasource::new(inner.clone(), cfg(&addr, "p", 60_000));
    c.instant(&iq("m", T0_MS)).await.unwrap();
    redis.0.kill().unwrap();
    redis.0.wait().unwrap();
    let before = inner.calls.load(Ordering::SeqCst);
    let out = c.instant(&iq("m", T0_MS)).await.unwrap();
    assert!(matches!(out.value, Value::Vector(ref v) if v.len() == 3));
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        before + 1,
        "answered by the datasource"
    );
}
