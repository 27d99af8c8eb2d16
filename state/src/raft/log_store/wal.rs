//! The on-disk format of the Raft log: segment files of checksummed frames (one per group
//! commit) holding checksummed records, the index that locates each live entry, recovery, and
//! the writer the I/O thread owns.
//!
//! See the parent module's documentation for the format and the rules.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// First bytes of every segment file (format version 1).
pub(super) const MAGIC: &[u8; 8] = b"TOCWAL01";
/// Record header: payload length and CRC-32 of the payload, both u32 little-endian.
pub(super) const HEADER: usize = 8;
/// Frame header: body length and CRC-32 of the body, both u32 little-endian. A frame is one
/// write (one group commit); its body is that group's records.
pub(super) const FRAME_HEADER: usize = 8;

/// Record kinds (the payload's first byte).
pub(super) const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;

/// A segment file's name: its sequence number, zero-padded so names sort in order.
pub(super) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One decoded record (borrowing the bytes it was decoded from).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record<'a> {
    /// A codec-encoded entry at `index`.
    Entry(u64, &'a [u8]),
    /// Entries `[from, ∞)` are gone.
    Truncate(u64),
    /// Entries `(-∞, upto]` are gone; the codec-encoded log id of `upto` is the last purged.
    Purge(u64, &'a [u8]),
    /// The codec-encoded vote.
    Vote(&'a [u8]),
    /// The codec-encoded committed log id (`Option<LogId>`).
    Committed(&'a [u8]),
}

impl<'a> Record<'a> {
    /// Appends the record (header and payload) to `buf`.
    pub(super) fn encode_into(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER]);
        match self {
            Record::Entry(index, bytes) => {
                buf.push(KIND_ENTRY);
                buf.extend_from_slice(&index.to_le_bytes());
                buf.extend_from_slice(bytes);
            }
            Record::Truncate(from) => {
                buf.push(KIND_TRUNCATE);
                buf.extend_from_slice(&from.to_le_bytes());
            }
            Record::Purge(upto, log_id) => {
                buf.push(KIND_PURGE);
                buf.extend_from_slice(&upto.to_le_bytes());
                buf.extend_from_slice(log_id);
            }
            Record::Vote(bytes) => {
                buf.push(KIND_VOTE);
                buf.extend_from_slice(bytes);
            }
            Record::Committed(bytes) => {
                buf.push(KIND_COMMITTED);
                buf.extend_from_slice(bytes);
            }
        }
        let payload = &buf[start + HEADER..];
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(payload);
        buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a payload (CRC already checked).
    pub(super) fn decode(payload: &'a [u8]) -> Result<Self, String> {
        let (&kind, body) = payload.split_first().ok_or("empty record")?;
        let u64_then = |body: &'a [u8]| -> Result<(u64, &'a [u8]), String> {
            let (head, rest) = body
                .split_first_chunk::<8>()
                .ok_or_else(|| format!("record of kind {kind} too short"))?;
            Ok((u64::from_le_bytes(*head), rest))
        };
        match kind {
            KIND_ENTRY => u64_then(body).map(|(i, b)| Record::Entry(i, b)),
            KIND_TRUNCATE => match u64_then(body)? {
                (from, []) => Ok(Record::Truncate(from)),
                _ => Err("truncate record too long".into()),
            },
            KIND_PURGE => u64_then(body).map(|(u, b)| Record::Purge(u, b)),
            KIND_VOTE => Ok(Record::Vote(body)),
            KIND_COMMITTED => Ok(Record::Committed(body)),
            other => Err(format!("unknown record kind {other}")),
        }
    }
}

/// Splits the record at the start of `bytes`: `Ok((payload, total length))`, or why it is bad.
pub(super) fn split_record(bytes: &[u8]) -> Result<(&[u8], usize), String> {
    let (header, rest) = bytes
        .split_first_chunk::<HEADER>()
        .ok_or("short record header")?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let payload = rest.get(..len).ok_or("short record payload")?;
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok((payload, HEADER + len))
}

/// Starts a frame at the end of `buf`; returns where it starts, for [`end_frame`].
pub(super) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the header of the frame begun at `start` (its body is everything after the
/// header). An empty body or one longer than a u32 can say is refused.
pub(super) fn end_frame(buf: &mut [u8], start: usize) -> Result<(), String> {
    let body = &buf[start + FRAME_HEADER..];
    if body.is_empty() {
        return Err("empty log frame".into());
    }
    let len = u32::try_from(body.len())
        .map_err(|_| format!("log frame of {} bytes is too large", body.len()))?;
    let crc = crc32fast::hash(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A frame that does not check out, and where it claims to end (relative to its start;
/// `None` if its header is incomplete).
#[derive(Debug)]
struct BadFrame {
    claimed_end: Option<usize>,
    why: &'static str,
}

/// Splits the frame at the start of `bytes`: `Ok((body, total length))`.
fn split_frame(bytes: &[u8]) -> Result<(&[u8], usize), BadFrame> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER>() else {
        return Err(BadFrame {
            claimed_end: None,
            why: "short frame header",
        });
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let bad = |why| BadFrame {
        claimed_end: Some(FRAME_HEADER + len),
        why,
    };
    if len == 0 {
        return Err(bad("empty frame"));
    }
    let body = rest.get(..len).ok_or_else(|| bad("short frame body"))?;
    if crc32fast::hash(body) != crc {
        return Err(bad("frame checksum mismatch"));
    }
    Ok((body, FRAME_HEADER + len))
}

/// Where an entry's record is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loc {
    /// Segment sequence number.
    pub(super) seq: u64,
    /// Offset of the record's header in the segment (inside its frame's body).
    pub(super) offset: u64,
    /// The record's total length (header included).
    pub(super) len: usize,
}

/// A segment as the index knows it.
#[derive(Debug)]
pub(super) struct Segment {
    /// Readers keep their own clone, so a read survives the segment's deletion.
    pub(super) file: Arc<File>,
    pub(super) path: PathBuf,
    /// Entries in this segment still in the log (not purged, truncated or overwritten).
    pub(super) live: usize,
}

/// Everything readers need, shared between the I/O thread (the only writer) and readers.
/// Updated only after the bytes it describes are written, and only briefly locked: a reader
/// never waits for a write.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) entries: BTreeMap<u64, Loc>,
    pub(super) vote: Option<Vec<u8>>,
    pub(super) committed: Option<Vec<u8>>,
    /// `(upto, codec-encoded log id)`.
    pub(super) last_purged: Option<(u64, Vec<u8>)>,
}

impl Index {
    fn unlive(&mut self, loc: Loc) {
        if let Some(seg) = self.segments.get_mut(&loc.seq) {
            seg.live = seg.live.saturating_sub(1);
        }
    }

    /// Applies one record found (or written) at `loc`.
    pub(super) fn apply(&mut self, record: &Record<'_>, loc: Loc) {
        match *record {
            Record::Entry(index, _) => {
                if let Some(seg) = self.segments.get_mut(&loc.seq) {
                    seg.live += 1;
                }
                if let Some(old) = self.entries.insert(index, loc) {
                    self.unlive(old);
                }
            }
            Record::Truncate(from) => {
                let removed = self.entries.split_off(&from);
                removed.into_values().for_each(|l| self.unlive(l));
            }
            Record::Purge(upto, log_id) => {
                let kept = self.entries.split_off(&upto.saturating_add(1));
                let removed = std::mem::replace(&mut self.entries, kept);
                removed.into_values().for_each(|l| self.unlive(l));
                self.last_purged = Some((upto, log_id.to_vec()));
            }
            Record::Vote(bytes) => self.vote = Some(bytes.to_vec()),
            Record::Committed(bytes) => self.committed = Some(bytes.to_vec()),
        }
    }

    /// The records that restate the current vote, committed index and last purged id: a new
    /// segment starts with them, so no older segment holds anything still needed once its
    /// entries are gone.
    pub(super) fn restate(&self, buf: &mut Vec<u8>) {
        if let Some(vote) = &self.vote {
            Record::Vote(vote).encode_into(buf);
        }
        if let Some(committed) = &self.committed {
            Record::Committed(committed).encode_into(buf);
        }
        if let Some((upto, log_id)) = &self.last_purged {
            Record::Purge(*upto, log_id).encode_into(buf);
        }
    }

    /// The oldest segments (never `active`) that hold no live entry, oldest first, stopping
    /// at the first one that does: only a prefix of the log is ever deleted, so a Truncate
    /// record is never lost while an older segment still holds entries it removed.
    pub(super) fn dead_prefix(&self, active: u64) -> Vec<u64> {
        self.segments
            .iter()
            .take_while(|(seq, seg)| **seq != active && seg.live == 0)
            .map(|(seq, _)| *seq)
            .collect()
    }
}

/// Reads the entry record at `loc` from `file` and returns its codec bytes.
pub(super) fn read_entry(file: &File, loc: Loc, index: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0; loc.len];
    file.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| format!("read log entry {index}: {e}"))?;
    let bad = |why: String| format!("log entry {index} at offset {}: {why}", loc.offset);
    let (payload, _) = split_record(&buf).map_err(bad)?;
    match Record::decode(payload).map_err(bad)? {
        Record::Entry(i, _) if i == index => {}
        _ => return Err(bad("not the expected entry record".into())),
    }
    // kind + index precede the codec bytes.
    Ok(buf.split_off(HEADER + 1 + 8))
}

/// Fsyncs a directory (after creating, renaming or deleting a file in it).
pub(super) fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync directory {}: {e}", dir.display()))
}

/// The segment being appended to.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) seq: u64,
    pub(super) file: Arc<File>,
    /// Bytes written so far (the next record's offset).
    pub(super) size: u64,
}

/// Creates segment `seq` in `dir` (empty; its magic goes in with its first write) and fsyncs
/// the directory.
pub(super) fn create_segment(dir: &Path, seq: u64) -> Result<(Active, PathBuf), String> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    sync_dir(dir)?;
    let active = Active {
        seq,
        file: Arc::new(file),
        size: 0,
    };
    Ok((active, path))
}

/// Replays every segment in `dir` in order into an index, repairing a torn tail of the last
/// one; returns the index and the segment to append to.
pub(super) fn recover(dir: &Path) -> Result<(Index, Active), String> {
    let mut seqs = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
    for item in listing {
        let item = item.map_err(|e| format!("list {}: {e}", dir.display()))?;
        if let Some(seq) = item.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    // Segments are deleted oldest first; one left behind a gap (its deletion not yet durable
    // when the machine stopped) was already dead.
    if let Some(gap) = seqs.windows(2).rposition(|w| w[1] != w[0] + 1) {
        for seq in seqs.drain(..=gap) {
            let path = dir.join(segment_name(seq));
            tracing::warn!(path = %path.display(), "deleting a dead raft log segment left behind");
            std::fs::remove_file(&path).map_err(|e| format!("delete {}: {e}", path.display()))?;
        }
        sync_dir(dir)?;
    }
    let mut index = Index::default();
    let Some(&last) = seqs.last() else {
        let (active, path) = create_segment(dir, 1)?;
        index.segments.insert(
            1,
            Segment {
                file: active.file.clone(),
                path,
                live: 0,
            },
        );
        return Ok((index, active));
    };
    let mut active = None;
    for seq in seqs {
        let path = dir.join(segment_name(seq));
        let is_last = seq == last;
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let file = Arc::new(file);
        index.segments.insert(
            seq,
            Segment {
                file: file.clone(),
                path: path.clone(),
                live: 0,
            },
        );
        let size = replay_segment(&mut index, seq, &file, &path, is_last)?;
        if is_last {
            active = Some(Active { seq, file, size });
        }
    }
    let active = active.ok_or("no active segment")?;
    Ok((index, active))
}

/// Replays one segment into `index`; returns its valid length. A bad frame in the last
/// segment that runs to (or past) the end of the file, or is followed by nothing but zeros, is
/// a torn write: the file is cut there. Any other bad frame, and a bad record inside a frame
/// whose checksum holds, is corruption.
fn replay_segment(
    index: &mut Index,
    seq: u64,
    file: &File,
    path: &Path,
    is_last: bool,
) -> Result<u64, String> {
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        let mut reader: &File = file;
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
    }
    let corrupt = |offset: usize, why: &str| {
        format!(
            "corrupt raft log segment {} at offset {offset}: {why}",
            path.display()
        )
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    // (offset, where it claims to end (absolute; `None`: unreadable header), why).
    let mut bad: Option<(usize, Option<usize>, &str)> = None;
    let mut offset = 0;
    if bytes.len() < MAGIC.len() {
        bad = Some((0, None, "short segment header"));
    } else if &bytes[..MAGIC.len()] != MAGIC {
        // It claims no length: only zeros to the end make it a torn write.
        bad = Some((0, Some(0), "not a Tocsin raft log segment (bad magic)"));
    } else {
        offset = MAGIC.len();
    }
    while bad.is_none() && offset < bytes.len() {
        match split_frame(&bytes[offset..]) {
            Ok((body, total)) => {
                let body_at = offset + FRAME_HEADER;
                let mut at = 0;
                while at < body.len() {
                    let record_at = body_at + at;
                    let in_frame = |why: String| {
                        corrupt(
                            record_at,
                            &format!("bad record in a frame whose checksum holds: {why}"),
                        )
                    };
                    let (payload, len) = split_record(&body[at..]).map_err(in_frame)?;
                    let record = Record::decode(payload).map_err(in_frame)?;
                    let loc = Loc {
                        seq,
                        offset: record_at as u64,
                        len,
                    };
                    index.apply(&record, loc);
                    at += len;
                }
                offset += total;
            }
            Err(frame) => {
                bad = Some((
                    offset,
                    frame.claimed_end.map(|end| offset.saturating_add(end)),
                    frame.why,
                ));
            }
        }
    }
    let Some((at, claimed_end, why)) = bad else {
        return Ok(offset as u64);
    };
    // A crash mid-write leaves the last frame short, or the file extended before its data
    // landed (zeros). A bad frame with more behind it that it does not account for is not a
    // torn write.
    let runs_off_the_end = claimed_end.is_none_or(|end| end >= bytes.len());
    let zeros_to_the_end = bytes[at..].iter().all(|&b| b == 0);
    if !is_last || !(runs_off_the_end || zeros_to_the_end) {
        return Err(corrupt(at, why));
    }
    tracing::warn!(
        path = %path.display(),
        offset = at,
        dropped_bytes = bytes.len() - at,
        reason = %why,
        "raft log: torn write at the end of the last segment; cutting it off"
    );
    file.set_len(at as u64)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("truncate {}: {e}", path.display()))?;
    Ok(at as u64)
}

/// The I/O thread's side of the log: the active segment and the directory.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) active: Active,
    /// A segment at least this large is closed before the next write.
    pub(super) segment_bytes: u64,
    pub(super) index: Arc<Mutex<Index>>,
    /// The exclusive lock on the log directory, held while the thread runs.
    pub(super) _lock: File,
}

impl Writer {
    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `group` as one frame in one write at the end of the active segment (starting
    /// the next segment first if this one is full), fsyncs unless `sync` is false and the
    /// segment held no frame yet, then applies the records to the index and deletes the
    /// segments that died.
    ///
    /// A segment's first frame (a new segment's, or one recovery cut back to its magic or to
    /// nothing) starts with records restating the vote, committed index and last purged id.
    pub(super) fn write(&mut self, group: &[Record<'_>], sync: bool) -> Result<(), String> {
        if group.is_empty() {
            // Nothing to write (an append of no entries); still honour `sync`.
            if sync {
                self.active.file.sync_data().map_err(|e| {
                    let path = self.dir.join(segment_name(self.active.seq));
                    format!("fsync {}: {e}", path.display())
                })?;
            }
            return Ok(());
        }
        if self.active.size >= self.segment_bytes {
            self.rotate()?;
        }
        let magic = MAGIC.len() as u64;
        let first_frame = self.active.size <= magic;
        let mut buf = Vec::new();
        // Recovery leaves the active segment empty or starting with a whole magic.
        let base = if self.active.size < magic {
            buf.extend_from_slice(MAGIC);
            0
        } else {
            self.active.size
        };
        let frame = begin_frame(&mut buf);
        if first_frame {
            self.index().restate(&mut buf);
        }
        let mut locs = Vec::with_capacity(group.len());
        for record in group {
            let start = buf.len();
            record.encode_into(&mut buf);
            locs.push(Loc {
                seq: self.active.seq,
                offset: base + start as u64,
                len: buf.len() - start,
            });
        }
        end_frame(&mut buf, frame)?;
        let path = || self.dir.join(segment_name(self.active.seq));
        self.active
            .file
            .write_all_at(&buf, base)
            .map_err(|e| format!("write {}: {e}", path().display()))?;
        if sync || first_frame {
            self.active
                .file
                .sync_data()
                .map_err(|e| format!("fsync {}: {e}", path().display()))?;
        }
        self.active.size = base + buf.len() as u64;
        let dead = {
            let mut index = self.index();
            for (record, loc) in group.iter().zip(locs) {
                index.apply(record, loc);
            }
            let dead = index.dead_prefix(self.active.seq);
            dead.iter()
                .filter_map(|seq| index.segments.remove(seq))
                .collect::<Vec<_>>()
        };
        // The write itself is durable, so a failed deletion only costs disk: the segment is
        // replayed (harmlessly: it precedes the restated metadata) and deleted after a later
        // restart.
        if !dead.is_empty() {
            for seg in &dead {
                if let Err(e) = std::fs::remove_file(&seg.path) {
                    tracing::warn!(path = %seg.path.display(), error = %e, "raft log: could not delete a dead segment");
                }
            }
            if let Err(e) = sync_dir(&self.dir) {
                tracing::warn!(error = %e, "raft log: fsync after deleting segments failed");
            }
        }
        Ok(())
    }

    /// Starts the next segment (empty: its magic and restated metadata go in with the group
    /// that caused the rotation).
    fn rotate(&mut self) -> Result<(), String> {
        let seq = self.active.seq + 1;
        let (active, path) = create_segment(&self.dir, seq)?;
        self.index().segments.insert(
            seq,
            Segment {
                file: active.file.clone(),
                path,
                live: 0,
            },
        );
        self.active = active;
        Ok(())
    }
}
