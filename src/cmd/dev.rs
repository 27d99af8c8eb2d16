//! `tocsin dev`: a whole cluster on this machine in one command, for a first look and demos.
//!
//! Starts one `tocsin node` child process per zone (zones `a`, `b`, `c`, ...), each with its
//! own data dir under `--dir`, writes `DIR/cluster.json` (every process's pid, role, zone and
//! addresses; chaos tooling reads it), prints a live status line, and on Ctrl-C stops the
//! children cleanly (SIGTERM, then SIGKILL after a grace period). A second start with the same
//! `--dir` reuses the data and the addresses recorded in `cluster.json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use tokio_util::sync::CancellationToken;

use super::dev_demo;
use crate::http::status::Status;

/// Time children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the live status refreshes.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Flags of `tocsin dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for data dirs, logs and cluster.json (reused by a second start).
    #[arg(long, default_value = ".tocsin-dev")]
    dir: PathBuf,
    /// Number of zones, one node each (3 or 5).
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// Workers started in each zone.
    #[arg(long, default_value_t = 1)]
    workers_per_zone: usize,
}

/// One process of the dev cluster, as recorded in `cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// `node`, `worker` or `emulator`.
    pub role: String,
    /// Node id (nodes) or worker id.
    pub id: String,
    /// Zone.
    pub zone: String,
    /// OS process id (0 when not running).
    pub pid: u32,
    /// gRPC address.
    pub grpc: String,
    /// HTTP address.
    pub http: String,
    /// Emulator kind (`pagerduty`, ...), null otherwise.
    pub kind: Option<String>,
}

/// `DIR/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    /// Every process.
    pub processes: Vec<ProcessEntry>,
}

/// Runs the dev cluster until Ctrl-C.
pub async fn run(args: DevArgs) -> i32 {
    match dev(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tocsin dev: {e:#}");
            1
        }
    }
}

fn free_or(preferred: u16) -> Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn plan(dir: &Path, zones: usize, workers_per_zone: usize) -> Result<ClusterFile> {
    let path = dir.join("cluster.json");
    if path.exists() {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let file: ClusterFile =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        let nodes = file.processes.iter().filter(|p| p.role == "node").count();
        if nodes != zones {
            bail!(
                "{} holds a {nodes}-zone cluster; pass --zones {nodes} or use another --dir",
                dir.display()
            );
        }
        let mut file = file;
        file.processes.retain(|p| p.role == "node");
        add_workers(&mut file, workers_per_zone);
        return Ok(file);
    }
    let names = ["a", "b", "c", "d", "e"];
    let mut processes = Vec::new();
    for (i, zone) in names.iter().take(zones).enumerate() {
        let grpc = free_or(7101 + i as u16)?;
        let http = free_or(9101 + i as u16)?;
        processes.push(ProcessEntry {
            role: "node".into(),
            id: (i + 1).to_string(),
            zone: (*zone).into(),
            pid: 0,
            grpc: format!("127.0.0.1:{grpc}"),
            http: format!("127.0.0.1:{http}"),
            kind: None,
        });
    }
    let mut file = ClusterFile { processes };
    add_workers(&mut file, workers_per_zone);
    Ok(file)
}

fn add_workers(file: &mut ClusterFile, per_zone: usize) {
    let zones: Vec<String> = file
        .processes
        .iter()
        .filter(|p| p.role == "node")
        .map(|p| p.zone.clone())
        .collect();
    for zone in zones {
        for k in 1..=per_zone {
            file.processes.push(ProcessEntry {
                role: "worker".into(),
                id: format!("w-{zone}-{k}"),
                zone: zone.clone(),
                pid: 0,
                grpc: String::new(),
                http: String::new(),
                kind: None,
            });
        }
    }
}

fn spawn_worker(exe: &Path, dir: &Path, p: &ProcessEntry, all: &[ProcessEntry]) -> Result<Child> {
    // Each worker queries the embedded store of its own zone's node.
    let datasource = all
        .iter()
        .find(|q| q.role == "node" && q.zone == p.zone)
        .map(|q| format!("--datasource=http://{}", q.http));
    let external = all
        .iter()
        .find(|q| q.role == "node" && q.zone == p.zone)
        .map(|q| format!("--external-url=http://{}", q.http));
    let log_path = dir.join("logs").join(format!("{}.log", p.id));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let join: Vec<&str> = all
        .iter()
        .filter(|q| q.role == "node")
        .map(|q| q.grpc.as_str())
        .collect();
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .arg(format!("--id={}", p.id))
        .arg(format!("--zone={}", p.zone))
        .arg(format!("--join={}", join.join(",")))
        .arg("--profile=test")
        .args(datasource)
        .args(external);
    cmd.stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("start worker {}", p.id))
}

fn spawn_node(exe: &Path, dir: &Path, p: &ProcessEntry, all: &[ProcessEntry]) -> Result<Child> {
    let log_path = dir.join("logs").join(format!("node-{}.log", p.id));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg(format!("--id={}", p.id))
        .arg(format!("--zone={}", p.zone))
        .arg(format!(
            "--data-dir={}",
            dir.join(format!("node-{}", p.id)).display()
        ))
        .arg(format!("--listen={}", p.grpc))
        .arg(format!("--http={}", p.http))
        .arg("--profile=test")
        .arg("--cluster-name=tocsin-dev")
        .arg(format!("--config={}", dir.join("node.toml").display()));
    for q in all.iter().filter(|q| q.role == "node") {
        cmd.arg(format!(
            "--peer={}={}@{},http={}",
            q.id, q.zone, q.grpc, q.http
        ));
    }
    cmd.stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
    cmd.spawn().with_context(|| format!("start node {}", p.id))
}

async fn dev(args: DevArgs) -> Result<()> {
    if !matches!(args.zones, 3 | 5) {
        bail!(
            "--zones must be 3 or 5 (one Raft voter per zone, odd so a zone loss keeps a quorum)"
        );
    }
    std::fs::create_dir_all(args.dir.join("logs"))
        .with_context(|| format!("create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let exe = std::env::current_exe().context("locate the tocsin binary")?;
    let mut file = plan(&dir, args.zones, args.workers_per_zone)?;
    let demo_cancel = CancellationToken::new();
    let exporter = dev_demo::start_exporter(demo_cancel.clone()).await?;
    let node_https: Vec<String> = file
        .processes
        .iter()
        .filter(|p| p.role == "node")
        .map(|p| p.http.clone())
        .collect();
    dev_demo::write_node_config(&dir.join("node.toml"), &node_https, &exporter)?;
    let rules_path = dir.join("rules.yml");
    if !rules_path.exists() {
        std::fs::write(&rules_path, dev_demo::DEMO_RULES)?;
    }
    let emulators = tocsin_chaos::set::EmulatorSet::start_local(&demo_cancel)
        .await
        .context("start the provider emulators")?;
    let notify_path = dir.join("alertmanager.yml");
    if !notify_path.exists() {
        std::fs::write(&notify_path, dev_demo::demo_notify_config(&emulators))?;
    }
    let snapshot = file.processes.clone();
    let mut children = Vec::new();
    for p in &mut file.processes {
        let child = if p.role == "node" {
            spawn_node(&exe, &dir, p, &snapshot)?
        } else {
            spawn_worker(&exe, &dir, p, &snapshot)?
        };
        p.pid = child.id().unwrap_or(0);
        children.push((p.clone(), child));
    }
    // Emulators are recorded after the processes are spawned: they live in this process.
    for e in emulators.manifest() {
        file.processes.push(ProcessEntry {
            role: "emulator".into(),
            id: e.kind.as_str().into(),
            zone: String::new(),
            pid: std::process::id(),
            grpc: String::new(),
            http: e.http.to_string(),
            kind: Some(e.kind.as_str().into()),
        });
    }
    let json = serde_json::to_string_pretty(&file)?;
    std::fs::write(dir.join("cluster.json"), json)?;

    println!(
        "tocsin dev: {} zones, data in {}",
        args.zones,
        dir.display()
    );
    for (p, _) in children.iter().filter(|(p, _)| p.role == "worker") {
        println!(
            "  worker {} zone {}  log {}",
            p.id,
            p.zone,
            dir.join("logs").join(format!("{}.log", p.id)).display()
        );
    }
    for (p, _) in children.iter().filter(|(p, _)| p.role == "node") {
        println!(
            "  node {} zone {}  grpc {}  http http://{}  log {}",
            p.id,
            p.zone,
            p.grpc,
            p.http,
            dir.join("logs")
                .join(format!("node-{}.log", p.id))
                .display()
        );
    }
    println!("  cluster file: {}", dir.join("cluster.json").display());
    println!(
        "  demo exporter: http://{exporter}/metrics (disk fills and latency spikes every {} s)",
        dev_demo::CYCLE_S
    );
    println!(
        "  sample rules: {} (applied as namespace \"demo\"; edit and `tocsin rules apply`)",
        rules_path.display()
    );
    println!(
        "  try: tocsin status --server http://{}    (Ctrl-C stops everything)",
        children[0].0.http
    );

    println!(
        "  notification config: {} (pages go to the PagerDuty, Slack and Twilio emulators; \
         `tocsin notify apply` after editing)",
        notify_path.display()
    );
    println!(
        "  pages received: curl http://{}/requests   (PagerDuty emulator)",
        emulators.pagerduty.emulator().addr()
    );
    match std::fs::read(&notify_path) {
        Ok(body) => {
            if let Err(e) = dev_demo::put_when_ready(
                &children[0].0.http,
                "/api/v1/notify/config",
                body,
                &notify_path.display().to_string(),
            )
            .await
            {
                eprintln!("tocsin dev: {e:#}");
            }
        }
        Err(e) => eprintln!("tocsin dev: cannot read {}: {e}", notify_path.display()),
    }
    if let Err(e) = dev_demo::apply_rules(&children[0].0.http, &rules_path).await {
        eprintln!("tocsin dev: {e:#}");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let mut last_line = String::new();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let mut line = String::new();
                for (p, child) in &mut children {
                    if let Ok(Some(status)) = child.try_wait() {
                        line.push_str(&format!("{} {} EXITED ({status}); ", p.role, p.id));
                    }
                }
                let s: Option<Status> = match http.get(format!("http://{}/api/v1/status", children[0].0.http)).send().await {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                line.push_str(&match s {
                    Some(s) => format!(
                        "leader: {}  term {}  commit {}  workers {}  shards assigned {}/{}  zones {}",
                        s.leader.map_or("none".into(), |l| format!("node {l}")),
                        s.term,
                        s.commit_index,
                        s.workers.len(),
                        s.shards.assigned,
                        u32::from(s.shards.eval) + u32::from(s.shards.notify),
                        if s.zones.is_empty() { "-".to_string() } else { s.zones.iter().map(|z| format!("{}={}", z.zone, z.state)).collect::<Vec<_>>().join(",") },
                    ),
                    None => "status: node 1 not answering".into(),
                });
                let firing: Vec<String> = match http.get(format!("http://{}/api/v1/alerts?state=firing", children[0].0.http)).send().await {
                    Ok(r) => r.json::<Vec<serde_json::Value>>().await.unwrap_or_default().iter().map(|a| format!("{}@{}", a["rule"].as_str().unwrap_or("?"), a["zone"].as_str().unwrap_or("-"))).collect(),
                    Err(_) => Vec::new(),
                };
                line.push_str(&format!("  firing [{}]", firing.join(", ")));
                line.push_str(&format!(
                    "  delivered: pagerduty {} incidents, slack {} messages, sms {}",
                    emulators.pagerduty.incidents().incidents.len(),
                    emulators.slack.emulator().requests().len(),
                    emulators.twilio.messages().len(),
                ));
                if line != last_line {
                    println!("[status] {line}");
                    last_line = line;
                }
            }
        }
    }
    println!("\nstopping...");
    demo_cancel.cancel();
    for (_, child) in &children {
        if let Some(pid) = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for (p, mut child) in children {
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "node {} did not stop within {STOP_GRACE:?}; killing it",
                    p.id
                );
                let _ = child.kill().await;
            }
        }
    }
    println!(
        "stopped; data kept in {} (a second `tocsin dev` reuses it)",
        dir.display()
    );
    Ok(())
}
