//! Plans in the store: the named plans, the child tasks a plan task creates,
//! and what a child's change does to its parent.
//!
//! Locks are always taken child first, parent second: a child's fold locks
//! its own row, then its parent's, and decides there (artifacts mirrored,
//! a question surfaced, the join judged, a pipeline's next step created) in
//! the same transaction as the child's own write. Nothing ever locks a child
//! while holding its parent: a parent that ends reaches its open children
//! through `cancel_child` jobs, and an answer to a parent's question locks
//! the asking child before the parent. So two writers never wait on each
//! other in a cycle, and the parent's terminal state is written exactly once,
//! by the transaction of the child whose change decided it (a parent that
//! has ended takes no further events).

use std::future::Future;
use std::pin::Pin;

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::job::JobKind;
use super::row::TaskRow;
use super::task::{lock_task, stamped};
use super::{Db, Store, Tx, lite, notify};
use crate::error::StoreError;
use crate::event::{ArtifactUpdate, TaskEvent};
use crate::id::TaskId;
use crate::plan::{Join, Node, PlanSpec, Tally, Verdict, judge};
use crate::state::TaskState;
use crate::task::{TaskRecord, fold_artifacts};

mod children;

use children::{ChildRows, child_message, mirror, question, retire_lite, status_text, step_input};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A plan task's resolved plan and the attempts its children's delegations get.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub node: Node,
    pub max_attempts: i32,
}

/// Where a child sits in its parent's plan, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlace {
    pub parent: TaskId,
    pub position: i32,
    /// The agent it delegates to, or the plan it runs.
    pub label: String,
}

impl ChildPlace {
    /// The place recorded in a child's metadata (`switchyard.parentTaskId`,
    /// `position`, `agent`); `None` for a task that is nobody's child.
    pub fn of(task: &TaskRecord) -> Option<ChildPlace> {
        let hint = task.metadata.as_ref()?.get("switchyard")?;
        Some(ChildPlace {
            parent: task.parent_id?,
            position: hint.get("position")?.as_i64().and_then(|p| i32::try_from(p).ok())?,
            label: hint.get("agent").and_then(Value::as_str).unwrap_or("?").to_owned(),
        })
    }

    /// How messages to clients name the child: `#1 (agent b)`.
    pub fn describe(&self) -> String {
        format!("#{} ({})", self.position, self.label)
    }

    fn tag(&self, child: TaskId) -> Value {
        json!({ "childTaskId": child.to_string(), "agent": self.label, "position": self.position })
    }
}

/// The child a parent's current question came from, as its status says.
pub fn asking_child(task: &TaskRecord) -> Option<TaskId> {
    if !task.state.is_interrupted() {
        return None;
    }
    let meta = task.status.message.as_ref()?.metadata.as_ref()?;
    let id = meta.get("switchyard")?.get("childTaskId")?.as_str()?;
    Uuid::parse_str(id).ok().map(TaskId)
}

/// A child to create.
struct NewChild {
    position: i32,
    node: Node,
    message: Message,
}

impl Store {
    /// Every named plan, by name.
    pub async fn plans_list(&self) -> Result<Vec<PlanSpec>, StoreError> {
        let rows = match &self.db {
            Db::Pg(pool) => sqlx::query_scalar!("SELECT spec FROM plans ORDER BY name").fetch_all(pool).await?,
            Db::Lite(lite) => {
                let texts: Vec<String> =
                    sqlx::query_scalar("SELECT spec FROM plans ORDER BY name").fetch_all(&lite.read).await?;
                texts.iter().map(|t| lite::parse(t)).collect::<Result<_, _>>()?
            }
        };
        rows.into_iter().map(|spec| serde_json::from_value(spec).map_err(StoreError::from)).collect()
    }

    /// Adds a named plan, or replaces the one with its name. Tasks already
    /// running keep the plan they were resolved with.
    pub async fn plan_put(&self, spec: &PlanSpec) -> Result<(), StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                lite.write(async |c, now| {
                    Ok(sqlx::query(
                        "INSERT INTO plans (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                    )
                    .bind(&spec.name)
                    .bind(serde_json::to_string(spec)?)
                    .bind(lite::us(now))
                    .bind(lite::us(now))
                    .execute(c)
                    .await?)
                })
                .await?;
                return Ok(());
            }
        };
        sqlx::query!(
            r#"INSERT INTO plans (name, spec) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()"#,
            spec.name,
            serde_json::to_value(spec)?,
        )
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Removes a named plan; false if there was none.
    pub async fn plan_delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = match &self.db {
            Db::Pg(pool) => {
                sqlx::query!("DELETE FROM plans WHERE name = $1", name).execute(pool).await?.rows_affected()
            }
            Db::Lite(lite) => lite
                .write(async |c, _now| {
                    Ok(sqlx::query("DELETE FROM plans WHERE name = ?").bind(name).execute(c).await?)
                })
                .await?
                .rows_affected(),
        };
        Ok(deleted > 0)
    }

    /// Starts a plan on a task this transaction just created (or whose row
    /// it holds): records the plan, and creates the children that start now
    /// (every fan-out member; a pipeline's first step), recursively for
    /// children that are plans themselves.
    pub(super) fn plan_start<'a>(
        &'a self,
        tx: &'a mut Tx,
        task: &'a TaskRecord,
        plan: &'a TaskPlan,
        request: &'a Message,
        now: DateTime<Utc>,
    ) -> Boxed<'a, ()> {
        Box::pin(async move {
            match tx {
                Tx::Pg(tx) => {
                    sqlx::query!(
                        "INSERT INTO task_plans (task_id, plan, max_attempts) VALUES ($1, $2, $3)",
                        task.id.0,
                        serde_json::to_value(&plan.node)?,
                        plan.max_attempts,
                    )
                    .execute(&mut **tx)
                    .await?;
                }
                Tx::Lite(tx) => {
                    sqlx::query("INSERT INTO task_plans (task_id, plan, max_attempts) VALUES (?, ?, ?)")
                        .bind(task.id.0)
                        .bind(serde_json::to_string(&plan.node)?)
                        .bind(plan.max_attempts)
                        .execute(tx.conn())
                        .await?;
                }
            }
            let first = match &plan.node {
                Node::Agent { .. } => return Ok(()),
                Node::Fanout { children, .. } => children
                    .iter()
                    .enumerate()
                    .map(|(i, node)| NewChild {
                        position: i as i32,
                        node: node.clone(),
                        message: child_message(task.id, i as i32, request.parts.clone(), request, false),
                    })
                    .collect(),
                Node::Pipeline { steps, .. } => vec![NewChild {
                    position: 0,
                    node: steps[0].clone(),
                    message: child_message(task.id, 0, request.parts.clone(), request, true),
                }],
            };
            self.spawn(tx, task, first, plan.max_attempts, now).await
        })
    }

    /// Creates children of `parent` in three statements whatever their
    /// number, then starts the plans of those that run one.
    fn spawn<'a>(
        &'a self,
        tx: &'a mut Tx,
        parent: &'a TaskRecord,
        children: Vec<NewChild>,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Boxed<'a, ()> {
        Box::pin(async move {
            let mut rows = ChildRows::default();
            let mut plans = Vec::new();
            for child in children {
                let id = TaskId::new();
                let mut message = child.message;
                let context_id = Uuid::now_v7().to_string();
                message.task_id = Some(id.to_string());
                message.context_id = Some(context_id.clone());
                let label = child.node.label();
                let metadata: std::collections::HashMap<String, Value> = [(
                    "switchyard".to_owned(),
                    json!({ "parentTaskId": parent.id.to_string(), "position": child.position, "agent": label }),
                )]
                .into();
                let mut events =
                    vec![TaskEvent::status(TaskState::Submitted, None), TaskEvent::Message(message.clone())];
                if !matches!(child.node, Node::Agent { .. }) {
                    events.push(TaskEvent::status_with_text(TaskState::Working, format!("running plan {label}")));
                }
                let events = stamped(&events, now);
                let mut record = TaskRecord::genesis(
                    id,
                    &crate::id::Caller::new(parent.tenant.clone(), parent.owner.clone()),
                    context_id,
                    now,
                );
                record.parent_id = Some(parent.id);
                record.metadata = Some(metadata);
                record.trace_context = parent.trace_context.clone();
                for event in &events {
                    record.apply(event).map_err(|source| StoreError::Rejected { task: id, source })?;
                }
                rows.push(&record, child.position, &events)?;
                match child.node {
                    Node::Agent { agent } => {
                        rows.jobs.push(id.0);
                        rows.job_payloads.push(json!({ "agent": agent, "trace": parent.trace_context }));
                    }
                    node => plans.push((record, TaskPlan { node, max_attempts }, message)),
                }
            }
            match tx {
                Tx::Pg(tx) => {
                    sqlx::query!(
                r#"WITH created AS (
                       INSERT INTO tasks (id, tenant, owner, context_id, parent_id, position, state, status,
                                          metadata, trace_context, version, created_at, status_at)
                       SELECT c.id, $2, $3, c.context_id, $4, c.position, c.state, c.status, c.metadata, $5,
                              c.version, $6, $6
                       FROM UNNEST($1::uuid[], $7::text[], $8::int[], $9::text[], $10::jsonb[], $11::jsonb[],
                                   $12::bigint[]) AS c(id, context_id, position, state, status, metadata, version)
                   ),
                   logged AS (
                       INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                       SELECT e.task_id, e.seq, e.kind, e.payload, $6
                       FROM UNNEST($13::uuid[], $14::bigint[], $15::text[], $16::jsonb[]) AS e(task_id, seq, kind, payload)
                   ),
                   queued AS (
                       INSERT INTO jobs (task_id, kind, payload, max_attempts)
                       SELECT j.task_id, 'delegate', j.payload, $17
                       FROM UNNEST($18::uuid[], $19::jsonb[]) AS j(task_id, payload)
                       RETURNING id
                   )
                   SELECT CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($20, 'delegate') END AS notified"#,
                &rows.ids,
                parent.tenant,
                parent.owner,
                parent.id.0,
                parent.trace_context,
                now,
                &rows.contexts,
                &rows.positions,
                &rows.states,
                &rows.statuses,
                &rows.metadata,
                &rows.versions,
                &rows.event_tasks,
                &rows.event_seqs,
                &rows.event_kinds,
                &rows.event_payloads,
                max_attempts,
                &rows.jobs,
                &rows.job_payloads,
                self.channels.jobs,
            )
            .execute(&mut **tx)
            .await?;
                }
                Tx::Lite(tx) => rows.insert_lite(tx, parent, max_attempts, now, &self.channels.jobs).await?,
            }
            for (record, plan, message) in &plans {
                self.plan_start(tx, record, plan, message, now).await?;
            }
            metrics::counter!("switchyard_plan_children_started_total").increment(rows.ids.len() as u64);
            Ok(())
        })
    }

    /// What a child's events do to its parent, in the child's transaction
    /// (see the module's note on lock order). `events` are the child's
    /// events just folded, as stamped; `child` is the child after them.
    pub(super) fn propagate<'a>(
        &'a self,
        tx: &'a mut Tx,
        child: &'a TaskRecord,
        events: &'a [TaskEvent],
    ) -> Boxed<'a, ()> {
        Box::pin(async move {
            let Some(place) = ChildPlace::of(child) else { return Ok(()) };
            // Messages alone (a client's answer) change nothing above.
            if events.iter().all(|e| matches!(e, TaskEvent::Message(_))) {
                return Ok(());
            }
            let (row, now) = lock_task(tx, place.parent).await?.ok_or(StoreError::TaskNotFound(place.parent))?;
            let parent = TaskRecord::try_from(row)?;
            if parent.state.is_terminal() {
                // It ended (canceled, decided by a sibling): this child's
                // `cancel_child` job is on its way, if it is not done already.
                return Ok(());
            }
            let Some(plan) = self.locked_plan(tx, parent.id).await? else { return Ok(()) };
            let mut out: Vec<TaskEvent> = events
                .iter()
                .filter_map(|e| match e {
                    TaskEvent::Artifact(update) => Some(TaskEvent::Artifact(mirror(update, child.id, &place))),
                    _ => None,
                })
                .collect();
            let asked_now = child.state.is_interrupted() && events.iter().any(|e| matches!(e, TaskEvent::Status(_)));
            let was_asking = asking_child(&parent) == Some(child.id);
            if asked_now && !parent.state.is_interrupted() {
                out.push(question(child, &place));
            } else if was_asking && !child.state.is_interrupted() {
                out.push(TaskEvent::status_with_text(
                    TaskState::Working,
                    format!("child {} goes on", place.describe()),
                ));
                if !child.state.is_terminal()
                    && let Some(next) = self.next_question(tx, parent.id).await?
                {
                    out.push(next);
                }
            }
            if child.state.is_terminal() {
                let decided = match &plan.node {
                    Node::Fanout { children, join, allow_partial, .. } => {
                        self.judge_fanout(tx, &parent, child, &place, children.len(), *join, *allow_partial).await?
                    }
                    Node::Pipeline { steps, .. } => {
                        self.advance_pipeline(tx, &parent, child, &place, steps, plan.max_attempts, now).await?
                    }
                    Node::Agent { .. } => None,
                };
                match decided {
                    Some(end) => out.push(end),
                    // Still running: another child may be waiting to ask.
                    None if was_asking => {
                        if let Some(next) = self.next_question(tx, parent.id).await? {
                            out.push(next);
                        }
                    }
                    None => {}
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            let parent = self.fold_locked(tx, parent, now, &out).await?;
            if parent.state.is_terminal() {
                self.retire(tx, parent.id, &format!("the parent task {} ended", parent.id)).await?;
                metrics::counter!("switchyard_plan_joins_total", "outcome" => parent.state.as_str()).increment(1);
            }
            Ok(())
        })
    }

    /// A plan task's plan, read under its row lock.
    async fn locked_plan(&self, tx: &mut Tx, id: TaskId) -> Result<Option<TaskPlan>, StoreError> {
        let row = match tx {
            Tx::Pg(tx) => sqlx::query!("SELECT plan, max_attempts FROM task_plans WHERE task_id = $1", id.0)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| (r.plan, r.max_attempts)),
            Tx::Lite(tx) => {
                let row: Option<(String, i32)> =
                    sqlx::query_as("SELECT plan, max_attempts FROM task_plans WHERE task_id = ?")
                        .bind(id.0)
                        .fetch_optional(tx.conn())
                        .await?;
                row.map(|(plan, max)| Ok::<_, StoreError>((lite::parse(&plan)?, max))).transpose()?
            }
        };
        row.map(|(plan, max_attempts)| Ok(TaskPlan { node: serde_json::from_value(plan)?, max_attempts })).transpose()
    }

    /// The parent's decision when a fan-out child ended, if it is decisive.
    #[allow(clippy::too_many_arguments)]
    async fn judge_fanout(
        &self,
        tx: &mut Tx,
        parent: &TaskRecord,
        child: &TaskRecord,
        place: &ChildPlace,
        width: usize,
        join: Join,
        allow_partial: bool,
    ) -> Result<Option<TaskEvent>, StoreError> {
        let (completed, failed, all) = match tx {
            Tx::Pg(tx) => {
                let t = sqlx::query!(
                    r#"SELECT count(*) FILTER (WHERE state = 'completed') AS "completed!",
                              count(*) FILTER (WHERE state IN ('failed', 'canceled', 'rejected')) AS "failed!",
                              count(*) AS "all!"
                       FROM tasks WHERE parent_id = $1"#,
                    parent.id.0,
                )
                .fetch_one(&mut **tx)
                .await?;
                (t.completed, t.failed, t.all)
            }
            Tx::Lite(tx) => {
                sqlx::query_as::<_, (i64, i64, i64)>(
                    "SELECT count(*) FILTER (WHERE state = 'completed'), \
                        count(*) FILTER (WHERE state IN ('failed', 'canceled', 'rejected')), count(*) \
                 FROM tasks WHERE parent_id = ?",
                )
                .bind(parent.id.0)
                .fetch_one(tx.conn())
                .await?
            }
        };
        let tally = Tally {
            completed: completed as usize,
            failed: failed as usize,
            open: (all - completed - failed).max(0) as usize,
        };
        let why = |c: &TaskRecord| status_text(c).map(|t| format!(": {t}")).unwrap_or_default();
        let event = match judge(join, allow_partial, tally) {
            Verdict::Pending => return Ok(None),
            Verdict::Completed => {
                let text = match join {
                    Join::Any => format!("child {} completed first; the others are canceled", place.describe()),
                    Join::Quorum { n } => {
                        format!(
                            "{} of {width} children completed (quorum {n}); the others are canceled",
                            tally.completed
                        )
                    }
                    Join::All if tally.failed == 0 => format!("all {width} children completed"),
                    Join::All => {
                        let failed = self.failed_children(tx, parent.id).await?;
                        format!("{} of {width} children completed; failed: {}", tally.completed, failed.join("; "))
                    }
                };
                TaskEvent::status_with_text(TaskState::Completed, text)
            }
            Verdict::Failed => {
                let text = match join {
                    Join::All if tally.completed == 0 && tally.open == 0 && allow_partial => {
                        format!("every child failed; the last, {}, {}{}", place.describe(), child.state, why(child))
                    }
                    Join::All => format!("child {} {}{}", place.describe(), child.state, why(child)),
                    Join::Any => {
                        format!("no child completed; the last, {}, {}{}", place.describe(), child.state, why(child))
                    }
                    Join::Quorum { n } => format!(
                        "a quorum of {n} can no longer be met: {} of {width} children failed; the last, {}, {}{}",
                        tally.failed,
                        place.describe(),
                        child.state,
                        why(child)
                    ),
                };
                TaskEvent::status_with_text(TaskState::Failed, text)
            }
        };
        Ok(Some(event))
    }

    /// `#1 (agent b) failed: reason` for each child that did not complete.
    async fn failed_children(&self, tx: &mut Tx, parent: TaskId) -> Result<Vec<String>, StoreError> {
        let rows = match tx {
            Tx::Pg(tx) => sqlx::query_as!(
                TaskRow,
                r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                          metadata, trace_context, version, created_at, status_at
                   FROM tasks WHERE parent_id = $1 AND state IN ('failed', 'canceled', 'rejected')
                   ORDER BY position"#,
                parent.0,
            )
            .fetch_all(&mut **tx)
            .await?,
            Tx::Lite(tx) => {
                let sql = format!(
                    "SELECT {} FROM tasks t WHERE t.parent_id = ? AND t.state IN ('failed', 'canceled', 'rejected') \
                     ORDER BY t.position",
                    lite::TASK_COLUMNS
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_all(tx.conn()).await?;
                rows.iter().map(lite::task_row).collect::<Result<_, _>>()?
            }
        };
        rows.into_iter()
            .map(|row| {
                let c = TaskRecord::try_from(row)?;
                let place = ChildPlace::of(&c).map(|p| p.describe()).unwrap_or_default();
                Ok(format!("{place} {}{}", c.state, status_text(&c).map(|t| format!(": {t}")).unwrap_or_default()))
            })
            .collect()
    }

    /// After a pipeline step ended: the next step, created here, or the
    /// parent's end.
    #[allow(clippy::too_many_arguments)]
    async fn advance_pipeline(
        &self,
        tx: &mut Tx,
        parent: &TaskRecord,
        child: &TaskRecord,
        place: &ChildPlace,
        steps: &[Node],
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskEvent>, StoreError> {
        let of = steps.len();
        let step = place.position as usize;
        if child.state != TaskState::Completed {
            let why = status_text(child).map(|t| format!(": {t}")).unwrap_or_default();
            return Ok(Some(TaskEvent::status_with_text(
                TaskState::Failed,
                format!("step {} of {of}, {}, {}{why}", step + 1, place.label, child.state),
            )));
        }
        let Some(next) = steps.get(step + 1) else {
            return Ok(Some(TaskEvent::status_with_text(TaskState::Completed, format!("all {of} steps completed"))));
        };
        let (request, updates) = match tx {
            Tx::Pg(tx) => {
                let request = sqlx::query_scalar!(
                    r#"SELECT payload FROM task_events WHERE task_id = $1 AND kind = 'message' ORDER BY seq LIMIT 1"#,
                    parent.id.0,
                )
                .fetch_one(&mut **tx)
                .await?;
                // The step's artifacts, from its log (the record a fold
                // returns carries only their ids).
                let updates = sqlx::query_scalar!(
                    r#"SELECT payload FROM task_events WHERE task_id = $1 AND kind = 'artifact' ORDER BY seq"#,
                    child.id.0,
                )
                .fetch_all(&mut **tx)
                .await?;
                (request, updates)
            }
            Tx::Lite(tx) => {
                let request: String = sqlx::query_scalar(
                    "SELECT payload FROM task_events WHERE task_id = ? AND kind = 'message' ORDER BY seq LIMIT 1",
                )
                .bind(parent.id.0)
                .fetch_one(tx.conn())
                .await?;
                let updates: Vec<String> = sqlx::query_scalar(
                    "SELECT payload FROM task_events WHERE task_id = ? AND kind = 'artifact' ORDER BY seq",
                )
                .bind(child.id.0)
                .fetch_all(tx.conn())
                .await?;
                (lite::parse(&request)?, updates.iter().map(|u| lite::parse(u)).collect::<Result<_, _>>()?)
            }
        };
        let request: Message = serde_json::from_value(request)?;
        let updates = updates.into_iter().map(serde_json::from_value).collect::<Result<Vec<ArtifactUpdate>, _>>()?;
        let artifacts = fold_artifacts(&updates).map_err(|e| StoreError::Corrupt(format!("task {}: {e}", child.id)))?;
        let position = place.position + 1;
        let input = step_input(&artifacts, child, &request);
        let message = child_message(parent.id, position, input, &request, true);
        self.spawn(tx, parent, vec![NewChild { position, node: next.clone(), message }], max_attempts, now).await?;
        Ok(None)
    }

    /// The oldest question among a parent's children that nobody has
    /// answered yet (asked first, then lowest position), as the parent's status.
    pub(super) async fn next_question(&self, tx: &mut Tx, parent: TaskId) -> Result<Option<TaskEvent>, StoreError> {
        let row = match tx {
            Tx::Pg(tx) => sqlx::query_as!(
                TaskRow,
                r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                          metadata, trace_context, version, created_at, status_at
                   FROM tasks c
                   WHERE parent_id = $1 AND state IN ('input_required', 'auth_required')
                     AND NOT EXISTS (
                         SELECT 1 FROM task_events m
                         WHERE m.task_id = c.id AND m.kind = 'message' AND m.payload->>'role' = 'ROLE_USER'
                           AND m.seq > (SELECT max(seq) FROM task_events s WHERE s.task_id = c.id AND s.kind = 'status'))
                   ORDER BY status_at, position
                   LIMIT 1"#,
                parent.0,
            )
            .fetch_optional(&mut **tx)
            .await?,
            Tx::Lite(tx) => {
                let sql = format!(
                    "SELECT {} FROM tasks t
                     WHERE t.parent_id = ? AND t.state IN ('input_required', 'auth_required')
                       AND NOT EXISTS (
                           SELECT 1 FROM task_events m
                           WHERE m.task_id = t.id AND m.kind = 'message'
                             AND json_extract(m.payload, '$.role') = 'ROLE_USER'
                             AND m.seq > (SELECT max(seq) FROM task_events s WHERE s.task_id = t.id AND s.kind = 'status'))
                     ORDER BY t.status_at, t.position
                     LIMIT 1",
                    lite::TASK_COLUMNS
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_optional(tx.conn()).await?;
                row.as_ref().map(lite::task_row).transpose()?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let child = TaskRecord::try_from(row)?;
        Ok(ChildPlace::of(&child).map(|place| question(&child, &place)))
    }

    /// Everything that follows a task's end in its own transaction: its
    /// waiting jobs retired (a deadline timer), its open children told to
    /// stop, and its remote task, if one is known, canceled. Webhook
    /// deliveries are not retired: the ending itself is one of them, queued
    /// by the same transaction, and every earlier one still owes its receiver.
    pub(super) async fn retire(&self, tx: &mut Tx, task_id: TaskId, children_reason: &str) -> Result<(), StoreError> {
        let queued = match tx {
            Tx::Pg(tx) => {
                sqlx::query!(
                    r#"WITH retired AS (
                   UPDATE jobs SET state = 'done', finished_at = now(), last_error = 'task ended'
                   WHERE task_id = $1 AND state = 'ready' AND kind <> 'push'
               ),
               remote AS (
                   INSERT INTO jobs (task_id, kind, max_attempts)
                   SELECT task_id, $2, 5 FROM delegations WHERE task_id = $1 AND remote_task_id IS NOT NULL
                   RETURNING id
               ),
               children AS (
                   INSERT INTO jobs (task_id, kind, payload, max_attempts)
                   SELECT id, $3, jsonb_build_object('reason', $4::text), 5 FROM tasks
                   WHERE parent_id = $1 AND state IN ('submitted', 'working', 'input_required', 'auth_required')
                   RETURNING id
               )
               SELECT (SELECT count(*) FROM remote) + (SELECT count(*) FROM children) AS "queued!""#,
                    task_id.0,
                    JobKind::CancelRemote.as_str(),
                    JobKind::CancelChild.as_str(),
                    children_reason,
                )
                .fetch_one(&mut **tx)
                .await?
                .queued
            }
            Tx::Lite(tx) => retire_lite(tx, task_id, children_reason).await?,
        };
        if queued > 0 {
            notify(tx, &self.channels.jobs, JobKind::CancelChild.as_str()).await?;
        }
        Ok(())
    }
}
