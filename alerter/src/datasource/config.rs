//! Which datasource a worker queries, as configured: a Prometheus-compatible API or the
//! embedded store, with the worker's query limits and the optional Redis cache. Parsed raw
//! (`deny_unknown_fields`), validated into [`DatasourceSettings`], then built into the
//! `Arc<dyn Datasource>` the worker holds.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Datasource;
use super::cache::{CacheConfig, CachedDatasource};
use super::embedded::EmbeddedStore;
use super::gate::{DEFAULT_MAX_CONCURRENT_QUERIES, GateConfig, QueryGate};
use super::prometheus::{ConfigError, PrometheusClient, PrometheusConfig, RawPrometheusConfig};

/// Default upper bound on a query's deadline.
pub const DEFAULT_QUERY_TIMEOUT_MS_MAX: u64 = 120_000;
/// Default lifetime of a cached answer: covers a handoff and a UI refresh, short enough that
/// late samples are seen on the next evaluation of a different slot anyway.
pub const DEFAULT_CACHE_TTL_MS: u64 = 5 * 60 * 1000;
/// Default bound on each Redis operation: the cache must cost less than the query it saves.
pub const DEFAULT_CACHE_OP_TIMEOUT_MS: u64 = 100;

/// The optional Redis query cache as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheConfig {
    /// `host:port` of Redis.
    pub redis_addr: String,
    /// Lifetime of a cached answer.
    #[serde(default = "default_ttl")]
    pub ttl_ms: u64,
    /// Bound on each Redis operation.
    #[serde(default = "default_op_timeout")]
    pub op_timeout_ms: u64,
}

fn default_ttl() -> u64 {
    DEFAULT_CACHE_TTL_MS
}
fn default_op_timeout() -> u64 {
    DEFAULT_CACHE_OP_TIMEOUT_MS
}
fn default_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENT_QUERIES
}
fn default_timeout_max() -> u64 {
    DEFAULT_QUERY_TIMEOUT_MS_MAX
}

/// A datasource as configured: exactly one of `prometheus` or `embedded = true`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatasourceConfig {
    /// Name, used in cache keys and logs.
    pub name: String,
    /// A Prometheus-compatible API.
    #[serde(default)]
    pub prometheus: Option<RawPrometheusConfig>,
    /// The embedded store of this process.
    #[serde(default)]
    pub embedded: bool,
    /// Most queries in flight from one worker.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_queries: usize,
    /// Upper bound on any query's deadline.
    #[serde(default = "default_timeout_max")]
    pub query_timeout_ms_max: u64,
    /// The optional shared query cache.
    #[serde(default)]
    pub cache: Option<RawCacheConfig>,
}

/// What answers the queries.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A Prometheus-compatible API.
    Prometheus(Box<PrometheusConfig>),
    /// The embedded store of this process.
    Embedded,
}

/// A validated datasource configuration.
#[derive(Debug, Clone)]
pub struct DatasourceSettings {
    /// Name.
    pub name: String,
    /// What answers.
    pub backend: Backend,
    /// The worker's limits.
    pub gate: GateConfig,
    /// The cache, if configured.
    pub cache: Option<CacheConfig>,
}

fn invalid(field: &str, reason: &str) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl RawDatasourceConfig {
    /// Checks every field; the error names the field (dotted path) and the fix.
    pub fn validate(&self) -> Result<DatasourceSettings, ConfigError> {
        if self.name.is_empty() || self.name.contains(':') {
            return Err(invalid("name", "must be non-empty and contain no `:`"));
        }
        let backend = match (&self.prometheus, self.embedded) {
            (Some(p), false) => {
                Backend::Prometheus(Box::new(p.validate().map_err(|e| ConfigError {
                    field: format!("prometheus.{}", e.field),
                    reason: e.reason,
                })?))
            }
            (None, true) => Backend::Embedded,
            _ => {
                return Err(invalid(
                    "prometheus",
                    "set exactly one of `prometheus` (a URL and options) or `embedded = true`",
                ));
            }
        };
        if self.max_concurrent_queries == 0 {
            return Err(invalid("max_concurrent_queries", "must be positive"));
        }
        if self.query_timeout_ms_max == 0 {
            return Err(invalid("query_timeout_ms_max", "must be positive"));
        }
        let cache = match &self.cache {
            None => None,
            Some(c) => {
                if c.redis_addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(invalid("cache.redis_addr", "expected host:port"));
                }
                if c.ttl_ms == 0 || c.op_timeout_ms == 0 {
                    return Err(invalid(
                        "cache.ttl_ms",
                        "ttl_ms and op_timeout_ms must be positive",
                    ));
                }
                Some(CacheConfig {
                    addr: c.redis_addr.clone(),
                    datasource: self.name.clone(),
                    ttl: Duration::from_millis(c.ttl_ms),
                    op_timeout: Duration::from_millis(c.op_timeout_ms),
                })
            }
        };
        Ok(DatasourceSettings {
            name: self.name.clone(),
            backend,
            gate: GateConfig {
                max_concurrent: self.max_concurrent_queries,
                max_timeout: Duration::from_millis(self.query_timeout_ms_max),
            },
            cache,
        })
    }
}

impl DatasourceSettings {
    /// Builds the datasource a worker holds: backend, then cache, then the gate (deadline,
    /// concurrency cap, coalescing), so coalesced queries also share one cache lookup.
    /// `embedded` is this process's embedded store, required for the embedded backend.
    pub fn build(
        &self,
        embedded: Option<&Arc<EmbeddedStore>>,
    ) -> Result<Arc<QueryGate>, ConfigError> {
        let backend: Arc<dyn Datasource> = match &self.backend {
            Backend::Prometheus(cfg) => Arc::new(PrometheusClient::new((**cfg).clone())?),
            Backend::Embedded => embedded
                .ok_or_else(|| invalid("embedded", "this process runs no embedded store"))?
                .datasource_handle(),
        };
        let cached: Arc<dyn Datasource> = match &self.cache {
            Some(c) => Arc::new(CachedDatasource::new(backend, c.clone())),
            None => backend,
        };
        Ok(Arc::new(QueryGate::new(cached, self.gate.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::InstantQuery;
    use crate::datasource::embedded::EmbeddedStoreConfig;

    fn parse(json: &str) -> RawDatasourceConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn exactly_one_backend_and_fields_are_named() {
        let field = |j: &str| parse(j).validate().unwrap_err().field;
        assert_eq!(field(r#"{"name":"a"}"#), "prometheus");
        assert_eq!(
            field(r#"{"name":"a","embedded":true,"prometheus":{"url":"http://p"}}"#),
            "prometheus"
        );
        assert_eq!(
            field(r#"{"name":"a","prometheus":{"url":"ftp://p"}}"#),
            "prometheus.url"
        );
        assert_eq!(
            field(r#"{"name":"a","embedded":true,"cache":{"redis_addr":"nope"}}"#),
            "cache.redis_addr"
        );
        assert_eq!(field(r#"{"name":"a:b","embedded":true}"#), "name");
        let ok = parse(
            r#"{"name":"eu","prometheus":{"url":"http://p:9090"},"cache":{"redis_addr":"r:6379"}}"#,
        )
        .validate()
        .unwrap();
        assert!(matches!(ok.backend, Backend::Prometheus(_)));
        assert_eq!(
            ok.cache.unwrap().ttl,
            Duration::from_millis(DEFAULT_CACHE_TTL_MS)
        );
        assert!(
            serde_json::from_str::<RawDatasourceConfig>(r#"{"name":"a","embeded":true}"#).is_err()
        );
    }

    #[tokio::test]
    async fn the_embedded_backend_is_built_over_this_process_store() {
        let settings = parse(r#"{"name":"local","embedded":true}"#)
            .validate()
            .unwrap();
        assert!(
            settings.build(None).is_err(),
            "no embedded store in this process"
        );
        let store = EmbeddedStore::new(EmbeddedStoreConfig::default());
        let ds = settings.build(Some(&store)).unwrap();
        let q = InstantQuery {
            expr: "1 + 1".into(),
            ts_ms: 0,
            timeout: Duration::from_secs(5),
        };
        let out = ds.instant(&q).await.unwrap();
        assert_eq!(out.value, crate::promql::Value::Scalar { t: 0, v: 2.0 });
    }
}
