//! Per-endpoint send rate limits shared by every worker (issue #6): a Slack webhook, a
//! PagerDuty integration key or a Twilio sender accepts only so many messages a second, however
//! many workers deliver to it.
//!
//! The limit is GCRA (the generic cell rate algorithm): one "theoretical arrival time" per
//! endpoint, emission interval `T = period / rate`, tolerance `T × (burst − 1)`, so at most
//! `burst + t / T` sends pass in any window of length `t`.
//!
//! - [`Gcra`] is the pure core: `now` in microseconds is a parameter.
//! - [`RateLimiter`] is the adapter. With Redis configured, every decision is one atomic Lua
//!   script (EVALSHA, falling back to EVAL) that reads the Redis server's `TIME`, so workers with
//!   skewed clocks agree. Each Redis operation is bounded by `op_timeout`; on any error the
//!   worker decides locally with its share of the rate (`rate / local_share`), counts it, and
//!   tries Redis again after a short, growing backoff. A dead Redis never blocks a send for
//!   more than one bounded attempt. Without Redis, every decision is local.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

/// Redis key prefix, versioned so a change of the stored format never reads old state.
pub const KEY_PREFIX: &str = "tocsin:rl:v1:";
/// Default bound on one Redis operation: a send should never wait long for its permit, and a
/// healthy Redis on the same network answers within a millisecond or two.
pub const REDIS_OP_TIMEOUT_DEFAULT: Duration = Duration::from_millis(75);
/// First wait before reconnecting to a failed Redis.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait before reconnecting: a restarted Redis is used again within about a second.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest period a limit may have, so every time stays far from overflowing (µs in `u64`, and
/// in the doubles of Redis's Lua).
const PERIOD_MAX: Duration = Duration::from_secs(24 * 3600);
/// Largest burst: beyond this a limit is not protecting anything.
const BURST_MAX: u32 = 10_000;
/// Above this many local entries, entries that have fully recovered (equivalent to absent) are
/// dropped, so the table holds only endpoints that sent recently.
const LOCAL_KEYS_SWEEP: usize = 4_096;

/// The GCRA decision in Redis. KEYS[1]: the endpoint; ARGV[1]: emission interval (µs);
/// ARGV[2]: tolerance (µs). Returns `{1, 0}` when admitted (the slot is taken) or
/// `{0, retry_after_µs}`. The state expires once it is equivalent to no state.
const GCRA_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local v = tonumber(stored)
  if v and v > now then tat = v end
end
local allow_at = tat - tolerance
if allow_at > now then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// A limit that cannot be built, or a limiter configuration that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateLimitError {
    /// A field is out of range.
    #[error("rate limit `{field}` must be {expected}, got {got}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        got: String,
    },
    /// The Redis address does not parse.
    #[error("rate limiter redis address {addr:?}: {reason}")]
    RedisAddr {
        /// The address as configured.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
}

/// At most `rate` sends per `period`, with up to `burst` back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    rate: u32,
    period: Duration,
    burst: u32,
}

impl RateLimit {
    /// A validated limit: `rate` and `burst` ≥ 1, `period` > 0 and at most a day, and
    /// `period / rate` at least a microsecond.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, RateLimitError> {
        let invalid = |field, expected, got: String| RateLimitError::Invalid {
            field,
            expected,
            got,
        };
        if rate == 0 {
            return Err(invalid("rate", "at least 1", rate.to_string()));
        }
        if period.is_zero() || period > PERIOD_MAX {
            return Err(invalid("period", "> 0 and ≤ 24h", format!("{period:?}")));
        }
        if burst == 0 || burst > BURST_MAX {
            return Err(invalid("burst", "between 1 and 10000", burst.to_string()));
        }
        if period.as_micros() < u128::from(rate) {
            return Err(invalid(
                "rate",
                "at most one send per microsecond",
                format!("{rate} per {period:?}"),
            ));
        }
        Ok(Self {
            rate,
            period,
            burst,
        })
    }

    /// A Slack incoming webhook: "about 1 message/second per webhook/channel; short bursts are
    /// allowed", 429 with `Retry-After` past that (`reference/providers.md` §2.1, Slack's
    /// rate-limits page). We take no burst: the size of a "short burst" is not published.
    pub const fn slack_webhook() -> Self {
        Self {
            rate: 1,
            period: Duration::from_secs(1),
            burst: 1,
        }
    }

    /// A PagerDuty Events API v2 integration (routing) key: "dynamically adjusted" per service;
    /// PagerDuty staff quote "120 events/min per integration key", 429 without `Retry-After`
    /// past it (`reference/providers.md` §1). The burst of 10 is ours, so one flush of several
    /// groups goes out at once while the minute stays within 120.
    pub const fn pagerduty() -> Self {
        Self {
            rate: 120,
            period: Duration::from_secs(60),
            burst: 10,
        }
    }

    /// A Twilio sender number: throughput is per sender, "roughly 1 segment/s for a US long
    /// code" (`reference/providers.md` §4.1); faster senders (short codes, toll-free) should
    /// use their own limit. One permit is one message: a message of several segments takes
    /// longer than this allows for.
    pub const fn twilio_sender() -> Self {
        Self {
            rate: 1,
            period: Duration::from_secs(1),
            burst: 1,
        }
    }

    /// Sends allowed per [`Self::period`].
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The period of [`Self::rate`].
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Sends allowed back to back.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The GCRA parameters of the whole limit.
    pub fn gcra(&self) -> GcraParams {
        self.share(1)
    }

    /// The GCRA parameters of one worker's share when `share` workers split the limit: the
    /// interval is `share` times longer and the burst `burst / share`, at least 1 (so with a
    /// burst below `share` the workers together may send `share` back to back).
    pub fn share(&self, share: u32) -> GcraParams {
        let share = share.max(1);
        let interval_us = u64::try_from(self.period.as_micros() / u128::from(self.rate))
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(share));
        let burst = (self.burst / share).max(1);
        GcraParams {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst - 1)),
        }
    }
}

/// GCRA parameters in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraParams {
    /// Emission interval `T`: one send per `T` on average.
    pub interval_us: u64,
    /// Tolerance `τ = T × (burst − 1)`: how far ahead of the schedule a send may be.
    pub tolerance_us: u64,
}

/// The state of one endpoint: its theoretical arrival time (TAT) on the caller's clock.
/// A fresh state (or any TAT in the past) admits a full burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    tat_us: u64,
}

impl Gcra {
    /// Decides one send at `now_us`: `Ok` takes the slot, `Err(retry_after)` (at least 1 µs)
    /// says when a send would next be admitted and changes nothing.
    pub fn decide(&mut self, now_us: u64, p: GcraParams) -> Result<(), Duration> {
        let tat = self.tat_us.max(now_us);
        let allow_at = tat.saturating_sub(p.tolerance_us);
        if allow_at > now_us {
            return Err(Duration::from_micros(allow_at - now_us));
        }
        self.tat_us = tat.saturating_add(p.interval_us);
        Ok(())
    }

    /// Records a send admitted elsewhere (by Redis) at `now_us`, so a switch to local
    /// decisions starts from this worker's recent sends. The debt is capped at one full burst:
    /// a worker that sent more than its share through Redis waits at most one burst's worth.
    pub fn record(&mut self, now_us: u64, p: GcraParams) {
        let cap = now_us
            .saturating_add(p.tolerance_us)
            .saturating_add(p.interval_us);
        self.tat_us = self
            .tat_us
            .max(now_us)
            .saturating_add(p.interval_us)
            .min(cap);
    }

    /// True when this state is the same as a fresh one at `now_us`.
    pub fn is_idle(&self, now_us: u64) -> bool {
        self.tat_us <= now_us
    }
}

/// Where Redis is, for a limiter shared by all workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimiterConfig {
    /// `host:port`, or a `redis://` URL.
    pub addr: String,
    /// Bound on each Redis operation (connect, script); past it the decision is local.
    pub op_timeout: Duration,
}

impl RedisLimiterConfig {
    /// `addr` with [`REDIS_OP_TIMEOUT_DEFAULT`].
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            op_timeout: REDIS_OP_TIMEOUT_DEFAULT,
        }
    }
}

/// What the limiter has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterCounts {
    /// Decisions made by Redis.
    pub redis_ok: u64,
    /// Failed Redis operations (connect, timeout, script error); each one's decision was local.
    pub redis_errors: u64,
    /// Decisions made in-process (no Redis configured, Redis failing, or in reconnect backoff).
    pub local_decisions: u64,
}

/// The shared per-endpoint limiter: cheap to clone, one per worker process.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: Option<RedisBackend>,
    /// How many workers split each limit when they decide locally.
    local_share: u32,
    /// Local GCRA state by key; never held across an await.
    local: Mutex<HashMap<String, Gcra>>,
    /// Zero of the local clock.
    origin: Instant,
    redis_ok: AtomicU64,
    redis_errors: AtomicU64,
    local_decisions: AtomicU64,
}

#[derive(Debug)]
struct RedisBackend {
    client: redis::Client,
    addr: String,
    op_timeout: Duration,
    script: redis::Script,
    /// The connection, or when to try connecting again. Held while connecting, so concurrent
    /// callers wait for that one bounded attempt instead of piling on.
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Debug)]
struct Slot {
    conn: Option<MultiplexedConnection>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// Why Redis did not decide.
enum Unavailable {
    /// In reconnect backoff: nothing was tried.
    Backoff,
    /// An operation failed.
    Failed(String),
}

impl RateLimiter {
    /// A limiter deciding in Redis when `redis` is given (locally while it fails), or only
    /// locally. `local_share` is how many workers share each endpoint (≥ 1): a local decision
    /// allows `rate / local_share`. No connection is made until the first decision.
    pub fn new(
        redis: Option<RedisLimiterConfig>,
        local_share: u32,
    ) -> Result<Self, RateLimitError> {
        if local_share == 0 {
            return Err(RateLimitError::Invalid {
                field: "local_share",
                expected: "at least 1",
                got: "0".to_string(),
            });
        }
        let redis = redis.map(RedisBackend::new).transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                redis,
                local_share,
                local: Mutex::new(HashMap::new()),
                origin: Instant::now(),
                redis_ok: AtomicU64::new(0),
                redis_errors: AtomicU64::new(0),
                local_decisions: AtomicU64::new(0),
            }),
        })
    }

    /// Takes a send slot for `key` now (`Ok`), or says how long to wait before asking again
    /// (`Err(retry_after)`). Never fails: Redis trouble turns into a local decision. Takes at
    /// most about two `op_timeout`s (a connect attempt and the script).
    pub async fn try_acquire(&self, key: &str, limit: &RateLimit) -> Result<(), Duration> {
        let inner = &self.inner;
        if let Some(redis) = &inner.redis {
            match redis.decide(key, limit).await {
                Ok(decision) => {
                    inner.redis_ok.fetch_add(1, Ordering::Relaxed);
                    if decision.is_ok() {
                        let p = limit.share(inner.local_share);
                        let now = self.now_us();
                        self.with_local(key, |g| g.record(now, p));
                    }
                    return decision;
                }
                Err(Unavailable::Backoff) => {}
                Err(Unavailable::Failed(error)) => {
                    inner.redis_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(addr = %redis.addr, %error, "rate limiter: redis failed, limiting locally");
                }
            }
        }
        inner.local_decisions.fetch_add(1, Ordering::Relaxed);
        let p = limit.share(inner.local_share);
        let now = self.now_us();
        self.with_local(key, |g| g.decide(now, p))
    }

    /// Waits for a slot for `key`, up to `wait_max`; `Err(retry_after)` when the next slot is
    /// further away than what is left of `wait_max` (nothing is taken then).
    pub async fn acquire(
        &self,
        key: &str,
        limit: &RateLimit,
        wait_max: Duration,
    ) -> Result<(), Duration> {
        let deadline = Instant::now() + wait_max;
        loop {
            let retry_after = match self.try_acquire(key, limit).await {
                Ok(()) => return Ok(()),
                Err(d) => d,
            };
            if Instant::now() + retry_after > deadline {
                return Err(retry_after);
            }
            // Waiting for the slot the limiter named; `retry_after` is ≥ 1 µs, so this loop
            // ends by the deadline.
            tokio::time::sleep(retry_after).await;
        }
    }

    /// Counters so far.
    pub fn counts(&self) -> RateLimiterCounts {
        let i = &self.inner;
        RateLimiterCounts {
            redis_ok: i.redis_ok.load(Ordering::Relaxed),
            redis_errors: i.redis_errors.load(Ordering::Relaxed),
            local_decisions: i.local_decisions.load(Ordering::Relaxed),
        }
    }

    /// Microseconds on the local clock (tokio's, so paused-time tests drive it).
    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn with_local<T>(&self, key: &str, f: impl FnOnce(&mut Gcra) -> T) -> T {
        let now = self.now_us();
        let mut table = self
            .inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.len() >= LOCAL_KEYS_SWEEP && !table.contains_key(key) {
            table.retain(|_, g| !g.is_idle(now));
        }
        f(table.entry(key.to_string()).or_default())
    }
}

/// The key of an endpoint whose identity is a secret (a webhook URL, a routing key):
/// `kind:` and a stable hash, so the secret never reaches Redis or the logs.
pub fn endpoint_key(kind: &str, identity: &str) -> String {
    format!(
        "{kind}:{:016x}",
        tocsin_proto::ids::stable_hash(&[identity])
    )
}

impl RedisBackend {
    fn new(cfg: RedisLimiterConfig) -> Result<Self, RateLimitError> {
        let url = if cfg.addr.contains("://") {
            cfg.addr.clone()
        } else {
            format!("redis://{}/", cfg.addr)
        };
        let client = redis::Client::open(url).map_err(|e| RateLimitError::RedisAddr {
            addr: cfg.addr.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            addr: cfg.addr,
            op_timeout: cfg.op_timeout,
            script: redis::Script::new(GCRA_LUA),
            slot: tokio::sync::Mutex::new(Slot {
                conn: None,
                retry_at: None,
                backoff: RECONNECT_BACKOFF_MIN,
            }),
        })
    }

    async fn decide(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<Result<(), Duration>, Unavailable> {
        let mut conn = self.connection().await?;
        let p = limit.gcra();
        let mut call = self.script.key(format!("{KEY_PREFIX}{key}"));
        call.arg(p.interval_us).arg(p.tolerance_us);
        let reply =
            tokio::time::timeout(self.op_timeout, call.invoke_async::<(i64, i64)>(&mut conn)).await;
        let error = match reply {
            Ok(Ok((1, _))) => return Ok(Ok(())),
            Ok(Ok((_, wait_us))) => {
                let wait = u64::try_from(wait_us).unwrap_or(0).max(1);
                return Ok(Err(Duration::from_micros(wait)));
            }
            Ok(Err(e)) => format!("script: {e}"),
            Err(_) => format!("script: no answer within {:?}", self.op_timeout),
        };
        self.failed(&mut *self.slot.lock().await);
        Err(Unavailable::Failed(error))
    }

    /// The live connection, or one attempt (bounded by `op_timeout`) to make it unless in
    /// backoff.
    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = &slot.conn {
            return Ok(c.clone());
        }
        if slot.retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(Unavailable::Backoff);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout));
        let attempt = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg);
        let error = match tokio::time::timeout(self.op_timeout, attempt).await {
            Ok(Ok(c)) => {
                if slot.retry_at.is_some() {
                    tracing::info!(addr = %self.addr, "rate limiter: redis reachable again");
                }
                slot.conn = Some(c.clone());
                slot.retry_at = None;
                slot.backoff = RECONNECT_BACKOFF_MIN;
                return Ok(c);
            }
            Ok(Err(e)) => format!("connect: {e}"),
            Err(_) => format!("connect: no answer within {:?}", self.op_timeout),
        };
        slot.retry_at = None;
        self.failed(&mut slot);
        Err(Unavailable::Failed(error))
    }

    /// Drops the connection and schedules the next attempt. Several callers failing on the
    /// same connection back off once.
    fn failed(&self, slot: &mut Slot) {
        if slot.conn.is_none() && slot.retry_at.is_some() {
            return;
        }
        slot.conn = None;
        // ±25 % jitter so workers that lost Redis together do not reconnect in step.
        let jitter = rand::rng().random_range(0.75..1.25);
        slot.retry_at = Some(Instant::now() + slot.backoff.mul_f64(jitter));
        slot.backoff = (slot.backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(interval_us: u64, burst: u64) -> GcraParams {
        GcraParams {
            interval_us,
            tolerance_us: interval_us * (burst - 1),
        }
    }

    #[test]
    fn a_burst_passes_then_one_per_interval() {
        let p = params(1_000, 3);
        let mut g = Gcra::default();
        for _ in 0..3 {
            assert_eq!(g.decide(10_000, p), Ok(()));
        }
        assert_eq!(g.decide(10_000, p), Err(Duration::from_micros(1_000)));
        assert_eq!(g.decide(10_999, p), Err(Duration::from_micros(1)));
        assert_eq!(g.decide(11_000, p), Ok(()));
        assert_eq!(g.decide(11_000, p), Err(Duration::from_micros(1_000)));
        // Idle long enough, the full burst is back.
        assert!(!g.is_idle(13_999) && g.is_idle(14_000));
        for _ in 0..3 {
            assert_eq!(g.decide(20_000, p), Ok(()));
        }
    }

    #[test]
    fn a_send_recorded_from_redis_is_counted_but_the_debt_is_capped() {
        let p = params(1_000, 1);
        let mut g = Gcra::default();
        g.record(5_000, p);
        assert_eq!(g.decide(5_500, p), Err(Duration::from_micros(500)));
        // A hundred sends through Redis (beyond this worker's share) cost one interval, not 100.
        for _ in 0..100 {
            g.record(6_000, p);
        }
        assert_eq!(g.decide(6_000, p), Err(Duration::from_micros(1_000)));
        assert_eq!(g.decide(7_000, p), Ok(()));
    }

    #[test]
    fn provider_defaults_and_shares() {
        let slack = RateLimit::slack_webhook();
        assert_eq!(slack.gcra(), params(1_000_000, 1));
        // Two workers: each one send per 2 s, still no burst.
        assert_eq!(slack.share(2), params(2_000_000, 1));
        let pd = RateLimit::pagerduty();
        assert_eq!(pd.gcra(), params(500_000, 10));
        // Three workers: 40/min each, burst 10/3 = 3.
        assert_eq!(pd.share(3), params(1_500_000, 3));
        assert_eq!(RateLimit::twilio_sender().gcra(), params(1_000_000, 1));
        let custom = RateLimit::new(120, Duration::from_secs(60), 10);
        assert_eq!(custom, Ok(pd));
    }

    #[test]
    fn invalid_limits_name_the_field() {
        let field = |r: Result<RateLimit, RateLimitError>| match r {
            Err(RateLimitError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(field(RateLimit::new(0, Duration::from_secs(1), 1)), "rate");
        assert_eq!(field(RateLimit::new(1, Duration::ZERO, 1)), "period");
        assert_eq!(field(RateLimit::new(1, Duration::from_secs(1), 0)), "burst");
        assert_eq!(
            field(RateLimit::new(10, Duration::from_micros(5), 1)),
            "rate"
        );
        assert!(matches!(
            RateLimiter::new(None, 0),
            Err(RateLimitError::Invalid {
                field: "local_share",
                ..
            })
        ));
        assert!(matches!(
            RateLimiter::new(Some(RedisLimiterConfig::new("redis://[bad")), 1),
            Err(RateLimitError::RedisAddr { .. })
        ));
    }

    #[test]
    fn endpoint_keys_hide_the_secret_and_are_stable() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let k = endpoint_key("slack", url);
        assert!(k.starts_with("slack:") && !k.contains("SECRET"), "{k}");
        assert_eq!(k, endpoint_key("slack", url));
        assert_ne!(
            k,
            endpoint_key("slack", "https://hooks.slack.com/services/other")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_redis_each_worker_gets_its_share() {
        let limiter = RateLimiter::new(None, 2).expect("limiter");
        let slack = RateLimit::slack_webhook();
        assert_eq!(limiter.try_acquire("slack:a", &slack).await, Ok(()));
        assert_eq!(
            limiter.try_acquire("slack:a", &slack).await,
            Err(Duration::from_secs(2))
        );
        // Another endpoint has its own budget.
        assert_eq!(limiter.try_acquire("slack:b", &slack).await, Ok(()));
        let started = Instant::now();
        assert_eq!(
            limiter
                .acquire("slack:a", &slack, Duration::from_secs(5))
                .await,
            Ok(())
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(
            limiter
                .acquire("slack:a", &slack, Duration::from_secs(1))
                .await,
            Err(Duration::from_secs(2))
        );
        let counts = limiter.counts();
        assert_eq!((counts.redis_ok, counts.redis_errors), (0, 0));
        assert_eq!(counts.local_decisions, 6);
    }

    proptest! {
        /// In any window between two admitted sends, at most `burst + elapsed / T` pass; and a
        /// denial's retry-after is exact.
        #[test]
        fn never_more_than_burst_plus_elapsed_over_interval(
            interval_us in 1u64..5_000,
            burst in 1u64..6,
            steps in proptest::collection::vec(0u64..3_000, 1..300),
        ) {
            let p = params(interval_us, burst);
            let mut g = Gcra::default();
            let mut now = 1_000_000u64;
            let mut admitted = Vec::new();
            for step in steps {
                now += step;
                let before = g;
                match g.decide(now, p) {
                    Ok(()) => admitted.push(now),
                    Err(wait) => {
                        prop_assert_eq!(g, before, "a denial changes nothing");
                        let wait = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
                        prop_assert!(wait >= 1);
                        prop_assert!(before.clone().decide(now + wait, p).is_ok());
                        prop_assert!(before.clone().decide(now + wait - 1, p).is_err());
                    }
                }
            }
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let count = (j - i + 1) as u64;
                    let allowed = burst + (admitted[j] - admitted[i]) / interval_us;
                    prop_assert!(count <= allowed, "{count} sends in {}µs", admitted[j] - admitted[i]);
                }
            }
        }
    }
}
