//! Scraping: configuration, the pure per-target core that turns one scrape's outcome into
//! samples (target labels, `up`, `scrape_duration_seconds`, staleness markers), and the async
//! loop that fetches targets on their interval.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::exposition::{self, ExposedSample, Format};
use super::ingest::Ingest;
use super::now_ms;
use crate::datasource::prometheus::ConfigError;
use crate::promql::{Labels, STALE_NAN};

/// Default scrape interval (Prometheus's default is 1m; 15s is what most setups use).
pub const DEFAULT_SCRAPE_INTERVAL_MS: u64 = 15_000;
/// Default scrape timeout (Prometheus's default).
pub const DEFAULT_SCRAPE_TIMEOUT_MS: u64 = 10_000;
/// Default cap on one scrape's body: large exporters (kube-state-metrics) serve a few MB.
pub const DEFAULT_BODY_SIZE_LIMIT_BYTES: u64 = 16 * 1024 * 1024;
/// Default cap on samples in one scrape: refuses a target exposing a million series.
pub const DEFAULT_SAMPLE_LIMIT: usize = 50_000;
/// Shortest accepted interval: faster scraping is load, not monitoring.
const SCRAPE_INTERVAL_MS_MIN: u64 = 100;
/// What the scraper asks for, in order of preference.
const ACCEPT_HEADER: &str =
    "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One scrape job as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScrapeConfig {
    /// The `job` label of every target.
    pub job_name: String,
    /// `host:port` of each target; becomes the `instance` label.
    pub targets: Vec<String>,
    /// Path of the metrics endpoint.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// How often each target is scraped.
    #[serde(default = "default_interval")]
    pub scrape_interval_ms: u64,
    /// Deadline of one scrape; at most `scrape_interval_ms`.
    #[serde(default = "default_timeout")]
    pub scrape_timeout_ms: u64,
    /// Largest body accepted; a larger one fails the scrape.
    #[serde(default = "default_body_limit")]
    pub body_size_limit_bytes: u64,
    /// Most samples accepted from one scrape; more fails the scrape.
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_interval() -> u64 {
    DEFAULT_SCRAPE_INTERVAL_MS
}
fn default_timeout() -> u64 {
    DEFAULT_SCRAPE_TIMEOUT_MS
}
fn default_body_limit() -> u64 {
    DEFAULT_BODY_SIZE_LIMIT_BYTES
}
fn default_sample_limit() -> usize {
    DEFAULT_SAMPLE_LIMIT
}

/// One target of a validated job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Full URL scraped.
    pub url: Url,
    /// `job` and `instance`.
    pub labels: Labels,
}

/// A validated scrape job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeConfig {
    /// The targets.
    pub targets: Vec<ScrapeTarget>,
    /// Time between scrapes of a target.
    pub interval: Duration,
    /// Deadline of one scrape.
    pub timeout: Duration,
    /// Largest body accepted (bytes).
    pub body_size_limit: usize,
    /// Most samples per scrape.
    pub sample_limit: usize,
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl RawScrapeConfig {
    /// Checks every field; the error names the field and the fix.
    pub fn validate(&self) -> Result<ScrapeConfig, ConfigError> {
        if self.job_name.is_empty() {
            return Err(invalid("job_name", "must not be empty"));
        }
        if self.scrape_interval_ms < SCRAPE_INTERVAL_MS_MIN {
            return Err(invalid(
                "scrape_interval_ms",
                format!("must be at least {SCRAPE_INTERVAL_MS_MIN}"),
            ));
        }
        if self.scrape_timeout_ms == 0 || self.scrape_timeout_ms > self.scrape_interval_ms {
            return Err(invalid(
                "scrape_timeout_ms",
                "must be positive and at most scrape_interval_ms",
            ));
        }
        if !self.metrics_path.starts_with('/') {
            return Err(invalid("metrics_path", "must start with `/`"));
        }
        let body_size_limit = usize::try_from(self.body_size_limit_bytes)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("body_size_limit_bytes", "must be positive"))?;
        if self.sample_limit == 0 {
            return Err(invalid("sample_limit", "must be positive"));
        }
        if self.targets.is_empty() {
            return Err(invalid("targets", "list at least one host:port"));
        }
        let mut targets = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let url = Url::parse(&format!("http://{t}{}", self.metrics_path))
                .ok()
                .filter(|u| u.host_str().is_some() && u.port_or_known_default().is_some())
                .ok_or_else(|| invalid(&format!("targets[{i}]"), "expected host:port"))?;
            targets.push(ScrapeTarget {
                url,
                labels: Labels::from_pairs([("job", self.job_name.as_str()), ("instance", t)]),
            });
        }
        Ok(ScrapeConfig {
            targets,
            interval: Duration::from_millis(self.scrape_interval_ms),
            timeout: Duration::from_millis(self.scrape_timeout_ms),
            body_size_limit,
            sample_limit: self.sample_limit,
        })
    }
}

/// A sample to append: labels, time (ms), value.
pub type Appendable = (Labels, i64, f64);

/// What one target remembers between scrapes: the series it exposed last time, so the ones
/// that vanish get a staleness marker. Pure: the caller supplies outcomes and times.
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    previous: BTreeSet<Labels>,
}

/// The series every scrape reports about itself.
const REPORT_METRICS: [&str; 3] = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];

fn report(target: &Labels, name: &str, ts: i64, v: f64) -> Appendable {
    let mut l = target.clone();
    l.set("__name__".into(), name.into());
    (l, ts, v)
}

/// Applies the target's labels; a conflicting exposed label is kept as `exported_<name>`
/// (Prometheus's `honor_labels: false`).
fn with_target_labels(exposed: &Labels, target: &Labels) -> Labels {
    let mut l = exposed.clone();
    for (name, value) in target.iter() {
        let theirs = exposed.get(name);
        if !theirs.is_empty() && theirs != value {
            l.set(format!("exported_{name}"), theirs.to_string());
        }
        l.set(name.to_string(), value.to_string());
    }
    l
}

impl TargetState {
    /// Samples for a successful scrape at `ts` that took `duration`.
    pub fn on_success(
        &mut self,
        target: &Labels,
        exposed: Vec<ExposedSample>,
        ts: i64,
        duration: Duration,
    ) -> Vec<Appendable> {
        let scraped = exposed.len();
        let mut out = Vec::with_capacity(scraped + self.previous.len() + 3);
        let mut current = BTreeSet::new();
        for s in exposed {
            let labels = with_target_labels(&s.labels, target);
            // Series with explicit timestamps get no staleness markers, as in Prometheus.
            if s.t_ms.is_none() {
                current.insert(labels.clone());
            }
            out.push((labels, s.t_ms.unwrap_or(ts), s.value));
        }
        for gone in self.previous.difference(&current) {
            out.push((gone.clone(), ts, STALE_NAN));
        }
        self.previous = current;
        out.push(report(target, "up", ts, 1.0));
        out.push(report(
            target,
            "scrape_duration_seconds",
            ts,
            duration.as_secs_f64(),
        ));
        out.push(report(target, "scrape_samples_scraped", ts, scraped as f64));
        out
    }

    /// Samples for a failed scrape: `up` 0 and every previously exposed series marked stale.
    pub fn on_failure(&mut self, target: &Labels, ts: i64, duration: Duration) -> Vec<Appendable> {
        let mut out: Vec<Appendable> = std::mem::take(&mut self.previous)
            .into_iter()
            .map(|l| (l, ts, STALE_NAN))
            .collect();
        out.push(report(target, "up", ts, 0.0));
        out.push(report(
            target,
            "scrape_duration_seconds",
            ts,
            duration.as_secs_f64(),
        ));
        out.push(report(target, "scrape_samples_scraped", ts, 0.0));
        out
    }

    /// Samples when the target is removed: every series it had, its own included, goes stale.
    pub fn on_stop(&mut self, target: &Labels, ts: i64) -> Vec<Appendable> {
        let mut out: Vec<Appendable> = std::mem::take(&mut self.previous)
            .into_iter()
            .map(|l| (l, ts, STALE_NAN))
            .collect();
        out.extend(
            REPORT_METRICS
                .iter()
                .map(|n| report(target, n, ts, STALE_NAN)),
        );
        out
    }
}

/// Why one scrape failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    /// Connecting, sending or reading failed (including the timeout).
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The target answered with a non-200 status.
    #[error("target answered HTTP {0}")]
    Status(u16),
    /// The body exceeded `body_size_limit_bytes`.
    #[error("body larger than body_size_limit_bytes ({0} bytes)")]
    BodyTooLarge(usize),
    /// The body is not exposition text.
    #[error("unparsable body: {0}")]
    Parse(String),
}

/// Fetches and parses one target within the job's timeout.
pub async fn fetch(
    http: &reqwest::Client,
    target: &ScrapeTarget,
    cfg: &ScrapeConfig,
) -> Result<Vec<ExposedSample>, ScrapeError> {
    let work = async {
        let mut resp = http
            .get(target.url.clone())
            .header(ACCEPT, ACCEPT_HEADER)
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(|e| ScrapeError::Fetch(e.to_string()))?;
        if resp.status().as_u16() != 200 {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ScrapeError::Fetch(e.to_string()))?
        {
            if body.len() + chunk.len() > cfg.body_size_limit {
                return Err(ScrapeError::BodyTooLarge(cfg.body_size_limit));
            }
            body.extend_from_slice(&chunk);
        }
        let text = std::str::from_utf8(&body)
            .map_err(|e| ScrapeError::Parse(format!("not UTF-8: {e}")))?;
        exposition::parse(text, format, cfg.sample_limit)
            .map_err(|e| ScrapeError::Parse(e.to_string()))
    };
    match tokio::time::timeout(cfg.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Fetch(format!(
            "scrape timed out after {:?}",
            cfg.timeout
        ))),
    }
}

/// Scrapes `target` every `cfg.interval` until `cancel`, then marks its series stale.
pub async fn run_target(
    http: reqwest::Client,
    ingest: Arc<Ingest>,
    target: ScrapeTarget,
    cfg: ScrapeConfig,
    cancel: CancellationToken,
) {
    let mut state = TargetState::default();
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let ts = now_ms();
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            () = cancel.cancelled() => break,
            r = fetch(&http, &target, &cfg) => r,
        };
        let took = started.elapsed();
        let samples = match outcome {
            Ok(exposed) => state.on_success(&target.labels, exposed, ts, took),
            Err(e) => {
                ingest.stats().record_scrape_failure();
                tracing::warn!(target = %target.url, error = %e, "scrape failed");
                state.on_failure(&target.labels, ts, took)
            }
        };
        ingest.stats().record_scrape();
        ingest.append_samples(&samples);
    }
    let samples = state.on_stop(&target.labels, now_ms());
    ingest.append_samples(&samples);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::is_stale;

    fn target() -> Labels {
        Labels::from_pairs([("job", "node"), ("instance", "h:9100")])
    }

    fn exposed(name: &str, extra: &[(&str, &str)]) -> ExposedSample {
        let mut pairs = vec![("__name__", name)];
        pairs.extend_from_slice(extra);
        ExposedSample {
            labels: Labels::from_pairs(pairs),
            value: 1.0,
            t_ms: None,
        }
    }

    fn find<'a>(out: &'a [Appendable], name: &str) -> Vec<&'a Appendable> {
        out.iter()
            .filter(|(l, _, _)| l.get("__name__") == name)
            .collect()
    }

    #[test]
    fn vanished_series_get_staleness_markers() {
        let mut st = TargetState::default();
        let d = Duration::from_millis(5);
        let out = st.on_success(
            &target(),
            vec![exposed("a", &[]), exposed("b", &[])],
            1_000,
            d,
        );
        assert_eq!(out.len(), 5);
        assert_eq!(find(&out, "a")[0].0.get("job"), "node");
        assert_eq!(find(&out, "up")[0].2, 1.0);
        assert_eq!(find(&out, "scrape_duration_seconds")[0].2, 0.005);
        let out = st.on_success(&target(), vec![exposed("a", &[])], 2_000, d);
        let b = find(&out, "b");
        assert_eq!(b.len(), 1);
        assert!(is_stale(b[0].2) && b[0].1 == 2_000);
        let out = st.on_failure(&target(), 3_000, d);
        assert!(is_stale(find(&out, "a")[0].2));
        assert_eq!(find(&out, "up")[0].2, 0.0);
        let out = st.on_stop(&target(), 4_000);
        assert!(
            find(&out, "a").is_empty(),
            "already stale after the failure"
        );
        assert!(is_stale(find(&out, "up")[0].2));
    }

    #[test]
    fn conflicting_exposed_labels_are_kept_as_exported() {
        let mut st = TargetState::default();
        let out = st.on_success(
            &target(),
            vec![exposed("a", &[("job", "other")])],
            1,
            Duration::ZERO,
        );
        let l = &find(&out, "a")[0].0;
        assert_eq!(l.get("job"), "node");
        assert_eq!(l.get("exported_job"), "other");
    }

    #[test]
    fn config_validation_names_fields() {
        let raw = RawScrapeConfig {
            job_name: "node".into(),
            targets: vec!["127.0.0.1:9100".into()],
            metrics_path: default_metrics_path(),
            scrape_interval_ms: 1_000,
            scrape_timeout_ms: 500,
            body_size_limit_bytes: 1024,
            sample_limit: 10,
        };
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.targets[0].url.as_str(), "http://127.0.0.1:9100/metrics");
        assert_eq!(cfg.targets[0].labels.get("instance"), "127.0.0.1:9100");
        let field = |r: RawScrapeConfig| r.validate().unwrap_err().field;
        assert_eq!(
            field(RawScrapeConfig {
                scrape_timeout_ms: 2_000,
                ..raw.clone()
            }),
            "scrape_timeout_ms"
        );
        assert_eq!(
            field(RawScrapeConfig {
                targets: vec!["a b".into()],
                ..raw.clone()
            }),
            "targets[0]"
        );
        assert_eq!(
            field(RawScrapeConfig {
                sample_limit: 0,
                ..raw.clone()
            }),
            "sample_limit"
        );
        let err = serde_json::from_str::<RawScrapeConfig>(
            r#"{"job_name":"x","targets":[],"interval":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("interval"));
    }
}
