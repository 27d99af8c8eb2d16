//! The synthetic workload: per target a counter and a gauge in the embedded store, alerting
//! rules over them, and the one change that makes a tenth of the rules true at a known time.
//!
//! Targets are grouped in jobs of [`INSTANCES_PER_JOB`]; rule `r` watches job `r % jobs`, so
//! several rules share each job's series (as real alerts share metrics). The
//! rules cycle through three expressions, each with its own threshold so no two rules send the
//! same query:
//!
//! - `rate(bench_requests_total{job="J"}[1m]) > T` (one alert per instance),
//! - `sum by (job) (rate(bench_requests_total{job="J"}[1m])) > T` (one alert per job),
//! - `bench_temperature{job="J"} > T` (a plain threshold, one alert per instance).
//!
//! Every job is below every threshold until [`Feeder::flip`]; from then on the jobs whose
//! index is a multiple of ten (a tenth of the rules) are far above theirs: their counters jump
//! by [`COUNTER_JUMP`] and their gauges read [`GAUGE_HOT`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tocsin_alerter::datasource::embedded::MetricStore;
use tocsin_alerter::promql::Labels;
use tokio_util::sync::CancellationToken;

/// Targets per job.
pub const INSTANCES_PER_JOB: usize = 4;
/// Spacing of the synthetic samples: a short scrape interval, so a `[1m]` window holds 12.
const SAMPLE_INTERVAL_MS: i64 = 5_000;
/// History written before the run: a minute for `rate(..[1m])`, and more.
const HISTORY_MS: i64 = 5 * 60_000;
/// A normal target's counter grows by this much per second (a job's sum: four times it).
const COUNTER_RATE_PER_S: f64 = 10.0;
/// The jump of a hot target's counter at the change: its 1m rate becomes about 16,700/s.
const COUNTER_JUMP: f64 = 1.0e6;
/// A normal target's gauge.
const GAUGE_NORMAL: f64 = 50.0;
/// A hot target's gauge after the change.
const GAUGE_HOT: f64 = 500.0;
/// Every threshold is this plus `r / 10⁴` (so at most 101 for 10k rules): above every normal
/// value (10, 40, 50), far below every hot one.
const THRESHOLD_BASE: f64 = 100.0;
/// Rules per namespace, each namespace one `PutRules` proposal (about 100 KB at this size,
/// far under the batcher's 512 KiB per entry).
const RULES_PER_NAMESPACE: usize = 1000;

/// The shape of one run's workload.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Alerting rules.
    pub rules: usize,
    /// Rules per group.
    pub per_group: usize,
    /// Evaluation interval of every group, ms.
    pub interval_ms: u64,
    /// Jobs (a multiple of ten, so exactly a tenth of them are hot).
    pub jobs: usize,
}

impl Dataset {
    /// The workload for `rules` rules in groups of `per_group`, evaluated every `interval_ms`,
    /// over about `jobs` jobs (rounded up to a multiple of ten).
    pub fn new(rules: usize, per_group: usize, interval_ms: u64, jobs: usize) -> Self {
        let jobs = jobs.max(10).div_ceil(10) * 10;
        Self {
            rules,
            per_group,
            interval_ms,
            jobs,
        }
    }

    /// Series in the embedded store (a counter and a gauge per target).
    pub fn series(&self) -> usize {
        self.jobs * INSTANCES_PER_JOB * 2
    }

    /// Rule groups.
    pub fn groups(&self) -> usize {
        self.rules.div_ceil(self.per_group)
    }

    fn job_of(&self, rule: usize) -> usize {
        rule % self.jobs
    }

    fn is_hot_job(job: usize) -> bool {
        job.is_multiple_of(10)
    }

    /// Rules made true by the change.
    pub fn hot_rules(&self) -> usize {
        (0..self.rules)
            .filter(|r| Self::is_hot_job(self.job_of(*r)))
            .count()
    }

    /// Alerts that fire after the change (rules aggregating by job fire once, the others once
    /// per instance).
    pub fn expected_firing(&self) -> usize {
        (0..self.rules)
            .filter(|r| Self::is_hot_job(self.job_of(*r)))
            .map(|r| if r % 3 == 1 { 1 } else { INSTANCES_PER_JOB })
            .sum()
    }

    fn expr(&self, rule: usize) -> String {
        let job = self.job_of(rule);
        let t = THRESHOLD_BASE + rule as f64 * 1e-4;
        match rule % 3 {
            0 => format!("rate(bench_requests_total{{job=\"job-{job}\"}}[1m]) > {t:.4}"),
            1 => format!(
                "sum by (job) (rate(bench_requests_total{{job=\"job-{job}\"}}[1m])) > {t:.4}"
            ),
            _ => format!("bench_temperature{{job=\"job-{job}\"}} > {t:.4}"),
        }
    }

    /// The rule files, one per namespace: `(namespace, YAML)`. Groups are named `gNNNNN`
    /// across namespaces, so a group name alone identifies a group.
    pub fn rule_files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = Vec::new();
        for g in 0..self.groups() {
            let first = g * self.per_group;
            let ns = format!("bench-{}", first / RULES_PER_NAMESPACE);
            if files.last().is_none_or(|(n, _)| *n != ns) {
                files.push((ns, "groups:\n".to_string()));
            }
            let Some((_, text)) = files.last_mut() else {
                continue;
            };
            text.push_str(&format!(
                "- name: g{g:05}\n  interval: {}ms\n  rules:\n",
                self.interval_ms
            ));
            for r in first..(first + self.per_group).min(self.rules) {
                text.push_str(&format!(
                    "  - alert: BenchRule{r:05}\n    expr: '{}'\n",
                    self.expr(r)
                ));
            }
        }
        files
    }
}

/// One target's two series.
#[derive(Debug)]
struct Target {
    counter: Labels,
    gauge: Labels,
    hot_job: bool,
}

/// Writes the synthetic samples into the embedded store: the history, one sample per series
/// every [`SAMPLE_INTERVAL_MS`] while running, and the change.
#[derive(Debug)]
pub struct Feeder {
    store: Arc<RwLock<MetricStore>>,
    targets: Vec<Target>,
    /// Zero of the counters' time line, ms.
    origin_ms: i64,
    /// Whether the change happened; read and written only under the store's write lock, so a
    /// regular sample never lands after the change with pre-change values.
    changed: AtomicBool,
    /// Samples the store refused (out of order: two writes in the same millisecond).
    refused: AtomicU64,
}

impl Feeder {
    /// A feeder for `dataset` writing into `store`.
    pub fn new(dataset: &Dataset, store: Arc<RwLock<MetricStore>>, now_ms: i64) -> Self {
        let mut targets = Vec::with_capacity(dataset.jobs * INSTANCES_PER_JOB);
        for job in 0..dataset.jobs {
            for i in 0..INSTANCES_PER_JOB {
                let (job_l, inst) = (format!("job-{job}"), format!("i-{i}"));
                targets.push(Target {
                    counter: Labels::from_pairs([
                        ("__name__", "bench_requests_total"),
                        ("job", job_l.as_str()),
                        ("instance", inst.as_str()),
                    ]),
                    gauge: Labels::from_pairs([
                        ("__name__", "bench_temperature"),
                        ("job", job_l.as_str()),
                        ("instance", inst.as_str()),
                    ]),
                    hot_job: Dataset::is_hot_job(job),
                });
            }
        }
        Self {
            store,
            targets,
            origin_ms: now_ms - HISTORY_MS,
            changed: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    /// Samples refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn append(&self, store: &mut MetricStore, t_ms: i64, only_hot: bool) {
        let changed = self.changed.load(Ordering::Relaxed);
        let base = COUNTER_RATE_PER_S * (t_ms - self.origin_ms) as f64 / 1000.0;
        let mut refused = 0;
        for target in self.targets.iter().filter(|t| !only_hot || t.hot_job) {
            let hot = changed && target.hot_job;
            let counter = base + if hot { COUNTER_JUMP } else { 0.0 };
            let gauge = if hot { GAUGE_HOT } else { GAUGE_NORMAL };
            refused += usize::from(store.append(&target.counter, t_ms, counter).is_err());
            refused += usize::from(store.append(&target.gauge, t_ms, gauge).is_err());
        }
        self.refused.fetch_add(refused as u64, Ordering::Relaxed);
    }

    /// Writes [`HISTORY_MS`] of samples up to `now_ms` (blocking: call it off the runtime).
    pub fn backfill(&self, now_ms: i64) {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let mut t = self.origin_ms;
        while t <= now_ms {
            self.append(&mut store, t, false);
            t += SAMPLE_INTERVAL_MS;
        }
    }

    /// One sample for every series at `now_ms()` (read under the lock, so it is never older
    /// than the change).
    fn tick(&self, now_ms: fn() -> i64) {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        self.append(&mut store, now_ms(), false);
    }

    /// The change: the hot jobs' series get their post-change sample at `now_ms()`, written
    /// under one write lock. Returns that timestamp: a query at or after it sees the change.
    pub fn flip(&self, now_ms: fn() -> i64) -> i64 {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        self.changed.store(true, Ordering::Relaxed);
        let t = now_ms();
        self.append(&mut store, t, true);
        t
    }

    /// Writes a sample per series every [`SAMPLE_INTERVAL_MS`] until `cancel`.
    pub async fn run(self: Arc<Self>, now_ms: fn() -> i64, cancel: CancellationToken) {
        let mut ticker =
            tokio::time::interval(Duration::from_millis(SAMPLE_INTERVAL_MS.unsigned_abs()));
        ticker.tick().await; // the first tick is immediate; the backfill covered it
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => self.tick(now_ms),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_the_rules_are_hot_and_files_parse() {
        let d = Dataset::new(1000, 10, 1000, 100);
        assert_eq!(d.jobs, 100);
        assert_eq!(d.groups(), 100);
        assert_eq!(d.hot_rules(), 100);
        // 100 hot rules: a third aggregate by job (one alert), the others one per instance.
        let agg = (0..1000)
            .filter(|r| r % 100 % 10 == 0 && r % 3 == 1)
            .count();
        assert_eq!(d.expected_firing(), agg + (100 - agg) * INSTANCES_PER_JOB);
        let files = d.rule_files();
        assert_eq!(files.len(), 1);
        let mut rules = 0;
        for (ns, text) in &files {
            let f = tocsin_alerter::rules::parse_rule_file(ns, text).expect("parses");
            rules += f.rule_count();
        }
        assert_eq!(rules, 1000);
        let small = Dataset::new(50, 10, 1000, 100);
        assert_eq!((small.jobs, small.hot_rules()), (100, 5));
        assert_eq!(Dataset::new(10_000, 10, 1000, 95).hot_rules(), 1000);
    }
}
