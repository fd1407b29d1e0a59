//! Pushes from remote agents: a delegation parked on an agent that pushes
//! registered `/_switchyard/push/{task}` there with a secret token; a push
//! presenting it makes the parked job due now. The body is not trusted (a
//! push is a hint): the worker reads the remote task itself. A worker of a
//! store other than the default names its store (`?store=`), since the
//! task and its token live there.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Which store the pushed task lives on.
#[derive(Debug, serde::Deserialize)]
pub struct Where {
    store: Option<String>,
}

/// `POST /_switchyard/push/{task}[?store=NAME]`.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(task): Path<String>,
    Query(at): Query<Where>,
) -> Response {
    let token = ["x-a2a-notification-token", "a2a-notification-token"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()));
    let (Ok(task), Some(token)) = (task.parse(), token) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let store = match at.store.as_deref() {
        None => Some(&state.store),
        Some(name) => state.stores.named(name),
    };
    // A store this api does not serve holds no token it could check.
    let Some(store) = store else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match store.delegation_pushed(task, token).await {
        Ok(true) => {
            metrics::counter!("switchyard_remote_pushes_total", "outcome" => "woken").increment(1);
            StatusCode::OK.into_response()
        }
        Ok(false) => {
            metrics::counter!("switchyard_remote_pushes_total", "outcome" => "refused").increment(1);
            StatusCode::UNAUTHORIZED.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "a remote push could not be recorded");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
