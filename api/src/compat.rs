//! The v0.3 compatibility layer: v0.3 JSON-RPC methods and shapes are
//! translated to v1 in front of the same handler, and results back, so a
//! v0.3 client sees only v0.3 and the handler only v1 (PROTOCOL.md §15).

use a2a::GetTaskRequest;
use serde::Serialize;
use serde_json::{Value, json};
use switchyard_engine::Caller;
use switchyard_engine::v03::{self, V03PushConfig, V03Result, V03SendParams};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::events::StreamItem;
use crate::handler::A2aHandler;
use crate::reply::Reply;
use crate::request::{self, PushConfigPage, PushConfigRef, SendRequest, TaskQuery, TaskRef};
use crate::validate::{self, Intake};

/// Whether `method` is a v0.3 JSON-RPC method name.
pub fn is_v03_method(method: &str) -> bool {
    method.contains('/')
}

/// A v0.3 result as JSON.
fn reply(value: impl Serialize) -> Reply {
    Reply::Value(serde_json::to_value(value).unwrap_or(Value::Null))
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
            let request = send_request(params, intake, handler.config())?;
            let response = handler.send_message(caller, request).await?;
            Ok(reply(v03::send_response_to_v03(&response)))
        }
        "message/stream" => {
            let request = send_request(params, intake, handler.config())?;
            Ok(Reply::Stream(handler.send_streaming_message(caller, request).await?))
        }
        "tasks/get" => {
            let request = GetTaskRequest {
                id: string_field(&params, "id")?,
                history_length: optional_i32(&params, "historyLength")?,
                tenant: None,
            };
            let task = handler.get_task(caller, TaskQuery::parse(request)?).await?;
            Ok(reply(V03Result::Task(v03::task_to_v03(&task))))
        }
        "tasks/cancel" => {
            let request = TaskRef::parse(&string_field(&params, "id")?)?;
            let task = handler.cancel_task(caller, request).await?;
            Ok(reply(V03Result::Task(v03::task_to_v03(&task))))
        }
        "tasks/resubscribe" => {
            let request = TaskRef::parse(&string_field(&params, "id")?)?;
            Ok(Reply::Stream(handler.subscribe(caller, request, None).await?))
        }
        "tasks/pushNotificationConfig/set" => {
            let task_id = string_field(&params, "taskId")?;
            let nested = params
                .get("pushNotificationConfig")
                .cloned()
                .ok_or_else(|| ApiError::invalid_field("pushNotificationConfig", "is required"))?;
            let strict = handler.config().strict_json;
            let nested: V03PushConfig = validate::decode(nested, "pushNotificationConfig", strict)?;
            let config = request::push_config(v03::push_config_from_v03(&task_id, nested), true, handler.config())?;
            let stored = handler.create_push_config(caller, config).await?;
            Ok(reply(v03::push_config_to_v03(&stored)))
        }
        "tasks/pushNotificationConfig/get" => {
            let task_id = string_field(&params, "id")?;
            let config = match params.get("pushNotificationConfigId").and_then(Value::as_str) {
                Some(id) => handler.get_push_config(caller, PushConfigRef::parse(&task_id, id)?).await?,
                // v0.3 allowed asking for "the" config of a task.
                None => handler
                    .list_push_configs(caller, PushConfigPage::parse(&task_id, Some(1), None)?)
                    .await?
                    .configs
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::PushConfigNotFound { task: task_id.clone(), config: String::new() })?,
            };
            Ok(reply(v03::push_config_to_v03(&config)))
        }
        "tasks/pushNotificationConfig/list" => {
            let task_id = string_field(&params, "id")?;
            let list = handler.list_push_configs(caller, PushConfigPage::parse(&task_id, None, None)?).await?;
            Ok(reply(list.configs.iter().map(v03::push_config_to_v03).collect::<Vec<_>>()))
        }
        "tasks/pushNotificationConfig/delete" => {
            let task_id = string_field(&params, "id")?;
            let id = string_field(&params, "pushNotificationConfigId")?;
            handler.delete_push_config(caller, PushConfigRef::parse(&task_id, &id)?).await?;
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
    let event = item.event.as_ref().map_err(Clone::clone)?;
    Ok(serde_json::to_value(v03::stream_response_to_v03(&event.response)).unwrap_or(Value::Null))
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

/// `MessageSendParams` (v0.3) → `SendMessageRequest` (v1), then the same
/// checks as a v1 request gets (sizes, roles, parts, NUL characters).
fn send_request(params: Value, intake: Intake, config: &ApiConfig) -> Result<SendRequest, ApiError> {
    validate::no_nul(&params)?;
    let params: V03SendParams = validate::decode(params, "params", config.strict_json)?;
    let request = v03::send_request_from_v03(params).map_err(|e| ApiError::invalid_field("message.parts", e.0))?;
    let json = serde_json::to_value(request).map_err(|_| ApiError::invalid_field("message", "is not valid"))?;
    SendRequest::parse(json, intake, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: Value) -> Result<SendRequest, ApiError> {
        send_request(params, Intake::default(), &ApiConfig::new("http://127.0.0.1:8080"))
    }

    #[test]
    fn v03_messages_become_v1_requests() {
        let params = json!({"message": {"kind": "message", "messageId": "m", "role": "user", "parts": [
            {"kind": "text", "text": "hi"},
            {"kind": "file", "file": {"uri": "https://x/y.png", "mimeType": "image/png", "name": "y.png"}},
            {"kind": "data", "data": {"a": 1}},
        ]}, "configuration": {"blocking": false, "historyLength": 2}});
        let request = parse(params).expect("translates");
        assert_eq!(request.message.role, a2a::Role::User);
        assert_eq!(request.message.parts.len(), 3);
        assert_eq!(request.message.parts[1].filename.as_deref(), Some("y.png"));
        assert_eq!((request.return_immediately, request.history), (true, 2));
    }

    #[test]
    fn bad_v03_messages_name_the_field() {
        let unknown_kind = json!({"message": {"messageId": "m", "role": "user", "parts": [{"kind": "video"}]}});
        let ApiError::InvalidParams { field, .. } = parse(unknown_kind).expect_err("refused") else {
            panic!("invalid params")
        };
        assert_eq!(field.as_deref(), Some("params.message.parts[0].kind"));
        let agent_role =
            json!({"message": {"messageId": "m", "role": "agent", "parts": [{"kind": "text", "text": "x"}]}});
        let ApiError::InvalidParams { field, .. } = parse(agent_role).expect_err("refused") else {
            panic!("invalid params")
        };
        assert_eq!(field.as_deref(), Some("message.role"));
        let both = json!({"message": {"messageId": "m", "role": "user",
                          "parts": [{"kind": "file", "file": {"uri": "u", "bytes": "aGk="}}]}});
        assert!(matches!(parse(both), Err(ApiError::InvalidParams { .. })));
    }

    #[test]
    fn v1_only_error_codes_are_not_sent_to_v03_clients() {
        assert_eq!(error_to_v03(&ApiError::VersionNotSupported("9".into()))["code"], -32004);
        assert_eq!(error_to_v03(&ApiError::TaskNotFound("t".into()))["code"], -32001);
    }
}
