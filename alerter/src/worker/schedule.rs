//! When a rule group evaluates (pure).
//!
//! Each group evaluates at a slot fixed by a hash of its identity within its interval
//! (`t % interval == offset`), so a mass handoff does not align every query. Slot timestamps,
//! not "now", are the evaluation timestamps. A new owner resumes from the group's committed
//! watermark: if it missed slots it evaluates **at most one**, the latest, at its historical
//! timestamp (catch-up), then continues on schedule.

use tocsin_proto::ids::stable_hash;

/// The group's phase within its interval, in `[0, interval_ms)`.
pub fn slot_offset(namespace: &str, group: &str, interval_ms: i64) -> i64 {
    assert!(interval_ms > 0, "interval must be positive");
    (stable_hash(&["slot", namespace, group]) % interval_ms as u64) as i64
}

/// The latest slot at or before `t_ms`.
pub fn slot_at_or_before(t_ms: i64, offset: i64, interval_ms: i64) -> i64 {
    let k = (t_ms - offset).div_euclid(interval_ms);
    k * interval_ms + offset
}

/// The first slot strictly after `t_ms`.
pub fn next_slot_after(t_ms: i64, offset: i64, interval_ms: i64) -> i64 {
    slot_at_or_before(t_ms, offset, interval_ms) + interval_ms
}

/// What a (new) owner of a group does first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// A missed slot to evaluate at once at its historical timestamp.
    pub catch_up: Option<i64>,
    /// The next slot to wait for.
    pub next: i64,
    /// Slots skipped without evaluation (more than one missed).
    pub skipped: u64,
}

/// Plans the first evaluations of a group whose committed watermark is `watermark` (the last
/// evaluated slot, `None` if never evaluated) at `now_ms`.
pub fn plan(watermark: Option<i64>, now_ms: i64, offset: i64, interval_ms: i64) -> Plan {
    let latest = slot_at_or_before(now_ms, offset, interval_ms);
    let next = latest + interval_ms;
    match watermark {
        // Never evaluated: start on schedule; there is nothing to catch up on.
        None => Plan {
            catch_up: None,
            next,
            skipped: 0,
        },
        // Up to date, or the watermark is ahead (clock skew between owners, or a watermark
        // off the grid after the interval changed): the first slot after both.
        Some(w) if w >= latest => Plan {
            catch_up: None,
            next: next_slot_after(w.max(now_ms), offset, interval_ms),
            skipped: 0,
        },
        Some(w) => {
            let missed = ((latest - w) / interval_ms).max(1) as u64;
            Plan {
                catch_up: Some(latest),
                next,
                skipped: missed - 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slots_follow_the_offset() {
        assert_eq!(slot_at_or_before(10_500, 300, 1000), 10_300);
        assert_eq!(slot_at_or_before(10_300, 300, 1000), 10_300);
        assert_eq!(next_slot_after(10_300, 300, 1000), 11_300);
        assert_eq!(slot_at_or_before(100, 300, 1000), -700);
    }

    #[test]
    fn takeover_catches_up_at_most_one_slot() {
        // Last evaluated at 10_300; now 13_450: slots 11_300, 12_300, 13_300 were missed.
        let p = plan(Some(10_300), 13_450, 300, 1000);
        assert_eq!(
            p,
            Plan {
                catch_up: Some(13_300),
                next: 14_300,
                skipped: 2
            }
        );
        // Nothing missed.
        assert_eq!(
            plan(Some(13_300), 13_450, 300, 1000),
            Plan {
                catch_up: None,
                next: 14_300,
                skipped: 0
            }
        );
        // One missed.
        assert_eq!(plan(Some(12_300), 13_450, 300, 1000).catch_up, Some(13_300));
        // Never evaluated: wait for the next slot.
        assert_eq!(
            plan(None, 13_450, 300, 1000),
            Plan {
                catch_up: None,
                next: 14_300,
                skipped: 0
            }
        );
        // A watermark ahead of now (clock skew between owners): never evaluate behind it.
        assert_eq!(plan(Some(15_300), 13_450, 300, 1000).next, 16_300);
    }

    proptest! {
        #[test]
        fn plans_are_on_slots_and_after_the_watermark(
            w in proptest::option::of(0i64..1_000_000), now in 0i64..1_000_000, interval in 1i64..100_000, ns in "[a-z]{1,8}", g in "[a-z]{1,8}",
        ) {
            let offset = slot_offset(&ns, &g, interval);
            prop_assert!((0..interval).contains(&offset));
            let p = plan(w, now, offset, interval);
            prop_assert_eq!((p.next - offset).rem_euclid(interval), 0);
            prop_assert!(p.next > now || w.is_some_and(|w| p.next > w));
            if let Some(c) = p.catch_up {
                prop_assert_eq!((c - offset).rem_euclid(interval), 0);
                prop_assert!(c <= now && w.is_some_and(|w| c > w));
                prop_assert!(c < p.next);
            }
        }
    }
}
