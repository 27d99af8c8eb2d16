//! The optional shared query cache in Redis: identical instant queries (same datasource,
//! expression and evaluation timestamp) asked by several workers — during a shard handoff, or
//! from the UI — are answered once.
//!
//! [`CachedDatasource`] wraps any [`Datasource`]. Only successful instant answers are cached,
//! for `ttl`; range queries pass through. The cache can never fail a query: a Redis error or a
//! slow Redis (each operation is bounded by `op_timeout`) falls through to the datasource and
//! is counted. Without Redis configured, nothing wraps the datasource and nothing changes.
//!
//! Redis is spoken to directly (RESP2 `GET` and `SET … PX`), over one connection that is
//! re-established after any error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
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
    conn: Mutex<Option<BufReader<TcpStream>>>,
    stats: CacheStats,
}

/// A Redis reply, as far as `GET`/`SET` need.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Nil,
    Bulk(Vec<u8>),
}

impl CachedDatasource {
    /// Wraps `inner`. No connection is made until the first query.
    pub fn new(inner: Arc<dyn Datasource>, cfg: CacheConfig) -> Self {
        Self {
            inner,
            cfg,
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

    /// Runs one command, bounded by `op_timeout`; drops the connection on any error.
    async fn command(&self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut conn = self.conn.lock().await;
        let run = async {
            if conn.is_none() {
                let s = TcpStream::connect(&self.cfg.addr)
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.cfg.addr))?;
                *conn = Some(BufReader::new(s));
            }
            let Some(c) = conn.as_mut() else {
                return Err("no connection".to_string());
            };
            c.get_mut()
                .write_all(&encode_command(args))
                .await
                .map_err(|e| format!("write: {e}"))?;
            read_reply(c).await
        };
        let out = match tokio::time::timeout(self.cfg.op_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.cfg.op_timeout)),
        };
        if out.is_err() {
            *conn = None;
        }
        out
    }

    async fn lookup(&self, key: &str) -> Option<QueryOutput> {
        match self.command(&[b"GET", key.as_bytes()]).await {
            Ok(Reply::Bulk(body)) => match wire::parse_answer(200, &body, Duration::ZERO) {
                Ok(out) => Some(out),
                Err(e) => {
                    self.error("unreadable cached answer", &e.to_string());
                    None
                }
            },
            Ok(_) => None,
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
        let ttl = self.cfg.ttl.as_millis().max(1).to_string();
        let args: [&[u8]; 5] = [
            b"SET",
            key.as_bytes(),
            body.as_bytes(),
            b"PX",
            ttl.as_bytes(),
        ];
        if let Err(e) = self.command(&args).await {
            self.error("cache store failed", &e);
        }
    }

    fn error(&self, what: &str, detail: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(addr = %self.cfg.addr, error = %detail, "{what}");
    }
}

fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_reply(c: &mut BufReader<TcpStream>) -> Result<Reply, String> {
    let mut line = Vec::new();
    // A status line is short; bound it so a wrong server cannot feed an endless line.
    (&mut *c)
        .take(1024)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    match text.as_bytes().first() {
        Some(b'+') => Ok(Reply::Ok),
        Some(b'-') => Err(format!("redis error: {}", &text[1..])),
        Some(b'$') => {
            let n: i64 = text[1..]
                .parse()
                .map_err(|_| format!("bad reply {text:?}"))?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            let n = usize::try_from(n).map_err(|_| "bad length".to_string())?;
            if n > CACHED_ANSWER_BYTES_MAX {
                return Err(format!("cached value of {n} bytes exceeds the cap"));
            }
            let mut buf = vec![0u8; n + 2];
            c.read_exact(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            buf.truncate(n);
            Ok(Reply::Bulk(buf))
        }
        _ => Err(format!("unexpected reply {text:?}")),
    }
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
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(
            encode_command(&[b"GET", b"k:1"]),
            b"*2\r\n$3\r\nGET\r\n$3\r\nk:1\r\n".to_vec()
        );
    }
}
