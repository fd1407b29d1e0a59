//! What a plan's children are made of: the message each starts with, the
//! input a pipeline step hands the next, the artifacts and questions a
//! parent shows for them, and their rows.

use a2a::{Message, Part, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{ArtifactUpdate, TaskEvent};
use crate::id::TaskId;
use crate::plan::ChildPlace;
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
pub(in crate::store) struct ChildRows {
    pub(in crate::store) ids: Vec<Uuid>,
    pub(in crate::store) contexts: Vec<String>,
    pub(in crate::store) positions: Vec<i32>,
    pub(in crate::store) states: Vec<String>,
    pub(in crate::store) statuses: Vec<Value>,
    pub(in crate::store) metadata: Vec<Value>,
    pub(in crate::store) versions: Vec<i64>,
    pub(in crate::store) event_tasks: Vec<Uuid>,
    pub(in crate::store) event_seqs: Vec<i64>,
    pub(in crate::store) event_kinds: Vec<String>,
    pub(in crate::store) event_payloads: Vec<Value>,
    pub(in crate::store) jobs: Vec<Uuid>,
    pub(in crate::store) job_payloads: Vec<Value>,
}

impl ChildRows {
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
