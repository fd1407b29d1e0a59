//! Group commit of delegation folds on PostgreSQL (see `store/group.rs`):
//! what concurrent remote exchanges of *different* tasks produced is
//! written in one transaction — one statement locking every task row, one
//! confirming every lease (its job row locked), one set-based statement
//! writing every checkpoint, log row, snapshot, settlement, outbox row and
//! wake-up, one COMMIT. Rows are locked with `SKIP LOCKED`: a batch never
//! waits for a row another transaction holds, so one stalled transaction
//! cannot hold up every fold behind it, and two batches never wait on each
//! other; a member whose task or job row the batch could not take is
//! written alone, where it waits by itself and is judged exactly.
//!
//! Exactness is the single fold's ([`Store::delegation_fold`]), member by
//! member: a member whose task is gone or whose lease was taken over is
//! written alone and answered that error there; one whose events the task
//! refuses is answered that error and writes nothing, while its
//! batch-mates commit; a member whose task had already
//! ended writes its checkpoint (and settles) but not its events, as alone.
//! Two kinds of fold take more than the batch's statements — a child's,
//! whose change reaches its parent (another row lock, taken in the
//! parent's order), and a settlement that must look for a follow-up — and
//! are written alone once the batch committed. A batch the database
//! refuses for what one member holds is written again one member at a
//! time, so only that one fails; a COMMIT that fails for the database's
//! sake fails every member, none of them acknowledged.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::{Delegation, Fold, FoldWrite};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::{JobId, TaskId};
use crate::store::Store;
use crate::store::group::{FOLD_LANES, Lanes};
use crate::store::in_tx;
use crate::store::job::Lease;
use crate::store::row::TaskRow;
use crate::store::task::stamped;
use crate::task::TaskRecord;

/// One fold, as [`Store::delegation_fold`] takes it, owned.
#[derive(Debug, Clone)]
pub struct FoldRequest {
    pub lease: Lease,
    pub checkpoint: Option<Delegation>,
    pub events: Vec<TaskEvent>,
    pub finish: bool,
}

type Answer = Result<Fold, StoreError>;

#[derive(Debug)]
pub(in crate::store) struct Batcher {
    lanes: Lanes<Pending>,
}

#[derive(Debug)]
struct Pending {
    fold: FoldRequest,
    reply: oneshot::Sender<Answer>,
}

impl Batcher {
    pub(in crate::store) fn start(store: Store) -> Batcher {
        Batcher {
            lanes: Lanes::start(store, "fold", FOLD_LANES, |store: Store, batch: Vec<Pending>| async move {
                store.fold_members(batch.into_iter().map(|p| (p.fold, p.reply)).collect()).await;
            }),
        }
    }

    /// Writes `fold` in the next batch; `None` when no lane runs any more
    /// (the caller writes it alone).
    pub(in crate::store) async fn fold(&self, fold: FoldRequest) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        if !self.lanes.send(Pending { fold, reply }).await {
            return None;
        }
        Some(answered(answer).await)
    }
}

/// The answer a member's writer sent, or why there is none.
async fn answered(answer: oneshot::Receiver<Answer>) -> Answer {
    answer.await.unwrap_or_else(|_| {
        Err(StoreError::Batch {
            reason: "the batch this fold was in was abandoned; whether it committed is unknown".into(),
            transient: true,
        })
    })
}

type Reply = oneshot::Sender<Answer>;

/// A member the batch writes.
struct Planned {
    member: usize,
    task: TaskRecord,
    before: i64,
    events: Vec<TaskEvent>,
    ended: bool,
}

impl Store {
    /// Writes folds of different tasks together, answering each as
    /// [`Store::delegation_fold`] would have alone (in the order given).
    /// The lanes write what they gathered the same way; this is public so
    /// that a batch's exactness can be tested member by member.
    pub async fn delegation_fold_together(&self, folds: Vec<FoldRequest>) -> Vec<Answer> {
        let (members, answers): (Vec<_>, Vec<_>) = folds
            .into_iter()
            .map(|fold| {
                let (reply, answer) = oneshot::channel();
                ((fold, reply), answer)
            })
            .unzip();
        self.fold_members(members).await;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(answered(answer).await);
        }
        out
    }

    /// Writes a batch and answers each member; a member that must be
    /// written alone (see the module's note) is answered by a task of its
    /// own, so the lane goes on to the next batch meanwhile.
    ///
    /// Folds of one task are written one after another by its lease's
    /// holder, so a batch never holds two; if one does, the first shares
    /// the batch and the other is written alone after it.
    async fn fold_members(&self, members: Vec<(FoldRequest, Reply)>) {
        let folds: Vec<&FoldRequest> = members.iter().map(|(fold, _)| fold).collect();
        let mut seen = HashSet::new();
        let (mut together, mut alone): (Vec<usize>, Vec<usize>) =
            (0..folds.len()).partition(|&i| seen.insert(folds[i].lease.task_id));
        let mut answers: Vec<Option<Answer>> = (0..folds.len()).map(|_| None).collect();
        // Even one member goes through the batch's statements (one more
        // than alone): the lane itself writes it, so what arrives meanwhile
        // gathers into the next batch, and it never waits on a row lock.
        together.sort_by_key(|&i| folds[i].lease.task_id);
        match self.fold_batch(&folds, &together).await {
            Ok(outcomes) => {
                for (member, outcome) in outcomes {
                    match outcome {
                        Some(answer) => answers[member] = Some(answer),
                        None => alone.push(member),
                    }
                }
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, members = together.len(), "a batch of folds failed; none was written");
                let reason = format!("the fold was not written: {error}");
                for member in together {
                    answers[member] = Some(Err(StoreError::Batch { reason: reason.clone(), transient: true }));
                }
            }
            Err(error) => {
                // Refused for what one member holds: nothing was
                // written, so each is written alone and only that one fails.
                tracing::debug!(%error, members = together.len(), "a batch of folds was refused; writing each alone");
                alone.extend(together);
            }
        }
        alone.sort_unstable();
        let mut alone = alone.into_iter().peekable();
        for (member, ((fold, reply), answer)) in members.into_iter().zip(answers).enumerate() {
            if alone.peek() == Some(&member) {
                alone.next();
                let store = self.clone();
                tokio::spawn(async move {
                    let answer =
                        store.fold_alone(&fold.lease, fold.checkpoint.as_ref(), &fold.events, fold.finish).await;
                    let _ = reply.send(answer);
                });
            } else if let Some(answer) = answer {
                let _ = reply.send(answer);
            }
        }
    }

    /// The batch's one transaction; `together` in task id order. Each
    /// member's answer, or `None` for one that must be written alone.
    async fn fold_batch(
        &self,
        folds: &[&FoldRequest],
        together: &[usize],
    ) -> Result<Vec<(usize, Option<Answer>)>, StoreError> {
        in_tx!(self, |tx| {
            let ids: Vec<TaskId> = together.iter().map(|&i| folds[i].lease.task_id).collect();
            let (rows, now) = tx.tasks_lock(&ids).await?;
            let mut rows: HashMap<TaskId, TaskRow> = rows.into_iter().map(|row| (TaskId(row.id), row)).collect();
            let mut leases: Vec<&Lease> = together.iter().map(|&i| &folds[i].lease).collect();
            leases.sort_by_key(|lease| lease.job_id);
            let held: HashSet<JobId> = tx.leases_confirm(&leases).await?.into_iter().collect();

            let mut outcomes = Vec::with_capacity(together.len());
            let mut planned = Vec::with_capacity(together.len());
            for &member in together {
                let fold = &folds[member];
                match plan(fold, rows.remove(&fold.lease.task_id), &held, now) {
                    Ok(Some(p)) => planned.push(Planned { member, ..p }),
                    Ok(None) => outcomes.push((member, None)),
                    Err(error) => outcomes.push((member, Some(Err(error)))),
                }
            }
            if !planned.is_empty() {
                let writes: Vec<FoldWrite<'_>> = planned
                    .iter()
                    .map(|p| {
                        let fold = &folds[p.member];
                        FoldWrite {
                            lease: &fold.lease,
                            checkpoint: fold.checkpoint.as_ref(),
                            task: &p.task,
                            before: p.before,
                            events: &p.events,
                            settle: fold.finish,
                        }
                    })
                    .collect();
                let written = tx.folds_write(&self.channels.events, &self.channels.jobs, &writes).await?;
                for (w, p) in written.iter().zip(&planned) {
                    if !p.events.is_empty() && w.task_updated != 1 {
                        return Err(StoreError::Corrupt(format!("task {} changed under its row lock", p.task.id)));
                    }
                    if w.job_held != 1 {
                        let job = folds[p.member].lease.job_id;
                        return Err(StoreError::Corrupt(format!("job {job} changed under its row lock")));
                    }
                }
            }
            outcomes.extend(
                planned
                    .into_iter()
                    .map(|p| (p.member, Some(Ok(Fold { task: p.task, ended: p.ended, requeued: false })))),
            );
            Ok(outcomes)
        })
    }
}

/// What one member writes, decided as the single fold decides it, in the
/// same order of checks: the task is there, its events apply, the lease
/// holds. `None` when it must be written alone (a row not taken, a lease
/// not confirmed, a child's fold, a settlement that may requeue).
fn plan(
    fold: &FoldRequest,
    row: Option<TaskRow>,
    held: &HashSet<JobId>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Planned>, StoreError> {
    // Not taken: held by another transaction, or gone. Alone, it waits
    // for the row, or is told the task is not found.
    let Some(row) = row else { return Ok(None) };
    let mut task = TaskRecord::try_from(row)?;
    let ended = task.state.is_terminal();
    let before = task.version;
    let events = if ended { Vec::new() } else { stamped(&fold.events, now) };
    for event in &events {
        task.apply(event).map_err(|source| StoreError::Rejected { task: task.id, source })?;
    }
    // Not confirmed: lost, or its row held by another transaction (a
    // rescue, say). Alone, it is told which.
    if !held.contains(&fold.lease.job_id) {
        return Ok(None);
    }
    let reaches_parent = task.parent_id.is_some() && !events.is_empty();
    let may_requeue = fold.finish && !task.state.is_terminal();
    if reaches_parent || may_requeue {
        return Ok(None);
    }
    Ok(Some(Planned { member: 0, task, before, events, ended }))
}
