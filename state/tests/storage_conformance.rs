//! openraft's storage conformance suite, run against the real redb log store and the real
//! state-machine store on a real disk.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use tocsin_state::raft::TypeConfig;
use tocsin_state::raft::log_store::LogStore;
use tocsin_state::raft::sm_store::SmStore;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, SmStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, SmStore), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path(), None).expect("open log store");
        let sm = SmStore::open(dir.path()).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("storage conformance");
}
