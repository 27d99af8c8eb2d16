//! The durable Raft log: redb, written by one dedicated I/O thread with group commit, and an
//! in-memory tail that serves reads.
//!
//! Why redb: ACID commits with checksums give crash recovery (no torn tails to repair), one
//! small pure-Rust dependency (~5 s debug build), ~250 µs per durable commit on this class of
//! machine. Why a dedicated thread: redb calls block, and blocking the async runtime on a
//! 2-core box stalls heartbeats and causes spurious elections.
//!
//! **Append does not wait for the disk** (openraft's storage-v2 contract): the entries go into
//! the in-memory tail, where every reader sees them at once, and onto the I/O queue; the
//! thread reports them through openraft's `LogFlushed` callback once its transaction has
//! committed (fsync). Openraft counts an entry towards a quorum only after that callback, so
//! nothing unflushed is ever acknowledged. The Raft core meanwhile goes on replicating and
//! applying instead of sitting out every fsync.
//!
//! **Group commit**: the thread takes everything queued (appends, the committed index, a vote)
//! into one transaction, one fsync, and then acknowledges each request in order. Writes stay
//! serialised, as openraft requires: one queue, one thread, applied in queue order. A batch
//! that holds only the committed index is written without fsync (`Durability::None`; the next
//! durable commit persists it): openraft treats that index as a hint it may lose.
//!
//! `save_vote`, `truncate` and `purge` wait for their fsync before returning. After a failed
//! write every later write fails too, so the log never has a hole.
//!
//! **The tail** keeps the newest entries (by default at most [`TAIL_ENTRIES`] / [`TAIL_BYTES`]), evicting
//! only entries already durable: replication to followers, which reads the newest entries,
//! needs no disk read and no decode. Older ranges are read from redb's MVCC read transactions
//! on the blocking pool, never waiting for a write.
//!
//! Tables: `log` maps index → codec-encoded entry; `meta` holds `vote`, `committed` and
//! `last_purged`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tocsin_proto::codec;
use tokio::sync::{mpsc, oneshot};

use super::{Entry, LogId, StorageError, TypeConfig, io_err};
use crate::model::NodeId;
use crate::probe::{Probe, Stage};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Write requests queued to the I/O thread. Bounded: a full queue back-pressures the Raft core
/// rather than buffering without limit.
const IO_QUEUE_DEPTH: usize = 1024;

/// Most requests one transaction takes (bounds a group commit's size and latency).
const MAX_GROUP: usize = 512;

/// The in-memory tail keeps at most this many entries ...
pub const TAIL_ENTRIES: usize = 4096;
/// ... and at most this many encoded bytes (durable entries beyond either are evicted).
pub const TAIL_BYTES: usize = 64 * 1024 * 1024;

/// How much the in-memory tail keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailLimits {
    /// Most entries.
    pub entries: usize,
    /// Most encoded bytes.
    pub bytes: usize,
}

impl Default for TailLimits {
    fn default() -> Self {
        Self {
            entries: TAIL_ENTRIES,
            bytes: TAIL_BYTES,
        }
    }
}

/// How long `open` waits for another instance in this process to release the log.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

enum WriteOp {
    Append(Vec<(u64, Vec<u8>)>),
    /// Delete `[from, ∞)`.
    Truncate(u64),
    /// Delete `(-∞, upto]` and remember `upto` as last purged.
    Purge(u64, Vec<u8>),
    Meta(&'static str, Vec<u8>),
}

/// Who hears that a request's transaction committed.
enum Done {
    /// A caller awaiting the result.
    Reply(oneshot::Sender<Result<(), String>>),
    /// openraft's flush callback for an append.
    Flushed(LogFlushed<TypeConfig>),
    /// Nobody (the committed index: a failure shows on the next durable write).
    Nobody,
}

struct WriteReq {
    op: WriteOp,
    done: Done,
    /// When it was queued (for [`Stage::LogFlush`]).
    queued: std::time::Instant,
}

/// The newest entries, readable before (and after) they are durable.
struct Tail {
    limits: TailLimits,
    /// index → (entry, encoded size).
    entries: BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
    /// Highest index the I/O thread has made durable (entries at or below may be evicted).
    durable: u64,
}

impl Tail {
    fn evict(&mut self) {
        while self.entries.len() > self.limits.entries || self.bytes > self.limits.bytes {
            let Some(mut first) = self.entries.first_entry() else {
                return;
            };
            if *first.key() > self.durable {
                return;
            }
            let (_, size) = first.get_mut();
            self.bytes -= *size;
            first.remove();
        }
    }

    fn remove_from(&mut self, from: u64) {
        let removed = self.entries.split_off(&from);
        self.bytes -= removed.values().map(|(_, s)| s).sum::<usize>();
        self.durable = self.durable.min(from.saturating_sub(1));
    }

    fn remove_upto(&mut self, upto: u64) {
        let kept = self.entries.split_off(&(upto + 1));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.bytes -= removed.values().map(|(_, s)| s).sum::<usize>();
    }
}

/// The log store handle (cheap to clone; all clones share the I/O thread and the tail).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    tail: Arc<Mutex<Tail>>,
    writer: mpsc::Sender<WriteReq>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log at `dir/raft-log.redb` and starts its I/O thread. The thread
    /// exits when the last handle is dropped.
    /// Durations go to `probe` ([`Stage::LogFlush`], [`Stage::LogFsync`]).
    pub fn open(dir: &Path, probe: Probe) -> Result<Self, String> {
        Self::open_with(dir, probe, TailLimits::default())
    }

    /// [`Self::open`] with other tail limits (tests: a tiny tail sends most reads to disk).
    pub fn open_with(dir: &Path, probe: Probe, limits: TailLimits) -> Result<Self, String> {
        let path = dir.join("raft-log.redb");
        // A node restarted inside the same process (tests) may find the previous instance's
        // tasks still holding the file lock for a moment; wait for them, boundedly.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(format!("open {}: {e}", path.display())),
            }
        };
        let durable = {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            let last = {
                let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
                txn.open_table(META).map_err(|e| e.to_string())?;
                log.last()
                    .map_err(|e| e.to_string())?
                    .map_or(0, |(k, _)| k.value())
            };
            txn.commit().map_err(|e| e.to_string())?;
            last
        };
        let db = Arc::new(db);
        let tail = Arc::new(Mutex::new(Tail {
            limits,
            entries: BTreeMap::new(),
            bytes: 0,
            durable,
        }));
        let (writer, rx) = mpsc::channel::<WriteReq>(IO_QUEUE_DEPTH);
        let thread_db = db.clone();
        let thread_tail = tail.clone();
        std::thread::Builder::new()
            .name("raft-log-io".into())
            .spawn(move || io_thread(&thread_db, &thread_tail, rx, durable, &probe))
            .map_err(|e| format!("spawn log I/O thread: {e}"))?;
        Ok(Self { db, tail, writer })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().expect("log tail poisoned")
    }

    async fn enqueue(&self, op: WriteOp, done: Done) -> Result<(), String> {
        self.writer
            .send(WriteReq {
                op,
                done,
                queued: std::time::Instant::now(),
            })
            .await
            .map_err(|_| "log I/O thread has stopped".to_string())
    }

    /// Queues `op` and waits for its transaction to commit.
    async fn write(&self, op: WriteOp) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.enqueue(op, Done::Reply(done)).await?;
        rx.await
            .map_err(|_| "log I/O thread dropped the request".to_string())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn read_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, String> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let table = txn.open_table(META).map_err(|e| e.to_string())?;
            match table.get(key).map_err(|e| e.to_string())? {
                None => Ok(None),
                Some(v) => codec::decode(key, v.value())
                    .map(Some)
                    .map_err(|e| e.to_string()),
            }
        })
        .await
    }

    /// Entries `[start, end_inclusive]`: the part below the tail from redb, the rest from the
    /// tail.
    async fn entries(&self, start: u64, end_inclusive: Option<u64>) -> Result<Vec<Entry>, String> {
        let end = end_inclusive.unwrap_or(u64::MAX);
        let (tail_first, mut from_tail) = {
            let tail = self.tail();
            let first = tail.entries.first_key_value().map(|(k, _)| *k);
            let hits: Vec<Entry> = tail
                .entries
                .range(start..=end)
                .map(|(_, (e, _))| e.clone())
                .collect();
            (first, hits)
        };
        // Everything the tail holds at or above `start` came from it; the part below the
        // tail's first index is durable (only durable entries are evicted), so redb has it.
        let disk_end = match tail_first {
            Some(first) if first <= start => return Ok(from_tail),
            Some(first) => end.min(first - 1),
            None => end,
        };
        let mut out = self
            .read(move |db| {
                let txn = db.begin_read().map_err(|e| e.to_string())?;
                let table = txn.open_table(LOG).map_err(|e| e.to_string())?;
                let range = table.range(start..=disk_end).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for item in range {
                    let (k, v) = item.map_err(|e| e.to_string())?;
                    let entry: Entry =
                        codec::decode("log entry", v.value()).map_err(|e| e.to_string())?;
                    debug_assert_eq!(entry.log_id.index, k.value());
                    out.push(entry);
                }
                Ok(out)
            })
            .await?;
        // Entries evicted from the tail while redb was read are in both: keep one copy.
        let last_disk = out.last().map(|e| e.log_id.index);
        if let Some(last) = last_disk {
            from_tail.retain(|e| e.log_id.index > last);
        }
        out.append(&mut from_tail);
        Ok(out)
    }
}

/// The I/O thread: takes every queued request into one transaction, commits it (one fsync
/// unless it holds only the committed index), then tells each requester, in order.
fn io_thread(
    db: &Database,
    tail: &Mutex<Tail>,
    mut rx: mpsc::Receiver<WriteReq>,
    mut durable: u64,
    probe: &Probe,
) {
    let mut failed: Option<String> = None;
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(e) => Err(format!("an earlier log write failed: {e}")),
            None => {
                let started = std::time::Instant::now();
                let result = write_group(db, &group, &mut durable).map_err(|e| e.to_string());
                if !hint_only(&group) {
                    probe.since(Stage::LogFsync, started);
                }
                result
            }
        };
        match &result {
            Ok(()) => {
                let mut tail = tail.lock().expect("log tail poisoned");
                tail.durable = durable;
                tail.evict();
            }
            Err(e) if failed.is_none() => {
                tracing::error!(error = %e, "raft log write failed; every later write fails");
                failed = Some(e.clone());
            }
            Err(_) => {}
        }
        for req in group.drain(..) {
            match req.done {
                // The requester may have gone away (shutdown); nothing to do then.
                Done::Reply(tx) => {
                    let _ = tx.send(result.clone());
                }
                Done::Flushed(callback) => {
                    probe.since(Stage::LogFlush, req.queued);
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Done::Nobody => {}
            }
        }
    }
}

/// Whether `group` holds only the committed index (written without fsync).
fn hint_only(group: &[WriteReq]) -> bool {
    group
        .iter()
        .all(|r| matches!(r.op, WriteOp::Meta(COMMITTED, _)))
}

/// Applies `group` in order in one transaction; `durable` follows the log's last index.
fn write_group(db: &Database, group: &[WriteReq], durable: &mut u64) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    if hint_only(group) {
        txn.set_durability(Durability::None)
            .map_err(|e| redb::Error::from(redb::StorageError::from(std::io::Error::other(e))))?;
    }
    let mut last = *durable;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for req in group {
            match &req.op {
                WriteOp::Append(entries) => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                        last = *index;
                    }
                }
                WriteOp::Truncate(from) => {
                    log.retain_in(*from.., |_, _| false)?;
                    last = last.min(from.saturating_sub(1));
                }
                WriteOp::Purge(upto, encoded) => {
                    log.retain_in(..=*upto, |_, _| false)?;
                    meta.insert(LAST_PURGED, encoded.as_slice())?;
                }
                WriteOp::Meta(key, bytes) => {
                    meta.insert(*key, bytes.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    *durable = last;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(*e),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(e) => Some(e - 1),
            Bound::Unbounded => None,
        };
        if end.is_some_and(|e| e < start) {
            return Ok(Vec::new());
        }
        self.entries(start, end)
            .await
            .map_err(|e| StorageIOError::read_logs(io_err(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self
            .read_meta(LAST_PURGED)
            .await
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let in_tail = self
            .tail()
            .entries
            .last_key_value()
            .map(|(_, (e, _))| e.log_id);
        let last = match in_tail {
            Some(id) => Some(id),
            None => self
                .read(|db| {
                    let txn = db.begin_read().map_err(|e| e.to_string())?;
                    let table = txn.open_table(LOG).map_err(|e| e.to_string())?;
                    match table.last().map_err(|e| e.to_string())? {
                        None => Ok(None),
                        Some((_, v)) => codec::decode::<Entry>("log entry", v.value())
                            .map(|e| Some(e.log_id))
                            .map_err(|e| e.to_string()),
                    }
                })
                .await
                .map_err(|e| StorageIOError::read_logs(io_err(e)))?,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write(WriteOp::Meta(VOTE, codec::encode(vote)))
            .await
            .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(io_err(e)).into())
    }

    /// Queued behind earlier writes, not awaited: openraft may lose the committed index (it
    /// then re-learns it from the leader), so it rides on the next group commit.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.enqueue(
            WriteOp::Meta(COMMITTED, codec::encode(&committed)),
            Done::Nobody,
        )
        .await
        .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let v: Option<Option<LogId>> = self
            .read_meta(COMMITTED)
            .await
            .map_err(|e| StorageIOError::read(io_err(e)))?;
        Ok(v.flatten())
    }

    /// Returns once the entries are in the tail (readable) and queued; `callback` hears of
    /// the fsync.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut tail = self.tail();
            for entry in entries {
                let index = entry.log_id.index;
                let bytes = codec::encode(&entry);
                let size = bytes.len();
                if let Some((_, old)) = tail.entries.insert(index, (entry, size)) {
                    tail.bytes -= old;
                }
                tail.bytes += size;
                encoded.push((index, bytes));
            }
        }
        self.enqueue(WriteOp::Append(encoded), Done::Flushed(callback))
            .await
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail().remove_from(log_id.index);
        self.write(WriteOp::Truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail().remove_upto(log_id.index);
        self.write(WriteOp::Purge(log_id.index, codec::encode(&log_id)))
            .await
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}
