//! Retention: what has been finished for long enough is deleted, oldest
//! first, in batches small enough that no lock is held for long and live
//! work never waits on a sweep.

use std::time::Duration;

use super::Store;
use crate::error::StoreError;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished top-level tasks, each with its log, jobs, checkpoint, push
    /// configs, idempotency keys and children (which go with their root).
    pub tasks: u64,
    /// Done jobs of tasks that are still kept.
    pub jobs: u64,
}

super::seam::statements! {
    room retention;
    /// Deletes at most `batch` top-level tasks that finished more than
    /// `older_than` ago (rows others hold are skipped); how many it did.
    db fn sweep_tasks(older_than: Duration, batch: i64) -> u64;
    /// Deletes at most `batch` done jobs that finished that long ago.
    db fn sweep_jobs(older_than: Duration, batch: i64) -> u64;
}

impl Store {
    /// Deletes tasks that finished more than `older_than` ago, and done jobs
    /// that finished that long ago, `batch` rows per statement (each its own
    /// transaction, rows others hold are skipped), until a batch comes back
    /// short or `max_batches` have run.
    pub async fn retention_sweep(
        &self,
        older_than: Duration,
        batch: i64,
        max_batches: u32,
    ) -> Result<Swept, StoreError> {
        let tasks = in_batches(batch, max_batches, || self.db.sweep_tasks(older_than, batch)).await?;
        let jobs = in_batches(batch, max_batches, || self.db.sweep_jobs(older_than, batch)).await?;
        Ok(Swept { tasks, jobs })
    }
}

/// Runs `delete` (one batch of at most `batch` rows) until a batch comes back
/// short or `max_batches` have run; the rows deleted in all.
async fn in_batches<F, Fut>(batch: i64, max_batches: u32, mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    for _ in 0..max_batches {
        let deleted = delete().await?;
        total += deleted;
        if deleted < batch.unsigned_abs() {
            break;
        }
    }
    Ok(total)
}
