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
/// and its schema has every migration this build needs. An api serving
/// several stores is ready while any of them is — it serves the tenants of
/// those that answer, and pulling it from a load balancer for one store's
/// outage would take every other store's tenants down with it — and says
/// each store's state (`stores`).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.stores.sharded() {
        return ready(&state.store).await;
    }
    let checks: Vec<_> = state
        .stores
        .all()
        .map(|(name, store)| {
            let store = store.clone();
            (name.to_owned(), tokio::spawn(async move { ready(&store).await }))
        })
        .collect();
    let mut stores = serde_json::Map::new();
    let mut any = false;
    for (name, check) in checks {
        let (status, Json(body)) = check.await.unwrap_or_else(|_| {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": "check failed" })))
        });
        any |= status.is_success();
        stores.insert(name, body);
    }
    let status = if any { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let summary = if any { "ready" } else { "unavailable" };
    (status, Json(json!({ "status": summary, "stores": stores })))
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
