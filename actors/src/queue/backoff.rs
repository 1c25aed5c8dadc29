//! Per-key exponential backoff for keys whose processing failed: client-go's
//! `ItemExponentialFailureRateLimiter` with its default of 5 ms doubling up to 1,000 s.
//! Pure: it counts failures and answers delays; the queue decides when that is.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// The delay after a key's first failure (client-go's default).
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest delay, however often a key failed (client-go's default).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1_000);

/// Counts each key's failures since it last succeeded; the n-th failure in a row waits
/// `base * 2^(n-1)`, never more than `max`.
#[derive(Debug, Clone)]
pub struct Backoff<K> {
    base: Duration,
    max: Duration,
    failures: HashMap<K, u32>,
}

impl<K: Eq + Hash + Clone> Default for Backoff<K> {
    fn default() -> Self {
        Self::new(DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY)
    }
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: HashMap::new(),
        }
    }

    /// Records one more failure of `key` and returns how long it waits before its next try.
    pub fn on_failure(&mut self, key: &K) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let exponent = *failures;
        *failures = failures.saturating_add(1);
        // 2^exponent overflows long before the cap matters; past 2^32 the cap has won.
        let factor = 2u32.checked_pow(exponent).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// `key` succeeded: its next failure starts again from the base delay.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// How many times in a row `key` has failed.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_five_milliseconds_per_key() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..5).map(|_| backoff.on_failure(&"a")).collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40), ms(80)]);
        assert_eq!(
            backoff.on_failure(&"b"),
            ms(5),
            "another key has its own count"
        );
        assert_eq!(backoff.failures(&"a"), 5);
    }

    #[test]
    fn delays_stop_growing_at_a_thousand_seconds_and_never_overflow() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..100).map(|_| backoff.on_failure(&"a")).collect();
        // 5 ms * 2^17 = 655.36 s, 5 ms * 2^18 = 1,310.72 s: the cap from the 19th failure.
        assert_eq!(delays[17], Duration::from_millis(655_360));
        assert_eq!(delays[18], DEFAULT_MAX_DELAY);
        assert!(delays[18..].iter().all(|delay| *delay == DEFAULT_MAX_DELAY));
    }

    #[test]
    fn forgetting_a_key_starts_it_again_from_the_base_delay() {
        let mut backoff = Backoff::default();
        backoff.on_failure(&"a");
        backoff.on_failure(&"a");
        backoff.forget(&"a");
        assert_eq!(backoff.failures(&"a"), 0);
        assert_eq!(backoff.on_failure(&"a"), DEFAULT_BASE_DELAY);
    }
}
