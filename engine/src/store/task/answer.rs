//! Answers: a client's message continuing a task that asked for input,
//! carried down a plan's asking line to the task whose agent asked.

use uuid::Uuid;

use super::super::job::insert_job;
use super::super::row::KeyClaim;
use super::super::{Store, in_tx};
use super::{FollowUp, Submission, lock_task, visible_to};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::state::TaskState;
use crate::task::TaskRecord;

impl Store {
    /// Adds a client's message to a task that waits for input, and enqueues
    /// the job that carries it onward, in one transaction. Idempotent on the
    /// key like a submit: a retried follow-up returns the task unchanged.
    ///
    /// A plan task asks on behalf of one of its children (which may itself
    /// be a plan asking for one of its own): the answer is logged on every
    /// task down that line and carried to the agent of the one at its end by
    /// that task's delegation. Rows are locked from the asking descendant up
    /// to the task (the order every child-to-parent write takes), so the line
    /// is read first without locks, and checked again under them.
    pub async fn task_continue(&self, follow_up: FollowUp) -> Result<Submission, StoreError> {
        for _ in 0..3 {
            let line = self.asking_line(follow_up.task_id).await?;
            match self.continue_once(&follow_up, &line).await? {
                Continued::Done(submission) => return Ok(*submission),
                Continued::AskerChanged => continue,
            }
        }
        Err(StoreError::Corrupt(format!(
            "task {}: the question kept changing while it was answered",
            follow_up.task_id
        )))
    }

    /// Who is asking, as read without locks: for the task and each asking
    /// descendant, the child its question names (if any), and the line of
    /// descendants whose names are genuine children, top first.
    async fn asking_line(&self, task_id: TaskId) -> Result<AskingLine, StoreError> {
        let mut line = AskingLine { named: Vec::new(), chain: Vec::new() };
        let mut at = task_id;
        // Bounded by the plan depth limit in practice; by this in any case.
        for _ in 0..16 {
            let row = self.db.task_question(at).await?;
            let Some((named, child)) = row else {
                line.named.push(None);
                break;
            };
            line.named.push(named.and_then(|n| Uuid::parse_str(&n).ok()).map(TaskId));
            match child {
                Some(child) => {
                    at = TaskId(child);
                    line.chain.push(at);
                }
                None => break,
            }
        }
        Ok(line)
    }

    async fn continue_once(&self, follow_up: &FollowUp, line: &AskingLine) -> Result<Continued, StoreError> {
        let FollowUp { caller, task_id, context_id, idempotency_key, message, job, push_config } = follow_up;
        let task_id = *task_id;
        let continued = in_tx!(self, |tx| {
            // The asking descendants first, deepest first, then the task.
            let mut chain = Vec::with_capacity(line.chain.len());
            for id in line.chain.iter().rev() {
                let (row, _) = lock_task(tx, *id).await?.ok_or(StoreError::TaskNotFound(*id))?;
                chain.push(TaskRecord::try_from(row)?);
            }
            chain.reverse();
            let locked = lock_task(tx, task_id).await?.filter(|(row, _)| visible_to(row, caller));
            let (row, now) = locked.ok_or(StoreError::TaskNotFound(task_id))?;
            let task = TaskRecord::try_from(row)?;
            // Every question on the line still names what it named before
            // the locks (a name that is no child of its task, an agent's own
            // metadata, is only compared, never followed).
            let now_named = std::iter::once(&task).chain(&chain).map(crate::task::asking_child);
            if !now_named.eq(line.named.iter().copied()) {
                return Ok(Some(Continued::AskerChanged));
            }
            // The key is claimed only once the answer is known to go where
            // it was read to go: a try that finds the asker changed takes
            // nothing with it, so the retry can still deliver the answer.
            // (Claimed before the task's state is judged: a resent answer
            // is a duplicate, not a message to a task that no longer asks.)
            let claim = KeyClaim::of(caller, idempotency_key, task_id);
            let claimed = !tx.keys_claim(std::slice::from_ref(&claim)).await?.is_empty();
            if !claimed {
                return Ok(None);
            }
            if let Some(given) = context_id.clone().filter(|c| *c != task.context_id) {
                return Err(StoreError::ContextMismatch { task: task_id, actual: task.context_id, given });
            }
            if task.state.is_terminal() {
                return Err(StoreError::Rejected {
                    task: task_id,
                    source: crate::task::FoldError::Terminal(task.state),
                });
            }
            if !task.state.is_interrupted() {
                return Err(StoreError::NotInterrupted { task: task_id, state: task.state });
            }
            let mut message = message.clone();
            message.task_id = Some(task_id.to_string());
            message.context_id = Some(task.context_id.clone());
            let (task, baseline, carrier) = match chain.last() {
                Some(leaf) => {
                    let carrier = leaf.id;
                    for member in &chain {
                        let mut forwarded = message.clone();
                        forwarded.task_id = Some(member.id.to_string());
                        forwarded.context_id = Some(member.context_id.clone());
                        self.append_in_tx(tx, member.id, &[TaskEvent::Message(forwarded)]).await?;
                    }
                    let place = crate::plan::ChildPlace::of(&chain[0]).map(|p| p.describe()).unwrap_or_default();
                    let baseline = task.version + 1;
                    let mut events = vec![
                        TaskEvent::Message(message),
                        TaskEvent::status_with_text(TaskState::Working, format!("answer passed to child {place}")),
                    ];
                    // Another child may be waiting with a question of its own.
                    if let Some(next) = self.next_question(tx, task_id).await? {
                        events.push(next);
                    }
                    let task = self.fold_locked(tx, task, now, &events).await?;
                    (task, baseline, carrier)
                }
                None => {
                    let task = self.fold_locked(tx, task, now, &[TaskEvent::Message(message)]).await?;
                    let baseline = task.version;
                    (task, baseline, task_id)
                }
            };
            // A task whose delegation is still live gets no second one: that
            // job forwards this message after the ones before it.
            if insert_job(tx, carrier, job).await?.is_some() {
                tx.notify(&self.channels.jobs, job.kind.as_str()).await?;
            }
            if let Some(push) = push_config {
                tx.config_upsert(task_id, push).await?;
            }
            Ok(Some(Continued::Done(Box::new(Submission { task, created: true, baseline }))))
        })?;
        if let Some(continued) = continued {
            return Ok(continued);
        }
        // The key was used before: answer with the task it went to.
        let seen = self.key_owner(caller, idempotency_key).await?;
        let seen = seen.ok_or_else(|| StoreError::Corrupt(format!("idempotency key {idempotency_key:?} vanished")))?;
        let task = self.task_get(caller, seen).await?;
        Ok(Continued::Done(Box::new(Submission { baseline: task.version, task, created: false })))
    }
}

/// The asking line of a task, read before its rows are locked.
struct AskingLine {
    /// For the task and each descendant in `chain`, the child its question
    /// names, if any (a name that is not its child included).
    named: Vec<Option<TaskId>>,
    /// The asking descendants, the task's child first, the one whose agent
    /// asked last.
    chain: Vec<TaskId>,
}

/// How one try at a follow-up ended.
enum Continued {
    Done(Box<Submission>),
    /// A plan task's question moved to another child between the read and
    /// the locks: try again.
    AskerChanged,
}
