//! The job queue, on PostgreSQL: claims with `SKIP LOCKED`, and every
//! transition out of `leased` fenced by the lease's token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::store::job::{ClaimRow, JobKind, JobRecord, JobRow, Lease, NewJob, Parked};

pub(in crate::store) async fn lease_confirm(tx: &mut PgTx, lease: &Lease) -> Result<bool, StoreError> {
    let held = sqlx::query_scalar!(
        r#"SELECT id FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'leased' FOR UPDATE"#,
        lease.job_id.0,
        lease.token,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}

pub(in crate::store) async fn leases_confirm(tx: &mut PgTx, leases: &[&Lease]) -> Result<Vec<JobId>, StoreError> {
    let ids: Vec<i64> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
    let held = sqlx::query_scalar!(
        r#"SELECT j.id FROM jobs j JOIN UNNEST($1::bigint[], $2::bigint[]) AS c(id, token)
                  ON j.id = c.id AND j.lease_token = c.token
           WHERE j.state = 'leased'
           ORDER BY j.id FOR UPDATE OF j SKIP LOCKED"#,
        &ids,
        &tokens,
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(held.into_iter().map(JobId).collect())
}

pub(in crate::store) async fn job_insert(
    tx: &mut PgTx,
    task_id: TaskId,
    job: &NewJob,
) -> Result<Option<JobId>, StoreError> {
    let id = sqlx::query_scalar!(
        r#"INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at)
           VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()))
           ON CONFLICT (task_id) WHERE kind = 'delegate' AND state IN ('ready', 'leased') DO NOTHING
           RETURNING id"#,
        task_id.0,
        job.kind.as_str(),
        job.payload,
        job.priority,
        job.max_attempts,
        job.run_at,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(id.map(JobId))
}

/// One statement, so one round trip: the insert and its wake-up commit
/// together without an explicit transaction.
pub(in crate::store) async fn job_enqueue(
    pool: &PgPool,
    task_id: TaskId,
    job: &NewJob,
    jobs_channel: &str,
) -> Result<Option<JobId>, StoreError> {
    let row = sqlx::query!(
        r#"WITH queued AS (
                   INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at)
                   VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()))
                   ON CONFLICT (task_id) WHERE kind = 'delegate' AND state IN ('ready', 'leased') DO NOTHING
                   RETURNING id
               )
               SELECT (SELECT id FROM queued) AS id,
                      CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($7, $2) END AS notified"#,
        task_id.0,
        job.kind.as_str(),
        job.payload,
        job.priority,
        job.max_attempts,
        job.run_at,
        jobs_channel,
    )
    .fetch_one(pool)
    .await?;
    Ok(row.id.map(JobId))
}

async fn mark_done<'e, E: sqlx::PgExecutor<'e>>(executor: E, lease: &Lease) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_token = $2 AND state = 'leased'"#,
        lease.job_id.0,
        lease.token,
    )
    .execute(executor)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn job_done(tx: &mut PgTx, lease: &Lease) -> Result<u64, StoreError> {
    mark_done(&mut **tx, lease).await
}

pub(in crate::store) async fn job_done_alone(pool: &PgPool, lease: &Lease) -> Result<u64, StoreError> {
    mark_done(pool, lease).await
}

pub(in crate::store) async fn jobs_claim(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    lease_for: Duration,
) -> Result<Vec<ClaimRow>, StoreError> {
    Ok(sqlx::query_as!(
        ClaimRow,
        r#"UPDATE jobs SET state = 'leased',
                              attempt = attempt + 1,
                              lease_owner = $1,
                              lease_token = lease_token + 1,
                              lease_expires_at = now() + make_interval(secs => $3)
               WHERE id IN (
                   SELECT id FROM jobs
                   WHERE state = 'ready' AND run_at <= now()
                   ORDER BY run_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               )
               RETURNING id, task_id, kind, payload, attempt, max_attempts, lease_token, run_at,
                         lease_expires_at AS "lease_expires_at!""#,
        owner,
        limit,
        lease_for.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?)
}

/// The leased delegations are few (at most every worker's concurrency), so
/// counting them per tenant is cheap; the ready jobs are looked at in a
/// bounded window, in claim order, skipping the tenants at their cap.
pub(in crate::store) async fn jobs_claim_fair(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    lease_for: Duration,
    cap: i64,
) -> Result<Vec<ClaimRow>, StoreError> {
    Ok(sqlx::query_as!(
        ClaimRow,
        r#"WITH running AS (
                   SELECT t.tenant, count(*) AS n FROM jobs r JOIN tasks t ON t.id = r.task_id
                   WHERE r.state = 'leased' AND r.kind = $5
                   GROUP BY t.tenant
               ), candidates AS (
                   SELECT j.id, j.kind, j.run_at, t.tenant FROM jobs j JOIN tasks t ON t.id = j.task_id
                   WHERE j.state = 'ready' AND j.run_at <= now()
                     AND (j.kind <> $5 OR t.tenant NOT IN (SELECT tenant FROM running WHERE n >= $4))
                   ORDER BY j.run_at, j.id
                   LIMIT $2::bigint * 4
               ), allowed AS (
                   SELECT c.id FROM (
                       SELECT c.*, row_number() OVER (PARTITION BY c.tenant, c.kind ORDER BY c.run_at, c.id) AS rank
                       FROM candidates c
                   ) c
                   LEFT JOIN running r ON r.tenant = c.tenant
                   WHERE c.kind <> $5 OR c.rank + coalesce(r.n, 0) <= $4
               )
               UPDATE jobs SET state = 'leased',
                              attempt = attempt + 1,
                              lease_owner = $1,
                              lease_token = lease_token + 1,
                              lease_expires_at = now() + make_interval(secs => $3)
               WHERE id IN (
                   SELECT id FROM jobs
                   WHERE id IN (SELECT id FROM allowed) AND state = 'ready'
                   ORDER BY run_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               )
               RETURNING id, task_id, kind, payload, attempt, max_attempts, lease_token, run_at,
                         lease_expires_at AS "lease_expires_at!""#,
        owner,
        limit,
        lease_for.as_secs_f64(),
        cap,
        JobKind::Delegate.as_str(),
    )
    .fetch_all(pool)
    .await?)
}

pub(in crate::store) async fn jobs_heartbeat(
    pool: &PgPool,
    leases: &[&Lease],
    lease_for: Duration,
) -> Result<Vec<JobId>, StoreError> {
    let ids: Vec<i64> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
    let held = sqlx::query_scalar!(
        r#"UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
               FROM UNNEST($1::bigint[], $2::bigint[]) AS h(id, token)
               WHERE jobs.id = h.id AND jobs.lease_token = h.token AND jobs.state = 'leased'
               RETURNING jobs.id"#,
        &ids,
        &tokens,
        lease_for.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    Ok(held.into_iter().map(JobId).collect())
}

pub(in crate::store) async fn jobs_done_many(pool: &PgPool, leases: &[&Lease]) -> Result<Vec<JobId>, StoreError> {
    let ids: Vec<i64> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
    let done = sqlx::query_scalar!(
        r#"UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
               FROM UNNEST($1::bigint[], $2::bigint[]) AS c(id, token)
               WHERE jobs.id = c.id AND jobs.lease_token = c.token AND jobs.state = 'leased'
               RETURNING jobs.id"#,
        &ids,
        &tokens,
    )
    .fetch_all(pool)
    .await?;
    Ok(done.into_iter().map(JobId).collect())
}

pub(in crate::store) async fn job_retry(
    tx: &mut PgTx,
    lease: &Lease,
    delay: Duration,
    error: &str,
) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET
                           state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END,
                           run_at = CASE WHEN attempt >= max_attempts THEN run_at
                                         ELSE now() + make_interval(secs => $3) END,
                           finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
                           lease_owner = NULL, lease_expires_at = NULL, last_error = $4
                       WHERE id = $1 AND lease_token = $2 AND state = 'leased'
                       RETURNING state, run_at"#,
        lease.job_id.0,
        lease.token,
        delay.as_secs_f64(),
        error,
    )
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| (r.state, r.run_at)))
}

pub(in crate::store) async fn job_snooze(
    pool: &PgPool,
    lease: &Lease,
    after: Duration,
    reason: &str,
) -> Result<Option<Parked>, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET state = 'ready', attempt = attempt - 1,
                              run_at = CASE WHEN woken_at IS NULL THEN now() + make_interval(secs => $3) ELSE now() END,
                              woken_at = NULL, lease_owner = NULL, lease_expires_at = NULL, last_error = $4
               WHERE id = $1 AND lease_token = $2 AND state = 'leased'
               RETURNING run_at, run_at <= now() AS "woken!""#,
        lease.job_id.0,
        lease.token,
        after.as_secs_f64(),
        reason,
    )
    .fetch_optional(pool)
    .await?
    .map(|r| Parked { until: r.run_at, woken: r.woken && !after.is_zero() }))
}

pub(in crate::store) async fn job_release(tx: &mut PgTx, lease: &Lease) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = now(),
                                      lease_owner = NULL, lease_expires_at = NULL
                       WHERE id = $1 AND lease_token = $2 AND state = 'leased'"#,
        lease.job_id.0,
        lease.token,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn jobs_rescue(
    tx: &mut PgTx,
    limit: i64,
) -> Result<Vec<(JobId, TaskId, String)>, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET
                       state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END,
                       finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
                       run_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                       last_error = 'lease expired: the worker holding it stopped heartbeating'
                   WHERE id IN (
                       SELECT id FROM jobs
                       WHERE state = 'leased' AND lease_expires_at < now()
                       ORDER BY lease_expires_at
                       LIMIT $1
                       FOR UPDATE SKIP LOCKED
                   )
                   RETURNING id, task_id, state"#,
        limit,
    )
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|r| (JobId(r.id), TaskId(r.task_id), r.state))
    .collect())
}

pub(in crate::store) async fn job_state_lock(tx: &mut PgTx, job_id: JobId) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar!("SELECT state FROM jobs WHERE id = $1 FOR UPDATE", job_id.0)
        .fetch_optional(&mut **tx)
        .await?)
}

pub(in crate::store) async fn job_reset(tx: &mut PgTx, job_id: JobId) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE jobs SET state = 'ready', attempt = 0, run_at = now(), finished_at = NULL
                           WHERE id = $1"#,
        job_id.0,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(in crate::store) async fn jobs_dead(pool: &PgPool, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
    let rows = sqlx::query_as!(
        JobRow,
        r#"SELECT id, task_id, kind, state, priority, attempt, max_attempts, run_at, lease_owner,
                      lease_token, lease_expires_at, last_error, created_at, finished_at
               FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(JobRecord::try_from).collect()
}

pub(in crate::store) async fn task_jobs(pool: &PgPool, task_id: TaskId) -> Result<Vec<JobRecord>, StoreError> {
    let rows = sqlx::query_as!(
        JobRow,
        r#"SELECT id, task_id, kind, state, priority, attempt, max_attempts, run_at, lease_owner,
                      lease_token, lease_expires_at, last_error, created_at, finished_at
               FROM jobs WHERE task_id = $1 ORDER BY id"#,
        task_id.0,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(JobRecord::try_from).collect()
}

pub(in crate::store) async fn job_settle(tx: &mut PgTx, lease: &Lease, again: bool) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        r#"UPDATE jobs SET
                       state = CASE WHEN $3 THEN 'ready' ELSE 'done' END,
                       attempt = CASE WHEN $3 THEN attempt - 1 ELSE attempt END,
                       run_at = CASE WHEN $3 THEN now() ELSE run_at END,
                       finished_at = CASE WHEN $3 THEN NULL ELSE now() END,
                       lease_owner = NULL, lease_expires_at = NULL
                   WHERE id = $1 AND lease_token = $2 AND state = 'leased'"#,
        lease.job_id.0,
        lease.token,
        again,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn savepoint(tx: &mut PgTx, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}
