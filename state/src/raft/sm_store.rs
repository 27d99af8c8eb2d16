//! The state-machine adapter: applies committed entries to [`Machine`], snapshots it to disk,
//! installs snapshots from the leader, and publishes applied changes to the [`WatchHub`].
//!
//! The machine lives in memory; durability comes from the Raft log plus the latest snapshot
//! file (`snapshot.bin`, written to a temporary file, fsynced, renamed, directory fsynced).
//! On restart the snapshot is loaded and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tocsin_proto::codec;

use super::{Batch, BatchResult, Entry, LogId, StorageError, StoredMembership, TypeConfig, io_err};
use crate::machine::Machine;
use crate::model::{Change, NodeId, NodeInfo, Query, QueryResult};
use crate::probe::{Probe, Stage};
use crate::watch::WatchHub;

const SNAPSHOT_FILE: &str = "snapshot.bin";

#[derive(Debug, Default)]
struct SmState {
    machine: Machine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Shared {
    state: RwLock<SmState>,
    hub: WatchHub,
    dir: PathBuf,
    snapshot_seq: AtomicU64,
    probe: Probe,
}

/// The openraft state machine (cheap to clone; clones share state).
#[derive(Debug, Clone)]
pub struct SmStore {
    shared: Arc<Shared>,
}

/// Read access to the state machine for services (queries, watch).
#[derive(Debug, Clone)]
pub struct SmReader {
    shared: Arc<Shared>,
}

impl SmReader {
    /// Answers `query` from the local state; returns the applied index it reflects.
    pub fn query(&self, query: &Query) -> (u64, QueryResult) {
        let state = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        let index = state.last_applied.map_or(0, |l| l.index);
        (index, state.machine.query(query))
    }

    /// The watch hub.
    pub fn hub(&self) -> &WatchHub {
        &self.shared.hub
    }

    /// Last applied log index.
    pub fn applied_index(&self) -> u64 {
        self.shared
            .state
            .read()
            .expect("state machine lock poisoned")
            .last_applied
            .map_or(0, |l| l.index)
    }
}

impl SmStore {
    /// Opens the state machine in `dir`, loading the latest snapshot if there is one. Apply
    /// durations go to `probe`.
    pub fn open(dir: &Path, probe: Probe) -> Result<Self, String> {
        let mut state = SmState::default();
        let hub = WatchHub::new();
        let path = dir.join(SNAPSHOT_FILE);
        if path.exists() {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            let stored: StoredSnapshot = codec::decode_state("snapshot file", &bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            state.machine = codec::decode_state("snapshot data", &stored.data)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            state.last_applied = stored.meta.last_log_id;
            state.membership = stored.meta.last_membership.clone();
            hub.reset(state.last_applied.map_or(0, |l| l.index));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                hub,
                dir: dir.to_path_buf(),
                snapshot_seq: AtomicU64::new(0),
                probe,
            }),
        })
    }

    /// A reader sharing this state machine.
    pub fn reader(&self) -> SmReader {
        SmReader {
            shared: self.shared.clone(),
        }
    }

    fn read_stored(&self) -> Result<Option<StoredSnapshot>, String> {
        let path = self.shared.dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => codec::decode_state("snapshot file", &bytes)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("read {}: {e}", path.display())),
        }
    }

    async fn persist(&self, stored: &StoredSnapshot) -> Result<(), String> {
        let bytes = codec::encode(stored);
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, SNAPSHOT_FILE, &bytes))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Writes `dir/name` crash-safely: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    f.sync_all()
        .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &dst).map_err(|e| format!("rename to {}: {e}", dst.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, meta) = {
            let state = self
                .shared
                .state
                .read()
                .expect("state machine lock poisoned");
            let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let index = state.last_applied.map_or(0, |l| l.index);
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id: format!("{index}-{seq}"),
            };
            (codec::encode(&state.machine), meta)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self
            .shared
            .state
            .read()
            .expect("state machine lock poisoned");
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let mut state = self
            .shared
            .state
            .write()
            .expect("state machine lock poisoned");
        for entry in entries {
            let index = entry.log_id.index;
            state.last_applied = Some(entry.log_id);
            let mut changes: Arc<[Change]> = Arc::from([]);
            let result = match entry.payload {
                EntryPayload::Blank => BatchResult::default(),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    BatchResult::default()
                }
                EntryPayload::Normal(Batch { commands }) => {
                    let results: Vec<_> = commands
                        .iter()
                        .map(|command| state.machine.apply(index, command))
                        .collect();
                    // Watchers see the applied commands: usually all of them, shared as is.
                    changes = if results.iter().all(Result::is_ok) {
                        commands
                    } else {
                        commands
                            .iter()
                            .zip(&results)
                            .filter(|(_, r)| r.is_ok())
                            .map(|(c, _)| c.clone())
                            .collect()
                    };
                    BatchResult { results }
                }
            };
            self.shared.hub.push(index, changes);
            out.push(result);
        }
        drop(state);
        self.shared.probe.since(Stage::Apply, started);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let machine: Machine = codec::decode_state("snapshot data", &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        let mut state = self
            .shared
            .state
            .write()
            .expect("state machine lock poisoned");
        state.machine = machine;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.shared
            .hub
            .reset(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = self
            .read_stored()
            .map_err(|e| StorageIOError::read_snapshot(None, io_err(e)))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
