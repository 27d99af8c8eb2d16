//! Shared helpers for the end-to-end tests: spawn real `tocsin` processes on loopback ports
//! chosen by the OS, wait on conditions with deadlines, send signals.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

/// An HTTP client (with the process's TLS provider installed first).
pub fn http_client() -> reqwest::Client {
    tocsin_proto::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// The `tocsin` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tocsin"))
}

/// A loopback port that was free a moment ago, for a process that must be told its address
/// before it starts; from below the ephemeral range, so no connection takes it meanwhile
/// (see `tocsin_chaos::harness::ports`).
pub fn free_port() -> u16 {
    tocsin_chaos::harness::ports::reserve(std::net::Ipv4Addr::LOCALHOST.into())
        .expect("a free loopback port")
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns `tocsin ARGS` with stdout and stderr appended to `log`, killed if dropped.
fn spawn_logged(args: &[String], log: &Path, filter: &str) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(bin())
        .args(args)
        .env("TOCSIN_LOG", filter)
        .stdout(file.try_clone().expect("clone log"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "spawn tocsin {}: {e}",
                args.first().map_or("", String::as_str)
            )
        })
}

/// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) to a process.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// One `tocsin node` process of a test cluster.
pub struct NodeProc {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    args: Vec<String>,
    log: PathBuf,
    pub child: Option<Child>,
}

impl NodeProc {
    /// Starts (or restarts) the process with its recorded arguments; stderr goes to its log.
    pub fn start(&mut self) {
        self.child = Some(spawn_logged(&self.args, &self.log, "info,openraft=warn"));
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill");
        }
    }

    /// SIGTERM and wait for the exit status (bounded).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(c.id().expect("pid"), "TERM");
        tokio::time::timeout(Duration::from_secs(15), c.wait())
            .await
            .expect("exits within 15 s")
            .expect("wait")
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Builds the processes of a 3-node cluster (zones a, b, c) under `dir`, not yet started.
pub fn three_nodes(dir: &Path) -> Vec<NodeProc> {
    three_nodes_with(dir, &[])
}

/// Like [`three_nodes`], with extra arguments for every node (e.g. `--config FILE`).
pub fn three_nodes_with(dir: &Path, extra: &[String]) -> Vec<NodeProc> {
    let zones = ["a", "b", "c"];
    let addrs: Vec<(String, String)> = (0..3)
        .map(|_| {
            (
                format!("127.0.0.1:{}", free_port()),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, (g, h))| format!("--peer={}={}@{g},http={h}", i + 1, zones[i]))
        .collect();
    addrs
        .iter()
        .enumerate()
        .map(|(i, (g, h))| {
            let id = i as u64 + 1;
            let mut args = vec![
                "node".to_string(),
                format!("--id={id}"),
                format!("--zone={}", zones[i]),
                format!("--data-dir={}", dir.join(format!("n{id}")).display()),
                format!("--listen={g}"),
                format!("--http={h}"),
                "--profile=test".to_string(),
            ];
            args.extend(peers.iter().cloned());
            args.extend(extra.iter().cloned());
            NodeProc {
                id,
                grpc: g.clone(),
                http: h.clone(),
                args,
                log: dir.join(format!("n{id}.log")),
                child: None,
            }
        })
        .collect()
}

/// A `tocsin worker` process.
pub struct WorkerProc {
    pub id: String,
    pub zone: String,
    args: Vec<String>,
    log: PathBuf,
    pub child: Option<Child>,
}

impl WorkerProc {
    /// Adds an argument (e.g. `--datasource=URL`).
    pub fn arg(mut self, a: String) -> Self {
        self.args.push(a);
        self
    }

    /// A worker of `zone` joining `nodes`, sampling steal from `stat_file` if given.
    pub fn new(
        dir: &Path,
        id: &str,
        zone: &str,
        nodes: &[NodeProc],
        stat_file: Option<&Path>,
    ) -> Self {
        let join: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
        let mut args = vec![
            "worker".to_string(),
            format!("--id={id}"),
            format!("--zone={zone}"),
            format!("--join={}", join.join(",")),
            "--profile=test".to_string(),
        ];
        if let Some(f) = stat_file {
            args.push(format!("--stat-file={}", f.display()));
        }
        Self {
            id: id.into(),
            zone: zone.into(),
            args,
            log: dir.join(format!("{id}.log")),
            child: None,
        }
    }

    /// Starts the process.
    pub fn start(&mut self) {
        self.child = Some(spawn_logged(&self.args, &self.log, "info"));
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill");
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `GET /api/v1/status` of the node at `http`, as JSON.
pub async fn status(http: &str) -> Option<serde_json::Value> {
    let r = http_client()
        .get(format!("http://{http}/api/v1/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The status as seen by the node that currently leads (its balancer is the acting one).
pub async fn leader_status(nodes: &[NodeProc]) -> Option<serde_json::Value> {
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        if let Some(s) = status(&n.http).await
            && s["leader"].as_u64() == Some(n.id)
        {
            return Some(s);
        }
    }
    None
}

/// Shards owned per zone, from a status document.
pub fn shards_by_zone(s: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for w in s["workers"].as_array().into_iter().flatten() {
        *m.entry(w["zone"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += w["shards"].as_u64().unwrap_or(0);
    }
    m
}

/// A zone's state in a status document.
pub fn zone_state(s: &serde_json::Value, zone: &str) -> String {
    s["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|z| z["zone"] == zone)
        .and_then(|z| z["state"].as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// Writes a `/proc/stat`-format file whose counters a test advances to inject steal time.
pub struct StatFile {
    pub path: PathBuf,
    total: u64,
    steal: u64,
}

impl StatFile {
    /// A stat file at `path` with zero steal so far.
    pub fn new(path: PathBuf) -> Self {
        let mut s = Self {
            path,
            total: 1_000_000,
            steal: 0,
        };
        s.advance(0, 0.0);
        s
    }

    /// Adds `jiffies` of CPU time of which `steal` fraction was stolen, and rewrites the file.
    pub fn advance(&mut self, jiffies: u64, steal: f64) {
        let stolen = (jiffies as f64 * steal) as u64;
        self.total += jiffies;
        self.steal += stolen;
        let user = self.total - self.steal;
        let text = format!("cpu  {user} 0 0 0 0 0 0 {} 0 0\n", self.steal);
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write stat file");
        std::fs::rename(&tmp, &self.path).expect("rename stat file");
    }
}

/// Three nodes (zones a, b, c) whose embedded stores scrape `target` every 200 ms, started.
pub fn scraping_nodes(dir: &Path, target: &str) -> Vec<NodeProc> {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!("[embedded]\nscrape_configs = [{{ job_name = \"test\", targets = [\"{target}\"], scrape_interval_ms = 200, scrape_timeout_ms = 200 }}]\n"),
    )
    .expect("write node.toml");
    let mut nodes = three_nodes_with(dir, &[format!("--config={}", config.display())]);
    for n in &mut nodes {
        n.start();
    }
    nodes
}

/// Waits until every eval and notify shard has an owner.
pub async fn wait_all_shards_owned(nodes: &[NodeProc]) {
    wait_for(Duration::from_secs(30), "all shards owned", || async {
        let s = leader_status(nodes).await?;
        (s["shards"]["assigned"].as_u64() == Some(320)).then_some(())
    })
    .await;
}
