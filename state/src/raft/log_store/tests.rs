//! The WAL's durability rules: what survives a reopen, torn tails, corruption, rotation with
//! purge, truncation, and migration from the previous redb log.

use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, Vote};
use tempfile::TempDir;
use tocsin_proto::codec;

use super::migrate::{LOG, META, MIGRATED_FILE, REDB_FILE};
use super::{Entry, LogId, LogOptions, LogStore, TailLimits, WAL_DIR};
use crate::probe::Probe;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

/// A tail of one entry, so nearly every read goes to the segments.
fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        tail: TailLimits {
            entries: 1,
            bytes: 1024,
        },
        segment_bytes,
    }
}

fn open(dir: &Path, segment_bytes: u64) -> LogStore {
    LogStore::open_with_options(dir, Probe::default(), options(segment_bytes)).expect("open log")
}

/// The segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(WAL_DIR))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    out.sort();
    out
}

async fn append(log: &mut LogStore, term: u64, indexes: std::ops::RangeInclusive<u64>) {
    log.blocking_append(indexes.map(|i| entry(term, i)))
        .await
        .expect("append");
}

/// The log ids of every entry in `[start, end]`.
async fn ids(log: &mut LogStore, start: u64, end: u64) -> Vec<LogId> {
    log.try_get_log_entries(start..=end)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.log_id)
        .collect()
}

fn expected(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<LogId> {
    indexes.map(|i| log_id(term, i)).collect()
}

#[tokio::test]
async fn entries_vote_committed_and_last_purged_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let vote = Vote::new_committed(3, 2);
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        log.save_vote(&vote).await.expect("vote");
        append(&mut log, 3, 1..=10).await;
        log.save_committed(Some(log_id(3, 8)))
            .await
            .expect("committed");
        log.purge(log_id(3, 3)).await.expect("purge");
    }
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_state(
        &mut log,
        vote,
        log_id(3, 8),
        log_id(3, 3),
        expected(3, 4..=10),
    )
    .await;
}

/// The log holds exactly this vote, committed index, last purged id and entries.
async fn assert_state(
    log: &mut LogStore,
    vote: Vote<u64>,
    committed: LogId,
    purged: LogId,
    entries: Vec<LogId>,
) {
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(committed)
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(purged));
    assert_eq!(state.last_log_id, entries.last().copied());
    assert_eq!(ids(log, 0, 100).await, entries);
}

/// Cuts the last segment inside entry `index`'s record.
fn cut_inside(log: &LogStore, dir: &Path, index: u64) {
    let loc = log.index().entries[&index];
    let path = segments(dir).pop().expect("a segment");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment");
    file.set_len(loc.offset + 5).expect("cut");
}

#[tokio::test]
async fn a_torn_tail_drops_the_whole_group_and_appends_go_on() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
        append(&mut log, 1, 6..=8).await;
        // The records of 6 and 7 stay whole; the group commit is all or nothing.
        cut_inside(&log, dir.path(), 8);
    }
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 1..=5));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
    append(&mut log, 2, 6..=7).await;
    drop(log);
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    let mut want = expected(1, 1..=5);
    want.extend(expected(2, 6..=7));
    assert_eq!(ids(&mut log, 0, 100).await, want);
}

/// Appends `extra` to the last segment; returns it and its length before.
fn append_bytes(dir: &Path, extra: &[u8]) -> (PathBuf, u64) {
    let path = segments(dir).pop().expect("a segment");
    let good_len = std::fs::metadata(&path).expect("stat").len();
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(extra);
    std::fs::write(&path, bytes).expect("write");
    (path, good_len)
}

#[tokio::test]
async fn a_frame_claiming_to_run_past_the_end_is_cut_off() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
    }
    // A header claiming a huge body, then noise: a torn write.
    let mut garbage = u32::MAX.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xab; 13]);
    let (path, good_len) = append_bytes(dir.path(), &garbage);

    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), good_len);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 1..=5));
    append(&mut log, 1, 6..=6).await;
    drop(log);
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 1..=6));
}

#[tokio::test]
async fn zeros_after_the_last_frame_are_cut_off() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
    }
    // The file system extended the file before the data landed.
    let (path, good_len) = append_bytes(dir.path(), &[0; 4096]);

    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), good_len);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 1..=5));
    append(&mut log, 1, 6..=6).await;
    drop(log);
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 1..=6));
}

/// Asserts that `open` fails naming `file` and `offset`.
fn assert_corrupt(dir: &Path, segment_bytes: u64, file: &Path, offset: u64) {
    let err = LogStore::open_with_options(dir, Probe::default(), options(segment_bytes))
        .expect_err("open must fail");
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(err.contains(&name), "{err}");
    assert!(err.contains(&format!("offset {offset}")), "{err}");
}

#[tokio::test]
async fn a_short_frame_followed_by_more_than_it_claims_is_corruption() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
    }
    // A header claiming 4 bytes, then 40 bytes of noise: not what a torn write leaves.
    let mut garbage = 4u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xab; 44]);
    let (path, good_len) = append_bytes(dir.path(), &garbage);
    assert_corrupt(dir.path(), super::SEGMENT_BYTES, &path, good_len);
    // Nothing was cut.
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        good_len + garbage.len() as u64
    );
}

#[tokio::test]
async fn a_bad_frame_before_a_good_one_in_the_last_segment_is_corruption() {
    let dir = TempDir::new().expect("temp dir");
    let frame_at;
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
        append(&mut log, 1, 6..=8).await;
        // The first group's frame follows the magic; entry 3 is inside it.
        frame_at = super::wal::MAGIC.len() as u64;
        let loc = log.index().entries[&3];
        let path = segments(dir.path()).pop().expect("a segment");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[loc.offset as usize + super::wal::HEADER + 2] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
    }
    let path = segments(dir.path()).pop().expect("a segment");
    assert_corrupt(dir.path(), super::SEGMENT_BYTES, &path, frame_at);
}

#[tokio::test]
async fn a_bad_record_in_a_frame_whose_checksum_holds_is_corruption() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=5).await;
    }
    // A frame with a correct checksum around a record with a wrong one.
    let mut record = Vec::new();
    super::wal::Record::Truncate(3).encode_into(&mut record);
    record[super::wal::HEADER] ^= 0xff;
    let mut frame = Vec::new();
    let start = super::wal::begin_frame(&mut frame);
    frame.extend_from_slice(&record);
    super::wal::end_frame(&mut frame, start).expect("frame");
    let (path, good_len) = append_bytes(dir.path(), &frame);
    assert_corrupt(
        dir.path(),
        super::SEGMENT_BYTES,
        &path,
        good_len + super::wal::FRAME_HEADER as u64,
    );
}

#[tokio::test]
async fn a_segment_cut_back_by_recovery_restates_the_metadata() {
    let dir = TempDir::new().expect("temp dir");
    let vote = Vote::new_committed(4, 1);
    {
        // Every group after the first starts a new segment; a segment holding only its
        // magic takes one more.
        let mut log = open(dir.path(), 9);
        log.save_vote(&vote).await.expect("vote");
        append(&mut log, 4, 1..=1).await;
        append(&mut log, 4, 2..=2).await;
        // Tear the last segment's only frame (its restated vote and entry 2): recovery cuts it
        // back to its magic.
        cut_inside(&log, dir.path(), 2);
    }
    let mut log = open(dir.path(), 9);
    assert_eq!(ids(&mut log, 0, 100).await, expected(4, 1..=1));
    // The cut segment gets the vote again with its first frame, so it survives the
    // deletion of the older segments.
    log.purge(log_id(4, 1)).await.expect("purge");
    assert_eq!(segments(dir.path()).len(), 1);
    drop(log);
    let mut log = open(dir.path(), 9);
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(4, 1)));
    append(&mut log, 4, 2..=2).await;
    assert_eq!(ids(&mut log, 0, 100).await, expected(4, 2..=2));
}

#[tokio::test]
async fn a_bad_checksum_before_the_last_segment_fails_open_naming_the_file() {
    let dir = TempDir::new().expect("temp dir");
    {
        // Every group after the first starts a new segment.
        let mut log = open(dir.path(), 9);
        for i in 1..=4 {
            append(&mut log, 1, i..=i).await;
        }
    }
    let files = segments(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let first = &files[0];
    let mut bytes = std::fs::read(first).expect("read");
    // A byte of the first frame's body (magic, then frame header): its checksum fails, and
    // the frame is at offset 8 of a segment that is not the last.
    let at = super::wal::MAGIC.len() + super::wal::FRAME_HEADER;
    bytes[at] ^= 0xff;
    std::fs::write(first, bytes).expect("write");

    let err = LogStore::open_with_options(dir.path(), Probe::default(), options(1))
        .expect_err("open must fail");
    let name = first
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(err.contains(&name), "{err}");
    assert!(
        err.contains(&format!("offset {}", super::wal::MAGIC.len())),
        "{err}"
    );
}

#[tokio::test]
async fn rotation_and_purge_delete_old_segments_and_a_reopen_reads_the_rest() {
    let dir = TempDir::new().expect("temp dir");
    let vote = Vote::new_committed(1, 1);
    let before;
    {
        let mut log = open(dir.path(), 100);
        log.save_vote(&vote).await.expect("vote");
        for i in 1..=30 {
            append(&mut log, 1, i..=i).await;
        }
        before = segments(dir.path()).len();
        assert!(before >= 5, "{before} segments");
        log.purge(log_id(1, 20)).await.expect("purge");
        // Deleted once the write that killed their entries is durable: right after the purge.
        let after = segments(dir.path()).len();
        assert!(
            after < before,
            "{after} segments after purge, {before} before"
        );
        assert_eq!(ids(&mut log, 0, 100).await, expected(1, 21..=30));
    }
    let mut log = open(dir.path(), 100);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 21..=30));
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
    assert_eq!(state.last_log_id, Some(log_id(1, 30)));
    // Purging everything leaves only the active segment, and the log stays usable.
    log.purge(log_id(1, 30)).await.expect("purge all");
    append(&mut log, 1, 31..=31).await;
    append(&mut log, 1, 32..=32).await;
    log.purge(log_id(1, 31)).await.expect("purge");
    assert!(segments(dir.path()).len() <= 2);
    drop(log);
    let mut log = open(dir.path(), 100);
    assert_eq!(ids(&mut log, 0, 100).await, expected(1, 32..=32));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 31)));
}

#[tokio::test]
async fn truncate_then_reopen() {
    let dir = TempDir::new().expect("temp dir");
    {
        // Small segments: the truncated entries live in older segments than the record that
        // removed them, which must not be deleted while an older one still holds entries.
        let mut log = open(dir.path(), 150);
        for i in 1..=10 {
            append(&mut log, 1, i..=i).await;
        }
        log.truncate(log_id(1, 6)).await.expect("truncate");
        append(&mut log, 2, 6..=8).await;
        append(&mut log, 2, 9..=9).await;
    }
    let mut log = open(dir.path(), 150);
    let mut want = expected(1, 1..=5);
    want.extend(expected(2, 6..=9));
    assert_eq!(ids(&mut log, 0, 100).await, want);
    log.purge(log_id(1, 2)).await.expect("purge");
    drop(log);
    let mut log = open(dir.path(), 150);
    assert_eq!(ids(&mut log, 0, 100).await, want[2..].to_vec());
}

/// Writes a log the way the previous (redb) version did.
fn write_redb_log(dir: &Path, entries: &[Entry], vote: &Vote<u64>, committed: Option<LogId>) {
    let db = redb::Database::create(dir.join(REDB_FILE)).expect("create redb");
    let txn = db.begin_write().expect("txn");
    {
        let mut log = txn.open_table(LOG).expect("log table");
        let mut meta = txn.open_table(META).expect("meta table");
        for e in entries {
            log.insert(e.log_id.index, codec::encode(e).as_slice())
                .expect("insert");
        }
        meta.insert("vote", codec::encode(vote).as_slice())
            .expect("vote");
        meta.insert("committed", codec::encode(&committed).as_slice())
            .expect("committed");
        meta.insert("last_purged", codec::encode(&log_id(2, 2)).as_slice())
            .expect("purged");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn a_redb_log_of_the_previous_version_is_migrated() {
    let dir = TempDir::new().expect("temp dir");
    let vote = Vote::new_committed(2, 3);
    let old: Vec<Entry> = (3..=7).map(|i| entry(2, i)).collect();
    write_redb_log(dir.path(), &old, &vote, Some(log_id(2, 6)));

    for _ in 0..2 {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        assert!(!dir.path().join(REDB_FILE).exists());
        assert!(dir.path().join(MIGRATED_FILE).exists());
        assert_state(
            &mut log,
            vote,
            log_id(2, 6),
            log_id(2, 2),
            expected(2, 3..=7),
        )
        .await;
    }
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    append(&mut log, 2, 8..=8).await;
    assert_eq!(ids(&mut log, 0, 100).await, expected(2, 3..=8));
}

/// A copy of the log directory as the disk holds it now (what a power loss would leave,
/// since every written frame is fsynced before its write returns).
fn disk_image(dir: &Path) -> TempDir {
    let image = TempDir::new().expect("temp dir");
    let to = image.path().join(WAL_DIR);
    std::fs::create_dir_all(&to).expect("mkdir");
    for seg in segments(dir) {
        std::fs::copy(&seg, to.join(seg.file_name().expect("name"))).expect("copy segment");
    }
    image
}

async fn committed_once_seen(log: &mut LogStore, want: LogId) {
    let started = std::time::Instant::now();
    while log.read_committed().await.expect("committed") != Some(want) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the committed index {want} never became readable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_committed_index_alone_waits_for_the_next_durable_frame_or_shutdown() {
    let dir = TempDir::new().expect("temp dir");
    {
        let mut log = open(dir.path(), super::SEGMENT_BYTES);
        append(&mut log, 1, 1..=3).await;
        log.save_committed(Some(log_id(1, 2)))
            .await
            .expect("committed");
        committed_once_seen(&mut log, log_id(1, 2)).await;
        // Readable, but not written: the disk still has no committed index.
        let image = disk_image(dir.path());
        let mut before = open(image.path(), super::SEGMENT_BYTES);
        assert_eq!(before.read_committed().await.expect("committed"), None);
        // The next durable write carries it.
        append(&mut log, 1, 4..=4).await;
        let image = disk_image(dir.path());
        let mut after = open(image.path(), super::SEGMENT_BYTES);
        assert_eq!(
            after.read_committed().await.expect("committed"),
            Some(log_id(1, 2))
        );
        // Held again, then written when the last handle goes.
        log.save_committed(Some(log_id(1, 4)))
            .await
            .expect("committed");
        committed_once_seen(&mut log, log_id(1, 4)).await;
    }
    // `open` waits for the exiting I/O thread's lock, so its last write has landed.
    let mut log = open(dir.path(), super::SEGMENT_BYTES);
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 4))
    );
    assert_eq!(ids(&mut log, 1, 4).await, expected(1, 1..=4));
}
