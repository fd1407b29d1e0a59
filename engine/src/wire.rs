//! The wire form of what the log holds: a log event as an A2A
//! `StreamResponse` (what streams and webhooks carry). Its v0.3 shape is
//! [`crate::v03`]'s.

use a2a::{StreamResponse, TaskArtifactUpdateEvent, TaskStatusUpdateEvent};

use crate::event::{StoredEvent, TaskEvent};

/// The wire form of a log event. Messages are history, not stream events:
/// a client sees the agent's words in the status that carries them.
pub fn to_stream_response(stored: &StoredEvent, context_id: &str) -> Option<StreamResponse> {
    let task_id = stored.task_id.to_string();
    match &stored.event {
        TaskEvent::Status(status) => Some(StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id,
            context_id: context_id.to_owned(),
            status: status.clone(),
            metadata: None,
        })),
        TaskEvent::Artifact(update) => Some(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
            task_id,
            context_id: context_id.to_owned(),
            artifact: update.artifact.clone(),
            append: update.append.then_some(true),
            last_chunk: update.last_chunk.then_some(true),
            metadata: None,
        })),
        TaskEvent::Message(_) => None,
    }
}
