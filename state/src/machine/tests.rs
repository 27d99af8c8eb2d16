use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::{AlertState, Notification, NotifyLog, WorkerInfo};

fn worker(id: &str, zone: &str) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId::new(id).unwrap(),
        zone: ZoneId::new(zone).unwrap(),
        addr: String::new(),
        capacity: 1,
        registered_at_ms: 0,
    }
}

fn group(name: &str) -> GroupKey {
    GroupKey {
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn alert(g: &GroupKey, fp: u64, state: AlertState) -> AlertInstance {
    AlertInstance {
        fingerprint: Fingerprint(fp),
        group: g.clone(),
        rule: "HighLatency".into(),
        labels: BTreeMap::from([("alertname".into(), "HighLatency".into())]),
        annotations: BTreeMap::new(),
        state,
        active_at_ms: 1000,
        fired_at_ms: None,
        resolved_at_ms: None,
        keep_firing_since_ms: None,
        value: 1.0,
    }
}

/// Gives `shard` to worker `id`.
fn assign(shard: ShardId, id: &str) -> Command {
    Command::Assign {
        shards: vec![(shard, Some(WorkerId::new(id).unwrap()))],
    }
}

fn setup() -> (Machine, ShardId, GroupKey) {
    let mut m = Machine::default();
    m.apply(1, &Command::RegisterWorker(worker("w1", "a")))
        .unwrap();
    m.apply(2, &Command::RegisterWorker(worker("w2", "b")))
        .unwrap();
    let g = group("api");
    let shard = m.layout.eval_shard(&g);
    m.apply(3, &assign(shard, "w1")).unwrap();
    (m, shard, g)
}

fn cycle(
    shard: ShardId,
    epoch: u64,
    g: &GroupKey,
    eval_ms: i64,
    updates: Vec<AlertUpdate>,
) -> Command {
    Command::Shard {
        shard,
        epoch: Epoch(epoch),
        op: ShardOp::EvalCycle {
            group: g.clone(),
            eval_ms,
            updates,
        },
    }
}

#[test]
fn epoch_is_the_log_index_of_the_assignment() {
    let (m, shard, _) = setup();
    assert_eq!(m.assignment(shard).unwrap().epoch, Epoch(3));
}

#[test]
fn stale_epoch_is_refused_and_changes_nothing() {
    let (mut m, shard, g) = setup();
    m.apply(
        4,
        &cycle(
            shard,
            3,
            &g,
            10,
            vec![AlertUpdate::Upsert(
                alert(&g, 1, AlertState::Pending).into(),
            )],
        ),
    )
    .unwrap();
    // Ownership moves to w2 at index 5: w1's epoch 3 is now stale.
    m.apply(5, &assign(shard, "w2")).unwrap();
    let before = m.digest();
    let stats_before = m.stats.clone();
    let err = m
        .apply(
            6,
            &cycle(
                shard,
                3,
                &g,
                20,
                vec![AlertUpdate::Upsert(alert(&g, 1, AlertState::Firing).into())],
            ),
        )
        .unwrap_err();
    assert_eq!(
        err,
        CommandError::StaleEpoch {
            shard,
            current: Epoch(5),
            got: Epoch(3)
        }
    );
    assert_eq!(m.stats.stale_epoch, stats_before.stale_epoch + 1);
    m.stats = stats_before;
    assert_eq!(m.digest(), before, "a stale command must not change state");
    // The new owner's epoch works, and a future epoch is refused too.
    m.apply(7, &cycle(shard, 5, &g, 20, vec![])).unwrap();
    assert!(matches!(
        m.apply(8, &cycle(shard, 9, &g, 30, vec![])),
        Err(CommandError::StaleEpoch { .. })
    ));
}

#[test]
fn unowned_shards_and_removed_workers_are_fenced() {
    let (mut m, shard, g) = setup();
    m.apply(
        4,
        &Command::RemoveWorker {
            id: WorkerId::new("w1").unwrap(),
        },
    )
    .unwrap();
    assert_eq!(
        m.assignment(shard).unwrap(),
        &Assignment {
            owner: None,
            epoch: Epoch(4)
        }
    );
    assert!(matches!(
        m.apply(5, &cycle(shard, 3, &g, 10, vec![])),
        Err(CommandError::StaleEpoch { .. })
    ));
    assert!(matches!(
        m.apply(6, &cycle(shard, 4, &g, 10, vec![])),
        Err(CommandError::StaleEpoch { .. })
    ));
}

#[test]
fn watermark_only_moves_forward() {
    let (mut m, shard, g) = setup();
    m.apply(4, &cycle(shard, 3, &g, 10, vec![])).unwrap();
    assert!(matches!(
        m.apply(5, &cycle(shard, 3, &g, 10, vec![])),
        Err(CommandError::Conflict(_))
    ));
    assert!(matches!(
        m.apply(6, &cycle(shard, 3, &g, 5, vec![])),
        Err(CommandError::Conflict(_))
    ));
}

#[test]
fn a_group_must_belong_to_the_shard() {
    let (mut m, shard, _) = setup();
    let other = (0..1000)
        .map(|i| group(&format!("g{i}")))
        .find(|g| m.layout.eval_shard(g) != shard)
        .unwrap();
    let err = m
        .apply(4, &cycle(shard, 3, &other, 10, vec![]))
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Invalid { ref field, .. } if field == "group"),
        "{err:?}"
    );
}

#[test]
fn invalid_assign_changes_nothing() {
    let (mut m, shard, _) = setup();
    let before = m.digest();
    let ghost = WorkerId::new("ghost").unwrap();
    let w1 = WorkerId::new("w1").unwrap();
    let bad = Command::Assign {
        shards: vec![(ShardId::eval(0), Some(w1)), (shard, Some(ghost))],
    };
    let err = m.apply(4, &bad).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    m.stats.refused -= 1;
    assert_eq!(m.digest(), before);
}

/// A machine with worker `w1` owning the notify shard (epoch 2) of one stream's key.
fn outbox_fixture() -> (Machine, NotificationKey, ShardId, WorkerId) {
    let mut m = Machine::default();
    m.apply(1, &Command::RegisterWorker(worker("w1", "a")))
        .unwrap();
    let key = NotificationKey {
        receiver: "pd".into(),
        group_key: "{}:{alertname=\"X\"}".into(),
    };
    let shard = m.layout.notify_shard(&key);
    let w1 = WorkerId::new("w1").unwrap();
    m.apply(
        2,
        &Command::Assign {
            shards: vec![(shard, Some(w1.clone()))],
        },
    )
    .unwrap();
    (m, key, shard, w1)
}

#[test]
fn outbox_orders_and_replaces_pending() {
    let (mut m, key, shard, w1) = outbox_fixture();
    let op = |op| Command::Shard {
        shard,
        epoch: Epoch(2),
        op: ShardOp::Outbox {
            key: key.clone(),
            op,
        },
    };
    let n = |resolved| Notification {
        resolved,
        alerts: vec![Fingerprint(1)],
        payload: vec![],
        due_ms: 5,
    };
    let enqueue = |resolved, units| OutboxOp::Enqueue {
        notification: n(resolved),
        log: NotifyLog {
            firing: if resolved {
                vec![]
            } else {
                vec![Fingerprint(1)]
            },
            resolved: vec![],
            at_ms: 5,
            escalated_ms: 5,
        },
        units,
    };
    let stream = |m: &Machine| {
        let QueryResult::Outbox(streams) = m.query(&Query::Outbox { shard: Some(shard) }) else {
            panic!()
        };
        assert_eq!(streams.len(), 1);
        streams[0].1.clone()
    };
    m.apply(3, &op(enqueue(false, 2))).unwrap();
    // A newer notification replaces the unclaimed one, on every unit.
    m.apply(4, &op(enqueue(true, 2))).unwrap();
    let s = stream(&m);
    assert_eq!(s.units.len(), 2);
    assert!(s.log.as_ref().unwrap().firing.is_empty());
    for slot in &s.units {
        let head = slot.head.as_ref().unwrap();
        assert!(head.notification.resolved);
        assert_eq!(head.seq, 4);
        assert!(slot.queued.is_none());
    }
    // Units are independent: unit 0 is claimed, unit 1 is not.
    m.apply(
        5,
        &op(OutboxOp::Claim {
            unit: 0,
            seq: 4,
            worker: w1.clone(),
            at_ms: 6,
        }),
    )
    .unwrap();
    // A newer one waits behind the claimed head of unit 0, replaces the pending head of unit 1.
    m.apply(6, &op(enqueue(false, 2))).unwrap();
    let s = stream(&m);
    assert_eq!(s.units[0].head.as_ref().unwrap().seq, 4);
    assert_eq!(s.units[0].queued.as_ref().unwrap().seq, 6);
    assert_eq!(s.units[1].head.as_ref().unwrap().seq, 6);
    assert!(s.units[1].queued.is_none());
    // Only the head can be delivered; unknown units are refused.
    for bad in [
        OutboxOp::Delivered {
            unit: 0,
            seq: 6,
            provider_id: None,
            at_ms: 7,
        },
        OutboxOp::Delivered {
            unit: 2,
            seq: 4,
            provider_id: None,
            at_ms: 7,
        },
    ] {
        let before = m.digest();
        assert!(m.apply(7, &op(bad)).is_err());
        m.stats.refused -= 1;
        assert_eq!(m.digest(), before);
    }
    m.apply(
        8,
        &op(OutboxOp::Delivered {
            unit: 0,
            seq: 4,
            provider_id: Some("inc-1".into()),
            at_ms: 7,
        }),
    )
    .unwrap();
    let s = stream(&m);
    assert_eq!(s.units[0].head.as_ref().unwrap().seq, 6);
    assert_eq!(
        s.units[0].head.as_ref().unwrap().state,
        DeliveryState::Pending
    );
    assert!(matches!(
        s.units[0].last.as_ref().unwrap().state,
        DeliveryState::Delivered { .. }
    ));
    // A retry of a claimed head that has a newer entry behind it is superseded by that entry.
    m.apply(
        9,
        &op(OutboxOp::Claim {
            unit: 1,
            seq: 6,
            worker: w1.clone(),
            at_ms: 9,
        }),
    )
    .unwrap();
    m.apply(10, &op(enqueue(true, 2))).unwrap();
    m.apply(
        11,
        &op(OutboxOp::Retry {
            unit: 1,
            seq: 6,
            next_attempt_ms: 100,
            reason: "503".into(),
        }),
    )
    .unwrap();
    let s = stream(&m);
    let head = s.units[1].head.as_ref().unwrap();
    assert_eq!(head.seq, 10);
    assert!(head.notification.resolved);
    m.validate().unwrap();

    // A single-unit enqueue (PagerDuty acknowledge) never replaces a head in flight and leaves
    // the stream's log alone.
    let log_before = stream(&m).log;
    let before = m.digest();
    assert!(matches!(
        m.apply(
            12,
            &op(OutboxOp::EnqueueUnit {
                unit: 1,
                notification: n(false)
            })
        ),
        Err(CommandError::Conflict(_))
    ));
    m.stats.refused -= 1;
    assert_eq!(m.digest(), before);
    m.apply(
        13,
        &op(OutboxOp::Delivered {
            unit: 1,
            seq: 10,
            provider_id: None,
            at_ms: 13,
        }),
    )
    .unwrap();
    m.apply(
        14,
        &op(OutboxOp::EnqueueUnit {
            unit: 1,
            notification: n(false),
        }),
    )
    .unwrap();
    let s = stream(&m);
    assert_eq!(s.units[1].head.as_ref().unwrap().seq, 14);
    assert_eq!(s.log, log_before);
    m.validate().unwrap();
}

#[test]
fn enqueue_claimed_claims_the_heads_it_becomes_and_waits_behind_claimed_ones() {
    let (mut m, key, shard, w1) = outbox_fixture();
    let cmd = |epoch, op| Command::Shard {
        shard,
        epoch: Epoch(epoch),
        op: ShardOp::Outbox {
            key: key.clone(),
            op,
        },
    };
    let claimed_news = |at_ms, resolved| OutboxOp::EnqueueClaimed {
        notification: Notification {
            resolved,
            alerts: vec![Fingerprint(1)],
            payload: vec![],
            due_ms: 5,
        },
        // Each flush is decided at its own time.
        log: NotifyLog {
            firing: vec![Fingerprint(1)],
            resolved: vec![],
            at_ms,
            escalated_ms: 5,
        },
        units: 2,
        worker: w1.clone(),
        at_ms,
    };
    let claimed = |at_ms| claimed_news(at_ms, false);
    let stream = |m: &Machine| {
        let QueryResult::Outbox(streams) = m.query(&Query::Outbox { shard: Some(shard) }) else {
            panic!()
        };
        streams[0].1.clone()
    };
    // Idle units: the new notification is every unit's head, claimed by w1 under epoch 2.
    m.apply(3, &cmd(2, claimed(6))).unwrap();
    let s = stream(&m);
    for slot in &s.units {
        let head = slot.head.as_ref().unwrap();
        assert_eq!(head.seq, 3);
        assert_eq!(head.attempts, 1);
        assert_eq!(
            head.state,
            DeliveryState::Claimed {
                worker: w1.clone(),
                epoch: Epoch(2),
                at_ms: 6
            }
        );
    }
    // Unit 0 delivered, unit 1 still in flight: the next one is claimed on unit 0 and waits
    // (pending, unclaimed) behind unit 1's claimed head.
    m.apply(
        4,
        &cmd(
            2,
            OutboxOp::Delivered {
                unit: 0,
                seq: 3,
                provider_id: None,
                at_ms: 7,
            },
        ),
    )
    .unwrap();
    m.apply(5, &cmd(2, claimed_news(8, true))).unwrap();
    let s = stream(&m);
    let head0 = s.units[0].head.as_ref().unwrap();
    assert_eq!((head0.seq, head0.attempts), (5, 1));
    assert!(matches!(
        head0.state,
        DeliveryState::Claimed { at_ms: 8, .. }
    ));
    assert_eq!(s.units[1].head.as_ref().unwrap().seq, 3);
    let queued = s.units[1].queued.as_ref().unwrap();
    assert_eq!((queued.seq, queued.attempts), (5, 0));
    assert_eq!(queued.state, DeliveryState::Pending);
    // Telling again what unit 1's notification in flight tells (the firing) drops the
    // resolve queued before it and queues nothing: it would be delivered twice.
    m.apply(6, &cmd(2, claimed(9))).unwrap();
    let s = stream(&m);
    assert_eq!(s.units[1].head.as_ref().unwrap().seq, 3);
    assert!(s.units[1].queued.is_none());
    assert_eq!(
        s.units[0].head.as_ref().unwrap().seq,
        5,
        "unit 0 keeps its own"
    );
    // Fenced like any shard write: a stale epoch changes nothing.
    let (before, stats_before) = (m.digest(), m.stats.clone());
    let err = m.apply(7, &cmd(1, claimed(10))).unwrap_err();
    assert!(matches!(err, CommandError::StaleEpoch { .. }), "{err}");
    m.stats = stats_before;
    assert_eq!(m.digest(), before);
    m.validate().unwrap();
}

/// A flush's enqueue proposed again after a lost answer, when the first copy committed after
/// all and its notification was already delivered, queues nothing and claims nothing: it
/// would be delivered again under a new idempotency key (chaos S3 saw one).
#[test]
fn a_replayed_enqueue_changes_nothing_even_after_its_delivery() {
    let (m, key, shard, w1) = outbox_fixture();
    let cmd = |op| Command::Shard {
        shard,
        epoch: Epoch(2),
        op: ShardOp::Outbox {
            key: key.clone(),
            op,
        },
    };
    let flush = |at_ms, claim: bool| {
        let notification = Notification {
            resolved: false,
            alerts: vec![Fingerprint(1)],
            payload: vec![],
            due_ms: at_ms,
        };
        let log = NotifyLog {
            firing: vec![Fingerprint(1)],
            resolved: vec![],
            at_ms,
            escalated_ms: 5,
        };
        if claim {
            OutboxOp::EnqueueClaimed {
                notification,
                log,
                units: 1,
                worker: w1.clone(),
                at_ms,
            }
        } else {
            OutboxOp::Enqueue {
                notification,
                log,
                units: 1,
            }
        }
    };
    let delivered = |seq| OutboxOp::Delivered {
        unit: 0,
        seq,
        provider_id: None,
        at_ms: 9,
    };
    // The outbox (the digest would count the replay among the applied commands).
    let outbox = |m: &Machine| format!("{:?}", m.query(&Query::Outbox { shard: Some(shard) }));
    for claim in [true, false] {
        let (mut m, base) = (m.clone(), if claim { 10 } else { 20 });
        m.apply(base, &cmd(flush(base as i64, claim))).unwrap();
        if !claim {
            m.apply(
                base + 1,
                &cmd(OutboxOp::Claim {
                    unit: 0,
                    seq: base,
                    worker: w1.clone(),
                    at_ms: 6,
                }),
            )
            .unwrap();
        }
        m.apply(base + 2, &cmd(delivered(base))).unwrap();
        let before = outbox(&m);
        // The same proposal, committed a second time.
        m.apply(base + 3, &cmd(flush(base as i64, claim))).unwrap();
        assert_eq!(
            outbox(&m),
            before,
            "claim={claim}: the replay changed the outbox"
        );
        // While its notification is still in flight, too.
        let mut m2 = m.clone();
        m2.apply(base + 4, &cmd(flush(base as i64 + 1, claim)))
            .unwrap();
        let before = outbox(&m2);
        m2.apply(base + 5, &cmd(flush(base as i64 + 1, claim)))
            .unwrap();
        assert_eq!(
            outbox(&m2),
            before,
            "claim={claim}: the replay changed the outbox"
        );
        // A later flush (a repeat: the same alerts, decided later) is queued as usual.
        m.apply(base + 6, &cmd(flush(base as i64 + 2, claim)))
            .unwrap();
        let QueryResult::Outbox(streams) = m.query(&Query::Outbox { shard: Some(shard) }) else {
            panic!()
        };
        let head = streams[0].1.units[0]
            .head
            .as_ref()
            .expect("the repeat is queued");
        assert_eq!(head.seq, base + 6);
        m.validate().unwrap();
    }
    m.validate().unwrap();
}

#[test]
fn rules_version_is_an_optimistic_lock() {
    let mut m = Machine::default();
    let g = crate::model::RuleGroupRecord {
        name: "g".into(),
        interval_ms: 1000,
        source: "name: g".into(),
    };
    m.apply(
        5,
        &Command::PutRules {
            namespace: "ns".into(),
            groups: vec![g.clone()],
            expected_version: Some(0),
        },
    )
    .unwrap();
    let QueryResult::Rules(r) = m.query(&Query::Rules) else {
        panic!()
    };
    assert_eq!(r.version, 5);
    let err = m.apply(
        6,
        &Command::PutRules {
            namespace: "ns".into(),
            groups: vec![],
            expected_version: Some(0),
        },
    );
    assert!(matches!(err, Err(CommandError::Conflict(_))));
    let dup = Command::PutRules {
        namespace: "ns".into(),
        groups: vec![g.clone(), g],
        expected_version: None,
    };
    assert!(
        m.apply(7, &dup)
            .unwrap_err()
            .to_string()
            .contains("duplicate group")
    );
}

// --- property test: the fencing invariant under arbitrary interleavings ---

#[derive(Debug, Clone)]
enum Step {
    Assign {
        shard: u16,
        worker: Option<u8>,
    },
    Cycle {
        shard: u16,
        epoch_back: u8,
        group: u8,
    },
    Remove {
        worker: u8,
    },
    Register {
        worker: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u16..4, proptest::option::of(0u8..3))
            .prop_map(|(shard, worker)| Step::Assign { shard, worker }),
        (0u16..4, 0u8..3, 0u8..20).prop_map(|(shard, epoch_back, group)| Step::Cycle {
            shard,
            epoch_back,
            group
        }),
        (0u8..3).prop_map(|worker| Step::Remove { worker }),
        (0u8..3).prop_map(|worker| Step::Register { worker }),
    ]
}

proptest! {
    #[test]
    fn fencing_holds_for_any_history(steps in proptest::collection::vec(step(), 1..80)) {
        let mut m = Machine::default();
        m.apply(1, &Command::SetLayout(ShardLayout { eval_shards: 4, notify_shards: 1 })).unwrap();
        // Epochs each shard has ever had, to pick stale ones.
        let mut history: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
        for (i, s) in steps.iter().enumerate() {
            let index = i as u64 + 2;
            let before = m.clone();
            let cmd = match s {
                Step::Register { worker: w } => Command::RegisterWorker(worker(&format!("w{w}"), "a")),
                Step::Remove { worker } => Command::RemoveWorker { id: WorkerId::new(format!("w{worker}")).unwrap() },
                Step::Assign { shard, worker } => Command::Assign {
                    shards: vec![(ShardId::eval(*shard), worker.map(|w| WorkerId::new(format!("w{w}")).unwrap()))],
                },
                Step::Cycle { shard, epoch_back, group: gi } => {
                    let eps = history.get(shard).cloned().unwrap_or_default();
                    let epoch = eps.iter().rev().nth(*epoch_back as usize).copied().unwrap_or(0);
                    let g = (0..64).map(|k| group(&format!("g{gi}-{k}"))).find(|g| m.layout.eval_shard(g).index == *shard).unwrap();
                    cycle(ShardId::eval(*shard), epoch, &g, index as i64, vec![])
                }
            };
            let result = m.apply(index, &cmd);
            prop_assert!(m.validate().is_ok());
            match (&cmd, &result) {
                (Command::Shard { shard, epoch, .. }, Ok(_)) => {
                    let a = before.assignment(*shard).unwrap();
                    prop_assert_eq!(a.epoch, *epoch, "applied with a stale epoch");
                    prop_assert!(a.owner.is_some());
                }
                (_, Err(_)) => {
                    let mut after = m.clone();
                    after.stats = before.stats.clone();
                    prop_assert_eq!(after.digest(), before.digest(), "a refused command changed state");
                }
                _ => {}
            }
            for (shard, a) in &m.assignments {
                let h = history.entry(shard.index).or_default();
                if h.last() != Some(&a.epoch.0) {
                    prop_assert!(h.last().is_none_or(|l| *l < a.epoch.0), "epoch went backwards");
                    h.push(a.epoch.0);
                }
            }
        }
    }
}

#[test]
fn meta_alerts_fire_resolve_and_keep_their_start() {
    let mut m = Machine::default();
    let labels = BTreeMap::from([("receiver".to_string(), "pager".to_string())]);
    let set = |firing, at_ms| Command::SetMetaAlert {
        name: "TocsinNotificationFailed".into(),
        labels: labels.clone(),
        annotations: BTreeMap::new(),
        firing,
        at_ms,
    };
    // Resolving what never fired changes nothing.
    let before = m.digest();
    m.apply(1, &set(false, 10)).unwrap();
    m.stats.applied -= 1;
    assert_eq!(m.digest(), before);
    m.apply(2, &set(true, 20)).unwrap();
    m.apply(3, &set(true, 30)).unwrap();
    let QueryResult::Alerts(a) = m.query(&Query::Alerts { shard: None }) else {
        panic!()
    };
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].state, AlertState::Firing);
    assert_eq!(a[0].active_at_ms, 20, "a repeated raise keeps the start");
    assert_eq!(a[0].labels["alertname"], "TocsinNotificationFailed");
    assert_eq!(a[0].group.namespace, crate::model::META_NAMESPACE);
    m.apply(4, &set(false, 40)).unwrap();
    let QueryResult::Alerts(a) = m.query(&Query::Alerts { shard: None }) else {
        panic!()
    };
    assert_eq!(a[0].state, AlertState::Resolved);
    assert_eq!(a[0].resolved_at_ms, Some(40));
    // The reserved namespace cannot be used by rules.
    let err = m
        .apply(
            5,
            &Command::PutRules {
                namespace: crate::model::META_NAMESPACE.into(),
                groups: vec![],
                expected_version: None,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    m.validate().unwrap();
}

#[test]
fn the_alert_index_encodes_as_the_flat_map_it_replaced() {
    let (mut m, shard, g) = setup();
    let other = group("db");
    let other_shard = m.layout.eval_shard(&other);
    m.apply(4, &assign(other_shard, "w2")).unwrap();
    let epoch_of = |m: &Machine, s: ShardId| m.assignments[&s].epoch.0;
    let mut index = 5;
    for (s, grp) in [(shard, &g), (other_shard, &other)] {
        let updates = [3, 1, 2]
            .map(|fp| AlertUpdate::Upsert(alert(grp, fp, AlertState::Firing).into()))
            .to_vec();
        m.apply(index, &cycle(s, epoch_of(&m, s), grp, 10, updates))
            .unwrap();
        index += 1;
    }
    m.apply(
        index,
        &cycle(
            shard,
            epoch_of(&m, shard),
            &g,
            20,
            vec![AlertUpdate::Remove(Fingerprint(2))],
        ),
    )
    .unwrap();

    // The layout before: shard → (group, fingerprint) → instance.
    let mut flat: BTreeMap<u16, BTreeMap<(GroupKey, Fingerprint), AlertInstance>> = BTreeMap::new();
    for a in m.alerts() {
        flat.entry(m.layout.eval_shard(&a.group).index)
            .or_default()
            .insert((a.group.clone(), a.fingerprint), a.clone());
    }
    assert_eq!(flat.values().map(BTreeMap::len).sum::<usize>(), 5);
    struct Nested<'a>(&'a BTreeMap<u16, ShardAlerts>);
    impl Serialize for Nested<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            flat_alerts::serialize(self.0, s)
        }
    }
    let bytes = tocsin_proto::codec::encode(&Nested(&m.alerts));
    assert_eq!(bytes, tocsin_proto::codec::encode(&flat));

    // And a whole machine round-trips through its encoding.
    let encoded = tocsin_proto::codec::encode(&m);
    let decoded: Machine = tocsin_proto::codec::decode_state("machine", &encoded).unwrap();
    assert_eq!(decoded, m);
    assert_eq!(decoded.digest(), m.digest());
}

#[test]
fn a_cycle_refused_by_its_watermark_leaves_no_watermark_behind() {
    let (mut m, shard, g) = setup();
    let before = m.clone();
    assert!(matches!(
        m.apply(4, &cycle(shard, 3, &g, 0, vec![])),
        Err(CommandError::Conflict(_))
    ));
    m.stats = before.stats.clone();
    assert_eq!(m, before);
}
