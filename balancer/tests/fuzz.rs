//! Random event sequences against the core: `validate()` after every step, and the
//! placement invariants after every tick.

mod sim;

use proptest::prelude::*;
use sim::{Sim, healthy};
use tocsin_balancer::{BalancerConfig, HeartbeatReport};
use tocsin_state::model::{ZoneId, ZoneState};

#[derive(Clone, Debug)]
enum Event {
    Stop(usize),
    Start(usize),
    Run(i64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..6).prop_map(Event::Stop),
        (0usize..6).prop_map(Event::Start),
        (200i64..8_000).prop_map(Event::Run),
    ]
}

fn noisy(z: &ZoneId, t: i64) -> HeartbeatReport {
    let mut r = healthy(z, t);
    // A deterministic, zone-dependent mix of latency, steal and failures.
    let phase = (t / 7_000 + z.as_str().len() as i64 + i64::from(z.as_str().as_bytes()[0])) % 5;
    r.probe_rtt_ms = Some(if phase == 0 { 250.0 } else { 3.0 });
    r.steal = Some(if phase == 1 { 0.3 } else { 0.0 });
    r.evals = 20;
    r.failed_evals = if phase == 2 { 5 } else { 0 };
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_histories_keep_the_invariants(events in prop::collection::vec(event(), 1..30)) {
        let mut s = Sim::new(BalancerConfig::test(), &[2, 2, 2]);
        s.report = noisy;
        s.tick_ms = 200;
        for e in events {
            match e {
                Event::Stop(i) => { s.stopped.insert(s.workers[i].id.clone()); }
                Event::Start(i) => { s.stopped.remove(&s.workers[i].id.clone()); }
                Event::Run(ms) => s.run(ms), // validates after every tick
            }
            let d = s.last_opt();
            let Some(d) = d else { continue };
            // Nothing new on a drained zone while another zone has a live worker.
            let drained: Vec<&ZoneId> = d.zones.iter()
                .filter(|z| z.state == ZoneState::Drained).map(|z| &z.zone).collect();
            let live_elsewhere = d.zones.iter()
                .any(|z| z.state != ZoneState::Drained && z.alive_workers > 0);
            if live_elsewhere && d.frozen.is_none() {
                for (_, to) in &d.assign {
                    if let Some(to) = to {
                        prop_assert!(!drained.contains(&s.zone_of(to)), "assigned to drained {to}");
                    }
                }
            }
            // At most one zone non-healthy, unless a dead zone forced its way in.
            let non_healthy = d.zones.iter().filter(|z| z.state != ZoneState::Healthy).count();
            prop_assert!(non_healthy <= 1 || d.zones.iter().any(|z| z.state == ZoneState::Drained),
                "{:?}", d.zones);
        }
    }
}
