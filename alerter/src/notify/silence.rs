//! Silences: matcher sets active from `starts_at_ms` through `ends_at_ms` (inclusive, as
//! Alertmanager's `getState`), evaluated against an alert's labels.

use std::collections::BTreeMap;

use tocsin_state::model::Silence;

use super::matchers::{Matcher, MatcherError, Matchers};

/// Where a silence is in its life at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceState {
    /// Not started yet.
    Pending,
    /// Muting matching alerts.
    Active,
    /// Ended.
    Expired,
}

/// Why a silence is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matchers.
    #[error("at least one matcher required")]
    NoMatchers,
    /// A matcher is invalid.
    #[error("invalid matcher {index}: {source}")]
    Matcher {
        /// Position in the list.
        index: usize,
        /// Why.
        source: MatcherError,
    },
    /// Every matcher matches the empty label set: the silence would mute everything.
    #[error("at least one matcher must not match the empty string")]
    MatchesEverything,
    /// `ends_at_ms` before `starts_at_ms`.
    #[error("end time must not be before start time")]
    EndsBeforeStart,
}

/// The state of `s` at `now_ms`.
pub fn state(s: &Silence, now_ms: i64) -> SilenceState {
    if now_ms < s.starts_at_ms {
        SilenceState::Pending
    } else if now_ms > s.ends_at_ms {
        SilenceState::Expired
    } else {
        SilenceState::Active
    }
}

/// Compiles and checks a silence's matchers (the API calls this before committing one).
pub fn compile(s: &Silence) -> Result<Matchers, SilenceError> {
    if s.matchers.is_empty() {
        return Err(SilenceError::NoMatchers);
    }
    if s.ends_at_ms < s.starts_at_ms {
        return Err(SilenceError::EndsBeforeStart);
    }
    let ms = s
        .matchers
        .iter()
        .enumerate()
        .map(|(index, m)| {
            Matcher::try_from(m).map_err(|source| SilenceError::Matcher { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ms.iter().all(|m| m.matches_value("")) {
        return Err(SilenceError::MatchesEverything);
    }
    Ok(Matchers::new(ms))
}

/// Silences compiled once, queried per alert.
#[derive(Clone, Debug, Default)]
pub struct Silencer {
    silences: Vec<(Silence, Matchers)>,
}

impl Silencer {
    /// Compiles every silence; invalid ones (which the API refuses) are skipped and returned.
    pub fn new(silences: impl IntoIterator<Item = Silence>) -> (Self, Vec<(String, SilenceError)>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for s in silences {
            match compile(&s) {
                Ok(m) => ok.push((s, m)),
                Err(e) => bad.push((s.id.clone(), e)),
            }
        }
        (Self { silences: ok }, bad)
    }

    /// Ids of the silences active at `now_ms` that match `labels`, sorted.
    pub fn silenced_by(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .silences
            .iter()
            .filter(|(s, m)| state(s, now_ms) == SilenceState::Active && m.matches(labels))
            .map(|(s, _)| s.id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether any active silence mutes `labels` at `now_ms`.
    pub fn is_silenced(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        !self.silenced_by(labels, now_ms).is_empty()
    }

    /// The earliest instant after `now_ms` at which some silence starts or expires, so an
    /// adapter knows when muting decisions can next change.
    pub fn next_change(&self, now_ms: i64) -> Option<i64> {
        self.silences
            .iter()
            .flat_map(|(s, _)| [s.starts_at_ms, s.ends_at_ms.saturating_add(1)])
            .filter(|&t| t > now_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_state::model::SilenceMatcher;

    fn sil(id: &str, ms: &[(&str, &str, bool, bool)], start: i64, end: i64) -> Silence {
        Silence {
            id: id.into(),
            matchers: ms
                .iter()
                .map(|(n, v, re, eq)| SilenceMatcher {
                    name: (*n).into(),
                    value: (*v).into(),
                    is_regex: *re,
                    is_equal: *eq,
                })
                .collect(),
            starts_at_ms: start,
            ends_at_ms: end,
            created_by: "me".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn active_window_and_matching() {
        let (s, bad) = Silencer::new([sil("1", &[("job", "db.*", true, true)], 100, 200)]);
        assert!(bad.is_empty());
        let l: BTreeMap<String, String> = [("job".to_owned(), "db-main".to_owned())].into();
        assert!(!s.is_silenced(&l, 99));
        assert!(s.is_silenced(&l, 100));
        assert!(s.is_silenced(&l, 200));
        assert!(!s.is_silenced(&l, 201));
        assert_eq!(s.next_change(150), Some(201));
        let other: BTreeMap<String, String> = [("job".to_owned(), "web".to_owned())].into();
        assert!(!s.is_silenced(&other, 150));
    }

    #[test]
    fn refuses_silences_matching_everything() {
        let everything = sil("2", &[("job", ".*", true, true)], 0, 10);
        assert_eq!(compile(&everything), Err(SilenceError::MatchesEverything));
        assert_eq!(
            compile(&sil("3", &[], 0, 10)),
            Err(SilenceError::NoMatchers)
        );
        assert_eq!(
            compile(&sil("4", &[("a", "b", false, true)], 10, 0)),
            Err(SilenceError::EndsBeforeStart)
        );
    }
}
