//! What a plan's children are made of: the message each starts with, the
//! input a pipeline step hands the next, the artifacts and questions a
//! parent shows for them, and their rows.

use a2a::{Message, Part, Role};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::super::job::JobKind;
use super::super::lite;
use super::ChildPlace;
use crate::error::StoreError;
use crate::event::{ArtifactUpdate, TaskEvent};
use crate::id::TaskId;
use crate::task::TaskRecord;

/// A child's first message: the parts it works on, the client's metadata
/// without Switchyard's own instructions (a remote Switchyard must not fan
/// out again), and where it sits; a pipeline step also carries the
/// original request (`switchyard.request`). Its id is derived from the
/// parent and the position, so it is the same on every resend.
pub(super) fn child_message(
    parent: TaskId,
    position: i32,
    parts: Vec<Part>,
    request: &Message,
    pipeline: bool,
) -> Message {
    let mut message = Message::new(Role::User, parts);
    message.message_id = format!("{parent}-{position}");
    let mut metadata = request.metadata.clone().unwrap_or_default();
    let mut ours = json!({ "parentTaskId": parent.to_string(), "position": position });
    if pipeline {
        ours["step"] = json!(position + 1);
        ours["request"] = serde_json::to_value(request).unwrap_or(Value::Null);
    }
    metadata.insert("switchyard".to_owned(), ours);
    message.metadata = Some(metadata);
    message.extensions = request.extensions.clone();
    message
}

/// What a pipeline step hands the next: its artifacts' parts in order;
/// failing that, its closing status message; failing that, the request.
pub(super) fn step_input(artifacts: &[a2a::Artifact], step: &TaskRecord, request: &Message) -> Vec<Part> {
    let parts: Vec<Part> = artifacts.iter().flat_map(|a| a.parts.iter().cloned()).collect();
    if !parts.is_empty() {
        return parts;
    }
    match &step.status.message {
        Some(m) if !m.parts.is_empty() => m.parts.clone(),
        _ => request.parts.clone(),
    }
}

/// A child's artifact as the parent shows it: its id prefixed with the
/// child's, so siblings' artifacts never collide, and its metadata naming
/// the child, the agent and the position.
pub(super) fn mirror(update: &ArtifactUpdate, child: TaskId, place: &ChildPlace) -> ArtifactUpdate {
    let mut artifact = update.artifact.clone();
    artifact.artifact_id = format!("{child}/{}", artifact.artifact_id);
    let mut metadata = artifact.metadata.take().unwrap_or_default();
    metadata.insert("switchyard".to_owned(), place.tag(child));
    artifact.metadata = Some(metadata);
    ArtifactUpdate { artifact, ..update.clone() }
}

/// A child's question as its parent's status: the same state and parts,
/// with metadata naming the child (the answer is routed by it).
pub(super) fn question(child: &TaskRecord, place: &ChildPlace) -> TaskEvent {
    let asked = child.status.message.clone();
    let parts = asked.as_ref().map(|m| m.parts.clone()).filter(|p| !p.is_empty());
    let parts = parts.unwrap_or_else(|| vec![Part::text(format!("child {} needs input", place.describe()))]);
    let mut message = Message::new(Role::Agent, parts);
    message.message_id = format!("{}-q{}", child.id, child.version);
    let mut metadata = asked.and_then(|m| m.metadata).unwrap_or_default();
    metadata.insert("switchyard".to_owned(), place.tag(child.id));
    message.metadata = Some(metadata);
    TaskEvent::status(child.state, Some(message))
}

/// The text of a task's status message, if it has one.
pub(super) fn status_text(task: &TaskRecord) -> Option<String> {
    let text = task.status.message.as_ref()?.text()?.trim();
    (!text.is_empty()).then(|| text.chars().take(500).collect())
}

/// Children's columns for one `INSERT … SELECT FROM UNNEST(…)` each.
#[derive(Default)]
pub(super) struct ChildRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) contexts: Vec<String>,
    pub(super) positions: Vec<i32>,
    pub(super) states: Vec<String>,
    pub(super) statuses: Vec<Value>,
    pub(super) metadata: Vec<Value>,
    pub(super) versions: Vec<i64>,
    pub(super) event_tasks: Vec<Uuid>,
    pub(super) event_seqs: Vec<i64>,
    pub(super) event_kinds: Vec<String>,
    pub(super) event_payloads: Vec<Value>,
    pub(super) jobs: Vec<Uuid>,
    pub(super) job_payloads: Vec<Value>,
}

impl ChildRows {
    /// The children, their first events and their delegations, on the
    /// embedded store (a statement per row).
    pub(super) async fn insert_lite(
        &self,
        tx: &mut lite::LiteTx,
        parent: &TaskRecord,
        max_attempts: i32,
        now: DateTime<Utc>,
        jobs_channel: &str,
    ) -> Result<(), StoreError> {
        let at = lite::us(now);
        for i in 0..self.ids.len() {
            sqlx::query(
                "INSERT INTO tasks (id, tenant, owner, context_id, parent_id, position, state, status, metadata, \
                                    trace_context, version, created_at, status_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(self.ids[i])
            .bind(&parent.tenant)
            .bind(&parent.owner)
            .bind(&self.contexts[i])
            .bind(parent.id.0)
            .bind(self.positions[i])
            .bind(&self.states[i])
            .bind(lite::json(&self.statuses[i]))
            .bind(lite::json(&self.metadata[i]))
            .bind(parent.trace_context.as_ref().map(lite::json))
            .bind(self.versions[i])
            .bind(at)
            .bind(at)
            .execute(tx.conn())
            .await?;
        }
        for i in 0..self.event_tasks.len() {
            sqlx::query("INSERT INTO task_events (task_id, seq, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(self.event_tasks[i])
                .bind(self.event_seqs[i])
                .bind(&self.event_kinds[i])
                .bind(lite::json(&self.event_payloads[i]))
                .bind(at)
                .execute(tx.conn())
                .await?;
        }
        for (task, payload) in self.jobs.iter().zip(&self.job_payloads) {
            sqlx::query(
                "INSERT INTO jobs (task_id, kind, payload, max_attempts, run_at, created_at) \
                 VALUES (?, 'delegate', ?, ?, ?, ?)",
            )
            .bind(task)
            .bind(lite::json(payload))
            .bind(max_attempts)
            .bind(at)
            .bind(at)
            .execute(tx.conn())
            .await?;
        }
        if !self.jobs.is_empty() {
            tx.notify(jobs_channel, "delegate");
        }
        Ok(())
    }

    pub(super) fn push(&mut self, task: &TaskRecord, position: i32, events: &[TaskEvent]) -> Result<(), StoreError> {
        let snapshot = super::super::row::Snapshot::of(task)?;
        self.ids.push(task.id.0);
        self.contexts.push(task.context_id.clone());
        self.positions.push(position);
        self.states.push(snapshot.state.to_owned());
        self.statuses.push(snapshot.status);
        self.metadata.push(serde_json::to_value(&task.metadata)?);
        self.versions.push(task.version);
        let rows = super::super::row::EventRows::of(1, events);
        self.event_tasks.extend(std::iter::repeat_n(task.id.0, events.len()));
        self.event_seqs.extend(rows.seqs);
        self.event_kinds.extend(rows.kinds);
        self.event_payloads.extend(rows.payloads);
        Ok(())
    }
}

/// [`Store::retire`]'s writes on the embedded store; how many jobs it queued.
pub(super) async fn retire_lite(
    tx: &mut lite::LiteTx,
    task_id: TaskId,
    children_reason: &str,
) -> Result<i64, StoreError> {
    let now = lite::us(tx.now);
    sqlx::query("UPDATE jobs SET state = 'done', finished_at = ?, last_error = 'task ended' WHERE task_id = ? AND state = 'ready' AND kind <> 'push'")
        .bind(now)
        .bind(task_id.0)
        .execute(tx.conn())
        .await?;
    let remote = sqlx::query(
        "INSERT INTO jobs (task_id, kind, max_attempts, run_at, created_at) \
         SELECT task_id, ?, 5, ?, ? FROM delegations WHERE task_id = ? AND remote_task_id IS NOT NULL",
    )
    .bind(JobKind::CancelRemote.as_str())
    .bind(now)
    .bind(now)
    .bind(task_id.0)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let children = sqlx::query(
        "INSERT INTO jobs (task_id, kind, payload, max_attempts, run_at, created_at) \
         SELECT id, ?, json_object('reason', ?), 5, ?, ? FROM tasks \
         WHERE parent_id = ? AND state IN ('submitted', 'working', 'input_required', 'auth_required')",
    )
    .bind(JobKind::CancelChild.as_str())
    .bind(children_reason)
    .bind(now)
    .bind(now)
    .bind(task_id.0)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok((remote + children) as i64)
}
