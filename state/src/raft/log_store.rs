//! The durable Raft log: a segmented append-only file (a WAL), written by one dedicated I/O
//! thread with group commit, and an in-memory tail that serves reads.
//!
//! Why a WAL: the previous redb log wrote ~11.5 separate 4 KiB pages plus one fdatasync per
//! commit (0.5–0.9 ms under load), and redb's commit path took ~22 % of the process's CPU in
//! `tocsin bench store`; a raw 4 KiB append + fdatasync on the same disk is 0.19 ms p50. The
//! WAL writes one contiguous buffer per group commit and fdatasyncs once. Why a dedicated
//! thread: file I/O blocks, and blocking the async runtime on a 2-core box stalls heartbeats
//! and causes spurious elections.
//!
//! **Append does not wait for the disk** (openraft's storage-v2 contract): the entries go into
//! the in-memory tail, where every reader sees them at once, and onto the I/O queue; the
//! thread reports them through openraft's `LogFlushed` callback once its write is fsynced.
//! Openraft counts an entry towards a quorum only after that callback, so nothing unflushed is
//! ever acknowledged. The Raft core meanwhile goes on replicating and applying instead of
//! sitting out every fsync.
//!
//! **Group commit**: the thread takes everything queued (appends, the committed index, a vote,
//! up to `MAX_GROUP` requests), encodes it into one checksummed frame, writes it with one
//! `pwrite` at the end of the active segment, fdatasyncs once, and then acknowledges each
//! request in order.
//! Writes stay serialised, as openraft requires: one queue, one thread, applied in queue
//! order. A group that holds only the committed index is not written at all: the index is
//! updated for readers and the value rides at the head of the next durable frame (or is
//! written when the thread exits); openraft treats that index as a hint it may lose. So every
//! frame is fsynced before the next one is issued.
//!
//! `save_vote`, `truncate` and `purge` wait for their fsync before returning. After a failed
//! write every later write fails too, so the log never has a hole.
//!
//! **The tail** keeps the newest entries (by default at most [`TAIL_ENTRIES`] /
//! [`TAIL_BYTES`]), evicting only entries already durable: replication to followers, which
//! reads the newest entries, needs no disk read and no decode. Older entries are located by an
//! in-memory index (entry index → segment, offset, length) and read with `pread` on the
//! blocking pool; a reader holds the segment's file handle, so it never waits for a write and
//! survives the segment's deletion.
//!
//! # Format
//!
//! `dir/raft-log/` holds the lock file `LOCK` and segment files `{seq:020}.wal`. A segment
//! starts with the 8-byte magic `TOCWAL01`, then frames, one per write (one group commit):
//! `[u32 LE body length][u32 LE CRC-32 of the body][body]`, the body that group's records, at
//! least one (a frame of length 0 is never written and is invalid). A record is `[u32 LE
//! payload length][u32 LE CRC-32 of the payload][payload]`, the payload a kind byte and a body:
//! 1 entry (`u64 LE index` + codec-encoded entry), 2 truncate (`u64 LE from`: entries
//! `[from, ∞)` are gone), 3 purge (`u64 LE upto` + codec-encoded log id: entries `(-∞, upto]`
//! are gone, that id is the last purged), 4 vote (codec-encoded), 5 committed (codec-encoded
//! `Option<LogId>`). Replaying the records in order rebuilds the log. The index locates an
//! entry by its record (absolute offset in the segment, inside its frame), and a read checks
//! the record's own CRC.
//!
//! **Rotation**: a write to a segment of at least [`SEGMENT_BYTES`] (overridable with
//! [`LogStore::open_with_options`]) first starts the next segment (created, directory
//! fsynced). A segment's first frame (after the magic) starts with records restating the vote,
//! committed index and last purged id, then holds the group that caused the rotation, and is
//! fsynced even if the group is only the committed index; the same goes for a last segment that
//! recovery cut back to its magic or to nothing. So an older segment holds nothing still needed
//! once none of its entries is live; such segments are deleted, oldest first and only as a
//! prefix (a truncate record must outlive the entries it removed in older segments), after the
//! write that killed their last entry is durable. Purge therefore reclaims disk.
//!
//! **Recovery** replays the segments in order, frame by frame. A frame is valid if its header
//! is complete, its length is not 0, its body fits in the file and its CRC matches; every
//! record in a valid frame must then split and decode, or `open` fails (a frame whose checksum
//! holds around a bad record is a bug or a forged file, never a torn write). A bad frame at
//! offset `o` is a **torn write** (one group's write cut short by a crash) only if it is in the
//! last segment and either its claimed end `o + 8 + length` reaches or passes the end of the
//! file (a header too short to read included), or every byte from `o` to the end is zero (the
//! file system extended the size before the data landed). The file is then cut at `o`,
//! fsynced, and appends continue from there; the torn group is dropped whole, so a group commit
//! is all or nothing (none of its entries had been reported flushed, so openraft counted none).
//! Any other bad frame (in an earlier segment, or followed by bytes that are not all zero and
//! that its length does not cover) is **corruption**: `open` fails naming the segment file and
//! the offset, rather than silently dropping fsynced frames behind it. The same goes for a bad
//! magic, unless the last segment is shorter than the magic or all zeros. What stays
//! ambiguous: a bit flip in the length field of the very last frame that makes it claim to run
//! past the end of the file looks exactly like a torn write, and that frame is cut off. Segments
//! older than a gap in the sequence numbers were already dead (their deletion had not reached
//! the disk) and are deleted.
//!
//! These rules rest on one property of the writer: at most one frame is in flight when the
//! machine stops, because every frame is fsynced before the next one is written (a
//! committed-index-only group is held, not written unsynced; see *Group commit*). So a bad
//! frame followed by a good one cannot come from a crash.
//!
//! **Migration**: a data dir of the previous version holds `raft-log.redb` and no
//! `raft-log/`; `open` copies its vote, committed index, last purged id and entries into the
//! first segment (in frames of about 16 MiB) of a WAL built in `raft-log.migrating/` (fsynced, then renamed into place)
//! and renames the redb file to `raft-log.redb.migrated`.
//!
//! **Locking**: an exclusive `flock` on `raft-log/LOCK`, held by the I/O thread. A node
//! restarted inside the same process (tests) may find the previous instance's thread still
//! holding it for a moment; `open` waits for it, boundedly.

mod migrate;
#[cfg(test)]
mod tests;
mod wal;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};
use tocsin_proto::codec;
use tokio::sync::{mpsc, oneshot};

use super::{Entry, LogId, StorageError, TypeConfig, io_err};
use crate::model::NodeId;
use crate::probe::{Probe, Stage};
use wal::{Index, Record, Writer};

/// Write requests queued to the I/O thread. Bounded: a full queue back-pressures the Raft core
/// rather than buffering without limit.
const IO_QUEUE_DEPTH: usize = 1024;

/// Most requests one group commit takes (bounds its size and latency).
const MAX_GROUP: usize = 512;

/// The in-memory tail keeps at most this many entries ...
pub const TAIL_ENTRIES: usize = 4096;
/// ... and at most this many encoded bytes (durable entries beyond either are evicted). The
/// entries are held decoded, at several times this size. 16 MiB made the 64 MiB-state cluster
/// test miss its catch-up bound (a lagging follower's entries then come from disk), so it stays
/// 64 MiB until that path is faster.
pub const TAIL_BYTES: usize = 64 * 1024 * 1024;

/// A segment file reaching this size is closed and the next one started: large enough that
/// rotation (a file creation and a directory fsync) is rare, small enough that purging after
/// a snapshot reclaims disk soon.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The log directory inside the data dir, and the lock file inside it.
const WAL_DIR: &str = "raft-log";
const LOCK_FILE: &str = "LOCK";

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

/// Everything [`LogStore::open_with_options`] can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// What the in-memory tail keeps.
    pub tail: TailLimits,
    /// Size at which a segment is closed ([`SEGMENT_BYTES`]; tests use a tiny one).
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            tail: TailLimits::default(),
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// How long `open` waits for another instance in this process to release the log.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

enum WriteOp {
    Append(Vec<(u64, Vec<u8>)>),
    /// Delete `[from, ∞)`.
    Truncate(u64),
    /// Delete `(-∞, upto]` and remember the (encoded) log id of `upto` as last purged.
    Purge(u64, Vec<u8>),
    Vote(Vec<u8>),
    Committed(Vec<u8>),
}

/// Who hears that a request's write is durable.
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
    index: Arc<Mutex<Index>>,
    tail: Arc<Mutex<Tail>>,
    writer: mpsc::Sender<WriteReq>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log at `dir/raft-log/` (migrating `dir/raft-log.redb` of the
    /// previous version first, if there is one) and starts its I/O thread. The thread exits
    /// when the last handle is dropped.
    /// Durations go to `probe` ([`Stage::LogFlush`], [`Stage::LogFsync`]).
    pub fn open(dir: &Path, probe: Probe) -> Result<Self, String> {
        Self::open_with_options(dir, probe, LogOptions::default())
    }

    /// [`Self::open`] with other tail limits (tests: a tiny tail sends most reads to disk).
    pub fn open_with(dir: &Path, probe: Probe, limits: TailLimits) -> Result<Self, String> {
        let options = LogOptions {
            tail: limits,
            ..LogOptions::default()
        };
        Self::open_with_options(dir, probe, options)
    }

    /// [`Self::open`] with other options (tests: tiny segments rotate often).
    pub fn open_with_options(
        dir: &Path,
        probe: Probe,
        options: LogOptions,
    ) -> Result<Self, String> {
        let wal_dir = dir.join(WAL_DIR);
        migrate::migrate_redb(dir, &wal_dir)?;
        if !wal_dir.exists() {
            std::fs::create_dir_all(&wal_dir)
                .map_err(|e| format!("create {}: {e}", wal_dir.display()))?;
            wal::sync_dir(dir)?;
        }
        let lock = lock_dir(&wal_dir)?;
        let (index, active) = wal::recover(&wal_dir)?;
        let durable = index.entries.last_key_value().map_or(0, |(k, _)| *k);
        let index = Arc::new(Mutex::new(index));
        let tail = Arc::new(Mutex::new(Tail {
            limits: options.tail,
            entries: BTreeMap::new(),
            bytes: 0,
            durable,
        }));
        let mut log = Writer {
            dir: wal_dir,
            active,
            segment_bytes: options.segment_bytes,
            index: index.clone(),
            _lock: lock,
        };
        let (writer, rx) = mpsc::channel::<WriteReq>(IO_QUEUE_DEPTH);
        let thread_tail = tail.clone();
        std::thread::Builder::new()
            .name("raft-log-io".into())
            .spawn(move || io_thread(&mut log, &thread_tail, rx, durable, &probe))
            .map_err(|e| format!("spawn log I/O thread: {e}"))?;
        Ok(Self {
            index,
            tail,
            writer,
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().expect("log tail poisoned")
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Queues `op` and waits for its write to be durable.
    async fn write(&self, op: WriteOp) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.enqueue(op, Done::Reply(done)).await?;
        rx.await
            .map_err(|_| "log I/O thread dropped the request".to_string())?
    }

    /// Decodes a metadata value (kept encoded in the index).
    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        pick: impl FnOnce(&Index) -> Option<Vec<u8>>,
    ) -> Result<Option<T>, String> {
        let bytes = pick(&self.index());
        bytes
            .map(|b| codec::decode(what, &b).map_err(|e| e.to_string()))
            .transpose()
    }

    /// Reads the entries `[start, end]` (all below the tail) from their segments, on the
    /// blocking pool. Entries the index no longer holds (purged or truncated meanwhile) are
    /// skipped.
    async fn read_disk(&self, start: u64, end: u64) -> Result<Vec<Entry>, String> {
        let locs: Vec<_> = {
            let index = self.index();
            index
                .entries
                .range(start..=end)
                .filter_map(|(i, loc)| {
                    let file = index.segments.get(&loc.seq)?.file.clone();
                    Some((*i, *loc, file))
                })
                .collect()
        };
        if locs.is_empty() {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            locs.into_iter()
                .map(|(i, loc, file)| {
                    let bytes = wal::read_entry(&file, loc, i)?;
                    let entry: Entry =
                        codec::decode("log entry", &bytes).map_err(|e| e.to_string())?;
                    debug_assert_eq!(entry.log_id.index, i);
                    Ok(entry)
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Entries `[start, end_inclusive]`: the part below the tail from the segments, the rest
    /// from the tail.
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
        // tail's first index is durable (only durable entries are evicted, and the index
        // learns of a write before the tail does), so the index has it.
        let disk_end = match tail_first {
            Some(first) if first <= start => return Ok(from_tail),
            Some(first) => end.min(first - 1),
            None => end,
        };
        let mut out = self.read_disk(start, disk_end).await?;
        // Entries evicted from the tail while the disk was read are in both: keep one copy.
        let last_disk = out.last().map(|e| e.log_id.index);
        if let Some(last) = last_disk {
            from_tail.retain(|e| e.log_id.index > last);
        }
        out.append(&mut from_tail);
        Ok(out)
    }
}

/// Takes the exclusive lock on the log directory, waiting up to [`LOCK_WAIT`] for another
/// instance in this process to let go of it.
fn lock_dir(wal_dir: &Path) -> Result<std::fs::File, String> {
    let path = wal_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "lock {}: still held by another instance after {LOCK_WAIT:?}",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("lock {}: {e}", path.display()));
            }
        }
    }
}

/// The I/O thread: takes every queued request into one group, writes it as one fsynced frame
/// (a group holding only the committed index is held for the next frame instead), then tells
/// each requester, in order.
fn io_thread(
    log: &mut Writer,
    tail: &Mutex<Tail>,
    mut rx: mpsc::Receiver<WriteReq>,
    mut durable: u64,
    probe: &Probe,
) {
    let mut failed: Option<String> = None;
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The newest committed index not yet on disk.
    let mut held_committed: Option<Vec<u8>> = None;
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
            None if hint_only(&group) => {
                // Held, not written: readers see it at once, and it rides in the next durable
                // frame, so at most one frame is ever in flight (see the module doc).
                if let Some(WriteOp::Committed(bytes)) = group.last().map(|r| &r.op) {
                    log.index().committed = Some(bytes.clone());
                    held_committed = Some(bytes.clone());
                }
                Ok(())
            }
            None => {
                let started = std::time::Instant::now();
                let result = write_group(log, held_committed.take(), &group, &mut durable);
                probe.since(Stage::LogFsync, started);
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
    // Every handle is gone (shutdown): keep the committed index if the log is still sound.
    if let (Some(bytes), None) = (held_committed, &failed)
        && let Err(e) = log.write(&[Record::Committed(&bytes)], true)
    {
        tracing::warn!(error = %e, "raft log: could not write the committed index at shutdown");
    }
}

/// Whether `group` holds only the committed index (held until the next durable write).
fn hint_only(group: &[WriteReq]) -> bool {
    group.iter().all(|r| matches!(r.op, WriteOp::Committed(_)))
}

/// Writes `group` in order as one fsynced frame, after the `held` committed index if any;
/// `durable` follows the log's last index.
fn write_group(
    log: &mut Writer,
    held: Option<Vec<u8>>,
    group: &[WriteReq],
    durable: &mut u64,
) -> Result<(), String> {
    let mut last = *durable;
    let mut records = Vec::new();
    if let Some(bytes) = &held {
        records.push(Record::Committed(bytes));
    }
    for req in group {
        match &req.op {
            WriteOp::Append(entries) => {
                for (index, bytes) in entries {
                    records.push(Record::Entry(*index, bytes));
                    last = *index;
                }
            }
            WriteOp::Truncate(from) => {
                records.push(Record::Truncate(*from));
                last = last.min(from.saturating_sub(1));
            }
            WriteOp::Purge(upto, encoded) => records.push(Record::Purge(*upto, encoded)),
            WriteOp::Vote(bytes) => records.push(Record::Vote(bytes)),
            WriteOp::Committed(bytes) => records.push(Record::Committed(bytes)),
        }
    }
    log.write(&records, true)?;
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
            .meta("last purged", |i| {
                i.last_purged.as_ref().map(|(_, b)| b.clone())
            })
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let in_tail = self
            .tail()
            .entries
            .last_key_value()
            .map(|(_, (e, _))| e.log_id);
        let last = match in_tail {
            Some(id) => Some(id),
            None => {
                let last_index = self.index().entries.last_key_value().map(|(k, _)| *k);
                match last_index {
                    None => None,
                    Some(i) => self
                        .read_disk(i, i)
                        .await
                        .map_err(|e| StorageIOError::read_logs(io_err(e)))?
                        .last()
                        .map(|e| e.log_id),
                }
            }
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
        self.write(WriteOp::Vote(codec::encode(vote)))
            .await
            .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote", |i| i.vote.clone())
            .map_err(|e| StorageIOError::read_vote(io_err(e)).into())
    }

    /// Queued behind earlier writes, not awaited: openraft may lose the committed index (it
    /// then re-learns it from the leader), so it rides on the next group commit.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.enqueue(WriteOp::Committed(codec::encode(&committed)), Done::Nobody)
            .await
            .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let v: Option<Option<LogId>> = self
            .meta("committed", |i| i.committed.clone())
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
