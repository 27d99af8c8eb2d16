//! The on-disk log: round trips, torn tails, segment deletion.

use super::*;
use crate::promql::{STALE_NAN, Store, is_stale};

fn l(name: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("job", "j")])
}

#[test]
fn crc_matches_zlib() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn records_round_trip_and_restart_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (l("a"), l("b"));
    {
        let mut store = MetricStore::default();
        let (wal, report) = Wal::open(dir.path(), &mut store, 1 << 20).unwrap();
        assert_eq!(report, ReplayReport::default());
        wal.log(&vec![
            (&a, vec![(1, 1.0), (2, STALE_NAN)]),
            (&b, vec![(1, f64::NAN)]),
        ]);
        wal.log(&vec![(&a, vec![(3, 3.0)])]);
    }
    let mut store = MetricStore::default();
    let (_wal, report) = Wal::open(dir.path(), &mut store, 1 << 20).unwrap();
    assert_eq!(report.samples, 4);
    let got = store.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 2);
    assert!(is_stale(got[0].points[1].v));
    assert!(got[1].points[0].v.is_nan());
}

#[test]
fn a_torn_tail_is_truncated_and_earlier_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = l("a");
    {
        let mut store = MetricStore::default();
        let (wal, _) = Wal::open(dir.path(), &mut store, 1 << 20).unwrap();
        wal.log(&vec![(&a, vec![(1, 1.0)])]);
    }
    let seg = segment_path(dir.path(), 0);
    let mut bytes = fs::read(&seg).unwrap();
    let (rec, _) = encode(&vec![(&a, vec![(2, 2.0)])]);
    bytes.extend_from_slice(&rec[..rec.len() - 3]);
    fs::write(&seg, &bytes).unwrap();
    let mut store = MetricStore::default();
    let (_wal, report) = Wal::open(dir.path(), &mut store, 1 << 20).unwrap();
    assert_eq!(report.samples, 1);
    assert_eq!(report.truncated_bytes, rec.len() as u64 - 3);
    assert_eq!(
        fs::metadata(&seg).unwrap().len() as usize,
        bytes.len() - (rec.len() - 3)
    );
}

#[test]
fn old_segments_are_deleted_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let a = l("a");
    let mut store = MetricStore::default();
    let (wal, _) = Wal::open(dir.path(), &mut store, 64).unwrap();
    for t in 0..10 {
        wal.log(&vec![(&a, vec![(t * 1000, 1.0)])]);
    }
    wal.sync();
    // Each record is ~60 bytes: two per 64-byte segment, so segment k ends at (2k+1) s.
    assert_eq!(segments(dir.path()).unwrap(), vec![0, 1, 2, 3, 4, 5]);
    wal.drop_before(5_000);
    wal.sync();
    // Segments 0 and 1 end before 5 s; the open segment is never deleted.
    assert_eq!(segments(dir.path()).unwrap(), vec![2, 3, 4, 5]);
}
