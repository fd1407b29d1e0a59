//! Worker settings, validated once at startup.

use std::time::Duration;

use switchyard_engine::RetryPolicy;

/// How a worker claims and holds jobs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Written into `jobs.lease_owner`, so operators can tell who holds what.
    pub id: String,
    /// Jobs run at once, at most.
    pub concurrency: usize,
    /// Jobs claimed per statement, at most (never more than free slots).
    pub batch: usize,
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// How often in-flight leases are renewed; well under `lease`.
    pub heartbeat: Duration,
    /// How often to look for work when no NOTIFY arrives (the fallback),
    /// and to sweep leases that expired with their workers.
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight jobs may finish before their leases
    /// are released for other workers.
    pub drain_timeout: Duration,
    pub retry: RetryPolicy,
    /// How long finished tasks and done jobs are kept before the worker's
    /// retention sweep deletes them; `None` keeps them for good.
    pub retention: Option<Duration>,
    /// Delegations one tenant may hold leased at once, across every worker
    /// of the deployment (so one tenant's long tasks cannot starve the
    /// others); `None` for no cap.
    pub tenant_cap: Option<i64>,
}

/// A setting that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid worker configuration: {0}")]
pub struct ConfigError(pub String);

impl WorkerConfig {
    /// Defaults for a worker named `id`.
    pub fn new(id: impl Into<String>) -> Self {
        WorkerConfig {
            id: id.into(),
            concurrency: 16,
            batch: 16,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            retention: None,
            tenant_cap: None,
        }
    }

    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if self.id.is_empty() {
            return fail("the worker id must not be empty");
        }
        if self.concurrency == 0 || self.batch == 0 {
            return fail("concurrency and batch must be at least 1");
        }
        if self.lease < Duration::from_millis(100) {
            return fail("the lease must be at least 100ms");
        }
        // Two heartbeats must fit in a lease, so one slow round trip does
        // not lose it.
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.lease {
            return fail("the heartbeat must be positive and at most half the lease");
        }
        if self.poll_interval.is_zero() {
            return fail("the poll interval must be positive");
        }
        if self.retry.base.is_zero() || self.retry.cap < self.retry.base {
            return fail("retry delays need 0 < base <= cap");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_combinations_are_refused() {
        assert!(WorkerConfig::new("w").validate().is_ok());
        let mut c = WorkerConfig::new("w");
        c.heartbeat = c.lease;
        assert!(c.validate().is_err());
        let mut c = WorkerConfig::new("w");
        c.concurrency = 0;
        assert!(c.validate().is_err());
        assert!(WorkerConfig::new("").validate().is_err());
    }
}
