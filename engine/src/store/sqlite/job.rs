//! The job queue, on the embedded store: the one writer needs no
//! `SKIP LOCKED`; the fencing is the same.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{Lite, LiteTx, at, insert_job, parse, us, us_after};
use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::store::job::{ClaimRow, JobKind, JobRecord, Lease, NewJob, Parked};

/// The columns a claim returns.
pub(super) const CLAIMED: &str =
    "id, task_id, kind, payload, attempt, max_attempts, lease_token, run_at, lease_expires_at";

/// The columns of a [`JobRecord`].
pub(super) const JOB_COLUMNS: &str = "id, task_id, kind, state, priority, attempt, max_attempts, run_at, lease_owner, \
     lease_token, lease_expires_at, last_error, created_at, finished_at";

pub(in crate::store) async fn lease_confirm(tx: &mut LiteTx, lease: &Lease) -> Result<bool, StoreError> {
    let held: Option<i64> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE id = ? AND lease_token = ? AND state = 'leased'")
            .bind(lease.job_id.0)
            .bind(lease.token)
            .fetch_optional(tx.conn())
            .await?;
    Ok(held.is_some())
}

pub(in crate::store) async fn leases_confirm(tx: &mut LiteTx, leases: &[&Lease]) -> Result<Vec<JobId>, StoreError> {
    let mut held = Vec::with_capacity(leases.len());
    for lease in leases {
        if lease_confirm(tx, lease).await? {
            held.push(lease.job_id);
        }
    }
    Ok(held)
}

pub(in crate::store) async fn job_insert(
    tx: &mut LiteTx,
    task_id: TaskId,
    job: &NewJob,
) -> Result<Option<JobId>, StoreError> {
    Ok(insert_job(tx, task_id.0, job).await?.map(JobId))
}

pub(in crate::store) async fn job_enqueue(
    lite: &Lite,
    task_id: TaskId,
    job: &NewJob,
    jobs_channel: &str,
) -> Result<Option<JobId>, StoreError> {
    let mut tx = lite.begin().await?;
    let result = async {
        let id = insert_job(&mut tx, task_id.0, job).await?.map(JobId);
        if id.is_some() {
            tx.notify(jobs_channel, job.kind.as_str());
        }
        Ok(id)
    }
    .await;
    tx.finish(result).await
}

async fn mark_done<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    lease: &Lease,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE jobs SET state = 'done', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND lease_token = ? AND state = 'leased'",
    )
    .bind(us(now))
    .bind(lease.job_id.0)
    .bind(lease.token)
    .execute(executor)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn job_done(tx: &mut LiteTx, lease: &Lease) -> Result<u64, StoreError> {
    let now = tx.now;
    mark_done(tx.conn(), lease, now).await
}

pub(in crate::store) async fn job_done_alone(lite: &Lite, lease: &Lease) -> Result<u64, StoreError> {
    lite.write(async |c, now| mark_done(c, lease, now).await).await
}

/// Runs a claim as one transaction at its time: `?1` the owner, `?2` the
/// limit, `?3` the lease's end, `?4` the tenant cap, `?5` the capped kind,
/// `?6` now.
async fn claim(
    lite: &Lite,
    sql: String,
    owner: &str,
    limit: i64,
    lease_for: Duration,
    cap: Option<i64>,
) -> Result<Vec<ClaimRow>, StoreError> {
    let rows = lite
        .write(async |c, now| {
            Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(limit)
                .bind(us_after(now, lease_for))
                .bind(cap)
                .bind(JobKind::Delegate.as_str())
                .bind(us(now))
                .fetch_all(c)
                .await?)
        })
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ClaimRow {
                id: r.try_get("id")?,
                task_id: r.try_get("task_id")?,
                kind: r.try_get("kind")?,
                payload: parse(&r.try_get::<String, _>("payload")?)?,
                attempt: r.try_get("attempt")?,
                max_attempts: r.try_get("max_attempts")?,
                lease_token: r.try_get("lease_token")?,
                run_at: at(r.try_get("run_at")?),
                lease_expires_at: at(r.try_get("lease_expires_at")?),
            })
        })
        .collect()
}

pub(in crate::store) async fn jobs_claim(
    lite: &Lite,
    owner: &str,
    limit: i64,
    lease_for: Duration,
) -> Result<Vec<ClaimRow>, StoreError> {
    let sql = format!(
        "UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_owner = ?1,
                         lease_token = lease_token + 1, lease_expires_at = ?3
         WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' AND run_at <= ?6
                      ORDER BY run_at, id LIMIT ?2)
         RETURNING {CLAIMED}"
    );
    claim(lite, sql, owner, limit, lease_for, None).await
}

/// The same window and ranks as on PostgreSQL.
pub(in crate::store) async fn jobs_claim_fair(
    lite: &Lite,
    owner: &str,
    limit: i64,
    lease_for: Duration,
    cap: i64,
) -> Result<Vec<ClaimRow>, StoreError> {
    let sql = format!(
        "WITH running AS (
             SELECT t.tenant, count(*) AS n FROM jobs r JOIN tasks t ON t.id = r.task_id
             WHERE r.state = 'leased' AND r.kind = ?5 GROUP BY t.tenant
         ), candidates AS (
             SELECT j.id, j.kind, j.run_at, t.tenant FROM jobs j JOIN tasks t ON t.id = j.task_id
             WHERE j.state = 'ready' AND j.run_at <= ?6
               AND (j.kind <> ?5 OR t.tenant NOT IN (SELECT tenant FROM running WHERE n >= ?4))
             ORDER BY j.run_at, j.id
             LIMIT ?2 * 4
         ), allowed AS (
             SELECT c.id FROM (
                 SELECT c.*, row_number() OVER (PARTITION BY c.tenant, c.kind ORDER BY c.run_at, c.id) AS rank
                 FROM candidates c
             ) c
             LEFT JOIN running r ON r.tenant = c.tenant
             WHERE c.kind <> ?5 OR c.rank + coalesce(r.n, 0) <= ?4
         )
         UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_owner = ?1,
                         lease_token = lease_token + 1, lease_expires_at = ?3
         WHERE id IN (SELECT id FROM jobs WHERE id IN (SELECT id FROM allowed) AND state = 'ready'
                      ORDER BY run_at, id LIMIT ?2)
         RETURNING {CLAIMED}"
    );
    claim(lite, sql, owner, limit, lease_for, Some(cap)).await
}

pub(in crate::store) async fn jobs_heartbeat(
    lite: &Lite,
    leases: &[&Lease],
    lease_for: Duration,
) -> Result<Vec<JobId>, StoreError> {
    lite.write(async |c, now| {
        let until = us_after(now, lease_for);
        let mut held = Vec::new();
        for lease in leases {
            let done = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'",
            )
            .bind(until)
            .bind(lease.job_id.0)
            .bind(lease.token)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 1 {
                held.push(lease.job_id);
            }
        }
        Ok(held)
    })
    .await
}

pub(in crate::store) async fn jobs_done_many(lite: &Lite, leases: &[&Lease]) -> Result<Vec<JobId>, StoreError> {
    lite.write(async |c, now| {
        let mut done = Vec::new();
        for lease in leases {
            if mark_done(&mut *c, lease, now).await? == 1 {
                done.push(lease.job_id);
            }
        }
        Ok(done)
    })
    .await
}

pub(in crate::store) async fn job_retry(
    tx: &mut LiteTx,
    lease: &Lease,
    delay: Duration,
    error: &str,
) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    let row = sqlx::query_as::<_, (String, i64)>(
        "UPDATE jobs SET
             state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END,
             run_at = CASE WHEN attempt >= max_attempts THEN run_at ELSE ?3 END,
             finished_at = CASE WHEN attempt >= max_attempts THEN ?4 END,
             lease_owner = NULL, lease_expires_at = NULL, last_error = ?5
         WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'
         RETURNING state, run_at",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(us_after(tx.now, delay))
    .bind(us(tx.now))
    .bind(error)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|(state, run_at)| (state, at(run_at))))
}

pub(in crate::store) async fn job_snooze(
    lite: &Lite,
    lease: &Lease,
    after: Duration,
    reason: &str,
) -> Result<Option<Parked>, StoreError> {
    let parked: Option<(i64, bool)> = lite
        .write(async |c, now| {
            Ok(sqlx::query_as(
                "UPDATE jobs SET state = 'ready', attempt = attempt - 1, \
                 run_at = CASE WHEN woken_at IS NULL THEN ?1 ELSE ?2 END, woken_at = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL, last_error = ?3 \
                 WHERE id = ?4 AND lease_token = ?5 AND state = 'leased' RETURNING run_at, run_at <= ?2",
            )
            .bind(us_after(now, after))
            .bind(us(now))
            .bind(reason)
            .bind(lease.job_id.0)
            .bind(lease.token)
            .fetch_optional(c)
            .await?)
        })
        .await?;
    Ok(parked.map(|(run_at, woken)| Parked { until: at(run_at), woken: woken && !after.is_zero() }))
}

pub(in crate::store) async fn job_release(tx: &mut LiteTx, lease: &Lease) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND lease_token = ? AND state = 'leased'",
    )
    .bind(us(tx.now))
    .bind(lease.job_id.0)
    .bind(lease.token)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

pub(in crate::store) async fn jobs_rescue(
    tx: &mut LiteTx,
    limit: i64,
) -> Result<Vec<(JobId, TaskId, String)>, StoreError> {
    let rows: Vec<(i64, Uuid, String)> = sqlx::query_as(
        "UPDATE jobs SET
             state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END,
             finished_at = CASE WHEN attempt >= max_attempts THEN ?1 END,
             run_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
             last_error = 'lease expired: the worker holding it stopped heartbeating'
         WHERE id IN (SELECT id FROM jobs WHERE state = 'leased' AND lease_expires_at < ?1
                      ORDER BY lease_expires_at LIMIT ?2)
         RETURNING id, task_id, state",
    )
    .bind(us(tx.now))
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows.into_iter().map(|(id, task, state)| (JobId(id), TaskId(task), state)).collect())
}

pub(in crate::store) async fn job_state_lock(tx: &mut LiteTx, job_id: JobId) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?").bind(job_id.0).fetch_optional(tx.conn()).await?)
}

pub(in crate::store) async fn job_reset(tx: &mut LiteTx, job_id: JobId) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, finished_at = NULL WHERE id = ?")
        .bind(us(tx.now))
        .bind(job_id.0)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub(in crate::store) async fn jobs_dead(lite: &Lite, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC LIMIT ?");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&lite.read).await?;
    rows.iter().map(job_record).collect()
}

pub(in crate::store) async fn task_jobs(lite: &Lite, task_id: TaskId) -> Result<Vec<JobRecord>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE task_id = ? ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.0).fetch_all(&lite.read).await?;
    rows.iter().map(job_record).collect()
}

pub(in crate::store) async fn job_settle(tx: &mut LiteTx, lease: &Lease, again: bool) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE jobs SET
             state = CASE WHEN ?3 THEN 'ready' ELSE 'done' END,
             attempt = CASE WHEN ?3 THEN attempt - 1 ELSE attempt END,
             run_at = CASE WHEN ?3 THEN ?4 ELSE run_at END,
             finished_at = CASE WHEN ?3 THEN NULL ELSE ?4 END,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(again)
    .bind(us(tx.now))
    .execute(tx.conn())
    .await?
    .rows_affected())
}

pub(in crate::store) async fn savepoint(tx: &mut LiteTx, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(tx.conn()).await?;
    Ok(())
}

/// A `jobs` row.
fn job_record(r: &SqliteRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: JobId(r.try_get("id")?),
        task_id: TaskId(r.try_get("task_id")?),
        kind: r.try_get("kind")?,
        state: r.try_get::<String, _>("state")?.parse()?,
        priority: r.try_get("priority")?,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        run_at: at(r.try_get("run_at")?),
        lease_owner: r.try_get("lease_owner")?,
        lease_token: r.try_get("lease_token")?,
        lease_expires_at: r.try_get::<Option<i64>, _>("lease_expires_at")?.map(at),
        last_error: r.try_get("last_error")?,
        created_at: at(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(at),
    })
}
