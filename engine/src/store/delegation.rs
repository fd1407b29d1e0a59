//! A delegation's reads and writes on the hot path: what a worker needs to
//! start, in one query, and everything one remote exchange produced, in one
//! transaction.

use a2a::Message;
use subtle::ConstantTimeEq;

use super::job::{ClaimedJob, JobKind, Lease};
use super::task::{lock_task, stamped};
use super::{Store, in_tx};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::task::TaskRecord;

/// A task's delegation checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delegation {
    pub agent: String,
    pub remote_task_id: Option<String>,
    pub remote_context_id: Option<String>,
    /// The id of the last client message handed to the remote agent.
    pub forwarded_message_id: Option<String>,
    /// Its sequence number in our log: written before it is sent.
    pub forwarded_seq: Option<i64>,
    /// Equal to `forwarded_seq` once the agent answered that send.
    pub acked_seq: Option<i64>,
    /// The remote question (status message id) the forwarded message answers.
    pub question_id: Option<String>,
}

impl Delegation {
    /// Sent, and not known to have arrived: a resumed worker must look
    /// before sending it again.
    pub fn unconfirmed(&self) -> Option<i64> {
        self.forwarded_seq.filter(|seq| self.acked_seq != Some(*seq))
    }
}

/// What a worker needs to start a delegation attempt.
#[derive(Debug, Clone)]
pub struct DelegationStart {
    pub task: TaskRecord,
    pub delegation: Option<Delegation>,
    /// The first client message not yet forwarded, with its sequence number.
    pub next: Option<(i64, Message)>,
}

/// What [`Store::delegation_fold`] did.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The task as it now is.
    pub task: TaskRecord,
    /// The task had already ended here (canceled, past its deadline): the
    /// checkpoint was written, the events were not.
    pub ended: bool,
    /// The job was settled, but stays live: a client message came in that
    /// the remote agent has not been handed.
    pub requeued: bool,
}

pub(super) mod batch;

pub use batch::FoldRequest;

super::seam::statements! {
    room delegation;
    /// The task, its checkpoint and the first client message not yet
    /// forwarded; `None` when there is no such task.
    db fn delegation_start(task_id: TaskId) -> Option<DelegationStart>;
    /// [`Db::delegation_start`] of many tasks in one round trip (those that exist).
    db fn delegations_start(task_ids: &[TaskId]) -> Vec<DelegationStart>;
    db fn delegation_get(task_id: TaskId) -> Option<Delegation>;
    db fn delegation_push_token(task_id: TaskId) -> Option<String>;
    db fn delegation_set_push_token(task_id: TaskId, token: &str) -> ();
    /// Makes the task's parked delegation due now, waking workers if it was.
    db fn delegation_wake(task_id: TaskId, jobs_channel: &str) -> ();
    /// Writes a fold (see [`Written`]); the task row is locked already.
    tx fn fold_write(
        channel: &str,
        jobs_channel: &str,
        lease: &Lease,
        checkpoint: Option<&Delegation>,
        task: &TaskRecord,
        before: i64,
        events: &[TaskEvent],
        settle: bool,
    ) -> Written;
    /// [`Tx::fold_write`] of many folds of different tasks, set-based;
    /// every row locked and every lease confirmed already. What each wrote,
    /// in the order given.
    tx fn folds_write(channel: &str, jobs_channel: &str, folds: &[FoldWrite<'_>]) -> Vec<Written>;
    /// Whether a client message came in past what was forwarded.
    tx fn follow_up_pending(task_id: TaskId) -> bool;
}

impl Store {
    /// The task, its delegation checkpoint and the next client message to
    /// forward, in one round trip.
    pub async fn delegation_start(&self, task_id: TaskId) -> Result<Option<DelegationStart>, StoreError> {
        self.db.delegation_start(task_id).await
    }

    /// [`Store::delegation_start`] for a claimed job: the delegations of
    /// one claim read theirs together, in one round trip made by whichever
    /// asks first (the others wait for it); a job claimed alone, or whose
    /// claim's read failed, reads its own.
    pub async fn delegation_start_claimed(&self, job: &ClaimedJob) -> Result<Option<DelegationStart>, StoreError> {
        if let Some(claimed) = &job.claimed {
            let read = claimed
                .read
                .get_or_init(|| async {
                    let starts = self.db.delegations_start(&claimed.tasks).await;
                    let starts = starts.inspect_err(|error| tracing::debug!(%error, "the claim's read failed"));
                    starts.ok().map(|starts| starts.into_iter().map(|s| (s.task.id, s)).collect())
                })
                .await;
            if let Some(starts) = read {
                return Ok(starts.get(&job.lease.task_id).cloned());
            }
        }
        self.delegation_start(job.lease.task_id).await
    }

    /// A task's delegation checkpoint, if it has one.
    pub async fn delegation_get(&self, task_id: TaskId) -> Result<Option<Delegation>, StoreError> {
        self.db.delegation_get(task_id).await
    }

    /// The secret a delegation's remote webhook was registered with, if any.
    pub async fn delegation_push_token(&self, task_id: TaskId) -> Result<Option<String>, StoreError> {
        self.db.delegation_push_token(task_id).await
    }

    /// Records the secret a webhook was registered on the remote task with.
    pub async fn delegation_set_push_token(&self, task_id: TaskId, token: &str) -> Result<(), StoreError> {
        self.db.delegation_set_push_token(task_id, token).await
    }

    /// A remote agent pushed about a task's remote task: if `token` is the
    /// delegation's secret, its parked job is due now (and workers woken);
    /// a job being worked on keeps the wake-up until it parks. False when the token does not match (nothing changes). The push is a
    /// hint: the worker reads the remote task before trusting anything.
    pub async fn delegation_pushed(&self, task_id: TaskId, token: &str) -> Result<bool, StoreError> {
        let Some(expected) = self.delegation_push_token(task_id).await? else { return Ok(false) };
        // Compared in time independent of where they first differ.
        if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(false);
        }
        self.db.delegation_wake(task_id, &self.channels.jobs).await?;
        Ok(true)
    }

    /// Writes what a remote exchange produced, in ONE transaction under the
    /// task's row lock and the job's lease: the delegation checkpoint (if
    /// given), the events folded into the task, and, with `finish`, the
    /// job's settlement (see below). Without `finish` the lease is confirmed
    /// instead, so a stale worker writes nothing.
    ///
    /// A task that already ended here gets the checkpoint but not the
    /// events (`ended`): the caller then cancels the remote task, whose id
    /// the cancel may not have known.
    ///
    /// Settling looks, under the same lock a client's follow-up takes, for
    /// client messages the agent has not been handed: if the task is open and
    /// one came in, the job is ready again at once (its attempt refunded)
    /// rather than done, so the task's one delegation carries it. Only a
    /// delegation that has forwarded something can have a follow-up (a task
    /// asks for input only after its agent saw the first message), so one
    /// that never did settles as done and no handler can spin it forever.
    ///
    /// On PostgreSQL, concurrent folds of different tasks share one
    /// transaction (`delegation/batch.rs`), each answered as it would be alone.
    pub async fn delegation_fold(
        &self,
        lease: &Lease,
        checkpoint: Option<&Delegation>,
        events: &[TaskEvent],
        finish: bool,
    ) -> Result<Fold, StoreError> {
        if let Some(batcher) = self.fold_batcher() {
            let fold =
                FoldRequest { lease: lease.clone(), checkpoint: checkpoint.cloned(), events: events.to_vec(), finish };
            if let Some(answer) = batcher.fold(fold).await {
                return answer;
            }
        }
        self.fold_alone(lease, checkpoint, events, finish).await
    }

    /// [`Store::delegation_fold`] in a transaction of its own.
    async fn fold_alone(
        &self,
        lease: &Lease,
        checkpoint: Option<&Delegation>,
        events: &[TaskEvent],
        finish: bool,
    ) -> Result<Fold, StoreError> {
        in_tx!(self, |tx| {
            let (row, now) = lock_task(tx, lease.task_id).await?.ok_or(StoreError::TaskNotFound(lease.task_id))?;
            let mut task = TaskRecord::try_from(row)?;
            let ended = task.state.is_terminal();
            let before = task.version;
            let events = if ended { Vec::new() } else { stamped(events, now) };
            for event in &events {
                task.apply(event).map_err(|source| StoreError::Rejected { task: task.id, source })?;
            }
            // A settlement that may find a follow-up to forward needs the
            // look below; any other is written with everything else.
            let settle_here = finish && task.state.is_terminal();
            let written = tx
                .fold_write(
                    &self.channels.events,
                    &self.channels.jobs,
                    lease,
                    checkpoint,
                    &task,
                    before,
                    &events,
                    settle_here,
                )
                .await?;
            if !events.is_empty() && written.task_updated != 1 {
                return Err(StoreError::Corrupt(format!("task {} changed under its row lock", task.id)));
            }
            if written.job_held != 1 {
                return Err(StoreError::LeaseLost(lease.job_id));
            }
            // A child's change reaches its parent in this same transaction.
            if task.parent_id.is_some() && !events.is_empty() {
                self.propagate(tx, &task, &events).await?;
            }
            if !finish || settle_here {
                return Ok(Fold { task, ended, requeued: false });
            }
            let pending = tx.follow_up_pending(lease.task_id).await?;
            self.finish_or_requeue(tx, lease, pending, JobKind::Delegate).await?;
            Ok(Fold { task, ended, requeued: pending })
        })
    }
}

/// One fold of a batch, as [`Tx::folds_write`] takes it: what
/// [`Tx::fold_write`] takes for one.
pub(super) struct FoldWrite<'a> {
    pub lease: &'a Lease,
    pub checkpoint: Option<&'a Delegation>,
    pub task: &'a TaskRecord,
    pub before: i64,
    pub events: &'a [TaskEvent],
    pub settle: bool,
}

/// What the writes of a fold touched.
pub(super) struct Written {
    /// Task rows updated: 1 when there were events, else 0.
    pub task_updated: i64,
    /// 1 while the lease holds (the job settled, or locked until COMMIT).
    pub job_held: i64,
}
