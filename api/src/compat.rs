//! The v0.3 compatibility layer: v0.3 JSON-RPC methods and shapes are
//! translated to v1 in front of the same handler, and results back, so a
//! v0.3 client sees only v0.3 and the handler only v1 (PROTOCOL.md §15).

use a2a::{CancelTaskRequest, GetTaskRequest, SubscribeToTaskRequest, TaskPushNotificationConfig};
use serde_json::{Map, Value, json};
use switchyard_engine::Caller;
use switchyard_engine::wire::{self, message_to_v03, task_to_v03};

use crate::error::ApiError;
use crate::events::StreamItem;
use crate::handler::A2aHandler;
use crate::jsonrpc::Reply;
use crate::validate::{self, Intake};

/// Whether `method` is a v0.3 JSON-RPC method name.
pub fn is_v03_method(method: &str) -> bool {
    method.contains('/')
}

/// Runs a v0.3 call through the v1 handler.
pub async fn dispatch(
    handler: &A2aHandler,
    caller: &Caller,
    method: &str,
    params: Value,
    mut intake: Intake,
) -> Result<Reply, ApiError> {
    // Webhooks registered through this binding get v0.3 payloads.
    intake.v03 = true;
    match method {
        "message/send" => {
            let request = validate::send_request(send_params(&params)?)?;
            let response = handler.send_message(caller, request, intake).await?;
            let v1 = serde_json::to_value(response).unwrap_or(Value::Null);
            Ok(Reply::Value(match (v1.get("task"), v1.get("message")) {
                (Some(task), _) => task_to_v03(task),
                (None, Some(message)) => message_to_v03(message),
                _ => Value::Null,
            }))
        }
        "message/stream" => {
            let request = validate::send_request(send_params(&params)?)?;
            Ok(Reply::Stream(handler.send_streaming_message(caller, request, intake).await?))
        }
        "tasks/get" => {
            let request = GetTaskRequest {
                id: string_field(&params, "id")?,
                history_length: optional_i32(&params, "historyLength")?,
                tenant: None,
            };
            let task = handler.get_task(caller, request).await?;
            Ok(Reply::Value(task_to_v03(&serde_json::to_value(task).unwrap_or(Value::Null))))
        }
        "tasks/cancel" => {
            let request = CancelTaskRequest { id: string_field(&params, "id")?, metadata: None, tenant: None };
            let task = handler.cancel_task(caller, request).await?;
            Ok(Reply::Value(task_to_v03(&serde_json::to_value(task).unwrap_or(Value::Null))))
        }
        "tasks/resubscribe" => {
            let request = SubscribeToTaskRequest { id: string_field(&params, "id")?, tenant: None };
            Ok(Reply::Stream(handler.subscribe(caller, request, None).await?))
        }
        "tasks/pushNotificationConfig/set" => {
            let task_id = string_field(&params, "taskId")?;
            let nested = params
                .get("pushNotificationConfig")
                .ok_or_else(|| ApiError::invalid_field("pushNotificationConfig", "is required"))?;
            let config = push_config_from_v03(&task_id, nested)?;
            let stored = handler.create_push_config(caller, config, true).await?;
            Ok(Reply::Value(push_config_to_v03(&stored)))
        }
        "tasks/pushNotificationConfig/get" => {
            let task_id = string_field(&params, "id")?;
            let config = match params.get("pushNotificationConfigId").and_then(Value::as_str) {
                Some(id) => handler.get_push_config(caller, &task_id, id).await?,
                // v0.3 allowed asking for "the" config of a task.
                None => handler
                    .list_push_configs(caller, &task_id, Some(1), None)
                    .await?
                    .configs
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::PushConfigNotFound { task: task_id.clone(), config: String::new() })?,
            };
            Ok(Reply::Value(push_config_to_v03(&config)))
        }
        "tasks/pushNotificationConfig/list" => {
            let task_id = string_field(&params, "id")?;
            let list = handler.list_push_configs(caller, &task_id, None, None).await?;
            Ok(Reply::Value(Value::Array(list.configs.iter().map(push_config_to_v03).collect())))
        }
        "tasks/pushNotificationConfig/delete" => {
            let task_id = string_field(&params, "id")?;
            let id = string_field(&params, "pushNotificationConfigId")?;
            handler.delete_push_config(caller, &task_id, &id).await?;
            Ok(Reply::Value(Value::Null))
        }
        "agent/getAuthenticatedExtendedCard" => {
            let card = handler.extended_card(caller).await?;
            Ok(Reply::Value(serde_json::to_value(card).unwrap_or(Value::Null)))
        }
        other => Err(ApiError::MethodNotFound(other.to_owned())),
    }
}

/// The v0.3 error object: codes added in v1 become UnsupportedOperation.
pub fn error_to_v03(error: &ApiError) -> Value {
    let mut value = error.to_jsonrpc();
    if matches!(value["code"].as_i64(), Some(-32009 | -32008)) {
        value["code"] = json!(-32004);
    }
    value
}

/// A stream item in v0.3 shape: bare objects with `kind`, `final` on status.
pub fn stream_item_to_v03(item: &StreamItem) -> Result<Value, ApiError> {
    let response = item.event.as_ref().map_err(Clone::clone)?;
    Ok(wire::stream_response_to_v03(response))
}

fn string_field(params: &Value, field: &str) -> Result<String, ApiError> {
    match params.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::invalid_field(field, "is required and must be a non-empty string")),
    }
}

fn optional_i32(params: &Value, field: &str) -> Result<Option<i32>, ApiError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid_field(field, "must be an integer")),
    }
}

/// `MessageSendParams` (v0.3) → `SendMessageRequest` (v1), as JSON.
fn send_params(params: &Value) -> Result<Value, ApiError> {
    let message = params.get("message").ok_or_else(|| ApiError::invalid_field("message", "is required"))?;
    let mut request = json!({ "message": message_from_v03(message)? });
    if let Some(config) = params.get("configuration").filter(|c| c.is_object()) {
        let mut v1 = Map::new();
        if let Some(modes) = config.get("acceptedOutputModes") {
            v1.insert("acceptedOutputModes".into(), modes.clone());
        }
        if let Some(length) = config.get("historyLength") {
            v1.insert("historyLength".into(), length.clone());
        }
        if let Some(blocking) = config.get("blocking").and_then(Value::as_bool) {
            v1.insert("returnImmediately".into(), json!(!blocking));
        }
        if let Some(push) = config.get("pushNotificationConfig").filter(|p| p.is_object()) {
            let flat = push_config_from_v03("", push)?;
            v1.insert("taskPushNotificationConfig".into(), serde_json::to_value(flat).unwrap_or(Value::Null));
        }
        request["configuration"] = Value::Object(v1);
    }
    if let Some(metadata) = params.get("metadata") {
        request["metadata"] = metadata.clone();
    }
    Ok(request)
}

fn message_from_v03(message: &Value) -> Result<Value, ApiError> {
    let mut v1 = Map::new();
    for key in ["messageId", "contextId", "taskId", "metadata", "extensions", "referenceTaskIds"] {
        if let Some(value) = message.get(key) {
            v1.insert(key.into(), value.clone());
        }
    }
    let role = match message.get("role").and_then(Value::as_str) {
        Some("user") => "ROLE_USER",
        Some("agent") => "ROLE_AGENT",
        _ => return Err(ApiError::invalid_field("message.role", "must be \"user\"")),
    };
    v1.insert("role".into(), json!(role));
    let parts = message
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_field("message.parts", "is required and must be an array"))?;
    let parts = parts.iter().enumerate().map(|(i, p)| part_from_v03(i, p)).collect::<Result<Vec<_>, _>>()?;
    v1.insert("parts".into(), Value::Array(parts));
    Ok(Value::Object(v1))
}

fn part_from_v03(index: usize, part: &Value) -> Result<Value, ApiError> {
    let field = format!("message.parts[{index}]");
    let mut v1 = match part.get("kind").and_then(Value::as_str) {
        Some("text") => json!({ "text": part.get("text").cloned().unwrap_or(Value::Null) }),
        Some("data") => json!({ "data": part.get("data").cloned().unwrap_or(Value::Null) }),
        Some("file") => {
            let file = part.get("file").ok_or_else(|| ApiError::invalid_field(&field, "a file part needs `file`"))?;
            let mut v1 = match (file.get("bytes"), file.get("uri")) {
                (Some(bytes), None) => json!({ "raw": bytes }),
                (None, Some(uri)) => json!({ "url": uri }),
                _ => {
                    return Err(ApiError::invalid_field(&field, "a file needs exactly one of bytes, uri"));
                }
            };
            if let Some(name) = file.get("name") {
                v1["filename"] = name.clone();
            }
            if let Some(mime) = file.get("mimeType") {
                v1["mediaType"] = mime.clone();
            }
            v1
        }
        _ => {
            return Err(ApiError::invalid_field(&field, "kind must be text, file or data"));
        }
    };
    if let Some(metadata) = part.get("metadata") {
        v1["metadata"] = metadata.clone();
    }
    Ok(v1)
}

fn push_config_from_v03(task_id: &str, nested: &Value) -> Result<TaskPushNotificationConfig, ApiError> {
    let url = nested
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_field("pushNotificationConfig.url", "is required"))?;
    let authentication = nested.get("authentication").and_then(|a| {
        let scheme = a.get("schemes")?.as_array()?.first()?.as_str()?.to_owned();
        Some(a2a::AuthenticationInfo {
            scheme,
            credentials: a.get("credentials").and_then(Value::as_str).map(str::to_owned),
        })
    });
    Ok(TaskPushNotificationConfig {
        url: url.to_owned(),
        id: nested.get("id").and_then(Value::as_str).map(str::to_owned),
        task_id: task_id.to_owned(),
        token: nested.get("token").and_then(Value::as_str).map(str::to_owned),
        authentication,
        tenant: None,
    })
}

fn push_config_to_v03(config: &TaskPushNotificationConfig) -> Value {
    let mut nested = json!({ "id": config.id, "url": config.url });
    if let Some(token) = &config.token {
        nested["token"] = json!(token);
    }
    if let Some(auth) = &config.authentication {
        nested["authentication"] = json!({ "schemes": [auth.scheme], "credentials": auth.credentials });
    }
    json!({ "taskId": config.task_id, "pushNotificationConfig": nested })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v03_messages_become_v1_and_tasks_go_back() {
        let v03 = json!({"kind": "message", "messageId": "m", "role": "user", "parts": [
            {"kind": "text", "text": "hi"},
            {"kind": "file", "file": {"uri": "https://x/y.png", "mimeType": "image/png", "name": "y.png"}},
            {"kind": "data", "data": {"a": 1}},
        ]});
        let v1 = message_from_v03(&v03).expect("translates");
        assert_eq!(v1["role"], "ROLE_USER");
        assert_eq!(v1["parts"][1], json!({"url": "https://x/y.png", "mediaType": "image/png", "filename": "y.png"}));
        let parsed: a2a::Message = serde_json::from_value(v1).expect("a v1 message");
        assert_eq!(parsed.parts.len(), 3);

        let task = json!({"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED"},
                          "history": [{"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "?"}]}]});
        let back = task_to_v03(&task);
        assert_eq!(back["kind"], "task");
        assert_eq!(back["status"]["state"], "input-required");
        assert_eq!(back["history"][0]["role"], "agent");
        assert_eq!(back["history"][0]["parts"][0], json!({"kind": "text", "text": "?"}));
    }

    #[test]
    fn blocking_false_means_return_immediately() {
        let params = json!({"message": {"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "x"}]},
                            "configuration": {"blocking": false, "historyLength": 2}});
        let v1 = send_params(&params).expect("translates");
        assert_eq!(v1["configuration"]["returnImmediately"], true);
        assert_eq!(v1["configuration"]["historyLength"], 2);
    }

    #[test]
    fn v1_only_error_codes_are_not_sent_to_v03_clients() {
        assert_eq!(error_to_v03(&ApiError::VersionNotSupported("9".into()))["code"], -32004);
        assert_eq!(error_to_v03(&ApiError::TaskNotFound("t".into()))["code"], -32001);
    }
}
