//! The scenarios of SCENARIOS.md this harness runs, their seeded fault plans and their pass
//! criteria. [`run`] drives one: emulators, exporter, cluster, recorder, workload, faults,
//! drain, checker, report.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::checker::{self, FaultWindow, Figures};
use super::cluster::{Cluster, ClusterSpec, wait_until};
use super::error::HarnessError;
use super::faults::{self, Emulators};
use super::gray;
use super::latency::LatencyLinks;
use super::netns::{Hub, Network, ZoneNet};
use super::oracle;
use super::partition;
use super::recorder::Recorder;
use super::redis::{self, RedisServer};
use super::report::{FaultEvent, Report};
use super::workload::{Exporter, NAMESPACE, RULE_GROUPS, Script, Timing};

/// Series in every workload.
const SERIES: usize = 8;
/// How long the cluster gets to start and own every shard.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an API write may take (a leader election included).
const API_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the rules get to be evaluated once before the workload starts.
const FIRST_EVAL_TIMEOUT: Duration = Duration::from_secs(20);
/// After the script ends, how long the run waits for the expected notifications.
const DRAIN_MAX: Duration = Duration::from_secs(25);
/// After everything expected arrived, how long the run watches for duplicates.
const SETTLE: Duration = Duration::from_secs(2);
/// Pass bound of `reassign_s` (SCENARIOS.md S2).
const REASSIGN_MAX_S: f64 = 3.0;

/// A scenario of SCENARIOS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScenarioId {
    /// Steady state, no faults.
    S1,
    /// Kill every process of one zone; restart it later.
    S2,
    /// Kill the zone that holds the Raft leader.
    S3,
    /// Partition one zone from the others (processes alive), then heal.
    S4,
    /// Latency on one zone's links, then off again.
    S5,
    /// Latency on one zone's links switched on and off every few seconds.
    S6,
    /// Steal time on one zone's workers, then low again.
    S7,
    /// Latency on two zones' links at once.
    S8,
    /// SIGSTOP one worker past its lease, then SIGCONT.
    S9,
    /// Receivers answer 5xx, 429 with Retry-After, or hang.
    S10,
    /// The datasource is down for a while.
    S11,
    /// Restart every node at once.
    S12,
    /// Redis (the workers' shared rate limits) stops during delivery, then comes back.
    S13,
}

impl ScenarioId {
    /// Every implemented scenario, in matrix order.
    pub const ALL: [ScenarioId; 13] = [
        Self::S1,
        Self::S2,
        Self::S3,
        Self::S4,
        Self::S5,
        Self::S6,
        Self::S7,
        Self::S8,
        Self::S9,
        Self::S10,
        Self::S11,
        Self::S12,
        Self::S13,
    ];

    /// `S2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S1 => "S1",
            Self::S2 => "S2",
            Self::S3 => "S3",
            Self::S4 => "S4",
            Self::S5 => "S5",
            Self::S6 => "S6",
            Self::S7 => "S7",
            Self::S8 => "S8",
            Self::S9 => "S9",
            Self::S10 => "S10",
            Self::S11 => "S11",
            Self::S12 => "S12",
            Self::S13 => "S13",
        }
    }

    /// Whether the scenario cuts or slows links between zones, so that its cluster must run
    /// with one network namespace per zone (and the harness inside a private hub namespace,
    /// see [`super::netns::enter_private_hub`]).
    pub fn needs_private_network(self) -> bool {
        matches!(self, Self::S4) || self.slows_links()
    }

    /// Whether the scenario adds latency between zones (through [`LatencyLinks`]).
    pub fn slows_links(self) -> bool {
        matches!(self, Self::S5 | Self::S6 | Self::S8)
    }

    /// Mixed into the seed so that two scenarios with the same seed differ. Fixed per
    /// scenario (not the declaration order), so a seed replays the same run whatever
    /// scenarios are added.
    fn seed_salt(self) -> u64 {
        match self {
            Self::S1 => 0,
            Self::S2 => 1,
            Self::S3 => 2,
            Self::S9 => 3,
            Self::S10 => 4,
            Self::S11 => 5,
            Self::S12 => 6,
            Self::S4 => 7,
            Self::S7 => 8,
            Self::S13 => 9,
            Self::S5 => 10,
            Self::S6 => 11,
            Self::S8 => 12,
        }
    }
}

impl FromStr for ScenarioId {
    type Err = HarnessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|id| id.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| HarnessError::UnknownScenario(s.into()))
    }
}

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Which scenario.
    pub scenario: ScenarioId,
    /// The seed.
    pub seed: u64,
    /// The `tocsin` binary.
    pub binary: PathBuf,
    /// The run's directory (data dirs, logs, `cluster.json`, `report.json`).
    pub dir: PathBuf,
    /// How long the scripted workload lasts.
    pub duration: Duration,
    /// The private network namespace the caller runs in (from
    /// [`super::netns::enter_private_hub`]); required by the scenarios that
    /// [`ScenarioId::needs_private_network`], unused by the others.
    pub hub: Option<Arc<Hub>>,
}

impl RunConfig {
    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "tocsin-chaos run --scenario {} --seed {} --duration-s {}",
            self.scenario.as_str(),
            self.seed,
            self.duration.as_secs()
        )
    }
}

/// State shared by a run's steps.
pub(crate) struct Run {
    pub(crate) cluster: Cluster,
    pub(crate) emulators: Emulators,
    pub(crate) rng: StdRng,
    pub(crate) t0_ms: i64,
    pub(crate) timeline: Vec<FaultEvent>,
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
    pub(crate) fault: Option<FaultWindow>,
    pub(crate) failures: Vec<String>,
    pub(crate) end_of_script_ms: i64,
    /// Windows (wall ms) in which no evaluation could read the datasource.
    pub(crate) blind: Vec<oracle::Blind>,
    /// What S4 observed around its partition.
    pub(crate) partition: Option<partition::Facts>,
    /// What a gray-failure scenario (S5–S8) observed.
    pub(crate) gray: Option<gray::Facts>,
    /// The latency links between zones (S5, S6, S8).
    pub(crate) latency: Option<LatencyLinks>,
    /// S13's Redis server (taken while the fault runs).
    pub(crate) redis: Option<RedisServer>,
    /// What S13 observed.
    pub(crate) redis_facts: Option<redis::Facts>,
}

impl Run {
    /// Records `what` on the timeline at the current time.
    pub(crate) fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!(at_ms = crate::clock::wall_ms() - self.t0_ms, %what, "harness");
        self.timeline.push(FaultEvent {
            at_ms: crate::clock::wall_ms() - self.t0_ms,
            what,
        });
    }

    /// Sleeps until `offset_ms` after the workload's start (fault scheduling, not waiting for
    /// a condition).
    pub(crate) async fn at(&self, offset_ms: i64) {
        let wait = self.t0_ms + offset_ms - crate::clock::wall_ms();
        if let Ok(ms) = u64::try_from(wait) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// Runs one scenario and returns its report (also written to `DIR/report.json`).
pub async fn run(cfg: &RunConfig) -> Result<Report, HarnessError> {
    let started = tokio::time::Instant::now();
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    // One seed, mixed with the scenario so S2 and S3 with the same seed differ.
    let mut rng = StdRng::seed_from_u64(
        cfg.seed ^ cfg.scenario.seed_salt().wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let zones: Vec<String> = ["a", "b", "c"].iter().map(|z| (*z).to_string()).collect();
    let workers_per_zone = match cfg.scenario {
        // A paused worker must not be its zone's only one (that would be a dead zone).
        ScenarioId::S9 => 2,
        _ => rng.random_range(1..=2),
    };
    let duration_ms = i64::try_from(cfg.duration.as_millis()).unwrap_or(i64::MAX);
    let script = Arc::new(Script::generate(
        &mut rng,
        SERIES,
        duration_ms,
        Timing::default(),
    ));
    let mut latency = None;
    let network = if cfg.scenario.needs_private_network() {
        let hub = cfg
            .hub
            .as_deref()
            .ok_or(HarnessError::NeedsPrivateNetwork {
                scenario: cfg.scenario.as_str(),
            })?;
        let net = Arc::new(ZoneNet::create(hub, &zones).await?);
        if cfg.scenario.slows_links() {
            // Before any process starts: the routing catches new connections only.
            let links = LatencyLinks::start(&net, &zones, &stop).await?;
            links.proxy().set_seed(cfg.seed);
            latency = Some(links);
        }
        Network::Namespaced(net)
    } else {
        Network::Loopback
    };
    let emulators = Emulators::start(network.host_ip(), &stop).await?;
    std::fs::create_dir_all(&cfg.dir).map_err(|e| HarnessError::io(&cfg.dir, e))?;
    let redis = if cfg.scenario == ScenarioId::S13 {
        Some(RedisServer::start(&cfg.dir, network.host_ip()).await?)
    } else {
        None
    };
    let exporter = Exporter::start(script.clone(), network.host_ip(), &stop).await?;
    let spec = ClusterSpec {
        binary: cfg.binary.clone(),
        dir: cfg.dir.clone(),
        zones: zones.clone(),
        workers_per_zone,
        scrape_target: exporter.addr.clone(),
        claim_timeout_ms: 3000,
        provider_timeout_ms: 5000,
        network,
        redis: redis.as_ref().map(|r| r.addr.clone()),
    };
    let cluster = Cluster::launch(&spec, &stop).await?;
    let mut run = Run {
        cluster,
        emulators,
        rng,
        t0_ms: crate::clock::wall_ms(),
        timeline: Vec::new(),
        extra: serde_json::Map::new(),
        fault: None,
        failures: Vec::new(),
        end_of_script_ms: 0,
        blind: Vec::new(),
        partition: None,
        gray: None,
        latency,
        redis,
        redis_facts: None,
    };
    let result = drive(cfg, &mut run, &script, &exporter).await;
    run.cluster.shutdown().await;
    if let Some(links) = run.latency.take() {
        run.extra
            .insert("latency_links".into(), json!(links.stats()));
        links.shutdown().await;
    }
    let (figures, end_ms) = result?;
    let _ = end_ms;
    judge(cfg.scenario, &figures, &mut run.failures);
    if cfg.scenario == ScenarioId::S4 {
        partition::judge(run.partition.as_ref(), &mut run.failures);
    }
    let gray = run.gray.as_ref();
    match cfg.scenario {
        ScenarioId::S5 => {
            gray::judge_sick_zone(gray::Signal::Latency, gray, &figures, &mut run.failures);
        }
        ScenarioId::S6 => gray::judge_flapping(gray, &figures, &mut run.failures),
        ScenarioId::S7 => {
            gray::judge_sick_zone(gray::Signal::Steal, gray, &figures, &mut run.failures);
        }
        ScenarioId::S8 => gray::judge_two_zones(gray, &figures, &mut run.failures),
        _ => {}
    }
    if cfg.scenario == ScenarioId::S13 {
        redis::judge(run.redis_facts.as_ref(), &figures, &mut run.failures);
    }
    let report = Report {
        scenario: cfg.scenario.as_str().into(),
        seed: cfg.seed,
        replay: cfg.replay(),
        pass: run.failures.is_empty(),
        failures: run.failures,
        zones,
        workers_per_zone,
        timeline: run.timeline,
        figures,
        extra: run.extra,
        run_dir: cfg.dir.display().to_string(),
        wall_s: started.elapsed().as_secs_f64(),
    };
    report.write_json(&cfg.dir.join("report.json"))?;
    Ok(report)
}

/// Everything between launch and shutdown.
async fn drive(
    cfg: &RunConfig,
    run: &mut Run,
    script: &Script,
    exporter: &Exporter,
) -> Result<(Figures, i64), HarnessError> {
    run.cluster.wait_ready(READY_TIMEOUT).await?;
    // Decide the fault's zone now, so the recorder can avoid the node it will lose (or that
    // will be cut off: its watch stream would stall without an error).
    let plan = faults::plan(cfg.scenario, run).await;
    let recorder = Recorder::start(run.cluster.seeds(plan.avoid_zone.as_deref())).map_err(|e| {
        HarnessError::Api {
            what: "starting the log recorder".into(),
            reason: e.to_string(),
        }
    })?;
    configure(run, script, &recorder).await?;
    run.t0_ms = exporter.start_clock();
    run.end_of_script_ms = run.t0_ms + script.duration_ms;
    faults::execute(cfg.scenario, &plan, run).await?;
    run.at(script.duration_ms).await;
    // The fault schedule is known by now: the oracle accounts for the windows in which
    // nothing could read the datasource.
    let mut expected = oracle::expected(script, run.t0_ms, &run.blind);
    if cfg.scenario == ScenarioId::S13 {
        expected = oracle::with_slack(expected);
        if let Some(facts) = &mut run.redis_facts {
            redis::held_back(&mut expected, facts);
        }
    }
    let incidents = oracle::expected_incidents(&expected);
    drain(run, &expected, incidents).await;
    tokio::time::sleep(SETTLE).await;
    faults::after(cfg.scenario, run).await;
    save_api_state(&run.cluster).await?;
    let end_ms = crate::clock::wall_ms();
    let recording = recorder.finish().await;
    let observed = run.emulators.observed();
    run.emulators.save_logs(run.cluster.dir())?;
    save_evaluations(&recording, run.t0_ms, run.cluster.dir())?;
    let figures = checker::check(
        &expected,
        incidents,
        &observed,
        &recording,
        run.fault.as_ref(),
        end_ms,
    );
    save_timeline(run, &expected, &observed, &recording, &figures, end_ms)?;
    run.extra.insert("t0_ms".into(), json!(run.t0_ms));
    run.extra.insert("script".into(), json!(script));
    run.extra.insert("oracle".into(), json!(expected));
    run.extra
        .insert("blind_windows_ms".into(), json!(run.blind));
    Ok((figures, end_ms))
}

/// Applies the notification config and the rules, and waits until every rule group has
/// committed one evaluation (so the workload starts against a running pipeline).
async fn configure(run: &Run, script: &Script, recorder: &Recorder) -> Result<(), HarnessError> {
    let slack = run.redis.is_some().then(|| {
        run.emulators
            .slack
            .emulator()
            .url("/services/T0CSIN/B0TEAMB/chaos")
    });
    let notify = script.notify_yaml(
        &run.emulators.hook_a.emulator().url("/hook"),
        &run.emulators.hook_b.emulator().url("/hook"),
        &run.emulators.pagerduty.emulator().url("/v2/enqueue"),
        slack.as_deref(),
    );
    run.cluster
        .put("/api/v1/notify/config", notify, API_TIMEOUT)
        .await?;
    run.cluster
        .put(
            &format!("/api/v1/rules/{NAMESPACE}"),
            script.rules_yaml(),
            API_TIMEOUT,
        )
        .await?;
    wait_until(
        FIRST_EVAL_TIMEOUT,
        "every rule group evaluated once",
        || async { (recorder.groups_evaluated().len() >= RULE_GROUPS).then_some(()) },
    )
    .await
}

/// Waits (bounded by [`DRAIN_MAX`]) until every expected notification arrived.
async fn drain(run: &mut Run, expected: &[oracle::Expected], incidents: oracle::IncidentCounts) {
    let drained = wait_until(DRAIN_MAX, "every expected notification", || async {
        let f = checker::check(
            expected,
            incidents,
            &run.emulators.observed(),
            &Default::default(),
            None,
            0,
        );
        (f.missed == 0).then_some(())
    })
    .await;
    if drained.is_err() {
        run.note("drain ran out with notifications missing");
    }
}

/// Saves the cluster's own view at the end (alerts, notifications, status), for the
/// post-mortem.
async fn save_api_state(cluster: &Cluster) -> Result<(), HarnessError> {
    for (path, file) in [
        ("/api/v1/alerts", "api-alerts.json"),
        ("/api/v1/notifications", "api-notifications.json"),
        ("/api/v1/status", "api-status.json"),
    ] {
        if let Some(v) = cluster.get_json(path).await {
            let out = cluster.dir().join(file);
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            std::fs::write(&out, text).map_err(|e| HarnessError::io(&out, e))?;
        }
    }
    Ok(())
}

/// The pass criteria of SCENARIOS.md that the figures alone decide.
fn judge(scenario: ScenarioId, f: &Figures, failures: &mut Vec<String>) {
    let mut need = super::checker::needs(failures);
    need(f.missed == 0, format!("missed {} (want 0)", f.missed));
    need(
        f.group_labels_missing == 0,
        format!(
            "{} webhook notifications without their group labels",
            f.group_labels_missing
        ),
    );
    need(
        f.stale_epoch_commits == 0 && f.unowned_commits == 0,
        format!(
            "stale_epoch_commits {}, unowned {} (want 0)",
            f.stale_epoch_commits, f.unowned_commits
        ),
    );
    match scenario {
        ScenarioId::S1 => {
            need(
                f.duplicates_raw == 0,
                format!("duplicates_raw {} (want 0)", f.duplicates_raw),
            );
            need(f.spurious == 0, format!("spurious {} (want 0)", f.spurious));
        }
        ScenarioId::S2 | ScenarioId::S3 | ScenarioId::S4 => {
            need(
                f.duplicates_idempotent == 0,
                format!("duplicates_idempotent {} (want 0)", f.duplicates_idempotent),
            );
            need(
                f.reassign_s.is_some_and(|r| r <= REASSIGN_MAX_S),
                format!("reassign_s {:?} (want <= {REASSIGN_MAX_S})", f.reassign_s),
            );
            need(
                f.eval_gap_s.is_some_and(|g| g <= 1.0 + 3.0),
                format!("eval_gap_s {:?} (want <= interval + 3 s)", f.eval_gap_s),
            );
        }
        ScenarioId::S9 => {
            need(
                f.reassign_s.is_some(),
                "the paused worker's shards did not move".into(),
            );
        }
        ScenarioId::S10 => {
            need(
                f.retry_after_violations == 0,
                format!("{} resends ignored Retry-After", f.retry_after_violations),
            );
            need(
                f.retry_after_checked > 0,
                "no 429 with Retry-After was followed by a resend".into(),
            );
        }
        ScenarioId::S11 => {
            need(f.spurious == 0, format!("spurious {} (want 0)", f.spurious));
        }
        ScenarioId::S5
        | ScenarioId::S6
        | ScenarioId::S7
        | ScenarioId::S8
        | ScenarioId::S12
        | ScenarioId::S13 => {}
    }
}

/// The fault window of a scenario that hit `zone`'s workers.
pub(crate) fn zone_window(run: &Run, zone: &str, start_ms: i64) -> FaultWindow {
    let workers = run
        .cluster
        .workers_of(zone)
        .into_iter()
        .collect::<BTreeSet<_>>();
    FaultWindow {
        start_ms,
        zone: Some(zone.into()),
        zone_workers: workers.clone(),
        workers,
    }
}

/// Writes `evaluations.json`: per rule group, each committed evaluation as (slot, commit
/// arrival), ms after the workload's start, for the post-mortem.
fn save_evaluations(
    recording: &super::recorder::Recording,
    t0_ms: i64,
    dir: &std::path::Path,
) -> Result<(), HarnessError> {
    let mut groups: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    for e in &recording.entries {
        for c in &e.changes {
            if let tocsin_state::model::Command::Shard {
                op: tocsin_state::model::ShardOp::EvalCycle { group, eval_ms, .. },
                ..
            } = c
            {
                groups
                    .entry(format!("{}/{}", group.namespace, group.name))
                    .or_default()
                    .push((eval_ms - t0_ms, e.recv_ms - t0_ms));
            }
        }
    }
    let path = dir.join("evaluations.json");
    let text = serde_json::to_string(&groups).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| HarnessError::io(&path, e))
}

/// Each zone's committed states (the checker's `zone_states`) and the shards its workers own,
/// replayed from the log.
fn zone_lanes(
    run: &Run,
    recording: &super::recorder::Recording,
    figures: &Figures,
) -> std::collections::BTreeMap<String, super::timeline::ZoneLane> {
    use tocsin_state::model::Command;
    let zone_of: std::collections::BTreeMap<&str, &str> = run
        .cluster
        .procs
        .iter()
        .filter(|p| p.role == super::process::Role::Worker)
        .map(|p| (p.id.as_str(), p.zone.as_str()))
        .collect();
    let mut lanes: std::collections::BTreeMap<String, super::timeline::ZoneLane> = run
        .cluster
        .nodes()
        .map(|n| {
            let states = figures
                .zone_states
                .get(&n.zone)
                .into_iter()
                .flatten()
                .map(|c| (c.at_ms, c.state.clone()))
                .collect();
            let lane = super::timeline::ZoneLane {
                states,
                shards: Vec::new(),
            };
            (n.zone.clone(), lane)
        })
        .collect();
    let mut owners: std::collections::BTreeMap<tocsin_state::model::ShardId, String> =
        Default::default();
    for e in &recording.entries {
        for c in &e.changes {
            match c {
                Command::Assign { shards } => {
                    for (s, o) in shards {
                        match o {
                            Some(w) => owners.insert(*s, w.to_string()),
                            None => owners.remove(s),
                        };
                    }
                }
                Command::RemoveWorker { id } => owners.retain(|_, w| w != id.as_str()),
                _ => {}
            }
        }
        for (zone, lane) in &mut lanes {
            let n = owners
                .values()
                .filter(|w| zone_of.get(w.as_str()) == Some(&zone.as_str()))
                .count();
            if lane.shards.last().map(|(_, m)| *m) != Some(n) {
                lane.shards.push((e.recv_ms, n));
            }
        }
    }
    lanes
}

/// Writes `timeline.svg`.
fn save_timeline(
    run: &Run,
    expected: &[oracle::Expected],
    observed: &checker::Observed,
    recording: &super::recorder::Recording,
    figures: &Figures,
    end_ms: i64,
) -> Result<(), HarnessError> {
    use super::timeline::{Arrival, TimelineInput, render};
    let mut input = TimelineInput {
        t0_ms: run.t0_ms,
        end_ms,
        faults: run
            .timeline
            .iter()
            .map(|e| (run.t0_ms + e.at_ms, e.what.clone()))
            .collect(),
        zones: zone_lanes(run, recording, figures),
        ..TimelineInput::default()
    };
    for e in &recording.entries {
        for c in &e.changes {
            if let tocsin_state::model::Command::Shard {
                op: tocsin_state::model::ShardOp::EvalCycle { group, .. },
                ..
            } = c
            {
                input
                    .evaluations
                    .entry(format!("{}/{}", group.namespace, group.name))
                    .or_default()
                    .push(e.recv_ms);
            }
        }
    }
    for e in expected {
        input
            .expected
            .entry(e.key.receiver.clone())
            .or_default()
            .push((
                e.due_ms,
                format!("{} {:?}", e.key.series, e.key.status),
                e.optional,
            ));
    }
    let lanes = observed
        .hooks
        .iter()
        .map(|(k, v)| (k.clone(), v))
        .chain(std::iter::once((
            "pagerduty".to_string(),
            &observed.pagerduty,
        )));
    for (lane, reqs) in lanes {
        for r in reqs {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            let what = body["alerts"][0]["labels"]["series"]
                .as_str()
                .map(|s| format!("{s} {}", body["status"].as_str().unwrap_or("")))
                .or_else(|| body["event_action"].as_str().map(str::to_owned))
                .unwrap_or_default();
            input
                .arrivals
                .entry(lane.clone())
                .or_default()
                .push(Arrival {
                    at_ms: r.time_ms,
                    processed: r.processed,
                    label: format!("{what}: {} ({:?})", r.answer.status, r.fault),
                });
        }
    }
    let path = run.cluster.dir().join("timeline.svg");
    std::fs::write(&path, render(&input)).map_err(|e| HarnessError::io(&path, e))
}
