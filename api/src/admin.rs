//! The admin API: register, list and remove remote agents and plans. Every
//! request must present the admin token, or an API key or JWT carrying the
//! admin scope; every change is audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, same_secret};
use crate::error::ApiError;
use crate::state::AppState;

/// Body of `POST /admin/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: String,
    pub url: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": status.as_u16(), "message": message } }))).into_response()
}

/// Who may use the admin API: the holder of the admin token, or a caller
/// whose key or token carries the admin scope. Anything else is refused.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Principal, Response> {
    admin_principal(state, headers).await.map_err(|e| e.respond_with(&e.to_rest()))
}

/// The admin API's rule, for every door that applies it (the console too).
pub(crate) async fn admin_principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(expected) = state.handler.config().admin_token.as_deref() {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|token| same_secret(token.trim().as_bytes(), expected.as_bytes())) {
            return Ok(Principal::admin_token());
        }
    }
    match state.auth.authenticate(headers).await? {
        who if who.admin => Ok(who),
        who if who.is_anonymous() => {
            Err(ApiError::Unauthenticated("the admin API needs an admin key, token or the admin token".into()))
        }
        _ => Err(ApiError::Forbidden(format!("the credential lacks the {:?} scope", state.auth.config().admin_scope))),
    }
}

/// The most an admin request's body may hold: an agent or a plan.
const ADMIN_BODY_BYTES: usize = 64 * 1024;

/// An admin request's body, read only once its sender is authorized (the
/// handlers take the body unread), within the body timeout.
async fn read_body(state: &AppState, body: axum::body::Body) -> Result<axum::body::Bytes, Response> {
    let timeout = state.handler.config().body_timeout;
    crate::validate::body_bytes(body, ADMIN_BODY_BYTES, timeout).await.map_err(|e| e.respond_with(&e.to_rest()))
}

/// The answer when a store failed a change.
fn unavailable(state: &AppState, what: &str, failed: switchyard_engine::StoreFailed) -> Response {
    let store = failed.store;
    tracing::error!(error = %failed.error, store, "{what}");
    if state.stores.sharded() {
        let message = format!(
            "store {store:?} is unavailable; the stores before it (in the order configured) have the change: send \
             the request again once it answers"
        );
        return error(StatusCode::SERVICE_UNAVAILABLE, &message);
    }
    error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
}

/// Records an admin change (in the audit log, and as a log line).
async fn audit(state: &AppState, who: &Principal, action: &str, detail: Value) {
    state.store.audit(&who.audit(action).with_detail(detail)).await;
}

fn agent_json(agent: &switchyard_engine::AgentRecord) -> Value {
    json!({
        "name": agent.name,
        "url": agent.url,
        "cardFetchedAt": agent.card_fetched_at,
        "skills": agent.card.as_ref().and_then(|c| c.get("skills")).cloned().unwrap_or(json!([])),
        "consecutiveFailures": agent.consecutive_failures,
        "breakerOpenUntil": agent.breaker_open_until,
    })
}

/// `GET /admin/agents`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers).await {
        return refused;
    }
    match state.store.agents_list().await {
        Ok(agents) => Json(json!({ "agents": agents.iter().map(agent_json).collect::<Vec<_>>() })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "listing agents");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

/// `POST /admin/agents`: registers (or re-points) an agent; workers fetch
/// its card on first use.
pub async fn add(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let who = match authorize(&state, &headers).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let agent: NewAgent = match serde_json::from_slice(&body) {
        Ok(agent) => agent,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"name\", \"url\"}}: {e}")),
    };
    if let Err(refused) = check_agent(&state, &agent.name, &agent.url) {
        return error(StatusCode::BAD_REQUEST, &refused);
    }
    match state.stores.agent_upsert(&agent.name, &agent.url, None).await {
        Ok(()) => {
            audit(&state, &who, "admin.agent.add", json!({ "agent": agent.name, "url": agent.url })).await;
            (StatusCode::CREATED, Json(json!({ "name": agent.name, "url": agent.url }))).into_response()
        }
        Err(failure) => unavailable(&state, "registering an agent", failure),
    }
}

/// What an agent to register must be, wherever it is registered from: a
/// name of 1-63 letters, digits, '_', '.', '-', and a URL the agents'
/// egress policy allows.
pub(crate) fn check_agent(state: &AppState, name: &str, url: &str) -> Result<(), String> {
    let name_ok =
        !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !name_ok {
        return Err("name: 1-63 letters, digits, '_', '.', '-'".into());
    }
    // Where the agent is, as written: workers check again, after DNS, on
    // every connection.
    state.handler.config().agent_egress.check_url(url).map(|_| ()).map_err(|refused| format!("url: {refused}"))
}

/// `DELETE /admin/agents/{name}`.
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let who = match authorize(&state, &headers).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match state.stores.agent_remove(&name).await {
        Ok(true) => {
            audit(&state, &who, "admin.agent.remove", json!({ "agent": name })).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such agent"),
        Err(failure) => unavailable(&state, "removing an agent", failure),
    }
}

/// `GET /admin/plans`.
pub async fn plans_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers).await {
        return refused;
    }
    match state.store.plans_list().await {
        Ok(plans) => Json(json!({ "plans": plans })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "listing plans");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

/// `PUT /admin/plans/{name}`: adds or replaces a plan (the config file's
/// `[[plans]]` shape, as JSON). Names it refers to may be registered later;
/// a task naming the plan is rejected until they are.
pub async fn plans_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Response {
    let who = match authorize(&state, &headers).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let mut spec: switchyard_engine::plan::PlanSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a plan: {e}")),
    };
    if spec.name.is_empty() {
        spec.name = name.clone();
    }
    if spec.name != name {
        return error(StatusCode::BAD_REQUEST, "the body's name differs from the path's");
    }
    if let Err(e) = spec.validate(&state.handler.config().plan_limits) {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    match state.stores.plan_put(&spec).await {
        Ok(()) => {
            audit(&state, &who, "admin.plan.put", json!({ "plan": spec.name })).await;
            (StatusCode::OK, Json(json!(spec))).into_response()
        }
        Err(failure) => unavailable(&state, "storing a plan", failure),
    }
}

/// `DELETE /admin/plans/{name}`. Tasks already running it carry on.
pub async fn plans_remove(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let who = match authorize(&state, &headers).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match state.stores.plan_delete(&name).await {
        Ok(true) => {
            audit(&state, &who, "admin.plan.remove", json!({ "plan": name })).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such plan"),
        Err(failure) => unavailable(&state, "removing a plan", failure),
    }
}
