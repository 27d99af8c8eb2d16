//! The oracle: every notification a perfect alerting system would send for a [`Script`],
//! computed from the script and the rule/route timing alone (threshold, `for`,
//! `group_wait`), sharing no code with Tocsin's engine.

use serde::{Deserialize, Serialize};

use super::workload::Script;

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeStatus {
    /// The group has a firing alert.
    Firing,
    /// Every alert of the group resolved.
    Resolved,
}

impl NoticeStatus {
    /// The Alertmanager payload's `status`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// The identity of one notification: groups are `[alertname, series]`, and a series has at
/// most one episode, so (receiver, series, status) names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NoticeKey {
    /// Receiver name (`team-a`, `team-b`).
    pub receiver: String,
    /// The `series` label.
    pub series: String,
    /// Firing or resolved.
    pub status: NoticeStatus,
}

/// One notification the oracle expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Which notification.
    pub key: NoticeKey,
    /// The earliest time it is due (wall ms): episode start + `for` + `group_wait` for a
    /// firing one, the episode's end for a resolved one.
    pub due_ms: i64,
    /// Arrival before this (wall ms) is impossible for a correct system: the condition was
    /// not yet true (firing) or still true (resolved).
    pub not_before_ms: i64,
}

/// The receiver a series routes to.
pub fn receiver_of(team: &str) -> String {
    format!("team-{team}")
}

/// Every expected notification of `script` started at wall time `t0_ms`, in due order.
pub fn expected(script: &Script, t0_ms: i64) -> Vec<Expected> {
    let t = script.timing;
    let mut out = Vec::new();
    for s in &script.series {
        let Some(e) = s.episode else { continue };
        let receiver = receiver_of(&s.team);
        let start = t0_ms + e.start_ms;
        out.push(Expected {
            key: NoticeKey {
                receiver: receiver.clone(),
                series: s.name.clone(),
                status: NoticeStatus::Firing,
            },
            due_ms: start + t.for_ms + t.group_wait_ms,
            not_before_ms: start + t.for_ms,
        });
        if let Some(end) = e.end_ms {
            out.push(Expected {
                key: NoticeKey {
                    receiver,
                    series: s.name.clone(),
                    status: NoticeStatus::Resolved,
                },
                due_ms: t0_ms + end,
                not_before_ms: t0_ms + end,
            });
        }
    }
    out.sort_by_key(|e| e.due_ms);
    out
}

/// PagerDuty incidents expected (team a pages): (opened, of which resolved).
pub fn expected_incidents(script: &Script) -> (usize, usize) {
    let paged: Vec<_> = script
        .series
        .iter()
        .filter(|s| s.team == "a")
        .filter_map(|s| s.episode)
        .collect();
    let resolved = paged.iter().filter(|e| e.end_ms.is_some()).count();
    (paged.len(), resolved)
}

/// When the last expected notification is due (wall ms), or `t0_ms` if none.
pub fn last_due(expected: &[Expected], t0_ms: i64) -> i64 {
    expected.iter().map(|e| e.due_ms).max().unwrap_or(t0_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::workload::{Episode, Series, Timing};

    #[test]
    fn an_episode_gives_a_firing_and_a_resolved_notification() {
        let script = Script {
            series: vec![
                Series {
                    name: "s00".into(),
                    group: 0,
                    team: "a".into(),
                    episode: Some(Episode {
                        start_ms: 1000,
                        end_ms: Some(9000),
                    }),
                },
                Series {
                    name: "s01".into(),
                    group: 1,
                    team: "b".into(),
                    episode: None,
                },
            ],
            duration_ms: 20_000,
            timing: Timing::default(),
        };
        let e = expected(&script, 100_000);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key.status, NoticeStatus::Firing);
        assert_eq!(e[0].due_ms, 100_000 + 1000 + 2000 + 1000);
        assert_eq!(e[0].not_before_ms, 103_000);
        assert_eq!(e[1].key.receiver, "team-a");
        assert_eq!(e[1].due_ms, 109_000);
        assert_eq!(expected_incidents(&script), (1, 1));
    }
}
