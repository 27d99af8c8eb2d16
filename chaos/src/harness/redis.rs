//! S13: Redis stops while notifications are being delivered.
//!
//! The workers share per-endpoint rate limits through a real `redis-server` the harness
//! starts (`tocsin worker --redis`). Team b's notifications also go to a Slack incoming
//! webhook, whose emulator enforces Slack's 1 message/s per webhook and answers 429 with
//! `Retry-After` above it. Redis is SIGKILLed mid-run and started again later. What the run
//! measures ([`Facts`]):
//!
//! - 429 answers from Slack while Redis ran: the workers together must stay under the limit
//!   (none expected);
//! - each worker's Slack sends while Redis was down, told apart by their `User-Agent`
//!   (`Tocsin/VERSION (worker ID)`): each worker must keep to its local share (one send per
//!   3 × 1.1 s) — the limit is still respected per worker;
//! - that some worker noticed and limited locally (its log), and that sends happened during
//!   the outage at all (else the scenario proved nothing);
//! - the common figures: every expected notification, Slack included, arrived.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::{Child, Command};

use super::checker::{FaultWindow, Figures};
use super::cluster::wait_until;
use super::error::HarnessError;
use super::faults::Plan;
use super::process::Role;
use super::scenario::Run;
use crate::RecordedRequest;

/// Where Debian's `redis-server` package installs the server.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long a starting Redis gets to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Tocsin's Slack limit (alerter `limit_of("slack")`): 10 sends per 11 s, no burst.
const SLACK_INTERVAL_MS: i64 = 1_100;
/// The share a worker takes locally when Redis is unreachable (`tocsin worker` uses 3).
const LOCAL_SHARE: i64 = 3;
/// Sends admitted by Redis just before it died may still be in flight this long after.
const IN_FLIGHT_MS: i64 = 1_000;
/// A worker back on Redis within this long after it restarted (reconnect backoff ≤ 1 s).
const RECONNECT_MS: i64 = 2_000;
/// Timer and network slack when checking one worker's spacing.
const SPACING_SLACK_MS: i64 = 150;

/// A `redis-server` the harness runs, without persistence, on a fixed port of `ip` (so a
/// restart comes back where the workers look for it).
#[derive(Debug)]
pub struct RedisServer {
    /// `HOST:PORT`.
    pub addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts it and waits until it listens. Fails naming the package when the server is
    /// not installed.
    pub async fn start(dir: &Path, ip: IpAddr) -> Result<Self, HarnessError> {
        if !Path::new(REDIS_SERVER).exists() {
            return Err(HarnessError::ToolMissing {
                tool: "redis-server",
                package: "redis-server",
            });
        }
        let port = super::ports::reserve(ip).map_err(|source| HarnessError::Bind {
            what: "a port for redis",
            source,
        })?;
        let mut server = Self {
            addr: format!("{ip}:{port}"),
            dir: dir.to_path_buf(),
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = self.dir.join("redis.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| HarnessError::io(&log, e))?;
        let (host, port) = self.addr.rsplit_once(':').unwrap_or(("127.0.0.1", "6379"));
        let child = Command::new(REDIS_SERVER)
            .args([
                "--bind",
                host,
                "--port",
                port,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(file.try_clone().map_err(|e| HarnessError::io(&log, e))?)
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                what: "redis-server".into(),
                source,
            })?;
        self.child = Some(child);
        let addr = self.addr.clone();
        wait_until(LISTEN_TIMEOUT, "redis to listen", || async {
            tokio::net::TcpStream::connect(&addr).await.ok().map(drop)
        })
        .await
    }

    /// SIGKILL (nothing is flushed: Redis simply disappears).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill().await;
        self.spawn().await
    }
}

/// What S13 observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Facts {
    /// When Redis was killed, wall ms.
    pub stop_ms: i64,
    /// When it listened again, wall ms.
    pub restart_ms: i64,
    /// Slack requests and 429 answers among them, while Redis ran (before the kill, and from
    /// the reconnect after the restart on).
    pub slack_requests_redis_up: usize,
    /// Of which answered 429.
    pub slack_429_redis_up: usize,
    /// Slack requests per worker while Redis was down.
    pub slack_requests_redis_down: BTreeMap<String, usize>,
    /// Slack requests answered 429 while Redis was down (several workers, each at its share,
    /// may together exceed the limit: a clean refusal, retried after `Retry-After`).
    pub slack_429_redis_down: usize,
    /// Closest two sends of one worker while Redis was down, ms (`None`: no worker sent
    /// twice).
    pub closest_local_sends_ms: Option<i64>,
    /// Pairs of one worker's sends closer than its local share allows.
    pub local_spacing_violations: usize,
    /// Slack firings due while Redis was down, which the oracle made optional (see
    /// [`held_back`]).
    pub optional_slack_firings: usize,
    /// Workers whose log says they limited locally.
    pub workers_limiting_locally: Vec<String>,
}

/// S13's fault: kill Redis at `plan.at_ms`, start it again `plan.hold_ms` later.
pub(crate) async fn execute(run: &mut Run, plan: &Plan) -> Result<(), HarnessError> {
    let Some(mut redis) = run.redis.take() else {
        return Err(HarnessError::Api {
            what: "S13".into(),
            reason: "no redis-server was started".into(),
        });
    };
    run.at(plan.at_ms).await;
    redis.kill().await;
    let stop_ms = crate::clock::wall_ms();
    run.fault = Some(FaultWindow {
        start_ms: stop_ms,
        ..FaultWindow::default()
    });
    run.note("SIGKILL redis-server");
    run.at(plan.at_ms + plan.hold_ms).await;
    let restarted = redis.restart().await;
    let restart_ms = crate::clock::wall_ms();
    run.redis = Some(redis);
    restarted?;
    run.note("redis-server started again");
    run.redis_facts = Some(Facts {
        stop_ms,
        restart_ms,
        ..Facts::default()
    });
    Ok(())
}

/// While Redis is down each worker sends to Slack at a third of the rate, so a firing due
/// then can wait in the outbox past its own resolve, and the outbox then sends the resolve
/// only (a stale trigger is dropped once a newer resolve exists). Such a Slack firing is
/// optional; its resolve stays required.
pub(crate) fn held_back(expected: &mut [super::oracle::Expected], facts: &mut Facts) {
    for e in expected.iter_mut().filter(|e| {
        e.key.receiver == super::checker::SLACK_RECEIVER
            && e.key.status == super::oracle::NoticeStatus::Firing
            && e.due_ms >= facts.stop_ms
            && e.due_ms < facts.restart_ms + RECONNECT_MS
    }) {
        e.optional = true;
        facts.optional_slack_firings += 1;
    }
}

/// After the drain: reads the Slack log and the workers' logs into the facts.
pub(crate) fn after(run: &mut Run) {
    let Some(mut facts) = run.redis_facts.take() else {
        return;
    };
    let slack = run.emulators.slack.emulator().requests();
    measure(&slack, &mut facts);
    facts.workers_limiting_locally = run
        .cluster
        .procs
        .iter()
        .filter(|p| p.role == Role::Worker)
        .filter(|p| p.log_text().contains("redis failed, limiting locally"))
        .map(|p| p.id.clone())
        .collect();
    run.extra.insert("redis".into(), json!(facts));
    run.redis_facts = Some(facts);
}

/// The worker a request came from, by its `User-Agent`.
fn sender(r: &RecordedRequest) -> String {
    let ua = r.headers.get("user-agent").map_or("", String::as_str);
    ua.split_once("(worker ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(ua)
        .to_string()
}

fn measure(slack: &[RecordedRequest], facts: &mut Facts) {
    let down_from = facts.stop_ms + IN_FLIGHT_MS;
    let down_to = facts.restart_ms;
    let mut local: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in slack {
        let limited = r.answer.status == 429;
        if r.time_ms < facts.stop_ms || r.time_ms >= facts.restart_ms + RECONNECT_MS {
            facts.slack_requests_redis_up += 1;
            facts.slack_429_redis_up += usize::from(limited);
        } else if r.time_ms >= down_from && r.time_ms < down_to {
            facts.slack_429_redis_down += usize::from(limited);
            let w = sender(r);
            *facts
                .slack_requests_redis_down
                .entry(w.clone())
                .or_default() += 1;
            local.entry(w).or_default().push(r.time_ms);
        }
    }
    let share_ms = SLACK_INTERVAL_MS * LOCAL_SHARE;
    for times in local.values_mut() {
        times.sort_unstable();
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            facts.closest_local_sends_ms =
                Some(facts.closest_local_sends_ms.map_or(gap, |c| c.min(gap)));
            if gap < share_ms - SPACING_SLACK_MS {
                facts.local_spacing_violations += 1;
            }
        }
    }
}

/// S13's criteria beyond missed 0 and the fencing audit.
pub(crate) fn judge(facts: Option<&Facts>, f: &Figures, failures: &mut Vec<String>) {
    let Some(facts) = facts else {
        failures.push("S13 recorded nothing about its fault".into());
        return;
    };
    let mut need = super::checker::needs(failures);
    need(
        f.duplicates_raw == 0,
        format!(
            "duplicates_raw {} (want 0: no failover happened)",
            f.duplicates_raw
        ),
    );
    need(
        facts.slack_429_redis_up == 0,
        format!(
            "Slack answered 429 to {} of {} requests while Redis ran (the shared limit should \
             keep every worker together under 1/s)",
            facts.slack_429_redis_up, facts.slack_requests_redis_up
        ),
    );
    need(
        facts.local_spacing_violations == 0,
        format!(
            "{} pairs of one worker's Slack sends were closer than its local share ({} ms) \
             while Redis was down (closest {:?} ms)",
            facts.local_spacing_violations,
            SLACK_INTERVAL_MS * LOCAL_SHARE,
            facts.closest_local_sends_ms
        ),
    );
    need(
        facts.slack_requests_redis_down.values().sum::<usize>() > 0,
        "no Slack send happened while Redis was down: the seed tested nothing".into(),
    );
    need(
        !facts.workers_limiting_locally.is_empty(),
        "no worker logged that it limited locally".into(),
    );
}
