//! [`Ingest`]: the one path samples take into the embedded store — the in-memory
//! [`MetricStore`], the optional on-disk log, and the counters for refused input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::scrape::Appendable;
use super::store::MetricStore;
use super::wal::{Batch, Wal};
use crate::promql::Labels;

/// Ingestion counters (exported as metrics by the binary).
#[derive(Debug, Default)]
pub struct IngestStats {
    scrapes: AtomicU64,
    scrape_failures: AtomicU64,
    samples_appended: AtomicU64,
    samples_refused: AtomicU64,
    writes_refused: AtomicU64,
}

/// A snapshot of [`IngestStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestCounts {
    /// Scrapes attempted.
    pub scrapes: u64,
    /// Scrapes that failed (fetch error, bad status, body or sample limit, garbage).
    pub scrape_failures: u64,
    /// Samples stored.
    pub samples_appended: u64,
    /// Samples refused (out of order, series cap, invalid labels).
    pub samples_refused: u64,
    /// Remote-write bodies refused whole (too large, not snappy, not protobuf).
    pub writes_refused: u64,
}

impl IngestStats {
    pub(crate) fn record_scrape(&self) {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_scrape_failure(&self) {
        self.scrape_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_append(&self, appended: usize, refused: usize) {
        self.samples_appended
            .fetch_add(appended as u64, Ordering::Relaxed);
        self.samples_refused
            .fetch_add(refused as u64, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn counts(&self) -> IngestCounts {
        IngestCounts {
            scrapes: self.scrapes.load(Ordering::Relaxed),
            scrape_failures: self.scrape_failures.load(Ordering::Relaxed),
            samples_appended: self.samples_appended.load(Ordering::Relaxed),
            samples_refused: self.samples_refused.load(Ordering::Relaxed),
            writes_refused: self.writes_refused.load(Ordering::Relaxed),
        }
    }
}

/// The outcome of one remote-write request that decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteSummary {
    /// Samples stored.
    pub appended: usize,
    /// Samples refused.
    pub refused: usize,
    /// The first refusal, for the answer to the sender.
    pub first_error: Option<String>,
}

/// Where samples go: memory first, then (when configured) the on-disk log.
#[derive(Debug)]
pub struct Ingest {
    store: Arc<RwLock<MetricStore>>,
    stats: IngestStats,
    wal: Option<Wal>,
}

impl Ingest {
    /// Ingestion into `store`, logged to `wal` when given.
    pub fn new(store: Arc<RwLock<MetricStore>>, wal: Option<Wal>) -> Self {
        Self {
            store,
            stats: IngestStats::default(),
            wal,
        }
    }

    /// The shared data.
    pub fn store(&self) -> &Arc<RwLock<MetricStore>> {
        &self.store
    }

    /// The counters.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// The on-disk log, if configured.
    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    /// Appends series' samples; refusals (out of order, series cap, invalid labels) are
    /// counted and summarised, never fatal. Accepted samples are logged.
    pub fn append_series<'a>(
        &self,
        series: impl IntoIterator<Item = (&'a Labels, &'a [(i64, f64)])>,
    ) -> WriteSummary {
        let mut summary = WriteSummary::default();
        let mut batch: Batch<'a> = Vec::new();
        {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            for (labels, samples) in series {
                let mut kept = Vec::with_capacity(samples.len());
                for (t, v) in samples {
                    match store.append(labels, *t, *v) {
                        Ok(()) => kept.push((*t, *v)),
                        Err(e) => {
                            summary.refused += 1;
                            summary.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                summary.appended += kept.len();
                if !kept.is_empty() {
                    batch.push((labels, kept));
                }
            }
        }
        if let Some(wal) = &self.wal {
            wal.log(&batch);
        }
        self.stats.record_append(summary.appended, summary.refused);
        summary
    }

    /// Appends single samples (a scrape's output).
    pub fn append_samples(&self, samples: &[Appendable]) -> WriteSummary {
        let points: Vec<[(i64, f64); 1]> = samples.iter().map(|(_, t, v)| [(*t, *v)]).collect();
        self.append_series(
            samples
                .iter()
                .zip(&points)
                .map(|((l, _, _), p)| (l, p.as_slice())),
        )
    }

    pub(crate) fn record_write_refused(&self) {
        self.stats.writes_refused.fetch_add(1, Ordering::Relaxed);
    }
}
