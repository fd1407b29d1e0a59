//! The job queue: claim with leases, heartbeat, and fenced completion.
//!
//! Every transition out of `leased` is guarded by the fencing token
//! (`lease_token`): zero rows changed means the lease was lost, and the
//! caller hears `LeaseLost` instead of silently overwriting a newer holder.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::in_tx;
use super::{Db, Store, Tx, lite, notify};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::{JobId, TaskId};

mod embedded;
mod model;

use embedded::{CLAIMED, JOB_COLUMNS, claim_lite, job_record_lite, mark_done_lite};

use model::JobRow;
pub use model::{ClaimedJob, JobFate, JobKind, JobRecord, JobState, Lease, NewJob, Rescued};

impl Lease {
    /// Confirms, at the end of a transaction, that this lease still holds
    /// the job, and locks the row until COMMIT so no claim can slip in
    /// between. Checking last (rather than first) means a writer waiting on
    /// a task lock never holds its job row meanwhile; if the lease changed
    /// hands while it waited, the whole transaction rolls back.
    pub(super) async fn confirm(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let held = match tx {
            Tx::Pg(tx) => {
                sqlx::query_scalar!(
                    r#"SELECT id FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'leased' FOR UPDATE"#,
                    self.job_id.0,
                    self.token,
                )
                .fetch_optional(&mut **tx)
                .await?
            }
            Tx::Lite(tx) => {
                sqlx::query_scalar("SELECT id FROM jobs WHERE id = ? AND lease_token = ? AND state = 'leased'")
                    .bind(self.job_id.0)
                    .bind(self.token)
                    .fetch_optional(tx.conn())
                    .await?
            }
        };
        held.map(|_| ()).ok_or(StoreError::LeaseLost(self.job_id))
    }
}

/// Inserts a job; `None` when it is a delegation and the task already has a
/// live one, which will carry whatever the new job would have (a task's
/// delegation is driven by one job at a time).
pub(super) async fn insert_job(tx: &mut Tx, task_id: TaskId, job: &NewJob) -> Result<Option<JobId>, StoreError> {
    let tx = match tx {
        Tx::Pg(tx) => tx,
        Tx::Lite(tx) => return Ok(lite::insert_job(tx, task_id.0, job).await?.map(JobId)),
    };
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

/// The fenced `leased -> done` transition.
async fn mark_done<'e, E: sqlx::PgExecutor<'e>>(executor: E, lease: &Lease) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND lease_token = $2 AND state = 'leased'"#,
        lease.job_id.0,
        lease.token,
    )
    .execute(executor)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::LeaseLost(lease.job_id));
    }
    Ok(())
}

/// [`mark_done`] inside a transaction, on either driver.
pub(super) async fn mark_done_in(tx: &mut Tx, lease: &Lease) -> Result<(), StoreError> {
    match tx {
        Tx::Pg(tx) => mark_done(&mut **tx, lease).await,
        Tx::Lite(tx) => {
            let now = tx.now;
            mark_done_lite(tx.conn(), lease, now).await
        }
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Enqueues a job on an existing task.
    /// `None` when the task already has a live delegation that will do the
    /// work (see [`insert_job`]).
    pub async fn job_enqueue(&self, task_id: TaskId, job: &NewJob) -> Result<Option<JobId>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(_) => {
                return in_tx!(self, |tx| {
                    let id = insert_job(tx, task_id, job).await?;
                    if id.is_some() {
                        notify(tx, &self.channels.jobs, job.kind.as_str()).await?;
                    }
                    Ok(id)
                });
            }
        };
        // One statement, so one round trip: the insert and its wake-up
        // commit together without an explicit transaction.
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
            self.channels.jobs,
        )
        .fetch_one(pool)
        .await?;
        Ok(row.id.map(JobId))
    }

    /// Claims up to `limit` ready jobs in one statement, longest due first, each under a fresh fencing token and a lease of `lease_for`.
    /// `SKIP LOCKED` lets concurrent claimers pass each other without waiting,
    /// and no job is ever handed to two of them.
    pub async fn job_claim(&self, owner: &str, limit: i64, lease_for: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        self.job_claim_fair(owner, limit, lease_for, None).await
    }

    /// [`Store::job_claim`], holding each tenant to at most `tenant_cap`
    /// leased delegations across the deployment, so one tenant's long tasks
    /// cannot take every worker slot while another tenant's work waits.
    /// Jobs of a tenant at its cap are passed over (they stay ready, first
    /// in line once one of its delegations ends); other kinds are not
    /// capped. Claimers racing each other may overshoot the cap by one job
    /// each, never more.
    pub async fn job_claim_fair(
        &self,
        owner: &str,
        limit: i64,
        lease_for: Duration,
        tenant_cap: Option<i64>,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let Some(cap) = tenant_cap else {
            return self.claim_any(owner, limit, lease_for).await;
        };
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                // The same window and ranks; the one writer needs no SKIP LOCKED.
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
                return claim_lite(lite, sql, owner, limit, lease_for, Some(cap)).await;
            }
        };
        // The leased delegations are few (at most every worker's
        // concurrency), so counting them per tenant is cheap; the ready jobs
        // are looked at in a bounded window, in claim order, skipping the
        // tenants already at their cap.
        let rows = sqlx::query_as!(
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
            seconds(lease_for),
            cap,
            JobKind::Delegate.as_str(),
        )
        .fetch_all(pool)
        .await?;
        Ok(ClaimRow::into_jobs(rows, owner))
    }

    async fn claim_any(&self, owner: &str, limit: i64, lease_for: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!(
                    "UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_owner = ?1,
                                     lease_token = lease_token + 1, lease_expires_at = ?3
                     WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' AND run_at <= ?6
                                  ORDER BY run_at, id LIMIT ?2)
                     RETURNING {CLAIMED}"
                );
                return claim_lite(lite, sql, owner, limit, lease_for, None).await;
            }
        };
        let rows = sqlx::query_as!(
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
            seconds(lease_for),
        )
        .fetch_all(pool)
        .await?;
        Ok(ClaimRow::into_jobs(rows, owner))
    }

    /// Extends the given leases; returns the ids of those still held (a
    /// lease missing from the answer was lost and its work must stop).
    pub async fn job_heartbeat(&self, leases: &[&Lease], lease_for: Duration) -> Result<Vec<JobId>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let mut tx = lite.begin().await?;
                let until = lite::us_after(tx.now, lease_for);
                let mut held = Vec::new();
                let mut beat = async || {
                    for lease in leases {
                        let done = sqlx::query(
                            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'",
                        )
                        .bind(until)
                        .bind(lease.job_id.0)
                        .bind(lease.token)
                        .execute(tx.conn())
                        .await?;
                        if done.rows_affected() == 1 {
                            held.push(lease.job_id);
                        }
                    }
                    Ok::<_, StoreError>(())
                };
                let result = beat().await;
                return tx.finish(result).await.map(|()| held);
            }
        };
        let ids: Vec<i64> = leases.iter().map(|l| l.job_id.0).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
        let held = sqlx::query_scalar!(
            r#"UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
               FROM UNNEST($1::bigint[], $2::bigint[]) AS h(id, token)
               WHERE jobs.id = h.id AND jobs.lease_token = h.token AND jobs.state = 'leased'
               RETURNING jobs.id"#,
            &ids,
            &tokens,
            seconds(lease_for),
        )
        .fetch_all(pool)
        .await?;
        Ok(held.into_iter().map(JobId).collect())
    }

    /// Marks a job done, appending `events` to its task in the same
    /// transaction; nothing is written unless the lease still holds at COMMIT.
    pub async fn job_complete(&self, lease: &Lease, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            // One statement needs no explicit transaction: one round trip
            // instead of three on the queue's hottest path.
            return match &self.db {
                Db::Pg(pool) => mark_done(pool, lease).await,
                Db::Lite(lite) => lite.write(async |c, now| mark_done_lite(c, lease, now).await).await,
            };
        }
        in_tx!(self, |tx| {
            self.append_in_tx(tx, lease.task_id, events).await?;
            // On `LeaseLost`, dropping `tx` rolls the events back with it.
            mark_done_in(tx, lease).await?;
            Ok(())
        })
    }

    /// Settles a delegate job, appending `events` to its task in the same
    /// transaction (see [`Store::delegation_fold`]): the task as it then is,
    /// and whether the job was requeued because a client message is still
    /// to be forwarded.
    pub async fn delegation_finish(&self, lease: &Lease, events: &[TaskEvent]) -> Result<super::Fold, StoreError> {
        self.delegation_fold(lease, None, events, true).await
    }

    /// Marks many jobs done in one statement, each only while its lease
    /// holds; returns the ids that were completed (the others' leases were
    /// lost). For jobs whose completion writes nothing to their tasks.
    pub async fn job_complete_many(&self, leases: &[&Lease]) -> Result<Vec<JobId>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(_) => {
                return in_tx!(self, |tx| {
                    let mut done = Vec::new();
                    for lease in leases {
                        match mark_done_in(tx, lease).await {
                            Ok(()) => done.push(lease.job_id),
                            Err(StoreError::LeaseLost(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(done)
                });
            }
        };
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

    /// Records a failed attempt. With attempts left the job is ready again
    /// after `delay`; otherwise it is dead-lettered and `on_dead` (the task's
    /// failure) is appended, unless the task already ended some other way.
    pub async fn job_retry(
        &self,
        lease: &Lease,
        error: &str,
        delay: Duration,
        on_dead: &[TaskEvent],
    ) -> Result<JobFate, StoreError> {
        in_tx!(self, |tx| {
            let row = match tx {
                Tx::Pg(tx) => sqlx::query!(
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
                    seconds(delay),
                    error,
                )
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| (r.state, r.run_at)),
                Tx::Lite(tx) => sqlx::query_as::<_, (String, i64)>(
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
                .bind(lite::us_after(tx.now, delay))
                .bind(lite::us(tx.now))
                .bind(error)
                .fetch_optional(tx.conn())
                .await?
                .map(|(state, run_at)| (state, lite::at(run_at))),
            };
            let (state, run_at) = row.ok_or(StoreError::LeaseLost(lease.job_id))?;
            // No NOTIFY for a retry: nobody can take it before it is due
            // (the retrying worker sets itself a timer for it).
            let fate = if state == "dead" {
                self.fail_task_quietly(tx, lease.task_id, on_dead).await?;
                JobFate::Dead
            } else {
                JobFate::RetryAt(run_at)
            };
            Ok(fate)
        })
    }

    /// Puts a job aside until `after` has passed, without spending its
    /// attempt: for work that is waiting, not failing (a remote task still
    /// running, an agent whose circuit breaker is open).
    pub async fn job_snooze(&self, lease: &Lease, after: Duration, reason: &str) -> Result<DateTime<Utc>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let run_at: Option<i64> = lite
                    .write(async |c, now| {
                        Ok(sqlx::query_scalar(
                            "UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = ?, lease_owner = NULL, \
                     lease_expires_at = NULL, last_error = ? \
                     WHERE id = ? AND lease_token = ? AND state = 'leased' RETURNING run_at",
                        )
                        .bind(lite::us_after(now, after))
                        .bind(reason)
                        .bind(lease.job_id.0)
                        .bind(lease.token)
                        .fetch_optional(c)
                        .await?)
                    })
                    .await?;
                return run_at.map(lite::at).ok_or(StoreError::LeaseLost(lease.job_id));
            }
        };
        let run_at = sqlx::query_scalar!(
            r#"UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = now() + make_interval(secs => $3),
                              lease_owner = NULL, lease_expires_at = NULL, last_error = $4
               WHERE id = $1 AND lease_token = $2 AND state = 'leased'
               RETURNING run_at"#,
            lease.job_id.0,
            lease.token,
            seconds(after),
            reason,
        )
        .fetch_optional(pool)
        .await?;
        run_at.ok_or(StoreError::LeaseLost(lease.job_id))
    }

    /// Gives a job back without spending its attempt (graceful shutdown):
    /// ready at once for another worker.
    pub async fn job_release(&self, lease: &Lease) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let released = match tx {
                Tx::Pg(tx) => sqlx::query!(
                    r#"UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = now(),
                                      lease_owner = NULL, lease_expires_at = NULL
                       WHERE id = $1 AND lease_token = $2 AND state = 'leased'"#,
                    lease.job_id.0,
                    lease.token,
                )
                .execute(&mut **tx)
                .await?
                .rows_affected(),
                Tx::Lite(tx) => sqlx::query(
                    "UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = ?, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = ? AND lease_token = ? AND state = 'leased'",
                )
                .bind(lite::us(tx.now))
                .bind(lease.job_id.0)
                .bind(lease.token)
                .execute(tx.conn())
                .await?
                .rows_affected(),
            };
            if released == 0 {
                return Err(StoreError::LeaseLost(lease.job_id));
            }
            notify(tx, &self.channels.jobs, "released").await?;
            Ok(())
        })
    }

    /// Sweeps leases that expired with their worker: each job is ready again
    /// for another worker (the lost attempt counts), or dead-lettered, with
    /// its task failed, when that was its last attempt.
    pub async fn job_rescue_expired(&self, limit: i64, on_dead: &[TaskEvent]) -> Result<Rescued, StoreError> {
        in_tx!(self, |tx| {
            let rows: Vec<(i64, uuid::Uuid, String)> = match tx {
                Tx::Pg(tx) => sqlx::query!(
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
                .map(|r| (r.id, r.task_id, r.state))
                .collect(),
                Tx::Lite(tx) => {
                    sqlx::query_as(
                        "UPDATE jobs SET
                         state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END,
                         finished_at = CASE WHEN attempt >= max_attempts THEN ?1 END,
                         run_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                         last_error = 'lease expired: the worker holding it stopped heartbeating'
                     WHERE id IN (SELECT id FROM jobs WHERE state = 'leased' AND lease_expires_at < ?1
                                  ORDER BY lease_expires_at LIMIT ?2)
                     RETURNING id, task_id, state",
                    )
                    .bind(lite::us(tx.now))
                    .bind(limit)
                    .fetch_all(tx.conn())
                    .await?
                }
            };
            let mut rescued = Rescued::default();
            for (id, task_id, state) in rows {
                if state == "dead" {
                    self.fail_task_quietly(tx, TaskId(task_id), on_dead).await?;
                    rescued.dead.push(JobId(id));
                } else {
                    rescued.requeued.push(JobId(id));
                }
            }
            if !rescued.requeued.is_empty() {
                notify(tx, &self.channels.jobs, "rescued").await?;
            }
            Ok(rescued)
        })
    }

    /// Puts a dead job back in the queue with a fresh set of attempts.
    pub async fn job_requeue(&self, job_id: JobId) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let state = match tx {
                Tx::Pg(tx) => {
                    sqlx::query_scalar!("SELECT state FROM jobs WHERE id = $1 FOR UPDATE", job_id.0)
                        .fetch_optional(&mut **tx)
                        .await?
                }
                Tx::Lite(tx) => {
                    sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
                        .bind(job_id.0)
                        .fetch_optional(tx.conn())
                        .await?
                }
            };
            let state = state.ok_or(StoreError::JobNotFound(job_id))?;
            if state != "dead" {
                return Err(StoreError::JobNotDead { job: job_id, state });
            }
            match tx {
                Tx::Pg(tx) => {
                    sqlx::query!(
                        r#"UPDATE jobs SET state = 'ready', attempt = 0, run_at = now(), finished_at = NULL
                           WHERE id = $1"#,
                        job_id.0,
                    )
                    .execute(&mut **tx)
                    .await?;
                }
                Tx::Lite(tx) => {
                    sqlx::query(
                        "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, finished_at = NULL WHERE id = ?",
                    )
                    .bind(lite::us(tx.now))
                    .bind(job_id.0)
                    .execute(tx.conn())
                    .await?;
                }
            }
            notify(tx, &self.channels.jobs, "requeued").await?;
            Ok(())
        })
    }

    /// Dead-lettered jobs, most recent first.
    pub async fn jobs_dead(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql =
                    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC LIMIT ?");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&lite.read).await?;
                return rows.iter().map(job_record_lite).collect();
            }
        };
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

    /// Every job of a task, oldest first.
    pub async fn task_jobs(&self, task_id: TaskId) -> Result<Vec<JobRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE task_id = ? ORDER BY id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.0).fetch_all(&lite.read).await?;
                return rows.iter().map(job_record_lite).collect();
            }
        };
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

    /// Appends a dead job's failure to its task, unless the task already
    /// ended (a cancel or a completion won the race): then there is nothing
    /// to fail and the log stays as it is.
    async fn fail_task_quietly(&self, tx: &mut Tx, task_id: TaskId, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // A savepoint, so a refused fold does not abort the whole transaction.
        savepoint(tx, "SAVEPOINT fail_task").await?;
        match self.append_in_tx(tx, task_id, events).await {
            Ok(_) => savepoint(tx, "RELEASE SAVEPOINT fail_task").await?,
            Err(e) if e.terminal_state().is_some() => savepoint(tx, "ROLLBACK TO SAVEPOINT fail_task").await?,
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Store {
    /// Ends a leased job's attempt inside `tx`: done, or, when `again`
    /// (work arrived for it meanwhile, seen under the lock its writers
    /// take), ready at once without spending the attempt, with a wake-up
    /// for the workers. `LeaseLost` if the lease no longer holds.
    pub(super) async fn finish_or_requeue(
        &self,
        tx: &mut Tx,
        lease: &Lease,
        again: bool,
        kind: JobKind,
    ) -> Result<(), StoreError> {
        let settled = match tx {
            Tx::Pg(tx) => sqlx::query!(
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
            .rows_affected(),
            Tx::Lite(tx) => sqlx::query(
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
            .bind(lite::us(tx.now))
            .execute(tx.conn())
            .await?
            .rows_affected(),
        };
        if settled == 0 {
            return Err(StoreError::LeaseLost(lease.job_id));
        }
        if again {
            notify(tx, &self.channels.jobs, kind.as_str()).await?;
        }
        Ok(())
    }
}

/// A row a claim returns.
struct ClaimRow {
    id: i64,
    task_id: uuid::Uuid,
    kind: String,
    payload: Value,
    attempt: i32,
    max_attempts: i32,
    lease_token: i64,
    run_at: DateTime<Utc>,
    lease_expires_at: DateTime<Utc>,
}

impl ClaimRow {
    /// The claimed jobs in id order (`UPDATE .. RETURNING` does not keep
    /// the subquery's order).
    fn into_jobs(rows: Vec<ClaimRow>, owner: &str) -> Vec<ClaimedJob> {
        let mut jobs: Vec<ClaimedJob> = rows
            .into_iter()
            .map(|r| ClaimedJob {
                lease: Lease {
                    job_id: JobId(r.id),
                    task_id: TaskId(r.task_id),
                    token: r.lease_token,
                    attempt: r.attempt,
                    max_attempts: r.max_attempts,
                    owner: owner.to_owned(),
                    expires_at: r.lease_expires_at,
                },
                kind_name: r.kind,
                payload: r.payload,
                due_at: r.run_at,
            })
            .collect();
        jobs.sort_by_key(|j| j.lease.job_id);
        jobs
    }
}

/// Runs a savepoint statement (the same SQL on both drivers).
async fn savepoint(tx: &mut Tx, sql: &'static str) -> Result<(), StoreError> {
    match tx {
        Tx::Pg(tx) => sqlx::query(sql).execute(&mut **tx).await?.rows_affected(),
        Tx::Lite(tx) => sqlx::query(sql).execute(tx.conn()).await?.rows_affected(),
    };
    Ok(())
}
