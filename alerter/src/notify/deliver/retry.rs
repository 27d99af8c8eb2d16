//! When a failed send is tried again: capped exponential backoff with full jitter for 5xx and
//! transport errors, never sooner than `Retry-After` for 429. The budget is the outbox's, not
//! the group's: `group_interval` never shortens or lengthens it.

use std::time::Duration;

use super::channel::SendOutcome;

/// Retry policy of the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff base (the first retry waits up to this).
    pub base: Duration,
    /// Backoff cap.
    pub cap: Duration,
    /// Attempts after which a still-failing entry is dead-lettered.
    pub max_attempts: u32,
    /// Upper bound honoured for a provider's `Retry-After` (a longer one is clamped to this).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_attempts: 50,
            max_retry_after: Duration::from_secs(600),
        }
    }
}

/// What the outbox does after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Record delivered.
    Delivered(Option<String>),
    /// Back to pending, not before `after` from now.
    RetryAfter(Duration, String),
    /// Dead-letter with this reason.
    Dead(String),
}

impl RetryPolicy {
    /// The decision after attempt number `attempt` (1 for the first send) ended in `outcome`.
    /// `jitter` is a uniform sample in `[0, 1)`, injected so the policy is pure.
    pub fn next(&self, attempt: u32, outcome: SendOutcome, jitter: f64) -> Next {
        match outcome {
            SendOutcome::Delivered { provider_id } => Next::Delivered(provider_id),
            SendOutcome::Skipped => Next::Delivered(None),
            SendOutcome::Permanent { reason } => Next::Dead(reason),
            SendOutcome::Retry { .. } if attempt >= self.max_attempts => {
                Next::Dead(format!("gave up after {attempt} attempts"))
            }
            SendOutcome::Retry {
                retry_after,
                reason,
            } => {
                let backoff = self.backoff(attempt, jitter);
                let wait = match retry_after {
                    // Exactly when the provider asked (clamped to a sane bound): it is a floor.
                    Some(ra) => ra.min(self.max_retry_after),
                    None => backoff,
                };
                Next::RetryAfter(wait, reason)
            }
        }
    }

    /// Full jitter: uniform in `[0, min(cap, base * 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(after: Option<u64>) -> SendOutcome {
        SendOutcome::Retry {
            retry_after: after.map(Duration::from_secs),
            reason: "x".into(),
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        for jitter in [0.0, 0.5, 0.999] {
            let Next::RetryAfter(d, _) = p.next(1, retry(Some(7)), jitter) else {
                panic!("expected a retry");
            };
            assert!(d >= Duration::from_secs(7), "{d:?}");
        }
        let Next::RetryAfter(d, _) = p.next(1, retry(Some(100_000)), 0.5) else {
            panic!("expected a retry");
        };
        assert_eq!(d, p.max_retry_after);
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.0), Duration::ZERO);
        assert!(p.backoff(1, 0.999) < p.base);
        assert!(p.backoff(4, 0.999) < p.base * 8);
        assert!(p.backoff(4, 0.999) > p.base * 7);
        assert!(p.backoff(40, 0.999) <= p.cap);
        assert!(p.backoff(40, 0.999) > p.cap.mul_f64(0.99));
    }

    #[test]
    fn permanent_and_exhausted_go_dead() {
        let p = RetryPolicy::default();
        assert!(matches!(
            p.next(
                1,
                SendOutcome::Permanent {
                    reason: "400".into()
                },
                0.1
            ),
            Next::Dead(_)
        ));
        assert!(matches!(
            p.next(p.max_attempts, retry(None), 0.1),
            Next::Dead(_)
        ));
        assert_eq!(p.next(3, SendOutcome::Skipped, 0.1), Next::Delivered(None));
    }
}
