//! The embedded store's configuration: the raw serde form (`deny_unknown_fields`) and the
//! validated [`EmbeddedSettings`], checked before anything is bound or opened.

use std::path::PathBuf;

use serde::Deserialize;

use super::remote_write;
use super::scrape::{RawScrapeConfig, ScrapeConfig};
use super::store;
use super::wal;
use crate::datasource::prometheus::ConfigError;

/// Default cap on samples one embedded query holds: a query that would return 10M points is
/// refused (`execution` error) instead of building a multi-GB answer.
pub const DEFAULT_QUERY_SAMPLES_MAX: usize = 5_000_000;
/// Default number of API queries evaluated at once (each takes a blocking-pool thread).
pub const DEFAULT_QUERY_CONCURRENCY_MAX: usize = 8;
/// Default and upper bound of an API query's deadline (Prometheus's `--query.timeout`).
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 120_000;
/// Default cap on `/api/v1/series` answers.
pub const DEFAULT_SERIES_RESULT_MAX: usize = 100_000;

/// The embedded store's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedStoreConfig {
    /// Most series held.
    pub series_max: usize,
    /// How long samples are kept (ms).
    pub retention_ms: i64,
    /// Most samples one query holds.
    pub query_samples_max: usize,
    /// Most queries evaluated at once.
    pub query_concurrency_max: usize,
    /// Default and maximum query deadline (ms).
    pub query_timeout_ms: u64,
    /// Most series one `/api/v1/series` answer lists.
    pub series_result_max: usize,
    /// Largest compressed remote-write body (bytes).
    pub write_body_bytes_max: usize,
    /// Largest decompressed remote-write body (bytes).
    pub write_decoded_bytes_max: usize,
    /// Size at which the on-disk log starts a new segment (bytes); segments are the unit
    /// retention deletes.
    pub wal_segment_bytes_max: u64,
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        Self {
            series_max: store::DEFAULT_SERIES_MAX,
            retention_ms: store::DEFAULT_RETENTION_MS,
            query_samples_max: DEFAULT_QUERY_SAMPLES_MAX,
            query_concurrency_max: DEFAULT_QUERY_CONCURRENCY_MAX,
            query_timeout_ms: DEFAULT_QUERY_TIMEOUT_MS,
            series_result_max: DEFAULT_SERIES_RESULT_MAX,
            write_body_bytes_max: remote_write::DEFAULT_WRITE_BODY_BYTES_MAX,
            write_decoded_bytes_max: remote_write::DEFAULT_WRITE_DECODED_BYTES_MAX,
            wal_segment_bytes_max: wal::DEFAULT_SEGMENT_BYTES_MAX,
        }
    }
}

/// The embedded store as written in the configuration; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbeddedStoreConfig {
    /// How long samples are kept (ms).
    pub retention_ms: Option<i64>,
    /// Most series held.
    pub series_max: Option<usize>,
    /// Most samples one query holds.
    pub query_samples_max: Option<usize>,
    /// Most queries evaluated at once.
    pub query_concurrency_max: Option<usize>,
    /// Default and maximum query deadline (ms).
    pub query_timeout_ms: Option<u64>,
    /// Most series one `/api/v1/series` answer lists.
    pub series_result_max: Option<usize>,
    /// Largest compressed remote-write body (bytes).
    pub write_body_bytes_max: Option<usize>,
    /// Largest decompressed remote-write body (bytes).
    pub write_decoded_bytes_max: Option<usize>,
    /// Directory of the on-disk log; absent = memory only (history lost on restart).
    pub wal_dir: Option<PathBuf>,
    /// Size at which the on-disk log starts a new segment (bytes).
    pub wal_segment_bytes_max: Option<u64>,
    /// Scrape jobs.
    #[serde(default)]
    pub scrape_configs: Vec<RawScrapeConfig>,
}

/// A validated embedded-store configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSettings {
    /// Limits of the store and its API.
    pub store: EmbeddedStoreConfig,
    /// Where the on-disk log lives, if anywhere.
    pub wal_dir: Option<PathBuf>,
    /// Validated scrape jobs.
    pub scrape: Vec<ScrapeConfig>,
}

fn positive<T: PartialOrd + Default + Copy>(
    field: &str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v <= T::default() {
        return Err(ConfigError {
            field: field.into(),
            reason: "must be positive".into(),
        });
    }
    Ok(v)
}

impl RawEmbeddedStoreConfig {
    /// Checks every field; the error names the field and the fix.
    pub fn validate(&self) -> Result<EmbeddedSettings, ConfigError> {
        let d = EmbeddedStoreConfig::default();
        let store = EmbeddedStoreConfig {
            series_max: positive("series_max", self.series_max, d.series_max)?,
            retention_ms: positive("retention_ms", self.retention_ms, d.retention_ms)?,
            query_samples_max: positive(
                "query_samples_max",
                self.query_samples_max,
                d.query_samples_max,
            )?,
            query_concurrency_max: positive(
                "query_concurrency_max",
                self.query_concurrency_max,
                d.query_concurrency_max,
            )?,
            query_timeout_ms: positive(
                "query_timeout_ms",
                self.query_timeout_ms,
                d.query_timeout_ms,
            )?,
            series_result_max: positive(
                "series_result_max",
                self.series_result_max,
                d.series_result_max,
            )?,
            write_body_bytes_max: positive(
                "write_body_bytes_max",
                self.write_body_bytes_max,
                d.write_body_bytes_max,
            )?,
            write_decoded_bytes_max: positive(
                "write_decoded_bytes_max",
                self.write_decoded_bytes_max,
                d.write_decoded_bytes_max,
            )?,
            wal_segment_bytes_max: positive(
                "wal_segment_bytes_max",
                self.wal_segment_bytes_max,
                d.wal_segment_bytes_max,
            )?,
        };
        if store.write_decoded_bytes_max < store.write_body_bytes_max {
            return Err(ConfigError {
                field: "write_decoded_bytes_max".into(),
                reason: "must be at least write_body_bytes_max (snappy never shrinks data)".into(),
            });
        }
        let mut scrape = Vec::with_capacity(self.scrape_configs.len());
        for (i, job) in self.scrape_configs.iter().enumerate() {
            scrape.push(job.validate().map_err(|e| ConfigError {
                field: format!("scrape_configs[{i}].{}", e.field),
                reason: e.reason,
            })?);
        }
        Ok(EmbeddedSettings {
            store,
            wal_dir: self.wal_dir.clone(),
            scrape,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_gives_the_defaults() {
        let s = RawEmbeddedStoreConfig::default().validate().unwrap();
        assert_eq!(s.store, EmbeddedStoreConfig::default());
        assert!(s.wal_dir.is_none() && s.scrape.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let raw: RawEmbeddedStoreConfig = serde_json::from_str(
            r#"{"retention_ms": 0, "scrape_configs": [{"job_name": "n", "targets": ["h:1"]}]}"#,
        )
        .unwrap();
        assert_eq!(raw.validate().unwrap_err().field, "retention_ms");
        let raw: RawEmbeddedStoreConfig = serde_json::from_str(
            r#"{"scrape_configs": [{"job_name": "n", "targets": ["h:1"], "scrape_timeout_ms": 60000}]}"#,
        )
        .unwrap();
        assert_eq!(
            raw.validate().unwrap_err().field,
            "scrape_configs[0].scrape_timeout_ms"
        );
        let err =
            serde_json::from_str::<RawEmbeddedStoreConfig>(r#"{"retention": 1}"#).unwrap_err();
        assert!(err.to_string().contains("retention"), "{err}");
    }
}
