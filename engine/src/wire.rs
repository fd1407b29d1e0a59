//! The wire forms of what the log holds: a log event as an A2A
//! `StreamResponse` (what streams and webhooks carry), and the v0.3 JSON
//! shapes of the v1 objects, for clients and webhooks of that version.

use a2a::{StreamResponse, TaskArtifactUpdateEvent, TaskStatusUpdateEvent};
use serde_json::{Map, Value, json};

use crate::event::{StoredEvent, TaskEvent};
use crate::state::TaskState;

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

/// A `StreamResponse` in v0.3 shape: a bare object with `kind`, and
/// `final` on a status update.
pub fn stream_response_to_v03(response: &StreamResponse) -> Value {
    let v1 = serde_json::to_value(response).unwrap_or(Value::Null);
    match response {
        StreamResponse::Task(_) => task_to_v03(&v1["task"]),
        StreamResponse::Message(_) => message_to_v03(&v1["message"]),
        StreamResponse::StatusUpdate(update) => {
            let state = TaskState::from_a2a(&update.status.state);
            let last = state.is_some_and(|s| s.is_terminal() || s.is_interrupted());
            json!({
                "kind": "status-update",
                "taskId": update.task_id,
                "contextId": update.context_id,
                "status": status_to_v03(&v1["statusUpdate"]["status"]),
                "final": last,
            })
        }
        StreamResponse::ArtifactUpdate(update) => {
            let mut event = json!({
                "kind": "artifact-update",
                "taskId": update.task_id,
                "contextId": update.context_id,
                "artifact": artifact_to_v03(&v1["artifactUpdate"]["artifact"]),
            });
            if let Some(append) = update.append {
                event["append"] = json!(append);
            }
            if let Some(last) = update.last_chunk {
                event["lastChunk"] = json!(last);
            }
            event
        }
    }
}

pub fn part_to_v03(part: &Value) -> Value {
    let mut v03 = if let Some(text) = part.get("text") {
        json!({ "kind": "text", "text": text })
    } else if let Some(data) = part.get("data") {
        // v0.3 data parts held objects only.
        let data = if data.is_object() { data.clone() } else { json!({ "value": data }) };
        json!({ "kind": "data", "data": data })
    } else {
        let mut file = Map::new();
        if let Some(raw) = part.get("raw") {
            file.insert("bytes".into(), raw.clone());
        }
        if let Some(url) = part.get("url") {
            file.insert("uri".into(), url.clone());
        }
        if let Some(name) = part.get("filename") {
            file.insert("name".into(), name.clone());
        }
        if let Some(media) = part.get("mediaType") {
            file.insert("mimeType".into(), media.clone());
        }
        json!({ "kind": "file", "file": file })
    };
    if let Some(metadata) = part.get("metadata") {
        v03["metadata"] = metadata.clone();
    }
    v03
}

pub fn parts_to_v03(parts: &Value) -> Value {
    Value::Array(parts.as_array().map(|p| p.iter().map(part_to_v03).collect()).unwrap_or_default())
}

pub fn message_to_v03(message: &Value) -> Value {
    let mut v03 = message.clone();
    v03["kind"] = json!("message");
    v03["role"] = json!(if message["role"] == "ROLE_AGENT" { "agent" } else { "user" });
    v03["parts"] = parts_to_v03(&message["parts"]);
    v03
}

pub fn state_to_v03(state: &Value) -> Value {
    let name = state.as_str().unwrap_or("").trim_start_matches("TASK_STATE_");
    json!(if name.is_empty() || name == "UNSPECIFIED" {
        "unknown".to_owned()
    } else {
        name.to_lowercase().replace('_', "-")
    })
}

pub fn status_to_v03(status: &Value) -> Value {
    let mut v03 = json!({ "state": state_to_v03(&status["state"]) });
    if let Some(message) = status.get("message") {
        v03["message"] = message_to_v03(message);
    }
    if let Some(timestamp) = status.get("timestamp") {
        v03["timestamp"] = timestamp.clone();
    }
    v03
}

pub fn artifact_to_v03(artifact: &Value) -> Value {
    let mut v03 = artifact.clone();
    v03["parts"] = parts_to_v03(&artifact["parts"]);
    v03
}

pub fn task_to_v03(task: &Value) -> Value {
    let mut v03 = task.clone();
    v03["kind"] = json!("task");
    v03["status"] = status_to_v03(&task["status"]);
    if let Some(artifacts) = task.get("artifacts").and_then(Value::as_array) {
        v03["artifacts"] = Value::Array(artifacts.iter().map(artifact_to_v03).collect());
    }
    if let Some(history) = task.get("history").and_then(Value::as_array) {
        v03["history"] = Value::Array(history.iter().map(message_to_v03).collect());
    }
    v03
}
