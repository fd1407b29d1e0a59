//! The A2A v0.3 protobuf model (`a2a.v1`, generated from
//! `proto/a2a_v03.proto`), which the v0.3 gRPC service speaks on the wire
//! and the v0.3 HTTP+JSON binding speaks as ProtoJSON, and its translation
//! to and from the v0.3 model of the JSON-RPC compatibility layer
//! (`switchyard_engine::v03`). The three v0.3 bindings then share one path
//! to the handler, [`crate::compat::dispatch`]; nothing past this module
//! sees a v0.3 protobuf.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;
use switchyard_engine::v03::{
    self, MessageKind, V03Artifact, V03ArtifactUpdate, V03File, V03Message, V03Part, V03PushAuthentication,
    V03PushConfig, V03Result, V03Role, V03SendConfiguration, V03SendParams, V03State, V03Status, V03StatusUpdate,
    V03Task, V03TaskPushConfig,
};

use crate::error::ApiError;

/// The generated types, server and ProtoJSON serde.
#[allow(
    unreachable_pub,
    missing_debug_implementations,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/a2a.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/a2a.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/a2a_v03.proto`, to hold it
/// equal to the official SDK's (a test does).
pub const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/a2a_v03.bin"));

/// The v0.3 service's fully qualified name.
pub const SERVICE: &str = "a2a.v1.A2AService";

type Metadata = Option<HashMap<String, Value>>;

fn metadata_from_pb(s: Option<pbjson_types::Struct>) -> Metadata {
    let Value::Object(map) = serde_json::to_value(s?).ok()? else { return None };
    Some(map.into_iter().collect())
}

fn struct_to_pb(map: &HashMap<String, Value>) -> Option<pbjson_types::Struct> {
    serde_json::from_value(Value::Object(map.clone().into_iter().collect())).ok()
}

fn metadata_to_pb(m: &Metadata) -> Option<pbjson_types::Struct> {
    m.as_ref().and_then(struct_to_pb)
}

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn list(v: Vec<String>) -> Option<Vec<String>> {
    Some(v).filter(|v| !v.is_empty())
}

// v0.3 protobuf → v0.3 model (what a client sends).

fn part_from_pb(part: pb::Part, at: &str) -> Result<V03Part, ApiError> {
    use pb::file_part::File;
    use pb::part::Part as Content;
    let metadata = metadata_from_pb(part.metadata);
    Ok(match part.part {
        Some(Content::Text(text)) => V03Part::Text { text, metadata },
        Some(Content::Data(data)) => V03Part::Data {
            data: data.data.and_then(|d| serde_json::to_value(d).ok()).unwrap_or(Value::Object(Default::default())),
            metadata,
        },
        Some(Content::File(file)) => {
            let (bytes, uri) = match file.file {
                Some(File::FileWithUri(uri)) => (None, Some(uri)),
                Some(File::FileWithBytes(bytes)) => {
                    (Some(base64::engine::general_purpose::STANDARD.encode(bytes)), None)
                }
                None => {
                    return Err(ApiError::invalid_field(&format!("{at}.file"), "needs fileWithUri or fileWithBytes"));
                }
            };
            V03Part::File {
                file: V03File { bytes, uri, name: some(file.name), mime_type: some(file.mime_type) },
                metadata,
            }
        }
        None => return Err(ApiError::invalid_field(at, "needs text, file or data")),
    })
}

fn message_from_pb(message: pb::Message, at: &str) -> Result<V03Message, ApiError> {
    let role = match pb::Role::try_from(message.role) {
        Ok(pb::Role::User) => V03Role::User,
        Ok(pb::Role::Agent) => V03Role::Agent,
        _ => return Err(ApiError::invalid_field(&format!("{at}.role"), "must be ROLE_USER or ROLE_AGENT")),
    };
    let parts = message
        .content
        .into_iter()
        .enumerate()
        .map(|(i, p)| part_from_pb(p, &format!("{at}.content[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(V03Message {
        kind: MessageKind::Is,
        message_id: message.message_id,
        role,
        parts,
        context_id: some(message.context_id),
        task_id: some(message.task_id),
        metadata: metadata_from_pb(message.metadata),
        extensions: list(message.extensions),
        reference_task_ids: None,
    })
}

fn push_config_from_pb(config: pb::PushNotificationConfig) -> V03PushConfig {
    V03PushConfig {
        url: config.url,
        id: some(config.id),
        token: some(config.token),
        authentication: config
            .authentication
            .map(|a| V03PushAuthentication { schemes: a.schemes, credentials: some(a.credentials) }),
    }
}

/// `SendMessageRequest` → `MessageSendParams`. A configuration that is
/// there says whether to block (proto3: absent is false, as the 0.3 SDK
/// reads it); no configuration at all blocks, as in JSON-RPC.
pub fn send_params(request: pb::SendMessageRequest) -> Result<V03SendParams, ApiError> {
    let message = request.request.ok_or_else(|| ApiError::invalid_field("message", "is required"))?;
    Ok(V03SendParams {
        message: message_from_pb(message, "message")?,
        configuration: request.configuration.map(|c| V03SendConfiguration {
            accepted_output_modes: list(c.accepted_output_modes),
            history_length: Some(c.history_length).filter(|h| *h != 0),
            blocking: Some(c.blocking),
            push_notification_config: c.push_notification.map(push_config_from_pb),
        }),
        metadata: metadata_from_pb(request.metadata),
    })
}

/// A `CreateTaskPushNotificationConfigRequest` for `task` (the path's, or
/// its `parent`'s), as the JSON-RPC layer's `tasks/pushNotificationConfig/set`
/// params. The request's `configId` names the config when the config does not.
pub fn set_push_params(task: &str, request: pb::CreateTaskPushNotificationConfigRequest) -> Result<Value, ApiError> {
    let config = request
        .config
        .and_then(|c| c.push_notification_config)
        .ok_or_else(|| ApiError::invalid_field("config.pushNotificationConfig", "is required"))?;
    let mut config = push_config_from_pb(config);
    if config.id.is_none() {
        config.id = some(request.config_id);
    }
    Ok(serde_json::json!({ "taskId": task, "pushNotificationConfig": config }))
}

/// The task id in a resource name: `tasks/{id}`, or the id alone.
pub fn task_name(name: &str, field: &str) -> Result<String, ApiError> {
    let id = name.strip_prefix("tasks/").unwrap_or(name);
    if id.is_empty() || id.contains('/') {
        return Err(ApiError::invalid_field(field, "must be tasks/{task id}"));
    }
    Ok(id.to_owned())
}

/// The task and config ids in `tasks/{id}/pushNotificationConfigs/{config}`.
pub fn push_config_name(name: &str, field: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::invalid_field(field, "must be tasks/{task id}/pushNotificationConfigs/{config id}");
    let rest = name.strip_prefix("tasks/").ok_or_else(bad)?;
    let (task, config) = rest.split_once("/pushNotificationConfigs/").ok_or_else(bad)?;
    if task.is_empty() || config.is_empty() || task.contains('/') || config.contains('/') {
        return Err(bad());
    }
    Ok((task.to_owned(), config.to_owned()))
}

// v0.3 model → v0.3 protobuf (what a client is answered).

fn part_to_pb(part: &V03Part) -> pb::Part {
    use pb::file_part::File;
    use pb::part::Part as Content;
    let (content, metadata) = match part {
        V03Part::Text { text, metadata } => (Content::Text(text.clone()), metadata),
        V03Part::Data { data, metadata } => {
            let data = match data {
                Value::Object(map) => struct_to_pb(&map.clone().into_iter().collect()),
                _ => None,
            };
            (Content::Data(pb::DataPart { data }), metadata)
        }
        V03Part::File { file, metadata } => {
            let content = match (&file.uri, &file.bytes) {
                (Some(uri), _) => Some(File::FileWithUri(uri.clone())),
                (None, Some(bytes)) => {
                    base64::engine::general_purpose::STANDARD.decode(bytes).ok().map(File::FileWithBytes)
                }
                (None, None) => None,
            };
            let file = pb::FilePart {
                file: content,
                mime_type: file.mime_type.clone().unwrap_or_default(),
                name: file.name.clone().unwrap_or_default(),
            };
            (Content::File(file), metadata)
        }
    };
    pb::Part { part: Some(content), metadata: metadata_to_pb(metadata) }
}

fn message_to_pb(message: &V03Message) -> pb::Message {
    pb::Message {
        message_id: message.message_id.clone(),
        context_id: message.context_id.clone().unwrap_or_default(),
        task_id: message.task_id.clone().unwrap_or_default(),
        role: match message.role {
            V03Role::User => pb::Role::User,
            V03Role::Agent => pb::Role::Agent,
        } as i32,
        content: message.parts.iter().map(part_to_pb).collect(),
        metadata: metadata_to_pb(&message.metadata),
        extensions: message.extensions.clone().unwrap_or_default(),
    }
}

fn state_to_pb(state: V03State) -> pb::TaskState {
    match state {
        V03State::Submitted => pb::TaskState::Submitted,
        V03State::Working => pb::TaskState::Working,
        V03State::InputRequired => pb::TaskState::InputRequired,
        V03State::Completed => pb::TaskState::Completed,
        V03State::Canceled => pb::TaskState::Cancelled,
        V03State::Failed => pb::TaskState::Failed,
        V03State::Rejected => pb::TaskState::Rejected,
        V03State::AuthRequired => pb::TaskState::AuthRequired,
        V03State::Unknown => pb::TaskState::Unspecified,
    }
}

fn status_to_pb(status: &V03Status) -> pb::TaskStatus {
    pb::TaskStatus {
        state: state_to_pb(status.state) as i32,
        update: status.message.as_ref().map(message_to_pb),
        timestamp: status.timestamp.map(|t| pbjson_types::Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
        }),
    }
}

fn artifact_to_pb(artifact: &V03Artifact) -> pb::Artifact {
    pb::Artifact {
        artifact_id: artifact.artifact_id.clone(),
        name: artifact.name.clone().unwrap_or_default(),
        description: artifact.description.clone().unwrap_or_default(),
        parts: artifact.parts.iter().map(part_to_pb).collect(),
        metadata: metadata_to_pb(&artifact.metadata),
        extensions: artifact.extensions.clone().unwrap_or_default(),
    }
}

pub fn task_to_pb(task: &V03Task) -> pb::Task {
    pb::Task {
        id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: Some(status_to_pb(&task.status)),
        artifacts: task.artifacts.iter().flatten().map(artifact_to_pb).collect(),
        history: task.history.iter().flatten().map(message_to_pb).collect(),
        metadata: metadata_to_pb(&task.metadata),
    }
}

fn status_update_to_pb(update: &V03StatusUpdate) -> pb::TaskStatusUpdateEvent {
    pb::TaskStatusUpdateEvent {
        task_id: update.task_id.clone(),
        context_id: update.context_id.clone(),
        status: Some(status_to_pb(&update.status)),
        r#final: update.last,
        metadata: metadata_to_pb(&update.metadata),
    }
}

fn artifact_update_to_pb(update: &V03ArtifactUpdate) -> pb::TaskArtifactUpdateEvent {
    pb::TaskArtifactUpdateEvent {
        task_id: update.task_id.clone(),
        context_id: update.context_id.clone(),
        artifact: Some(artifact_to_pb(&update.artifact)),
        append: update.append.unwrap_or(false),
        last_chunk: update.last_chunk.unwrap_or(false),
        metadata: metadata_to_pb(&update.metadata),
    }
}

/// A stream event (any of the four).
pub fn stream_response_to_pb(result: &V03Result) -> pb::StreamResponse {
    use pb::stream_response::Payload;
    let payload = match result {
        V03Result::Task(task) => Payload::Task(task_to_pb(task)),
        V03Result::Message(message) => Payload::Msg(message_to_pb(message)),
        V03Result::StatusUpdate(update) => Payload::StatusUpdate(status_update_to_pb(update)),
        V03Result::ArtifactUpdate(update) => Payload::ArtifactUpdate(artifact_update_to_pb(update)),
    };
    pb::StreamResponse { payload: Some(payload) }
}

/// What `message/send` answered: a task or a message.
pub fn send_response_to_pb(result: &V03Result) -> pb::SendMessageResponse {
    use pb::send_message_response::Payload;
    let payload = match result {
        V03Result::Message(message) => Some(Payload::Msg(message_to_pb(message))),
        V03Result::Task(task) => Some(Payload::Task(task_to_pb(task))),
        // Not an answer to a send; never produced by the handler.
        V03Result::StatusUpdate(_) | V03Result::ArtifactUpdate(_) => None,
    };
    pb::SendMessageResponse { payload }
}

pub fn push_config_to_pb(config: &V03TaskPushConfig) -> pb::TaskPushNotificationConfig {
    let inner = &config.push_notification_config;
    let id = inner.id.clone().unwrap_or_default();
    pb::TaskPushNotificationConfig {
        name: format!("tasks/{}/pushNotificationConfigs/{id}", config.task_id),
        push_notification_config: Some(pb::PushNotificationConfig {
            id,
            url: inner.url.clone(),
            token: inner.token.clone().unwrap_or_default(),
            authentication: inner.authentication.as_ref().map(|a| pb::AuthenticationInfo {
                schemes: a.schemes.clone(),
                credentials: a.credentials.clone().unwrap_or_default(),
            }),
        }),
    }
}

/// The card as a v0.3 client reads it: the v1 card's content, this
/// server's v0.3 interfaces.
pub fn card_to_pb(card: &a2a::AgentCard, url: &str, interfaces: &[(String, &'static str)]) -> pb::AgentCard {
    pb::AgentCard {
        protocol_version: v03::VERSION.into(),
        name: card.name.clone(),
        description: card.description.clone(),
        url: url.to_owned(),
        preferred_transport: "JSONRPC".into(),
        additional_interfaces: interfaces
            .iter()
            .map(|(url, transport)| pb::AgentInterface { url: url.clone(), transport: (*transport).into() })
            .collect(),
        provider: card
            .provider
            .as_ref()
            .map(|p| pb::AgentProvider { url: p.url.clone(), organization: p.organization.clone() }),
        version: card.version.clone(),
        documentation_url: card.documentation_url.clone().unwrap_or_default(),
        capabilities: Some(pb::AgentCapabilities {
            streaming: card.capabilities.streaming.unwrap_or(false),
            push_notifications: card.capabilities.push_notifications.unwrap_or(false),
            extensions: Vec::new(),
        }),
        default_input_modes: card.default_input_modes.clone(),
        default_output_modes: card.default_output_modes.clone(),
        skills: card
            .skills
            .iter()
            .map(|s| pb::AgentSkill {
                id: s.id.clone(),
                name: s.name.clone(),
                description: s.description.clone(),
                tags: s.tags.clone(),
                examples: s.examples.clone().unwrap_or_default(),
                input_modes: s.input_modes.clone().unwrap_or_default(),
                output_modes: s.output_modes.clone().unwrap_or_default(),
            })
            .collect(),
        supports_authenticated_extended_card: true,
        icon_url: card.icon_url.clone().unwrap_or_default(),
    }
}

/// A JSON-RPC layer result (a `V03Result` as JSON) read back.
pub fn result(value: Value) -> Result<V03Result, ApiError> {
    serde_json::from_value(value).map_err(|_| ApiError::Internal)
}

/// A JSON-RPC layer result that is one webhook config.
pub fn push_config_result(value: Value) -> Result<pb::TaskPushNotificationConfig, ApiError> {
    let config = serde_json::from_value(value).map_err(|_| ApiError::Internal)?;
    Ok(push_config_to_pb(&config))
}

/// A JSON-RPC layer result that is a task's webhook configs.
pub fn push_configs_result(value: Value) -> Result<pb::ListTaskPushNotificationConfigResponse, ApiError> {
    let configs = match value {
        Value::Array(items) => items.into_iter().map(push_config_result).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(pb::ListTaskPushNotificationConfigResponse { configs, next_page_token: String::new() })
}

/// A JSON-RPC layer result that is a task.
pub fn task_result(value: Value) -> Result<pb::Task, ApiError> {
    match result(value)? {
        V03Result::Task(task) => Ok(task_to_pb(&task)),
        _ => Err(ApiError::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protojson_requests_read_as_the_sdk_writes_them() {
        // What the official 0.3 SDK's REST transport POSTs (MessageToDict).
        let body = serde_json::json!({
            "message": {"messageId": "m-1", "role": "ROLE_USER", "content": [
                {"text": "hi"},
                {"file": {"fileWithUri": "https://x/y.png", "mimeType": "image/png", "name": "y.png"}},
                {"file": {"fileWithBytes": "aGk="}},
                {"data": {"data": {"a": 1}}},
            ], "metadata": {"k": "v"}},
            "configuration": {"acceptedOutputModes": ["text/plain"], "blocking": true, "historyLength": 2},
        });
        let request: pb::SendMessageRequest = serde_json::from_value(body).expect("protojson");
        let params = send_params(request).expect("translates");
        assert_eq!(params.message.parts.len(), 4);
        assert!(
            matches!(&params.message.parts[2], V03Part::File { file, .. } if file.bytes.as_deref() == Some("aGk="))
        );
        let configuration = params.configuration.expect("configuration");
        assert_eq!((configuration.blocking, configuration.history_length), (Some(true), Some(2)));
        // Proto field names are read too, as ProtoJSON asks.
        let snake =
            serde_json::json!({"request": {"message_id": "m", "role": "ROLE_USER", "content": [{"text": "x"}]}});
        let request: pb::SendMessageRequest = serde_json::from_value(snake).expect("protojson");
        assert_eq!(send_params(request).expect("translates").message.message_id, "m");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let no_role = pb::SendMessageRequest {
            request: Some(pb::Message { message_id: "m".into(), ..Default::default() }),
            ..Default::default()
        };
        let ApiError::InvalidParams { field, .. } = send_params(no_role).expect_err("refused") else { panic!() };
        assert_eq!(field.as_deref(), Some("message.role"));
        let empty_part = pb::SendMessageRequest {
            request: Some(pb::Message {
                role: pb::Role::User as i32,
                content: vec![pb::Part::default()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let ApiError::InvalidParams { field, .. } = send_params(empty_part).expect_err("refused") else { panic!() };
        assert_eq!(field.as_deref(), Some("message.content[0]"));
        assert!(task_name("tasks/a/b", "name").is_err());
        assert_eq!(task_name("tasks/abc", "name").expect("name"), "abc");
        assert_eq!(
            push_config_name("tasks/t/pushNotificationConfigs/c", "name").expect("name"),
            ("t".to_owned(), "c".to_owned())
        );
        assert!(push_config_name("tasks/t", "name").is_err());
    }

    #[test]
    fn answers_are_written_as_v03_protojson() {
        let task: V03Task = serde_json::from_value(serde_json::json!({
            "kind": "task", "id": "t", "contextId": "c",
            "status": {"state": "canceled", "timestamp": "2026-12-06T05:00:00.5Z",
                       "message": {"kind": "message", "messageId": "m", "role": "agent",
                                   "parts": [{"kind": "text", "text": "bye"}]}},
        }))
        .expect("task");
        let json = serde_json::to_value(task_to_pb(&task)).expect("json");
        assert_eq!(json["status"]["state"], "TASK_STATE_CANCELLED");
        assert_eq!(json["status"]["message"]["role"], "ROLE_AGENT");
        assert_eq!(json["status"]["message"]["content"][0]["text"], "bye");
        let at = json["status"]["timestamp"].as_str().expect("RFC 3339");
        assert_eq!(chrono::DateTime::parse_from_rfc3339(at).expect("time").timestamp_millis(), 1_796_533_200_500);
        assert_eq!(json["contextId"], "c");
    }
}
