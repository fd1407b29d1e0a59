//! The router and the server loop.

use std::io;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use switchyard_engine::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
}

/// The whole HTTP surface, ready for `oneshot` in tests or a listener in `serve`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "no such endpoint" })),
            )
        })
        .with_state(state)
}

/// Serves until `shutdown` fires, then stops accepting and lets open
/// requests finish for up to `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> io::Result<()> {
    let graceful = shutdown.clone();
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain_timeout).await } => {
            tracing::warn!(?drain_timeout, "requests still open after the drain timeout; closing them");
            Ok(())
        }
    }
}
