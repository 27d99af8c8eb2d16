//! The optional shared query cache in Redis: identical instant queries (same datasource,
//! expression and evaluation timestamp) asked by several workers — during a shard handoff, or
//! from the UI — are answered once.
//!
//! [`CachedDatasource`] wraps any [`Datasource`]. Only successful instant answers are cached,
//! for `ttl`; range queries pass through. The cache can never fail a query: a Redis error or a
//! slow Redis (each operation is bounded by `op_timeout`) falls through to the datasource and
//! is counted. Without Redis configured, nothing wraps the datasource and nothing changes.
//!
//! Redis is spoken to with the `redis` crate (`GETRANGE`, so a reply is bounded, and
//! `SET … PX`) over one multiplexed connection that is re-established after any error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{
    Datasource, DatasourceError, InstantQuery, QueryFuture, QueryOutput, RangeQuery, wire,
};

/// Largest cached answer: bigger answers are not cached (and a bigger reply is not read).
pub const CACHED_ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Key prefix, versioned so a format change never reads old entries.
const KEY_PREFIX: &str = "tocsin:query:v1:";

/// Cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `host:port` of Redis.
    pub addr: String,
    /// Name of the datasource in keys, so two datasources never share entries.
    pub datasource: String,
    /// How long an answer stays cached.
    pub ttl: Duration,
    /// Bound on each Redis operation (connect, GET, SET).
    pub op_timeout: Duration,
}

/// Cache counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl CacheStats {
    /// `(hits, misses, errors)` so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// A datasource answered through the Redis cache.
#[derive(Debug)]
pub struct CachedDatasource {
    inner: Arc<dyn Datasource>,
    cfg: CacheConfig,
    /// The Redis client, or why `cfg.addr` is not a Redis address (every lookup then fails
    /// and is counted).
    client: Result<redis::Client, String>,
    conn: Mutex<Option<MultiplexedConnection>>,
    stats: CacheStats,
}

impl CachedDatasource {
    /// Wraps `inner`. No connection is made until the first query.
    pub fn new(inner: Arc<dyn Datasource>, cfg: CacheConfig) -> Self {
        let client = redis::Client::open(redis_url(&cfg.addr)).map_err(|e| e.to_string());
        Self {
            inner,
            cfg,
            client,
            conn: Mutex::new(None),
            stats: CacheStats::default(),
        }
    }

    /// Hit, miss and error counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The key of an instant query: datasource, timestamp and the full expression (a hash
    /// could collide and serve another query's answer).
    pub fn key(&self, q: &InstantQuery) -> String {
        format!("{KEY_PREFIX}{}:{}:{}", self.cfg.datasource, q.ts_ms, q.expr)
    }

    /// Runs one command, bounded by `op_timeout` (connecting included); drops the connection
    /// on any error.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.lock().await;
        let op_timeout = self.cfg.op_timeout;
        let run = async {
            if conn.is_none() {
                let client = self.client.as_ref().map_err(|e| format!("address: {e}"))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(op_timeout))
                    .set_response_timeout(Some(op_timeout));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.cfg.addr))?;
                *conn = Some(c);
            }
            let Some(c) = conn.as_mut() else {
                return Err("no connection".to_string());
            };
            cmd.query_async::<T>(c)
                .await
                .map_err(|e| format!("redis: {e}"))
        };
        let out = match tokio::time::timeout(op_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {op_timeout:?}")),
        };
        if out.is_err() {
            *conn = None;
        }
        out
    }

    async fn lookup(&self, key: &str) -> Option<QueryOutput> {
        // At most one byte past the cap is read: an answer that long was never stored by us.
        let mut get = redis::cmd("GETRANGE");
        get.arg(key).arg(0).arg(CACHED_ANSWER_BYTES_MAX);
        match self.command::<Vec<u8>>(&get).await {
            // A missing key reads as empty, and an empty answer is never stored.
            Ok(body) if body.is_empty() => None,
            Ok(body) if body.len() > CACHED_ANSWER_BYTES_MAX => {
                self.error(
                    "cache lookup failed",
                    &format!("cached value exceeds the cap of {CACHED_ANSWER_BYTES_MAX} bytes"),
                );
                None
            }
            Ok(body) => match wire::parse_answer(200, &body, Duration::ZERO) {
                Ok(out) => Some(out),
                Err(e) => {
                    self.error("unreadable cached answer", &e.to_string());
                    None
                }
            },
            Err(e) => {
                self.error("cache lookup failed", &e);
                None
            }
        }
    }

    async fn store(&self, key: &str, out: &QueryOutput) {
        let body = wire::success_json(wire::value_json(&out.value), &out.warnings).to_string();
        if body.len() > CACHED_ANSWER_BYTES_MAX {
            return;
        }
        let ttl_ms = u64::try_from(self.cfg.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut set = redis::cmd("SET");
        set.arg(key).arg(body).arg("PX").arg(ttl_ms);
        if let Err(e) = self.command::<()>(&set).await {
            self.error("cache store failed", &e);
        }
    }

    fn error(&self, what: &str, detail: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(addr = %self.cfg.addr, error = %detail, "{what}");
    }
}

/// The `redis://` URL of a `host:port` address.
fn redis_url(addr: &str) -> String {
    format!("redis://{addr}/")
}

impl Datasource for CachedDatasource {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        Box::pin(async move {
            let key = self.key(q);
            if let Some(hit) = self.lookup(&key).await {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            let out: Result<QueryOutput, DatasourceError> = self.inner.instant(q).await;
            if let Ok(answer) = &out {
                self.store(&key, answer).await;
            }
            out
        })
    }

    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        self.inner.range(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_redis_urls() {
        assert_eq!(redis_url("127.0.0.1:6379"), "redis://127.0.0.1:6379/");
        assert!(redis::Client::open(redis_url("[::1]:6379")).is_ok());
    }
}
