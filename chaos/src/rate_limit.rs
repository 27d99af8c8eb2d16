//! A pure per-key rate limiter (GCRA, i.e. a token bucket with `burst` tokens refilled one
//! per `period_ms`). Time is a parameter: monotonic milliseconds from any origin.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Keys tracked at once; past this, keys whose bucket is full again are forgotten.
const MAX_KEYS: usize = 10_000;

/// A rate: `burst` requests at once, then one every `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    pub period_ms: u64,
}

impl Rate {
    /// `n` per minute, with a burst of `burst`.
    pub fn per_minute(n: u32, burst: u32) -> Self {
        Self {
            burst: burst.max(1),
            period_ms: 60_000 / u64::from(n.max(1)),
        }
    }

    /// `n` per second, with a burst of `burst`.
    pub fn per_second(n: u32, burst: u32) -> Self {
        Self {
            burst: burst.max(1),
            period_ms: 1000 / u64::from(n.max(1)),
        }
    }
}

/// Per-key limiter state.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    /// Theoretical arrival time of the next conforming request, per key.
    tat_ms: HashMap<String, u64>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            tat_ms: HashMap::new(),
        }
    }

    /// Admits one request for `key` at `now_ms`, or says how long until one would be admitted.
    pub fn check(&mut self, key: &str, now_ms: u64) -> Result<(), RetryAfter> {
        let period = self.rate.period_ms.max(1);
        let tolerance = period * u64::from(self.rate.burst.max(1) - 1);
        if self.tat_ms.len() >= MAX_KEYS {
            self.tat_ms.retain(|_, tat| *tat > now_ms);
        }
        let tat = self.tat_ms.get(key).copied().unwrap_or(now_ms).max(now_ms);
        if tat - now_ms > tolerance {
            return Err(RetryAfter {
                ms: tat - tolerance - now_ms,
            });
        }
        self.tat_ms.insert(key.to_owned(), tat + period);
        Ok(())
    }
}

/// How long a refused caller should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub ms: u64,
}

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1 (what a `Retry-After` header carries).
    pub fn seconds(self) -> u64 {
        self.ms.div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_refuses_the_second_request_and_recovers() {
        let mut limiter = Limiter::new(Rate::per_second(1, 1));
        assert_eq!(limiter.check("hook", 1_000), Ok(()));
        assert_eq!(limiter.check("hook", 1_400), Err(RetryAfter { ms: 600 }));
        assert_eq!(RetryAfter { ms: 600 }.seconds(), 1);
        assert_eq!(
            limiter.check("other", 1_400),
            Ok(()),
            "keys are independent"
        );
        assert_eq!(limiter.check("hook", 2_000), Ok(()));
    }

    #[test]
    fn burst_allows_that_many_at_once() {
        let mut limiter = Limiter::new(Rate::per_minute(120, 3));
        for _ in 0..3 {
            assert_eq!(limiter.check("k", 0), Ok(()));
        }
        assert_eq!(limiter.check("k", 0), Err(RetryAfter { ms: 500 }));
        assert_eq!(limiter.check("k", 500), Ok(()));
    }
}
