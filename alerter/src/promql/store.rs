//! The sample store the engine reads from: the [`Store`] trait and the in-memory [`MemStore`].

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

use super::labels::Labels;

/// Prometheus's staleness marker: a NaN with this exact bit pattern marks a series as gone.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`. Compare with [`is_stale`], never with `==`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is the staleness marker (and not an ordinary NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One sample: a timestamp in milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The sample value (may be NaN or the staleness marker).
    pub v: f64,
}

/// A series: its labels and its samples in increasing time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series identity.
    pub labels: Labels,
    /// Samples sorted by strictly increasing `t`.
    pub points: Vec<Point>,
}

/// Errors a store can report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// A sample was older than (or as old as) the newest sample of its series.
    #[error(
        "out-of-order sample for {labels}: t={t_ms} ms is not after the last sample at {last_ms} ms"
    )]
    OutOfOrder {
        /// The series.
        labels: String,
        /// The rejected timestamp.
        t_ms: i64,
        /// The newest stored timestamp.
        last_ms: i64,
    },
    /// A backend failed; the message says why.
    #[error("store failure: {0}")]
    Backend(String),
}

/// What the engine needs from storage.
pub trait Store {
    /// Every series matching all `matchers`, with its samples in `[start_ms, end_ms]`
    /// (both ends inclusive, staleness markers included). Series without samples in the window
    /// may be omitted. A matcher on a missing label sees the empty string, as in Prometheus.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError>;
}

/// An in-memory store for tests and `tocsin rules test`.
///
/// Selection scans every series (no inverted index): fine for the thousands of series such
/// datasets hold, not meant for production volumes.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    series: BTreeMap<Labels, Vec<Point>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sample. Samples of a series must arrive in strictly increasing time order.
    pub fn append(&mut self, labels: Labels, t_ms: i64, v: f64) -> Result<(), StoreError> {
        if let Some(points) = self.series.get_mut(&labels) {
            if let Some(last) = points.last()
                && last.t >= t_ms
            {
                return Err(StoreError::OutOfOrder {
                    labels: labels.to_string(),
                    t_ms,
                    last_ms: last.t,
                });
            }
            points.push(Point { t: t_ms, v });
            return Ok(());
        }
        self.series.insert(labels, vec![Point { t: t_ms, v }]);
        Ok(())
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Total number of samples.
    pub fn sample_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

/// Whether `labels` satisfies every matcher.
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| m.is_match(labels.get(&m.name)))
}

impl Store for MemStore {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        let mut out = Vec::new();
        for (labels, points) in &self.series {
            if !matches_all(labels, matchers) {
                continue;
            }
            let lo = points.partition_point(|p| p.t < start_ms);
            let hi = points.partition_point(|p| p.t <= end_ms);
            if lo < hi {
                out.push(Series {
                    labels: labels.clone(),
                    points: points[lo..hi].to_vec(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    #[test]
    fn stale_marker_is_distinct_from_nan() {
        assert!(is_stale(STALE_NAN));
        assert!(STALE_NAN.is_nan());
        assert!(!is_stale(f64::NAN));
    }

    #[test]
    fn select_window_is_inclusive_and_matchers_apply() {
        let mut s = MemStore::new();
        let a = Labels::from_pairs([("__name__", "x"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "x"), ("job", "b")]);
        for t in 0..10 {
            s.append(a.clone(), t * 10, t as f64).unwrap();
            s.append(b.clone(), t * 10, t as f64).unwrap();
        }
        let m = [Matcher::new(MatchOp::Equal, "job", "a")];
        let got = s.select(&m, 20, 40).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].points.len(), 3);
        assert!(s.append(a, 90, 1.0).is_err());
        assert_eq!(s.sample_count(), 20);
    }
}
