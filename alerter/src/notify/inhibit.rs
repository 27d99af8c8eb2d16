//! Inhibition: an alert matching a rule's target matchers is muted while an alert matching its
//! source matchers fires with the same values of the `equal` labels (a missing label equals an
//! empty one). As in Alertmanager, an alert matching both sides is not inhibited by alerts that
//! also match both sides, so no alert inhibits itself.

use std::collections::BTreeMap;

use tocsin_state::model::Fingerprint;

use super::matchers::Matchers;

/// One `inhibit_rules[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InhibitRule {
    /// Optional name (for logs).
    pub name: Option<String>,
    /// Matchers of the inhibiting (source) alerts.
    pub source: Matchers,
    /// Matchers of the inhibited (target) alerts.
    pub target: Matchers,
    /// Labels whose values must be equal in source and target.
    pub equal: Vec<String>,
}

/// A firing alert as inhibition sees it.
#[derive(Clone, Copy, Debug)]
pub struct FiringAlert<'a> {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
}

fn label<'a>(l: &'a BTreeMap<String, String>, n: &str) -> &'a str {
    l.get(n).map_or("", String::as_str)
}

impl InhibitRule {
    /// The firing alert that inhibits `target` under this rule, if any.
    pub fn inhibited_by<'a>(
        &self,
        target: &BTreeMap<String, String>,
        firing: impl IntoIterator<Item = FiringAlert<'a>>,
    ) -> Option<Fingerprint> {
        if !self.target.matches(target) {
            return None;
        }
        let two_sided = self.source.matches(target);
        firing.into_iter().find_map(|src| {
            let ok = self.source.matches(src.labels)
                && self
                    .equal
                    .iter()
                    .all(|n| label(src.labels, n) == label(target, n))
                && !(two_sided && self.target.matches(src.labels));
            ok.then_some(src.fingerprint)
        })
    }
}

/// The rules of a config, evaluated against the firing alerts of one committed index.
#[derive(Clone, Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

impl Inhibitor {
    /// From the config's `inhibit_rules`.
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        Self { rules }
    }

    /// The first (rule index, inhibiting alert) that mutes `labels`, if any. `firing` must be
    /// the alerts firing at the index being evaluated (resolved alerts never inhibit).
    pub fn mutes<'a>(
        &self,
        labels: &BTreeMap<String, String>,
        firing: &[FiringAlert<'a>],
    ) -> Option<(usize, Fingerprint)> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            r.inhibited_by(labels, firing.iter().copied())
                .map(|fp| (i, fp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rule(src: &str, tgt: &str, equal: &[&str]) -> InhibitRule {
        InhibitRule {
            name: None,
            source: Matchers::parse(src).unwrap(),
            target: Matchers::parse(tgt).unwrap(),
            equal: equal.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The documented example: a critical alert inhibits warnings of the same alertname and
    /// cluster, not those of another cluster.
    #[test]
    fn equal_labels_scope_inhibition() {
        let ih = Inhibitor::new(vec![rule(
            "severity=critical",
            "severity=warning",
            &["alertname", "cluster"],
        )]);
        let crit = l(&[
            ("alertname", "Down"),
            ("cluster", "a"),
            ("severity", "critical"),
        ]);
        let firing = [FiringAlert {
            fingerprint: Fingerprint(1),
            labels: &crit,
        }];
        let warn_a = l(&[
            ("alertname", "Down"),
            ("cluster", "a"),
            ("severity", "warning"),
        ]);
        let warn_b = l(&[
            ("alertname", "Down"),
            ("cluster", "b"),
            ("severity", "warning"),
        ]);
        assert_eq!(ih.mutes(&warn_a, &firing), Some((0, Fingerprint(1))));
        assert_eq!(ih.mutes(&warn_b, &firing), None);
        assert_eq!(ih.mutes(&crit, &firing), None);
    }

    #[test]
    fn missing_equals_empty_and_no_self_inhibition() {
        let r = rule("a=~.*", "a=~.*", &["zone"]);
        let x = l(&[("a", "1")]);
        let y = l(&[("a", "2"), ("zone", "")]);
        let firing = [
            FiringAlert {
                fingerprint: Fingerprint(1),
                labels: &x,
            },
            FiringAlert {
                fingerprint: Fingerprint(2),
                labels: &y,
            },
        ];
        // Both sides match both alerts: neither inhibits the other (nor itself).
        assert_eq!(r.inhibited_by(&x, firing.iter().copied()), None);
        let r2 = rule("a=2", "a=1", &["zone"]);
        assert_eq!(
            r2.inhibited_by(&x, firing.iter().copied()),
            Some(Fingerprint(2))
        );
    }
}
