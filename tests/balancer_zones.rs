//! The balancer end to end: 3 `tocsin node` processes and 2 `tocsin worker` processes per zone
//! on loopback (test profile: heartbeat 200 ms). Zone death, a paused worker, steal time on
//! one zone, and two bad zones at once (freeze).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{
    NodeProc, StatFile, WorkerProc, leader_status, shards_by_zone, three_nodes, wait_for,
    zone_state,
};

const ZONES: [&str; 3] = ["a", "b", "c"];
const ALL_SHARDS: u64 = 320;

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    workers: Vec<WorkerProc>,
    /// Steal fraction each zone's stat file reports, advanced every 100 ms by a task.
    steal: Arc<Mutex<BTreeMap<String, f64>>>,
    stat_task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stat_task.abort();
    }
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = three_nodes(dir.path());
        for n in &mut nodes {
            n.start();
        }
        let steal: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let mut files = BTreeMap::new();
        for z in ZONES {
            steal.lock().unwrap().insert(z.to_string(), 0.0);
            files.insert(
                z.to_string(),
                StatFile::new(dir.path().join(format!("stat-{z}"))),
            );
        }
        let mut workers = Vec::new();
        for z in ZONES {
            for k in 1..=2 {
                let path = files[z].path.clone();
                let mut w = WorkerProc::new(
                    dir.path(),
                    &format!("w-{z}-{k}"),
                    z,
                    &nodes,
                    Some(Path::new(&path)),
                );
                w.start();
                workers.push(w);
            }
        }
        let levels = steal.clone();
        // Bounded: aborted when the cluster is dropped; one write per zone per 100 ms.
        let stat_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let levels = levels.lock().unwrap().clone();
                for (z, f) in files.iter_mut() {
                    f.advance(1000, levels[z]);
                }
            }
        });
        let c = Self {
            _dir: dir,
            nodes,
            workers,
            steal,
            stat_task,
        };
        wait_for(
            Duration::from_secs(30),
            "every shard owned and every zone holding shards",
            || async {
                let s = leader_status(&c.nodes).await?;
                let by_zone = shards_by_zone(&s);
                (s["shards"]["assigned"].as_u64() == Some(ALL_SHARDS)
                    && ZONES
                        .iter()
                        .all(|z| by_zone.get(*z).copied().unwrap_or(0) > 0))
                .then_some(())
            },
        )
        .await;
        c
    }

    fn set_steal(&self, zone: &str, v: f64) {
        self.steal.lock().unwrap().insert(zone.into(), v);
    }

    async fn leader(&self) -> serde_json::Value {
        wait_for(Duration::from_secs(10), "the leader's status", || {
            leader_status(&self.nodes)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_zones_workers_moves_every_shard_within_3s() {
    let mut c = Cluster::start().await;
    let started = tokio::time::Instant::now();
    for w in c.workers.iter_mut().filter(|w| w.zone == "a") {
        w.kill().await;
    }
    wait_for(
        Duration::from_secs(15),
        "zone a owns nothing and every shard is owned",
        || async {
            let s = leader_status(&c.nodes).await?;
            let by_zone = shards_by_zone(&s);
            (by_zone.get("a").copied().unwrap_or(0) == 0
                && s["shards"]["assigned"].as_u64() == Some(ALL_SHARDS))
            .then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(3),
        "reassignment took {took:?} (test profile bound: 3 s)"
    );
    let s = c.leader().await;
    assert_eq!(zone_state(&s, "a"), "drained", "{s:#}");
    // Bounded load over the survivors: no worker above 1.25x the mean (rounded up).
    let live: Vec<u64> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["zone"] != "a")
        .map(|w| w["shards"].as_u64().unwrap())
        .collect();
    let bound = (1.25 * ALL_SHARDS as f64 / live.len() as f64).ceil() as u64 + 1;
    assert!(
        live.iter().all(|n| *n <= bound),
        "load {live:?} exceeds {bound}"
    );
    // Both conditions are replicated meta-alerts, notified like any alert.
    for name in ["TocsinWorkersLost", "TocsinZoneUnhealthy"] {
        wait_for(Duration::from_secs(10), name, || {
            meta_alert_firing(&c.nodes, name, "a")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_shards_and_stops_acting_when_resumed() {
    let c = Cluster::start().await;
    let w = c.workers.iter().find(|w| w.id == "w-b-1").unwrap();
    support::signal(w.pid(), "STOP");
    wait_for(
        Duration::from_secs(15),
        "the paused worker's shards to move",
        || async {
            let s = leader_status(&c.nodes).await?;
            let mine = s["workers"]
                .as_array()?
                .iter()
                .find(|x| x["id"] == "w-b-1")?["shards"]
                .as_u64()?;
            (mine == 0 && s["shards"]["assigned"].as_u64() == Some(ALL_SHARDS)).then_some(())
        },
    )
    .await;
    let resumed_at = w.log().len();
    support::signal(w.pid(), "CONT");
    // After resuming it must act for nothing it lost: its ownership drops to zero (fenced by
    // its lease, or told so by the leader).
    wait_for(
        Duration::from_secs(15),
        "the resumed worker to drop its shards",
        || async {
            w.log()[resumed_at..]
                .contains("ownership shards=0")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steal_on_one_zone_degrades_it_gradually_and_it_returns_slowly() {
    let c = Cluster::start().await;
    let before = shards_by_zone(&c.leader().await)["b"];
    c.set_steal("b", 0.4);
    wait_for(Duration::from_secs(40), "zone b degraded", || async {
        let s = leader_status(&c.nodes).await?;
        (zone_state(&s, "b") == "degraded").then_some(())
    })
    .await;
    wait_for(
        Duration::from_secs(10),
        "TocsinZoneUnhealthy{zone=b}",
        || meta_alert_firing(&c.nodes, "TocsinZoneUnhealthy", "b"),
    )
    .await;
    // Gradual: sample b's shard count; no single step may drop more than the degraded move
    // rate allows (5% of the shards per period) and it never drops to zero while degraded.
    let mut last = shards_by_zone(&c.leader().await)["b"];
    let mut lowest = last;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await; // sampling cadence, not a wait
        let s = c.leader().await;
        let now = shards_by_zone(&s)["b"];
        assert!(
            last.saturating_sub(now) <= 2 * (ALL_SHARDS / 20) + 2,
            "b lost {} shards at once ({last} -> {now})",
            last - now
        );
        last = now;
        lowest = lowest.min(now);
    }
    assert!(
        lowest < before,
        "a degraded zone loses shards ({before} -> {lowest})"
    );
    assert!(lowest > 0, "a degraded zone is not drained by steal alone");

    c.set_steal("b", 0.0);
    let recovered_from = tokio::time::Instant::now();
    wait_for(Duration::from_secs(90), "zone b healthy again", || async {
        let s = leader_status(&c.nodes).await?;
        (zone_state(&s, "b") == "healthy").then_some(())
    })
    .await;
    let took = recovered_from.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "zone b came back after only {took:?}: recovery must dwell"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bad_zones_freeze_placement_and_raise_a_meta_alert() {
    let c = Cluster::start().await;
    let before = shards_by_zone(&c.leader().await);
    c.set_steal("b", 0.4);
    c.set_steal("c", 0.4);
    let s = wait_for(
        Duration::from_secs(40),
        "placement frozen with a meta-alert",
        || async {
            let s = leader_status(&c.nodes).await?;
            (s["balancer"]["frozen"].is_string()
                && !s["balancer"]["meta_alerts"].as_array()?.is_empty())
            .then_some(s)
        },
    )
    .await;
    assert!(
        s["balancer"]["meta_alerts"].to_string().contains("Frozen"),
        "{}",
        s["balancer"]
    );
    // The freeze is also an ordinary, replicated alert (routed and notified like any other).
    wait_for(
        Duration::from_secs(10),
        "TocsinPlacementFrozen in /api/v1/alerts",
        || async {
            let r = support::http_client()
                .get(format!(
                    "http://{}/api/v1/alerts?state=firing",
                    c.nodes[0].http
                ))
                .send()
                .await
                .ok()?;
            let alerts: Vec<serde_json::Value> = r.json().await.ok()?;
            alerts
                .iter()
                .any(|a| a["rule"] == "TocsinPlacementFrozen" && a["namespace"] == "__meta__")
                .then_some(())
        },
    )
    .await;
    // No mass movement: every zone keeps (nearly) what it had.
    let after = shards_by_zone(&s);
    for z in ZONES {
        let (b, a) = (before[z] as i64, after.get(z).copied().unwrap_or(0) as i64);
        assert!(
            (b - a).abs() <= (ALL_SHARDS / 20) as i64,
            "zone {z} moved from {b} to {a} shards while frozen"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leaders_zone_elects_a_new_leader_that_moves_its_shards() {
    let mut c = Cluster::start().await;
    let s = c.leader().await;
    let leader = s["leader"].as_u64().unwrap();
    let zone = ZONES[(leader - 1) as usize];
    let started = tokio::time::Instant::now();
    for n in c.nodes.iter_mut().filter(|n| n.id == leader) {
        n.kill().await;
    }
    for w in c.workers.iter_mut().filter(|w| w.zone == zone) {
        w.kill().await;
    }
    let s = wait_for(
        Duration::from_secs(20),
        "a new leader that moved every shard off the dead zone",
        || async {
            let s = leader_status(&c.nodes).await?;
            let by_zone = shards_by_zone(&s);
            (by_zone.get(zone).copied().unwrap_or(0) == 0
                && s["shards"]["assigned"].as_u64() == Some(ALL_SHARDS))
            .then_some(s)
        },
    )
    .await;
    let took = started.elapsed();
    assert_ne!(s["leader"].as_u64(), Some(leader));
    // Election (300-600 ms) + settle (1 s) + lease (1 s) + a tick, in the test profile.
    assert!(
        took <= Duration::from_secs(5),
        "reassignment after losing the leader's zone took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_leader_zone_hands_leadership_to_a_healthy_zone() {
    let c = Cluster::start().await;
    let s = c.leader().await;
    let zone = s["node"]["zone"].as_str().unwrap().to_string();
    let term = s["term"].as_u64().unwrap();
    c.set_steal(&zone, 0.4);
    let moved = wait_for(
        Duration::from_secs(40),
        "leadership out of the degraded zone",
        || async {
            let s = leader_status(&c.nodes).await?;
            (s["node"]["zone"].as_str()? != zone).then_some(s)
        },
    )
    .await;
    assert!(
        moved["term"].as_u64().unwrap() > term,
        "a new election: {moved}"
    );
    assert_eq!(
        zone_state(&moved, &zone),
        "degraded",
        "the old leader's zone was degraded when leadership left it"
    );
}

/// Whether the meta-alert `name` fires for `zone` (a replicated alert in `/api/v1/alerts`).
async fn meta_alert_firing(nodes: &[NodeProc], name: &str, zone: &str) -> Option<()> {
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        let Ok(r) = support::http_client()
            .get(format!("http://{}/api/v1/alerts?state=firing", n.http))
            .send()
            .await
        else {
            continue;
        };
        let alerts: Vec<serde_json::Value> = r.json().await.ok()?;
        return alerts
            .iter()
            .any(|a| a["rule"] == name && a["labels"]["zone"] == zone)
            .then_some(());
    }
    None
}

/// A zone whose workers cannot reach their datasource: its evaluations all fail, and the
/// leader raises `TocsinEvaluationsFailing` for that zone only (a replicated alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_evaluations_in_one_zone_raise_evaluations_failing_for_that_zone() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    for n in &mut nodes {
        n.start();
    }
    // Nothing listens there: every query of zone b's workers is refused.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let mut workers = Vec::new();
    for (z, n) in ZONES.iter().zip(&nodes) {
        let datasource = if *z == "b" {
            dead.clone()
        } else {
            format!("http://{}", n.http)
        };
        for k in 1..=2 {
            let mut w = WorkerProc::new(dir.path(), &format!("w-{z}-{k}"), z, &nodes, None)
                .arg(format!("--datasource={datasource}"));
            w.start();
            workers.push(w);
        }
    }
    support::wait_all_shards_owned(&nodes).await;
    // Enough 1 s groups that zone b's share exceeds the work window's minimum of events.
    let mut rules = String::from("groups:\n");
    for i in 0..60 {
        rules.push_str(&format!(
            "- name: g{i}\n  interval: 1s\n  rules:\n  - alert: Always{i}\n    expr: vector(1) > 0\n"
        ));
    }
    let put = support::http_client()
        .put(format!("http://{}/api/v1/rules/work", nodes[0].http))
        .body(rules)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    wait_for(
        Duration::from_secs(40),
        "TocsinEvaluationsFailing{zone=b} firing",
        || meta_alert_firing(&nodes, "TocsinEvaluationsFailing", "b"),
    )
    .await;
    let s = leader_status(&nodes).await.expect("leader status");
    for z in ["a", "c"] {
        assert!(
            meta_alert_firing(&nodes, "TocsinEvaluationsFailing", z)
                .await
                .is_none(),
            "zone {z} evaluates fine: {s:#}"
        );
    }
    // The healthy zones really evaluated (the alert is about b, not about nothing running).
    let alerts: Vec<serde_json::Value> = support::http_client()
        .get(format!(
            "http://{}/api/v1/alerts?state=firing",
            nodes[0].http
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"].as_str().is_some_and(|r| r.starts_with("Always"))),
        "some rule alerts fire from zones a and c"
    );
    drop(workers);
}
