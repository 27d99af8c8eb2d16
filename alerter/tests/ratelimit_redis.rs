//! The shared per-endpoint rate limiter against a real Redis (`redis-server`, started by each
//! test on a free loopback port): workers sharing an endpoint stay within its limit together,
//! and a Redis that dies, comes back, or was never there only moves decisions to the local
//! share.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{ChildGuard, free_port};
use tocsin_alerter::notify::ratelimit::{RateLimit, RateLimiter, RedisLimiterConfig, endpoint_key};

/// Bound on each Redis operation in these tests.
const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest any single decision may take, dead Redis or not (two bounded operations plus
/// scheduling slack on a loaded machine).
const DECISION_LATENCY_MAX: Duration = Duration::from_millis(750);
/// Cap on a worker loop's iterations, whatever the clock does.
const ITERATIONS_MAX: usize = 20_000;
/// How often a "hammering" worker asks again while it waits for its slot: far more often than
/// the limit allows, so the workers contend at every slot boundary.
const HAMMER_INTERVAL: Duration = Duration::from_millis(10);

/// `redis-server` on PATH (or in /usr/bin), or a failure saying how to install it: these tests
/// never skip.
fn redis_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "`redis-server` not found: the rate limiter tests run a real Redis. \
                 Install it with `sudo apt-get install -y redis-server`."
            )
        })
}

/// A `redis-server` on a loopback port, killed however the test ends.
struct Redis {
    child: Option<ChildGuard>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Some(spawn_redis(port, dir.path()));
        Self { child, port, dir }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut guard) = self.child.take() {
            guard.0.kill().expect("kill redis-server");
            guard.0.wait().expect("reap redis-server");
        }
    }

    /// Starts Redis again on the same port (empty: nothing was saved).
    fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(self.port, self.dir.path()));
    }
}

/// Starts `redis-server` on `port` and waits until it answers PING.
fn spawn_redis(port: u16, dir: &Path) -> ChildGuard {
    let child = Command::new(redis_server_binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
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
                return guard;
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on {addr}"
        );
        // Bounded polling interval while waiting for Redis to listen.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn limiter(addr: &str, share: u32) -> RateLimiter {
    let cfg = RedisLimiterConfig {
        addr: addr.to_string(),
        op_timeout: OP_TIMEOUT,
    };
    RateLimiter::new(Some(cfg), share).expect("limiter")
}

/// Admissions (when, by which worker) and the slowest decision seen.
#[derive(Debug, Default)]
struct Log {
    admitted: Mutex<Vec<(Instant, usize)>>,
    slowest: Mutex<Duration>,
}

impl Log {
    fn admitted_by(&self, worker: usize, from: Instant, to: Instant) -> usize {
        let a = self.admitted.lock().expect("log");
        a.iter()
            .filter(|(t, w)| *w == worker && *t >= from && *t <= to)
            .count()
    }
}

/// One worker sending to `key` as fast as the limiter lets it, until `until` or `stop`.
async fn hammer(
    worker: usize,
    limiter: RateLimiter,
    key: String,
    limit: RateLimit,
    until: Instant,
    stop: Arc<AtomicBool>,
    log: Arc<Log>,
) {
    for _ in 0..ITERATIONS_MAX {
        let now = Instant::now();
        if now >= until || stop.load(Ordering::SeqCst) {
            return;
        }
        let decision = limiter.try_acquire(&key, &limit).await;
        let answered = Instant::now();
        {
            let mut slowest = log.slowest.lock().expect("log");
            *slowest = (*slowest).max(answered - now);
        }
        match decision {
            Ok(()) => log.admitted.lock().expect("log").push((answered, worker)),
            // Waiting for the slot the limiter named (or asking again sooner, to contend).
            Err(wait) => tokio::time::sleep(wait.min(HAMMER_INTERVAL)).await,
        }
    }
}

/// Waits for `cond`, polling, up to `timeout`.
async fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Bounded polling interval while waiting for the condition.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_a_slack_webhook_never_exceed_its_limit_together() {
    let redis = Redis::start();
    let key = endpoint_key("slack", "https://hooks.slack.com/services/T0/B0/shared");
    let limit = RateLimit::slack_webhook();
    let workers = [limiter(&redis.addr(), 2), limiter(&redis.addr(), 2)];
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in workers.iter().enumerate() {
        let args = (w.clone(), key.clone(), log.clone(), stop.clone());
        tasks.spawn(hammer(i, args.0, args.1, limit, until, args.3, args.2));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker task");
    }
    let elapsed = start.elapsed();

    let mut times: Vec<Instant> = log
        .admitted
        .lock()
        .expect("log")
        .iter()
        .map(|a| a.0)
        .collect();
    times.sort();
    let bound = 1 + elapsed.as_secs() as usize;
    assert!(
        times.len() <= bound,
        "{} sends in {elapsed:?} through a 1/s webhook",
        times.len()
    );
    assert!(
        times.len() >= 3,
        "only {} sends in {elapsed:?}",
        times.len()
    );
    // In every window between two sends, at most 1 + window/1s (with slack for the time a
    // decision takes to come back).
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let window = times[j] - times[i] + Duration::from_millis(200);
            assert!(
                j - i < 1 + window.as_secs() as usize,
                "{} sends within {:?}",
                j - i + 1,
                times[j] - times[i]
            );
        }
    }
    for w in &workers {
        let c = w.counts();
        assert_eq!((c.redis_errors, c.local_decisions), (0, 0), "{c:?}");
        assert!(c.redis_ok > 10, "the workers contended: {c:?}");
    }
    let slowest = *log.slowest.lock().expect("log");
    assert!(
        slowest < DECISION_LATENCY_MAX,
        "a decision took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_redis_mid_run_moves_each_worker_to_its_share_and_back() {
    let mut redis = Redis::start();
    let key = endpoint_key("slack", "https://hooks.slack.com/services/T0/B0/dies");
    // 10/s, no burst: two workers each get 5/s (one per 200 ms) while Redis is away.
    let limit = RateLimit::new(10, Duration::from_secs(1), 1).expect("limit");
    let local_interval = Duration::from_millis(200);
    let workers = [limiter(&redis.addr(), 2), limiter(&redis.addr(), 2)];
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(30);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in workers.iter().enumerate() {
        let args = (w.clone(), key.clone(), log.clone(), stop.clone());
        tasks.spawn(hammer(i, args.0, args.1, limit, until, args.3, args.2));
    }
    let admitted = || log.admitted.lock().expect("log").len();

    wait_until(
        || admitted() >= 5,
        Duration::from_secs(10),
        "sends through Redis",
    )
    .await;
    redis.kill();
    let killed_at = Instant::now();
    let before_kill = admitted();
    let both_local = || workers.iter().all(|w| w.counts().local_decisions > 0);
    wait_until(both_local, Duration::from_secs(5), "local decisions").await;
    // Let the workers run on their local shares for a few sends: what is checked is that they
    // do not exceed them.
    let each_sent_locally =
        || (0..workers.len()).all(|i| log.admitted_by(i, killed_at, Instant::now()) >= 2);
    wait_until(
        each_sent_locally,
        Duration::from_secs(10),
        "sends on the local shares",
    )
    .await;
    let restart_at = Instant::now();
    let redis_ok_at_restart: Vec<u64> = workers.iter().map(|w| w.counts().redis_ok).collect();
    redis.restart();
    let back_on_redis = || {
        workers
            .iter()
            .zip(&redis_ok_at_restart)
            .all(|(w, ok)| w.counts().redis_ok > *ok)
    };
    wait_until(
        back_on_redis,
        Duration::from_secs(10),
        "decisions in Redis again",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        done.expect("worker task");
    }

    let local_window = restart_at - killed_at;
    let share_bound = 2 + (local_window.as_micros() / local_interval.as_micros()) as usize;
    for (i, w) in workers.iter().enumerate() {
        let sent = log.admitted_by(i, killed_at, restart_at);
        // At most the local burst plus one per local interval, plus one decided by Redis
        // just before it died; and sends went on (nothing was lost with Redis).
        assert!(
            sent <= share_bound,
            "worker {i}: {sent} sends in {local_window:?} on a share of one per {local_interval:?}"
        );
        assert!(
            sent >= 2,
            "worker {i} sent only {sent} while Redis was down"
        );
        let c = w.counts();
        assert!(c.redis_errors >= 1 && c.local_decisions >= 1, "{c:?}");
    }
    assert!(before_kill >= 5);
    let slowest = *log.slowest.lock().expect("log");
    assert!(
        slowest < DECISION_LATENCY_MAX,
        "a decision took {slowest:?}"
    );

    // Back on Redis: every decision is Redis's again.
    for w in &workers {
        let before = w.counts();
        for _ in 0..5 {
            let _ = w.try_acquire(&key, &limit).await;
        }
        let after = w.counts();
        assert_eq!(after.local_decisions, before.local_decisions, "{after:?}");
        assert_eq!(after.redis_ok, before.redis_ok + 5, "{after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_limits_locally_at_the_share_from_the_start() {
    let addr = format!("127.0.0.1:{}", free_port());
    let limit = RateLimit::new(10, Duration::from_secs(1), 1).expect("limit");
    let w = limiter(&addr, 2);
    let log = Arc::new(Log::default());
    let start = Instant::now();
    let until = start + Duration::from_millis(1_500);
    let stop = Arc::new(AtomicBool::new(false));
    hammer(0, w.clone(), "pd:k".into(), limit, until, stop, log.clone()).await;
    let elapsed = start.elapsed();

    let sent = log.admitted.lock().expect("log").len();
    let periods = (elapsed.as_micros() / 200_000) as usize;
    assert!(sent <= 1 + periods, "{sent} sends in {elapsed:?} at 5/s");
    assert!(
        sent + 1 >= periods,
        "only {sent} sends in {elapsed:?} at 5/s"
    );
    let c = w.counts();
    assert_eq!(c.redis_ok, 0);
    assert!(c.redis_errors >= 1, "{c:?}");
    // Reconnects back off: a few attempts, not one per decision.
    assert!(
        c.redis_errors <= 10 && c.local_decisions > 2 * c.redis_errors,
        "{c:?}"
    );
    let slowest = *log.slowest.lock().expect("log");
    assert!(
        slowest < DECISION_LATENCY_MAX,
        "a decision took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_costs_one_bounded_wait() {
    // Accepts connections (the kernel's backlog) but never answers anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let w = limiter(&addr, 1);
    let limit = RateLimit::slack_webhook();
    let start = Instant::now();
    assert_eq!(w.try_acquire("slack:silent", &limit).await, Ok(()));
    let first = start.elapsed();
    assert!(
        first < DECISION_LATENCY_MAX,
        "first decision took {first:?}"
    );
    // While reconnecting backs off, decisions are immediate and local.
    let again = Instant::now();
    for _ in 0..10 {
        let _ = w.try_acquire("slack:silent", &limit).await;
    }
    assert!(again.elapsed() < OP_TIMEOUT, "took {:?}", again.elapsed());
    let c = w.counts();
    assert_eq!(
        (c.redis_ok, c.redis_errors, c.local_decisions),
        (0, 1, 11),
        "{c:?}"
    );
    drop(silent);
}
