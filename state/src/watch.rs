//! The watch hub: every applied entry's changes, retained for a bounded window, streamed to
//! subscribers from any log index inside that window.
//!
//! The changes are the entry's commands, shared with the log (not copied). The window is
//! bounded by entries and by commands, whichever binds first: an entry may hold one command or
//! thousands, so an entry count alone let a node hold gigabytes of history under a heavy write
//! load (16,384 entries of a few hundred commands each, on every node).
//!
//! A subscriber that falls behind the window (or asks for an index before it) gets
//! [`WatchError::Compacted`] and must re-read the state with a query, then watch from the
//! read's applied index. Subscribers never block the state machine: it only appends to the
//! ring and bumps a `watch` channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::model::Change;

/// Most entries retained for watchers.
pub const WATCH_RETAINED_ENTRIES: usize = 16_384;
/// Most commands retained for watchers (the newest entry is kept whatever its size): about a
/// second of this machine's peak write load, many seconds of a normal one, and 50–100 MB of
/// decoded alert transitions.
pub const WATCH_RETAINED_COMMANDS: usize = 65_536;

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

#[derive(Debug)]
struct Ring {
    events: VecDeque<WatchEvent>,
    /// Commands in the retained events.
    commands: usize,
    /// Every index below this is unavailable (compacted, or replaced by a snapshot).
    floor: u64,
    max_entries: usize,
    max_commands: usize,
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
    /// An empty hub with the default window ([`WATCH_RETAINED_ENTRIES`],
    /// [`WATCH_RETAINED_COMMANDS`]).
    pub fn new() -> Self {
        Self::with_window(WATCH_RETAINED_ENTRIES, WATCH_RETAINED_COMMANDS)
    }

    /// An empty hub retaining at most `max_entries` entries holding at most `max_commands`
    /// commands (the newest entry is always kept).
    fn with_window(max_entries: usize, max_commands: usize) -> Self {
        Self {
            ring: Arc::new(Mutex::new(Ring {
                events: VecDeque::new(),
                commands: 0,
                floor: 0,
                max_entries: max_entries.max(1),
                max_commands,
            })),
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
            ring.commands += changes.len();
            ring.events.push_back(WatchEvent { index, changes });
            while ring.events.len() > ring.max_entries
                || (ring.commands > ring.max_commands && ring.events.len() > 1)
            {
                let Some(dropped) = ring.events.pop_front() else {
                    break;
                };
                ring.commands -= dropped.changes.len();
                ring.floor = dropped.index + 1;
            }
        }
        self.applied.send_replace(index);
    }

    /// The state was replaced by a snapshot ending at `index`: history before it is gone.
    pub fn reset(&self, index: u64) {
        let mut ring = self.ring.lock().expect("watch ring poisoned");
        ring.events.clear();
        ring.commands = 0;
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
        let start = ring.events.partition_point(|e| e.index < from);
        Ok(ring.events.range(start..).cloned().collect())
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

    fn changes(n: usize) -> Arc<[Change]> {
        (0..n)
            .map(|i| Change::ExpireSilence {
                id: format!("s-{i}"),
                at_ms: 0,
            })
            .collect()
    }

    /// The window drops the oldest entries once they hold more commands than its bound,
    /// whatever the entry count, and reports them compacted; the newest entry stays even if
    /// it alone is over the bound.
    #[test]
    fn the_window_is_bounded_by_commands() {
        let hub = WatchHub::with_window(1000, 30);
        for i in 1..=5 {
            hub.push(i, changes(10));
        }
        let kept: Vec<u64> = hub.read_from(3).unwrap().iter().map(|e| e.index).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(
            hub.read_from(2),
            Err(WatchError::Compacted {
                requested: 2,
                earliest: 3
            })
        );
        hub.push(6, changes(100));
        let kept: Vec<u64> = hub.read_from(6).unwrap().iter().map(|e| e.index).collect();
        assert_eq!(kept, vec![6]);
        assert!(hub.read_from(5).is_err());
        hub.push(7, changes(1));
        assert_eq!(hub.read_from(7).unwrap().len(), 1);
        assert!(
            hub.read_from(6).is_err(),
            "the big entry went once a newer one came"
        );
    }
}
