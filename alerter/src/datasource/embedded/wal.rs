//! The optional append-only on-disk log of the embedded store, so a restart keeps recent
//! history.
//!
//! Layout on disk: `DIR/wal-NNNNNNNN.log` segments, each a sequence of records
//! `len: u32 LE | crc32(payload): u32 LE | payload`; a payload is a batch of groups
//! `n_labels: u16 | (name_len: u16, name, value_len: u32, value)* | n: u32 | (t: i64, v: u64)*`.
//!
//! Writes happen on one dedicated thread fed by a bounded queue, never on the async runtime;
//! ingestion never waits for the disk (a full queue drops the batch from the log and counts
//! it). The log is flushed to the OS after every drained burst and fsynced every
//! [`FSYNC_INTERVAL`]: a process restart loses nothing written before it, a power loss at most
//! that interval. Replay stops a segment at the first torn or corrupt record and truncates a
//! torn tail. Whole segments are deleted once every sample in them is past retention.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::remote_write::DecodedSeries;
use super::store::MetricStore;
use crate::promql::Labels;

/// Batches queued for the writer thread before new ones are dropped from the log.
const QUEUE_DEPTH: usize = 1024;
/// Longest time between fsyncs while data is being written.
pub const FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default segment size before a new one is started (the unit of deletion).
pub const DEFAULT_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest record accepted on replay: bigger lengths are corruption, not data.
const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Why the log could not be opened or replayed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A filesystem operation failed.
    #[error("on-disk log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One batch of samples grouped by series.
pub type Batch<'a> = Vec<(&'a Labels, Vec<(i64, f64)>)>;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE), as zlib computes it.
fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, b| {
        CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8)
    })
}

/// Encodes a batch as one record (header included); returns it and its newest timestamp.
pub fn encode(batch: &Batch<'_>) -> (Vec<u8>, i64) {
    let mut p = Vec::new();
    let mut max_t = i64::MIN;
    p.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    for (labels, samples) in batch {
        p.extend_from_slice(&(labels.len() as u16).to_le_bytes());
        for (n, v) in labels.iter() {
            p.extend_from_slice(&(n.len() as u16).to_le_bytes());
            p.extend_from_slice(n.as_bytes());
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v.as_bytes());
        }
        p.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        for (t, v) in samples {
            max_t = max_t.max(*t);
            p.extend_from_slice(&t.to_le_bytes());
            p.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    let mut rec = Vec::with_capacity(p.len() + 8);
    rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32(&p).to_le_bytes());
    rec.extend_from_slice(&p);
    (rec, max_t)
}

/// A cursor over a payload; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn string(&mut self, n: usize) -> Option<String> {
        self.take(n)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

/// Decodes a payload into `(labels, samples)` groups; `None` if it is malformed.
fn decode(payload: &[u8]) -> Option<Vec<DecodedSeries>> {
    let mut c = Cursor(payload);
    let groups = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..groups {
        let n_labels = c.u16()?;
        let mut pairs = Vec::with_capacity(usize::from(n_labels));
        for _ in 0..n_labels {
            let nl = usize::from(c.u16()?);
            let name = c.string(nl)?;
            let vl = c.u32()? as usize;
            pairs.push((name, c.string(vl)?));
        }
        let n = c.u32()? as usize;
        let mut samples = Vec::with_capacity(n.min(c.0.len() / 16));
        for _ in 0..n {
            let t = c.u64()? as i64;
            samples.push((t, f64::from_bits(c.u64()?)));
        }
        out.push((Labels::from_pairs(pairs), samples));
    }
    c.0.is_empty().then_some(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:08}.log"))
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_prefix("wal-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// What replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Samples stored again.
    pub samples: usize,
    /// Samples refused on replay (older than retention, series cap).
    pub refused: usize,
    /// Segments read.
    pub segments: usize,
    /// Bytes cut off torn or corrupt segment tails.
    pub truncated_bytes: u64,
}

/// Replays every segment of `dir` into `store` (creating `dir` if needed); returns what it
/// found and each segment's newest timestamp, for retention.
fn replay(
    dir: &Path,
    store: &mut MetricStore,
) -> Result<(ReplayReport, Vec<(u64, i64)>), WalError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut report = ReplayReport::default();
    let mut seg_max = Vec::new();
    for seq in segments(dir)? {
        let path = segment_path(dir, seq);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(&path))?;
        let mut off = 0usize;
        let mut max_t = i64::MIN;
        while let Some(head) = bytes.get(off..off + 8) {
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let Some(payload) = bytes
                .get(off + 8..off + 8 + len)
                .filter(|_| len <= RECORD_BYTES_MAX)
            else {
                break;
            };
            let groups = (crc32(payload) == crc).then(|| decode(payload)).flatten();
            let Some(groups) = groups else { break };
            for (labels, samples) in groups {
                for (t, v) in samples {
                    max_t = max_t.max(t);
                    match store.append(&labels, t, v) {
                        Ok(()) => report.samples += 1,
                        Err(_) => report.refused += 1,
                    }
                }
            }
            off += 8 + len;
        }
        if off < bytes.len() {
            tracing::warn!(path = %path.display(), offset = off, "truncating torn or corrupt log tail");
            report.truncated_bytes += (bytes.len() - off) as u64;
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(off as u64))
                .map_err(io_err(&path))?;
        }
        report.segments += 1;
        seg_max.push((seq, max_t));
    }
    Ok((report, seg_max))
}

enum Msg {
    Record(Vec<u8>, i64),
    Sync(SyncSender<()>),
    DropBefore(i64),
}

/// The handle ingestion writes through; dropping it flushes, fsyncs and stops the thread.
#[derive(Debug)]
pub struct Wal {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl Wal {
    /// Replays `dir` into `store`, then starts logging to a new segment.
    pub fn open(
        dir: &Path,
        store: &mut MetricStore,
        segment_bytes_max: u64,
    ) -> Result<(Self, ReplayReport), WalError> {
        let (report, seg_max) = replay(dir, store)?;
        let next = seg_max.last().map_or(0, |(s, _)| s + 1);
        let writer = Writer::create(dir.to_path_buf(), next, seg_max, segment_bytes_max)?;
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("embedded-wal".into())
            .spawn(move || writer.run(&rx))
            .map_err(io_err(dir))?;
        Ok((
            Self {
                tx: Some(tx),
                thread: Some(thread),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            report,
        ))
    }

    /// Queues a batch; never blocks. A full queue drops the batch from the log (the samples
    /// stay in memory) and counts it.
    pub fn log(&self, batch: &Batch<'_>) {
        if batch.is_empty() {
            return;
        }
        let (rec, max_t) = encode(batch);
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(Msg::Record(rec, max_t))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Batches not logged because the writer fell behind or failed.
    pub fn dropped_batches(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to delete closed segments whose samples are all before `cutoff_ms`.
    pub fn drop_before(&self, cutoff_ms: i64) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::DropBefore(cutoff_ms));
        }
    }

    /// Blocks until everything queued so far is written and fsynced. Call it from a blocking
    /// context (shutdown, tests), not from the async runtime.
    pub fn sync(&self) {
        let (done_tx, done_rx) = sync_channel(1);
        if let Some(tx) = &self.tx
            && tx.send(Msg::Sync(done_tx)).is_ok()
        {
            let _ = done_rx.recv();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    seq: u64,
    file: BufWriter<File>,
    written: u64,
    current_max: i64,
    closed: Vec<(u64, i64)>,
    segment_bytes_max: u64,
}

impl Writer {
    fn create(
        dir: PathBuf,
        seq: u64,
        closed: Vec<(u64, i64)>,
        segment_bytes_max: u64,
    ) -> Result<Self, WalError> {
        let path = segment_path(&dir, seq);
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(Self {
            dir,
            seq,
            file: BufWriter::new(file),
            written: 0,
            current_max: i64::MIN,
            closed,
            segment_bytes_max,
        })
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        let mut last_sync = Instant::now();
        let mut dirty = false;
        loop {
            let msg = match rx.recv_timeout(FSYNC_INTERVAL) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut next = msg;
            while let Some(m) = next {
                dirty |= self.handle(m);
                next = rx.try_recv().ok();
            }
            if dirty && last_sync.elapsed() >= FSYNC_INTERVAL {
                self.sync();
                dirty = false;
                last_sync = Instant::now();
            } else if let Err(e) = self.file.flush() {
                tracing::error!(error = %e, "on-disk log flush failed");
            }
        }
        self.sync();
    }

    /// Handles one message; returns whether data was written.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(rec, max_t) => {
                if let Err(e) = self.file.write_all(&rec) {
                    tracing::error!(error = %e, "on-disk log write failed");
                    return false;
                }
                self.written += rec.len() as u64;
                self.current_max = self.current_max.max(max_t);
                if self.written >= self.segment_bytes_max {
                    self.rotate();
                }
                true
            }
            Msg::Sync(done) => {
                self.sync();
                let _ = done.send(());
                false
            }
            Msg::DropBefore(cutoff) => {
                let dir = self.dir.clone();
                self.closed.retain(|(seq, max_t)| {
                    let keep = *max_t >= cutoff;
                    if !keep {
                        let path = segment_path(&dir, *seq);
                        if let Err(e) = fs::remove_file(&path) {
                            tracing::warn!(path = %path.display(), error = %e, "cannot delete log segment");
                        }
                    }
                    keep
                });
                false
            }
        }
    }

    fn sync(&mut self) {
        if let Err(e) = self
            .file
            .flush()
            .and_then(|()| self.file.get_ref().sync_data())
        {
            tracing::error!(error = %e, "on-disk log fsync failed");
        }
    }

    fn rotate(&mut self) {
        self.sync();
        let next = self.seq + 1;
        let path = segment_path(&self.dir, next);
        match File::create(&path) {
            Ok(f) => {
                self.closed.push((self.seq, self.current_max));
                self.seq = next;
                self.file = BufWriter::new(f);
                self.written = 0;
                self.current_max = i64::MIN;
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot start a new log segment")
            }
        }
    }
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
