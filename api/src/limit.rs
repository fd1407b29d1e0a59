//! Per-principal rate limits: a token bucket per (tenant, principal),
//! refilled at the principal's rate (its key's own, else the deployment's
//! default), held in this process.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

impl Rate {
    /// The burst a rate gets when none is given: one second's worth.
    pub fn burst_for(per_sec: f64) -> u32 {
        // Saturating: a huge rate is simply unlimited in practice.
        (per_sec.ceil() as u32).max(1)
    }

    fn quota(self) -> Option<Quota> {
        if !(self.per_sec.is_finite() && self.per_sec > 0.0) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.per_sec).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }

    /// A key for the limiter map: rates compare by their bits.
    fn key(self) -> (u64, u32) {
        (self.per_sec.to_bits(), self.burst)
    }
}

/// The buckets of one rate, keyed by tenant and principal.
type Buckets = Arc<DefaultKeyedRateLimiter<String>>;

/// How many checks pass between sweeps of idle buckets.
const SWEEP_EVERY: u64 = 4096;

/// The buckets of every principal seen, one limiter per distinct rate.
#[derive(Debug)]
pub struct RateLimits {
    default: Option<Rate>,
    limiters: Mutex<HashMap<(u64, u32), Buckets>>,
    checks: AtomicU64,
}

impl RateLimits {
    pub fn new(default: Option<Rate>) -> Self {
        RateLimits { default, limiters: Mutex::default(), checks: AtomicU64::new(0) }
    }

    /// Takes one request from this principal's bucket; when it is empty,
    /// how long until it holds one again.
    pub fn check(&self, tenant: &str, principal: &str, own: Option<Rate>) -> Result<(), Duration> {
        let Some(rate) = own.or(self.default) else {
            return Ok(());
        };
        let Some(quota) = rate.quota() else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
            limiters.entry(rate.key()).or_insert_with(|| Arc::new(RateLimiter::keyed(quota))).clone()
        };
        // Full buckets of principals gone quiet are dropped now and then,
        // so the map does not grow with every principal ever seen.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let key = format!("{tenant}\u{1f}{principal}");
        limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_says_how_long_to_wait() {
        let limits = RateLimits::new(Some(Rate { per_sec: 1.0, burst: 3 }));
        for _ in 0..3 {
            assert_eq!(limits.check("t", "ann", None), Ok(()));
        }
        let wait = limits.check("t", "ann", None).expect_err("the fourth is refused");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        // Another principal, and the same name in another tenant, have their own buckets.
        assert_eq!(limits.check("t", "bob", None), Ok(()));
        assert_eq!(limits.check("u", "ann", None), Ok(()));
    }

    #[test]
    fn a_keys_own_rate_overrides_the_default_and_no_rate_is_no_limit() {
        let limits = RateLimits::new(None);
        for _ in 0..1000 {
            assert_eq!(limits.check("t", "ann", None), Ok(()));
        }
        let own = Some(Rate { per_sec: 0.5, burst: 1 });
        assert_eq!(limits.check("t", "ann", own), Ok(()));
        assert!(limits.check("t", "ann", own).is_err());
        assert_eq!(limits.check("t", "ann", Some(Rate { per_sec: 0.0, burst: 1 })), Ok(()));
    }
}
