//! Task operations: submit (idempotent), append-and-fold, cancel, reads.

use std::collections::HashMap;

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::in_tx;
use super::job::{JobKind, Lease, NewJob, insert_job};
use super::plan::TaskPlan;
use super::push::{PushConfig, upsert_push_config};
use super::row::{EventRows, Snapshot, TaskRow, task_row};
use super::{Db, Store, Tx, lite};
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::{Caller, TaskId};
use crate::state::TaskState;
use crate::task::TaskRecord;

mod answer;

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

impl Store {
    /// Creates a task, its first events and its first job in ONE transaction,
    /// or returns the task an earlier submit with the same key created. Only
    /// after COMMIT does this return, so an acknowledged task is on disk.
    pub async fn task_submit(&self, new: NewTask) -> Result<Submission, StoreError> {
        // Two loops at most: a concurrent submit of the same key that rolls
        // back after we saw its key leaves the key free for us.
        for _ in 0..3 {
            let id = TaskId::new();
            let created = in_tx!(self, |tx| {
                // The key's row says when: the database's clock, which the
                // task's creation and first status take too.
                let claimed = match tx {
                    Tx::Pg(tx) => {
                        sqlx::query_scalar!(
                            r#"INSERT INTO idempotency_keys (tenant, owner, key, task_id)
                                   VALUES ($1, $2, $3, $4)
                                   ON CONFLICT DO NOTHING
                                   RETURNING created_at"#,
                            new.caller.tenant,
                            new.caller.principal,
                            new.idempotency_key,
                            id.0,
                        )
                        .fetch_optional(&mut **tx)
                        .await?
                    }
                    Tx::Lite(tx) => claim_key_lite(tx, &new.caller, &new.idempotency_key, id).await?.then_some(tx.now),
                };
                match claimed {
                    Some(now) => Ok(Some(self.insert_task(tx, id, &new, now).await?)),
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
        let id = match &self.db {
            Db::Pg(pool) => {
                sqlx::query_scalar!(
                    "SELECT task_id FROM idempotency_keys WHERE tenant = $1 AND owner = $2 AND key = $3",
                    caller.tenant,
                    caller.principal,
                    key,
                )
                .fetch_optional(pool)
                .await?
            }
            Db::Lite(lite) => {
                sqlx::query_scalar("SELECT task_id FROM idempotency_keys WHERE tenant = ? AND owner = ? AND key = ?")
                    .bind(&caller.tenant)
                    .bind(&caller.principal)
                    .bind(key)
                    .fetch_optional(&lite.read)
                    .await?
            }
        };
        Ok(id.map(TaskId))
    }

    async fn insert_task(
        &self,
        tx: &mut Tx,
        id: TaskId,
        new: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<TaskRecord, StoreError> {
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
        // The task, its first events, its job and the workers' wake-up in
        // ONE statement (the foreign keys are checked at its end, when the
        // task row is there).
        let job = new.job.as_ref().filter(|_| !task.state.is_terminal());
        let rows = EventRows::of(1, &events);
        match tx {
            Tx::Pg(tx) => {
                sqlx::query!(
                    r#"WITH created AS (
                           INSERT INTO tasks (id, tenant, owner, context_id, parent_id, state, status, artifact_ids,
                                              metadata, trace_context, version, created_at, status_at)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                       ),
                       logged AS (
                           INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                           SELECT $1, seq, kind, payload, $12
                           FROM UNNEST($14::bigint[], $15::text[], $16::jsonb[]) AS e(seq, kind, payload)
                       ),
                       queued AS (
                           INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at)
                           SELECT $1, $17, $18, $19, $20, COALESCE($21, now()) WHERE $22
                           RETURNING id
                       )
                       SELECT CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($23, $17) END AS notified"#,
                    id.0,
                    task.tenant,
                    task.owner,
                    task.context_id,
                    task.parent_id.map(|p| p.0),
                    snapshot.state,
                    snapshot.status,
                    &snapshot.artifact_ids,
                    metadata,
                    task.trace_context,
                    task.version,
                    task.created_at,
                    task.status_at,
                    &rows.seqs,
                    &rows.kinds,
                    &rows.payloads,
                    job.map_or(JobKind::Delegate.as_str(), |j| j.kind.as_str()),
                    job.map(|j| j.payload.clone()),
                    job.map_or(0, |j| j.priority),
                    job.map_or(1, |j| j.max_attempts),
                    job.and_then(|j| j.run_at),
                    job.is_some(),
                    self.channels.jobs,
                )
                .fetch_one(&mut **tx)
                .await?;
            }
            Tx::Lite(tx) => {
                sqlx::query(
                    "INSERT INTO tasks (id, tenant, owner, context_id, parent_id, state, status, artifact_ids, \
                     metadata, trace_context, version, created_at, status_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id.0)
                .bind(&task.tenant)
                .bind(&task.owner)
                .bind(&task.context_id)
                .bind(task.parent_id.map(|p| p.0))
                .bind(snapshot.state)
                .bind(lite::json(&snapshot.status))
                .bind(serde_json::to_string(&snapshot.artifact_ids)?)
                .bind(metadata.as_ref().map(lite::json))
                .bind(task.trace_context.as_ref().map(lite::json))
                .bind(task.version)
                .bind(lite::us(task.created_at))
                .bind(lite::us(task.status_at))
                .execute(tx.conn())
                .await?;
                lite::insert_events(tx, id.0, &rows, now).await?;
                if let Some(job) = job {
                    lite::insert_job(tx, id.0, job).await?;
                    tx.notify(&self.channels.jobs, job.kind.as_str());
                }
            }
        }
        if let Some(push) = &new.push_config {
            upsert_push_config(tx, id, push).await?;
            // The webhook hears of the task from its first status on.
            super::push::enqueue_deliveries(tx, &self.channels.jobs, id, &super::push::pushable(1, &events)).await?;
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
        let snapshot = Snapshot::of(&task)?;
        let rows = EventRows::of(before + 1, events);
        let pushed = super::push::pushable(before + 1, events);
        // The log rows, the snapshot, the webhooks' outbox rows and their
        // delivery jobs, and the wake-ups, in ONE statement. The row is
        // locked, so the version guard cannot fail; it is the compare-and-set
        // that keeps this write correct even if that changes.
        let updated = match tx {
            Tx::Pg(tx) => {
                let written = sqlx::query!(
                    r#"WITH logged AS (
                   INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                   SELECT $1, seq, kind, payload, now()
                   FROM UNNEST($8::bigint[], $9::text[], $10::jsonb[]) AS e(seq, kind, payload)
               ),
               folded AS (
                   UPDATE tasks SET state = $2, status = $3, artifact_ids = $4, version = $5, status_at = $6
                   WHERE id = $1 AND version = $7
                   RETURNING id
               ),
               pushed AS (
                   INSERT INTO push_deliveries (task_id, config_id, seq)
                   SELECT $1, c.id, s.seq FROM push_configs c, UNNEST($11::bigint[]) AS s(seq)
                   WHERE c.task_id = $1
                   RETURNING config_id
               ),
               queued AS (
                   INSERT INTO jobs (task_id, kind, payload, max_attempts)
                   SELECT DISTINCT $1, 'push', jsonb_build_object('config', config_id), 1000 FROM pushed
                   ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
                   DO NOTHING
                   RETURNING id
               )
               SELECT (SELECT count(*) FROM folded) AS "updated!",
                      CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($12, 'push') END AS jobs_notified,
                      CASE WHEN true THEN pg_notify($13, $14) END AS events_notified"#,
                    task_id.0,
                    snapshot.state,
                    snapshot.status,
                    &snapshot.artifact_ids,
                    task.version,
                    task.status_at,
                    before,
                    &rows.seqs,
                    &rows.kinds,
                    &rows.payloads,
                    &pushed,
                    self.channels.jobs,
                    self.channels.events,
                    crate::notify::EventNotice::payload(&task),
                )
                .fetch_one(&mut **tx)
                .await?;
                written.updated
            }
            Tx::Lite(tx) => {
                lite::insert_events(tx, task_id.0, &rows, now).await?;
                let updated = lite::update_snapshot(tx, &task, before).await?;
                lite::enqueue_deliveries(tx, &self.channels.jobs, task_id.0, &pushed).await?;
                tx.notify(&self.channels.events, &crate::notify::EventNotice::payload(&task));
                updated as i64
            }
        };
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
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!(
                    "SELECT {} FROM tasks t WHERE t.id = ? AND t.tenant = ? AND t.owner = ?",
                    lite::TASK_COLUMNS_WITH_ARTIFACTS
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(task_id.0)
                    .bind(&caller.tenant)
                    .bind(&caller.principal)
                    .fetch_optional(&lite.read)
                    .await?;
                return lite::task_row(&row.ok_or(StoreError::TaskNotFound(task_id))?)?.try_into();
            }
        };
        let row = sqlx::query_as!(
            TaskRow,
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = tasks.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE id = $1 AND tenant = $2 AND owner = $3"#,
            task_id.0,
            caller.tenant,
            caller.principal,
        )
        .fetch_optional(pool)
        .await?;
        row.ok_or(StoreError::TaskNotFound(task_id))?.try_into()
    }

    /// Any task, whoever owns it: for workers and operators, never for callers.
    pub async fn task_load(&self, task_id: TaskId) -> Result<TaskRecord, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!("SELECT {} FROM tasks t WHERE t.id = ?", lite::TASK_COLUMNS_WITH_ARTIFACTS);
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.0).fetch_optional(&lite.read).await?;
                return lite::task_row(&row.ok_or(StoreError::TaskNotFound(task_id))?)?.try_into();
            }
        };
        let row = sqlx::query_as!(
            TaskRow,
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = tasks.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE id = $1"#,
            task_id.0,
        )
        .fetch_optional(pool)
        .await?;
        row.ok_or(StoreError::TaskNotFound(task_id))?.try_into()
    }

    /// A task and the last `history` messages of its conversation (oldest
    /// first), in one round trip.
    pub async fn task_load_with_history(
        &self,
        task_id: TaskId,
        history: i64,
    ) -> Result<(TaskRecord, Vec<Message>), StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(_) => {
                let task = self.task_load(task_id).await?;
                return Ok((task, self.task_history(task_id, history).await?));
            }
        };
        let r = sqlx::query!(
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = t.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at,
                      (SELECT coalesce(jsonb_agg(payload ORDER BY seq), '[]'::jsonb) FROM (
                           SELECT seq, payload FROM task_events
                           WHERE task_id = t.id AND kind = 'message' ORDER BY seq DESC LIMIT $2
                       ) recent) AS "history!"
               FROM tasks t WHERE id = $1"#,
            task_id.0,
            history,
        )
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::TaskNotFound(task_id))?;
        let task = TaskRecord::try_from(task_row!(r))?;
        Ok((task, serde_json::from_value(r.history)?))
    }

    /// A task's events after `after_seq`, in log order, at most `limit`.
    pub async fn task_events(
        &self,
        task_id: TaskId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let rows = sqlx::query(
                    "SELECT seq, kind, payload, created_at FROM task_events \
                     WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(task_id.0)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&lite.read)
                .await?;
                return rows.iter().map(|r| lite::stored_event(task_id, r)).collect();
            }
        };
        let rows = sqlx::query!(
            r#"SELECT seq, kind, payload, created_at FROM task_events
               WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
            task_id.0,
            after_seq,
            limit,
        )
        .fetch_all(pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredEvent {
                    task_id,
                    seq: r.seq,
                    event: TaskEvent::from_row(&r.kind, r.payload)?,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    /// The last `limit` messages of a task's conversation, oldest first.
    pub async fn task_history(&self, task_id: TaskId, limit: i64) -> Result<Vec<Message>, StoreError> {
        let payloads = match &self.db {
            Db::Pg(pool) => {
                sqlx::query_scalar!(
                    r#"SELECT payload AS "payload!" FROM (
                       SELECT seq, payload FROM task_events
                       WHERE task_id = $1 AND kind = 'message' ORDER BY seq DESC LIMIT $2
                   ) recent ORDER BY seq"#,
                    task_id.0,
                    limit,
                )
                .fetch_all(pool)
                .await?
            }
            Db::Lite(lite) => {
                let texts: Vec<String> = sqlx::query_scalar(
                    "SELECT payload FROM (SELECT seq, payload FROM task_events \
                     WHERE task_id = ? AND kind = 'message' ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                )
                .bind(task_id.0)
                .bind(limit)
                .fetch_all(&lite.read)
                .await?;
                texts.iter().map(|t| lite::parse(t)).collect::<Result<_, _>>()?
            }
        };
        payloads.into_iter().map(|p| serde_json::from_value(p).map_err(StoreError::from)).collect()
    }

    /// The first client message of a task after sequence number `after`,
    /// with its own sequence number: what a delegation forwards next.
    pub async fn task_message_after(&self, task_id: TaskId, after: i64) -> Result<Option<(i64, Message)>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT seq, payload FROM task_events WHERE task_id = ? AND kind = 'message' AND seq > ? \
                     AND json_extract(payload, '$.role') = 'ROLE_USER' ORDER BY seq LIMIT 1",
                )
                .bind(task_id.0)
                .bind(after)
                .fetch_optional(&lite.read)
                .await?;
                return row.map(|(seq, p)| Ok((seq, serde_json::from_str(&p)?))).transpose();
            }
        };
        let row = sqlx::query!(
            r#"SELECT seq, payload FROM task_events
               WHERE task_id = $1 AND kind = 'message' AND seq > $2 AND payload->>'role' = 'ROLE_USER'
               ORDER BY seq LIMIT 1"#,
            task_id.0,
            after,
        )
        .fetch_optional(pool)
        .await?;
        row.map(|r| Ok((r.seq, serde_json::from_value(r.payload)?))).transpose()
    }
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
    let tx = match tx {
        Tx::Pg(tx) => tx,
        Tx::Lite(tx) => return lite::lock_task(tx, task_id.0).await,
    };
    let row = sqlx::query!(
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                  metadata, trace_context, version, created_at, status_at, now() AS "now!"
           FROM tasks WHERE id = $1 FOR UPDATE"#,
        task_id.0,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| {
        let task = task_row!(r);
        (task, r.now)
    }))
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

/// Claims an idempotency key for `task` on the embedded store; false when
/// it was taken before.
async fn claim_key_lite(tx: &mut lite::LiteTx, caller: &Caller, key: &str, task: TaskId) -> Result<bool, StoreError> {
    let now = lite::us(tx.now);
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (tenant, owner, key, task_id, created_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&caller.tenant)
    .bind(&caller.principal)
    .bind(key)
    .bind(task.0)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(claimed.rows_affected() == 1)
}
