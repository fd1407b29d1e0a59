//! A2A v0.3: its wire model, typed, and the translation to and from the v1
//! model the task log stores, in both directions — for v0.3 clients (the
//! api's compatibility layer), v0.3 webhooks, and v0.3 agents (the worker's
//! client). Nothing past this module sees a v0.3 shape.
//!
//! v0.3 differs from v1 in form, not in meaning: objects carry a `kind`
//! discriminator, roles and states are lower-case words, file parts nest
//! their content under `file`, a status update says whether it is `final`,
//! and the card names one `url` with a `preferredTransport` and
//! `additionalInterfaces` instead of a list of versioned interfaces.

use std::collections::HashMap;

use a2a::{
    Artifact, AuthenticationInfo, Message, Part, PartContent, Role, SendMessageConfiguration, SendMessageRequest,
    SendMessageResponse, StreamResponse, Task, TaskArtifactUpdateEvent, TaskPushNotificationConfig, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod card;
pub use card::{V03Capabilities, V03Card, V03Interface, V03Skill, VERSION, is_v03_card};

type Metadata = Option<HashMap<String, Value>>;

/// A v0.3 part: `kind` tells which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum V03Part {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Metadata,
    },
    File {
        file: V03File,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Metadata,
    },
    Data {
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Metadata,
    },
}

/// A file: its bytes (base64) or a URI, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The `kind` each v0.3 object names itself with: one value per type, so
/// a message reads as a message wherever it appears (in history too).
macro_rules! kind {
    ($name:ident, $value:literal) => {
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            #[default]
            #[serde(rename = $value)]
            Is,
        }
    };
}
kind!(MessageKind, "message");
kind!(TaskKind, "task");
kind!(StatusUpdateKind, "status-update");
kind!(ArtifactUpdateKind, "artifact-update");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V03Role {
    User,
    Agent,
}

/// A v0.3 message (`kind: "message"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Message {
    /// Optional when read (history entries often omit it), always written.
    #[serde(default)]
    pub kind: MessageKind,
    pub message_id: String,
    pub role: V03Role,
    pub parts: Vec<V03Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_task_ids: Option<Vec<String>>,
}

/// v0.3 task states: lower-case, hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum V03State {
    Submitted,
    Working,
    InputRequired,
    Completed,
    Canceled,
    Failed,
    Rejected,
    AuthRequired,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Status {
    pub state: V03State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<V03Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Artifact {
    pub artifact_id: String,
    pub parts: Vec<V03Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Task {
    pub kind: TaskKind,
    pub id: String,
    pub context_id: String,
    pub status: V03Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<V03Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<V03Artifact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03StatusUpdate {
    pub kind: StatusUpdateKind,
    pub task_id: String,
    pub context_id: String,
    pub status: V03Status,
    #[serde(default, rename = "final")]
    pub last: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03ArtifactUpdate {
    pub kind: ArtifactUpdateKind,
    pub task_id: String,
    pub context_id: String,
    pub artifact: V03Artifact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_chunk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
}

/// Anything a v0.3 agent answers with (or we answer a v0.3 client with),
/// told apart by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum V03Result {
    Task(V03Task),
    Message(V03Message),
    StatusUpdate(V03StatusUpdate),
    ArtifactUpdate(V03ArtifactUpdate),
}

impl<'de> Deserialize<'de> for V03Result {
    /// By `kind` first, so a bad object is reported as the type it says it
    /// is (not as "matched no variant").
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        let parsed = match kind.as_str() {
            "task" => serde_json::from_value(value).map(V03Result::Task),
            "message" => serde_json::from_value(value).map(V03Result::Message),
            "status-update" => serde_json::from_value(value).map(V03Result::StatusUpdate),
            "artifact-update" => serde_json::from_value(value).map(V03Result::ArtifactUpdate),
            other => return Err(D::Error::custom(format!("unknown kind {other:?}"))),
        };
        parsed.map_err(|e| D::Error::custom(format!("{kind}: {e}")))
    }
}

/// `MessageSendParams`, both ways: what a v0.3 client sends us and what we
/// send a v0.3 agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03SendParams {
    pub message: V03Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<V03SendConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03SendConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_output_modes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_length: Option<i32>,
    /// Absent means blocking, as in v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notification_config: Option<V03PushConfig>,
}

/// A webhook, v0.3 style: nested under its task, authentication as a list
/// of schemes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03PushConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<V03PushAuthentication>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03PushAuthentication {
    #[serde(default)]
    pub schemes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

/// `TaskPushNotificationConfig` (v0.3): a task id and its nested config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03TaskPushConfig {
    pub task_id: String,
    pub push_notification_config: V03PushConfig,
}

/// What a v0.3 answer could not be made into.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Untranslatable(pub String);

// v1 → v0.3 (what we send).

fn part_to_v03(part: &Part) -> V03Part {
    let metadata = part.metadata.clone();
    let file = |bytes: Option<String>, uri: Option<String>| V03Part::File {
        file: V03File { bytes, uri, name: part.filename.clone(), mime_type: part.media_type.clone() },
        metadata: metadata.clone(),
    };
    match &part.content {
        PartContent::Text(text) => V03Part::Text { text: text.clone(), metadata: metadata.clone() },
        PartContent::Data(data) => {
            // v0.3 data parts hold objects only.
            let data = if data.is_object() { data.clone() } else { serde_json::json!({ "value": data }) };
            V03Part::Data { data, metadata: metadata.clone() }
        }
        PartContent::Raw(bytes) => file(Some(base64::engine::general_purpose::STANDARD.encode(bytes)), None),
        PartContent::Url(url) => file(None, Some(url.clone())),
    }
}

pub fn message_to_v03(message: &Message) -> V03Message {
    V03Message {
        kind: MessageKind::Is,
        message_id: message.message_id.clone(),
        role: if message.role == Role::Agent { V03Role::Agent } else { V03Role::User },
        parts: message.parts.iter().map(part_to_v03).collect(),
        context_id: message.context_id.clone(),
        task_id: message.task_id.clone(),
        metadata: message.metadata.clone(),
        extensions: message.extensions.clone(),
        reference_task_ids: message.reference_task_ids.clone(),
    }
}

/// `SendMessageRequest` → `MessageSendParams`. Blocking unless the request
/// asks to return at once (v1's default is to wait too).
pub fn send_params(request: &SendMessageRequest) -> V03SendParams {
    let configuration = request.configuration.as_ref().map(|c| V03SendConfiguration {
        accepted_output_modes: c.accepted_output_modes.clone(),
        history_length: c.history_length,
        blocking: Some(c.return_immediately != Some(true)),
        push_notification_config: c
            .task_push_notification_config
            .as_ref()
            .map(|p| push_config_to_v03(p).push_notification_config),
    });
    V03SendParams { message: message_to_v03(&request.message), configuration, metadata: request.metadata.clone() }
}

pub fn state_to_v03(state: &TaskState) -> V03State {
    match state {
        TaskState::Submitted => V03State::Submitted,
        TaskState::Working => V03State::Working,
        TaskState::InputRequired => V03State::InputRequired,
        TaskState::Completed => V03State::Completed,
        TaskState::Canceled => V03State::Canceled,
        TaskState::Failed => V03State::Failed,
        TaskState::Rejected => V03State::Rejected,
        TaskState::AuthRequired => V03State::AuthRequired,
        TaskState::Unspecified => V03State::Unknown,
    }
}

pub fn status_to_v03(status: &TaskStatus) -> V03Status {
    V03Status {
        state: state_to_v03(&status.state),
        message: status.message.as_ref().map(message_to_v03),
        timestamp: status.timestamp,
    }
}

pub fn artifact_to_v03(artifact: &Artifact) -> V03Artifact {
    V03Artifact {
        artifact_id: artifact.artifact_id.clone(),
        parts: artifact.parts.iter().map(part_to_v03).collect(),
        name: artifact.name.clone(),
        description: artifact.description.clone(),
        metadata: artifact.metadata.clone(),
        extensions: artifact.extensions.clone(),
    }
}

pub fn task_to_v03(task: &Task) -> V03Task {
    V03Task {
        kind: TaskKind::Is,
        id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: status_to_v03(&task.status),
        history: task.history.as_ref().map(|h| h.iter().map(message_to_v03).collect()),
        artifacts: task.artifacts.as_ref().map(|a| a.iter().map(artifact_to_v03).collect()),
        metadata: task.metadata.clone(),
    }
}

/// A v1 stream event as v0.3 sends it: a bare object with its `kind`, and
/// `final` on a status update that ends the stream (a terminal state, or
/// one that waits for the client).
pub fn stream_response_to_v03(response: &StreamResponse) -> V03Result {
    match response {
        StreamResponse::Task(task) => V03Result::Task(task_to_v03(task)),
        StreamResponse::Message(message) => V03Result::Message(message_to_v03(message)),
        StreamResponse::StatusUpdate(update) => {
            let state = &update.status.state;
            V03Result::StatusUpdate(V03StatusUpdate {
                kind: StatusUpdateKind::Is,
                task_id: update.task_id.clone(),
                context_id: update.context_id.clone(),
                status: status_to_v03(&update.status),
                last: state.is_terminal() || matches!(state, TaskState::InputRequired | TaskState::AuthRequired),
                metadata: update.metadata.clone(),
            })
        }
        StreamResponse::ArtifactUpdate(update) => V03Result::ArtifactUpdate(V03ArtifactUpdate {
            kind: ArtifactUpdateKind::Is,
            task_id: update.task_id.clone(),
            context_id: update.context_id.clone(),
            artifact: artifact_to_v03(&update.artifact),
            append: update.append,
            last_chunk: update.last_chunk,
            metadata: update.metadata.clone(),
        }),
    }
}

/// `SendMessageResponse` as v0.3 answers `message/send`: the bare object.
pub fn send_response_to_v03(response: &SendMessageResponse) -> V03Result {
    match response {
        SendMessageResponse::Task(task) => V03Result::Task(task_to_v03(task)),
        SendMessageResponse::Message(message) => V03Result::Message(message_to_v03(message)),
    }
}

pub fn push_config_to_v03(config: &TaskPushNotificationConfig) -> V03TaskPushConfig {
    V03TaskPushConfig {
        task_id: config.task_id.clone(),
        push_notification_config: V03PushConfig {
            url: config.url.clone(),
            id: config.id.clone(),
            token: config.token.clone(),
            authentication: config
                .authentication
                .as_ref()
                .map(|a| V03PushAuthentication { schemes: vec![a.scheme.clone()], credentials: a.credentials.clone() }),
        },
    }
}

/// A v0.3 webhook for `task_id`; of its schemes, the first is kept (v1
/// has one).
pub fn push_config_from_v03(task_id: &str, config: V03PushConfig) -> TaskPushNotificationConfig {
    TaskPushNotificationConfig {
        url: config.url,
        id: config.id,
        task_id: task_id.to_owned(),
        token: config.token,
        authentication: config.authentication.and_then(|a| {
            Some(AuthenticationInfo { scheme: a.schemes.into_iter().next()?, credentials: a.credentials })
        }),
        tenant: None,
    }
}

/// `MessageSendParams` (from a v0.3 client) → `SendMessageRequest`.
pub fn send_request_from_v03(params: V03SendParams) -> Result<SendMessageRequest, Untranslatable> {
    let configuration = params.configuration.map(|c| SendMessageConfiguration {
        accepted_output_modes: c.accepted_output_modes,
        task_push_notification_config: c.push_notification_config.map(|p| push_config_from_v03("", p)),
        history_length: c.history_length,
        return_immediately: c.blocking.map(|blocking| !blocking),
    });
    Ok(SendMessageRequest {
        message: message_from_v03(params.message)?,
        configuration,
        metadata: params.metadata,
        tenant: None,
    })
}

// v0.3 → v1 (what we receive).

fn part_from_v03(part: V03Part) -> Result<Part, Untranslatable> {
    Ok(match part {
        V03Part::Text { text, metadata } => Part { metadata, ..Part::text(text) },
        V03Part::Data { data, metadata } => Part { metadata, ..Part::data(data) },
        V03Part::File { file, metadata } => {
            let content = match (file.bytes, file.uri) {
                (Some(bytes), None) => PartContent::Raw(
                    base64::engine::general_purpose::STANDARD
                        .decode(bytes.as_bytes())
                        .map_err(|_| Untranslatable("a file part's bytes are not base64".into()))?,
                ),
                (None, Some(uri)) => PartContent::Url(uri),
                _ => return Err(Untranslatable("a file part needs exactly one of bytes and uri".into())),
            };
            Part { content, filename: file.name, media_type: file.mime_type, metadata }
        }
    })
}

fn parts_from_v03(parts: Vec<V03Part>) -> Result<Vec<Part>, Untranslatable> {
    parts.into_iter().map(part_from_v03).collect()
}

pub fn message_from_v03(message: V03Message) -> Result<Message, Untranslatable> {
    Ok(Message {
        message_id: message.message_id,
        context_id: message.context_id,
        task_id: message.task_id,
        role: match message.role {
            V03Role::User => Role::User,
            V03Role::Agent => Role::Agent,
        },
        parts: parts_from_v03(message.parts)?,
        metadata: message.metadata,
        extensions: message.extensions,
        reference_task_ids: message.reference_task_ids,
    })
}

fn state_from_v03(state: V03State) -> TaskState {
    match state {
        V03State::Submitted => TaskState::Submitted,
        V03State::Working => TaskState::Working,
        V03State::InputRequired => TaskState::InputRequired,
        V03State::Completed => TaskState::Completed,
        V03State::Canceled => TaskState::Canceled,
        V03State::Failed => TaskState::Failed,
        V03State::Rejected => TaskState::Rejected,
        V03State::AuthRequired => TaskState::AuthRequired,
        V03State::Unknown => TaskState::Unspecified,
    }
}

fn status_from_v03(status: V03Status) -> Result<TaskStatus, Untranslatable> {
    Ok(TaskStatus {
        state: state_from_v03(status.state),
        message: status.message.map(message_from_v03).transpose()?,
        timestamp: status.timestamp,
    })
}

fn artifact_from_v03(artifact: V03Artifact) -> Result<Artifact, Untranslatable> {
    Ok(Artifact {
        artifact_id: artifact.artifact_id,
        name: artifact.name,
        description: artifact.description,
        parts: parts_from_v03(artifact.parts)?,
        metadata: artifact.metadata,
        extensions: artifact.extensions,
    })
}

pub fn task_from_v03(task: V03Task) -> Result<Task, Untranslatable> {
    Ok(Task {
        id: task.id,
        context_id: task.context_id,
        status: status_from_v03(task.status)?,
        artifacts: task.artifacts.map(|a| a.into_iter().map(artifact_from_v03).collect()).transpose()?,
        history: task.history.map(|h| h.into_iter().map(message_from_v03).collect()).transpose()?,
        metadata: task.metadata,
    })
}

/// A streamed (or returned) v0.3 object as a v1 `StreamResponse`.
pub fn stream_response_from_v03(result: V03Result) -> Result<StreamResponse, Untranslatable> {
    Ok(match result {
        V03Result::Task(task) => StreamResponse::Task(task_from_v03(task)?),
        V03Result::Message(message) => StreamResponse::Message(message_from_v03(message)?),
        V03Result::StatusUpdate(update) => StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: update.task_id,
            context_id: update.context_id,
            status: status_from_v03(update.status)?,
            metadata: update.metadata,
        }),
        V03Result::ArtifactUpdate(update) => StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
            task_id: update.task_id,
            context_id: update.context_id,
            artifact: artifact_from_v03(update.artifact)?,
            append: update.append,
            last_chunk: update.last_chunk,
            metadata: update.metadata,
        }),
    })
}

/// `message/send`'s answer: a task or a message, nothing else.
pub fn send_response_from_v03(result: V03Result) -> Result<SendMessageResponse, Untranslatable> {
    match stream_response_from_v03(result)? {
        StreamResponse::Task(task) => Ok(SendMessageResponse::Task(task)),
        StreamResponse::Message(message) => Ok(SendMessageResponse::Message(message)),
        _ => Err(Untranslatable("message/send answered with an event, not a task or a message".into())),
    }
}

/// `tasks/get`'s and `tasks/cancel`'s answer.
pub fn task_result_from_v03(result: V03Result) -> Result<Task, Untranslatable> {
    match result {
        V03Result::Task(task) => task_from_v03(task),
        _ => Err(Untranslatable("expected a task".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v03_answers_become_the_v1_model() {
        let task: V03Result = serde_json::from_value(json!({
            "kind": "task", "id": "t", "contextId": "c",
            "status": {"state": "input-required", "message": {"kind": "message", "messageId": "q", "role": "agent",
                        "parts": [{"kind": "text", "text": "which?"}]}},
            "artifacts": [{"artifactId": "a", "parts": [
                {"kind": "file", "file": {"bytes": "aGk=", "name": "f.txt", "mimeType": "text/plain"}},
                {"kind": "data", "data": {"k": 1}}]}]
        }))
        .expect("a v0.3 task");
        let task = task_result_from_v03(task).expect("translates");
        assert_eq!(task.status.state, TaskState::InputRequired);
        assert_eq!(task.status.message.as_ref().map(|m| m.role.clone()), Some(Role::Agent));
        let parts = &task.artifacts.as_ref().expect("artifacts")[0].parts;
        assert_eq!(parts[0].content, PartContent::Raw(b"hi".to_vec()));
        assert_eq!(parts[0].filename.as_deref(), Some("f.txt"));
        assert_eq!(parts[1].content, PartContent::Data(json!({"k": 1})));

        let update: V03Result = serde_json::from_value(json!({
            "kind": "status-update", "taskId": "t", "contextId": "c", "final": true,
            "status": {"state": "completed", "timestamp": "2026-01-01T00:00:00Z"}
        }))
        .expect("an update");
        let StreamResponse::StatusUpdate(update) = stream_response_from_v03(update).expect("translates") else {
            panic!("a status update");
        };
        assert_eq!(update.status.state, TaskState::Completed);

        let bad: V03Result = serde_json::from_value(json!({"kind": "message", "messageId": "m", "role": "agent",
            "parts": [{"kind": "file", "file": {"bytes": "***"}}]}))
        .expect("parses");
        assert!(stream_response_from_v03(bad).is_err());
    }

    #[test]
    fn v1_tasks_and_events_go_out_in_v03_form() {
        let task: Task = serde_json::from_value(json!({
            "id": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED"},
            "history": [{"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "?"}, {"data": [1, 2]}]}]
        }))
        .expect("a v1 task");
        let wire = serde_json::to_value(V03Result::Task(task_to_v03(&task))).expect("serialises");
        assert_eq!(wire["kind"], "task");
        assert_eq!(wire["status"]["state"], "input-required");
        assert_eq!(wire["history"][0]["role"], "agent");
        assert_eq!(wire["history"][0]["kind"], "message", "a message says so wherever it is");
        assert_eq!(wire["history"][0]["parts"][0], json!({"kind": "text", "text": "?"}));
        assert_eq!(wire["history"][0]["parts"][1], json!({"kind": "data", "data": {"value": [1, 2]}}));
        let update = StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: "t".into(),
            context_id: "c".into(),
            status: TaskStatus { state: TaskState::InputRequired, message: None, timestamp: None },
            metadata: None,
        });
        let wire = serde_json::to_value(stream_response_to_v03(&update)).expect("serialises");
        assert_eq!((wire["kind"].as_str(), wire["final"].as_bool()), (Some("status-update"), Some(true)));
    }

    #[test]
    fn v1_requests_go_out_in_v03_form() {
        let mut message = Message::new(Role::User, vec![Part::text("hi"), Part::raw(b"hi".to_vec())]);
        message.task_id = Some("t".into());
        let request = SendMessageRequest {
            message,
            configuration: Some(SendMessageConfiguration {
                accepted_output_modes: None,
                task_push_notification_config: None,
                history_length: Some(3),
                return_immediately: Some(true),
            }),
            metadata: None,
            tenant: None,
        };
        let wire = serde_json::to_value(send_params(&request)).expect("serialises");
        assert_eq!(wire["message"]["kind"], "message");
        assert_eq!(wire["message"]["role"], "user");
        assert_eq!(wire["message"]["taskId"], "t");
        assert_eq!(wire["message"]["parts"][0], json!({"kind": "text", "text": "hi"}));
        assert_eq!(wire["message"]["parts"][1]["file"]["bytes"], "aGk=");
        assert_eq!(wire["configuration"], json!({"historyLength": 3, "blocking": false}));
        // And a v0.3 client's params come back as the same request.
        let back = send_request_from_v03(serde_json::from_value(wire).expect("params")).expect("translates");
        assert_eq!(back.message, request.message);
        assert_eq!(back.configuration.and_then(|c| c.return_immediately), Some(true));
    }
}
