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
    /// Timing makes it legitimately uncertain: not counted missed when absent, not spurious
    /// when present.
    pub optional: bool,
}

/// The receiver a series routes to.
pub fn receiver_of(team: &str) -> String {
    format!("team-{team}")
}

/// A notification closer than this to the boundary of what timing allows (firing for less
/// than `group_wait` plus this) may or may not be sent: it is optional.
pub const BORDERLINE_MS: i64 = 2_000;

/// A period (wall ms, `[from, to)`) in which no evaluation can see the datasource (it is down
/// or every node is restarting): conditions are noticed only after it.
pub type Blind = (i64, i64);

/// The first time at or after `t` that is not inside a blind window.
fn seen_at(t: i64, blind: &[Blind]) -> i64 {
    let mut t = t;
    // Windows may touch or overlap: repeat until `t` is outside all of them.
    for _ in 0..=blind.len() {
        match blind.iter().find(|(from, to)| t >= *from && t < *to) {
            Some((_, to)) => t = *to,
            None => break,
        }
    }
    t
}

/// Every expected notification of `script` started at wall time `t0_ms`, in due order,
/// given the windows in which the datasource could not be read.
///
/// A series high over `[start, end)` is first seen at the first readable time `seen` ≥
/// `start`; it fires at the first readable time ≥ `seen + for`, if that is before `end`;
/// the firing notification is due `group_wait` later; the resolve is seen at the first
/// readable time ≥ `end`. An episode that fires for less than `group_wait` +
/// [`BORDERLINE_MS`], or that comes near a blind window, yields optional notifications.
pub fn expected(script: &Script, t0_ms: i64, blind: &[Blind]) -> Vec<Expected> {
    let t = script.timing;
    // Evaluations are discrete: a change in the last interval before a window is first
    // evaluated inside it, so each window effectively starts one interval earlier.
    let blind: Vec<Blind> = blind
        .iter()
        .map(|(from, to)| (from - t.eval_interval_ms, *to))
        .collect();
    let blind = blind.as_slice();
    let mut out = Vec::new();
    for s in &script.series {
        let Some(e) = s.episode else { continue };
        let receiver = receiver_of(&s.team);
        let start = t0_ms + e.start_ms;
        let end = e.end_ms.map(|end| t0_ms + end);
        let seen = seen_at(start, blind);
        let fires = seen_at(seen + t.for_ms, blind);
        // A notification decided near a blind window depends on which evaluation slots fell
        // inside it: it is optional (a resolve before the end is still spurious). The firing
        // is decided from the start until it is sent; the resolve around the end.
        let near = |from: i64, to: i64| blind.iter().any(|(b0, b1)| from < *b1 && *b0 < to);
        let firing_near = near(
            start - t.eval_interval_ms,
            start + t.for_ms + t.group_wait_ms + t.eval_interval_ms + BORDERLINE_MS,
        );
        if !firing_near && end.is_some_and(|end| fires >= end) {
            continue; // never fires: no notification at all
        }
        let short = end.is_some_and(|end| end - fires < t.group_wait_ms + BORDERLINE_MS);
        let resolve_near = end.is_some_and(|end| {
            near(
                end - t.eval_interval_ms,
                end + t.eval_interval_ms + BORDERLINE_MS,
            )
        });
        let optional = firing_near || short;
        out.push(Expected {
            key: NoticeKey {
                receiver: receiver.clone(),
                series: s.name.clone(),
                status: NoticeStatus::Firing,
            },
            due_ms: fires + t.group_wait_ms,
            not_before_ms: start + t.for_ms,
            optional,
        });
        if let Some(end) = end {
            out.push(Expected {
                key: NoticeKey {
                    receiver,
                    series: s.name.clone(),
                    status: NoticeStatus::Resolved,
                },
                due_ms: seen_at(end, blind),
                not_before_ms: end,
                optional: optional || resolve_near,
            });
        }
    }
    out.sort_by_key(|e| e.due_ms);
    out
}

/// PagerDuty incidents expected (team a pages): (opened, of which resolved), and how many
/// of each are optional.
pub fn expected_incidents(expected: &[Expected]) -> IncidentCounts {
    let paged = |status: NoticeStatus, optional: bool| {
        expected
            .iter()
            .filter(|e| {
                e.key.receiver == "team-a" && e.key.status == status && e.optional == optional
            })
            .count()
    };
    IncidentCounts {
        opened: paged(NoticeStatus::Firing, false),
        resolved: paged(NoticeStatus::Resolved, false),
        optional: paged(NoticeStatus::Firing, true),
    }
}

/// PagerDuty incidents the oracle expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IncidentCounts {
    /// Incidents that must be opened.
    pub opened: usize,
    /// Of which must be resolved.
    pub resolved: usize,
    /// Incidents that may or may not be opened (borderline timing), each maybe resolved.
    pub optional: usize,
}

/// `expected` plus, for every notification to team b, the same one through team b's Slack
/// integration (S13 routes team b to a webhook and to Slack).
pub fn with_slack(mut expected: Vec<Expected>) -> Vec<Expected> {
    let copies: Vec<Expected> = expected
        .iter()
        .filter(|e| e.key.receiver == receiver_of("b"))
        .map(|e| {
            let mut c = e.clone();
            c.key.receiver = super::checker::SLACK_RECEIVER.into();
            c
        })
        .collect();
    expected.extend(copies);
    expected
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
        let e = expected(&script, 100_000, &[]);
        assert_eq!(e.len(), 2);
        assert!(!e[0].optional);
        assert_eq!(e[0].key.status, NoticeStatus::Firing);
        assert_eq!(e[0].due_ms, 100_000 + 1000 + 2000 + 1000);
        assert_eq!(e[0].not_before_ms, 103_000);
        assert_eq!(e[1].key.receiver, "team-a");
        assert_eq!(e[1].due_ms, 109_000);
        let counts = expected_incidents(&e);
        assert_eq!((counts.opened, counts.resolved, counts.optional), (1, 1, 0));
        // Blind from 100.5 s to 106 s: seen at 106, fires at 108, for 1 s before the end.
        let e = expected(&script, 100_000, &[(100_500, 106_000)]);
        assert_eq!(e[0].due_ms, 109_000);
        assert!(e.iter().all(|x| x.optional));
        // Blind over the whole episode: nothing is required.
        let e = expected(&script, 100_000, &[(100_000, 110_000)]);
        assert!(e.iter().all(|x| x.optional));
        // Blind only around the end: the firing is required, the resolve optional.
        let e = expected(&script, 100_000, &[(108_500, 109_500)]);
        assert!(!e[0].optional && e[1].optional, "{e:?}");
    }
}
