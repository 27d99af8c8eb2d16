//! [`Ingest`]: the one path samples take into the embedded store — the in-memory
//! [`MetricStore`], the optional on-disk log, and the counters for refused input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::remote_write::{self, RemoteWriteError, SeriesCache};
use super::scrape::Appendable;
use super::store::{DEFAULT_SERIES_MAX, MetricStore};
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
    /// Remote-written series' label sets by their encoded bytes. Its own lock, taken while one
    /// request's series are looked up (not while they are decoded or appended).
    series_cache: Mutex<SeriesCache>,
}

impl Ingest {
    /// Ingestion into `store`, logged to `wal` when given; remote-written label sets are
    /// cached for up to [`DEFAULT_SERIES_MAX`] series (see [`Self::with_series_cache_max`]).
    pub fn new(store: Arc<RwLock<MetricStore>>, wal: Option<Wal>) -> Self {
        Self {
            store,
            stats: IngestStats::default(),
            wal,
            series_cache: Mutex::new(SeriesCache::new(DEFAULT_SERIES_MAX)),
        }
    }

    /// Caches at most `series_max` remote-written label sets (the store's `series_max`).
    pub fn with_series_cache_max(mut self, series_max: usize) -> Self {
        self.series_cache = Mutex::new(SeriesCache::new(series_max));
        self
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

    /// Decodes one remote-write body (under the size caps) and appends its samples. The
    /// whole body is checked before anything is stored: a body that is not snappy, not a
    /// `WriteRequest`, or has a label that is not UTF-8 is refused whole; samples the store
    /// refuses (out of order, series cap, invalid labels) are counted in the summary.
    pub fn remote_write(
        &self,
        body: &[u8],
        body_max: usize,
        decoded_max: usize,
    ) -> Result<WriteSummary, RemoteWriteError> {
        let raw = remote_write::decompress(body, body_max, decoded_max)?;
        let mut series = Vec::new();
        let mut samples = Vec::new();
        remote_write::walk(&raw, &mut series, &mut samples)?;
        let labels = {
            let mut cache = self
                .series_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            series
                .iter()
                .map(|s| cache.resolve(&s.labels))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(self.append_series(
            labels
                .iter()
                .zip(&series)
                .map(|(l, s)| (l, &samples[s.samples.clone()])),
        ))
    }

    /// Appends series' samples; refusals (out of order, series cap, invalid labels) are
    /// counted and summarised, never fatal. Accepted samples are logged.
    pub fn append_series<'a>(
        &self,
        series: impl IntoIterator<Item = (&'a Labels, &'a [(i64, f64)])>,
    ) -> WriteSummary {
        let mut summary = WriteSummary::default();
        let mut batch: Batch<'a> = Vec::new();
        let logged = self.wal.is_some();
        {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            for (labels, samples) in series {
                // The accepted samples are only kept for the log.
                let mut kept = if logged {
                    Vec::with_capacity(samples.len())
                } else {
                    Vec::new()
                };
                for (t, v) in samples {
                    match store.append(labels, *t, *v) {
                        Ok(()) => {
                            summary.appended += 1;
                            if logged {
                                kept.push((*t, *v));
                            }
                        }
                        Err(e) => {
                            summary.refused += 1;
                            summary.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
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
