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

use super::row::TaskRow;
use super::task::{lock_task, stamped};
use super::{Store, Tx};
use crate::error::StoreError;
use crate::event::{ArtifactUpdate, TaskEvent};
use crate::id::TaskId;
use crate::plan::{ChildPlace, Join, Node, Tally, TaskPlan, Verdict, judge};
use crate::state::TaskState;
use crate::task::asking_child;
use crate::task::{TaskRecord, fold_artifacts};

mod children;

pub(super) use children::ChildRows;
use children::{child_message, mirror, question, status_text, step_input};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A child to create.
struct NewChild {
    position: i32,
    node: Node,
    message: Message,
}

super::seam::statements! {
    room plan;
    /// Records the plan a task runs (its node as JSON).
    tx fn plan_record(task_id: TaskId, node: &Value, max_attempts: i32) -> ();
    /// Creates children, their first events and their delegations.
    tx fn children_insert(
        parent: &TaskRecord,
        rows: &ChildRows,
        max_attempts: i32,
        now: DateTime<Utc>,
        jobs_channel: &str,
    ) -> ();
    /// The plan a task runs, and its children's attempts.
    tx fn plan_of(task_id: TaskId) -> Option<(Value, i32)>;
    /// A parent's children: (completed, failed, all).
    tx fn children_tally(parent: TaskId) -> (i64, i64, i64);
    /// The children that did not complete, by position.
    tx fn children_failed(parent: TaskId) -> Vec<TaskRow>;
    /// A pipeline's request (its first message) and a step's artifact updates.
    tx fn step_inputs(parent: TaskId, step: TaskId) -> (Value, Vec<Value>);
    /// The child whose question nobody answered yet, asked first.
    tx fn children_unanswered(parent: TaskId) -> Option<TaskRow>;
}

impl Store {
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
            tx.plan_record(task.id, &serde_json::to_value(&plan.node)?, plan.max_attempts).await?;
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
                        // A plan's children stream from their agents: a plan's
                        // output is followed as it comes (its parent's stream).
                        rows.job_payloads
                            .push(json!({ "agent": agent, "trace": parent.trace_context, "stream": true }));
                    }
                    node => plans.push((record, TaskPlan { node, max_attempts }, message)),
                }
            }
            tx.children_insert(parent, &rows, max_attempts, now, &self.channels.jobs).await?;
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
        let row = tx.plan_of(id).await?;
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
        let (completed, failed, all) = tx.children_tally(parent.id).await?;
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
        let rows = tx.children_failed(parent).await?;
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
        // The step's artifacts, from its log (the record a fold returns
        // carries only their ids).
        let (request, updates) = tx.step_inputs(parent.id, child.id).await?;
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
        let row = tx.children_unanswered(parent).await?;
        let Some(row) = row else { return Ok(None) };
        let child = TaskRecord::try_from(row)?;
        Ok(ChildPlace::of(&child).map(|place| question(&child, &place)))
    }
}
