//! The task snapshot and the fold that builds it from events.

use std::collections::HashMap;

use a2a::{Artifact, Message, TaskStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{ArtifactUpdate, TaskEvent};
use crate::id::{Caller, TaskId};
use crate::state::TaskState;

/// A task as the `tasks` row holds it: the fold of its event log up to `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub tenant: String,
    pub owner: String,
    pub context_id: String,
    pub parent_id: Option<TaskId>,
    pub state: TaskState,
    pub status: TaskStatus,
    /// The artifacts, folded from the log. Reads fill them in; records that
    /// writes return leave them empty (a writer needs only `artifact_ids`,
    /// and rewriting them on every chunk would make appends O(artifact)).
    pub artifacts: Vec<Artifact>,
    /// The ids of the artifacts that exist, in order of definition.
    pub artifact_ids: Vec<String>,
    pub metadata: Option<HashMap<String, Value>>,
    /// W3C trace context of the request that created the task, so later work
    /// in other processes joins the same trace.
    pub trace_context: Option<Value>,
    /// Sequence number of the last event folded in.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub status_at: DateTime<Utc>,
}

/// Why an event cannot be folded into a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("the task is {0}; a terminal task never changes")]
    Terminal(TaskState),
    #[error("a task cannot move from {from} to {to}")]
    InvalidTransition { from: TaskState, to: TaskState },
    #[error("TASK_STATE_UNSPECIFIED is not a state a task can be in")]
    UnspecifiedState,
    #[error("an artifact chunk was appended to artifact {0:?}, which does not exist")]
    AppendToMissingArtifact(String),
}

impl TaskRecord {
    /// The W3C trace id of the request that created the task, if it came
    /// with one (what `tasks show` and the console link to).
    pub fn trace_id(&self) -> Option<String> {
        let parent = self.trace_context.as_ref()?.get("traceparent")?.as_str()?;
        parent.split('-').nth(1).map(str::to_owned)
    }

    /// The record a new task starts from, before its first event.
    pub fn genesis(id: TaskId, caller: &Caller, context_id: String, now: DateTime<Utc>) -> Self {
        TaskRecord {
            id,
            tenant: caller.tenant.clone(),
            owner: caller.principal.clone(),
            context_id,
            parent_id: None,
            state: TaskState::Submitted,
            status: TaskStatus { state: a2a::TaskState::Submitted, message: None, timestamp: Some(now) },
            artifacts: Vec::new(),
            artifact_ids: Vec::new(),
            metadata: None,
            trace_context: None,
            version: 0,
            created_at: now,
            status_at: now,
        }
    }

    /// Folds one event in, or says why it may not be. On error the record is
    /// unchanged. Any event on a terminal task is refused: its history is closed.
    pub fn apply(&mut self, event: &TaskEvent) -> Result<(), FoldError> {
        if self.state.is_terminal() {
            return Err(FoldError::Terminal(self.state));
        }
        match event {
            TaskEvent::Message(_) => {}
            TaskEvent::Status(status) => {
                let to = TaskState::from_a2a(&status.state).ok_or(FoldError::UnspecifiedState)?;
                // The genesis record is `Submitted` at version 0; its first
                // status event may also reject the task outright.
                let legal = if self.version == 0 { to.is_initial() } else { self.state.can_transition_to(to) };
                if !legal {
                    return Err(FoldError::InvalidTransition { from: self.state, to });
                }
                let at = status.timestamp.unwrap_or_else(Utc::now);
                self.state = to;
                self.status = TaskStatus { timestamp: Some(at), ..status.clone() };
                self.status_at = at;
            }
            TaskEvent::Artifact(update) => self.fold_artifact(update)?,
        }
        self.version += 1;
        Ok(())
    }

    /// Checks an artifact event against the ids that exist and records a
    /// new one; folds it into `artifacts` too where those are loaded (a
    /// record a write returned has only the ids, see the field).
    fn fold_artifact(&mut self, update: &ArtifactUpdate) -> Result<(), FoldError> {
        let id = &update.artifact.artifact_id;
        let known = self.artifact_ids.contains(id);
        if update.append && !known {
            return Err(FoldError::AppendToMissingArtifact(id.clone()));
        }
        if !known {
            self.artifact_ids.push(id.clone());
        }
        // Loaded when every known artifact is in the list (a record with
        // none is trivially complete).
        let loaded = self.artifacts.len() + usize::from(!known) == self.artifact_ids.len();
        if loaded {
            fold_into(&mut self.artifacts, update);
        }
        Ok(())
    }

    /// Whether `artifacts` holds every artifact (false for a record a write
    /// returned, which carries only their ids).
    pub fn has_all_artifacts(&self) -> bool {
        self.artifacts.len() == self.artifact_ids.len()
    }

    /// The A2A wire form, with the given history (already trimmed by the caller).
    pub fn to_a2a(&self, history: Option<Vec<Message>>) -> a2a::Task {
        a2a::Task {
            id: self.id.to_string(),
            context_id: self.context_id.clone(),
            status: self.status.clone(),
            artifacts: (!self.artifacts.is_empty()).then(|| self.artifacts.clone()),
            history,
            metadata: self.metadata.clone(),
        }
    }
}

/// Applies one artifact event to a list of artifacts: a definition adds or
/// replaces, a chunk appends its parts.
fn fold_into(artifacts: &mut Vec<Artifact>, update: &ArtifactUpdate) {
    let incoming = &update.artifact;
    match (artifacts.iter_mut().find(|a| a.artifact_id == incoming.artifact_id), update.append) {
        (Some(artifact), true) => artifact.parts.extend(incoming.parts.iter().cloned()),
        (Some(artifact), false) => *artifact = incoming.clone(),
        (None, _) => artifacts.push(incoming.clone()),
    }
}

/// A task's artifacts from its artifact events, in log order: what reads
/// return. (A chunk for an artifact never defined is refused at write time,
/// so the log holds none.)
pub fn fold_artifacts(updates: &[ArtifactUpdate]) -> Result<Vec<Artifact>, FoldError> {
    let mut artifacts: Vec<Artifact> = Vec::new();
    for update in updates {
        if update.append && !artifacts.iter().any(|a| a.artifact_id == update.artifact.artifact_id) {
            return Err(FoldError::AppendToMissingArtifact(update.artifact.artifact_id.clone()));
        }
        fold_into(&mut artifacts, update);
    }
    Ok(artifacts)
}

/// The child a parent's current question came from, as its status says.
pub fn asking_child(task: &TaskRecord) -> Option<TaskId> {
    if !task.state.is_interrupted() {
        return None;
    }
    let meta = task.status.message.as_ref()?.metadata.as_ref()?;
    let id = meta.get("switchyard")?.get("childTaskId")?.as_str()?;
    uuid::Uuid::parse_str(id).ok().map(TaskId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a::{Part, Role};

    fn record() -> TaskRecord {
        let mut task = TaskRecord::genesis(TaskId::new(), &Caller::new("t", "p"), "ctx".into(), Utc::now());
        task.apply(&TaskEvent::status(TaskState::Submitted, None)).expect("genesis status");
        task
    }

    fn artifact(id: &str, text: &str) -> Artifact {
        Artifact {
            artifact_id: id.into(),
            name: None,
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
            extensions: None,
        }
    }

    #[test]
    fn status_events_move_the_state_and_bump_the_version() {
        let mut task = record();
        task.apply(&TaskEvent::status(TaskState::Working, None)).expect("working");
        task.apply(&TaskEvent::status_with_text(TaskState::Completed, "done")).expect("completed");
        assert_eq!(task.state, TaskState::Completed);
        assert_eq!(task.version, 3);
        assert_eq!(task.status.message.as_ref().and_then(Message::text), Some("done"));
    }

    #[test]
    fn a_terminal_task_refuses_every_event_and_stays_unchanged() {
        let mut task = record();
        task.apply(&TaskEvent::status(TaskState::Canceled, None)).expect("cancel");
        let before = task.clone();
        let message = Message::new(Role::User, vec![Part::text("late")]);
        for event in [TaskEvent::status(TaskState::Completed, None), TaskEvent::Message(message)] {
            assert_eq!(task.apply(&event), Err(FoldError::Terminal(TaskState::Canceled)));
        }
        assert_eq!(task, before);
    }

    #[test]
    fn genesis_accepts_only_initial_states() {
        let fresh = || TaskRecord::genesis(TaskId::new(), &Caller::new("t", "p"), "c".into(), Utc::now());
        assert!(fresh().apply(&TaskEvent::status(TaskState::Rejected, None)).is_ok());
        assert!(matches!(
            fresh().apply(&TaskEvent::status(TaskState::Canceled, None)),
            Err(FoldError::InvalidTransition { .. })
        ));
    }

    #[test]
    fn artifact_chunks_append_and_redefinitions_replace() {
        let mut task = record();
        let chunk = |text: &str, append| {
            TaskEvent::Artifact(ArtifactUpdate { artifact: artifact("a", text), append, last_chunk: false })
        };
        task.apply(&chunk("one", false)).expect("define");
        task.apply(&chunk("two", true)).expect("append");
        assert_eq!(task.artifacts[0].parts.len(), 2);
        task.apply(&chunk("fresh", false)).expect("redefine");
        assert_eq!(task.artifacts[0].parts.len(), 1);
        let orphan =
            TaskEvent::Artifact(ArtifactUpdate { artifact: artifact("b", "x"), append: true, last_chunk: true });
        assert_eq!(task.apply(&orphan), Err(FoldError::AppendToMissingArtifact("b".into())));
    }

    #[test]
    fn a_record_without_its_artifacts_still_checks_appends_and_reads_fold_the_log() {
        let chunk =
            |id: &str, text: &str, append| ArtifactUpdate { artifact: artifact(id, text), append, last_chunk: false };
        let log = [chunk("a", "one", false), chunk("b", "x", false), chunk("a", "two", true), chunk("b", "y", false)];
        // A writer's record, as a row lock reads it after the first two
        // events: the ids, not the artifacts.
        let mut written = record();
        written.artifact_ids = vec!["a".into(), "b".into()];
        for update in &log[2..] {
            written.apply(&TaskEvent::Artifact(update.clone())).expect("fits");
        }
        assert_eq!(written.artifact_ids, ["a", "b"]);
        assert!(written.artifacts.is_empty(), "parts it never read are not gathered");
        let orphan = TaskEvent::Artifact(chunk("c", "z", true));
        assert_eq!(written.apply(&orphan), Err(FoldError::AppendToMissingArtifact("c".into())));
        // A reader's: folded from the log, the same as folding in memory.
        let read = fold_artifacts(&log).expect("folds");
        let texts: Vec<Vec<&str>> = read.iter().map(|a| a.parts.iter().filter_map(|p| p.as_text()).collect()).collect();
        assert_eq!(texts, [vec!["one", "two"], vec!["y"]]);
        let mut loaded = record();
        for update in &log {
            loaded.apply(&TaskEvent::Artifact(update.clone())).expect("fits");
        }
        assert_eq!(loaded.artifacts, read);
    }
}
