//! Retention, on PostgreSQL.

use std::time::Duration;

use sqlx::{Executor, PgPool};
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::retention::{LogWindow, LogWindows};

// The batch is handed to the DELETE as an array (`= ANY(ARRAY(…))`), not
// as `IN (subquery)`: when most rows are due (retention first turned on,
// or a sweep behind) the planner would join the subquery against a scan of
// the whole table, once per batch — quadratic in the backlog. An array
// is looked up by the primary key whatever the estimates.
pub(in crate::store) async fn sweep_tasks(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query!(
        r#"DELETE FROM tasks WHERE id = ANY(ARRAY(
                       SELECT id FROM tasks
                       WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
                         AND status_at < now() - make_interval(secs => $1)
                       ORDER BY status_at LIMIT $2
                       FOR UPDATE SKIP LOCKED))"#,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

pub(in crate::store) async fn sweep_jobs(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query!(
        r#"DELETE FROM jobs WHERE id = ANY(ARRAY(
                       SELECT id FROM jobs
                       WHERE state = 'done' AND finished_at < now() - make_interval(secs => $1)
                       ORDER BY finished_at LIMIT $2
                       FOR UPDATE SKIP LOCKED))"#,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// How long a change to the log's windows waits for the log's lock: it
/// takes it exclusively for a moment, and a waiter queues every writer
/// behind it, so it rather gives up and tries at the next sweep.
const WINDOW_LOCK_WAIT: &str = "SET LOCAL lock_timeout = '1s'";

pub(in crate::store) async fn log_windows(pool: &PgPool) -> Result<Option<LogWindows>, StoreError> {
    let now_ms =
        sqlx::query_scalar!(r#"SELECT (extract(epoch FROM now()) * 1000)::bigint AS "now!""#).fetch_one(pool).await?;
    let partitions = sqlx::query!(
        r#"SELECT c.relname::text AS "name!", pg_get_expr(c.relpartbound, c.oid) AS "bound!"
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'task_events'::regclass"#
    )
    .fetch_all(pool)
    .await?;
    let windows = partitions
        .into_iter()
        .filter_map(|p| {
            let (from, to) = range_bound(&p.bound)?;
            Some(LogWindow { name: p.name, from, to })
        })
        .collect();
    Ok(Some(LogWindows { now_ms, windows }))
}

/// `FOR VALUES FROM ('…') TO ('…')`, as PostgreSQL prints a range
/// partition's bound; `None` for the default partition.
fn range_bound(bound: &str) -> Option<(Uuid, Uuid)> {
    let mut quoted = bound.split('\'').skip(1).step_by(2);
    let from = quoted.next()?.parse().ok()?;
    let to = quoted.next()?.parse().ok()?;
    Some((from, to))
}

/// A window's name, made by the store (`task_events_` and digits), is
/// checked once more before it is put into DDL.
fn ident(window: &LogWindow) -> Result<&str, StoreError> {
    let name = window.name.as_str();
    let ours = name.strip_prefix("task_events_").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if ours && name.len() < 64 {
        Ok(name)
    } else {
        Err(StoreError::Unavailable(format!("{name:?} is not a window of the log")))
    }
}

pub(in crate::store) async fn log_window_create(pool: &PgPool, window: &LogWindow) -> Result<bool, StoreError> {
    let name = ident(window)?;
    let (from, to) = (window.from, window.to);
    let mut tx = pool.begin().await?;
    tx.execute(WINDOW_LOCK_WAIT).await?;
    // Made beside the log and attached, rather than created as a partition
    // at once: attaching takes a lock that lets the log's readers and
    // writers go on.
    let made = async {
        tx.execute(sqlx::AssertSqlSafe(format!(
            r#"CREATE TABLE "{name}" (LIKE task_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"#
        )))
        .await?;
        tx.execute(sqlx::AssertSqlSafe(format!(
            r#"ALTER TABLE task_events ATTACH PARTITION "{name}" FOR VALUES FROM ('{from}') TO ('{to}')"#
        )))
        .await
    }
    .await;
    match made {
        Ok(_) => {
            tx.commit().await?;
            Ok(true)
        }
        // Made by another process meanwhile (duplicate table, overlap), the
        // default partition holds rows of this range, or the lock was not had.
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P07" | "42P17" | "23514" | "55P03" | "40P01")) =>
        {
            tracing::debug!(window = name, error = %e, "log window not made now");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

pub(in crate::store) async fn log_window_drop(
    pool: &PgPool,
    window: &LogWindow,
    most_kept: i64,
) -> Result<Option<u64>, StoreError> {
    let name = ident(window)?;
    // Counted before the lock too, so a window that must wait does not
    // take the log's lock to learn it.
    if kept(pool, window).await? > most_kept {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    tx.execute(WINDOW_LOCK_WAIT).await?;
    let dropped = async {
        tx.execute(sqlx::AssertSqlSafe(format!(r#"ALTER TABLE task_events DETACH PARTITION "{name}""#))).await?;
        if kept(&mut *tx, window).await? > most_kept {
            return Ok(None);
        }
        // With the window detached its range belongs to the default
        // partition, where the kept tasks' events now go.
        let moved = tx
            .execute(sqlx::AssertSqlSafe(format!(
                r#"INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                   SELECT e.task_id, e.seq, e.kind, e.payload, e.created_at FROM "{name}" e
                   WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id)"#
            )))
            .await?
            .rows_affected();
        tx.execute(sqlx::AssertSqlSafe(format!(r#"DROP TABLE "{name}""#))).await?;
        Ok(Some(moved))
    }
    .await;
    match dropped {
        Ok(Some(moved)) => {
            tx.commit().await?;
            Ok(Some(moved))
        }
        Ok(None) => Ok(None),
        // Dropped by another process meanwhile, or the lock was not had.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P01" | "42P16" | "55P03" | "40P01")) => {
            tracing::debug!(window = name, error = %e, "log window not dropped now");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// How many tasks of `window` are still kept.
async fn kept<'e>(e: impl sqlx::PgExecutor<'e>, window: &LogWindow) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM tasks WHERE id >= $1 AND id < $2"#, window.from, window.to)
        .fetch_one(e)
        .await
}

pub(in crate::store) async fn log_orphans_sweep(pool: &PgPool, batch: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query!(
        r#"DELETE FROM task_events_default WHERE task_id = ANY(ARRAY(
               SELECT DISTINCT e.task_id FROM task_events_default e
               WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id)
               LIMIT $1))"#,
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
