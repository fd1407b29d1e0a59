//! Task operations: submit (idempotent), append-and-fold, cancel, reads.

use std::collections::HashMap;

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::job::{JobKind, Lease, NewJob, insert_job};
use super::push_config::PushConfig;
use super::row::{EventRows, KeyClaim, NewTaskRows, Snapshot, TaskRow};
use super::{Store, Tx};
use super::{client_read, in_tx};
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::{Caller, TaskId};
use crate::plan::TaskPlan;
use crate::state::TaskState;
use crate::task::TaskRecord;

mod answer;
pub(super) mod batch;

/// A task to create, with the message that asks for it.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub caller: Caller,
    /// The client's context, or `None` for a fresh one.
    pub context_id: Option<String>,
    /// Deduplicates retried submits per caller: the message's `messageId`
    /// or an `Idempotency-Key` header.
    pub idempotency_key: String,
    pub message: Message,
    pub metadata: Option<HashMap<String, Value>>,
    pub trace_context: Option<Value>,
    pub parent_id: Option<TaskId>,
    /// The first job, written in the same transaction (none for a task
    /// rejected at creation).
    pub job: Option<NewJob>,
    /// Reject the task at creation with this reason (no route, say).
    pub reject_reason: Option<String>,
    /// A webhook to register with the task, in the same transaction
    /// (its `task_id` is filled in).
    pub push_config: Option<PushConfig>,
    /// When set, a `deadline` job fires then and fails the task if it has
    /// not ended (a durable timer: it survives every restart).
    pub deadline: Option<DateTime<Utc>>,
    /// A fan-out or pipeline to run instead of one delegation: its first
    /// children are created in the same transaction as the task.
    pub plan: Option<TaskPlan>,
}

impl NewTask {
    /// A task for `message` from `caller`, keyed by the message's id, in a
    /// fresh context, with nothing else: no job, no plan, no deadline.
    pub fn new(caller: Caller, message: Message) -> Self {
        NewTask {
            caller,
            context_id: None,
            idempotency_key: message.message_id.clone(),
            message,
            metadata: None,
            trace_context: None,
            parent_id: None,
            job: None,
            reject_reason: None,
            push_config: None,
            deadline: None,
            plan: None,
        }
    }
}

/// A client's message continuing an existing task (the answer to an
/// `INPUT_REQUIRED` or `AUTH_REQUIRED` question).
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub caller: Caller,
    pub task_id: TaskId,
    /// The context the client named, if any; it must be the task's own.
    pub context_id: Option<String>,
    pub idempotency_key: String,
    pub message: Message,
    /// The job that carries the answer onward.
    pub job: NewJob,
    pub push_config: Option<PushConfig>,
}

/// What a submit produced.
#[derive(Debug, Clone)]
pub struct Submission {
    pub task: TaskRecord,
    /// False when the idempotency key was seen before and `task` is the
    /// task the earlier submit created.
    pub created: bool,
    /// The task's version once the client's message was logged: a blocking
    /// wait looks for changes after it. (Below `task.version` when the same
    /// transaction went on, as an answer to a plan's question does when it
    /// surfaces the next child's question.)
    pub baseline: i64,
}

super::seam::statements! {
    room task;
    /// Claims callers' idempotency keys for new tasks, in the order given;
    /// for each key that was free, its task and the database's time (which
    /// the task's creation then takes).
    tx fn keys_claim(claims: &[KeyClaim]) -> Vec<(TaskId, DateTime<Utc>)>;
    /// The task a caller's idempotency key went to.
    db fn key_owner(caller: &Caller, key: &str) -> Option<TaskId>;
    /// New tasks with their first log rows and their first jobs (waking
    /// the workers for them), in one statement however many.
    tx fn tasks_insert(tasks: &[NewTaskRows], jobs_channel: &str) -> ();
    /// A task's row, locked until COMMIT, and the database's time.
    tx fn task_lock(task_id: TaskId) -> Option<(TaskRow, DateTime<Utc>)>;
    /// [`Tx::task_lock`] of many, those no other transaction holds (the
    /// others are skipped, never waited for); and the database's time.
    tx fn tasks_lock(task_ids: &[TaskId]) -> (Vec<TaskRow>, DateTime<Utc>);
    /// A fold of a locked task: log rows, snapshot over version `before`,
    /// outbox rows for the `pushed` seqs, the wake-ups; rows updated.
    tx fn task_fold_write(
        task: &TaskRecord,
        before: i64,
        rows: &EventRows,
        pushed: &[i64],
        jobs_channel: &str,
        events_channel: &str,
    ) -> i64;
    /// The caller's task, with its artifacts.
    db fn task_get(caller: &Caller, task_id: TaskId) -> Option<TaskRow>;
    /// Any task, with its artifacts.
    db fn task_load(task_id: TaskId) -> Option<TaskRow>;
    /// A task and its last `history` message payloads, oldest first.
    db fn task_load_with_history(task_id: TaskId, history: i64) -> Option<(TaskRow, Vec<Value>)>;
    db fn task_events(task_id: TaskId, after_seq: i64, limit: i64) -> Vec<StoredEvent>;
    /// The last `limit` message payloads, oldest first.
    db fn task_history(task_id: TaskId, limit: i64) -> Vec<Value>;
    db fn task_message_after(task_id: TaskId, after: i64) -> Option<(i64, Message)>;
    /// For a task that waits for input: the child its question names (as
    /// written), and that child's id if it is in fact a child of the task.
    db fn task_question(task_id: TaskId) -> Option<(Option<String>, Option<Uuid>)>;
    /// A task's ending's writes: its waiting jobs (not its webhooks')
    /// retired; a cancel queued for its remote task and each open child;
    /// how many jobs were queued.
    tx fn task_retire(task_id: TaskId, children_reason: &str) -> i64;
}

impl Store {
    /// Creates a task, its first events and its first job in ONE transaction,
    /// or returns the task an earlier submit with the same key created. Only
    /// after COMMIT does this return, so an acknowledged task is on disk.
    pub async fn task_submit(&self, new: NewTask) -> Result<Submission, StoreError> {
        // A plain new task on PostgreSQL joins the concurrent others in one
        // transaction (`batch.rs`); a key already taken is looked up below.
        if new.push_config.is_none()
            && new.deadline.is_none()
            && new.plan.is_none()
            && let Some(batcher) = self.batcher()
            && let Some(created) = batcher.submit(new.clone()).await
            && let Some(task) = created?
        {
            return Ok(Submission { baseline: task.version, task, created: true });
        }
        // Two loops at most: a concurrent submit of the same key that rolls
        // back after we saw its key leaves the key free for us.
        for _ in 0..3 {
            let id = TaskId::new();
            let created = in_tx!(self, |tx| {
                // The key's row says when: the database's clock, which the
                // task's creation and first status take too.
                let claim = KeyClaim::of(&new.caller, &new.idempotency_key, id);
                match tx.keys_claim(std::slice::from_ref(&claim)).await?.first() {
                    Some((_, now)) => Ok(Some(self.insert_task(tx, id, &new, *now).await?)),
                    None => Ok(None),
                }
            })?;
            if let Some(task) = created {
                return Ok(Submission { baseline: task.version, task, created: true });
            }
            if let Some(task_id) = self.key_owner(&new.caller, &new.idempotency_key).await? {
                let task = self.task_load(task_id).await?;
                return Ok(Submission { baseline: task.version, task, created: false });
            }
        }
        Err(StoreError::Corrupt(format!("idempotency key {:?} kept changing hands", new.idempotency_key)))
    }

    /// The task an idempotency key went to, if it was used.
    async fn key_owner(&self, caller: &Caller, key: &str) -> Result<Option<TaskId>, StoreError> {
        self.db.key_owner(caller, key).await
    }

    async fn insert_task(
        &self,
        tx: &mut Tx,
        id: TaskId,
        new: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<TaskRecord, StoreError> {
        let (born, events, message) = Store::born(id, new, now)?;
        let task = born.task.clone();
        tx.tasks_insert(std::slice::from_ref(&born), &self.channels.jobs).await?;
        if let Some(push) = &new.push_config {
            tx.config_upsert(id, push).await?;
            // The webhook hears of the task from its first status on.
            super::outbox::enqueue_deliveries(tx, &self.channels.jobs, id, &super::outbox::pushable(1, &events))
                .await?;
        }
        if let (Some(at), false) = (new.deadline, task.state.is_terminal()) {
            let timer = NewJob { run_at: Some(at), ..NewJob::new(JobKind::Deadline, 5) };
            insert_job(tx, id, &timer).await?;
        }
        if let (Some(plan), false) = (&new.plan, task.state.is_terminal()) {
            self.plan_start(tx, &task, plan, &message, now).await?;
        }
        // No NOTIFY on the events channel: nobody can be streaming a task
        // whose id the caller has not been told yet.
        Ok(task)
    }

    /// A new task's rows at the database's time `now`, its first events,
    /// and its message as stored (naming the task and its context).
    pub(super) fn born(
        id: TaskId,
        new: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<(NewTaskRows, Vec<TaskEvent>, Message), StoreError> {
        let context_id = new.context_id.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
        let mut message = new.message.clone();
        message.task_id = Some(id.to_string());
        message.context_id = Some(context_id.clone());
        let mut events = vec![TaskEvent::status(TaskState::Submitted, None), TaskEvent::Message(message.clone())];
        if let Some(reason) = &new.reject_reason {
            events.push(TaskEvent::status_with_text(TaskState::Rejected, reason.clone()));
        } else if let Some(plan) = &new.plan {
            events.push(TaskEvent::status_with_text(TaskState::Working, format!("running plan {}", plan.node.label())));
        }

        let events = stamped(&events, now);
        let mut task = TaskRecord::genesis(id, &new.caller, context_id, now);
        task.parent_id = new.parent_id;
        task.metadata = new.metadata.clone();
        task.trace_context = new.trace_context.clone();
        for event in &events {
            task.apply(event).map_err(|source| StoreError::Rejected { task: id, source })?;
        }

        let snapshot = Snapshot::of(&task)?;
        let metadata = task.metadata.as_ref().map(serde_json::to_value).transpose()?;
        // The task, its first events, its job and the workers' wake-up.
        let job = new.job.clone().filter(|_| !task.state.is_terminal());
        let rows = EventRows::of(1, &events);
        Ok((NewTaskRows { task, snapshot, metadata, rows, job }, events, message))
    }

    /// Appends events to a task's log and folds them into its snapshot, in
    /// one transaction. With `fence`, the write happens only while that lease
    /// is still held (`LeaseLost` otherwise): a stale worker changes nothing.
    pub async fn task_append(
        &self,
        task_id: TaskId,
        events: &[TaskEvent],
        fence: Option<&Lease>,
    ) -> Result<TaskRecord, StoreError> {
        in_tx!(self, |tx| {
            let task = self.append_in_tx(tx, task_id, events).await?;
            if let Some(lease) = fence {
                lease.confirm(tx).await?;
            }
            Ok(task)
        })
    }

    /// The append itself; the caller owns the transaction (and any fencing).
    pub(super) async fn append_in_tx(
        &self,
        tx: &mut Tx,
        task_id: TaskId,
        events: &[TaskEvent],
    ) -> Result<TaskRecord, StoreError> {
        let (row, now) = lock_task(tx, task_id).await?.ok_or(StoreError::TaskNotFound(task_id))?;
        self.fold_locked(tx, TaskRecord::try_from(row)?, now, events).await
    }

    /// Folds `events` into a task whose row this transaction has locked,
    /// stamped at `now` (the database's time): log rows, snapshot, NOTIFY.
    pub(super) async fn fold_locked(
        &self,
        tx: &mut Tx,
        mut task: TaskRecord,
        now: DateTime<Utc>,
        events: &[TaskEvent],
    ) -> Result<TaskRecord, StoreError> {
        let task_id = task.id;
        let before = task.version;
        let events = &stamped(events, now);
        for event in events {
            task.apply(event).map_err(|source| StoreError::Rejected { task: task_id, source })?;
        }
        if events.is_empty() {
            return Ok(task);
        }
        let rows = EventRows::of(before + 1, events);
        let pushed = super::outbox::pushable(before + 1, events);
        // The log rows, the snapshot, the webhooks' outbox rows and their
        // delivery jobs, and the wake-ups. The row is locked, so the version
        // guard cannot fail; it is the compare-and-set that keeps this write
        // correct even if that changes.
        let updated =
            tx.task_fold_write(&task, before, &rows, &pushed, &self.channels.jobs, &self.channels.events).await?;
        if updated != 1 {
            return Err(StoreError::Corrupt(format!("task {task_id} changed under its row lock")));
        }
        if task.parent_id.is_some() {
            self.propagate(tx, &task, events).await?;
        }
        Ok(task)
    }

    /// Cancels a caller's task. Canceling a canceled task returns it
    /// unchanged (cancel is idempotent); any other terminal state refuses.
    /// Jobs still waiting to run for the task are retired with it.
    pub async fn task_cancel(
        &self,
        caller: &Caller,
        task_id: TaskId,
        reason: Option<Message>,
    ) -> Result<TaskRecord, StoreError> {
        in_tx!(self, |tx| {
            let row = lock_task(tx, task_id).await?.map(|(row, _)| row).filter(|row| visible_to(row, caller));
            let task = TaskRecord::try_from(row.ok_or(StoreError::TaskNotFound(task_id))?)?;
            if task.state == TaskState::Canceled {
                return Ok(task);
            }
            self.end_in_tx(tx, task_id, TaskEvent::status(TaskState::Canceled, reason)).await
        })
    }

    /// Fails a task whose deadline passed (unless it already ended), and
    /// cancels its remote task. `None` when there was nothing to fail.
    pub async fn task_expire(&self, task_id: TaskId, reason: &str) -> Result<Option<TaskRecord>, StoreError> {
        in_tx!(self, |tx| {
            let (row, _) = lock_task(tx, task_id).await?.ok_or(StoreError::TaskNotFound(task_id))?;
            let task = TaskRecord::try_from(row)?;
            if task.state.is_terminal() {
                return Ok(None);
            }
            let event = TaskEvent::status_with_text(TaskState::Failed, reason);
            Ok(Some(self.end_in_tx(tx, task_id, event).await?))
        })
    }

    /// Ends a locked task with a terminal `event`, retires its waiting jobs,
    /// stops its open children, and has a worker cancel its remote task
    /// (the api makes no outbound calls). If the remote task is not known
    /// yet, the worker that learns it finds this task ended when it
    /// checkpoints the id (under this same row lock) and cancels it there.
    async fn end_in_tx(&self, tx: &mut Tx, task_id: TaskId, event: TaskEvent) -> Result<TaskRecord, StoreError> {
        let task = self.append_in_tx(tx, task_id, &[event]).await?;
        let reason = match task.state {
            TaskState::Canceled => format!("the parent task {task_id} was canceled"),
            state => format!("the parent task {task_id} {state}"),
        };
        self.retire(tx, task_id, &reason).await?;
        Ok(task)
    }

    /// Everything that follows a task's end in its own transaction: its
    /// waiting jobs retired (a deadline timer), its open children told to
    /// stop, and its remote task, if one is known, canceled. Webhook
    /// deliveries are not retired: the ending itself is one of them, queued
    /// by the same transaction, and every earlier one still owes its receiver.
    pub(super) async fn retire(&self, tx: &mut Tx, task_id: TaskId, children_reason: &str) -> Result<(), StoreError> {
        let queued = tx.task_retire(task_id, children_reason).await?;
        if queued > 0 {
            tx.notify(&self.channels.jobs, JobKind::CancelChild.as_str()).await?;
        }
        Ok(())
    }

    /// Ends a child its parent no longer needs (a `cancel_child` job), and
    /// settles the job, in one transaction. A child that already ended is
    /// left as it is.
    pub async fn task_cancel_child(&self, lease: &Lease, reason: &str) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let (row, _) = lock_task(tx, lease.task_id).await?.ok_or(StoreError::TaskNotFound(lease.task_id))?;
            let task = TaskRecord::try_from(row)?;
            if !task.state.is_terminal() {
                self.end_in_tx(tx, task.id, TaskEvent::status_with_text(TaskState::Canceled, reason)).await?;
            }
            super::job::mark_done_in(tx, lease).await
        })
    }

    /// A caller's task; invisible tasks are reported as not found.
    pub async fn task_get(&self, caller: &Caller, task_id: TaskId) -> Result<TaskRecord, StoreError> {
        let row = client_read!(self, |db| db.task_get(caller, task_id).await)?;
        row.ok_or(StoreError::TaskNotFound(task_id))?.try_into()
    }

    /// Any task, for an operator's page: as [`Store::task_load`], read
    /// where a client's read is (the replica when it is current).
    pub async fn task_view(&self, task_id: TaskId) -> Result<TaskRecord, StoreError> {
        let row = client_read!(self, |db| db.task_load(task_id).await)?;
        row.ok_or(StoreError::TaskNotFound(task_id))?.try_into()
    }

    /// Any task, whoever owns it: for workers and operators, never for callers.
    pub async fn task_load(&self, task_id: TaskId) -> Result<TaskRecord, StoreError> {
        self.db.task_load(task_id).await?.ok_or(StoreError::TaskNotFound(task_id))?.try_into()
    }

    /// A task and the last `history` messages of its conversation (oldest
    /// first), in one round trip where the dialect can.
    pub async fn task_load_with_history(
        &self,
        task_id: TaskId,
        history: i64,
    ) -> Result<(TaskRecord, Vec<Message>), StoreError> {
        let (row, messages) =
            self.db.task_load_with_history(task_id, history).await?.ok_or(StoreError::TaskNotFound(task_id))?;
        Ok((TaskRecord::try_from(row)?, messages_of(messages)?))
    }

    /// A task's events after `after_seq`, in log order, at most `limit`
    /// (a stream's replay and live reads: a client's read).
    pub async fn task_events(
        &self,
        task_id: TaskId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        client_read!(self, |db| db.task_events(task_id, after_seq, limit).await)
    }

    /// The last `limit` messages of a task's conversation, oldest first.
    pub async fn task_history(&self, task_id: TaskId, limit: i64) -> Result<Vec<Message>, StoreError> {
        messages_of(client_read!(self, |db| db.task_history(task_id, limit).await)?)
    }

    /// The first client message of a task after sequence number `after`,
    /// with its own sequence number: what a delegation forwards next.
    pub async fn task_message_after(&self, task_id: TaskId, after: i64) -> Result<Option<(i64, Message)>, StoreError> {
        self.db.task_message_after(task_id, after).await
    }
}

/// Logged message payloads as messages.
fn messages_of(payloads: Vec<Value>) -> Result<Vec<Message>, StoreError> {
    payloads.into_iter().map(|p| serde_json::from_value(p).map_err(StoreError::from)).collect()
}

/// Locks a task row for the rest of the transaction. Fenced writers lock the
/// task first and confirm their job last; the rare path that goes the other
/// way (dead-lettering an expired lease) can at worst deadlock with a stale
/// writer, which PostgreSQL breaks by aborting one (a transient error that
/// the caller retries), never by letting both write.
///
/// Also returns the database's clock (the transaction's start): the one
/// clock every stored timestamp comes from.
pub(super) async fn lock_task(tx: &mut Tx, task_id: TaskId) -> Result<Option<(TaskRow, DateTime<Utc>)>, StoreError> {
    tx.task_lock(task_id).await
}

/// The events with every status stamped at `at` (the database's time),
/// whatever host built them.
pub(super) fn stamped(events: &[TaskEvent], at: DateTime<Utc>) -> Vec<TaskEvent> {
    events
        .iter()
        .map(|event| match event {
            TaskEvent::Status(status) => TaskEvent::Status(a2a::TaskStatus { timestamp: Some(at), ..status.clone() }),
            other => other.clone(),
        })
        .collect()
}

fn visible_to(row: &TaskRow, caller: &Caller) -> bool {
    row.tenant == caller.tenant && row.owner == caller.principal
}
