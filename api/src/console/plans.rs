//! Plans: their definitions, and the tasks running each.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;
use switchyard_engine::ConsoleFilter;

use super::layout::{self, Section};
use super::session;
use crate::state::AppState;

/// A plan's most recent tasks shown on this page.
const RECENT: i64 = 10;

/// `GET /console/plans`.
pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap, OriginalUri(uri): OriginalUri) -> Response {
    let viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let plans = match viewer.store(&state).plans_list().await {
        Ok(plans) => plans,
        Err(e) => return layout::unavailable(e),
    };
    let mut recent = Vec::with_capacity(plans.len());
    for plan in &plans {
        let filter = ConsoleFilter { plan: Some(plan.name.clone()), ..ConsoleFilter::default() };
        match viewer.store(&state).console_tasks(&filter, None, RECENT).await {
            Ok(tasks) => recent.push(tasks),
            Err(e) => return layout::unavailable(e),
        }
    }
    let main = html! {
        h1 { "Plans" }
        @if plans.is_empty() { p { "No plan is defined (the config file's [[plans]], or the admin API)." } }
        @for (plan, tasks) in plans.iter().zip(&recent) {
            article .plan aria-labelledby={ "plan-" (plan.name) } {
                h2 #{ "plan-" (plan.name) } { (plan.name) }
                @if let Some(description) = &plan.description { p { (description) } }
                (layout::pre(&serde_json::to_string_pretty(plan).unwrap_or_default()))
                h3 { "Recent tasks" }
                @if tasks.is_empty() { p { "None yet." } } @else {
                    ul .plain {
                        @for t in tasks {
                            li { (layout::task_link(&t.task.id.to_string())) " " (layout::state(t.task.state.as_str())) " "
                                (layout::time(t.task.created_at)) }
                        }
                    }
                    p { a href={ "/console/tasks?plan=" (plan.name) } { "Every task of " (plan.name) " →" } }
                }
            }
        }
    };
    layout::page("Plans", &viewer, Section::Plans, main)
}
