//! openraft's storage conformance suite, run against the real WAL log store and the real
//! state-machine store on a real disk.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use tocsin_state::probe::Probe;
use tocsin_state::raft::TypeConfig;
use tocsin_state::raft::log_store::{LogStore, TailLimits};
use tocsin_state::raft::sm_store::SmStore;

struct Builder(TailLimits);

impl StoreBuilder<TypeConfig, LogStore, SmStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, SmStore), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log =
            LogStore::open_with(dir.path(), Probe::default(), self.0).expect("open log store");
        let sm = SmStore::open(dir.path(), Probe::default()).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder(TailLimits::default())).expect("storage conformance");
}

/// The same suite with a tail of two entries: reads span the WAL segments and the tail, and
/// entries are evicted as soon as they are durable.
#[test]
fn openraft_storage_suite_passes_with_a_tiny_tail() {
    let tiny = TailLimits {
        entries: 2,
        bytes: 64 * 1024,
    };
    Suite::test_all(Builder(tiny)).expect("storage conformance");
}
