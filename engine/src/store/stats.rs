//! Gauges read from the database at scrape time: they describe the whole
//! deployment, whichever process is asked.

use super::Store;
use crate::error::StoreError;

/// A snapshot of queue, task and agent health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// (job state, job kind, count) for ready, leased and dead jobs.
    pub jobs: Vec<(String, String, i64)>,
    /// Age of the oldest job that is ready to run now, in seconds (0 if none).
    pub oldest_ready_seconds: f64,
    /// (task state, count) for open tasks.
    pub tasks: Vec<(String, i64)>,
    /// Open tasks that are children of a plan (fan-out members, pipeline steps).
    pub children_open: i64,
    /// (agent, breaker open, consecutive failures).
    pub agents: Vec<(String, bool, i32)>,
}

super::seam::statements! {
    room stats;
    /// Counts what is live, by the database's clock.
    db fn stats() -> Stats;
}

impl Store {
    /// Reads the current [`Stats`]. Bounded by what is live (and the dead
    /// letters, which retention bounds): done jobs and finished tasks are
    /// counted by the workers' counters (`switchyard_job_outcomes_total`,
    /// `switchyard_task_duration_seconds_count`), never by a scan.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        self.db.stats().await
    }
}
