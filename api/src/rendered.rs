//! A stream's events as subscribers receive them: converted from the log
//! and serialized once per process, then shared by every stream of the
//! task here. A hundred subscribers of one task cost one conversion and one
//! serialization per event, not a hundred.

use std::sync::Arc;

use a2a::StreamResponse;
use axum::body::Bytes;
use switchyard_engine::wire::to_stream_response;
use switchyard_engine::{StoredEvent, TaskEvent, TaskState};

/// One event of a stream, ready to send.
#[derive(Debug, PartialEq)]
pub struct Rendered {
    pub response: StreamResponse,
    /// `response` as the v1 JSON every binding but gRPC and v0.3 sends.
    pub json: Bytes,
}

impl Rendered {
    pub fn new(response: StreamResponse) -> Arc<Rendered> {
        // A StreamResponse always serializes (no map with non-string keys).
        let json = serde_json::to_vec(&response).map(Bytes::from).unwrap_or_default();
        Arc::new(Rendered { response, json })
    }
}

/// One entry of a task's log, as the streams of that task need it.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub seq: i64,
    /// A terminal or interrupted status: the stream of the message that
    /// led to it closes after it.
    pub stop: bool,
    /// A terminal status: every stream closes after it, subscriptions too.
    pub terminal: bool,
    /// What subscribers are sent; `None` for what a stream does not carry
    /// (messages).
    pub rendered: Option<Arc<Rendered>>,
}

impl FeedEvent {
    pub fn of(stored: &StoredEvent, context_id: &str) -> FeedEvent {
        FeedEvent {
            seq: stored.seq,
            stop: ends_stream(&stored.event),
            terminal: ends_task(&stored.event),
            rendered: to_stream_response(stored, context_id).map(Rendered::new),
        }
    }
}

/// A message's stream closes after a terminal state, and after an
/// interrupted one: the client must answer (a new request) before anything
/// else happens.
fn ends_stream(event: &TaskEvent) -> bool {
    status_state(event).is_some_and(|s| s.is_terminal() || s.is_interrupted())
}

/// The task is over: nothing more will be said about it.
fn ends_task(event: &TaskEvent) -> bool {
    status_state(event).is_some_and(TaskState::is_terminal)
}

fn status_state(event: &TaskEvent) -> Option<TaskState> {
    match event {
        TaskEvent::Status(status) => TaskState::from_a2a(&status.state),
        _ => None,
    }
}
