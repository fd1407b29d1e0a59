//! Task events: what the append-only log holds, one row per change.

use a2a::{Artifact, Message, TaskStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::TaskId;
use crate::state::TaskState;

/// One change to a task. The snapshot in `tasks` is the fold of these.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A message in the task's conversation (the user's input, or an agent's reply).
    Message(Message),
    /// A status change, or progress within the same state.
    Status(TaskStatus),
    /// A new artifact, or a chunk of one.
    Artifact(ArtifactUpdate),
}

/// An artifact as produced, possibly in chunks (`append`) — the payload of
/// A2A's `TaskArtifactUpdateEvent` without the ids, which the log row holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactUpdate {
    pub artifact: Artifact,
    #[serde(default)]
    pub append: bool,
    #[serde(default)]
    pub last_chunk: bool,
}

/// The log's `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Message,
    Status,
    Artifact,
}

impl EventKind {
    /// The name stored in `task_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Status => "status",
            EventKind::Artifact => "artifact",
        }
    }
}

/// A log row that cannot be read back as an event.
#[derive(Debug, thiserror::Error)]
#[error("event of kind {kind:?} does not decode: {reason}")]
pub struct UndecodableEvent {
    pub kind: String,
    pub reason: String,
}

impl TaskEvent {
    /// A status event stamped now, with an optional agent message.
    pub fn status(state: TaskState, message: Option<Message>) -> Self {
        TaskEvent::Status(TaskStatus { state: state.to_a2a(), message, timestamp: Some(Utc::now()) })
    }

    /// A status event whose message is the given agent text; used for the
    /// reasons the broker itself gives (rejections, failures, cancels).
    pub fn status_with_text(state: TaskState, text: impl Into<String>) -> Self {
        let message = Message::new(a2a::Role::Agent, vec![a2a::Part::text(text)]);
        TaskEvent::status(state, Some(message))
    }

    /// Which kind of log row this is.
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Message(_) => EventKind::Message,
            TaskEvent::Status(_) => EventKind::Status,
            TaskEvent::Artifact(_) => EventKind::Artifact,
        }
    }

    /// The JSON stored in `task_events.payload`.
    pub fn to_payload(&self) -> Value {
        let encoded = match self {
            TaskEvent::Message(m) => serde_json::to_value(m),
            TaskEvent::Status(s) => serde_json::to_value(s),
            TaskEvent::Artifact(a) => serde_json::to_value(a),
        };
        // The a2a types serialize plain structs, strings and maps with string
        // keys only; serde_json cannot fail on them.
        encoded.unwrap_or(Value::Null)
    }

    /// Reads a log row back.
    pub fn from_row(kind: &str, payload: Value) -> Result<Self, UndecodableEvent> {
        let fail = |e: serde_json::Error| UndecodableEvent { kind: kind.to_owned(), reason: e.to_string() };
        match kind {
            "message" => serde_json::from_value(payload).map(TaskEvent::Message).map_err(fail),
            "status" => serde_json::from_value(payload).map(TaskEvent::Status).map_err(fail),
            "artifact" => serde_json::from_value(payload).map(TaskEvent::Artifact).map_err(fail),
            other => Err(UndecodableEvent { kind: other.to_owned(), reason: "unknown kind".into() }),
        }
    }
}

/// An event as stored: its position in the task's log and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub task_id: TaskId,
    pub seq: i64,
    pub event: TaskEvent,
    pub created_at: DateTime<Utc>,
}
