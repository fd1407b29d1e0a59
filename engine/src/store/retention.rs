//! Retention: what has been finished for long enough is deleted, oldest
//! first, in batches small enough that no lock is held for long and live
//! work never waits on a sweep.

use std::time::Duration;

use super::{Db, Store, lite};
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
        let secs = older_than.as_secs_f64();
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => return sweep_lite(lite, older_than, batch, max_batches).await,
        };
        let tasks = || async {
            let deleted = sqlx::query!(
                r#"DELETE FROM tasks WHERE id IN (
                       SELECT id FROM tasks
                       WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
                         AND status_at < now() - make_interval(secs => $1)
                       ORDER BY status_at LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
                secs,
                batch,
            )
            .execute(pool)
            .await?;
            Ok(deleted.rows_affected())
        };
        let jobs = || async {
            let deleted = sqlx::query!(
                r#"DELETE FROM jobs WHERE id IN (
                       SELECT id FROM jobs
                       WHERE state = 'done' AND finished_at < now() - make_interval(secs => $1)
                       ORDER BY finished_at LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
                secs,
                batch,
            )
            .execute(pool)
            .await?;
            Ok(deleted.rows_affected())
        };
        let swept = Swept {
            tasks: in_batches(batch, max_batches, tasks).await?,
            jobs: in_batches(batch, max_batches, jobs).await?,
        };
        Ok(swept)
    }
}

/// [`Store::retention_sweep`] on the embedded store (one writer: nothing to skip).
async fn sweep_lite(
    lite: &lite::Lite,
    older_than: Duration,
    batch: i64,
    max_batches: u32,
) -> Result<Swept, StoreError> {
    let before = lite::us(lite::now()) - i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX / 2);
    let tasks = || async {
        let deleted = lite
            .write(async |c, _now| {
                Ok(sqlx::query(
                    "DELETE FROM tasks WHERE id IN (
                     SELECT id FROM tasks
                     WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
                       AND status_at < ? ORDER BY status_at LIMIT ?)",
                )
                .bind(before)
                .bind(batch)
                .execute(c)
                .await?)
            })
            .await?;
        Ok(deleted.rows_affected())
    };
    let jobs = || async {
        let deleted = lite
            .write(async |c, _now| {
                Ok(sqlx::query(
                    "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs WHERE state = 'done' AND finished_at < ? ORDER BY finished_at LIMIT ?)",
                )
                .bind(before)
                .bind(batch)
                .execute(c)
                .await?)
            })
            .await?;
        Ok(deleted.rows_affected())
    };
    Ok(Swept { tasks: in_batches(batch, max_batches, tasks).await?, jobs: in_batches(batch, max_batches, jobs).await? })
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
