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
    /// For zones on a real network: heartbeat 200 ms, election 1–2 s, so a cross-zone
    /// hiccup does not depose a healthy leader.
    ///
    /// The heartbeat is also the **replication budget**: openraft 0.9 bounds every
    /// AppendEntries (heartbeat or not) by `heartbeat_interval`, the follower's fsync
    /// included. A follower whose round trip exceeds it never acknowledges anything, and a
    /// leader whose links all exceed it commits nothing, yet stays leader (its heartbeats
    /// still arrive, late). 200 ms covers a sick zone's added latency (tens of ms, see
    /// `reference/zone-health.md`) on top of a slow fsync.
    pub fn production() -> Self {
        Self {
            heartbeat: Duration::from_millis(200),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            snapshot_every_entries: 20_000,
        }
    }

    /// For tests and `tocsin dev` on one machine: heartbeat (and replication budget, see
    /// [`RaftTiming::production`]) 100 ms, elections in 300–600 ms. Three heartbeats per
    /// election timeout is enough on loopback, where nothing is lost; what the timeout
    /// guards against there is a stalled process, and the heartbeat does not change that.
    pub fn test() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
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
