//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// How long readiness waits for the database before saying no.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The process can do its work: the database answers within the timeout,
/// and its schema has every migration this build needs.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    ready(&state.store).await
}

/// Readiness against `store`, for the api and the workers alike.
pub async fn ready(store: &switchyard_engine::Store) -> (StatusCode, Json<serde_json::Value>) {
    match tokio::time::timeout(READY_TIMEOUT, store.missing_migrations()).await {
        Ok(Ok(missing)) if missing.is_empty() => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Ok(missing)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "reason": format!("the schema lacks {} migration(s); run `switchyard migrate`", missing.len()),
                "missingMigrations": missing.iter().map(|(version, _)| version).collect::<Vec<_>>(),
            })),
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "database unreachable" })),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": "database did not answer in time" })),
        ),
    }
}
