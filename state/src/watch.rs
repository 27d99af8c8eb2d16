//! The watch hub: every applied entry's changes, retained for a bounded window, streamed to
//! subscribers from any log index inside that window.
//!
//! A subscriber that falls behind the window (or asks for an index before it) gets
//! [`WatchError::Compacted`] and must re-read the state with a query, then watch from the
//! read's applied index. Subscribers never block the state machine: it only appends to the
//! ring and bumps a `watch` channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::model::Change;

/// Entries retained for watchers (about a few seconds of peak write load).
pub const WATCH_RETAINED_ENTRIES: usize = 16_384;

/// The changes of one applied log entry.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// Log index of the entry.
    pub index: u64,
    /// Commands of the entry that were applied (refused ones omitted).
    pub changes: Arc<[Change]>,
}

/// Why a watch cannot continue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The requested index is no longer retained.
    #[error("log index {requested} is no longer retained; earliest available is {earliest}")]
    Compacted { requested: u64, earliest: u64 },
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<WatchEvent>,
    /// Every index below this is unavailable (compacted, or replaced by a snapshot).
    floor: u64,
}

/// Shared between the state machine (producer) and the store service (subscribers).
#[derive(Debug, Clone)]
pub struct WatchHub {
    ring: Arc<Mutex<Ring>>,
    applied: watch::Sender<u64>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            ring: Arc::default(),
            applied: watch::Sender::new(0),
        }
    }

    /// Records an applied entry. Indexes must be increasing.
    pub fn push(&self, index: u64, changes: Arc<[Change]>) {
        {
            let mut ring = self.ring.lock().expect("watch ring poisoned");
            if let Some(last) = ring.events.back() {
                debug_assert!(index > last.index, "watch indexes must increase");
            }
            ring.events.push_back(WatchEvent { index, changes });
            while ring.events.len() > WATCH_RETAINED_ENTRIES {
                if let Some(dropped) = ring.events.pop_front() {
                    ring.floor = dropped.index + 1;
                }
            }
        }
        self.applied.send_replace(index);
    }

    /// The state was replaced by a snapshot ending at `index`: history before it is gone.
    pub fn reset(&self, index: u64) {
        let mut ring = self.ring.lock().expect("watch ring poisoned");
        ring.events.clear();
        ring.floor = index + 1;
        drop(ring);
        self.applied.send_replace(index);
    }

    /// Last index pushed.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Events with index >= `from`, up to what is applied now.
    pub fn read_from(&self, from: u64) -> Result<Vec<WatchEvent>, WatchError> {
        let ring = self.ring.lock().expect("watch ring poisoned");
        if from < ring.floor {
            return Err(WatchError::Compacted {
                requested: from,
                earliest: ring.floor,
            });
        }
        Ok(ring
            .events
            .iter()
            .filter(|e| e.index >= from)
            .cloned()
            .collect())
    }

    /// A receiver that changes whenever an entry is applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_an_index_and_reports_compaction() {
        let hub = WatchHub::new();
        for i in 1..=5 {
            hub.push(i, Arc::from([]));
        }
        let got: Vec<u64> = hub.read_from(3).unwrap().iter().map(|e| e.index).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert_eq!(hub.read_from(0).unwrap().len(), 5);
        hub.reset(10);
        assert_eq!(
            hub.read_from(4),
            Err(WatchError::Compacted {
                requested: 4,
                earliest: 11
            })
        );
        assert!(hub.read_from(11).unwrap().is_empty());
        hub.push(11, Arc::from([]));
        assert_eq!(hub.read_from(11).unwrap().len(), 1);
    }
}
