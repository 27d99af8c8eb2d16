//! Scraping: configuration, the pure per-target core that turns one scrape's outcome into
//! samples (target labels, `up`, `scrape_duration_seconds`, staleness markers), and the async
//! loop that fetches targets on their interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::exposition::{self, ExpositionError, Format};
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

/// A sample to append: labels (a clone sharing the target's series cache's set), time (ms),
/// value.
pub type Appendable = (Labels, i64, f64);

/// What one target remembers between scrapes: each series text it exposed (a line's
/// `name{labels}` as written) with its final label set (exposed labels with the target's
/// applied), so that a series seen before costs a hash lookup instead of parsing its labels
/// and building them (Prometheus's scrape cache does the same); and which series the last
/// successful scrape exposed, so the ones that vanish get a staleness marker. Pure: the caller
/// supplies bodies, outcomes and times.
///
/// Bounded by the scrapes: after each successful one, only the series and texts it exposed are
/// kept (at most `sample_limit` series, and texts no more than the body's lines); a failed
/// scrape empties it.
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    /// Reads so far; a read's number marks what it saw (0: never).
    reads: u64,
    /// The read of the last successful scrape (0: none since the last failure).
    last_success: u64,
    /// The target labels the cached label sets were built with.
    target: Labels,
    /// Series text → its slot in `series`, and the last read that saw the text.
    texts: HashMap<Box<str>, (usize, u64)>,
    /// Final label set → its slot (two texts may denote one series).
    by_labels: HashMap<Labels, usize>,
    series: Vec<SeriesSlot>,
}

/// One series of a target.
#[derive(Debug, Clone)]
struct SeriesSlot {
    labels: Labels,
    /// The last read that exposed it.
    seen: u64,
    /// The last read that exposed it without a timestamp (only those get staleness markers,
    /// as in Prometheus).
    tracked: u64,
}

/// One scrape's samples, read by [`TargetState::read`] and not yet turned into
/// [`Appendable`]s by [`TargetState::on_success`].
#[derive(Debug)]
pub struct Scraped {
    read: u64,
    /// `(slot, exposed timestamp, value)` in body order, each series once.
    samples: Vec<(usize, Option<i64>, f64)>,
}

impl Scraped {
    /// Samples read (duplicates of a series not counted).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the body exposed no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
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
    /// Reads one scrape's body: each sample's series from the cache or, the first time its
    /// text is seen, from its parsed labels with `target`'s applied. A series exposed twice
    /// keeps its first sample. Fails on a line that is not exposition text and past
    /// `samples_max` samples; then call [`Self::on_failure`].
    pub fn read(
        &mut self,
        target: &Labels,
        text: &str,
        format: Format,
        samples_max: usize,
    ) -> Result<Scraped, ExpositionError> {
        if self.target != *target {
            self.forget();
            self.target = target.clone();
        }
        self.reads += 1;
        let read = self.reads;
        let mut samples = Vec::new();
        for sample in exposition::samples(text, format) {
            let sample = sample?;
            let slot = match self.texts.get_mut(sample.series) {
                Some((slot, seen)) => {
                    *seen = read;
                    *slot
                }
                None => self.add_text(sample.series, sample.line, read)?,
            };
            let series = &mut self.series[slot];
            if series.seen == read {
                continue;
            }
            if samples.len() >= samples_max {
                return Err(ExpositionError::TooManySamples { limit: samples_max });
            }
            series.seen = read;
            samples.push((slot, sample.t_ms, sample.value));
        }
        Ok(Scraped { read, samples })
    }

    /// Caches a series text seen for the first time (by `read`), and its series if new.
    fn add_text(&mut self, text: &str, line: usize, read: u64) -> Result<usize, ExpositionError> {
        let exposed = exposition::series_labels(text)
            .map_err(|reason| ExpositionError::Syntax { line, reason })?;
        let labels = with_target_labels(&exposed, &self.target);
        let slot = match self.by_labels.get(&labels) {
            Some(slot) => *slot,
            None => {
                self.series.push(SeriesSlot {
                    labels: labels.clone(),
                    seen: 0,
                    tracked: 0,
                });
                self.by_labels.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.texts.insert(text.into(), (slot, read));
        Ok(slot)
    }

    /// Samples for a successful scrape at `ts` that took `duration` (`scraped` is the latest
    /// [`Self::read`]'s result).
    pub fn on_success(
        &mut self,
        target: &Labels,
        scraped: Scraped,
        ts: i64,
        duration: Duration,
    ) -> Vec<Appendable> {
        debug_assert_eq!(scraped.read, self.reads, "the latest read's samples");
        let n = scraped.samples.len();
        let mut out = Vec::with_capacity(n + 3);
        for (slot, t_ms, value) in scraped.samples {
            let Some(series) = self.series.get_mut(slot) else {
                continue;
            };
            // Series with explicit timestamps get no staleness markers, as in Prometheus.
            if t_ms.is_none() {
                series.tracked = scraped.read;
            }
            out.push((series.labels.clone(), t_ms.unwrap_or(ts), value));
        }
        // Tracked by the previous successful scrape and not by this one: gone.
        if self.last_success != 0 {
            out.extend(
                self.series
                    .iter()
                    .filter(|s| s.tracked == self.last_success)
                    .map(|s| (s.labels.clone(), ts, STALE_NAN)),
            );
        }
        self.last_success = scraped.read;
        self.keep_only_read(scraped.read);
        out.push(report(target, "up", ts, 1.0));
        out.push(report(
            target,
            "scrape_duration_seconds",
            ts,
            duration.as_secs_f64(),
        ));
        out.push(report(target, "scrape_samples_scraped", ts, n as f64));
        out
    }

    /// Drops the series and texts `read` did not see (after their staleness markers).
    fn keep_only_read(&mut self, read: u64) {
        let series_seen = self.series.iter().filter(|s| s.seen == read).count();
        let texts_seen = self.texts.values().filter(|(_, r)| *r == read).count();
        if series_seen == self.series.len() && texts_seen == self.texts.len() {
            return;
        }
        let mut moved = vec![usize::MAX; self.series.len()];
        let mut kept = Vec::with_capacity(series_seen);
        for (i, s) in self.series.drain(..).enumerate() {
            if s.seen == read {
                moved[i] = kept.len();
                kept.push(s);
            }
        }
        self.series = kept;
        let relocate = |slot: &mut usize| {
            let to = moved[*slot];
            *slot = to;
            to != usize::MAX
        };
        self.by_labels.retain(|_, slot| relocate(slot));
        self.texts
            .retain(|_, (slot, seen)| *seen == read && relocate(slot));
    }

    /// Forgets every series (the staleness bookkeeping included).
    fn forget(&mut self) {
        self.last_success = 0;
        self.texts.clear();
        self.by_labels.clear();
        self.series.clear();
    }

    /// Staleness markers at `ts` for what the last successful scrape exposed; forgets all.
    fn all_stale(&mut self, ts: i64) -> Vec<Appendable> {
        let last = self.last_success;
        let out = if last == 0 {
            Vec::new()
        } else {
            self.series
                .iter()
                .filter(|s| s.tracked == last)
                .map(|s| (s.labels.clone(), ts, STALE_NAN))
                .collect()
        };
        self.forget();
        out
    }

    /// Samples for a failed scrape: `up` 0 and every previously exposed series marked stale.
    pub fn on_failure(&mut self, target: &Labels, ts: i64, duration: Duration) -> Vec<Appendable> {
        let mut out = self.all_stale(ts);
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
        let mut out = self.all_stale(ts);
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

/// A fetched body, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The exposition text.
    pub text: String,
    /// Its format, from the `Content-Type`.
    pub format: Format,
}

/// Fetches one target's body within the job's timeout and body size limit.
pub async fn fetch(
    http: &reqwest::Client,
    target: &ScrapeTarget,
    cfg: &ScrapeConfig,
) -> Result<Body, ScrapeError> {
    let work = async {
        let mut resp = http
            .get(target.url.clone())
            .header(ACCEPT, ACCEPT_HEADER)
            .timeout(cfg.timeout)
            .send()
            .await
            .map_err(|e| fetch_error(&e, cfg.timeout))?;
        if resp.status().as_u16() != 200 {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        // The announced length (if any) sizes the buffer, within the limit.
        let announced = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let mut body = Vec::with_capacity(announced.min(cfg.body_size_limit));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fetch_error(&e, cfg.timeout))?
        {
            if body.len() + chunk.len() > cfg.body_size_limit {
                return Err(ScrapeError::BodyTooLarge(cfg.body_size_limit));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body)
            .map_err(|e| ScrapeError::Parse(format!("not UTF-8: {}", e.utf8_error())))?;
        Ok(Body { text, format })
    };
    match tokio::time::timeout(cfg.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Fetch(format!(
            "scrape timed out after {:?}",
            cfg.timeout
        ))),
    }
}

/// A transport error, with its cause.
fn fetch_error(e: &reqwest::Error, timeout: Duration) -> ScrapeError {
    if e.is_timeout() {
        return ScrapeError::Fetch(format!("scrape timed out after {timeout:?}"));
    }
    ScrapeError::Fetch(crate::datasource::error::with_causes(e))
}

/// Fetches one target and reads its body into `state` (see [`TargetState::read`]).
pub async fn scrape(
    http: &reqwest::Client,
    target: &ScrapeTarget,
    cfg: &ScrapeConfig,
    state: &mut TargetState,
) -> Result<Scraped, ScrapeError> {
    let body = fetch(http, target, cfg).await?;
    state
        .read(&target.labels, &body.text, body.format, cfg.sample_limit)
        .map_err(|e| ScrapeError::Parse(e.to_string()))
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
            r = scrape(&http, &target, &cfg, &mut state) => r,
        };
        let took = started.elapsed();
        let samples = match outcome {
            Ok(scraped) => state.on_success(&target.labels, scraped, ts, took),
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
#[path = "scrape_tests.rs"]
mod tests;
