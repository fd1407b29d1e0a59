//! `GET /metrics` in the Prometheus text format: this process's counters and
//! histograms, plus gauges read from the database at scrape time.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_engine::Store;
use switchyard_engine::{JobKind, TaskState};

/// What the metrics endpoint needs.
#[derive(Debug, Clone)]
pub struct MetricsState {
    pub store: Store,
    pub handle: PrometheusHandle,
}

/// A router serving `/metrics` alone (for processes without the API).
/// A worker's own endpoints: its metrics, and the same `/healthz` and
/// `/readyz` the api serves (for orchestrators' probes).
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(crate::health::healthz))
        .route(
            "/readyz",
            get(|State(state): State<MetricsState>| async move { crate::health::ready(&state.store).await }),
        )
        .with_state(state)
}

/// Refreshes the database gauges, then renders everything.
pub async fn render(State(state): State<MetricsState>) -> Response {
    match state.store.stats().await {
        Ok(stats) => {
            // Every series the queries cover is set, to zero when absent, so
            // a count that dropped to nothing does not linger at its last value.
            for job_state in ["ready", "leased", "dead"] {
                for kind in JobKind::ALL {
                    let count = stats
                        .jobs
                        .iter()
                        .find(|(s, k, _)| s == job_state && k == kind.as_str())
                        .map_or(0, |(_, _, n)| *n);
                    metrics::gauge!("switchyard_jobs", "state" => job_state, "kind" => kind.as_str()).set(count as f64);
                }
            }
            metrics::gauge!("switchyard_queue_oldest_ready_seconds").set(stats.oldest_ready_seconds);
            for task_state in
                [TaskState::Submitted, TaskState::Working, TaskState::InputRequired, TaskState::AuthRequired]
            {
                let count = stats.tasks.iter().find(|(s, _)| s == task_state.as_str()).map_or(0, |(_, n)| *n);
                metrics::gauge!("switchyard_tasks", "state" => task_state.as_str()).set(count as f64);
            }
            metrics::gauge!("switchyard_plan_children_open").set(stats.children_open as f64);
            for (agent, open, failures) in stats.agents {
                metrics::gauge!("switchyard_agent_breaker_open", "agent" => agent.clone()).set(if open {
                    1.0
                } else {
                    0.0
                });
                metrics::gauge!("switchyard_agent_consecutive_failures", "agent" => agent).set(f64::from(failures));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: database gauges unavailable");
            metrics::counter!("switchyard_metrics_database_errors_total").increment(1);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.handle.render()).into_response()
}

/// `/metrics` when this process records none.
pub async fn disabled() -> Response {
    (StatusCode::NOT_FOUND, "metrics are not enabled in this process").into_response()
}
