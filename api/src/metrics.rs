//! `GET /metrics` in the Prometheus text format: this process's counters and
//! histograms, plus gauges read from the database at scrape time.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_engine::Store;

/// What the metrics endpoint needs.
#[derive(Debug, Clone)]
pub struct MetricsState {
    pub store: Store,
    pub handle: PrometheusHandle,
}

/// A router serving `/metrics` alone (for processes without the API).
pub fn router(state: MetricsState) -> Router {
    Router::new().route("/metrics", get(render)).with_state(state)
}

/// Refreshes the database gauges, then renders everything.
pub async fn render(State(state): State<MetricsState>) -> Response {
    match state.store.stats().await {
        Ok(stats) => {
            for (job_state, kind, count) in stats.jobs {
                metrics::gauge!("switchyard_jobs", "state" => job_state, "kind" => kind).set(count as f64);
            }
            metrics::gauge!("switchyard_queue_oldest_ready_seconds").set(stats.oldest_ready_seconds);
            for (task_state, count) in stats.tasks {
                metrics::gauge!("switchyard_tasks", "state" => task_state).set(count as f64);
            }
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
