//! One-time migration of a log written by the previous version (redb, `raft-log.redb`) into
//! the first segment of the WAL.

use std::os::unix::fs::FileExt;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::wal::{FRAME_HEADER, MAGIC, Record, begin_frame, end_frame, segment_name, sync_dir};

/// A migrated log is written in frames of about this many bytes (a frame's length is a u32).
const FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The previous version's tables: index → codec-encoded entry ...
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// ... and `vote`, `committed`, `last_purged` → codec-encoded values.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The previous version's log file in the data dir.
pub(super) const REDB_FILE: &str = "raft-log.redb";
/// What it is renamed to once migrated (kept for the operator to delete).
pub(super) const MIGRATED_FILE: &str = "raft-log.redb.migrated";

/// If `data_dir` holds a redb log and no WAL yet, writes everything in it as the first
/// segment of a WAL at `wal_dir` (built beside it and renamed into place, so a crash leaves
/// either no WAL or a complete one), then renames the redb file to [`MIGRATED_FILE`].
pub(super) fn migrate_redb(data_dir: &Path, wal_dir: &Path) -> Result<(), String> {
    let redb_path = data_dir.join(REDB_FILE);
    if !redb_path.exists() {
        return Ok(());
    }
    if wal_dir.exists() {
        tracing::warn!(
            path = %redb_path.display(),
            "an old redb raft log lies beside the WAL; ignoring it"
        );
        return Ok(());
    }
    let building = data_dir.join("raft-log.migrating");
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .map_err(|e| format!("remove {}: {e}", building.display()))?;
    }
    std::fs::create_dir(&building).map_err(|e| format!("create {}: {e}", building.display()))?;
    let (buf, entries) = read_redb(&redb_path)?;
    let seg_path = building.join(segment_name(1));
    let file = std::fs::File::create_new(&seg_path)
        .map_err(|e| format!("create {}: {e}", seg_path.display()))?;
    file.write_all_at(&buf, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("write {}: {e}", seg_path.display()))?;
    sync_dir(&building)?;
    std::fs::rename(&building, wal_dir)
        .map_err(|e| format!("rename to {}: {e}", wal_dir.display()))?;
    sync_dir(data_dir)?;
    let migrated = data_dir.join(MIGRATED_FILE);
    std::fs::rename(&redb_path, &migrated)
        .map_err(|e| format!("rename {}: {e}", redb_path.display()))?;
    sync_dir(data_dir)?;
    tracing::info!(
        from = %redb_path.display(),
        to = %wal_dir.display(),
        entries,
        renamed_to = %migrated.display(),
        "migrated the redb raft log to the WAL"
    );
    Ok(())
}

/// The redb log as one segment's bytes (magic, then frames holding vote, committed, last
/// purged and the entries), and how many entries it holds.
fn read_redb(path: &Path) -> Result<(Vec<u8>, usize), String> {
    let err = |e: &dyn std::fmt::Display| format!("read {}: {e}", path.display());
    let db = Database::open(path).map_err(|e| err(&e))?;
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let mut buf = MAGIC.to_vec();
    let mut frame = begin_frame(&mut buf);
    match txn.open_table(META) {
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(&e)),
        Ok(meta) => {
            let get = |key: &str| -> Result<Option<Vec<u8>>, String> {
                Ok(meta
                    .get(key)
                    .map_err(|e| err(&e))?
                    .map(|v| v.value().to_vec()))
            };
            if let Some(vote) = get("vote")? {
                Record::Vote(&vote).encode_into(&mut buf);
            }
            if let Some(committed) = get("committed")? {
                Record::Committed(&committed).encode_into(&mut buf);
            }
            if let Some(purged) = get("last_purged")? {
                let log_id: super::LogId =
                    tocsin_proto::codec::decode("last purged", &purged).map_err(|e| err(&e))?;
                Record::Purge(log_id.index, &purged).encode_into(&mut buf);
            }
        }
    }
    let mut entries = 0;
    match txn.open_table(LOG) {
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(&e)),
        Ok(log) => {
            for item in log.iter().map_err(|e| err(&e))? {
                let (index, bytes) = item.map_err(|e| err(&e))?;
                if buf.len() - frame - FRAME_HEADER >= FRAME_BYTES {
                    end_frame(&mut buf, frame)?;
                    frame = begin_frame(&mut buf);
                }
                Record::Entry(index.value(), bytes.value()).encode_into(&mut buf);
                entries += 1;
            }
        }
    }
    if buf.len() == frame + FRAME_HEADER {
        // An empty frame is invalid: leave it out.
        buf.truncate(frame);
    } else {
        end_frame(&mut buf, frame)?;
    }
    Ok((buf, entries))
}
