//! The queue's statements on the embedded store that have no PostgreSQL
//! twin in the same shape: the claims, and reading its rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::super::lite;
use super::{ClaimRow, ClaimedJob, JobKind, JobRecord, Lease};
use crate::error::StoreError;
use crate::id::{JobId, TaskId};

/// [`mark_done`] on the embedded store, at `now`.
pub(super) async fn mark_done_lite<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    lease: &Lease,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND lease_token = ? AND state = 'leased'",
    )
    .bind(lite::us(now))
    .bind(lease.job_id.0)
    .bind(lease.token)
    .execute(executor)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::LeaseLost(lease.job_id));
    }
    Ok(())
}

/// A `jobs` row on the embedded store.
pub(super) fn job_record_lite(r: &SqliteRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: JobId(r.try_get("id")?),
        task_id: TaskId(r.try_get("task_id")?),
        kind: r.try_get("kind")?,
        state: r.try_get::<String, _>("state")?.parse()?,
        priority: r.try_get("priority")?,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        run_at: lite::at(r.try_get("run_at")?),
        lease_owner: r.try_get("lease_owner")?,
        lease_token: r.try_get("lease_token")?,
        lease_expires_at: r.try_get::<Option<i64>, _>("lease_expires_at")?.map(lite::at),
        last_error: r.try_get("last_error")?,
        created_at: lite::at(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(lite::at),
    })
}

/// Claimed rows on the embedded store, as [`ClaimRow`]s.
pub(super) fn claim_rows_lite(rows: &[SqliteRow]) -> Result<Vec<ClaimRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(ClaimRow {
                id: r.try_get("id")?,
                task_id: r.try_get("task_id")?,
                kind: r.try_get("kind")?,
                payload: lite::parse(&r.try_get::<String, _>("payload")?)?,
                attempt: r.try_get("attempt")?,
                max_attempts: r.try_get("max_attempts")?,
                lease_token: r.try_get("lease_token")?,
                run_at: lite::at(r.try_get("run_at")?),
                lease_expires_at: lite::at(r.try_get("lease_expires_at")?),
            })
        })
        .collect()
}

/// Runs a claim on the embedded store, as one transaction at its time:
/// `?1` the owner, `?2` the limit, `?3` the lease's end, `?4` the tenant cap,
/// `?5` the capped kind, `?6` now.
pub(super) async fn claim_lite(
    lite: &lite::Lite,
    sql: String,
    owner: &str,
    limit: i64,
    lease_for: Duration,
    cap: Option<i64>,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let rows = lite
        .write(async |c, now| {
            Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(limit)
                .bind(lite::us_after(now, lease_for))
                .bind(cap)
                .bind(JobKind::Delegate.as_str())
                .bind(lite::us(now))
                .fetch_all(c)
                .await?)
        })
        .await?;
    Ok(ClaimRow::into_jobs(claim_rows_lite(&rows)?, owner))
}

/// The columns a claim returns.
pub(super) const CLAIMED: &str =
    "id, task_id, kind, payload, attempt, max_attempts, lease_token, run_at, lease_expires_at";

/// The columns of a [`JobRecord`].
pub(super) const JOB_COLUMNS: &str = "id, task_id, kind, state, priority, attempt, max_attempts, run_at, lease_owner, \
     lease_token, lease_expires_at, last_error, created_at, finished_at";
