//! A read-only [`Store`] plus the samples written so far in this group evaluation, so that
//! later rules see earlier rules' results at the same timestamp (as in Prometheus, where each
//! rule's samples are committed before the next rule runs) without the core writing anywhere.

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

use crate::promql::store::matches_all;
use crate::promql::{Labels, Point, Series, Store, StoreError};

/// Why a sample could not be written; worded like Prometheus's storage errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendRefusal {
    /// Same series and timestamp already written with another value.
    Duplicate,
    /// Older than the newest sample of the series.
    OutOfOrder,
}

impl AppendRefusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            AppendRefusal::Duplicate => "duplicate sample for timestamp",
            AppendRefusal::OutOfOrder => "out of order sample",
        }
    }
}

/// `base` overlaid with the samples written during the current evaluation.
pub(crate) struct Overlay<'a> {
    base: &'a dyn Store,
    added: BTreeMap<Labels, Vec<Point>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a dyn Store) -> Self {
        Self {
            base,
            added: BTreeMap::new(),
        }
    }

    /// Records a written sample. Like a TSDB appender: an identical sample at the newest
    /// timestamp is accepted, a different value there or an older timestamp is refused.
    pub(crate) fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendRefusal> {
        let points = self.added.entry(labels.clone()).or_default();
        match points.last() {
            Some(last) if last.t == t && last.v.to_bits() == v.to_bits() => Ok(()),
            Some(last) if last.t == t => Err(AppendRefusal::Duplicate),
            Some(last) if last.t > t => Err(AppendRefusal::OutOfOrder),
            _ => {
                points.push(Point { t, v });
                Ok(())
            }
        }
    }
}

impl Store for Overlay<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StoreError> {
        let mut out = self.base.select(matchers, start_ms, end_ms)?;
        if self.added.is_empty() {
            return Ok(out);
        }
        for (labels, points) in &self.added {
            if !matches_all(labels, matchers) {
                continue;
            }
            let extra: Vec<Point> = points
                .iter()
                .filter(|p| p.t >= start_ms && p.t <= end_ms)
                .copied()
                .collect();
            if extra.is_empty() {
                continue;
            }
            match out.iter_mut().find(|s| &s.labels == labels) {
                Some(s) => {
                    // The base wins at equal timestamps (its sample was there first).
                    let last = s.points.last().map_or(i64::MIN, |p| p.t);
                    s.points.extend(extra.into_iter().filter(|p| p.t > last));
                }
                None => out.push(Series {
                    labels: labels.clone(),
                    points: extra,
                }),
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
