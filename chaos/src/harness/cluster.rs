//! The launcher: a real cluster from the built `tocsin` binary. One node per zone (zones `a`,
//! `b`, `c`), `workers_per_zone` workers in each, own data dirs under the run's directory.
//! The [`Network`] decides where the processes live: on loopback with ports from the OS, or
//! each zone in its own network namespace behind the hub ([`super::netns`]), where links
//! between zones can be cut. Each node's embedded datasource scrapes the harness's
//! exporter; each worker evaluates through its zone's node behind a [`TcpProxy`] the
//! harness can switch off. The launcher writes `cluster.json` in the format `tocsin dev`
//! uses, so `tocsin-chaos kill-zone` works on either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::cluster_file::{ClusterFile, ProcessEntry};
use super::error::HarnessError;
use super::netns::{NODE_GRPC_PORT, NODE_HTTP_PORT, Network};
use super::process::{Proc, Role};
use super::proxy::TcpProxy;
use super::steal::StealFiles;

/// Deadline of one HTTP call to a node.
const HTTP_DEADLINE: Duration = Duration::from_secs(2);
/// Polling period of every wait.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The embedded datasource's scrape interval and timeout: fast, so the oracle's timing
/// stays tight, yet long enough that a stall of the loaded test machine does not time a
/// scrape out. A failed scrape marks every series stale and so resolves every alert, as in
/// Prometheus; at 200 ms one 300 ms stall did that in a steady-state run (CI, S1 seed 2).
const SCRAPE_INTERVAL_MS: u64 = 500;

/// What to launch.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `tocsin` binary.
    pub binary: PathBuf,
    /// Data dirs, logs, `node.toml` and `cluster.json` go here.
    pub dir: PathBuf,
    /// Zones, one node each (an odd number, so a zone loss keeps a quorum).
    pub zones: Vec<String>,
    /// Workers started in each zone.
    pub workers_per_zone: usize,
    /// `HOST:PORT` of the exporter every node scrapes.
    pub scrape_target: String,
    /// The workers' `--claim-timeout-ms`.
    pub claim_timeout_ms: u64,
    /// The workers' `--provider-timeout-ms`.
    pub provider_timeout_ms: u64,
    /// Loopback, or one network namespace per zone.
    pub network: Network,
    /// Redis the workers share rate limits through (`HOST:PORT`), if any.
    pub redis: Option<String>,
}

/// A running cluster. Dropping it kills every process.
#[derive(Debug)]
pub struct Cluster {
    /// Every process, nodes first.
    pub procs: Vec<Proc>,
    /// The datasource proxy of each zone (its workers query through it).
    pub datasource_proxies: BTreeMap<String, TcpProxy>,
    /// The workers' stat files: steal time per zone.
    pub steal: StealFiles,
    dir: PathBuf,
    http: reqwest::Client,
    /// Declared after `procs`: the namespaces outlive the processes in them.
    network: Network,
}

fn free_addr() -> Result<String, HarnessError> {
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let port = super::ports::reserve(ip).map_err(|source| HarnessError::Bind {
        what: "a node port",
        source,
    })?;
    Ok(format!("{ip}:{port}"))
}

impl Cluster {
    /// Builds and starts every process; does not wait for readiness.
    pub async fn launch(
        spec: &ClusterSpec,
        stop: &CancellationToken,
    ) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| HarnessError::io(&spec.dir, e))?;
        let config = spec.dir.join("node.toml");
        let toml = format!(
            "[embedded]\nscrape_configs = [{{ job_name = \"chaos\", targets = [\"{}\"], scrape_interval_ms = {SCRAPE_INTERVAL_MS}, scrape_timeout_ms = {SCRAPE_INTERVAL_MS} }}]\n",
            spec.scrape_target
        );
        std::fs::write(&config, toml).map_err(|e| HarnessError::io(&config, e))?;
        let mut addrs = Vec::new();
        for zone in &spec.zones {
            addrs.push(node_addrs(&spec.network, zone)?);
        }
        let mut procs = node_procs(spec, &config, &addrs)?;
        let join: Vec<&str> = addrs.iter().map(|(g, _)| g.as_str()).collect();
        let mut datasource_proxies = BTreeMap::new();
        let mut workers = Vec::new();
        for ((_, http), zone) in addrs.iter().zip(&spec.zones) {
            let proxy = TcpProxy::start(http.clone(), spec.network.host_ip(), stop).await?;
            for k in 1..=spec.workers_per_zone {
                let id = format!("w-{zone}-{k}");
                let args = vec![
                    "worker".to_string(),
                    format!("--id={id}"),
                    format!("--zone={zone}"),
                    format!("--join={}", join.join(",")),
                    "--profile=test".into(),
                    format!("--datasource=http://{}", proxy.addr),
                    format!("--external-url=http://{http}"),
                    format!("--claim-timeout-ms={}", spec.claim_timeout_ms),
                    format!("--provider-timeout-ms={}", spec.provider_timeout_ms),
                    format!(
                        "--stat-file={}",
                        spec.dir.join(format!("stat-{id}")).display()
                    ),
                ];
                let mut args = args;
                if let Some(redis) = &spec.redis {
                    args.push(format!("--redis={redis}"));
                }
                workers.push((id.clone(), zone.clone()));
                procs.push(
                    Proc::new(
                        Role::Worker,
                        &id,
                        zone,
                        &spec.binary,
                        args,
                        spec.dir.join(format!("{id}.log")),
                    )
                    .in_netns(spec.network.netns_of(zone)?),
                );
            }
            datasource_proxies.insert(zone.clone(), proxy);
        }
        // The files must exist before the workers first read them.
        let (steal, _) = StealFiles::start(&spec.dir, &workers, stop)?;
        for p in &mut procs {
            p.start()?;
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(HTTP_DEADLINE)
            .build()
            .map_err(|e| HarnessError::Api {
                what: "building the HTTP client".into(),
                reason: e.to_string(),
            })?;
        let cluster = Self {
            procs,
            datasource_proxies,
            steal,
            dir: spec.dir.clone(),
            http,
            network: spec.network.clone(),
        };
        cluster.write_cluster_file()?;
        Ok(cluster)
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rewrites `cluster.json` (pids change on restart).
    pub fn write_cluster_file(&self) -> Result<(), HarnessError> {
        let file = ClusterFile {
            processes: self
                .procs
                .iter()
                .map(|p| ProcessEntry {
                    role: p.role.as_str().into(),
                    id: p.id.clone(),
                    zone: p.zone.clone(),
                    pid: p.pid().unwrap_or(0),
                    grpc: p.grpc.clone(),
                    http: p.http.clone(),
                    kind: None,
                })
                .collect(),
        };
        file.write(&self.dir.join("cluster.json"))
    }

    /// Nodes' gRPC addresses, leaving out `avoid_zone`'s. Left out, not merely last: the
    /// store client starts from a random seed, and a node that is cut off (rather than
    /// killed) keeps a watch stream open without sending anything.
    pub fn seeds(&self, avoid_zone: Option<&str>) -> Vec<String> {
        self.nodes()
            .filter(|p| Some(p.zone.as_str()) != avoid_zone)
            .map(|p| p.grpc.clone())
            .collect()
    }

    /// The node processes.
    pub fn nodes(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(|p| p.role == Role::Node)
    }

    /// Worker ids of `zone`.
    pub fn workers_of(&self, zone: &str) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.role == Role::Worker && p.zone == zone)
            .map(|p| p.id.clone())
            .collect()
    }

    /// The process named `id` with `role`.
    pub fn proc_mut(&mut self, role: Role, id: &str) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.role == role && p.id == id)
    }

    /// GET `path` from the first running node that answers 2xx.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        for n in self.nodes().filter(|n| n.is_running()) {
            if let Ok(r) = self
                .http
                .get(format!("http://{}{path}", n.http))
                .send()
                .await
                && r.status().is_success()
                && let Ok(v) = r.json().await
            {
                return Some(v);
            }
        }
        None
    }

    /// The status as the leader sees it (its balancer is the acting one). A node cut off
    /// from the others may still believe it leads: of the nodes that say they lead, the one
    /// with the highest term wins.
    pub async fn leader_status(&self) -> Option<Value> {
        let mut best: Option<Value> = None;
        for n in self.nodes().filter(|n| n.is_running()) {
            if let Some(s) = self.status_of(&n.http).await
                && s["leader"].as_u64().map(|l| l.to_string()).as_deref() == Some(n.id.as_str())
                && best
                    .as_ref()
                    .is_none_or(|b| s["term"].as_u64() > b["term"].as_u64())
            {
                best = Some(s);
            }
        }
        best
    }

    /// `GET /api/v1/status` of one node.
    pub async fn status_of(&self, http: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("http://{http}/api/v1/status"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The leader's node id and zone, as the running nodes report it.
    pub async fn leader(&self) -> Option<(String, String)> {
        let s = self.leader_status().await?;
        let id = s["node"]["id"].as_u64()?.to_string();
        let zone = s["node"]["zone"].as_str()?.to_string();
        Some((id, zone))
    }

    /// Waits until every shard is owned and every running worker registered.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let workers = self
            .procs
            .iter()
            .filter(|p| p.role == Role::Worker && p.is_running())
            .count();
        wait_until(timeout, "every shard owned", || async {
            let s = self.leader_status().await?;
            let total = s["shards"]["eval"].as_u64()? + s["shards"]["notify"].as_u64()?;
            let owners = s["workers"]
                .as_array()?
                .iter()
                .filter(|w| w["shards"].as_u64().unwrap_or(0) > 0)
                .count();
            (total > 0 && s["shards"]["assigned"].as_u64() == Some(total) && owners == workers)
                .then_some(())
        })
        .await
    }

    /// PUTs `body` at `path` through any running node, retrying until accepted or `timeout`.
    pub async fn put(
        &self,
        path: &str,
        body: String,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let mut last = String::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            for n in self.nodes().filter(|n| n.is_running()) {
                match self
                    .http
                    .put(format!("http://{}{path}", n.http))
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) if r.status().is_client_error() => {
                        return Err(HarnessError::Api {
                            what: format!("PUT {path}"),
                            reason: r.text().await.unwrap_or_default(),
                        });
                    }
                    Ok(r) => {
                        last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default())
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        Err(HarnessError::Api {
            what: format!("PUT {path}"),
            reason: format!("not accepted within {timeout:?}: {last}"),
        })
    }

    /// SIGKILLs every process of `zone`; returns their names.
    pub async fn kill_zone(&mut self, zone: &str) -> Result<Vec<String>, HarnessError> {
        let mut killed = Vec::new();
        for p in self
            .procs
            .iter_mut()
            .filter(|p| p.zone == zone && p.is_running())
        {
            p.kill().await?;
            killed.push(p.name());
        }
        Ok(killed)
    }

    /// Restarts every stopped process of `zone` (nodes first: its workers query them).
    pub fn restart_zone(&mut self, zone: &str) -> Result<(), HarnessError> {
        for role in [Role::Node, Role::Worker] {
            for p in self
                .procs
                .iter_mut()
                .filter(|p| p.zone == zone && p.role == role && !p.is_running())
            {
                p.start()?;
            }
        }
        self.write_cluster_file()
    }

    /// Cuts every link between `zone` and the other zones (its processes keep running and
    /// keep reaching the harness). Needs the namespaced network.
    pub async fn partition(&self, zone: &str) -> Result<(), HarnessError> {
        self.zone_net()?.partition(zone).await
    }

    /// Removes the partition; returns how many packets it dropped.
    pub async fn heal(&self) -> Result<u64, HarnessError> {
        self.zone_net()?.heal().await
    }

    fn zone_net(&self) -> Result<&super::netns::ZoneNet, HarnessError> {
        self.network.zones().ok_or_else(|| HarnessError::Tool {
            command: "partitioning a zone".into(),
            reason: "the cluster runs on loopback; partitions need the namespaced network".into(),
        })
    }

    /// Kills every process (the run is over; nothing needs a clean exit), then deletes the
    /// zones' namespaces.
    pub async fn shutdown(&mut self) {
        for p in &mut self.procs {
            if let Err(err) = p.kill().await {
                tracing::warn!(%err, "killing a cluster process");
            }
        }
        if let Some(net) = self.network.zones() {
            net.remove().await;
        }
    }
}

/// A node's gRPC and HTTP addresses: free loopback ports, or the zone's address with fixed
/// ports (the zone's namespace is private to it).
fn node_addrs(network: &Network, zone: &str) -> Result<(String, String), HarnessError> {
    match network.zones() {
        None => Ok((free_addr()?, free_addr()?)),
        Some(net) => {
            let ip = net.zone_ip(zone)?;
            Ok((
                format!("{ip}:{NODE_GRPC_PORT}"),
                format!("{ip}:{NODE_HTTP_PORT}"),
            ))
        }
    }
}

/// The node processes: one per zone, each a voter, all scraping the exporter.
fn node_procs(
    spec: &ClusterSpec,
    config: &Path,
    addrs: &[(String, String)],
) -> Result<Vec<Proc>, HarnessError> {
    let peers: Vec<String> = addrs
        .iter()
        .zip(&spec.zones)
        .enumerate()
        .map(|(i, ((g, h), z))| format!("--peer={}={z}@{g},http={h}", i + 1))
        .collect();
    let mut procs = Vec::new();
    for (i, ((grpc, http), zone)) in addrs.iter().zip(&spec.zones).enumerate() {
        let id = (i + 1).to_string();
        let mut args = vec![
            "node".to_string(),
            format!("--id={id}"),
            format!("--zone={zone}"),
            format!("--data-dir={}", spec.dir.join(format!("n{id}")).display()),
            format!("--listen={grpc}"),
            format!("--http={http}"),
            "--profile=test".into(),
            "--cluster-name=tocsin-chaos".into(),
            format!("--config={}", config.display()),
        ];
        args.extend(peers.iter().cloned());
        let mut p = Proc::new(
            Role::Node,
            &id,
            zone,
            &spec.binary,
            args,
            spec.dir.join(format!("n{id}.log")),
        )
        .in_netns(spec.network.netns_of(zone)?);
        p.grpc = grpc.clone();
        p.http = http.clone();
        procs.push(p);
    }
    Ok(procs)
}

/// Polls `cond` every [`POLL_EVERY`] until it returns `Some`, or fails naming `what`.
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut cond: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.into(),
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
