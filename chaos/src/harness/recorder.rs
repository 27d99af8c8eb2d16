//! Records the store's committed log (the watch stream from index 0) with the wall time each
//! entry reached the harness, reconnecting through any live node when the stream breaks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tocsin_proto::ServiceError;
use tocsin_state::client::StoreClient;
use tocsin_state::model::Change;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause between reconnection attempts (a node restart takes ~1 s in the test profile).
const RECONNECT_EVERY: Duration = Duration::from_millis(200);
/// Deadline of one store call made by the recorder.
const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// One applied entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Raft log index.
    pub index: u64,
    /// When the harness received it (wall ms).
    pub recv_ms: i64,
    /// The commands applied in it.
    pub changes: Vec<Change>,
}

/// What the recorder holds.
#[derive(Debug, Default)]
pub struct Recording {
    /// Entries in log order, without repeats.
    pub entries: Vec<Entry>,
    /// Log indexes the recorder could not see (compacted while it was reconnecting): the
    /// fencing audit is then partial.
    pub gaps: Vec<(u64, u64)>,
}

/// A running recorder.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Mutex<Recording>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts recording from index 0 through any of `seeds` (gRPC addresses).
    pub fn start(seeds: Vec<String>) -> Result<Self, ServiceError> {
        let client = StoreClient::new(seeds)?.with_deadline(CALL_DEADLINE);
        let shared = Arc::new(Mutex::new(Recording::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(record(client, shared.clone(), stop.clone()));
        Ok(Self {
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The highest index recorded so far (0 if none).
    pub fn last_index(&self) -> u64 {
        self.lock().entries.last().map_or(0, |e| e.index)
    }

    /// Rule groups (`namespace/name`) that committed at least one evaluation so far.
    pub fn groups_evaluated(&self) -> std::collections::BTreeSet<String> {
        let rec = self.lock();
        let mut out = std::collections::BTreeSet::new();
        for e in &rec.entries {
            for c in &e.changes {
                if let Change::Shard {
                    op: tocsin_state::model::ShardOp::EvalCycle { group, .. },
                    ..
                } = c
                {
                    out.insert(format!("{}/{}", group.namespace, group.name));
                }
            }
        }
        out
    }

    /// Stops and returns what was recorded.
    pub async fn finish(mut self) -> Recording {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(client: StoreClient, shared: Arc<Mutex<Recording>>, stop: CancellationToken) {
    let mut next = 0u64;
    while !stop.is_cancelled() {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            s = client.watch(next) => s,
        };
        match stream {
            Ok(stream) => {
                let mut stream = Box::pin(stream);
                loop {
                    let item = tokio::select! {
                        () = stop.cancelled() => return,
                        item = stream.next() => item,
                    };
                    match item {
                        Some(Ok((index, changes))) => {
                            if index < next {
                                continue;
                            }
                            let mut rec = shared
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            rec.entries.push(Entry {
                                index,
                                recv_ms: crate::clock::wall_ms(),
                                changes,
                            });
                            next = index + 1;
                        }
                        Some(Err(ServiceError::Compacted { earliest, .. })) => {
                            note_gap(&shared, next, earliest);
                            next = earliest;
                            break;
                        }
                        Some(Err(err)) => {
                            tracing::debug!(%err, next, "watch stream broke; reconnecting");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(ServiceError::Compacted { earliest, .. }) => {
                note_gap(&shared, next, earliest);
                next = earliest;
            }
            Err(err) => tracing::debug!(%err, next, "watch refused; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_EVERY) => {}
        }
    }
}

fn note_gap(shared: &Mutex<Recording>, from: u64, to: u64) {
    if to > from {
        let mut rec = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rec.gaps.push((from, to));
    }
}
