use super::*;
use crate::config::BalancerConfig;

/// Drives one tracker every `step` ms with a fixed raw score and alive fraction, applying
/// every proposal (no global guards). Returns the transitions with their times.
struct Sim {
    c: BalancerConfig,
    t: ZoneTracker,
    now: i64,
    log: Vec<(i64, Transition)>,
}

impl Sim {
    fn new() -> Self {
        let c = BalancerConfig::production();
        let t = ZoneTracker::new(&c.zone, 0);
        Self {
            c,
            t,
            now: 0,
            log: Vec::new(),
        }
    }

    fn run(&mut self, for_ms: i64, raw: f64, alive: f64) {
        let end = self.now + for_ms;
        while self.now < end {
            self.now += 1_000;
            let (h, z) = (&self.c.health, &self.c.zone);
            self.t.observe(h, z, self.now, raw, alive);
            if let Some(tr) = self.t.propose(h, z, self.now, alive) {
                self.t.apply(z, self.now, tr);
                self.log.push((self.now, tr));
            }
            self.t.validate(z).unwrap();
        }
    }
}

#[test]
fn degrade_needs_the_dwell() {
    let mut s = Sim::new();
    s.run(25_000, 0.6, 1.0);
    assert_eq!(s.t.state(), ZoneState::Healthy, "{:?}", s.log);
    s.run(10_000, 0.6, 1.0);
    assert_eq!(s.t.state(), ZoneState::Degraded);
    // W = min(1, 1.4 × 0.6) = 0.84 → 0.75.
    assert_eq!(s.t.weight(), 0.75);
}

#[test]
fn flapping_signal_changes_state_at_most_once() {
    let mut s = Sim::new();
    for _ in 0..60 {
        s.run(20_000, 0.5, 1.0);
        s.run(40_000, 1.0, 1.0);
    }
    // Each dip plus the slow climb back keeps W < 1 for ~48 s, so the zone degrades once and
    // then stays degraded: it never holds 0.85 for 120 s. Only the weight moves, ≤ 1/min.
    let states: Vec<_> = s
        .log
        .iter()
        .filter(|(_, t)| !matches!(t, Transition::Reweight { .. }))
        .collect();
    assert_eq!(states.len(), 1, "{:?}", s.log);
    let times: Vec<i64> = s.log.iter().map(|(t, _)| *t).collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 60_000),
        "{:?}",
        s.log
    );
}

#[test]
fn dead_zone_drains_at_once_and_serves_quarantine() {
    let mut s = Sim::new();
    s.run(1_000, 0.0, 0.0);
    assert_eq!(s.log, vec![(1_000, Transition::Drain { dead: true })]);
    assert_eq!(s.t.score(), 0.0);
    assert_eq!(s.t.quarantine_ms(&s.c.zone), 120_000);
    // Back at once, but the score climbs slowly and the quarantine holds it for 120 s.
    s.run(119_000, 1.0, 1.0);
    assert_eq!(s.t.state(), ZoneState::Drained);
    s.run(2_000, 1.0, 1.0);
    assert_eq!(s.t.state(), ZoneState::Probation);
    assert_eq!(s.t.weight(), 0.10);
}

#[test]
fn probation_ramps_then_promotes_in_about_five_minutes() {
    let mut s = Sim::new();
    s.run(1_000, 0.0, 0.0);
    s.run(500_000, 1.0, 1.0);
    let times: Vec<i64> = s.log.iter().map(|(t, _)| *t).collect();
    let kinds: Vec<Transition> = s.log.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds,
        vec![
            Transition::Drain { dead: true },
            Transition::Admit,
            Transition::Ramp { weight: 0.25 },
            Transition::Ramp { weight: 0.5 },
            Transition::Promote,
        ]
    );
    let back = times[4] - times[0];
    assert!(
        (300_000..=330_000).contains(&back),
        "full weight after {back} ms"
    );
}

#[test]
fn relapse_doubles_the_quarantine_up_to_the_cap() {
    let mut s = Sim::new();
    let mut quarantines = Vec::new();
    for _ in 0..6 {
        s.run(2_000, 0.0, 0.0); // dies (drain or relapse)
        quarantines.push(s.t.quarantine_ms(&s.c.zone));
        // Recover until admitted to probation.
        while s.t.state() != ZoneState::Probation {
            s.run(1_000, 1.0, 1.0);
        }
    }
    assert_eq!(
        quarantines,
        vec![120_000, 240_000, 480_000, 960_000, 960_000, 960_000]
    );
    assert_eq!(s.t.recent_drains(), 6);
}

#[test]
fn drain_memory_decays_while_healthy() {
    let mut s = Sim::new();
    s.run(1_000, 0.0, 0.0);
    s.run(400_000, 1.0, 1.0);
    assert_eq!(s.t.state(), ZoneState::Healthy);
    assert_eq!(s.t.recent_drains(), 1);
    s.run(3_600_000, 1.0, 1.0);
    assert_eq!(s.t.recent_drains(), 0);
}

#[test]
fn degraded_weight_changes_at_most_once_a_minute() {
    let mut s = Sim::new();
    s.run(32_000, 0.6, 1.0);
    assert_eq!(s.t.state(), ZoneState::Degraded);
    // Alternate between two weight quanta every 5 s for 10 minutes.
    for i in 0..120 {
        let raw = if i % 2 == 0 { 0.3 } else { 0.6 };
        s.run(5_000, raw, 1.0);
    }
    let reweights: Vec<i64> = s
        .log
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Reweight { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        reweights.windows(2).all(|w| w[1] - w[0] >= 60_000),
        "{reweights:?}"
    );
}

#[test]
fn resume_from_record_keeps_quarantine_and_drains() {
    let c = BalancerConfig::production();
    let mut s = Sim::new();
    s.run(1_000, 0.0, 0.0);
    s.run(2_000, 0.0, 0.0);
    let rec = s.t.to_record();
    assert_eq!(rec.state, ZoneState::Drained);
    // A new leader resumes 60 s later, with the zone looking perfect.
    let mut t = ZoneTracker::from_record(&rec, &c.zone, 61_000);
    let mut now = 61_000;
    while now < 120_000 {
        now += 1_000;
        t.observe(&c.health, &c.zone, now, 1.0, 1.0);
        assert_eq!(
            t.propose(&c.health, &c.zone, now, 1.0),
            None,
            "admitted at {now}"
        );
    }
    assert_eq!(t.to_record().recent_drains, 1);
}

#[test]
fn bad_records_are_repaired() {
    let c = BalancerConfig::production();
    let rec = ZoneRecord {
        state: ZoneState::Probation,
        score: f64::NAN,
        weight: 0.3,
        since_ms: 10,
        recent_drains: 2,
    };
    let t = ZoneTracker::from_record(&rec, &c.zone, 0);
    t.validate(&c.zone).unwrap();
    assert_eq!(t.weight(), 0.25);
    let rec = ZoneRecord {
        state: ZoneState::Degraded,
        weight: 1.0,
        ..rec
    };
    let t = ZoneTracker::from_record(&rec, &c.zone, 100);
    t.validate(&c.zone).unwrap();
    assert_eq!(t.weight(), 0.75);
}

mod machine_prop {
    use proptest::prelude::*;

    use super::*;

    fn allowed(from: ZoneState, to: ZoneState) -> bool {
        use ZoneState::*;
        matches!(
            (from, to),
            (Healthy, Degraded)
                | (Healthy, Drained)
                | (Degraded, Healthy)
                | (Degraded, Drained)
                | (Drained, Probation)
                | (Probation, Healthy)
                | (Probation, Drained)
        )
    }

    proptest! {
        /// Any signal: only the edges of the state machine, the tracker's invariants after
        /// every step, and a degraded zone's weight moves at most once a minute.
        #[test]
        fn any_signal_keeps_the_machine_well_formed(
            steps in prop::collection::vec((0.0f64..=1.0, 0u8..4, 1i64..5), 1..400),
        ) {
            let c = BalancerConfig::production();
            let mut t = ZoneTracker::new(&c.zone, 0);
            let mut now = 0;
            let mut last_reweight: Option<i64> = None;
            for (raw, alive, secs) in steps {
                let alive = [0.0, 0.4, 0.75, 1.0][usize::from(alive)];
                for _ in 0..secs * 5 {
                    now += 1_000;
                    t.observe(&c.health, &c.zone, now, raw, alive);
                    let Some(tr) = t.propose(&c.health, &c.zone, now, alive) else { continue };
                    let before = t.state();
                    t.apply(&c.zone, now, tr);
                    if before != t.state() {
                        prop_assert!(allowed(before, t.state()), "{before:?} -> {:?}", t.state());
                    }
                    if let Transition::Reweight { .. } = tr {
                        if let Some(prev) = last_reweight {
                            prop_assert!(now - prev >= c.zone.weight_change_min_ms);
                        }
                        last_reweight = Some(now);
                    }
                    if let Err(e) = t.validate(&c.zone) {
                        return Err(TestCaseError::fail(e));
                    }
                }
            }
        }
    }
}
