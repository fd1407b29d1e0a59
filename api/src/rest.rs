//! The HTTP+JSON binding: routes → handler, with `google.rpc.Status` errors.

use std::collections::HashMap;

use a2a::{GetTaskRequest, ListTasksRequest, TaskPushNotificationConfig};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::protojson;
use crate::request::{self, PushConfigPage, PushConfigRef, SendRequest, TaskList, TaskQuery, TaskRef};
use crate::sse;
use crate::state::AppState;
use crate::validate::{self, decode};
use crate::version;
use switchyard_engine::Caller;

const CONTENT_TYPE: &str = "application/a2a+json";

/// The routes, mounted at the root and again under `/{tenant}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/message:send", post(send))
        .route("/message:stream", post(stream))
        .route("/tasks", get(list))
        .route("/tasks/{task}", get(get_or_subscribe).post(cancel_or_subscribe))
        .route("/tasks/{task}/pushNotificationConfigs", post(create_push).get(list_push))
        .route("/tasks/{task}/pushNotificationConfigs/{config}", get(get_push).delete(delete_push))
        .route("/extendedAgentCard", get(extended_card))
}

fn ok(value: impl serde::Serialize) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], serde_json::to_string(&value).unwrap_or_default()).into_response()
}

/// Errors are plain `application/json` (A2A §11.1, §11.6), whatever the
/// binding's content type for results.
fn fail(e: &ApiError) -> Response {
    e.respond_with(&e.to_rest())
}

/// The caller of an HTTP+JSON request, checked at the edge: the protocol
/// version it names (header or query; REST has no v0.3 here, v0.3 REST
/// lived under `/v1`, so a missing one is served as 1.0 and an unknown one
/// refused), and who it is in the path's tenant (a tenant the credential
/// does not cover makes the path's task not found). With the path's other
/// parameters, which name the task and the webhook.
pub(crate) struct RestCall {
    caller: Caller,
    params: HashMap<String, String>,
}

impl RestCall {
    /// A path parameter (`task`, `config`); empty when the route has none.
    fn param(&self, name: &str) -> String {
        self.params.get(name).cloned().unwrap_or_default()
    }
}

impl FromRequestParts<AppState> for RestCall {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, RestError> {
        version::requested(&parts.headers, parts.uri.query())?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidRequest(format!("the path: {e}")))?;
        // Set by the authentication layer on every route of this binding.
        let who = parts.extensions.get::<Principal>().ok_or(ApiError::Internal)?;
        let task = params.get("task").map(|segment| split_action(segment).0);
        let caller = who.caller(params.get("tenant").map(String::as_str), task)?;
        Ok(RestCall { caller, params })
    }
}

async fn body_json(state: &AppState, body: Body) -> Result<Value, ApiError> {
    let config = state.handler.config();
    let bytes = validate::body_bytes(body, config.max_body_bytes, config.body_timeout).await?;
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let mut value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Parse(format!("not valid JSON: {e}")))?;
    validate::no_nul(&value)?;
    // Proto field names become JSON names before anything reads them.
    protojson::normalize(&mut value, "")?;
    Ok(value)
}

/// An error as this binding answers it; what every handler returns on
/// failure, so that `?` is all a handler needs.
#[derive(Debug)]
pub(crate) struct RestError(ApiError);

impl From<ApiError> for RestError {
    fn from(error: ApiError) -> Self {
        RestError(error)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        fail(&self.0)
    }
}

type Answer = Result<Response, RestError>;

fn rest_frame(item: crate::events::StreamItem) -> Bytes {
    match item.event {
        // Serialized once for every stream of the task; shared, not copied.
        Ok(event) => event.json.clone(),
        Err(e) => Bytes::from(e.to_rest().to_string()),
    }
}

async fn send(State(state): State<AppState>, call: RestCall, request: Request<Body>) -> Answer {
    let (parts, body) = request.into_parts();
    validate::json_content_type(&parts.headers)?;
    let intake = validate::Intake::from_headers(&parts.headers);
    let request = SendRequest::parse(body_json(&state, body).await?, intake, state.handler.config())?;
    Ok(ok(state.handler.send_message(&call.caller, request).await?))
}

async fn stream(State(state): State<AppState>, call: RestCall, request: Request<Body>) -> Answer {
    let (parts, body) = request.into_parts();
    validate::json_content_type(&parts.headers)?;
    let intake = validate::Intake::from_headers(&parts.headers);
    let request = SendRequest::parse(body_json(&state, body).await?, intake, state.handler.config())?;
    let items = state.handler.send_streaming_message(&call.caller, request).await?;
    Ok(sse::respond(items, rest_frame))
}

fn query_i32(q: &HashMap<String, String>, field: &str) -> Result<Option<i32>, ApiError> {
    q.get(field).map(|v| v.parse().map_err(|_| ApiError::invalid_field(field, "must be an integer"))).transpose()
}

async fn list(State(state): State<AppState>, call: RestCall, Query(q): Query<HashMap<String, String>>) -> Answer {
    let status = q
        .get("status")
        .map(|s| {
            serde_json::from_value(Value::String(s.clone()))
                .map_err(|_| ApiError::invalid_field("status", "must be a TASK_STATE_* name"))
        })
        .transpose()?;
    let status_timestamp_after = q
        .get("statusTimestampAfter")
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::invalid_field("statusTimestampAfter", "must be an ISO 8601 timestamp"))
        })
        .transpose()?;
    let include_artifacts = q
        .get("includeArtifacts")
        .map(|b| b.parse::<bool>().map_err(|_| ApiError::invalid_field("includeArtifacts", "must be true or false")))
        .transpose()?;
    let request = ListTasksRequest {
        context_id: q.get("contextId").cloned(),
        status,
        page_size: query_i32(&q, "pageSize")?,
        page_token: q.get("pageToken").cloned(),
        history_length: query_i32(&q, "historyLength")?,
        status_timestamp_after,
        include_artifacts,
        tenant: None,
    };
    let request = TaskList::parse(request, q.get("parentTaskId").map(String::as_str))?;
    Ok(ok(state.handler.list_tasks(&call.caller, request).await?))
}

/// `{task}` is a bare id, or `id:cancel` / `id:subscribe` (one path segment).
fn split_action(segment: &str) -> (&str, Option<&str>) {
    match segment.rsplit_once(':') {
        Some((id, action)) => (id, Some(action)),
        None => (segment, None),
    }
}

async fn get_or_subscribe(
    State(state): State<AppState>,
    call: RestCall,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let segment = call.param("task");
    match split_action(&segment) {
        (id, None) => {
            let request =
                GetTaskRequest { id: id.to_owned(), history_length: query_i32(&q, "historyLength")?, tenant: None };
            Ok(ok(state.handler.get_task(&call.caller, TaskQuery::parse(request)?).await?))
        }
        (id, Some("subscribe")) => Ok(subscribe(&state, &call.caller, id, &headers).await?),
        (_, Some(action)) => Err(ApiError::MethodNotFound(format!("GET :{action}")).into()),
    }
}

async fn cancel_or_subscribe(State(state): State<AppState>, call: RestCall, request: Request<Body>) -> Answer {
    let (parts, body) = request.into_parts();
    let segment = call.param("task");
    match split_action(&segment) {
        (id, Some("cancel")) => {
            validate::json_content_type(&parts.headers)?;
            // The body may carry metadata, which cancelation does not use;
            // it is read so that a malformed one is refused.
            body_json(&state, body).await?;
            Ok(ok(state.handler.cancel_task(&call.caller, TaskRef::parse(id)?).await?))
        }
        (id, Some("subscribe")) => Ok(subscribe(&state, &call.caller, id, &parts.headers).await?),
        _ => Err(ApiError::MethodNotFound(format!("POST /tasks/{segment}")).into()),
    }
}

async fn subscribe(state: &AppState, caller: &Caller, id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let items = state.handler.subscribe(caller, TaskRef::parse(id)?, sse::last_event_id(headers)).await?;
    Ok(sse::respond(items, rest_frame))
}

async fn create_push(State(state): State<AppState>, call: RestCall, request: Request<Body>) -> Answer {
    let (parts, body) = request.into_parts();
    validate::json_content_type(&parts.headers)?;
    let task = call.param("task");
    let strict = state.handler.config().strict_json;
    let mut config: TaskPushNotificationConfig = decode(body_json(&state, body).await?, "body", strict)?;
    if !config.task_id.is_empty() && config.task_id != task {
        return Err(ApiError::invalid_field("taskId", "differs from the task in the path").into());
    }
    config.task_id = task;
    let config = request::push_config(config, false, state.handler.config())?;
    Ok(ok(state.handler.create_push_config(&call.caller, config).await?))
}

async fn list_push(State(state): State<AppState>, call: RestCall, Query(q): Query<HashMap<String, String>>) -> Answer {
    let task = call.param("task");
    let request = PushConfigPage::parse(&task, query_i32(&q, "pageSize")?, q.get("pageToken").map(String::as_str))?;
    Ok(ok(state.handler.list_push_configs(&call.caller, request).await?))
}

async fn get_push(State(state): State<AppState>, call: RestCall) -> Answer {
    let (task, config) = (call.param("task"), call.param("config"));
    Ok(ok(state.handler.get_push_config(&call.caller, PushConfigRef::parse(&task, &config)?).await?))
}

async fn delete_push(State(state): State<AppState>, call: RestCall) -> Answer {
    let (task, config) = (call.param("task"), call.param("config"));
    state.handler.delete_push_config(&call.caller, PushConfigRef::parse(&task, &config)?).await?;
    Ok(ok(serde_json::json!({})))
}

async fn extended_card(State(state): State<AppState>, call: RestCall) -> Answer {
    let mut response = ok(state.handler.extended_card(&call.caller).await?);
    // Per caller: no shared cache may keep it.
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, no-store"));
    Ok(response)
}
