//! The v0.3 HTTP+JSON binding: A2A v0.3's REST routes under `/v1`, bodies
//! in the ProtoJSON of the v0.3 protobuf model ([`crate::compat_proto`]),
//! served through the same v0.3 layer as v0.3 JSON-RPC
//! ([`crate::compat::dispatch`]), so the three v0.3 bindings answer alike.
//!
//! `/v1/…` would also read as the v1.0 binding's routes for a tenant named
//! `v1`, which is why no tenant may take that name. A request there that
//! says it speaks 1.0 (`A2A-Version`) goes to the v1.0 binding, which
//! refuses the tenant by name; without the header it is a v0.3 request
//! (the spec's rule) — see [`v1_or_v03`].

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_engine::Caller;

use crate::auth::Principal;
use crate::compat;
use crate::compat_proto::{self as proto, pb};
use crate::error::ApiError;
use crate::events::StreamItem;
use crate::reply::Reply;
use crate::sse;
use crate::state::AppState;
use crate::validate::{self, Intake};
use crate::version::{self, Version};

/// The v0.3 routes, at their full paths.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/message:send", post(send))
        .route("/v1/message:stream", post(stream))
        .route("/v1/tasks/{task}", get(get_or_subscribe).post(cancel_or_subscribe))
        .route("/v1/tasks/{task}/pushNotificationConfigs", post(create_push).get(list_push))
        .route("/v1/tasks/{task}/pushNotificationConfigs/{config}", get(get_push).delete(delete_push))
        .route("/v1/card", get(card))
        .fallback(|| async { RestError(ApiError::MethodNotFound("no such v0.3 endpoint".into())) })
}

/// Whether a request under `/v1` is a v1.0 request: only when it names
/// 1.x. A version this server does not speak goes to v1.0 too, which
/// refuses it in its own words.
pub fn v1_or_v03(headers: &HeaderMap, query: Option<&str>) -> Version {
    match version::requested(headers, query) {
        Ok(None | Some(Version::V03)) => Version::V03,
        Ok(Some(Version::V1)) | Err(_) => Version::V1,
    }
}

type Answer = Result<Response, RestError>;

/// An error as this binding answers it (HTTP status and a JSON body, as
/// on the v1.0 binding).
#[derive(Debug)]
pub(crate) struct RestError(ApiError);

impl From<ApiError> for RestError {
    fn from(error: ApiError) -> Self {
        RestError(error)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        self.0.respond_with(&self.0.to_rest())
    }
}

fn ok(value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The caller: authenticated by the layer in front of every A2A route;
/// v0.3 has no tenants in its paths.
fn caller(request: &axum::http::request::Parts, task: Option<&str>) -> Result<Caller, ApiError> {
    let who = request.extensions.get::<Principal>().ok_or(ApiError::Internal)?;
    who.caller(None, task)
}

/// A body in the v0.3 protobuf's ProtoJSON (both field spellings read).
async fn body<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    validate::json_content_type(headers)?;
    let config = state.handler.config();
    let bytes = validate::body_bytes(body, config.max_body_bytes, config.body_timeout).await?;
    let value: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Parse(format!("not valid JSON: {e}")))?
    };
    validate::no_nul(&value)?;
    validate::decode(value, "body", false)
}

/// Runs one v0.3 method through the JSON-RPC compatibility layer.
async fn call(
    state: &AppState,
    caller: &Caller,
    method: &str,
    params: Value,
    intake: Intake,
) -> Result<Value, ApiError> {
    match Box::pin(compat::dispatch(&state.handler, caller, method, params, intake)).await? {
        Reply::Value(value) => Ok(value),
        Reply::Stream(_) => Err(ApiError::Internal),
    }
}

/// A stream event as the v0.3 SDK reads it: a `StreamResponse`.
fn frame(item: StreamItem) -> Bytes {
    match compat::stream_item_to_v03(&item).and_then(proto::result) {
        Ok(event) => Bytes::from(serde_json::to_vec(&proto::stream_response_to_pb(&event)).unwrap_or_default()),
        Err(e) => Bytes::from(e.to_rest().to_string()),
    }
}

async fn streamed(state: &AppState, caller: &Caller, method: &str, params: Value, intake: Intake) -> Answer {
    match Box::pin(compat::dispatch(&state.handler, caller, method, params, intake)).await? {
        Reply::Stream(items) => Ok(sse::respond(items, frame)),
        Reply::Value(_) => Err(ApiError::Internal.into()),
    }
}

async fn send_params(state: &AppState, request: Request) -> Result<(Caller, Value, Intake), ApiError> {
    let (parts, raw) = request.into_parts();
    let send: pb::SendMessageRequest = body(state, &parts.headers, raw).await?;
    let task = send.request.as_ref().map(|m| m.task_id.clone()).filter(|t| !t.is_empty());
    let caller = caller(&parts, task.as_deref())?;
    let params = serde_json::to_value(proto::send_params(send)?).map_err(|_| ApiError::Internal)?;
    Ok((caller, params, Intake::from_headers(&parts.headers)))
}

async fn send(State(state): State<AppState>, request: Request) -> Answer {
    let (caller, params, intake) = send_params(&state, request).await?;
    let answer = proto::result(call(&state, &caller, "message/send", params, intake).await?)?;
    Ok(ok(&proto::send_response_to_pb(&answer)))
}

async fn stream(State(state): State<AppState>, request: Request) -> Answer {
    let (caller, params, intake) = send_params(&state, request).await?;
    streamed(&state, &caller, "message/stream", params, intake).await
}

/// `{task}` is a bare id, or `id:cancel` / `id:subscribe` (one segment).
fn split_action(segment: &str) -> (&str, Option<&str>) {
    match segment.rsplit_once(':') {
        Some((id, action)) => (id, Some(action)),
        None => (segment, None),
    }
}

async fn get_or_subscribe(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, _) = request.into_parts();
    let segment = param(&params, "task");
    let (id, action) = split_action(&segment);
    let caller = caller(&parts, Some(id))?;
    match action {
        None => {
            let mut params = json!({ "id": id });
            if let Some(n) = q.get("historyLength") {
                let n: i32 = n.parse().map_err(|_| ApiError::invalid_field("historyLength", "must be an integer"))?;
                params["historyLength"] = n.into();
            }
            let task = proto::task_result(call(&state, &caller, "tasks/get", params, Intake::default()).await?)?;
            Ok(ok(&task))
        }
        Some("subscribe") => {
            streamed(&state, &caller, "tasks/resubscribe", json!({ "id": id }), Intake::default()).await
        }
        Some(other) => Err(ApiError::MethodNotFound(format!("GET /v1/tasks/{{id}}:{other}")).into()),
    }
}

async fn cancel_or_subscribe(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, raw) = request.into_parts();
    let segment = param(&params, "task");
    let (id, action) = split_action(&segment);
    let caller = caller(&parts, Some(id))?;
    match action {
        Some("cancel") => {
            // The body (a `CancelTaskRequest`) names the task again; read so
            // that a malformed one is refused.
            let _: pb::CancelTaskRequest = body(&state, &parts.headers, raw).await?;
            let task = proto::task_result(
                call(&state, &caller, "tasks/cancel", json!({ "id": id }), Intake::default()).await?,
            )?;
            Ok(ok(&task))
        }
        Some("subscribe") => {
            streamed(&state, &caller, "tasks/resubscribe", json!({ "id": id }), Intake::default()).await
        }
        _ => Err(ApiError::MethodNotFound(format!("POST /v1/tasks/{segment}")).into()),
    }
}

async fn create_push(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, raw) = request.into_parts();
    let task = param(&params, "task");
    let caller = caller(&parts, Some(&task))?;
    let create: pb::CreateTaskPushNotificationConfigRequest = body(&state, &parts.headers, raw).await?;
    let params = proto::set_push_params(&task, create)?;
    let stored = call(&state, &caller, "tasks/pushNotificationConfig/set", params, Intake::default()).await?;
    Ok(ok(&proto::push_config_result(stored)?))
}

async fn list_push(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, _) = request.into_parts();
    let task = param(&params, "task");
    let caller = caller(&parts, Some(&task))?;
    let listed =
        call(&state, &caller, "tasks/pushNotificationConfig/list", json!({ "id": task }), Intake::default()).await?;
    Ok(ok(&proto::push_configs_result(listed)?))
}

async fn get_push(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, _) = request.into_parts();
    let (task, config) = (param(&params, "task"), param(&params, "config"));
    let caller = caller(&parts, Some(&task))?;
    let params = json!({ "id": task, "pushNotificationConfigId": config });
    let stored = call(&state, &caller, "tasks/pushNotificationConfig/get", params, Intake::default()).await?;
    Ok(ok(&proto::push_config_result(stored)?))
}

async fn delete_push(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Answer {
    let (parts, _) = request.into_parts();
    let (task, config) = (param(&params, "task"), param(&params, "config"));
    let caller = caller(&parts, Some(&task))?;
    let params = json!({ "id": task, "pushNotificationConfigId": config });
    call(&state, &caller, "tasks/pushNotificationConfig/delete", params, Intake::default()).await?;
    Ok(ok(&json!({})))
}

/// A path parameter (the route's own; the `/v1/{*rest}` that led here is
/// among them too).
fn param(params: &HashMap<String, String>, name: &str) -> String {
    params.get(name).cloned().unwrap_or_default()
}

/// The authenticated extended card, in v0.3's shape.
async fn card(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = caller(&parts, None)?;
    let card = state.handler.extended_card(&caller).await?;
    let config = state.handler.config();
    let mut response = ok(&proto::card_to_pb(&card, &config.public_url, &crate::card::v03_interfaces(config)));
    // Per caller: no shared cache may keep it.
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, no-store"));
    Ok(response)
}
