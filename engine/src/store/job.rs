//! The job queue: claim with leases, heartbeat, and fenced completion.
//!
//! Every transition out of `leased` is guarded by the fencing token
//! (`lease_token`): zero rows changed means the lease was lost, and the
//! caller hears `LeaseLost` instead of silently overwriting a newer holder.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::in_tx;
use super::{Store, Tx};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::{JobId, TaskId};

pub(super) mod batch;
mod model;

use model::ClaimedStarts;
pub(super) use model::JobRow;
pub use model::{ClaimedJob, JobFate, JobKind, JobRecord, JobState, Lease, NewJob, Parked, Rescued};

super::seam::statements! {
    room job;
    /// Whether the lease still holds the job, locking its row until COMMIT.
    tx fn lease_confirm(lease: &Lease) -> bool;
    /// [`Tx::lease_confirm`] of many, skipping rows another transaction
    /// holds; the jobs whose lease still holds and that were locked.
    tx fn leases_confirm(leases: &[&Lease]) -> Vec<JobId>;
    /// `None` when it is a delegation and the task has a live one.
    tx fn job_insert(task_id: TaskId, job: &NewJob) -> Option<JobId>;
    /// [`Tx::job_insert`] as a transaction of its own, waking the workers.
    db fn job_enqueue(task_id: TaskId, job: &NewJob, jobs_channel: &str) -> Option<JobId>;
    /// The fenced `leased -> done`; rows changed (0: the lease was lost).
    tx fn job_done(lease: &Lease) -> u64;
    /// [`Tx::job_done`] as a statement of its own.
    db fn job_done_alone(lease: &Lease) -> u64;
    /// Leases up to `limit` due jobs, longest due first.
    db fn jobs_claim(owner: &str, limit: i64, lease_for: Duration) -> Vec<ClaimRow>;
    /// [`Db::jobs_claim`], leaving tenants at `cap` leased delegations aside.
    db fn jobs_claim_fair(owner: &str, limit: i64, lease_for: Duration, cap: i64) -> Vec<ClaimRow>;
    /// Extends the leases still held; their ids.
    db fn jobs_heartbeat(leases: &[&Lease], lease_for: Duration) -> Vec<JobId>;
    /// The fenced `leased -> done` of many; the ids that were.
    db fn jobs_done_many(leases: &[&Lease]) -> Vec<JobId>;
    /// Ready after `delay`, or dead when out of attempts: (state, run_at).
    tx fn job_retry(lease: &Lease, delay: Duration, error: &str) -> Option<(String, DateTime<Utc>)>;
    /// Ready after `after` (now, if woken while leased), the attempt refunded.
    db fn job_snooze(lease: &Lease, after: Duration, reason: &str) -> Option<Parked>;
    /// Ready now, the attempt refunded; rows changed.
    tx fn job_release(lease: &Lease) -> u64;
    /// Expired leases made ready (or dead, out of attempts): (job, task, state).
    tx fn jobs_rescue(limit: i64) -> Vec<(JobId, TaskId, String)>;
    /// A job's state, its row locked.
    tx fn job_state_lock(job_id: JobId) -> Option<String>;
    /// Ready now with a fresh set of attempts.
    tx fn job_reset(job_id: JobId) -> ();
    /// Dead jobs, most recently dead first.
    db fn jobs_dead(limit: i64) -> Vec<JobRecord>;
    /// Oldest first.
    db fn task_jobs(task_id: TaskId) -> Vec<JobRecord>;
    /// Done, or (`again`) ready now with the attempt refunded; rows changed.
    tx fn job_settle(lease: &Lease, again: bool) -> u64;
    /// `SAVEPOINT`, `RELEASE` or `ROLLBACK TO` (the same SQL on both).
    tx fn savepoint(sql: &'static str) -> ();
}

impl Lease {
    /// Confirms, at the end of a transaction, that this lease still holds
    /// the job, and locks the row until COMMIT so no claim can slip in
    /// between. Checking last (rather than first) means a writer waiting on
    /// a task lock never holds its job row meanwhile; if the lease changed
    /// hands while it waited, the whole transaction rolls back.
    pub(super) async fn confirm(&self, tx: &mut Tx) -> Result<(), StoreError> {
        if tx.lease_confirm(self).await? { Ok(()) } else { Err(StoreError::LeaseLost(self.job_id)) }
    }

    /// `LeaseLost` unless `rows` (changed by a fenced statement) is one.
    fn held(&self, rows: u64) -> Result<(), StoreError> {
        if rows == 0 { Err(StoreError::LeaseLost(self.job_id)) } else { Ok(()) }
    }
}

/// Inserts a job; `None` when it is a delegation and the task already has a
/// live one, which will carry whatever the new job would have (a task's
/// delegation is driven by one job at a time).
pub(super) async fn insert_job(tx: &mut Tx, task_id: TaskId, job: &NewJob) -> Result<Option<JobId>, StoreError> {
    tx.job_insert(task_id, job).await
}

/// The fenced `leased -> done` transition inside a transaction.
pub(super) async fn mark_done_in(tx: &mut Tx, lease: &Lease) -> Result<(), StoreError> {
    let rows = tx.job_done(lease).await?;
    lease.held(rows)
}

impl Store {
    /// Enqueues a job on an existing task.
    /// `None` when the task already has a live delegation that will do the
    /// work (see [`insert_job`]).
    pub async fn job_enqueue(&self, task_id: TaskId, job: &NewJob) -> Result<Option<JobId>, StoreError> {
        self.db.job_enqueue(task_id, job, &self.channels.jobs).await
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
        let rows = match tenant_cap {
            None => self.db.jobs_claim(owner, limit, lease_for).await?,
            Some(cap) => self.db.jobs_claim_fair(owner, limit, lease_for, cap).await?,
        };
        let mut jobs = ClaimRow::into_jobs(rows, owner);
        // The claim's delegations read what they start from together, in
        // one round trip, when the first of them starts (not here: the
        // claim hands its jobs over at once).
        let delegate = |j: &ClaimedJob| j.kind() == Ok(JobKind::Delegate);
        let tasks: Vec<TaskId> = jobs.iter().filter(|j| delegate(j)).map(|j| j.lease.task_id).collect();
        if tasks.len() > 1 {
            let claimed = Arc::new(ClaimedStarts { tasks, read: Default::default() });
            for job in jobs.iter_mut().filter(|j| delegate(j)) {
                job.claimed = Some(claimed.clone());
            }
        }
        Ok(jobs)
    }

    /// Extends the given leases; returns the ids of those still held (a
    /// lease missing from the answer was lost and its work must stop).
    pub async fn job_heartbeat(&self, leases: &[&Lease], lease_for: Duration) -> Result<Vec<JobId>, StoreError> {
        self.db.jobs_heartbeat(leases, lease_for).await
    }

    /// Marks a job done, appending `events` to its task in the same
    /// transaction; nothing is written unless the lease still holds at COMMIT.
    pub async fn job_complete(&self, lease: &Lease, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            // Concurrent completions share one fenced statement.
            if let Some(batcher) = self.done_batcher()
                && let Some(done) = batcher.complete(lease).await
            {
                return done;
            }
            // One statement needs no explicit transaction: one round trip
            // instead of three on the queue's hottest path.
            let rows = self.db.job_done_alone(lease).await?;
            return lease.held(rows);
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
        self.db.jobs_done_many(leases).await
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
            let row = tx.job_retry(lease, delay, error).await?;
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
    /// running, an agent whose circuit breaker is open). A wake-up that
    /// came while the job was leased (`delegation_pushed`) is not lost: the
    /// job is then due at once.
    pub async fn job_snooze(&self, lease: &Lease, after: Duration, reason: &str) -> Result<Parked, StoreError> {
        let parked = self.db.job_snooze(lease, after, reason).await?;
        parked.ok_or(StoreError::LeaseLost(lease.job_id))
    }

    /// Gives a job back without spending its attempt (graceful shutdown):
    /// ready at once for another worker.
    pub async fn job_release(&self, lease: &Lease) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let released = tx.job_release(lease).await?;
            lease.held(released)?;
            tx.notify(&self.channels.jobs, "released").await?;
            Ok(())
        })
    }

    /// Sweeps leases that expired with their worker: each job is ready again
    /// for another worker (the lost attempt counts), or dead-lettered, with
    /// its task failed, when that was its last attempt.
    pub async fn job_rescue_expired(&self, limit: i64, on_dead: &[TaskEvent]) -> Result<Rescued, StoreError> {
        in_tx!(self, |tx| {
            let rows = tx.jobs_rescue(limit).await?;
            let mut rescued = Rescued::default();
            for (id, task_id, state) in rows {
                if state == "dead" {
                    self.fail_task_quietly(tx, task_id, on_dead).await?;
                    rescued.dead.push(id);
                } else {
                    rescued.requeued.push(id);
                }
            }
            if !rescued.requeued.is_empty() {
                tx.notify(&self.channels.jobs, "rescued").await?;
            }
            Ok(rescued)
        })
    }

    /// Puts a dead job back in the queue with a fresh set of attempts.
    pub async fn job_requeue(&self, job_id: JobId) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let state = tx.job_state_lock(job_id).await?.ok_or(StoreError::JobNotFound(job_id))?;
            if state != "dead" {
                return Err(StoreError::JobNotDead { job: job_id, state });
            }
            tx.job_reset(job_id).await?;
            tx.notify(&self.channels.jobs, "requeued").await?;
            Ok(())
        })
    }

    /// Dead-lettered jobs, most recent first.
    pub async fn jobs_dead(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.db.jobs_dead(limit).await
    }

    /// Every job of a task, oldest first.
    pub async fn task_jobs(&self, task_id: TaskId) -> Result<Vec<JobRecord>, StoreError> {
        self.db.task_jobs(task_id).await
    }

    /// Appends a dead job's failure to its task, unless the task already
    /// ended (a cancel or a completion won the race): then there is nothing
    /// to fail and the log stays as it is.
    async fn fail_task_quietly(&self, tx: &mut Tx, task_id: TaskId, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // A savepoint, so a refused fold does not abort the whole transaction.
        tx.savepoint("SAVEPOINT fail_task").await?;
        match self.append_in_tx(tx, task_id, events).await {
            Ok(_) => tx.savepoint("RELEASE SAVEPOINT fail_task").await?,
            Err(e) if e.terminal_state().is_some() => tx.savepoint("ROLLBACK TO SAVEPOINT fail_task").await?,
            Err(e) => return Err(e),
        }
        Ok(())
    }

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
        let settled = tx.job_settle(lease, again).await?;
        lease.held(settled)?;
        if again {
            tx.notify(&self.channels.jobs, kind.as_str()).await?;
        }
        Ok(())
    }
}

/// A row a claim returns.
pub(super) struct ClaimRow {
    pub(super) id: i64,
    pub(super) task_id: uuid::Uuid,
    pub(super) kind: String,
    pub(super) payload: Value,
    pub(super) attempt: i32,
    pub(super) max_attempts: i32,
    pub(super) lease_token: i64,
    pub(super) run_at: DateTime<Utc>,
    pub(super) lease_expires_at: DateTime<Utc>,
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
                claimed: None,
            })
            .collect();
        jobs.sort_by_key(|j| j.lease.job_id);
        jobs
    }
}
