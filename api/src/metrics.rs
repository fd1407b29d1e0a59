//! `GET /metrics` in the Prometheus text format: this process's counters and
//! histograms, plus gauges read from the database at scrape time: one set
//! per store, labelled `store` with its name.

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
    /// The stores whose gauges this process reports, by name (a worker's
    /// one; every store an api serves).
    pub stores: Vec<(String, Store)>,
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
            get(|State(state): State<MetricsState>| async move { crate::health::ready(&state.stores[0].1).await }),
        )
        .with_state(state)
}

/// How long a scrape waits for one store's statistics.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Refreshes the database gauges, then renders everything.
pub async fn render(State(state): State<MetricsState>) -> Response {
    // The stores are read together, each within a bound: one that is slow
    // or down costs the scrape its own wait, and never the others' gauges.
    let reads: Vec<_> = state
        .stores
        .iter()
        .map(|(name, store)| {
            let store = store.clone();
            (name, tokio::spawn(async move { tokio::time::timeout(STATS_TIMEOUT, store.stats()).await }))
        })
        .collect();
    for (name, read) in reads {
        match read.await {
            Ok(Ok(stats)) => gauges(name, stats.map_err(|e| e.to_string())),
            Ok(Err(_)) => gauges(name, Err::<switchyard_engine::Stats, _>("did not answer within 5 s")),
            Err(join) => gauges(name, Err(join.to_string())),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.handle.render()).into_response()
}

/// Sets one store's gauges from its statistics.
fn gauges(name: &str, stats: Result<switchyard_engine::Stats, impl std::fmt::Display>) {
    let store = name.to_owned();
    match stats {
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
                    metrics::gauge!("switchyard_jobs", "store" => store.clone(), "state" => job_state, "kind" => kind.as_str())
                        .set(count as f64);
                }
            }
            metrics::gauge!("switchyard_queue_oldest_ready_seconds", "store" => store.clone())
                .set(stats.oldest_ready_seconds);
            for task_state in
                [TaskState::Submitted, TaskState::Working, TaskState::InputRequired, TaskState::AuthRequired]
            {
                let count = stats.tasks.iter().find(|(s, _)| s == task_state.as_str()).map_or(0, |(_, n)| *n);
                metrics::gauge!("switchyard_tasks", "store" => store.clone(), "state" => task_state.as_str())
                    .set(count as f64);
            }
            metrics::gauge!("switchyard_plan_children_open", "store" => store.clone()).set(stats.children_open as f64);
            for (agent, open, failures) in stats.agents {
                metrics::gauge!("switchyard_agent_breaker_open", "store" => store.clone(), "agent" => agent.clone())
                    .set(if open { 1.0 } else { 0.0 });
                metrics::gauge!("switchyard_agent_consecutive_failures", "store" => store.clone(), "agent" => agent)
                    .set(f64::from(failures));
            }
            metrics::gauge!("switchyard_store_up", "store" => store).set(1.0);
        }
        Err(error) => {
            tracing::warn!(store = name, %error, "metrics: database gauges unavailable");
            metrics::counter!("switchyard_metrics_database_errors_total", "store" => store.clone()).increment(1);
            metrics::gauge!("switchyard_store_up", "store" => store).set(0.0);
        }
    }
}

/// `/metrics` when this process records none.
pub async fn disabled() -> Response {
    (StatusCode::NOT_FOUND, "metrics are not enabled in this process").into_response()
}
