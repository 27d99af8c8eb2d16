//! Raft timing profiles.

use std::time::Duration;

/// Raft timers and snapshot settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout, randomised in [min, max).
    pub election_min: Duration,
    /// Upper bound of the election timeout.
    pub election_max: Duration,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every_entries: u64,
}

impl RaftTiming {
    /// For zones on a real network: heartbeat 100 ms, election 1–2 s (etcd-style), so a
    /// cross-zone hiccup does not depose a healthy leader.
    pub fn production() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            snapshot_every_entries: 20_000,
        }
    }

    /// For tests and `tocsin dev` on one machine: elections in 300–600 ms.
    pub fn test() -> Self {
        Self {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            snapshot_every_entries: 2_000,
        }
    }

    /// The openraft config for this timing.
    pub(crate) fn to_config(&self, cluster_name: &str) -> Result<openraft::Config, String> {
        let ms = |d: Duration| d.as_millis() as u64;
        openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_min),
            election_timeout_max: ms(self.election_max),
            // openraft's 200 ms default chunk timeout wedges snapshot replication on a busy
            // box (a timed-out chunk is resent forever); give each chunk 10 s.
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1024 * 1024,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            // Keep enough log after a snapshot that a follower installing a slow snapshot can
            // continue from the log instead of needing another snapshot (openraft#1706).
            max_in_snapshot_log_to_keep: self.snapshot_every_entries,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}
