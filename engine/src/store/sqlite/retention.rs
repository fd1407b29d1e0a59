//! Retention, on the embedded store (one writer: nothing to skip).

use std::time::Duration;

use super::{Lite, us};
use crate::error::StoreError;
use crate::store::retention::{LogWindow, LogWindows};

/// `now - older_than`, as stored.
fn cutoff(now: chrono::DateTime<chrono::Utc>, older_than: Duration) -> i64 {
    us(now) - i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX / 2)
}

pub(in crate::store) async fn sweep_tasks(lite: &Lite, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    lite.write(async |c, now| {
        Ok(sqlx::query(
            "DELETE FROM tasks WHERE id IN (
             SELECT id FROM tasks
             WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
               AND status_at < ? ORDER BY status_at LIMIT ?)",
        )
        .bind(cutoff(now, older_than))
        .bind(batch)
        .execute(c)
        .await?
        .rows_affected())
    })
    .await
}

pub(in crate::store) async fn sweep_jobs(lite: &Lite, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    lite.write(async |c, now| {
        Ok(sqlx::query(
            "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs WHERE state = 'done' AND finished_at < ? ORDER BY finished_at LIMIT ?)",
        )
        .bind(cutoff(now, older_than))
        .bind(batch)
        .execute(c)
        .await?
        .rows_affected())
    })
    .await
}

/// The embedded log is one table whose rows go with their task (a
/// cascade): it has no windows, and no rows outside them.
pub(in crate::store) async fn log_windows(_lite: &Lite) -> Result<Option<LogWindows>, StoreError> {
    Ok(None)
}

pub(in crate::store) async fn log_window_create(_lite: &Lite, _window: &LogWindow) -> Result<bool, StoreError> {
    Ok(false)
}

pub(in crate::store) async fn log_window_drop(
    _lite: &Lite,
    _window: &LogWindow,
    _most_kept: i64,
) -> Result<Option<u64>, StoreError> {
    Ok(None)
}

pub(in crate::store) async fn log_orphans_sweep(_lite: &Lite, _batch: i64) -> Result<u64, StoreError> {
    Ok(0)
}
