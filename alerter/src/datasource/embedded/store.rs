//! [`MetricStore`]: the embedded store's series, compressed in memory in a [`SeriesTable`]
//! (chunks of delta-of-delta timestamps and integer or XOR values; a hash index by label set
//! and an inverted index for selectors), with a retention window and a cap on series.
//!
//! Like [`ChunkedStore`](crate::promql::ChunkedStore), which cannot drop data, but with what a
//! long-running store needs: whole chunks older than the retention window are dropped, a series
//! whose chunks are all gone is forgotten, and new series beyond `series_max` are refused.

use std::collections::BTreeSet;

use promql_parser::label::Matcher;

use crate::promql::chunk::ChunkError;
use crate::promql::{Labels, Series, SeriesId, SeriesTable, Store, StoreError};

/// Default cap on series held: ~100 bytes of labels and a chunk header each, so a million
/// series is a few hundred MB, the most a single node's embedded store is meant for.
pub const DEFAULT_SERIES_MAX: usize = 1_000_000;
/// Default retention: a day is enough for rule evaluation (the longest common range is `[1d]`)
/// and charts of recent history.
pub const DEFAULT_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Not after the series' newest sample (Prometheus refuses these too).
    #[error("out-of-order sample for {labels}: t={t_ms} ms is not after {last_ms} ms")]
    OutOfOrder {
        /// The series.
        labels: String,
        /// The refused timestamp.
        t_ms: i64,
        /// The newest stored timestamp.
        last_ms: i64,
    },
    /// Storing it would create a series beyond the cap.
    #[error("series limit of {limit} reached; refusing new series {labels}")]
    TooManySeries {
        /// The cap.
        limit: usize,
        /// The refused series.
        labels: String,
    },
    /// The label set is not valid (no metric name, bad label name).
    #[error("invalid series {labels}: {reason}")]
    InvalidLabels {
        /// The refused series.
        labels: String,
        /// Why.
        reason: String,
    },
}

/// Totals for metrics and the bytes-per-sample figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Series held.
    pub series: usize,
    /// Samples held.
    pub samples: usize,
    /// Encoded chunk bytes.
    pub chunk_bytes: usize,
}

/// The embedded store's data.
#[derive(Debug, Clone)]
pub struct MetricStore {
    table: SeriesTable,
    series_max: usize,
    retention_ms: i64,
}

impl Default for MetricStore {
    fn default() -> Self {
        Self::new(DEFAULT_SERIES_MAX, DEFAULT_RETENTION_MS)
    }
}

impl MetricStore {
    /// An empty store holding at most `series_max` series for `retention_ms`.
    pub fn new(series_max: usize, retention_ms: i64) -> Self {
        Self {
            table: SeriesTable::new(),
            series_max,
            retention_ms,
        }
    }

    /// Appends one sample; samples of a series must arrive in increasing time order.
    pub fn append(&mut self, labels: &Labels, t_ms: i64, v: f64) -> Result<(), AppendError> {
        let id = match self.table.find(labels) {
            Some(id) => id,
            None => {
                validate_labels(labels)?;
                if self.table.len() >= self.series_max {
                    return Err(AppendError::TooManySeries {
                        limit: self.series_max,
                        labels: labels.to_string(),
                    });
                }
                self.table.insert(labels.clone())
            }
        };
        let appended = self.table.entry_mut(id).map(|e| e.append(t_ms, v));
        if let Some(Err(ChunkError::OutOfOrder { t_ms, last_ms })) = appended {
            return Err(AppendError::OutOfOrder {
                labels: labels.to_string(),
                t_ms,
                last_ms,
            });
        }
        // A fresh chunk takes any sample, and `find`/`insert` gave a held id.
        debug_assert!(matches!(appended, Some(Ok(()))), "append to a held series");
        Ok(())
    }

    /// Drops whole chunks that ended before `now_ms - retention` and series left empty.
    /// Returns the number of samples dropped.
    pub fn apply_retention(&mut self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut dropped = 0;
        self.table.retain(|e| {
            e.chunks.retain(|c| {
                let keep = c.time_range().is_some_and(|(_, last)| last >= cutoff);
                if !keep {
                    dropped += c.len();
                }
                keep
            });
            !e.chunks.is_empty()
        });
        dropped
    }

    /// The newest sample time of `labels`, if held.
    pub fn last_timestamp(&self, labels: &Labels) -> Option<i64> {
        let id = self.table.find(labels)?;
        self.table.entry(id)?.last_timestamp()
    }

    /// Totals.
    pub fn stats(&self) -> StoreStats {
        let (chunk_bytes, samples) = self.table.encoded_stats();
        StoreStats {
            series: self.table.len(),
            samples,
            chunk_bytes,
        }
    }

    /// Label sets of series with samples in `[start_ms, end_ms]` matching any of `sets`
    /// (each set is a conjunction of matchers), sorted, at most `limit`.
    pub fn series_labels(
        &self,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Vec<Labels> {
        let mut out: Vec<Labels> = self
            .matching(sets, start_ms, end_ms)
            .into_iter()
            .cloned()
            .collect();
        if sets.len() > 1 {
            out.sort();
        }
        out.truncate(limit);
        out
    }

    /// Label names of matching series (all series when `sets` is empty), sorted.
    pub fn label_names(&self, sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Vec<String> {
        let mut names = BTreeSet::new();
        for l in self.matching(sets, start_ms, end_ms) {
            names.extend(l.iter().map(|(n, _)| n.to_string()));
        }
        names.into_iter().collect()
    }

    /// Values of label `name` among matching series (all series when `sets` is empty), sorted.
    pub fn label_values(
        &self,
        name: &str,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<String> {
        let mut values = BTreeSet::new();
        for l in self.matching(sets, start_ms, end_ms) {
            let v = l.get(name);
            if !v.is_empty() {
                values.insert(v.to_string());
            }
        }
        values.into_iter().collect()
    }

    /// Labels of the series matching any of `sets` (every series when `sets` is empty) with
    /// samples in the window, each once: in label order for at most one set, else by id.
    fn matching(&self, sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Vec<&Labels> {
        let mut ids: Vec<SeriesId> = match sets {
            [] => self.table.iter_ordered().map(|(id, _)| id).collect(),
            [one] => self.table.matching(one),
            _ => sets.iter().flat_map(|m| self.table.matching(m)).collect(),
        };
        if sets.len() > 1 {
            ids.sort_unstable();
            ids.dedup();
        }
        ids.into_iter()
            .filter_map(|id| self.table.entry(id))
            .filter(|e| e.overlaps(start_ms, end_ms))
            .map(|e| &e.labels)
            .collect()
    }
}

fn validate_labels(labels: &Labels) -> Result<(), AppendError> {
    let invalid = |reason: String| AppendError::InvalidLabels {
        labels: labels.to_string(),
        reason,
    };
    if labels.get("__name__").is_empty() {
        return Err(invalid("no metric name (`__name__`)".into()));
    }
    labels.validate().map_err(invalid)?;
    if let Some((n, _)) = labels
        .iter()
        .find(|(n, _)| !crate::promql::labels::is_valid_label_name(n))
    {
        return Err(invalid(format!("invalid label name {n:?}")));
    }
    Ok(())
}

impl Store for MetricStore {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        self.table
            .select(matchers, start_ms, end_ms)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use promql_parser::label::MatchOp;
    use proptest::prelude::*;

    use super::*;
    use crate::promql::{STALE_NAN, is_stale};

    fn l(name: &str, inst: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("instance", inst)])
    }

    #[test]
    fn retention_drops_old_chunks_and_empty_series() {
        let mut s = MetricStore::new(10, 1_000_000);
        for t in 0..300 {
            s.append(&l("a", "1"), t * 1_000, t as f64).unwrap();
        }
        s.append(&l("old", "1"), 0, 1.0).unwrap();
        assert_eq!(s.stats().series, 2);
        // Cutoff at 200 s: the first chunk (0..119 s) and `old` go; later chunks stay.
        let dropped = s.apply_retention(1_200_000);
        assert_eq!(dropped, 121);
        assert_eq!(s.stats().series, 1);
        let got = s.select(&[], 0, i64::MAX).unwrap();
        assert_eq!(got[0].points.first().unwrap().t, 120_000);
        assert_eq!(got[0].points.len(), 180);
    }

    #[test]
    fn series_cap_order_and_names_are_enforced() {
        let mut s = MetricStore::new(2, DEFAULT_RETENTION_MS);
        s.append(&l("a", "1"), 10, 1.0).unwrap();
        s.append(&l("a", "2"), 10, 1.0).unwrap();
        assert!(matches!(
            s.append(&l("a", "3"), 10, 1.0),
            Err(AppendError::TooManySeries { limit: 2, .. })
        ));
        // Existing series still accept samples at the cap.
        s.append(&l("a", "1"), 20, 2.0).unwrap();
        assert!(matches!(
            s.append(&l("a", "1"), 20, 2.0),
            Err(AppendError::OutOfOrder { .. })
        ));
        let nameless = Labels::from_pairs([("job", "x")]);
        assert!(matches!(
            s.append(&nameless, 1, 1.0),
            Err(AppendError::InvalidLabels { .. })
        ));
    }

    #[test]
    fn metadata_queries_filter_by_matchers_and_time() {
        let mut s = MetricStore::default();
        s.append(&l("a", "1"), 1_000, 1.0).unwrap();
        s.append(&l("b", "2"), 5_000, 1.0).unwrap();
        let a = vec![Matcher::new(MatchOp::Equal, "__name__", "a")];
        assert_eq!(
            s.series_labels(std::slice::from_ref(&a), 0, 10_000, 10),
            vec![l("a", "1")]
        );
        assert_eq!(s.label_values("instance", &[], 0, 10_000), vec!["1", "2"]);
        assert_eq!(s.label_values("instance", &[], 4_000, 10_000), vec!["2"]);
        assert_eq!(s.label_names(&[a], 0, 10_000), vec!["__name__", "instance"]);
    }

    proptest! {
        /// Whatever is appended reads back bit-exactly, NaN and staleness markers included.
        #[test]
        fn appended_samples_read_back_exactly(
            deltas in proptest::collection::vec(1i64..100_000, 1..400),
            values in proptest::collection::vec(
                prop_oneof![any::<f64>(), Just(f64::NAN), Just(STALE_NAN), Just(f64::INFINITY)],
                400,
            ),
        ) {
            let mut s = MetricStore::default();
            let mut t = 1_700_000_000_000i64;
            let mut want = Vec::new();
            for (d, v) in deltas.iter().zip(&values) {
                t += d;
                s.append(&l("m", "x"), t, *v).unwrap();
                want.push((t, v.to_bits()));
            }
            let got = s.select(&[], i64::MIN, i64::MAX).unwrap();
            let got: Vec<_> = got[0].points.iter().map(|p| (p.t, p.v.to_bits())).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(
                got.iter().filter(|(_, b)| is_stale(f64::from_bits(*b))).count(),
                values[..deltas.len()].iter().filter(|v| is_stale(**v)).count()
            );
        }
    }
}
