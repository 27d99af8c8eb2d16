//! `cluster.json`, as `tocsin dev` and the launcher write it, and `kill-zone` over it.

use std::path::Path;

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use super::error::HarnessError;
use super::process::send_signal;

/// One process of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// `node`, `worker` or `emulator`.
    pub role: String,
    /// Node id or worker id.
    pub id: String,
    /// Zone (empty for emulators).
    pub zone: String,
    /// OS process id (0 when not running).
    pub pid: u32,
    /// gRPC address (nodes).
    #[serde(default)]
    pub grpc: String,
    /// HTTP address.
    #[serde(default)]
    pub http: String,
    /// Emulator kind, null otherwise.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// Every process.
    pub processes: Vec<ProcessEntry>,
}

impl ClusterFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| HarnessError::ClusterFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes it to `path` (via a temporary file and a rename).
    pub fn write(&self, path: &Path) -> Result<(), HarnessError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| HarnessError::ClusterFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| HarnessError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| HarnessError::io(path, e))
    }

    /// The node and worker processes of `zone` that have a pid. Emulators are never in a
    /// zone (and share the pid of the process that serves them).
    pub fn zone_processes(&self, zone: &str) -> Vec<&ProcessEntry> {
        self.processes
            .iter()
            .filter(|p| {
                p.zone == zone && p.pid != 0 && matches!(p.role.as_str(), "node" | "worker")
            })
            .collect()
    }
}

/// What happened to one process of a `kill-zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOutcome {
    /// The process.
    pub entry: ProcessEntry,
    /// `None` when SIGKILL was delivered; the reason otherwise (e.g. already gone).
    pub error: Option<String>,
}

/// SIGKILLs every node and worker of `zone` listed in the cluster file at `path`.
pub fn kill_zone(path: &Path, zone: &str) -> Result<Vec<KillOutcome>, HarnessError> {
    let file = ClusterFile::read(path)?;
    let targets = file.zone_processes(zone);
    if targets.is_empty() {
        let zones: std::collections::BTreeSet<&str> = file
            .processes
            .iter()
            .map(|p| p.zone.as_str())
            .filter(|z| !z.is_empty())
            .collect();
        return Err(HarnessError::ClusterFile {
            path: path.to_path_buf(),
            reason: format!(
                "no running node or worker in zone `{zone}` (zones: {})",
                zones.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(targets
        .into_iter()
        .map(|p| KillOutcome {
            entry: p.clone(),
            error: send_signal(p.pid, Signal::KILL).err(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_processes_skip_emulators_and_stopped_processes() {
        let text = r#"{"processes":[
            {"role":"node","id":"1","zone":"a","pid":11,"grpc":"g","http":"h","kind":null},
            {"role":"node","id":"2","zone":"b","pid":12,"grpc":"g","http":"h","kind":null},
            {"role":"worker","id":"w-b-1","zone":"b","pid":13,"grpc":"","http":"","kind":null},
            {"role":"worker","id":"w-b-2","zone":"b","pid":0,"grpc":"","http":"","kind":null},
            {"role":"emulator","id":"pagerduty","zone":"","pid":1,"grpc":"","http":"h","kind":"pagerduty"}]}"#;
        let file: ClusterFile = serde_json::from_str(text).expect("parses");
        let ids: Vec<&str> = file
            .zone_processes("b")
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(ids, vec!["2", "w-b-1"]);
        assert!(file.zone_processes("z").is_empty());
    }
}
