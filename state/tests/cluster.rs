//! In-process 3-node clusters (one node per zone) on loopback with real storage on real disks
//! and a fault-injecting network: election, replication, failover, partition, catch-up by
//! snapshot, fencing on every replica, full restart.

use std::time::Duration;

use tocsin_proto::ServiceError;
use tocsin_state::batcher::BatchConfig;
use tocsin_state::model::{
    Command, CommandError, Epoch, GroupKey, Query, QueryResult, ShardLayout, ShardOp, WorkerId,
    WorkerInfo, ZoneId,
};
use tocsin_state::raft::timing::RaftTiming;
use tocsin_state::testing::{TestCluster, wait_until};

const ALL: [u64; 3] = [1, 2, 3];
const LONG: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
}

fn register(id: &str, zone: &str) -> Command {
    Command::RegisterWorker(WorkerInfo {
        id: WorkerId::new(id).unwrap(),
        zone: ZoneId::new(zone).unwrap(),
        addr: String::new(),
        capacity: 1,
        registered_at_ms: 0,
    })
}

async fn workers(c: &TestCluster, id: u64) -> Vec<String> {
    match c.node(id).reader.query(&Query::Workers).1 {
        QueryResult::Workers(ws) => ws.into_iter().map(|w| w.id.to_string()).collect(),
        other => panic!("{other:?}"),
    }
}

async fn start(timing: RaftTiming) -> (tempfile::TempDir, TestCluster) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(dir.path().to_path_buf(), 3, timing, BatchConfig::default()).await;
    (dir, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_replicates_and_fences_on_every_replica() {
    let (_dir, c) = start(RaftTiming::test()).await;
    c.wait_leader(&ALL, LONG).await;
    let client = c.client();

    let layout = ShardLayout {
        eval_shards: 8,
        notify_shards: 2,
    };
    let (_, r) = client
        .propose(vec![
            Command::SetLayout(layout),
            register("w1", "z1"),
            register("w2", "z2"),
        ])
        .await
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let group = GroupKey {
        namespace: "ns".into(),
        name: "api".into(),
    };
    let shard = layout.eval_shard(&group);
    let w = |s: &str| Some(WorkerId::new(s).unwrap());
    let (old_epoch, r) = client
        .propose(vec![Command::Assign {
            shards: vec![(shard, w("w1"))],
        }])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    let (new_epoch, _) = client
        .propose(vec![Command::Assign {
            shards: vec![(shard, w("w2"))],
        }])
        .await
        .unwrap();
    assert!(
        new_epoch > old_epoch,
        "the epoch is the log index of the assignment"
    );

    let cycle = |epoch: u64, eval_ms: i64| Command::Shard {
        shard,
        epoch: Epoch(epoch),
        op: ShardOp::EvalCycle {
            group: group.clone(),
            eval_ms,
            updates: vec![],
        },
    };
    // The stale owner and the current owner propose in the same entry: one is refused, the
    // other applied.
    let (index, r) = client
        .propose(vec![cycle(old_epoch, 10), cycle(new_epoch, 20)])
        .await
        .unwrap();
    assert_eq!(
        r[0],
        Err(CommandError::StaleEpoch {
            shard,
            current: Epoch(new_epoch),
            got: Epoch(old_epoch)
        })
    );
    assert!(r[1].is_ok());

    c.wait_applied(&ALL, index, LONG).await;
    let digests: Vec<u64> = ALL.iter().map(|id| c.digest(*id)).collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "replicas diverged: {digests:?}"
    );
    for id in ALL {
        let QueryResult::Stats(s) = c.node(id).reader.query(&Query::Stats).1 else {
            panic!()
        };
        assert_eq!(
            s.stale_epoch, 1,
            "node {id} refused the stale command exactly once"
        );
    }

    // The independent audit over what node 3 applied agrees: the stale command never applied.
    let mut audit = tocsin_state::audit::FenceAudit::new();
    let mut stream = Box::pin(c.client_of(3).watch(0).await.unwrap());
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        let (i, changes) = item.unwrap();
        audit.observe(i, &changes);
        if i >= index {
            break;
        }
    }
    let report = audit.report();
    assert!(report.clean(), "{report:?}");
    assert_eq!(
        report.shard_commands, 1,
        "exactly the current owner's command was applied: {report:?}"
    );

    // A linearizable read through any seed reflects the write.
    let (applied, QueryResult::Assignments(a)) =
        client.read(&Query::Assignments, true).await.unwrap()
    else {
        panic!()
    };
    assert!(applied >= index);
    assert_eq!(
        a.iter().find(|(s, _)| *s == shard).unwrap().1.epoch,
        Epoch(new_epoch)
    );

    // Garbage on the wire is refused with InvalidArgument and the node keeps serving.
    let mut raw = tocsin_proto::pb::store::store_client::StoreClient::connect(format!(
        "http://{}",
        c.addr(1)
    ))
    .await
    .unwrap();
    let status = raw
        .propose(tocsin_proto::pb::store::ProposeRequest {
            commands: vec![1, 0xff, 0xfe, 0x07],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("commands"), "{status:?}");
    let mut raft =
        tocsin_proto::pb::raft::raft_client::RaftClient::connect(format!("http://{}", c.addr(2)))
            .await
            .unwrap();
    let status = raft
        .vote(tocsin_proto::pb::raft::RaftRequest {
            data: vec![9, 9, 9],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    client
        .propose(vec![register("w3", "z3")])
        .await
        .expect("still serving after garbage");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_loses_no_committed_write() {
    let (_dir, mut c) = start(RaftTiming::test()).await;
    let leader = c.wait_leader(&ALL, LONG).await;
    let client = c.client();
    for i in 0..50 {
        client
            .propose(vec![register(&format!("before-{i}"), "z1")])
            .await
            .unwrap();
    }
    c.kill(leader).await;
    let rest: Vec<u64> = ALL.into_iter().filter(|id| *id != leader).collect();
    let started = tokio::time::Instant::now();
    let new_leader = c.wait_leader(&rest, LONG).await;
    let took = started.elapsed();
    // Election timeout in the test profile is 300-600 ms; allow generous slack for a loaded CI.
    assert!(took < Duration::from_secs(5), "new leader took {took:?}");
    assert_ne!(new_leader, leader);
    let mut last = 0;
    for i in 0..50 {
        last = client
            .propose(vec![register(&format!("after-{i}"), "z2")])
            .await
            .unwrap()
            .0;
    }
    c.restart(leader).await;
    c.wait_applied(&ALL, last, LONG).await;
    for id in ALL {
        let ws = workers(&c, id).await;
        assert_eq!(ws.len(), 100, "node {id} has every committed write");
    }
    assert_eq!(c.digest(1), c.digest(2));
    assert_eq!(c.digest(2), c.digest(3));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_cannot_commit_and_catches_up_by_snapshot() {
    let timing = RaftTiming {
        snapshot_every_entries: 50,
        ..RaftTiming::test()
    };
    let (_dir, c) = start(timing).await;
    let old = c.wait_leader(&ALL, LONG).await;
    let client = c.client();
    client.propose(vec![register("w0", "z1")]).await.unwrap();
    let rest: Vec<u64> = ALL.into_iter().filter(|id| *id != old).collect();
    let old_last_log = c
        .node(old)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    c.faults.isolate(old, rest.clone());
    // The isolated (minority) leader cannot commit.
    let minority = c.client_of(old).with_deadline(Duration::from_secs(2));
    let err = minority
        .propose(vec![register("minority-write", "z1")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Timeout(_)
                | ServiceError::NotLeader { .. }
                | ServiceError::Unavailable(_)
        ),
        "{err:?}"
    );

    // The majority elects a leader and commits, far past what the old leader has.
    let new = c.wait_leader(&rest, LONG).await;
    assert_ne!(new, old);
    let majority = c.client_of(new);
    let mut last = 0;
    for i in 0..200 {
        last = majority
            .propose(vec![register(&format!("m-{i}"), "z2")])
            .await
            .unwrap()
            .0;
    }
    wait_until(
        LONG,
        "the new leader purged the log the old leader would need",
        || {
            c.node(new)
                .raft
                .metrics()
                .borrow()
                .purged
                .is_some_and(|p| p.index > old_last_log + 1)
        },
    )
    .await;

    c.faults.heal();
    c.wait_applied(&ALL, last, LONG).await;
    let snap = c.node(old).raft.metrics().borrow().snapshot;
    assert!(
        snap.is_some_and(|s| s.index > old_last_log),
        "old leader caught up by snapshot: {snap:?}"
    );
    let ws = workers(&c, old).await;
    assert_eq!(ws.len(), 201);
    assert!(
        !ws.iter().any(|w| w == "minority-write"),
        "the minority's write was never committed"
    );
    wait_until(LONG, "digests converge", || {
        c.digest(1) == c.digest(2) && c.digest(2) == c.digest(3)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_at_once_keeps_committed_state() {
    let timing = RaftTiming {
        snapshot_every_entries: 30,
        ..RaftTiming::test()
    };
    let (_dir, mut c) = start(timing).await;
    c.wait_leader(&ALL, LONG).await;
    let client = c.client();
    let mut last = 0;
    for i in 0..80 {
        last = client
            .propose(vec![register(&format!("w-{i}"), "z1")])
            .await
            .unwrap()
            .0;
    }
    c.wait_applied(&ALL, last, LONG).await;
    let before = c.digest(1);
    for id in ALL {
        c.kill(id).await;
    }
    for id in ALL {
        c.restart(id).await;
    }
    c.wait_leader(&ALL, LONG).await;
    c.wait_applied(&ALL, last, LONG).await;
    for id in ALL {
        assert_eq!(workers(&c, id).await.len(), 80, "node {id}");
        assert_eq!(c.digest(id), before, "node {id} state after restart");
    }
    // And it still takes writes.
    c.client()
        .propose(vec![register("after-restart", "z3")])
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_cluster_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(
        dir.path().to_path_buf(),
        1,
        RaftTiming::test(),
        BatchConfig::default(),
    )
    .await;
    c.wait_leader(&[1], LONG).await;
    c.shutdown().await;
    // Same data dir, different node id.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let config = tocsin_state::node::StoreConfig {
        id: 7,
        data_dir: dir.path().join("n1"),
        peers: [(
            7,
            tocsin_state::model::NodeInfo {
                zone: "z1".into(),
                grpc: addr,
                http: String::new(),
            },
        )]
        .into(),
        cluster_name: "test".into(),
        timing: RaftTiming::test(),
        batch: BatchConfig::default(),
        observer: None,
    };
    let tracker = tokio_util::task::TaskTracker::new();
    let err = tocsin_state::node::StoreNode::start(
        config,
        l,
        Default::default(),
        Default::default(),
        Default::default(),
        &tracker,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("belongs to node 1"), "{err}");
}

/// A state larger than one message (64 MiB): a node cut off while it grew catches up by
/// installing the snapshot, every node restarts from its own snapshot file, and a client
/// reads the whole machine (the notify loop's replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_larger_than_one_message_replicates_restarts_and_reads() {
    use tocsin_proto::codec::MAX_ENCODED_BYTES;
    use tocsin_state::model::RuleGroupRecord;
    // Production timers: openraft 0.9 gives an AppendEntries one heartbeat interval, and a
    // debug build needs more than the test profile's 50 ms for 256 KiB entries.
    let timing = RaftTiming {
        snapshot_every_entries: 100,
        ..RaftTiming::production()
    };
    let (_dir, mut c) = start(timing).await;
    let leader = c.wait_leader(&ALL, LONG).await;
    let behind = ALL.into_iter().find(|id| *id != leader).unwrap();
    let rest: Vec<u64> = ALL.into_iter().filter(|id| *id != behind).collect();
    let behind_last_log = c
        .node(behind)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    c.faults.isolate(behind, rest.clone());
    let new = c.wait_leader(&rest, LONG).await;
    let client = c.client_of(new);
    // 288 namespaces of 256 KiB each: the state passes 64 MiB.
    let source = "x".repeat(256 * 1024);
    let mut last = 0;
    for i in 0..288 {
        last = client
            .propose(vec![Command::PutRules {
                namespace: format!("ns-{i:03}"),
                groups: vec![RuleGroupRecord {
                    name: "g".into(),
                    interval_ms: 60_000,
                    source: source.clone(),
                }],
                expected_version: None,
            }])
            .await
            .unwrap()
            .0;
    }
    c.wait_applied(&rest, last, LONG).await;
    wait_until(
        LONG,
        "the leader purged the log the cut-off node needs",
        || {
            c.node(new)
                .raft
                .metrics()
                .borrow()
                .purged
                .is_some_and(|p| p.index > behind_last_log + 1)
        },
    )
    .await;
    c.faults.heal();
    c.wait_applied(&ALL, last, Duration::from_secs(60)).await;
    let snap = c.node(behind).raft.metrics().borrow().snapshot;
    assert!(
        snap.is_some_and(|s| s.index > behind_last_log + 1),
        "the node that was behind installed a snapshot: {snap:?}"
    );
    let (index, result) = c.client().read(&Query::Replica, true).await.unwrap();
    assert!(index >= last);
    let QueryResult::Replica(machine) = result else {
        panic!("not a replica");
    };
    let size = tocsin_proto::codec::encode(&*machine).len();
    assert!(size > MAX_ENCODED_BYTES, "the state is {size} bytes");
    let QueryResult::Rules(rules) = machine.query(&Query::Rules) else {
        panic!("no rules");
    };
    assert_eq!(rules.namespaces.len(), 288);
    let before = c.digest(leader);
    for id in ALL {
        c.kill(id).await;
    }
    for id in ALL {
        c.restart(id).await;
    }
    c.wait_leader(&ALL, LONG).await;
    c.wait_applied(&ALL, last, Duration::from_secs(60)).await;
    for id in ALL {
        assert_eq!(
            c.digest(id),
            before,
            "node {id} after restarting from its snapshot"
        );
    }
    c.shutdown().await;
}

/// Concurrent proposals through one client share `ProposeMany` calls, and each still gets
/// its own results: half of them carry a stale epoch and must see exactly their refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_calls_and_keep_their_own_results() {
    use std::sync::atomic::Ordering::Relaxed;
    let (_dir, c) = start(RaftTiming::test()).await;
    c.wait_leader(&ALL, LONG).await;
    let client = c.client();
    let layout = ShardLayout {
        eval_shards: 1,
        notify_shards: 1,
    };
    client
        .propose(vec![Command::SetLayout(layout), register("w1", "z1")])
        .await
        .unwrap();
    let shard = tocsin_state::model::ShardId::eval(0);
    let assign = || Command::Assign {
        shards: vec![(shard, Some(WorkerId::new("w1").unwrap()))],
    };
    let (old_epoch, _) = client.propose(vec![assign()]).await.unwrap();
    let (epoch, _) = client.propose(vec![assign()]).await.unwrap();
    let before = client.propose_stats().calls.load(Relaxed);

    const N: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        let e = if i % 2 == 0 { epoch } else { old_epoch };
        tasks.spawn(async move {
            let cmd = Command::Shard {
                shard,
                epoch: Epoch(e),
                op: ShardOp::EvalCycle {
                    group: GroupKey {
                        namespace: "ns".into(),
                        name: format!("g{i}"),
                    },
                    eval_ms: 1000,
                    updates: vec![],
                },
            };
            (i, client.propose(vec![cmd]).await.unwrap())
        });
    }
    let mut last = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, (index, results)) = done.unwrap();
        last = last.max(index);
        assert_eq!(results.len(), 1);
        if i % 2 == 0 {
            assert!(results[0].is_ok(), "proposal {i}: {:?}", results[0]);
        } else {
            assert_eq!(
                results[0],
                Err(CommandError::StaleEpoch {
                    shard,
                    current: Epoch(epoch),
                    got: Epoch(old_epoch)
                }),
                "proposal {i}"
            );
        }
    }
    let calls = client.propose_stats().calls.load(Relaxed) - before;
    assert!(
        calls <= (N / 4) as u64,
        "{N} concurrent proposals took {calls} calls: they were not coalesced"
    );
    // Every replica holds the valid half's watermarks, none of the stale half's.
    c.wait_applied(&ALL, last, LONG).await;
    for id in ALL {
        match c
            .node(id)
            .reader
            .query(&Query::Watermarks { shard: None })
            .1
        {
            QueryResult::Watermarks(w) => assert_eq!(w.len(), N / 2, "node {id}: {w:?}"),
            other => panic!("{other:?}"),
        }
    }
}

/// `ProposeMany` with one undecodable proposal is refused whole, naming the proposal, and
/// proposes nothing; on a follower it fails as a whole with the leader's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proposal_fails_its_whole_call_and_changes_nothing() {
    use tocsin_proto::pb::store::ProposeManyRequest;
    use tocsin_proto::pb::store::store_client::StoreClient as Raw;
    let (_dir, c) = start(RaftTiming::test()).await;
    let leader = c.wait_leader(&ALL, LONG).await;
    let follower = ALL.into_iter().find(|id| *id != leader).unwrap();
    let good = tocsin_proto::codec::encode(&vec![register("w-good", "z1")]);
    let mut raw = Raw::connect(format!("http://{}", c.addr(leader)))
        .await
        .unwrap();
    let err = raw
        .propose_many(ProposeManyRequest {
            proposals: vec![good.clone(), b"\x01garbage".to_vec()],
        })
        .await
        .unwrap_err();
    match ServiceError::from_status(&err) {
        ServiceError::InvalidArgument { field, .. } => assert_eq!(field, "proposals[1]"),
        other => panic!("{other:?}"),
    }
    let err = raw
        .propose_many(ProposeManyRequest { proposals: vec![] })
        .await
        .unwrap_err();
    assert!(
        matches!(ServiceError::from_status(&err), ServiceError::InvalidArgument { ref field, .. } if field == "proposals"),
        "{err:?}"
    );
    // A later write through the same leader commits; the refused call's good half never did.
    let (index, _) = c
        .client()
        .propose(vec![register("w-later", "z1")])
        .await
        .unwrap();
    c.wait_applied(&[leader], index, LONG).await;
    assert_eq!(workers(&c, leader).await, vec!["w-later".to_string()]);

    let mut raw = Raw::connect(format!("http://{}", c.addr(follower)))
        .await
        .unwrap();
    let err = raw
        .propose_many(ProposeManyRequest {
            proposals: vec![good.clone(), good],
        })
        .await
        .unwrap_err();
    match ServiceError::from_status(&err) {
        ServiceError::NotLeader { leader: Some(hint) } => assert_eq!(hint.grpc, c.addr(leader)),
        other => panic!("{other:?}"),
    }
}

/// Every stage of the write path reports its duration: a proposal's call, queueing and Raft
/// write and the AppendEntries calls on the leader, log flush, fsync and apply on every
/// replica (what `/metrics` and `tocsin bench store` break a commit's latency into).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_stage_is_observed_where_it_happens() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use tocsin_state::probe::Stage;
    init_tracing();
    let seen: Arc<Mutex<BTreeSet<(Stage, u64)>>> = Arc::default();
    let observers = {
        let seen = seen.clone();
        Arc::new(move |node: u64| {
            let seen = seen.clone();
            Arc::new(move |stage: Stage, _d: Duration| {
                seen.lock().unwrap().insert((stage, node));
            }) as tocsin_state::probe::StageObserver
        }) as tocsin_state::testing::NodeObservers
    };
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start_observed(
        dir.path().to_path_buf(),
        3,
        RaftTiming::test(),
        BatchConfig::default(),
        Some(observers.clone()),
    )
    .await;
    let leader = c.wait_leader(&ALL, LONG).await;
    // The client reports its own stages as "node 0".
    let client = c
        .client()
        .with_probe(tocsin_state::probe::Probe::new(Some(observers(0))));
    let (index, _) = client.propose(vec![register("w1", "z1")]).await.unwrap();
    c.wait_applied(&ALL, index, LONG).await;
    let expected: BTreeSet<(Stage, u64)> = [Stage::Call, Stage::BatchQueue, Stage::RaftWrite]
        .into_iter()
        .map(|s| (s, leader))
        .chain([(Stage::AppendEntries, leader)])
        .chain(
            ALL.iter()
                .flat_map(|&n| [Stage::LogFlush, Stage::LogFsync, Stage::Apply].map(|s| (s, n))),
        )
        .chain(Stage::CLIENT.map(|s| (s, 0)))
        .collect();
    wait_until(LONG, "every stage observed", || {
        seen.lock().unwrap().is_superset(&expected)
    })
    .await;
    assert_eq!(
        expected.iter().map(|&(s, _)| s).collect::<BTreeSet<_>>(),
        Stage::ALL
            .into_iter()
            .chain(Stage::CLIENT)
            .collect::<BTreeSet<_>>(),
        "the expectation covers every stage"
    );
    c.shutdown().await;
}
