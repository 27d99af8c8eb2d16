//! Label sets: a sorted `name → value` map with a stable fingerprint.
//!
//! A [`Labels`] value is the identity of a series and, later, of an alert. Invariants (checked
//! by [`Labels::validate`]): names are strictly increasing, and no value is empty — as in
//! Prometheus, setting a label to `""` removes it.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A stable 64-bit identity of a label set.
///
/// Computed with FNV-1a over `name 0xff value 0xff` for each label in sorted order, so it is
/// identical across processes, platforms and releases (unlike `std`'s randomly keyed hasher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A sorted set of labels (name → value). Cheap to compare, hash and order, and to clone:
/// clones share one allocation (copied on the first change), since every selected series,
/// sample and alert carries its label set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(String, String)>>);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Separator byte; it cannot occur in valid UTF-8, so `a=bc` and `ab=c` hash differently.
const SEP: u8 = 0xff;

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a label set from pairs; later duplicates win and empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut labels = Self::empty();
        for (name, value) in pairs {
            labels.set(name.into(), value.into());
        }
        labels
    }

    /// The value of `name`, or `""` when absent (Prometheus semantics).
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    /// Whether a label with this name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .is_ok()
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                Arc::make_mut(&mut self.0).remove(i);
            }
            Ok(i) if self.0[i].1 == value => {}
            Ok(i) => Arc::make_mut(&mut self.0)[i].1 = value,
            Err(_) if value.is_empty() => {}
            Err(i) => Arc::make_mut(&mut self.0).insert(i, (name, value)),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Arc::make_mut(&mut self.0).remove(i);
        }
    }

    /// A copy without the metric name.
    pub fn without_metric_name(&self) -> Self {
        if !self.contains(METRIC_NAME) {
            return self.clone();
        }
        self.drop_names(&[METRIC_NAME])
    }

    /// Keeps only the labels whose names are listed.
    pub fn keep_only<S: AsRef<str>>(&self, names: &[S]) -> Self {
        Self(Arc::new(
            self.0
                .iter()
                .filter(|(n, _)| names.iter().any(|k| k.as_ref() == n))
                .cloned()
                .collect(),
        ))
    }

    /// Drops the labels whose names are listed.
    pub fn drop_names<S: AsRef<str>>(&self, names: &[S]) -> Self {
        Self(Arc::new(
            self.0
                .iter()
                .filter(|(n, _)| !names.iter().any(|k| k.as_ref() == n))
                .cloned()
                .collect(),
        ))
    }

    /// A hash of the labels whose names `select` accepts, without building that subset: equal
    /// subsets hash equally under one `state` (a grouping key that allocates only per group).
    pub fn hash_selected(&self, select: impl Fn(&str) -> bool, state: &impl BuildHasher) -> u64 {
        let mut h = state.build_hasher();
        for (n, v) in self.0.iter().filter(|(n, _)| select(n)) {
            n.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    /// Whether the labels whose names `select` accepts are exactly `subset`.
    pub fn selected_eq(&self, select: impl Fn(&str) -> bool, subset: &Labels) -> bool {
        self.0.iter().filter(|(n, _)| select(n)).eq(subset.0.iter())
    }

    /// Whether `a` and `b` are clones of one label set (share one allocation): caches promise
    /// that a hit hands out the stored set, not a rebuilt one.
    pub fn same_allocation(a: &Labels, b: &Labels) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stable fingerprint (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = FNV_OFFSET;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(FNV_PRIME);
            }
        };
        for (n, v) in self.0.iter() {
            feed(n.as_bytes());
            feed(&[SEP]);
            feed(v.as_bytes());
            feed(&[SEP]);
        }
        Fingerprint(h)
    }

    /// Checks the invariants: strictly increasing names, non-empty values.
    pub fn validate(&self) -> Result<(), String> {
        for w in self.0.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(format!("label names not strictly sorted: {:?}", w));
            }
        }
        if let Some((n, _)) = self.0.iter().find(|(_, v)| v.is_empty()) {
            return Err(format!("label {n} has an empty value"));
        }
        Ok(())
    }
}

impl fmt::Display for Labels {
    /// Formats like Prometheus: `{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_sorted_and_drops_empty() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
        l.set("a".into(), String::new());
        assert_eq!(l.to_string(), r#"{b="2"}"#);
        assert!(l.validate().is_ok());
    }

    #[test]
    fn fingerprint_is_stable_and_separates_boundaries() {
        let a = Labels::from_pairs([("a", "bc")]);
        let b = Labels::from_pairs([("ab", "c")]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        // Pinned value: the fingerprint becomes the alert identity and must never change.
        assert_eq!(Labels::empty().fingerprint(), Fingerprint(FNV_OFFSET));
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }

    #[test]
    fn label_name_validity() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }
}
