//! The JSON-RPC 2.0 binding: `POST /`, decode → call → encode.

use a2a::{
    CancelTaskRequest, DeleteTaskPushNotificationConfigRequest, GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest, SubscribeToTaskRequest,
};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::compat;
use crate::error::ApiError;
use crate::events::StreamItem;
use crate::handler::A2aHandler;
use crate::protojson;
use crate::reply::Reply;
use crate::request::{self, PushConfigPage, PushConfigRef, SendRequest, TaskList, TaskQuery, TaskRef};
use crate::sse;
use crate::state::AppState;
use crate::validate::{self, decode};
use crate::version::{self, Version};

const V1_METHODS: [&str; 11] = [
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

fn value<T: serde::Serialize>(result: Result<T, ApiError>) -> Result<Reply, ApiError> {
    result.map(|r| Reply::Value(serde_json::to_value(r).unwrap_or(Value::Null)))
}

/// `POST /`.
pub async fn endpoint(State(state): State<AppState>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(e) = validate::json_content_type(&parts.headers) {
        return error(Value::Null, &e, Version::V1);
    }
    let config = state.handler.config();
    let bytes = match validate::body_bytes(body, config.max_body_bytes, config.body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => return error(Value::Null, &e, Version::V1),
    };
    let envelope: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => return error(Value::Null, &ApiError::Parse(format!("not valid JSON: {e}")), Version::V1),
    };
    let (id, method, params) = match read_envelope(envelope) {
        Ok(call) => call,
        Err((id, e)) => return error(id, &e, Version::V1),
    };
    let version = match version::requested(&parts.headers, parts.uri.query()) {
        Ok(Some(v)) => v,
        // No header means v0.3 (spec); a v1 method name without one is a
        // v1 client that forgot the header, and is served as v1.
        Ok(None) if compat::is_v03_method(&method) => Version::V03,
        Ok(None) if V1_METHODS.contains(&method.as_str()) => {
            tracing::debug!(%method, "v1 method without A2A-Version; serving as 1.0");
            Version::V1
        }
        Ok(None) => Version::V03,
        Err(e) => return error(id, &e, Version::V1),
    };
    let span = tracing::Span::current();
    span.record("rpc.system", "jsonrpc");
    span.record("rpc.method", method.as_str());
    // PostgreSQL stores no NUL: refused here, by name, rather than failing
    // in the store. The tenant must be one the credential covers.
    let caller = validate::no_nul(&params).and_then(|()| {
        let Some(who) = parts.extensions.get::<Principal>() else {
            return Err(ApiError::Unauthenticated("no credentials were checked".into()));
        };
        let tenant = match params.get("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.as_str()),
            Some(_) => return Err(ApiError::invalid_field("params.tenant", "must be a string")),
        };
        who.caller(tenant, task_named(&params))
    });
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return error(id, &e, version),
    };
    let intake = validate::Intake::from_headers(&parts.headers);
    let reply = match version {
        Version::V1 => dispatch(&state.handler, &caller, &method, params, intake, &parts.headers).await,
        Version::V03 => compat::dispatch(&state.handler, &caller, &method, params, intake).await,
    };
    match reply {
        Ok(Reply::Value(result)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
        )
            .into_response(),
        Ok(Reply::Stream(items)) => sse::respond(items, move |item| frame(&id, version, item)),
        Err(e) => error(id, &e, version),
    }
}

/// One SSE `data:` payload: a complete JSON-RPC response. A v1 result is
/// the event as serialized once for every stream of its task, wrapped.
fn frame(id: &Value, version: Version, item: StreamItem) -> Bytes {
    let outcome = match (version, item.event) {
        (Version::V1, Ok(event)) => {
            let mut out = Vec::with_capacity(event.json.len() + 48);
            out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
            out.extend_from_slice(id.to_string().as_bytes());
            out.extend_from_slice(b",\"result\":");
            out.extend_from_slice(&event.json);
            out.push(b'}');
            return Bytes::from(out);
        }
        (Version::V1, Err(e)) => Err(e),
        (Version::V03, event) => compat::stream_item_to_v03(&StreamItem { seq: item.seq, event }),
    };
    let response = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": render_error(&e, version)}),
    };
    Bytes::from(response.to_string())
}

fn render_error(e: &ApiError, version: Version) -> Value {
    match version {
        Version::V1 => e.to_jsonrpc(),
        Version::V03 => compat::error_to_v03(e),
    }
}

/// JSON-RPC errors travel with HTTP 200 (the binding leaves the status
/// open); only a body that cannot be read as JSON at all — too large, or
/// not declared as JSON — gets its own HTTP status, as on HTTP+JSON.
fn error(id: Value, e: &ApiError, version: Version) -> Response {
    let status = match e {
        ApiError::PayloadTooLarge(_) | ApiError::UnsupportedMediaType(_) => e.classify().http,
        _ => StatusCode::OK,
    };
    let body = json!({"jsonrpc": "2.0", "id": id, "error": render_error(e, version)});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The task a request is about, in either generation's params.
fn task_named(params: &Value) -> Option<&str> {
    params
        .get("id")
        .or_else(|| params.get("taskId"))
        .or_else(|| params.get("message").and_then(|m| m.get("taskId")))
        .and_then(Value::as_str)
}

/// Checks the envelope; on failure, the id if it could be read.
fn read_envelope(envelope: Value) -> Result<(Value, String, Value), (Value, ApiError)> {
    let Value::Object(mut call) = envelope else {
        let why = if envelope.is_array() { "batches are not supported" } else { "the request must be a JSON object" };
        return Err((Value::Null, ApiError::InvalidRequest(why.into())));
    };
    let id = match call.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        _ => {
            return Err((Value::Null, ApiError::InvalidRequest("`id` must be a string or a number".into())));
        }
    };
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, ApiError::InvalidRequest("`jsonrpc` must be \"2.0\"".into())));
    }
    let method = match call.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err((id, ApiError::InvalidRequest("`method` must be a non-empty string".into())));
        }
    };
    let params = match call.remove("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err((id, ApiError::invalid_field("params", "must be an object"))),
    };
    // Proto field names become JSON names before anything reads them
    // (the tenant, the task a credential is scoped to, validation).
    let mut params = params;
    if let Err(e) = protojson::normalize(&mut params, "") {
        return Err((id, e));
    }
    Ok((id, method, params))
}

async fn dispatch(
    handler: &A2aHandler,
    caller: &switchyard_engine::Caller,
    method: &str,
    params: Value,
    intake: validate::Intake,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    let config = handler.config();
    let strict = config.strict_json;
    match method {
        "SendMessage" => value(handler.send_message(caller, SendRequest::parse(params, intake, config)?).await),
        "SendStreamingMessage" => Ok(Reply::Stream(
            handler.send_streaming_message(caller, SendRequest::parse(params, intake, config)?).await?,
        )),
        "GetTask" => value(handler.get_task(caller, TaskQuery::parse(decode(params, "params", strict)?)?).await),
        "ListTasks" => {
            // `parentTaskId` beside the standard fields lists a task's
            // children; taken out, so it is not counted as unknown.
            let mut params = params;
            let parent = params.as_object_mut().and_then(|p| p.remove("parentTaskId"));
            let parent = parent.map(|p| p.as_str().map(str::to_owned));
            let parent = parent
                .map(|p| p.ok_or_else(|| ApiError::invalid_field("params.parentTaskId", "must be a task id")))
                .transpose()?;
            let request = TaskList::parse(decode(params, "params", strict)?, parent.as_deref())?;
            value(handler.list_tasks(caller, request).await)
        }
        "CancelTask" => {
            let request = decode::<CancelTaskRequest>(params, "params", strict)?;
            value(handler.cancel_task(caller, TaskRef::parse(&request.id)?).await)
        }
        "SubscribeToTask" => {
            let request = decode::<SubscribeToTaskRequest>(params, "params", strict)?;
            let request = TaskRef::parse(&request.id)?;
            Ok(Reply::Stream(handler.subscribe(caller, request, sse::last_event_id(headers)).await?))
        }
        "CreateTaskPushNotificationConfig" => {
            let config = request::push_config(decode(params, "params", strict)?, false, config)?;
            value(handler.create_push_config(caller, config).await)
        }
        "GetTaskPushNotificationConfig" => {
            let r = decode::<GetTaskPushNotificationConfigRequest>(params, "params", strict)?;
            value(handler.get_push_config(caller, PushConfigRef::parse(&r.task_id, &r.id)?).await)
        }
        "ListTaskPushNotificationConfigs" => {
            let r = decode::<ListTaskPushNotificationConfigsRequest>(params, "params", strict)?;
            let request = PushConfigPage::parse(&r.task_id, r.page_size, r.page_token.as_deref())?;
            value(handler.list_push_configs(caller, request).await)
        }
        "DeleteTaskPushNotificationConfig" => {
            let r = decode::<DeleteTaskPushNotificationConfigRequest>(params, "params", strict)?;
            handler.delete_push_config(caller, PushConfigRef::parse(&r.task_id, &r.id)?).await?;
            Ok(Reply::Value(json!({})))
        }
        "GetExtendedAgentCard" => value(handler.extended_card(caller).await),
        other => Err(ApiError::MethodNotFound(other.to_owned())),
    }
}
