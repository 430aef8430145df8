//! Bounded retries: exponential backoff with full jitter.
//!
//! The delay before retry `n` (1 for the first retry) is drawn uniformly from
//! `[0, min(cap, base × 2^(n-1))]` ("full jitter", AWS Architecture Blog, "Exponential Backoff
//! And Jitter"), so that many clients retrying after the same outage do not arrive together.

use rand::Rng;
use std::time::Duration;

/// How often and how patiently a call is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest delay ever waited.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, base 100 ms, cap 1 s.
    fn default() -> Self {
        Self { max_attempts: 3, base: Duration::from_millis(100), cap: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The longest delay before retry `retry` (1-based): `min(cap, base × 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A delay before retry `retry` (1-based), uniformly drawn in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (1..=7).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn the_ceiling_never_overflows() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(40), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn every_delay_lies_between_zero_and_the_ceiling_and_they_spread() {
        let p = RetryPolicy::default();
        let mut rng = rand::thread_rng();
        for retry in 1..=5 {
            let delays: Vec<Duration> = (0..500).map(|_| p.delay(retry, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= p.ceiling(retry)), "retry {retry}");
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            // full jitter: the draws cover most of the range, not a narrow band around the ceiling
            assert!(*min < p.ceiling(retry) / 4 && *max > p.ceiling(retry) * 3 / 4, "retry {retry}: {min:?}..{max:?}");
        }
    }
}
