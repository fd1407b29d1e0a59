//! Retention, on PostgreSQL.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::StoreError;

pub(in crate::store) async fn sweep_tasks(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query!(
        r#"DELETE FROM tasks WHERE id IN (
                       SELECT id FROM tasks
                       WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
                         AND status_at < now() - make_interval(secs => $1)
                       ORDER BY status_at LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

pub(in crate::store) async fn sweep_jobs(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query!(
        r#"DELETE FROM jobs WHERE id IN (
                       SELECT id FROM jobs
                       WHERE state = 'done' AND finished_at < now() - make_interval(secs => $1)
                       ORDER BY finished_at LIMIT $2
                       FOR UPDATE SKIP LOCKED)"#,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
