//! Scenario tests of the balancer core, driven by explicit time (never sleeps).

mod sim;

use sim::{Sim, healthy, zone};
use tocsin_balancer::{Balancer, BalancerConfig, HeartbeatReport, MetaAlert, Phase};
use tocsin_state::model::{ShardId, ZoneState};

fn prod() -> BalancerConfig {
    BalancerConfig::production()
}

fn test_profile() -> BalancerConfig {
    BalancerConfig::test()
}

/// Probe RTT 300 ms from zone `b`'s workers, 2 ms elsewhere.
fn slow_b(z: &tocsin_state::model::ZoneId, t: i64) -> HeartbeatReport {
    let mut r = healthy(z, t);
    if z.as_str() == "b" {
        r.probe_rtt_ms = Some(300.0);
    }
    r
}

fn slow_b_and_c(z: &tocsin_state::model::ZoneId, t: i64) -> HeartbeatReport {
    let mut r = healthy(z, t);
    if z.as_str() != "a" {
        r.probe_rtt_ms = Some(300.0);
    }
    r
}

#[test]
fn settle_then_place_everything_then_stay_quiet() {
    let mut s = Sim::new(test_profile(), &[2, 2, 2]);
    s.run(800);
    assert!(matches!(s.last().phase, Phase::Settling { .. }));
    assert_eq!(s.owned(), 0, "nothing moves while settling");
    s.run(200);
    assert_eq!(s.last().phase, Phase::Active);
    assert_eq!(s.owned(), s.total_shards());
    // Bounded load per space: ⌈1.25 × 256/6⌉ = 54 eval, ⌈1.25 × 64/6⌉ = 14 notify.
    for z in &s.last().zones {
        assert!(
            z.eval_shards <= 2 * 54 && z.notify_shards <= 2 * 14,
            "{z:?}"
        );
    }
    let epoch = s.epoch;
    s.run(30_000);
    assert_eq!(s.epoch, epoch, "a steady cluster proposes no moves");
    assert!(s.state_changes.is_empty());
}

#[test]
fn dead_zone_detected_in_3_to_5_s_and_reassigned_in_one_tick() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(60_000);
    assert_eq!(s.owned(), s.total_shards());
    let died = s.now;
    s.stop_zone("a");
    while s.state("a") != ZoneState::Drained {
        s.run(s.tick_ms);
        assert!(
            s.now - died <= 6_000,
            "not detected after {} ms",
            s.now - died
        );
    }
    let detect = s.now - died;
    assert!(
        (3_000..=5_000).contains(&detect),
        "detected after {detect} ms"
    );
    // The same tick reassigned every shard of zone a.
    assert_eq!(s.shards_in("a"), 0);
    assert_eq!(s.owned(), s.total_shards());
    assert!(s.last().frozen.is_none());
}

#[test]
fn ci_profile_reassigns_a_dead_zone_within_3_s() {
    let mut s = Sim::new(test_profile(), &[2, 2, 2]);
    s.tick_ms = 200;
    s.run(5_000);
    let died = s.now;
    s.stop_zone("b");
    while s.shards_in("b") > 0 {
        s.run(200);
        assert!(
            s.now - died <= 3_000,
            "zone b still owns shards after {} ms",
            s.now - died
        );
    }
    assert_eq!(s.owned(), s.total_shards());
    // Survivors stay within ⌈1.25 × mean⌉ of the four live workers.
    let eval_cap = (5 * 256usize).div_ceil(4 * 4);
    for z in &s.last().zones {
        assert!(z.eval_shards <= 2 * eval_cap, "{z:?}");
    }
}

#[test]
fn two_bad_zones_freeze_placement() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(60_000);
    let before = s.assignments.clone();
    s.report = slow_b_and_c;
    s.run(180_000);
    let d = s.last();
    assert!(d.frozen.is_some(), "{d:?}");
    assert!(
        d.meta_alerts
            .iter()
            .any(|m| matches!(m, MetaAlert::Frozen { .. }))
    );
    assert_eq!(s.assignments, before, "no movement while frozen");
    assert!(s.state_changes.is_empty(), "{:?}", s.state_changes);
}

#[test]
fn time_frozen_does_not_count_towards_a_dwell() {
    let cfg = test_profile();
    let dwell = cfg.zone.degrade_dwell_ms;
    let mut s = Sim::new(cfg, &[2, 2, 2]);
    s.run(6_000);
    s.report = slow_b_and_c;
    s.run(20_000);
    assert!(s.last().frozen.is_some(), "{:?}", s.last());
    assert!(s.state_changes.is_empty(), "{:?}", s.state_changes);
    // Zone c is well again; b still looks bad and has looked bad for 20 s, all of it
    // frozen. It degrades only once it looked bad for a dwell after the freeze lifted.
    s.report = slow_b;
    let c_well = s.now;
    while s.last().frozen.is_some() {
        s.run(s.tick_ms);
        assert!(s.now - c_well <= 30_000, "the freeze never lifted");
    }
    // The last frozen tick restarted the dwell.
    let unfrozen = s.now - s.tick_ms;
    while s.state("b") == ZoneState::Healthy {
        s.run(s.tick_ms);
        assert!(s.now - unfrozen <= 30_000, "b never degraded");
    }
    assert!(
        s.now - unfrozen >= dwell,
        "b degraded {} ms after the freeze lifted (dwell {dwell} ms)",
        s.now - unfrozen
    );
    assert_eq!(s.state("c"), ZoneState::Healthy);
}

#[test]
fn dead_zone_is_drained_even_while_frozen() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(60_000);
    s.report = slow_b;
    s.stop_zone("a");
    s.run(10_000);
    // b is slow (bad) and a is dead (bad): frozen, but a's workers are all dead and b and c
    // are heard, so a is drained anyway and b keeps its shards.
    assert!(s.last().frozen.is_some());
    assert_eq!(s.state("a"), ZoneState::Drained);
    assert_eq!(s.state("b"), ZoneState::Healthy);
    assert_eq!(s.shards_in("a"), 0);
    assert_eq!(s.owned(), s.total_shards());
}

/// Probe RTT 300 ms from zone `c`'s workers, 2 ms elsewhere.
fn slow_c(z: &tocsin_state::model::ZoneId, t: i64) -> HeartbeatReport {
    let mut r = healthy(z, t);
    if z.as_str() == "c" {
        r.probe_rtt_ms = Some(300.0);
    }
    r
}

#[test]
fn a_dead_worker_in_a_heard_zone_loses_its_shards_even_while_frozen() {
    // c is slow (bad) and one of a's two workers dies (a is half alive: bad): two bad zones
    // freeze placement. a's other worker is still heard, so the death is the worker's fault,
    // not the observer's: the dead worker (fenced by its lease) loses its shards; nothing else
    // moves and no zone changes state.
    // The CI profile, as in chaos S9: a zone's score falls within the tick that finds the
    // worker dead, so the freeze starts in that very tick.
    let mut s = Sim::new(test_profile(), &[2, 2, 2]);
    s.run(5_000);
    let dead = s
        .workers
        .iter()
        .find(|w| w.zone.as_str() == "a")
        .unwrap()
        .id
        .clone();
    let owned_by = |s: &Sim, w: &tocsin_state::model::WorkerId| {
        s.assignments
            .values()
            .filter(|a| a.owner.as_ref() == Some(w))
            .count()
    };
    assert!(owned_by(&s, &dead) > 0);
    let others_before: Vec<(ShardId, Option<tocsin_state::model::WorkerId>)> = s
        .assignments
        .iter()
        .filter(|(_, a)| a.owner.as_ref() != Some(&dead))
        .map(|(sh, a)| (*sh, a.owner.clone()))
        .collect();
    // c first (bad within its dwell), then the worker.
    s.report = slow_c;
    s.run(1_500);
    assert!(s.last().frozen.is_none(), "{:?}", s.last());
    s.stopped.insert(dead.clone());
    s.run(2_500);
    assert!(s.last().frozen.is_some(), "{:?}", s.last());
    assert_eq!(owned_by(&s, &dead), 0, "the dead worker kept its shards");
    assert_eq!(s.owned(), s.total_shards());
    for (shard, owner) in others_before {
        assert_eq!(
            s.assignments[&shard].owner, owner,
            "{shard:?} of a live worker moved while frozen"
        );
    }
    assert!(s.state_changes.is_empty(), "{:?}", s.state_changes);
}

#[test]
fn slow_zone_degrades_and_loses_shards_gradually() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(60_000);
    let start = s.shards_in("b");
    s.report = slow_b;
    s.run(29_000);
    assert_eq!(
        s.state("b"),
        ZoneState::Healthy,
        "degrade needs its 30 s dwell"
    );
    assert_eq!(s.shards_in("b"), start);
    // At most 5 % of each space (13 eval + 4 notify) per 30 s period: no tick loses more,
    // and no 30 s window (which meets at most two periods) loses more than twice that.
    let mut history = vec![s.shards_in("b")];
    for _ in 0..300 {
        s.run(1_000);
        history.push(s.shards_in("b"));
    }
    assert_eq!(s.state("b"), ZoneState::Degraded);
    for w in history.windows(2) {
        assert!(w[0] - w[1] <= 13 + 4, "lost {} in one tick", w[0] - w[1]);
    }
    for w in history.windows(31) {
        assert!(
            w[0] - w[30] <= 2 * (13 + 4),
            "lost {} in 30 s",
            w[0] - w[30]
        );
    }
    let last = *history.last().unwrap();
    assert!(last < start, "degraded zone lost nothing");
    assert!(last > 0, "latency alone must not drain");
    assert_ne!(s.state("b"), ZoneState::Drained);
}

#[test]
fn flapping_latency_changes_state_boundedly() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.report = |z, t| {
        // On for 5 s, off for 5 s, forever.
        if (t / 5_000) % 2 == 0 {
            slow_b(z, t)
        } else {
            healthy(z, t)
        }
    };
    s.run(30 * 60_000);
    let b = s.changes_of("b");
    assert!(
        b.len() <= 2,
        "zone b changed state {} times: {b:?}",
        b.len()
    );
    let w: Vec<i64> = s
        .weight_changes
        .iter()
        .filter(|(_, z, _)| z.as_str() == "b")
        .map(|(t, _, _)| *t)
        .collect();
    assert!(
        w.windows(2).all(|p| p[1] - p[0] >= 60_000),
        "weight flapped: {w:?}"
    );
}

#[test]
fn slow_up_smoothing_outlasts_long_quiet_spells() {
    // Bad for 60 s, quiet for 190 s: the 30 s latency window leaves ~160 s of good signal,
    // long enough for a symmetric score to hold 0.85 for the 120 s recovery dwell, but the
    // slow climb (~60 s to 0.85) means it never does: one degrade, no flapping.
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.report = |z, t| {
        if t % 250_000 < 60_000 {
            slow_b(z, t)
        } else {
            healthy(z, t)
        }
    };
    s.run(30 * 60_000);
    let b = s.changes_of("b");
    assert_eq!(b.len(), 1, "zone b changed state {} times: {b:?}", b.len());
}

#[test]
fn two_dead_zones_freeze_and_keep_their_shards() {
    // An observer that hears neither b nor c is more likely deaf than two zones dead at once.
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(30_000);
    let before = s.assignments.clone();
    s.stop_zone("b");
    s.stop_zone("c");
    s.run(30_000);
    assert!(s.last().frozen.is_some());
    assert_eq!(s.assignments, before);
    assert_eq!(s.state("b"), ZoneState::Healthy);
    assert_eq!(s.state("c"), ZoneState::Healthy);
}

#[test]
fn repeated_deaths_grow_the_quarantine() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(30_000);
    let mut quarantines = Vec::new();
    for _ in 0..5 {
        s.stop_zone("a");
        s.run(6_000);
        assert_eq!(s.state("a"), ZoneState::Drained);
        let drained_at = s.records[&zone("a")].since_ms;
        s.start_zone("a");
        while s.state("a") != ZoneState::Probation {
            s.run(1_000);
            if s.state("a") == ZoneState::Drained {
                assert_eq!(s.shards_in("a"), 0, "drained zone got shards back");
            }
        }
        quarantines.push(s.now - drained_at);
    }
    // 120 s, 240 s, 480 s, 960 s, 960 s (cap), each plus up to a few seconds of ticking.
    let expected = [120_000, 240_000, 480_000, 960_000, 960_000];
    for (q, e) in quarantines.iter().zip(expected) {
        assert!((e..e + 5_000).contains(q), "{quarantines:?}");
    }
    // Each cycle is exactly two changes (drain, admit): no flapping in between.
    assert_eq!(s.changes_of("a").len(), 10, "{:?}", s.changes_of("a"));
}

#[test]
fn new_leader_resumes_quarantine_from_records() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(30_000);
    s.stop_zone("a");
    s.run(6_000);
    let drained_at = s.records[&zone("a")].since_ms;
    s.start_zone("a");
    s.run(60_000);
    // Fail over: a fresh core on another node, fed the committed records.
    let records: Vec<_> = s
        .records
        .iter()
        .map(|(z, r)| (z.clone(), r.clone()))
        .collect();
    let mut b = Balancer::new(prod()).unwrap();
    b.sync_workers(&s.workers, s.now);
    b.became_leader(s.now, &records);
    s.b = b;
    while s.state("a") != ZoneState::Probation {
        s.run(1_000);
        assert!(s.now - drained_at < 200_000, "quarantine not honoured");
    }
    // Admitted when the original quarantine ends, not 120 s after the failover.
    let served = s.now - drained_at;
    assert!(
        (120_000..125_000).contains(&served),
        "admitted {served} ms after the drain"
    );
    assert_eq!(s.b.zone_record(&zone("a")).unwrap().recent_drains, 1);
}

#[test]
fn capacity_precheck_degrades_partially_instead_of_draining() {
    let mut c = prod();
    // Each worker carries 160 shards; the load is 320 × 1.2 = 384: three workers give 480,
    // two give 320 (not enough), so zone b may lose at most half its weight.
    c.zone.shards_per_capacity_unit = 160;
    let mut s = Sim::new(c, &[1, 1, 1]);
    s.report = |z, t| {
        let mut r = healthy(z, t);
        r.evals = 100;
        if z.as_str() == "b" {
            r.failed_evals = 50; // P_work = 1 → H = 0.2: drain criteria
        }
        r
    };
    s.run(60_000 + 120_000);
    assert_eq!(s.state("b"), ZoneState::Degraded);
    let w = s.b.zone_record(&zone("b")).unwrap().weight;
    assert!(w >= 0.5, "weight {w} below what capacity allows");
    assert!(
        s.last()
            .meta_alerts
            .iter()
            .any(|m| matches!(m, MetaAlert::CapacityShort { .. }))
    );
}

#[test]
fn equal_inputs_give_equal_decisions() {
    let run = || {
        let mut s = Sim::new(prod(), &[3, 2, 2]);
        s.run(40_000);
        s.stop_zone("c");
        s.report = slow_b;
        s.run(120_000);
        s.decisions
            .iter()
            .map(|(t, d)| {
                (
                    *t,
                    d.assign.clone(),
                    d.zone_records.clone(),
                    d.frozen.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn unowned_and_foreign_shards_are_placed() {
    let mut s = Sim::new(test_profile(), &[1, 1, 1]);
    s.run(2_000);
    // A shard owned by a worker the core never heard of (e.g. removed) moves.
    let ghost = tocsin_state::model::WorkerId::new("ghost").unwrap();
    s.assignments.get_mut(&ShardId::eval(3)).unwrap().owner = Some(ghost.clone());
    s.run(200);
    assert_ne!(s.assignments[&ShardId::eval(3)].owner, Some(ghost));
    assert_eq!(s.owned(), s.total_shards());
}

#[test]
fn revived_zone_ramps_back_slowly() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.run(30_000);
    let full = s.shards_in("a");
    s.stop_zone("a");
    s.run(6_000);
    s.start_zone("a");
    let revived = s.now;
    let mut seen = vec![0];
    while s.state("a") != ZoneState::Healthy {
        s.run(1_000);
        let n = s.shards_in("a");
        if n != *seen.last().unwrap() {
            seen.push(n);
        }
        assert!(s.now - revived < 400_000, "never recovered");
    }
    // Quarantine (120 s) + three 60 s ramp steps: no sooner than ~5 min.
    assert!(
        s.now - revived >= 290_000,
        "full weight after {} ms",
        s.now - revived
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "shards went back and forth: {seen:?}"
    );
    assert!(seen.len() >= 4, "no ramp: {seen:?}");
    s.run(5_000);
    assert!(
        s.shards_in("a") >= full * 9 / 10,
        "{} of {full}",
        s.shards_in("a")
    );
}

#[test]
fn one_dead_worker_loses_its_shards_at_once() {
    let mut s = Sim::new(prod(), &[3, 3, 3]);
    s.run(30_000);
    let victim = s.workers[0].id.clone();
    let owned_by = |s: &Sim| {
        s.assignments
            .values()
            .filter(|a| a.owner.as_ref() == Some(&victim))
            .count()
    };
    assert!(owned_by(&s) > 0);
    let died = s.now;
    s.stopped.insert(victim.clone());
    while owned_by(&s) > 0 {
        s.run(1_000);
        assert!(
            s.now - died <= 5_000,
            "still owns shards after {} ms",
            s.now - died
        );
    }
    assert_eq!(s.owned(), s.total_shards());
    assert_ne!(
        s.state("a"),
        ZoneState::Drained,
        "2 of 3 alive is not a dead zone"
    );
}

#[test]
fn steal_degrades_and_recovers_only_after_it_stays_low() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.report = |z, t| {
        let mut r = healthy(z, t);
        let stolen = z.as_str() == "b" && (60_000..300_000).contains(&t);
        r.steal = Some(if stolen { 0.30 } else { 0.01 });
        r
    };
    s.run(150_000);
    assert_eq!(s.state("b"), ZoneState::Degraded);
    s.run(150_000 + 60_000); // steal ends at 300 s; the 60 s window then drains
    assert_eq!(s.state("b"), ZoneState::Degraded, "recovered too soon");
    s.run(240_000);
    assert_eq!(s.state("b"), ZoneState::Healthy);
    assert_eq!(s.changes_of("b").len(), 2, "{:?}", s.changes_of("b"));
}

#[test]
fn second_zone_waits_while_the_first_recovers() {
    let mut s = Sim::new(prod(), &[2, 2, 2]);
    s.report = |z, t| {
        let mut r = healthy(z, t);
        let slow = (z.as_str() == "b" && t < 60_000) || (z.as_str() == "c" && t >= 150_000);
        if slow {
            r.probe_rtt_ms = Some(300.0);
        }
        r
    };
    s.run(60_000);
    assert_eq!(s.state("b"), ZoneState::Degraded);
    // b's signal is clean again but it must hold 0.85 for 120 s; meanwhile c turns slow while
    // b no longer looks bad (no freeze): c is blocked, not degraded.
    s.run(130_000);
    assert_eq!(s.state("b"), ZoneState::Degraded);
    assert!(s.last().frozen.is_none(), "{:?}", s.last().frozen);
    assert_eq!(s.state("c"), ZoneState::Healthy);
    assert!(
        s.last()
            .meta_alerts
            .iter()
            .any(|m| matches!(m, MetaAlert::Blocked { .. })),
        "{:?}",
        s.last().meta_alerts
    );
}
