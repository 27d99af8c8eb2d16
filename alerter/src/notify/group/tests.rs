use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const S: i64 = 1000;
const M: i64 = 60 * S;

fn key() -> NotificationKey {
    NotificationKey {
        receiver: "team".into(),
        group_key: "{}:{alertname=\"Down\"}".into(),
    }
}

fn timers(gw: i64, gi: i64, ri: i64) -> GroupTimers {
    GroupTimers {
        group_wait_ms: gw,
        group_interval_ms: gi,
        repeat_interval_ms: ri,
    }
}

/// Alertmanager's defaults.
fn am() -> GroupTimers {
    timers(30 * S, 5 * M, 4 * 60 * M)
}

fn firing(fp: u64, at: i64) -> GroupAlert {
    GroupAlert {
        fingerprint: Fingerprint(fp),
        status: AlertStatus::Firing,
        first_seen_ms: at,
    }
}

fn resolved(fp: u64, at: i64) -> GroupAlert {
    GroupAlert {
        status: AlertStatus::Resolved,
        ..firing(fp, at)
    }
}

fn none(_: Fingerprint) -> bool {
    false
}

fn fps(v: &[u64]) -> Vec<Fingerprint> {
    v.iter().map(|&f| Fingerprint(f)).collect()
}

/// Polls at every deadline up to and including `until`, collecting flushes.
fn run_until(g: &mut AggrGroup, until: i64) -> Vec<Flush> {
    let mut out = Vec::new();
    while let Some(t) = g.next_deadline().filter(|&t| t <= until) {
        out.extend(g.poll(t, &none));
        g.validate().unwrap();
    }
    out
}

#[test]
fn group_wait_batches_the_first_notification() {
    let mut g = AggrGroup::new(key(), am(), true);
    g.on_alert(firing(1, 0), 0);
    g.on_alert(firing(2, 10 * S), 10 * S);
    assert!(g.poll(29 * S, &none).is_empty());
    assert_eq!(g.next_deadline(), Some(30 * S));
    let f = g.poll(30 * S, &none);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].firing, fps(&[1, 2]));
    assert_eq!(f[0].reason, FlushReason::First);
    assert!(!f[0].resolve_only);
    g.validate().unwrap();
}

#[test]
fn group_interval_paces_updates() {
    let mut g = AggrGroup::new(key(), am(), true);
    g.on_alert(firing(1, 0), 0);
    assert_eq!(run_until(&mut g, 30 * S).len(), 1);
    g.on_alert(firing(2, 40 * S), 40 * S);
    // Not before the next group_interval tick.
    assert!(run_until(&mut g, 30 * S + 5 * M - 1).is_empty());
    let f = run_until(&mut g, 30 * S + 5 * M);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, FlushReason::NewFiring);
    assert_eq!(f[0].firing, fps(&[1, 2]));
}

#[test]
fn repeat_interval_repeats_an_unchanged_group() {
    let mut g = AggrGroup::new(key(), timers(30 * S, 5 * M, 60 * M), false);
    g.on_alert(firing(1, 0), 0);
    let f = run_until(&mut g, 3 * 60 * M);
    let times: Vec<i64> = f.iter().map(|f| f.due_ms).collect();
    assert_eq!(times, [30 * S, 30 * S + 60 * M, 30 * S + 120 * M]);
    assert!(f[1..].iter().all(|f| f.reason == FlushReason::Repeat));
}

#[test]
fn resolved_before_group_wait_sends_nothing() {
    let mut g = AggrGroup::new(key(), am(), true);
    g.on_alert(firing(1, 0), 0);
    g.on_alert(resolved(1, 0), 10 * S);
    assert!(run_until(&mut g, 10 * M).is_empty());
    assert!(g.is_idle());
    assert_eq!(g.next_deadline(), None);
}

#[test]
fn resolves_follow_send_resolved() {
    for send_resolved in [true, false] {
        let mut g = AggrGroup::new(key(), am(), send_resolved);
        g.on_alert(firing(1, 0), 0);
        g.on_alert(firing(2, 0), 0);
        run_until(&mut g, 30 * S);
        g.on_alert(resolved(1, 0), M);
        let f = run_until(&mut g, 30 * S + 5 * M);
        if send_resolved {
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].reason, FlushReason::NewResolved);
            assert_eq!(
                (f[0].firing.clone(), f[0].resolved.clone()),
                (fps(&[2]), fps(&[1]))
            );
        } else {
            assert!(f.is_empty());
        }
        g.on_alert(resolved(2, 0), 6 * M);
        let f = run_until(&mut g, 30 * S + 10 * M);
        if send_resolved {
            assert_eq!(f.len(), 1);
            assert!(f[0].resolve_only);
            assert_eq!(f[0].reason, FlushReason::AllResolved);
            assert_eq!(f[0].resolved, fps(&[2]));
        } else {
            assert!(f.is_empty());
        }
        // Resolved alerts are dropped after the flush; the group is idle.
        assert!(g.is_idle());
        assert!(g.log().unwrap().firing.is_empty());
    }
}

#[test]
fn ack_stops_repeats_until_escalation() {
    let mut g = AggrGroup::new(key(), timers(0, M, 10 * M), true);
    g.on_alert(firing(1, 0), 0);
    assert_eq!(run_until(&mut g, 0).len(), 1);
    g.on_ack(Ack {
        by: "alice".into(),
        at_ms: 30 * S,
    });
    assert!(run_until(&mut g, 60 * M).is_empty(), "acked: no repeats");
    g.on_alert(firing(2, 60 * M), 60 * M + 1);
    let f = run_until(&mut g, 61 * M);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, FlushReason::NewFiring);
    // The ack predates the escalation: repeats resume.
    let f = run_until(&mut g, 71 * M);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, FlushReason::Repeat);
}

#[test]
fn muted_alerts_are_left_out() {
    let mut g = AggrGroup::new(key(), am(), true);
    g.on_alert(firing(1, 0), 0);
    g.on_alert(firing(2, 0), 0);
    let f = g.poll(30 * S, &|fp| fp == Fingerprint(2));
    assert_eq!(f[0].firing, fps(&[1]));
    // Unmuted later: it is new to the log, so it is notified at the next tick.
    let f = g.poll(30 * S + 5 * M, &none);
    assert_eq!(f[0].firing, fps(&[1, 2]));
    assert_eq!(f[0].reason, FlushReason::NewFiring);
}

#[test]
fn resume_neither_repeats_nor_skips() {
    let mut g = AggrGroup::new(key(), am(), true);
    g.on_alert(firing(1, 0), 0);
    let first = run_until(&mut g, 30 * S);
    let log = first[0].log.clone();
    // Handoff 1 min later; a second alert joined meanwhile.
    let alerts = [firing(1, 0), firing(2, 50 * S)];
    let mut r = AggrGroup::resume(key(), am(), true, alerts, Some(log.clone()), None, 90 * S);
    assert_eq!(
        r.next_deadline(),
        Some(30 * S + 5 * M),
        "keeps the old owner's pace"
    );
    let f = run_until(&mut r, 30 * S + 5 * M);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].firing, fps(&[1, 2]));
    // Same content, resumed from the log the flush committed: nothing is sent again.
    let mut r2 = AggrGroup::resume(
        key(),
        am(),
        true,
        alerts,
        Some(f[0].log.clone()),
        None,
        6 * M,
    );
    assert!(run_until(&mut r2, 60 * M).is_empty());
    // The flush was never committed (old log): the new owner sends it.
    let mut r3 = AggrGroup::resume(key(), am(), true, alerts, Some(log), None, 20 * M);
    assert_eq!(r3.next_deadline(), Some(20 * M));
    assert_eq!(run_until(&mut r3, 20 * M).len(), 1);
    // No log yet: group_wait counts from the oldest alert.
    let r4 = AggrGroup::resume(key(), am(), true, [firing(3, 10 * S)], None, None, 20 * S);
    assert_eq!(r4.next_deadline(), Some(40 * S));
}

#[derive(Clone, Debug)]
enum Ev {
    Fire(u64),
    Resolve(u64),
}

fn events() -> impl Strategy<Value = Vec<(i64, Ev)>> {
    prop::collection::vec(
        (
            0..20 * M,
            prop_oneof![
                (0..6u64).prop_map(Ev::Fire),
                (0..6u64).prop_map(Ev::Resolve)
            ],
        ),
        1..40,
    )
    .prop_map(|mut v| {
        v.sort_by_key(|(t, _)| *t);
        v
    })
}

proptest! {
    /// Timers hold for any alert history: the first flush of a group incarnation comes no
    /// earlier than group_wait after its first alert, and flushes within an incarnation are at
    /// least group_interval apart.
    #[test]
    fn timers_hold(
        gw in 0..2 * M,
        gi in 1..5 * M,
        ri in 1..30 * M,
        send_resolved in any::<bool>(),
        evs in events(),
    ) {
        let mut g = AggrGroup::new(key(), timers(gw, gi, ri), send_resolved);
        let mut incarnation_start: Option<i64> = None;
        let mut last_flush: Option<i64> = None;
        let mut check = |g: &mut AggrGroup, until: i64, start: &mut Option<i64>| -> Result<(), TestCaseError> {
            while let Some(t) = g.next_deadline().filter(|&t| t <= until) {
                let flushes = g.poll(t, &none);
                g.validate().map_err(TestCaseError::fail)?;
                for f in &flushes {
                    let s = start.expect("a flush needs an alert");
                    prop_assert!(f.due_ms >= s + gw, "flush at {} before group_wait after {}", f.due_ms, s);
                    if let Some(prev) = last_flush {
                        prop_assert!(f.due_ms - prev >= gi, "flushes {prev} and {} closer than {gi}", f.due_ms);
                    }
                    last_flush = Some(f.due_ms);
                }
                if g.is_idle() {
                    *start = None;
                    last_flush = None;
                }
            }
            Ok(())
        };
        for (t, ev) in evs {
            check(&mut g, t, &mut incarnation_start)?;
            let a = match ev {
                Ev::Fire(fp) => firing(fp, t),
                Ev::Resolve(fp) => resolved(fp, t),
            };
            if g.is_idle() {
                incarnation_start = Some(t);
            }
            g.on_alert(a, t);
            g.validate().map_err(TestCaseError::fail)?;
        }
        check(&mut g, 40 * M, &mut incarnation_start)?;
    }

    /// With nothing changing, a group repeats every repeat_interval, rounded up to the next
    /// group_interval tick.
    #[test]
    fn unchanged_group_repeats(gw in 0..M, gi in 1..5 * M, ri in 1..60 * M, n in 1..4u64) {
        let mut g = AggrGroup::new(key(), timers(gw, gi, ri), true);
        for fp in 0..n {
            g.on_alert(firing(fp, 0), 0);
        }
        let f = run_until(&mut g, gw + 4 * (ri + gi));
        prop_assert!(f.len() >= 4);
        prop_assert_eq!(f[0].due_ms, gw);
        for w in f.windows(2) {
            let gap = w[1].due_ms - w[0].due_ms;
            prop_assert!(gap >= ri && gap < ri + gi, "gap {} for ri {} gi {}", gap, ri, gi);
            prop_assert_eq!(w[1].reason, FlushReason::Repeat);
            prop_assert_eq!(&w[1].firing, &w[0].firing);
        }
    }

    /// A handoff at any point of any history: the new owner, resumed from the alerts (plus
    /// resolved ones the store still retains) and the last committed log entry, never re-sends
    /// what the log holds (only a repeat may carry the same content) and ends in the same
    /// notified state as an owner that never changed.
    #[test]
    fn handoff_neither_duplicates_nor_skips(
        gw in 0..M,
        gi in 1..3 * M,
        ri in 1..30 * M,
        send_resolved in any::<bool>(),
        evs in events(),
        handoff in 0..25 * M,
        delay in 0..10 * M,
    ) {
        let t = timers(gw, gi, ri);
        let mut g = AggrGroup::new(key(), t, send_resolved);
        let mut dropped: BTreeMap<Fingerprint, GroupAlert> = BTreeMap::new();
        for (at, ev) in evs.iter().filter(|(at, _)| *at < handoff) {
            run_until(&mut g, *at);
            let a = match ev {
                Ev::Fire(fp) => firing(*fp, *at),
                Ev::Resolve(fp) => resolved(*fp, *at),
            };
            dropped.remove(&a.fingerprint);
            if a.status == AlertStatus::Resolved {
                dropped.insert(a.fingerprint, a);
            }
            g.on_alert(a, *at);
        }
        run_until(&mut g, handoff);
        let log = g.log().cloned();
        let mut alerts: BTreeMap<Fingerprint, GroupAlert> = dropped;
        alerts.extend(g.alerts().map(|a| (a.fingerprint, *a)));
        let now = handoff + delay;
        let mut r = AggrGroup::resume(key(), t, send_resolved, alerts.into_values(), log.clone(), None, now);
        r.validate().map_err(TestCaseError::fail)?;
        if let Some(d) = r.next_deadline() {
            prop_assert!(d >= now);
        }
        let theirs = run_until(&mut r, now + 2 * ri + 2 * gi + gw);
        let ours = run_until(&mut g, now + 2 * ri + 2 * gi + gw);
        if let (Some(l), Some(first)) = (&log, theirs.first()) {
            let same = first.firing.iter().copied().collect::<BTreeSet<_>>() == l.firing
                && (!send_resolved || first.resolved.iter().copied().collect::<BTreeSet<_>>().is_subset(&l.resolved));
            prop_assert!(!same || first.reason == FlushReason::Repeat, "re-sent {first:?} from {l:?}");
        }
        let firing_of = |g: &AggrGroup| g.log().map(|l| l.firing.clone()).unwrap_or_default();
        prop_assert_eq!(firing_of(&r), firing_of(&g), "ours {:?} theirs {:?}", ours, theirs);
    }
}
