//! Exponential backoff with full jitter: the one pause rule of pinpipe's retry loops (the
//! producer retrying throttled puts, the lake writer retrying conflicting commits).
//!
//! The pause before retry n is uniform in `[0, min(max, base · 2^(n-1))]`. The ceiling grows
//! exponentially so a service that pushes back is given more and more room; the pause is drawn
//! anywhere below it ("full jitter") so callers that failed together do not retry together.

use std::time::Duration;

/// A full-jitter exponential backoff: `base` is the ceiling of the first pause, `max` the
/// ceiling of every pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The longest pause before retry number `retry` (1 for the first retry; 0 counts as 1):
    /// `min(max, base · 2^(retry-1))`, without overflow for any `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The pause before retry number `retry` (1 for the first retry): uniform in
    /// `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling_nanos = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=ceiling_nanos))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_from_base_up_to_max() {
        let backoff = Backoff::new(50 * MS, 1000 * MS);
        let ceilings: Vec<Duration> = (1..=7).map(|retry| backoff.ceiling(retry)).collect();
        assert_eq!(ceilings, [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
        assert_eq!(backoff.ceiling(0), 50 * MS, "retry 0 counts as the first");
        for retry in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(backoff.ceiling(retry), 1000 * MS, "retry {retry} does not overflow");
        }
        let unbounded = Backoff::new(Duration::from_secs(1), Duration::MAX);
        assert_eq!(unbounded.ceiling(u32::MAX), Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn pauses_are_jittered_below_the_ceiling() {
        let backoff = Backoff::new(50 * MS, 2000 * MS);
        for retry in 0..40 {
            let ceiling = backoff.ceiling(retry);
            for _ in 0..20 {
                assert!(backoff.delay(retry) <= ceiling, "retry {retry}");
            }
        }
        let spread: HashSet<Duration> = (0..50).map(|_| backoff.delay(5)).collect();
        assert!(spread.len() > 10, "pauses are jittered");
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).delay(3), Duration::ZERO);
    }
}
