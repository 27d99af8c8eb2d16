//! `tocsin node` configuration: a TOML file and flags, parsed into a raw struct that rejects
//! unknown fields, then validated into [`NodeSettings`] before any port is bound. Flags win
//! over the file. Every error names the field and what would fix it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tocsin_alerter::datasource::embedded::{EmbeddedSettings, RawEmbeddedStoreConfig};
use tocsin_balancer::BalancerConfig;
use tocsin_state::batcher::BatchConfig;
use tocsin_state::model::{NodeId, NodeInfo, ZoneId};
use tocsin_state::raft::timing::RaftTiming;

/// The config file's shape. Every field is optional here so flags can supply it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    /// Raft node id (>= 1).
    pub id: Option<u64>,
    /// This node's zone.
    pub zone: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address (Raft + store + workers).
    pub listen: Option<String>,
    /// HTTP listen address (API, metrics, health).
    pub http: Option<String>,
    /// Initial members, `ID=ZONE@GRPC_ADDR` or `ID=ZONE@GRPC_ADDR,http=HTTP_ADDR`.
    pub peers: Option<Vec<String>>,
    /// Cluster name, recorded in each data dir.
    pub cluster_name: Option<String>,
    /// `production` (default) or `test` timing.
    pub profile: Option<String>,
    /// Raft timing overrides.
    pub raft: Option<RawRaft>,
    /// Batching overrides.
    pub batch: Option<RawBatch>,
    /// The embedded metrics store (query API, remote write, scraping) served on the HTTP port.
    pub embedded: Option<RawEmbeddedStoreConfig>,
}

/// `[raft]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaft {
    pub heartbeat_interval_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    pub snapshot_every_entries: Option<u64>,
}

/// `[batch]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max_commands: Option<usize>,
    pub max_bytes: Option<usize>,
    pub linger_us: Option<u64>,
    pub max_in_flight: Option<usize>,
}

/// Validated node settings.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub id: NodeId,
    pub zone: ZoneId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub peers: BTreeMap<NodeId, NodeInfo>,
    pub cluster_name: String,
    pub timing: RaftTiming,
    pub batch: BatchConfig,
    pub balancer: BalancerConfig,
    pub embedded: EmbeddedSettings,
}

impl RawNodeConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("config {}: {e}", path.display()))
    }

    /// Overlays `flags` on `self` (flags win).
    pub fn merge(mut self, flags: RawNodeConfig) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if flags.$f.is_some() { self.$f = flags.$f; } )* };
        }
        take!(
            id,
            zone,
            data_dir,
            listen,
            http,
            cluster_name,
            profile,
            raft,
            batch,
            embedded
        );
        if flags.peers.as_ref().is_some_and(|p| !p.is_empty()) {
            self.peers = flags.peers;
        }
        self
    }

    /// Validates into settings; the error names the field.
    pub fn validate(self) -> Result<NodeSettings> {
        let id = self
            .id
            .ok_or_else(|| anyhow!("missing id: pass --id N or set `id` in the config file"))?;
        if id == 0 {
            bail!("invalid id: node ids start at 1");
        }
        let zone = self
            .zone
            .ok_or_else(|| anyhow!("missing zone: pass --zone NAME or set `zone`"))?;
        let zone = ZoneId::new(zone).map_err(|e| anyhow!("invalid zone: {e}"))?;
        let data_dir = self
            .data_dir
            .ok_or_else(|| anyhow!("missing data_dir: pass --data-dir DIR or set `data_dir`"))?;
        let listen = parse_addr("listen", self.listen.as_deref().unwrap_or("127.0.0.1:7101"))?;
        let http = parse_addr("http", self.http.as_deref().unwrap_or("127.0.0.1:9101"))?;
        let mut peers = BTreeMap::new();
        for (i, spec) in self.peers.unwrap_or_default().iter().enumerate() {
            let (pid, info) =
                parse_peer(spec).map_err(|e| anyhow!("invalid peers[{i}] {spec:?}: {e}"))?;
            if peers.insert(pid, info).is_some() {
                bail!("invalid peers[{i}] {spec:?}: node {pid} is listed twice");
            }
        }
        if peers.is_empty() {
            // A single-node cluster of just this node.
            peers.insert(
                id,
                NodeInfo {
                    zone: zone.to_string(),
                    grpc: listen.to_string(),
                    http: http.to_string(),
                },
            );
        }
        let me = peers
            .get_mut(&id)
            .ok_or_else(|| anyhow!("invalid peers: this node (id {id}) is not among them; add --peer {id}={zone}@{listen}"))?;
        if me.zone != zone.as_str() {
            bail!(
                "invalid zone: --zone {zone} but peers say node {id} is in zone {}",
                me.zone
            );
        }
        if me.http.is_empty() {
            me.http = http.to_string();
        }
        let (mut timing, balancer) = match self.profile.as_deref().unwrap_or("production") {
            "production" => (RaftTiming::production(), BalancerConfig::production()),
            "test" => (RaftTiming::test(), BalancerConfig::test()),
            other => bail!("invalid profile {other:?}: use \"production\" or \"test\""),
        };
        if let Some(r) = self.raft {
            let ms = Duration::from_millis;
            if let Some(v) = r.heartbeat_interval_ms {
                timing.heartbeat = ms(v);
            }
            if let Some(v) = r.election_timeout_min_ms {
                timing.election_min = ms(v);
            }
            if let Some(v) = r.election_timeout_max_ms {
                timing.election_max = ms(v);
            }
            if let Some(v) = r.snapshot_every_entries {
                if v < 10 {
                    bail!("invalid raft.snapshot_every_entries {v}: must be at least 10");
                }
                timing.snapshot_every_entries = v;
            }
        }
        if timing.heartbeat.is_zero() || timing.election_min < timing.heartbeat * 3 {
            bail!(
                "invalid raft.election_timeout_min_ms {:?}: must be at least 3x raft.heartbeat_interval_ms {:?}",
                timing.election_min,
                timing.heartbeat
            );
        }
        if timing.election_max <= timing.election_min {
            bail!(
                "invalid raft.election_timeout_max_ms: must be greater than raft.election_timeout_min_ms"
            );
        }
        let mut batch = BatchConfig::default();
        if let Some(b) = self.batch {
            if let Some(v) = b.max_commands {
                batch.max_commands = positive("batch.max_commands", v)?;
            }
            if let Some(v) = b.max_bytes {
                batch.max_bytes = positive("batch.max_bytes", v)?;
            }
            if let Some(v) = b.max_in_flight {
                batch.max_in_flight = positive("batch.max_in_flight", v)?;
            }
            if let Some(v) = b.linger_us {
                if v > 100_000 {
                    bail!("invalid batch.linger_us {v}: at most 100000 (100 ms)");
                }
                batch.linger = Duration::from_micros(v);
            }
        }
        // The embedded store keeps its on-disk log in the data dir unless told otherwise.
        let mut embedded_raw = self.embedded.unwrap_or_default();
        if embedded_raw.wal_dir.is_none() {
            embedded_raw.wal_dir = Some(data_dir.join("metrics-wal"));
        }
        let embedded = embedded_raw
            .validate()
            .map_err(|e| anyhow!("invalid embedded.{}: {}", e.field, e.reason))?;
        Ok(NodeSettings {
            id,
            zone,
            data_dir,
            listen,
            http,
            peers,
            cluster_name: self.cluster_name.unwrap_or_else(|| "tocsin".into()),
            timing,
            batch,
            balancer,
            embedded,
        })
    }
}

fn positive(field: &str, v: usize) -> Result<usize> {
    if v == 0 {
        bail!("invalid {field}: must be at least 1");
    }
    Ok(v)
}

fn parse_addr(field: &str, s: &str) -> Result<SocketAddr> {
    s.parse()
        .map_err(|e| anyhow!("invalid {field} {s:?}: {e} (expected IP:PORT, e.g. 127.0.0.1:7101)"))
}

/// Parses `ID=ZONE@GRPC` or `ID=ZONE@GRPC,http=HTTP`.
pub fn parse_peer(spec: &str) -> Result<(NodeId, NodeInfo)> {
    let (id, rest) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("expected ID=ZONE@HOST:PORT"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| anyhow!("node id {id:?} is not a number"))?;
    if id == 0 {
        bail!("node ids start at 1");
    }
    let (zone, addrs) = rest
        .split_once('@')
        .ok_or_else(|| anyhow!("expected ID=ZONE@HOST:PORT"))?;
    let zone = ZoneId::new(zone).map_err(|e| anyhow!("{e}"))?;
    let (grpc, http) = match addrs.split_once(",http=") {
        Some((g, h)) => (g, h),
        None => (addrs, ""),
    };
    parse_addr("grpc address", grpc)?;
    if !http.is_empty() {
        parse_addr("http address", http)?;
    }
    Ok((
        id,
        NodeInfo {
            zone: zone.to_string(),
            grpc: grpc.to_string(),
            http: http.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawNodeConfig {
        RawNodeConfig {
            id: Some(1),
            zone: Some("a".into()),
            data_dir: Some("/tmp/x".into()),
            peers: Some(vec![
                "1=a@127.0.0.1:7101".into(),
                "2=b@127.0.0.1:7102,http=127.0.0.1:9102".into(),
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = toml::from_str::<RawNodeConfig>("id = 1\nzonee = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("zonee"), "{e}");
        let e = toml::from_str::<RawNodeConfig>("[raft]\nheartbeat_ms = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat_ms"), "{e}");
    }

    #[test]
    fn validates_and_names_fields() {
        let s = base().validate().unwrap();
        assert_eq!(s.peers[&2].http, "127.0.0.1:9102");
        assert_eq!(s.peers[&1].http, "127.0.0.1:9101", "own http filled in");
        let e = RawNodeConfig {
            zone: Some("b".into()),
            ..base()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("zone"), "{e}");
        let e = RawNodeConfig {
            id: Some(3),
            ..base()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("not among them"), "{e}");
        let e = RawNodeConfig {
            listen: Some("nope".into()),
            ..base()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid listen"), "{e}");
        let e = RawNodeConfig {
            profile: Some("fast".into()),
            ..base()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("profile"), "{e}");
        let raft = RawRaft {
            election_timeout_min_ms: Some(100),
            heartbeat_interval_ms: Some(100),
            ..Default::default()
        };
        let e = RawNodeConfig {
            raft: Some(raft),
            ..base()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("election_timeout_min_ms"), "{e}");
        let e = parse_peer("x=a@1.2.3.4:5").unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = RawNodeConfig {
            zone: Some("b".into()),
            id: Some(2),
            ..Default::default()
        };
        let merged = base().merge(flags);
        assert_eq!(merged.id, Some(2));
        assert_eq!(merged.zone.as_deref(), Some("b"));
        assert_eq!(
            merged.peers.as_ref().unwrap().len(),
            2,
            "empty flag peers keep the file's"
        );
    }
}
