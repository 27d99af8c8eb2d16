//! [`SeriesTable`]: series held as compressed [`Chunk`]s, found by label set through a hash
//! index and by matchers through an inverted index (label name → value → the sorted ids of
//! the series carrying it), as Prometheus's head block finds them.
//!
//! Both compact stores are built on it: [`ChunkedStore`](super::ChunkedStore) (benchmarks,
//! datasets loaded once) and the embedded datasource's `MetricStore` (retention, series cap).
//!
//! Selection: every matcher that does not match the empty string names the series that carry
//! one of the values it matches, so its candidates are the union of those values' postings
//! (one lookup for `=`, a scan of the label's values for `=~`, `!=`, `!~`); the candidates of
//! several such matchers are intersected, and only the matchers that match the empty string
//! (which also select series lacking the label) are checked series by series. With none of
//! the first kind, every series is a candidate. Results come sorted by labels, as Prometheus
//! returns series read from its blocks (results that depend on input order — `topk` ties,
//! the order of a matrix — then agree with it): a few candidates are sorted directly, many
//! are picked out of an ordered index in one walk.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};

use promql_parser::label::{MatchOp, Matcher};

use super::chunk::{Chunk, ChunkError, SAMPLES_PER_CHUNK};
use super::labels::Labels;
use super::store::{Point, Series};

/// A series' place in a [`SeriesTable`]; reused after the series is removed.
pub type SeriesId = u32;

/// One series: its labels and chunks, oldest first.
#[derive(Debug, Clone)]
pub struct SeriesEntry {
    /// The series identity.
    pub labels: Labels,
    /// Compressed samples, oldest chunk first; each holds at most [`SAMPLES_PER_CHUNK`].
    pub chunks: Vec<Chunk>,
}

impl SeriesEntry {
    /// The newest sample time, if any.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.chunks
            .last()
            .and_then(Chunk::time_range)
            .map(|(_, l)| l)
    }

    /// Whether any chunk holds samples in `[start_ms, end_ms]`.
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.chunks
            .iter()
            .filter_map(Chunk::time_range)
            .any(|(first, last)| last >= start_ms && first <= end_ms)
    }

    /// Appends a sample after the newest one, cutting a new chunk when the last is full.
    pub fn append(&mut self, t_ms: i64, v: f64) -> Result<(), ChunkError> {
        if let Some(last) = self.last_timestamp()
            && t_ms <= last
        {
            return Err(ChunkError::OutOfOrder {
                t_ms,
                last_ms: last,
            });
        }
        match self.chunks.last_mut() {
            Some(c) if c.len() < SAMPLES_PER_CHUNK => c.append(t_ms, v),
            _ => {
                let mut c = Chunk::new();
                c.append(t_ms, v)?;
                self.chunks.push(c);
                Ok(())
            }
        }
    }

    /// The samples in `[start_ms, end_ms]`.
    pub fn points(&self, start_ms: i64, end_ms: i64) -> Result<Vec<Point>, ChunkError> {
        let mut points = Vec::new();
        for c in &self.chunks {
            match c.time_range() {
                Some((first, last)) if last >= start_ms && first <= end_ms => {
                    c.decode_range(start_ms, end_ms, &mut points)?;
                }
                _ => {}
            }
        }
        Ok(points)
    }
}

/// Series by id, with a hash index by label set and an inverted index by label value.
#[derive(Debug, Clone, Default)]
pub struct SeriesTable {
    entries: Vec<Option<SeriesEntry>>,
    /// Ids of removed series, for reuse.
    free: Vec<SeriesId>,
    live: usize,
    hasher: RandomState,
    /// Label-set hash → the series with it (the first one; more only on a collision).
    by_hash: HashMap<u64, SeriesId>,
    /// Series whose hash another series already holds in `by_hash` (practically never).
    collided: Vec<SeriesId>,
    /// Label name → value → ids carrying it, sorted.
    postings: HashMap<String, BTreeMap<String, Vec<SeriesId>>>,
    /// Every series in label order (the keys share the entries' label allocations).
    ordered: BTreeMap<Labels, SeriesId>,
}

impl SeriesTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn hash(&self, labels: &Labels) -> u64 {
        self.hasher.hash_one(labels)
    }

    /// The id of the series with exactly these labels.
    pub fn find(&self, labels: &Labels) -> Option<SeriesId> {
        let h = self.hash(labels);
        let first = *self.by_hash.get(&h)?;
        if self.entry(first).is_some_and(|e| &e.labels == labels) {
            return Some(first);
        }
        self.collided
            .iter()
            .copied()
            .find(|id| self.entry(*id).is_some_and(|e| &e.labels == labels))
    }

    /// The series with this id.
    pub fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        self.entries.get(id as usize).and_then(Option::as_ref)
    }

    /// The series with this id, to append to.
    pub fn entry_mut(&mut self, id: SeriesId) -> Option<&mut SeriesEntry> {
        self.entries.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Adds a series without samples; the caller has checked it is not held (see
    /// [`SeriesTable::find`]) and that its labels are valid.
    pub fn insert(&mut self, labels: Labels) -> SeriesId {
        let h = self.hash(&labels);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as SeriesId
            }
        };
        for (n, v) in labels.iter() {
            let list = self
                .postings
                .entry(n.to_owned())
                .or_default()
                .entry(v.to_owned())
                .or_default();
            // Fresh ids are the largest; reused ones go in their place.
            match list.last() {
                Some(&last) if last > id => {
                    let at = list.partition_point(|x| *x < id);
                    list.insert(at, id);
                }
                _ => list.push(id),
            }
        }
        match self.by_hash.entry(h) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push(id),
        }
        self.ordered.insert(labels.clone(), id);
        self.entries[id as usize] = Some(SeriesEntry {
            labels,
            chunks: Vec::new(),
        });
        self.live += 1;
        id
    }

    /// Removes a series and its samples.
    pub fn remove(&mut self, id: SeriesId) -> Option<SeriesEntry> {
        let entry = self.entries.get_mut(id as usize)?.take()?;
        self.live -= 1;
        self.ordered.remove(&entry.labels);
        self.free.push(id);
        for (n, v) in entry.labels.iter() {
            let Some(values) = self.postings.get_mut(n) else {
                continue;
            };
            if let Some(list) = values.get_mut(v) {
                if let Ok(at) = list.binary_search(&id) {
                    list.remove(at);
                }
                if list.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.postings.remove(n);
            }
        }
        if let Some(at) = self.collided.iter().position(|c| *c == id) {
            self.collided.swap_remove(at);
        } else {
            let h = self.hash(&entry.labels);
            self.by_hash.remove(&h);
            // A collided series with the same hash takes the freed place.
            if let Some(at) = self.collided.iter().position(|c| {
                self.entry(*c)
                    .is_some_and(|e| self.hasher.hash_one(&e.labels) == h)
            }) {
                let promoted = self.collided.swap_remove(at);
                self.by_hash.insert(h, promoted);
            }
        }
        Some(entry)
    }

    /// Every series, in label order.
    pub fn iter_ordered(&self) -> impl Iterator<Item = (SeriesId, &SeriesEntry)> {
        self.ordered
            .values()
            .filter_map(|id| self.entry(*id).map(|e| (*id, e)))
    }

    /// Every series, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesId, &SeriesEntry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as SeriesId, e)))
    }

    /// Keeps the series for which `keep` returns true (it may trim their chunks); removes
    /// the rest.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut SeriesEntry) -> bool) {
        let mut gone = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if let Some(e) = e
                && !keep(e)
            {
                gone.push(i as SeriesId);
            }
        }
        for id in gone {
            self.remove(id);
        }
    }

    /// Ids of the series matching every matcher, in label order.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let ids = self.matching_unordered(matchers);
        self.in_label_order(ids)
    }

    /// `ids` (distinct) sorted by their series' labels.
    fn in_label_order(&self, mut ids: Vec<SeriesId>) -> Vec<SeriesId> {
        if ids.len() <= 1 {
            return ids;
        }
        // Sorting k ids takes ~k·log k label comparisons; the walk takes n cheap steps.
        if ids.len().saturating_mul(16) < self.live {
            let labels = |id: &SeriesId| self.entry(*id).map(|e| &e.labels);
            ids.sort_unstable_by(|a, b| labels(a).cmp(&labels(b)));
            return ids;
        }
        let mut member = vec![0u64; self.entries.len().div_ceil(64)];
        for id in &ids {
            member[*id as usize / 64] |= 1 << (id % 64);
        }
        self.ordered
            .values()
            .copied()
            .filter(|id| member[*id as usize / 64] & (1 << (id % 64)) != 0)
            .collect()
    }

    /// Ids of the series matching every matcher, in id order.
    fn matching_unordered(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut lists: Vec<Vec<SeriesId>> = Vec::new();
        let mut rest: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.is_match("") {
                rest.push(m);
                continue;
            }
            let Some(values) = self.postings.get(&m.name) else {
                return Vec::new();
            };
            let list = if matches!(m.op, MatchOp::Equal) {
                values.get(&m.value).cloned().unwrap_or_default()
            } else {
                let mut union: Vec<SeriesId> = values
                    .iter()
                    .filter(|(v, _)| m.is_match(v))
                    .flat_map(|(_, ids)| ids.iter().copied())
                    .collect();
                union.sort_unstable();
                union
            };
            if list.is_empty() {
                return Vec::new();
            }
            lists.push(list);
        }
        let mut ids = match intersect(lists) {
            Some(ids) => ids,
            None if rest.is_empty() => return self.ordered.values().copied().collect(),
            None => self.iter().map(|(id, _)| id).collect(),
        };
        if !rest.is_empty() {
            ids.retain(|id| {
                self.entry(*id)
                    .is_some_and(|e| rest.iter().all(|m| m.is_match(e.labels.get(&m.name))))
            });
        }
        ids
    }

    /// The series matching every matcher with their samples in `[start_ms, end_ms]`; series
    /// without samples there are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, ChunkError> {
        let mut out = Vec::new();
        for id in self.matching(matchers) {
            let Some(e) = self.entry(id) else { continue };
            let points = e.points(start_ms, end_ms)?;
            if !points.is_empty() {
                out.push(Series {
                    labels: e.labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }

    /// Total encoded bytes and samples, for compression accounting.
    pub fn encoded_stats(&self) -> (usize, usize) {
        self.iter()
            .flat_map(|(_, e)| e.chunks.iter())
            .fold((0, 0), |(b, n), c| (b + c.encoded_len(), n + c.len()))
    }
}

/// The ids in every list (each sorted), or `None` for no lists (no constraint).
fn intersect(mut lists: Vec<Vec<SeriesId>>) -> Option<Vec<SeriesId>> {
    lists.sort_by_key(Vec::len);
    let mut lists = lists.into_iter();
    let mut acc = lists.next()?;
    for other in lists {
        acc.retain(|id| other.binary_search(id).is_ok());
        if acc.is_empty() {
            break;
        }
    }
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::store::{MemStore, Store};
    use proptest::prelude::*;

    fn labels(name: &str, job: &str, inst: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", job), ("instance", inst)])
    }

    #[test]
    fn ids_are_reused_and_indexes_follow_removals() {
        let mut t = SeriesTable::new();
        let a = t.insert(labels("x", "a", "1"));
        let b = t.insert(labels("x", "b", "1"));
        assert_eq!(t.find(&labels("x", "b", "1")), Some(b));
        assert_eq!(t.remove(a).map(|e| e.labels), Some(labels("x", "a", "1")));
        assert_eq!(t.find(&labels("x", "a", "1")), None);
        let m = [Matcher::new(MatchOp::Equal, "job", "a")];
        assert!(t.matching(&m).is_empty());
        let c = t.insert(labels("y", "a", "2"));
        assert_eq!(c, a, "the freed id is reused");
        assert_eq!(t.matching(&m), vec![c]);
        let all = [Matcher::new(MatchOp::Equal, "instance", "1")];
        assert_eq!(t.matching(&all), vec![b]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_reused_id_keeps_postings_sorted() {
        let mut t = SeriesTable::new();
        let ids: Vec<_> = (0..5)
            .map(|i| t.insert(labels("x", "j", &i.to_string())))
            .collect();
        t.remove(ids[1]);
        t.insert(labels("x", "j", "new"));
        let got = t.matching_unordered(&[Matcher::new(MatchOp::Equal, "job", "j")]);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted);
        assert_eq!(got.len(), 5);
        // `matching` orders by labels: instance "0" < "2" < … < "new".
        let ordered = t.matching(&[Matcher::new(MatchOp::Equal, "job", "j")]);
        let insts: Vec<String> = ordered
            .iter()
            .map(|id| t.entry(*id).unwrap().labels.get("instance").to_owned())
            .collect();
        assert_eq!(insts, ["0", "2", "3", "4", "new"]);
    }

    fn matcher() -> impl Strategy<Value = Matcher> {
        let name = prop_oneof![Just("job"), Just("instance"), Just("le"), Just("__name__")];
        let value = prop_oneof![
            Just(""),
            Just("a"),
            Just("b"),
            Just("1"),
            Just("x"),
            Just("a|1"),
            Just(".*"),
            Just(".+"),
            Just("b.*"),
        ];
        (name, value, 0..4u8).prop_map(|(n, v, op)| {
            let re = || regex::Regex::new(&format!("^(?:{v})$")).unwrap();
            match op {
                0 => Matcher::new(MatchOp::Equal, n, v),
                1 => Matcher::new(MatchOp::NotEqual, n, v),
                2 => Matcher::new(MatchOp::Re(re()), n, v),
                _ => Matcher::new(MatchOp::NotRe(re()), n, v),
            }
        })
    }

    proptest! {
        /// The index selects exactly what a scan of every series selects.
        #[test]
        fn index_selects_like_a_scan(
            series in prop::collection::vec(
                (prop_oneof![Just("x"), Just("y")], prop_oneof![Just("a"), Just("b"), Just("")],
                 prop_oneof![Just("1"), Just("2"), Just("x")], any::<bool>()),
                1..30),
            removals in prop::collection::vec(0usize..30, 0..5),
            matchers in prop::collection::vec(matcher(), 0..4),
        ) {
            let mut t = SeriesTable::new();
            let mut mem = MemStore::new();
            let mut ids = Vec::new();
            for (n, job, inst, le) in &series {
                let mut l = labels(n, job, inst);
                if *le { l.set("le".into(), "0.5".into()); }
                if t.find(&l).is_some() { continue; }
                let id = t.insert(l.clone());
                t.entry_mut(id).unwrap().append(1_000, 1.0).unwrap();
                ids.push((id, l));
            }
            for r in removals {
                if let Some((id, _)) = ids.get(r).cloned()
                    && t.remove(id).is_some()
                {
                    ids.retain(|(i, _)| *i != id);
                }
            }
            for (_, l) in &ids {
                mem.append(l.clone(), 1_000, 1.0).unwrap();
            }
            let got: Vec<Labels> =
                t.select(&matchers, 0, 2_000).unwrap().into_iter().map(|s| s.labels).collect();
            let want: Vec<Labels> =
                mem.select(&matchers, 0, 2_000).unwrap().into_iter().map(|s| s.labels).collect();
            prop_assert_eq!(got, want);
        }
    }
}
