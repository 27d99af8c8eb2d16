//! Shared rate limits through a real Redis: three workers (one per zone) deliver eight groups
//! to one Slack incoming webhook whose emulator answers 429 to anything faster than 1/s.
//! While Redis runs, the workers together never exceed the limit (no 429 at all). Redis is
//! then killed mid-run: delivery continues with each worker limiting locally to its share, and
//! every group still arrives exactly once (a 429 is a clean refusal, retried after its
//! `Retry-After`).

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::{WorkerProc, free_port, wait_for};
use tocsin_chaos::slack::{Slack, SlackConfig};
use tokio_util::sync::CancellationToken;

const GROUPS: usize = 8;

fn redis_bin() -> std::path::PathBuf {
    let bin = std::path::PathBuf::from("/usr/bin/redis-server");
    assert!(
        bin.exists(),
        "`redis-server` not found: this test needs a real Redis. Install it with \
         `sudo apt-get install -y redis-server` (scripts/test.sh does)."
    );
    bin
}

async fn exporter(value: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(value.load(Ordering::Relaxed));
            async move {
                let mut out = String::from("# TYPE tocsin_test_q gauge\n");
                for i in 0..GROUPS {
                    out.push_str(&format!("tocsin_test_q{{queue=\"q{i}\"}} {v}\n"));
                }
                out
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

/// Successful deliveries per queue label, and the number of 429 answers, among `reqs`.
fn tally(reqs: &[tocsin_chaos::RecordedRequest]) -> (BTreeMap<String, usize>, usize) {
    let mut ok = BTreeMap::new();
    let mut limited = 0;
    for r in reqs {
        if r.answer.status == 429 {
            limited += 1;
            continue;
        }
        if r.answer.status != 200 {
            continue;
        }
        for i in 0..GROUPS {
            if r.body.contains(&format!("q{i} ")) || r.body.contains(&format!("q{i}\"")) {
                *ok.entry(format!("q{i}")).or_insert(0) += 1;
            }
        }
    }
    (ok, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_slack_limit_through_redis_and_lose_nothing_when_it_stops() {
    let redis_port = free_port();
    let mut redis = tokio::process::Command::new(redis_bin())
        .args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn redis-server");
    let redis_addr = format!("127.0.0.1:{redis_port}");
    wait_for(Duration::from_secs(10), "redis to listen", || async {
        tokio::net::TcpStream::connect(&redis_addr).await.ok()
    })
    .await;

    let stop = CancellationToken::new();
    let slack = Slack::start_local(SlackConfig::default(), &stop)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(AtomicU64::new(0.0f64.to_bits()));
    let target = exporter(q.clone()).await;
    let nodes = support::scraping_nodes(dir.path(), &target);
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(z, n)| {
            WorkerProc::new(dir.path(), &format!("w-{z}"), z, &nodes, None)
                .arg(format!("--datasource=http://{}", n.http))
                .arg(format!("--redis={redis_addr}"))
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    support::wait_all_shards_owned(&nodes).await;
    let http = support::http_client();
    let am = format!(
        "route:\n  receiver: chat\n  group_by: [alertname, queue]\n  group_wait: 0s\n  group_interval: 1h\n  repeat_interval: 4h\nreceivers:\n- name: chat\n  slack_configs:\n  - api_url: {}\n    channel: '#alerts'\n",
        slack.emulator().url("/services/T000/B000/shared")
    );
    let put = http
        .put(format!("http://{}/api/v1/notify/config", nodes[0].http))
        .body(am)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let put = http
        .put(format!("http://{}/api/v1/rules/q", nodes[0].http))
        .body("groups:\n- name: q\n  interval: 1s\n  rules:\n  - alert: QueueStuck\n    expr: tocsin_test_q > 100\n")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);

    q.store(500.0f64.to_bits(), Ordering::Relaxed);
    // Half the groups delivered with Redis up: not one 429.
    wait_for(
        Duration::from_secs(60),
        "half the groups delivered",
        || async {
            let (ok, _) = tally(&slack.emulator().requests());
            (ok.len() >= GROUPS / 2).then_some(())
        },
    )
    .await;
    let (ok, limited) = tally(&slack.emulator().requests());
    assert_eq!(
        limited,
        0,
        "with Redis the workers together stayed under 1/s ({} delivered)",
        ok.len()
    );

    // Stop Redis mid-run: the rest still arrives, each group exactly once.
    redis.kill().await.expect("kill redis");
    wait_for(Duration::from_secs(90), "every group delivered", || async {
        let (ok, _) = tally(&slack.emulator().requests());
        (ok.len() == GROUPS).then_some(())
    })
    .await;
    let (ok, limited) = tally(&slack.emulator().requests());
    println!(
        "delivered {} groups; 429 answers after Redis stopped: {limited}",
        ok.len()
    );
    assert!(
        ok.values().all(|n| *n == 1),
        "each group delivered exactly once: {ok:?}"
    );
    let logs: String = workers.iter().map(WorkerProc::log).collect();
    assert!(
        logs.contains("redis failed, limiting locally"),
        "a worker noticed Redis was gone and limited locally"
    );
    stop.cancel();
}
