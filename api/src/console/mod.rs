//! The console: every task, job, agent and dead letter on web pages, for
//! the operator paged at night and the team debugging a chain of agents.
//!
//! Pages are rendered on the server ([`maud`] escapes every value put in
//! them) with one small script for what must be live: a task's page
//! follows the task's events as a subscriber does, lists refresh on a
//! timer. Nothing is fetched from anywhere but this server, so it works
//! with no network, and `cargo build` needs nothing else.
//!
//! - [`session`]: who may look (the admin API's rule), the signed session
//!   cookie, and the check every action carries against cross-site requests.
//! - [`layout`]: the page around every page, and the small pieces they share.
//! - [`overview`], [`tasks`], [`task`], [`agents`], [`queues`], [`plans`]:
//!   one module per page, each with its actions.
//! - [`store_choice`]: which store the pages show, when there are several.

mod agents;
mod layout;
mod overview;
mod plans;
mod queues;
mod session;
mod store_choice;
mod task;
mod tasks;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use crate::config::ConsoleConfig;
use crate::state::AppState;

/// Whether the console is open to anyone who can reach it: the deployment
/// takes anonymous calls and has no admin token (the one rule, for the
/// pages and for what `dev` says at start).
pub fn open_to_anyone(anonymous: bool, admin_token: bool) -> bool {
    anonymous && !admin_token
}

/// The console's routes, under `/console`; empty when it is off.
pub fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/", get(overview::page))
        .route("/console/login", get(session::sign_in_form).post(session::sign_in))
        .route("/console/logout", post(session::sign_out))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .route("/console/tasks", get(tasks::page))
        .route("/console/tasks/{id}", get(task::page))
        .route("/console/tasks/{id}/live", get(task::live))
        .route("/console/tasks/{id}/cancel", post(task::cancel))
        .route("/console/tasks/{id}/answer", post(task::answer))
        .route("/console/agents", get(agents::page).post(agents::add))
        .route("/console/agents/{name}/remove", post(agents::remove))
        .route("/console/queues", get(queues::page))
        .route("/console/jobs/{id}/{action}", post(queues::job_action))
        .route("/console/deliveries/{id}/{action}", post(queues::delivery_action))
        .route("/console/dead", post(queues::all_action))
        .route("/console/plans", get(plans::page))
        .route("/console/store/{name}", get(store_choice::switch))
        .layer(axum::middleware::from_fn(server_timing))
}

/// Says how long the server took over each console answer (`Server-Timing:
/// total;dur=…` in ms, after any phases the page named), so a browser's
/// developer tools and the benchmark see server time apart from the network.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let total = format!("total;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
    let value = match response.headers().get("server-timing").and_then(|v| v.to_str().ok()) {
        Some(phases) => format!("{phases}, {total}"),
        None => total,
    };
    if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body)
        .into_response()
}
