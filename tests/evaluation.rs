//! Rule evaluation end to end: 3 nodes whose embedded stores scrape an exporter served by the
//! test, two workers per zone evaluating through their zone's node, a rule applied through
//! the API. The alert goes pending then firing; the evaluating worker is paused past its lease
//! and resumed (the group moves; it stops acting); then the zone of the new owner is killed;
//! each new owner continues (same `active_at`, no resolve, evaluation gap ≤ interval + 3 s);
//! the condition clears and the alert resolves. The fencing audit over every applied entry
//! finds no write applied with a stale epoch.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use support::{NodeProc, WorkerProc, wait_for};
use tocsin_state::audit::FenceAudit;
use tocsin_state::client::StoreClient;
use tocsin_state::model::{Command, ShardOp};

const RULES: &str = "groups:\n- name: load\n  interval: 1s\n  rules:\n  - alert: HighLoad\n    expr: tocsin_test_load > 5\n    for: 2s\n    labels: {severity: page}\n    annotations: {summary: 'load is {{ $value }} on {{ $labels.instance }}'}\n";

/// An exporter whose single gauge the test sets.
async fn exporter(value: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(value.load(Ordering::Relaxed));
            async move {
                format!(
                    "# TYPE tocsin_test_load gauge\ntocsin_test_load{{instance=\"host-1\"}} {v}\n"
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

async fn alerts(nodes: &[NodeProc]) -> Option<Vec<serde_json::Value>> {
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        let r = support::http_client()
            .get(format!("http://{}/api/v1/alerts", n.http))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            return r.json().await.ok();
        }
    }
    None
}

async fn high_load(nodes: &[NodeProc]) -> Option<serde_json::Value> {
    alerts(nodes)
        .await?
        .into_iter()
        .find(|a| a["rule"] == "HighLoad")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_survive_a_zone_loss_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let load = Arc::new(AtomicU64::new(1.0f64.to_bits()));
    let target = exporter(load.clone()).await;
    let nodes = support::scraping_nodes(dir.path(), &target);
    // Two workers per zone, each evaluating through its zone's node: one paused worker is then
    // an ordinary dead worker (its shards move), not a dead zone.
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .flat_map(|(z, n)| {
            (1..=2)
                .map(|k| {
                    WorkerProc::new(dir.path(), &format!("w-{z}-{k}"), z, &nodes, None)
                        .arg(format!("--datasource=http://{}", n.http))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    let client = StoreClient::new(nodes.iter().map(|n| n.grpc.clone()).collect()).unwrap();
    // Record every applied entry for the audit and the evaluation-gap check.
    let recorder = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            let mut stream = Box::pin(
                wait_for(Duration::from_secs(30), "a watch stream", || async {
                    client.watch(0).await.ok()
                })
                .await,
            );
            while let Ok(Some(Ok(item))) = tokio::time::timeout_at(deadline, stream.next()).await {
                out.push(item);
            }
            out
        })
    };
    support::wait_all_shards_owned(&nodes).await;
    let http = support::http_client();
    let put = http
        .put(format!("http://{}/api/v1/rules/demo", nodes[0].http))
        .body(RULES)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);

    load.store(10.0f64.to_bits(), Ordering::Relaxed);
    let pending = wait_for(Duration::from_secs(30), "HighLoad pending", || async {
        high_load(&nodes)
            .await
            .filter(|a| a["state"] == "pending" || a["state"] == "firing")
    })
    .await;
    let firing = wait_for(Duration::from_secs(30), "HighLoad firing", || async {
        high_load(&nodes).await.filter(|a| a["state"] == "firing")
    })
    .await;
    assert_eq!(
        firing["active_at_ms"], pending["active_at_ms"],
        "the for timer runs from when the condition became true"
    );
    let fired = firing["fired_at_ms"].as_i64().unwrap();
    let active = firing["active_at_ms"].as_i64().unwrap();
    assert!(
        fired - active >= 2000,
        "firing only after `for: 2s` ({active} -> {fired})"
    );
    // Scraping sets `instance` to the target (the exporter's own label becomes
    // `exported_instance`), as Prometheus does.
    assert_eq!(
        firing["annotations"]["summary"],
        format!("load is 10 on {target}")
    );

    // 1. Pause the evaluating worker past its lease (all zones healthy): the group moves to
    // another worker; once resumed, the paused worker stops acting (it fences itself or the
    // store refuses its stale epoch), and the audit below proves no write of its old epoch
    // was applied.
    let paused = firing["worker"].as_str().unwrap().to_string();
    let w = workers
        .iter()
        .find(|w| w.id == paused)
        .expect("the owner is one of ours");
    support::signal(w.pid(), "STOP");
    let moved = wait_for(
        Duration::from_secs(30),
        "the group moved off the paused worker",
        || async {
            high_load(&nodes)
                .await
                .filter(|a| a["worker"].as_str().is_some_and(|x| x != paused))
        },
    )
    .await;
    assert_eq!(
        moved["state"], "firing",
        "no resolve across the handoff: {moved}"
    );
    assert_eq!(
        moved["active_at_ms"].as_i64(),
        Some(active),
        "for timers continue from the stored active_at"
    );
    assert_eq!(moved["fired_at_ms"].as_i64(), Some(fired));
    let resumed_at = w.log().len();
    support::signal(w.pid(), "CONT");
    wait_for(
        Duration::from_secs(15),
        "the resumed worker to stop acting",
        || async {
            let log = w.log();
            let tail = &log[resumed_at..];
            (tail.contains("fencing myself")
                || tail.contains("refused our epoch")
                || tail.contains("ownership shards=0"))
            .then_some(())
        },
    )
    .await;

    // 2. Kill the whole zone of the worker that now evaluates the group.
    let zone = moved["zone"].as_str().unwrap().to_string();
    for w in workers.iter_mut().filter(|w| w.zone == zone) {
        w.kill().await;
    }
    let again = wait_for(
        Duration::from_secs(30),
        "the group evaluated in another zone",
        || async {
            high_load(&nodes)
                .await
                .filter(|a| a["zone"].as_str().is_some_and(|z| z != zone))
        },
    )
    .await;
    assert_eq!(
        again["state"], "firing",
        "no resolve across the zone loss: {again}"
    );
    assert_eq!(again["active_at_ms"].as_i64(), Some(active));
    assert_eq!(again["fired_at_ms"].as_i64(), Some(fired));
    // Let the new owner commit three evaluations, then clear the condition.
    let watermark = || async {
        match client
            .read(
                &tocsin_state::model::Query::Watermarks { shard: None },
                true,
            )
            .await
            .ok()?
            .1
        {
            tocsin_state::model::QueryResult::Watermarks(ws) => ws
                .into_iter()
                .find(|(g, _)| g.name == "load")
                .map(|(_, w)| w.last_eval_ms),
            _ => None,
        }
    };
    let after_kill = wait_for(Duration::from_secs(10), "the group's watermark", watermark).await;
    wait_for(
        Duration::from_secs(30),
        "three evaluations by the new owner",
        || async { watermark().await.filter(|w| *w >= after_kill + 3 * 1000) },
    )
    .await;
    load.store(1.0f64.to_bits(), Ordering::Relaxed);
    wait_for(Duration::from_secs(30), "HighLoad resolved", || async {
        high_load(&nodes).await.filter(|a| a["state"] == "resolved")
    })
    .await;

    recorder.abort();
    let _ = recorder.await;
    // Re-read the whole history for the checks (the recorder may have been cut short).
    let mut stream = Box::pin(client.watch(0).await.unwrap());
    let last = client
        .read(&tocsin_state::model::Query::Stats, true)
        .await
        .unwrap()
        .0;
    let mut audit = FenceAudit::new();
    let mut evals: Vec<i64> = Vec::new();
    while let Ok(Some(Ok((index, changes)))) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await
    {
        audit.observe(index, &changes);
        for c in &changes {
            if let Command::Shard {
                op: ShardOp::EvalCycle { group, eval_ms, .. },
                ..
            } = c
                && group.name == "load"
            {
                evals.push(*eval_ms);
            }
        }
        if index >= last {
            break;
        }
    }
    let report = audit.report();
    assert!(report.clean(), "fencing audit: {report:?}");
    assert!(evals.len() >= 5, "the group was evaluated: {evals:?}");
    let gap = evals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap <= 1000 + 3000,
        "evaluation gap {gap} ms exceeds interval + 3 s"
    );
}
