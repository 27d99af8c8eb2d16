//! The request log every emulator keeps and serves at `GET /requests`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::faults::FaultMode;

/// Entries kept per emulator. A long chaos run sends tens of thousands of notifications; past
/// this the oldest entries go (and `dropped` counts them) so memory stays bounded.
pub const MAX_LOG_ENTRIES: usize = 200_000;

/// One request as the emulator saw it and what it did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Arrival order within this emulator, from 1.
    pub seq: u64,
    /// Arrival time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// HTTP method, or the SMTP verb that completed the exchange (`DATA`).
    pub method: String,
    /// Request path (for SMTP: `smtp`).
    pub path: String,
    /// Query string, if any.
    #[serde(default)]
    pub query: Option<String>,
    /// Request headers (lowercase names; repeated headers joined with `, `). For SMTP: the
    /// message's headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, as UTF-8 (lossy).
    pub body: String,
    /// The fault in force for this request (`ok` when none).
    pub fault: FaultMode,
    /// Whether the request was applied to the emulator's state (an incident opened, a message
    /// queued). False for validation errors, throttling and injected 5xx/429.
    pub processed: bool,
    /// What the emulator answered, or would have answered when the fault withheld it.
    pub answer: RecordedAnswer,
    /// Provider-specific facts (SMS segments, PagerDuty incident id, SMTP envelope...).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// The answer part of a [`RecordedRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedAnswer {
    /// HTTP status (for SMTP: the reply code).
    pub status: u16,
    /// Response body (for SMTP: the reply text).
    pub body: String,
    /// False when the fault (`hang`, `drop_after_processing`) kept it from the client.
    pub delivered: bool,
    /// The `Retry-After` header sent with it, in seconds.
    #[serde(default)]
    pub retry_after_s: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<RecordedRequest>,
    next_seq: u64,
    dropped: u64,
}

/// A bounded, shared, append-only (until cleared) request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
}

impl RequestLog {
    /// Appends `entry`, assigning its `seq`; returns the seq.
    pub fn push(&self, mut entry: RecordedRequest) -> u64 {
        let mut inner = self.lock();
        inner.next_seq += 1;
        entry.seq = inner.next_seq;
        if inner.entries.len() == MAX_LOG_ENTRIES {
            inner.entries.pop_front();
            inner.dropped += 1;
        }
        inner.entries.push_back(entry);
        inner.next_seq
    }

    /// A copy of every retained entry, oldest first.
    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().entries.iter().cloned().collect()
    }

    /// How many entries are retained.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted because the log was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Forgets every entry (sequence numbers keep growing).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.dropped = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves a consistent log (every mutation is one
        // push/pop), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> RecordedRequest {
        RecordedRequest {
            seq: 0,
            time_ms: 1,
            method: "POST".into(),
            path: "/x".into(),
            query: None,
            headers: BTreeMap::new(),
            body: String::new(),
            fault: FaultMode::Ok,
            processed: true,
            answer: RecordedAnswer {
                status: 200,
                body: "ok".into(),
                delivered: true,
                retry_after_s: None,
            },
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn seq_numbers_survive_clear() {
        let log = RequestLog::default();
        assert_eq!(log.push(entry()), 1);
        assert_eq!(log.push(entry()), 2);
        log.clear();
        assert!(log.snapshot().is_empty());
        assert_eq!(log.push(entry()), 3);
        assert_eq!(log.snapshot()[0].seq, 3);
    }
}
