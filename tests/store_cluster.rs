//! Three real `tocsin node` processes on loopback (zones a, b, c): write through the client,
//! SIGKILL the leader, keep writing, restart it, check every committed write on every node;
//! then restart all three at once and check again. Plus config errors before binding.

mod support;

use std::time::Duration;

use support::{NodeProc, free_port, three_nodes, wait_for};
use tocsin_state::client::StoreClient;
use tocsin_state::model::{Command, Query, QueryResult, WorkerId, WorkerInfo, ZoneId};

const LONG: Duration = Duration::from_secs(30);

fn register(id: &str) -> Command {
    Command::RegisterWorker(WorkerInfo {
        id: WorkerId::new(id).unwrap(),
        zone: ZoneId::new("a").unwrap(),
        addr: String::new(),
        capacity: 1,
        registered_at_ms: 0,
    })
}

async fn leader_of(nodes: &[NodeProc]) -> u64 {
    let running: Vec<&NodeProc> = nodes.iter().filter(|n| n.child.is_some()).collect();
    wait_for(LONG, "a leader known to every running node", || async {
        let mut seen = None;
        for n in &running {
            let c = StoreClient::new(vec![n.grpc.clone()])
                .unwrap()
                .with_deadline(Duration::from_secs(1));
            let leader = c.cluster_info_of(&n.grpc).await.ok()?.leader?;
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen
    })
    .await
}

/// Worker ids on node `n`, read from its local state once it has applied `index`.
async fn workers_on(n: &NodeProc, index: u64) -> Vec<String> {
    let c = StoreClient::new(vec![n.grpc.clone()])
        .unwrap()
        .with_deadline(Duration::from_secs(2));
    wait_for(
        LONG,
        &format!("node {} to apply index {index}", n.id),
        || async {
            match c.read(&Query::Workers, false).await.ok()? {
                (applied, QueryResult::Workers(ws)) if applied >= index => {
                    Some(ws.into_iter().map(|w| w.id.to_string()).collect())
                }
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_leader_kill_and_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    for n in &mut nodes {
        n.start();
    }
    let client = StoreClient::new(nodes.iter().map(|n| n.grpc.clone()).collect()).unwrap();
    let leader = leader_of(&nodes).await;

    let mut expected = Vec::new();
    for i in 0..40 {
        let id = format!("before-{i}");
        client
            .propose(vec![register(&id)])
            .await
            .unwrap_or_else(|e| panic!("write {id}: {e}"));
        expected.push(id);
    }

    // SIGKILL the leader's process; writes continue through the survivors.
    let li = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[li].kill().await;
    let mut last = 0;
    for i in 0..40 {
        let id = format!("after-kill-{i}");
        last = client
            .propose(vec![register(&id)])
            .await
            .unwrap_or_else(|e| panic!("write {id}: {e}"))
            .0;
        expected.push(id);
    }
    let new_leader = leader_of(&nodes).await;
    assert_ne!(new_leader, leader, "a survivor leads");

    nodes[li].start();
    expected.sort();
    for n in &nodes {
        let mut got = workers_on(n, last).await;
        got.sort();
        assert_eq!(
            got,
            expected,
            "node {} has every committed write\n{}",
            n.id,
            n.log()
        );
    }

    // Restart all three at once (SIGTERM: clean exit), then check again.
    for n in &mut nodes {
        let status = n.terminate().await;
        assert!(
            status.success(),
            "node {} exits 0 on SIGTERM: {status:?}\n{}",
            n.id,
            n.log()
        );
    }
    for n in &mut nodes {
        n.start();
    }
    leader_of(&nodes).await;
    let last = client
        .propose(vec![register("after-restart")])
        .await
        .expect("writes after a full restart")
        .0;
    expected.push("after-restart".into());
    expected.sort();
    for n in &nodes {
        let mut got = workers_on(n, last).await;
        got.sort();
        assert_eq!(
            got,
            expected,
            "node {} after full restart\n{}",
            n.id,
            n.log()
        );
    }
    // And the operator view agrees.
    let out = std::process::Command::new(support::bin())
        .args(["status", "--server", &format!("http://{}", nodes[0].http)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("members:") && text.contains("leader"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_fails_before_binding_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(support::bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = vec!["node".into(), "--id=1".into(), "--zone=a".into()];
        v.push(format!("--data-dir={}", dir.path().join("n").display()));
        v.push(format!("--http={http}"));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, err) = run(base(&["--listen=not-an-address"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid listen"), "{err}");

    let (code, err) = run(base(&[
        "--peer=1=a@127.0.0.1:1",
        "--peer=2=a@127.0.0.1:2",
        "--peer=3=c@127.0.0.1:3",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("zone a holds voters"), "{err}");

    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "id = 1\nzone = \"a\"\nheartbeat = 5\n").unwrap();
    let (code, err) = run(vec!["node".into(), format!("--config={}", cfg.display())]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("heartbeat"), "names the unknown field: {err}");
    // Nothing was bound on the HTTP port by any of these.
    std::net::TcpListener::bind(&http).expect("the http port is still free");

    // A data dir that is not writable.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, err) = run(vec![
        "node".into(),
        "--id=1".into(),
        "--zone=a".into(),
        format!("--data-dir={}", file.join("sub").display()),
        format!("--listen=127.0.0.1:{}", free_port()),
        format!("--http=127.0.0.1:{}", free_port()),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("data dir"), "{err}");
}
