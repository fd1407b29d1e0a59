//! Queues and dead letters: jobs by kind and state; dead jobs and dead
//! webhook deliveries with their last error, requeued or discarded one at
//! a time or all that match a filter.

use axum::Form;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use switchyard_engine::{JobId, StoreError};

use super::layout::{self, Section};
use super::session::{self, Viewer};
use super::task::acting;
use crate::state::AppState;

/// Dead letters listed (and acted on by "all") at most.
const DEAD: i64 = 500;

/// `GET /console/queues`.
pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap, OriginalUri(uri): OriginalUri) -> Response {
    let viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let read = tokio::try_join!(
        viewer.store(&state).stats(),
        viewer.store(&state).jobs_dead(DEAD),
        viewer.store(&state).push_deliveries(Some("dead"), DEAD)
    );
    let (stats, dead_jobs, dead_deliveries) = match read {
        Ok(read) => read,
        Err(e) => return layout::unavailable(e),
    };
    let mut kinds: Vec<&str> = dead_jobs.iter().map(|j| j.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let main = html! {
        h1 { "Queues" }
        section aria-labelledby="jobs-by-kind" {
            h2 #jobs-by-kind { "Jobs by kind and state" }
            p { "Oldest job ready to run: " (format!("{:.1}", stats.oldest_ready_seconds)) " s waiting." }
            div .scroll { table {
                thead { tr { th { "Kind" } th { "State" } th .num { "Jobs" } } }
                tbody {
                    @for (job_state, kind, n) in &stats.jobs {
                        tr { td { (kind) } td { (job_state) } td .num { (n) } }
                    }
                }
            } }
        }
        section aria-labelledby="dead-jobs" {
            h2 #dead-jobs { "Dead jobs (" (dead_jobs.len()) ")" }
            @if dead_jobs.is_empty() { p { "None." } } @else {
                (bulk(&viewer, "jobs", &kinds))
                div .scroll { table {
                    thead { tr { th .num { "Job" } th { "Task" } th { "Kind" } th .num { "Attempts" } th { "Died" } th { "Last error" } th { "Actions" } } }
                    tbody {
                        @for job in &dead_jobs {
                            tr {
                                td .num { (job.id.0) }
                                td { (layout::task_link(&job.task_id.to_string())) }
                                td { (job.kind) } td .num { (job.attempt) "/" (job.max_attempts) }
                                td { @if let Some(at) = job.finished_at { (layout::time(at)) } }
                                td .error-text { (job.last_error.clone().unwrap_or_default()) }
                                td .actions {
                                    (layout::button(&viewer, &format!("/console/jobs/{}/requeue", job.id.0), "Requeue", None))
                                    (layout::button(&viewer, &format!("/console/jobs/{}/discard", job.id.0), "Discard", Some("Discard this dead job?")))
                                }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="dead-deliveries" {
            h2 #dead-deliveries { "Dead webhook deliveries (" (dead_deliveries.len()) ")" }
            @if dead_deliveries.is_empty() { p { "None." } } @else {
                (bulk(&viewer, "deliveries", &[]))
                div .scroll { table {
                    thead { tr { th .num { "Delivery" } th { "Task" } th { "Webhook" } th { "URL" } th .num { "Attempts" } th { "Last error" } th { "Actions" } } }
                    tbody {
                        @for d in &dead_deliveries {
                            tr {
                                td .num { (d.id) }
                                td { (layout::task_link(&d.task_id.to_string())) }
                                td { (d.config_id) } td { code { (d.url) } } td .num { (d.attempts) }
                                td .error-text { (d.last_error.clone().unwrap_or_default()) }
                                td .actions {
                                    (layout::button(&viewer, &format!("/console/deliveries/{}/requeue", d.id), "Requeue", None))
                                    (layout::button(&viewer, &format!("/console/deliveries/{}/discard", d.id), "Discard", Some("Discard this dead delivery?")))
                                }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout::page("Queues", &viewer, Section::Queues, main)
}

/// The form acting on every dead letter of a list (jobs: of one kind, or all).
fn bulk(viewer: &Viewer, what: &str, kinds: &[&str]) -> maud::Markup {
    html! {
        form .bulk method="post" action="/console/dead" data-confirm={ "Act on every dead " (what) " that matches?" } {
            (layout::csrf(viewer))
            input type="hidden" name="what" value=(what);
            @if !kinds.is_empty() {
                label { "Kind"
                    select name="kind" {
                        option value="" { "every kind" }
                        @for kind in kinds { option value=(kind) { (kind) } }
                    }
                }
            }
            button type="submit" name="action" value="requeue" { "Requeue all" }
            button type="submit" name="action" value="discard" { "Discard all" }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct OneForm {
    csrf: String,
    /// The store the letter is on (a job's id is its store's).
    store: Option<String>,
}

/// A kind of dead letter.
#[derive(Debug, Clone, Copy)]
enum Letter {
    Job,
    Delivery,
}

/// Requeues or discards one dead letter: true when done, false when it is
/// no longer dead (or gone); `None` for an action there is not.
async fn act(
    state: &AppState,
    viewer: &Viewer,
    letter: Letter,
    action: &str,
    id: i64,
) -> Option<Result<bool, StoreError>> {
    let store = viewer.store(state);
    Some(match (letter, action) {
        (Letter::Job, "requeue") => match store.job_requeue(JobId(id)).await {
            Ok(()) => Ok(true),
            Err(StoreError::JobNotFound(_) | StoreError::JobNotDead { .. }) => Ok(false),
            Err(e) => Err(e),
        },
        (Letter::Job, "discard") => store.job_discard(JobId(id)).await,
        (Letter::Delivery, "requeue") => match store.push_requeue(id).await {
            Ok(()) => Ok(true),
            Err(StoreError::DeliveryNotDead(_)) => Ok(false),
            Err(e) => Err(e),
        },
        (Letter::Delivery, "discard") => store.delivery_discard(id).await,
        _ => return None,
    })
}

fn no_such_action() -> Response {
    (StatusCode::NOT_FOUND, layout::bare("No such action", "Dead letters are requeued or discarded.")).into_response()
}

/// `POST /console/jobs/{id}/{requeue|discard}`.
pub(super) async fn job_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<OneForm>,
) -> Response {
    one(&state, &headers, &form, Letter::Job, id, &action).await
}

/// `POST /console/deliveries/{id}/{requeue|discard}`.
pub(super) async fn delivery_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<OneForm>,
) -> Response {
    one(&state, &headers, &form, Letter::Delivery, id, &action).await
}

async fn one(state: &AppState, headers: &HeaderMap, form: &OneForm, letter: Letter, id: i64, action: &str) -> Response {
    let mut viewer = match acting(state, headers, &form.csrf).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused,
    };
    super::store_choice::from_form(state, &mut viewer, form.store.as_deref());
    let Some(done) = act(state, &viewer, letter, action, id).await else { return no_such_action() };
    let (audited, detail) = match letter {
        Letter::Job => (format!("job.{action}"), json!({ "job": id })),
        Letter::Delivery => (format!("webhook.{action}"), json!({ "delivery": id })),
    };
    finish(state, &viewer, headers, done, &audited, detail).await
}

#[derive(Debug, Deserialize)]
pub(super) struct AllForm {
    csrf: String,
    store: Option<String>,
    what: String,
    action: String,
    kind: Option<String>,
}

/// `POST /console/dead`: requeues or discards every dead job (of a kind)
/// or every dead delivery listed.
pub(super) async fn all_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AllForm>,
) -> Response {
    let mut viewer = match acting(&state, &headers, &form.csrf).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused,
    };
    super::store_choice::from_form(&state, &mut viewer, form.store.as_deref());
    let kind = form.kind.as_deref().filter(|k| !k.is_empty());
    let result = async {
        if !matches!(form.action.as_str(), "requeue" | "discard") {
            return Ok(None);
        }
        let ids: Vec<i64> = match form.what.as_str() {
            "jobs" => viewer
                .store(&state)
                .jobs_dead(DEAD)
                .await?
                .iter()
                .filter(|j| kind.is_none_or(|k| j.kind == k))
                .map(|j| j.id.0)
                .collect(),
            "deliveries" => {
                viewer.store(&state).push_deliveries(Some("dead"), DEAD).await?.iter().map(|d| d.id).collect()
            }
            _ => return Ok(None),
        };
        let letter = if form.what == "jobs" { Letter::Job } else { Letter::Delivery };
        let mut count = 0u64;
        for id in ids {
            match act(&state, &viewer, letter, &form.action, id).await {
                Some(done) => count += u64::from(done?),
                None => return Ok(None),
            }
        }
        Ok::<_, StoreError>(Some(count))
    };
    match result.await {
        Ok(Some(count)) => {
            let detail =
                json!({ "what": form.what, "action": form.action, "kind": kind, "count": count, "via": "console" });
            viewer.store(&state).audit(&viewer.who.audit("dead.bulk").with_detail(detail)).await;
            Redirect::to("/console/queues").into_response()
        }
        Ok(None) => (
            StatusCode::BAD_REQUEST,
            layout::bare("No such action", "Dead jobs or deliveries are requeued or discarded."),
        )
            .into_response(),
        Err(e) => layout::unavailable(e),
    }
}

async fn finish(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    done: Result<bool, StoreError>,
    action: &str,
    detail: serde_json::Value,
) -> Response {
    match done {
        Ok(true) => {
            let mut detail = detail;
            detail["via"] = json!("console");
            viewer.store(state).audit(&viewer.who.audit(action).with_detail(detail)).await;
            // Back where the button was (the queue or the task's page).
            let back = headers
                .get(axum::http::header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.find("/console").map(|i| r[i..].to_owned()))
                .filter(|p| !p.starts_with("//"))
                .unwrap_or_else(|| "/console/queues".into());
            Redirect::to(&back).into_response()
        }
        Ok(false) => {
            (StatusCode::CONFLICT, layout::bare("Nothing done", "It is no longer dead (or no longer exists)."))
                .into_response()
        }
        Err(e) => layout::unavailable(e),
    }
}
