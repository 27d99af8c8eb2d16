//! The core's API contract: errors, phases, record emission.

mod sim;

use sim::{Sim, zone};
use tocsin_balancer::{Balancer, BalancerConfig, BalancerError, HeartbeatReport, Phase};
use tocsin_state::model::{ShardLayout, WorkerId, ZoneRecord, ZoneState};

#[test]
fn bad_config_and_bad_heartbeats_are_refused() {
    let mut c = BalancerConfig::test();
    c.placement.load_factor = 0.5;
    let err = Balancer::new(c).unwrap_err();
    assert!(matches!(
        err,
        BalancerError::InvalidConfig {
            field: "placement.load_factor",
            ..
        }
    ));

    let mut b = Balancer::new(BalancerConfig::test()).unwrap();
    let ghost = WorkerId::new("ghost").unwrap();
    let err = b
        .observe_heartbeat(&ghost, 0, HeartbeatReport::default())
        .unwrap_err();
    assert!(matches!(err, BalancerError::UnknownWorker { .. }));
    let s = Sim::new(BalancerConfig::test(), &[1]);
    let mut b = s.b;
    let w = s.workers[0].id.clone();
    let bad = HeartbeatReport {
        steal: Some(1.5),
        ..Default::default()
    };
    let err = b.observe_heartbeat(&w, 10, bad).unwrap_err();
    assert!(err.to_string().contains("steal"), "{err}");
    let bad = HeartbeatReport {
        probe_rtt_ms: Some(f64::NAN),
        ..Default::default()
    };
    assert!(b.observe_heartbeat(&w, 10, bad).is_err());
}

#[test]
fn a_follower_decides_nothing() {
    let mut s = Sim::new(BalancerConfig::test(), &[1, 1]);
    s.b.stepped_down();
    s.run(5_000);
    assert_eq!(s.last().phase, Phase::Follower);
    assert_eq!(s.owned(), 0);
    assert!(s.last().zone_records.is_empty());
}

#[test]
fn records_are_emitted_only_when_they_change() {
    let mut s = Sim::new(BalancerConfig::test(), &[1, 1, 1]);
    s.run(1_200);
    // First active tick: every zone's record (none was committed yet).
    let first: usize = s.decisions.iter().map(|(_, d)| d.zone_records.len()).sum();
    assert_eq!(first, 3);
    s.run(10_000);
    let later: usize = s.decisions.iter().map(|(_, d)| d.zone_records.len()).sum();
    assert_eq!(later, 3, "steady zones re-emitted their records");
}

#[test]
fn new_leadership_forgets_zones_without_a_committed_record() {
    let mut s = Sim::new(BalancerConfig::test(), &[2, 2, 2]);
    s.run(2_000);
    s.stop_zone("a");
    s.run(2_000);
    assert_eq!(s.state("a"), ZoneState::Drained);
    // Another leader decided in between and committed zone a as healthy; this node leads
    // again and must take the committed view, not its own stale one.
    s.b.stepped_down();
    let healthy = ZoneRecord {
        state: ZoneState::Healthy,
        score: 1.0,
        weight: 1.0,
        since_ms: s.now,
        recent_drains: 0,
    };
    s.b.became_leader(s.now, &[(zone("a"), healthy)]);
    assert_eq!(s.b.zone_state(&zone("a")), Some(ZoneState::Healthy));
    assert_eq!(s.b.zone_state(&zone("b")), Some(ZoneState::Healthy));
}

#[test]
fn settling_after_failover_waits_for_heartbeats() {
    let mut s = Sim::new(BalancerConfig::test(), &[2, 2]);
    s.run(3_000);
    assert_eq!(s.owned(), s.total_shards());
    // A fresh leader has heard from nobody: nothing may move during the settle period, and
    // afterwards the (alive) workers keep their shards.
    let before = s.assignments.clone();
    let mut b = Balancer::new(BalancerConfig::test()).unwrap();
    b.sync_workers(&s.workers, s.now);
    b.became_leader(s.now, &[]);
    s.b = b;
    s.run(3_000);
    assert_eq!(s.assignments, before);
}

#[test]
fn empty_cluster_and_empty_layout_are_fine() {
    let mut b = Balancer::new(BalancerConfig::test()).unwrap();
    b.became_leader(0, &[]);
    let layout = ShardLayout {
        eval_shards: 4,
        notify_shards: 0,
    };
    let d = b.tick(5_000, &[], &layout);
    assert!(d.assign.is_empty());
    assert_eq!(d.unplaced.len(), 4);
    b.validate().unwrap();
}
