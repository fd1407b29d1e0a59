//! The admin API: register, list and remove remote agents and plans. Enabled only
//! with an admin token, and every request must present it as a bearer token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;

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

/// Compares in time independent of where the strings first differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Why a request may not use the admin API.
#[derive(Debug, Clone, Copy)]
enum Denied {
    Disabled,
    Unauthenticated,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Disabled => {
                error(StatusCode::FORBIDDEN, "the admin API is disabled; start serve with --admin-token")
            }
            Denied::Unauthenticated => {
                let mut response = error(StatusCode::UNAUTHORIZED, "a valid admin bearer token is required");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = state.handler.config().admin_token.as_deref().ok_or(Denied::Disabled)?;
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Denied::Unauthenticated),
    }
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
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
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
pub async fn add(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
    let agent: NewAgent = match serde_json::from_slice(&body) {
        Ok(agent) => agent,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"name\", \"url\"}}: {e}")),
    };
    let name_ok = !agent.name.is_empty()
        && agent.name.len() <= 63
        && agent.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !name_ok {
        return error(StatusCode::BAD_REQUEST, "name: 1-63 letters, digits, '_', '.', '-'");
    }
    if !(agent.url.starts_with("http://") || agent.url.starts_with("https://")) {
        return error(StatusCode::BAD_REQUEST, "url: must be an http(s) URL");
    }
    match state.store.agent_upsert(&agent.name, &agent.url).await {
        Ok(()) => (StatusCode::CREATED, Json(json!({ "name": agent.name, "url": agent.url }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "registering an agent");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

/// `DELETE /admin/agents/{name}`.
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
    match state.store.agent_remove(&name).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such agent"),
        Err(e) => {
            tracing::error!(error = %e, "removing an agent");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

/// `GET /admin/plans`.
pub async fn plans_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
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
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
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
    match state.store.plan_put(&spec).await {
        Ok(()) => (StatusCode::OK, Json(json!(spec))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "storing a plan");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

/// `DELETE /admin/plans/{name}`. Tasks already running it carry on.
pub async fn plans_remove(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied.into_response();
    }
    match state.store.plan_delete(&name).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such plan"),
        Err(e) => {
            tracing::error!(error = %e, "removing a plan");
            error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3crex"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
    }
}
