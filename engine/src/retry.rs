//! Durable retry timing: a pure function from attempt number to delay.
//! (How many attempts a job gets is the job's own `max_attempts`.)
//!
//! Durable retries are rows with `run_at = now() + delay(attempt)`, so the
//! delay must be computed, not slept: this module owns that computation and
//! nothing else. (In-process retries, such as reconnecting a LISTEN socket,
//! use `backon` instead.)

use std::time::Duration;

/// How a job's retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub base: Duration,
    /// Upper bound for any computed delay.
    pub cap: Duration,
    /// Upper bound for a remote `Retry-After`: a peer cannot park our work
    /// for longer than this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    ///
    /// Exponential (`base * 2^(attempt-1)`) with "equal jitter": half the
    /// delay is fixed and half is drawn from `jitter` in `[0, 1)`, so retries
    /// of many jobs that failed together spread out, yet no retry comes
    /// sooner than half its nominal delay. The result never exceeds `cap`.
    ///
    /// A remote `Retry-After` wins when it asks for a longer wait, bounded
    /// by `max_retry_after`; it never shortens our own backoff, so a peer
    /// answering `Retry-After: 0` cannot make us hammer it.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        // Saturating arithmetic: attempt 200 must give `cap`, not an overflow.
        let nominal = self.base.checked_mul(1u32 << exponent).unwrap_or(Duration::MAX).min(self.cap);
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        let half = nominal / 2;
        let ours = half + half.mul_f64(jitter);
        match retry_after {
            Some(asked) => ours.max(asked.min(self.max_retry_after)),
            None => ours,
        }
    }

    /// `delay` with jitter drawn from the thread's random generator.
    pub fn delay_with_random_jitter(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt, retry_after, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }

    #[test]
    fn grows_exponentially_until_the_cap() {
        let p = policy();
        let full = |attempt| p.delay(attempt, None, 1.0);
        assert_eq!(full(1), Duration::from_millis(500));
        assert_eq!(full(2), Duration::from_secs(1));
        assert_eq!(full(3), Duration::from_secs(2));
        assert_eq!(full(8), Duration::from_secs(60));
        assert_eq!(full(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spans_the_upper_half() {
        let p = policy();
        assert_eq!(p.delay(3, None, 0.0), Duration::from_secs(1));
        assert_eq!(p.delay(3, None, 0.5), Duration::from_millis(1500));
        assert_eq!(p.delay(3, None, f64::NAN), Duration::from_secs(1));
        assert_eq!(p.delay(3, None, 7.0), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_bounded() {
        let p = policy();
        assert_eq!(p.delay(1, Some(Duration::from_secs(30)), 0.0), Duration::from_secs(30));
        assert_eq!(p.delay(4, Some(Duration::ZERO), 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(1, Some(Duration::from_secs(86_400)), 0.0), Duration::from_secs(600));
    }

    proptest! {
        #[test]
        fn delay_is_bounded_and_monotone_in_attempt(
            attempt in 1u32..100,
            jitter in 0.0f64..1.0,
            retry_after_ms in proptest::option::of(0u64..10_000_000),
        ) {
            let p = policy();
            let retry_after = retry_after_ms.map(Duration::from_millis);
            let d = p.delay(attempt, retry_after, jitter);
            prop_assert!(d <= p.cap.max(p.max_retry_after));
            prop_assert!(d >= p.delay(attempt, None, 0.0));
            prop_assert!(p.delay(attempt + 1, None, 1.0) >= p.delay(attempt, None, 1.0));
        }
    }
}
