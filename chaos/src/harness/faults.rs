//! The faults of each scenario: a seeded plan (which zone, worker, when) and its execution
//! against the running cluster and the emulators.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::checker::{FaultWindow, Observed};
use super::cluster::{Cluster, wait_until};
use super::error::HarnessError;
use super::netns::bind_host;
use super::process::Role;
use super::scenario::{Run, ScenarioId, zone_window};
use crate::pagerduty::{PagerDuty, PagerDutyConfig};
use crate::slack::{Slack, SlackConfig};
use crate::webhook::WebhookSink;
use crate::{FaultMode, FaultSpec};

/// How long a new leader may take after the leader's zone dies (test profile: 300–600 ms
/// elections, plus detection).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a resumed worker may take to notice it lost its shards.
const FENCE_TIMEOUT: Duration = Duration::from_secs(15);
/// After a blind window ends, how long until an evaluation surely reads fresh data again
/// (a reconnect, a scrape every 500 ms, the next 1 s evaluation slot).
const BLIND_MARGIN_MS: i64 = 1_800;
/// Polling period of the harness's own loops.
const POLL: Duration = Duration::from_millis(100);

/// The emulators a run routes to.
#[derive(Debug)]
pub struct Emulators {
    /// Receiver `team-a`'s webhook.
    pub hook_a: WebhookSink,
    /// Receiver `team-b`'s webhook.
    pub hook_b: WebhookSink,
    /// Receiver `team-a`'s PagerDuty.
    pub pagerduty: PagerDuty,
    /// Receiver `team-b`'s Slack incoming webhook (routed to in S13 only).
    pub slack: Slack,
}

impl Emulators {
    /// Starts them on free ports of `ip` (loopback, or the hub's address in a namespaced
    /// run).
    pub async fn start(ip: IpAddr, stop: &CancellationToken) -> Result<Self, HarnessError> {
        let hook = |what| bind_host(ip, what);
        Ok(Self {
            hook_a: WebhookSink::start(hook("webhook team-a").await?, stop)?,
            hook_b: WebhookSink::start(hook("webhook team-b").await?, stop)?,
            pagerduty: PagerDuty::start(
                hook("pagerduty").await?,
                PagerDutyConfig::default(),
                stop,
            )?,
            slack: Slack::start(hook("slack").await?, SlackConfig::default(), stop)?,
        })
    }

    /// Writes each emulator's request log (and PagerDuty's incidents) into `dir`, for the
    /// post-mortem.
    pub fn save_logs(&self, dir: &std::path::Path) -> Result<(), HarnessError> {
        let o = self.observed();
        let files = [
            ("requests-team-a.json", json!(o.hooks.get("team-a"))),
            ("requests-team-b.json", json!(o.hooks.get("team-b"))),
            ("requests-pagerduty.json", json!(o.pagerduty)),
            ("incidents-pagerduty.json", json!(o.incidents.incidents)),
            ("requests-slack.json", json!(o.slack)),
        ];
        for (name, value) in files {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            std::fs::write(&path, text).map_err(|e| HarnessError::io(&path, e))?;
        }
        Ok(())
    }

    /// What they recorded so far.
    pub fn observed(&self) -> Observed {
        Observed {
            hooks: [
                ("team-a".to_string(), self.hook_a.emulator().requests()),
                ("team-b".to_string(), self.hook_b.emulator().requests()),
            ]
            .into_iter()
            .collect(),
            pagerduty: self.pagerduty.emulator().requests(),
            incidents: self.pagerduty.incidents(),
            slack: self.slack.emulator().requests(),
        }
    }
}

/// A scenario's seeded choices.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The zone whose node the log recorder should not rely on.
    pub avoid_zone: Option<String>,
    /// The zone the fault hits.
    pub zone: Option<String>,
    /// The worker the fault hits.
    pub worker: Option<String>,
    /// When the fault starts, ms after the workload's start.
    pub at_ms: i64,
    /// How long it lasts, ms.
    pub hold_ms: i64,
    /// S4: whether the seed aimed at the leader's zone (else at a follower's).
    pub aim_at_leader: bool,
    /// S8: the second zone the fault hits.
    pub second_zone: Option<String>,
    /// S5, S6, S8: the round trip added to the zones' links, ms.
    pub added_rtt_ms: u64,
}

/// Draws the plan of `scenario` from the run's seeded generator.
pub(crate) async fn plan(scenario: ScenarioId, run: &mut Run) -> Plan {
    let zones: Vec<String> = run.cluster.nodes().map(|n| n.zone.clone()).collect();
    let mut p = Plan {
        at_ms: run.rng.random_range(6_000..=10_000),
        hold_ms: run.rng.random_range(6_000..=9_000),
        ..Plan::default()
    };
    match scenario {
        ScenarioId::S2 => {
            let z = zones[run.rng.random_range(0..zones.len())].clone();
            p.avoid_zone = Some(z.clone());
            p.zone = Some(z);
        }
        ScenarioId::S3 => {
            let leader_zone = run.cluster.leader().await.map(|(_, z)| z);
            p.avoid_zone.clone_from(&leader_zone);
            p.zone = leader_zone;
        }
        ScenarioId::S4 => {
            // The seed picks the case (the leader's zone or a follower's, both worth
            // covering), then which follower; the leader is whoever won the election.
            p.aim_at_leader = run.rng.random_bool(0.5);
            let leader_zone = run.cluster.leader().await.map(|(_, z)| z);
            let followers: Vec<&String> = zones
                .iter()
                .filter(|z| Some(*z) != leader_zone.as_ref())
                .collect();
            let pick = followers
                .get(run.rng.random_range(0..followers.len().max(1)))
                .map(|z| (*z).clone());
            let z = if p.aim_at_leader {
                leader_zone.or(pick)
            } else {
                pick
            };
            p.avoid_zone.clone_from(&z);
            p.zone = z;
        }
        ScenarioId::S9 => {
            let workers: Vec<String> = run
                .cluster
                .procs
                .iter()
                .filter(|p| p.role == Role::Worker)
                .map(|p| p.id.clone())
                .collect();
            p.worker = Some(workers[run.rng.random_range(0..workers.len())].clone());
            p.hold_ms = run.rng.random_range(3_000..=5_000);
        }
        ScenarioId::S5 | ScenarioId::S6 => {
            // A follower's zone: the acting balancer measures from the leader, so a slow
            // leader zone makes the others look slow (S8's case).
            let leader_zone = run.cluster.leader().await.map(|(_, z)| z);
            let followers: Vec<&String> = zones
                .iter()
                .filter(|z| Some(*z) != leader_zone.as_ref())
                .collect();
            p.zone = followers
                .get(run.rng.random_range(0..followers.len().max(1)))
                .map(|z| (*z).clone());
            p.avoid_zone.clone_from(&p.zone);
            // Under the test profile's replication budget (the Raft heartbeat, 100 ms), so
            // the slow follower still acknowledges: slow, not cut off.
            p.added_rtt_ms = run.rng.random_range(50..=70);
            p.at_ms = run.rng.random_range(4_000..=7_000);
            p.hold_ms = if scenario == ScenarioId::S5 {
                run.rng.random_range(10_000..=12_000)
            } else {
                run.rng.random_range(14_000..=16_000)
            };
        }
        ScenarioId::S8 => {
            let first = run.rng.random_range(0..zones.len());
            let second = (first + run.rng.random_range(1..zones.len())) % zones.len();
            p.zone = Some(zones[first].clone());
            p.second_zone = Some(zones[second].clone());
            // Between the two slow zones the delays add up: 2 × 40 ms + jitter stays under
            // the test profile's replication budget (100 ms) when one of them leads.
            p.added_rtt_ms = run.rng.random_range(30..=40);
            p.at_ms = run.rng.random_range(4_000..=7_000);
            p.hold_ms = run.rng.random_range(10_000..=12_000);
        }
        ScenarioId::S7 => {
            p.zone = Some(zones[run.rng.random_range(0..zones.len())].clone());
            p.at_ms = run.rng.random_range(4_000..=7_000);
            p.hold_ms = run.rng.random_range(10_000..=12_000);
        }
        ScenarioId::S11 => p.hold_ms = run.rng.random_range(5_000..=7_000),
        ScenarioId::S13 => {
            p.at_ms = run.rng.random_range(5_000..=8_000);
            p.hold_ms = run.rng.random_range(6_000..=8_000);
        }
        ScenarioId::S1 | ScenarioId::S10 | ScenarioId::S12 => {}
    }
    p
}

/// Executes the plan; returns when the fault is over (the workload keeps running).
pub(crate) async fn execute(
    scenario: ScenarioId,
    plan: &Plan,
    run: &mut Run,
) -> Result<(), HarnessError> {
    match scenario {
        ScenarioId::S1 => Ok(()),
        ScenarioId::S2 => {
            let zone = plan.zone.clone().unwrap_or_default();
            kill_and_restart_zone(run, &zone, plan).await
        }
        ScenarioId::S3 => kill_leader_zone(run, plan).await,
        ScenarioId::S4 => super::partition::execute(run, plan).await,
        ScenarioId::S5 | ScenarioId::S8 => super::gray::latency(run, plan).await,
        ScenarioId::S6 => super::gray::flapping(run, plan).await,
        ScenarioId::S7 => super::gray::steal(run, plan).await,
        ScenarioId::S9 => pause_worker(run, plan).await,
        ScenarioId::S10 => receiver_faults(run).await,
        ScenarioId::S11 => datasource_down(run, plan).await,
        ScenarioId::S12 => restart_all_nodes(run, plan).await,
        ScenarioId::S13 => super::redis::execute(run, plan).await,
    }
}

/// Checks that need the cluster after the drain.
pub(crate) async fn after(scenario: ScenarioId, run: &mut Run) {
    match scenario {
        ScenarioId::S3 => {
            let leaders = leaders_at_end(&run.cluster).await;
            run.extra.insert("leaders_at_end".into(), json!(leaders));
            if leaders.len() != 1 || leaders.contains(&None) {
                run.failures.push(format!(
                    "nodes disagree on the leader at the end: {leaders:?}"
                ));
            }
        }
        ScenarioId::S4 => super::partition::after(run).await,
        ScenarioId::S5 | ScenarioId::S6 | ScenarioId::S7 | ScenarioId::S8 => {
            super::gray::after(run).await;
        }
        ScenarioId::S13 => super::redis::after(run),
        ScenarioId::S12 => {
            let rules = run.cluster.get_json("/api/v1/rules").await;
            let kept = rules.is_some_and(|r| r.to_string().contains("load-0"));
            run.extra.insert("rules_kept".into(), json!(kept));
            if !kept {
                run.failures
                    .push("the rule set was lost across the restart".into());
            }
        }
        _ => {}
    }
}

/// The leader each running node reports (`None`: it knows of none).
pub(crate) async fn leaders_at_end(cluster: &Cluster) -> BTreeSet<Option<u64>> {
    let mut leaders = BTreeSet::new();
    for n in cluster.nodes().filter(|n| n.is_running()) {
        if let Some(s) = cluster.status_of(&n.http).await {
            leaders.insert(s["leader"].as_u64());
        }
    }
    leaders
}

/// Kills the zone holding the Raft leader, waits for a new leader, restarts the zone.
async fn kill_leader_zone(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    run.at(plan.at_ms).await;
    // The leader may have moved since the plan: kill whichever zone holds it now.
    let old = run.cluster.leader().await;
    let Some((old_id, zone)) = old else {
        run.failures.push("no leader to kill".into());
        return Ok(());
    };
    run.extra.insert("old_leader".into(), json!(old_id));
    let before = crate::clock::wall_ms();
    kill_zone(run, &zone).await?;
    let new = wait_until(ELECTION_TIMEOUT, "a new leader", || async {
        run.cluster.leader().await.filter(|(id, _)| *id != old_id)
    })
    .await;
    match new {
        Ok((id, z)) => {
            run.extra.insert("new_leader".into(), json!(id));
            run.extra.insert("new_leader_zone".into(), json!(z));
            run.extra.insert(
                "election_s".into(),
                json!((crate::clock::wall_ms() - before) as f64 / 1000.0),
            );
        }
        Err(_) => run
            .failures
            .push("no new leader after the leader's zone died".into()),
    }
    run.at(plan.at_ms + plan.hold_ms).await;
    run.cluster.restart_zone(&zone)?;
    run.note(format!("restart zone {zone}"));
    Ok(())
}

async fn kill_zone(run: &mut Run, zone: &str) -> Result<(), HarnessError> {
    let start = crate::clock::wall_ms();
    let killed = run.cluster.kill_zone(zone).await?;
    run.fault = Some(zone_window(run, zone, start));
    run.note(format!("SIGKILL zone {zone}: {}", killed.join(", ")));
    run.cluster.write_cluster_file()
}

async fn kill_and_restart_zone(run: &mut Run, zone: &str, plan: &Plan) -> Result<(), HarnessError> {
    run.at(plan.at_ms).await;
    kill_zone(run, zone).await?;
    run.at(plan.at_ms + plan.hold_ms).await;
    run.cluster.restart_zone(zone)?;
    run.note(format!("restart zone {zone}"));
    Ok(())
}

async fn pause_worker(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let id = plan.worker.clone().unwrap_or_default();
    run.at(plan.at_ms).await;
    let start = crate::clock::wall_ms();
    let Some(p) = run.cluster.proc_mut(Role::Worker, &id) else {
        return Err(HarnessError::Api {
            what: "S9".into(),
            reason: format!("no worker {id}"),
        });
    };
    p.pause()?;
    run.fault = Some(FaultWindow {
        start_ms: start,
        zone: None,
        workers: [id.clone()].into_iter().collect(),
        zone_workers: BTreeSet::new(),
    });
    run.note(format!("SIGSTOP worker {id}"));
    run.at(plan.at_ms + plan.hold_ms).await;
    let Some(p) = run.cluster.proc_mut(Role::Worker, &id) else {
        return Ok(());
    };
    let mark = p.log_text().len();
    p.resume()?;
    run.note(format!("SIGCONT worker {id}"));
    let resumed = crate::clock::wall_ms();
    let cluster = &run.cluster;
    let stopped = wait_until(
        FENCE_TIMEOUT,
        "the resumed worker to stop acting",
        || async {
            let p = cluster.procs.iter().find(|p| p.id == id)?;
            let log = p.log_text();
            let tail = log.get(mark..)?;
            (tail.contains("fencing myself")
                || tail.contains("refused our epoch")
                || tail.contains("ownership shards=0"))
            .then_some(())
        },
    )
    .await;
    match stopped {
        Ok(()) => {
            run.extra.insert(
                "resumed_worker_stopped_acting_s".into(),
                json!((crate::clock::wall_ms() - resumed) as f64 / 1000.0),
            );
        }
        Err(_) => run
            .failures
            .push(format!("worker {id} did not stop acting after SIGCONT")),
    }
    Ok(())
}

/// Team a's webhook answers 5xx, then 429 with `Retry-After`, then hangs, then 429 again;
/// each fault is armed when the previous one was used up. Team b is never touched.
async fn receiver_faults(run: &mut Run) -> Result<(), HarnessError> {
    let retry_after_s = run.rng.random_range(1..=3);
    let steps = [
        FaultSpec::new(FaultMode::Error5xx).count(2),
        FaultSpec::new(FaultMode::RateLimit)
            .retry_after_s(retry_after_s)
            .count(1),
        FaultSpec::new(FaultMode::Hang)
            .hold(Duration::from_millis(2_000))
            .count(1),
        FaultSpec::new(FaultMode::RateLimit)
            .retry_after_s(retry_after_s)
            .count(1),
    ];
    run.at(2_000).await;
    run.fault = Some(FaultWindow {
        start_ms: crate::clock::wall_ms(),
        ..FaultWindow::default()
    });
    // Leave the last 5 s of the script fault-free, so every resend lands before the drain.
    let budget = run.end_of_script_ms - 5_000 - crate::clock::wall_ms();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(u64::try_from(budget).unwrap_or(0));
    for spec in steps {
        let what = format!("{:?}", spec.mode);
        run.emulators.hook_a.emulator().faults().set(spec)?;
        run.note(format!(
            "webhook team-a: {what} (Retry-After {retry_after_s} s for 429)"
        ));
        while tokio::time::Instant::now() < deadline {
            let now = run.emulators.hook_a.emulator().faults().get();
            if now.mode == FaultMode::Ok || now.count == Some(0) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    run.emulators.hook_a.emulator().faults().clear();
    run.note("webhook team-a: faults cleared");
    Ok(())
}

async fn datasource_down(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    run.at(plan.at_ms).await;
    for p in run.cluster.datasource_proxies.values() {
        p.set_up(false);
    }
    run.fault = Some(FaultWindow {
        start_ms: crate::clock::wall_ms(),
        ..FaultWindow::default()
    });
    run.note("datasource down (every worker's query link cut)");
    let until = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(plan.hold_ms).unwrap_or(0));
    let mut meta = BTreeSet::new();
    while tokio::time::Instant::now() < until {
        if let Some(s) = run.cluster.leader_status().await {
            for m in s["balancer"]["meta_alerts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                meta.insert(m.as_str().unwrap_or_default().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for p in run.cluster.datasource_proxies.values() {
        p.set_up(true);
    }
    let start = run.fault.as_ref().map_or(0, |f| f.start_ms);
    run.blind
        .push((start, crate::clock::wall_ms() + BLIND_MARGIN_MS));
    run.note("datasource back");
    run.extra
        .insert("meta_alerts_during_outage".into(), json!(meta));
    Ok(())
}

async fn restart_all_nodes(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    run.at(plan.at_ms).await;
    let start = crate::clock::wall_ms();
    let ids: Vec<String> = run.cluster.nodes().map(|n| n.id.clone()).collect();
    for id in &ids {
        if let Some(p) = run.cluster.proc_mut(Role::Node, id) {
            p.kill().await?;
        }
    }
    for id in &ids {
        if let Some(p) = run.cluster.proc_mut(Role::Node, id) {
            p.start()?;
        }
    }
    run.cluster.write_cluster_file()?;
    run.fault = Some(FaultWindow {
        start_ms: start,
        ..FaultWindow::default()
    });
    run.note("SIGKILL every node, then start them again");
    let back = wait_until(ELECTION_TIMEOUT, "a leader after the restart", || async {
        run.cluster.leader().await
    })
    .await;
    match back {
        Ok(_) => {
            run.blind
                .push((start, crate::clock::wall_ms() + BLIND_MARGIN_MS));
            run.extra.insert(
                "leader_back_s".into(),
                json!((crate::clock::wall_ms() - start) as f64 / 1000.0),
            );
        }
        Err(_) => run
            .failures
            .push("no leader after restarting every node".into()),
    }
    Ok(())
}
