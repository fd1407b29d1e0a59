//! The task list: every tenant's tasks, newest first, filtered and paged
//! by keyset (a page costs the same at the millionth task as at the first),
//! new tasks appearing while the first page is open.

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_engine::{ConsoleFilter, ConsoleTask, TaskId, TaskState};

use super::layout::{self, Section};
use super::session;
use crate::state::AppState;

/// Tasks on one page.
const PAGE: i64 = 50;

/// The list's query string: the filters, where the page starts, and
/// whether only the rows are wanted (the live refresh).
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    context: Option<String>,
    /// Created at or after: RFC 3339, or a form's `YYYY-MM-DDTHH:MM` in UTC.
    #[serde(default)]
    since: Option<String>,
    /// The start of a task id.
    #[serde(default)]
    id: Option<String>,
    /// Tasks created before this one (the next page).
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    part: Option<String>,
}

fn given(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

impl ListQuery {
    /// The store's filter, or what is wrong with the query.
    fn filter(&self) -> Result<(ConsoleFilter, Option<TaskId>), String> {
        let state = given(&self.state)
            .map(|s| s.parse::<TaskState>().map_err(|_| format!("{s:?} is not a task state")))
            .transpose()?;
        let since = given(&self.since).map(|s| parse_since(&s)).transpose()?;
        let ids = switchyard_engine::id_range(given(&self.id).as_deref(), since)?;
        let before = given(&self.before)
            .map(|b| b.parse::<TaskId>().map_err(|_| format!("{b:?} is not a task id")))
            .transpose()?;
        Ok((
            ConsoleFilter {
                state,
                tenant: given(&self.tenant),
                agent: given(&self.agent),
                plan: given(&self.plan),
                context_id: given(&self.context),
                ids,
            },
            before,
        ))
    }

    /// This query's string with `before` set to `next` (or cleared).
    fn with_before(&self, next: Option<&str>) -> String {
        let mut query = self.clone();
        query.before = next.map(str::to_owned);
        query_string(&query)
    }
}

fn query_string(query: &ListQuery) -> String {
    // Built by hand from the few fields: every value percent-encoded.
    let fields = [
        ("state", &query.state),
        ("tenant", &query.tenant),
        ("agent", &query.agent),
        ("plan", &query.plan),
        ("context", &query.context),
        ("since", &query.since),
        ("id", &query.id),
        ("before", &query.before),
    ];
    fields
        .iter()
        .filter_map(|(name, value)| given(value).map(|v| format!("{name}={}", encode(&v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// "Created since": RFC 3339, or a browser's `datetime-local` value read as UTC.
fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!("{text:?} is not a time (use 2026-12-06T08:00 in UTC, or RFC 3339)"))
}

/// `GET /console/tasks`.
pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Response {
    let viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let rows_only = query.part.is_some();
    let (filter, before) = match query.filter() {
        Ok(filter) => filter,
        Err(problem) => {
            let main = html! { h1 { "Tasks" } (filters(&query)) p .error role="alert" { (problem) } };
            let mut response = layout::page("Tasks", &viewer, Section::Tasks, main);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let mut tasks = match viewer.store(&state).console_tasks(&filter, before, PAGE + 1).await {
        Ok(tasks) => tasks,
        Err(e) => return layout::unavailable(e),
    };
    let more = tasks.len() as i64 > PAGE;
    tasks.truncate(PAGE as usize);
    let next = more.then(|| tasks.last().map(|t| t.task.id.to_string())).flatten();
    let rows = rows(&tasks);
    if rows_only {
        return axum::response::Html(rows.into_string()).into_response();
    }
    let first_page = before.is_none();
    let live = first_page.then(|| {
        let filters = query.with_before(None);
        if filters.is_empty() {
            "/console/tasks?part=rows".to_owned()
        } else {
            format!("/console/tasks?{filters}&part=rows")
        }
    });
    let main = html! {
        h1 { "Tasks" }
        (filters(&query))
        div .scroll {
            table .tasks {
                caption .visually-hidden { "Tasks, newest first" }
                thead {
                    tr {
                        th scope="col" { "Task" } th scope="col" { "State" } th scope="col" { "Tenant / owner" }
                        th scope="col" { "Agent or plan" } th scope="col" { "Created" } th scope="col" { "Took" }
                        th scope="col" { "Status" }
                    }
                }
                tbody #task-rows data-live=[live] data-every="2000" { (rows) }
            }
        }
        nav .pager aria-label="Pages" {
            @if !first_page { a href={ "/console/tasks?" (query.with_before(None)) } { "← Newest" } }
            @if let Some(next) = &next { a rel="next" href={ "/console/tasks?" (query.with_before(Some(next))) } { "Older →" } }
            @if tasks.is_empty() { p { "No task matches." } }
        }
    };
    layout::page("Tasks", &viewer, Section::Tasks, main)
}

fn filters(query: &ListQuery) -> Markup {
    let value = |v: &Option<String>| given(v).unwrap_or_default();
    let states =
        ["submitted", "working", "input_required", "auth_required", "completed", "failed", "canceled", "rejected"];
    html! {
        form .filters method="get" action="/console/tasks" role="search" {
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in states {
                        option value=(s) selected[given(&query.state).as_deref() == Some(s)] { (s.replace('_', "-")) }
                    }
                }
            }
            label { "Tenant" input name="tenant" value=(value(&query.tenant)); }
            label { "Agent" input name="agent" value=(value(&query.agent)); }
            label { "Plan" input name="plan" value=(value(&query.plan)); }
            label { "Context id" input name="context" value=(value(&query.context)); }
            label { "Created since (UTC)" input name="since" type="datetime-local" value=(value(&query.since)); }
            label { "Task id starts with" input name="id" value=(value(&query.id)) spellcheck="false"; }
            button type="submit" { "Filter" }
            a href="/console/tasks" { "Clear" }
        }
    }
}

fn rows(tasks: &[ConsoleTask]) -> Markup {
    html! {
        @for t in tasks {
            @let id = t.task.id.to_string();
            tr {
                td { (layout::task_link(&id))
                    @if let Some(parent) = t.task.parent_id { br; small { "child of " (layout::task_link(&parent.to_string())) } } }
                td { (layout::state(t.task.state.as_str())) }
                td { (t.task.tenant) " / " (t.task.owner) }
                td {
                    @if let Some(plan) = &t.plan { "plan " a href={ "/console/tasks?plan=" (encode(plan)) } { (plan) } }
                    @else if let Some(agent) = &t.agent { a href={ "/console/tasks?agent=" (encode(agent)) } { (agent) } }
                }
                td { (layout::time(t.task.created_at)) }
                td .num { (layout::human(t.task.status_at - t.task.created_at)) }
                td .status-text { (t.task.status.message.as_ref().and_then(|m| m.text()).unwrap_or_default()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_browsers_value_and_rfc_3339() {
        let expected = DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z").expect("time").with_timezone(&Utc);
        assert_eq!(parse_since("2026-12-06T08:00"), Ok(expected));
        assert_eq!(parse_since("2026-12-06T09:00:00+01:00"), Ok(expected));
        assert_eq!(parse_since("2026-12-06T08:00:00Z"), Ok(expected));
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn a_page_link_keeps_the_filters() {
        let query = ListQuery {
            state: Some("failed".into()),
            tenant: Some("a b".into()),
            part: Some("rows".into()),
            ..ListQuery::default()
        };
        assert_eq!(query.with_before(Some("x")), "state=failed&tenant=a%20b&before=x");
        assert_eq!(query.with_before(None), "state=failed&tenant=a%20b");
    }

    #[test]
    fn bad_filters_are_named() {
        let query = ListQuery { state: Some("done".into()), ..ListQuery::default() };
        assert!(query.filter().expect_err("bad state").contains("done"));
        let query = ListQuery { id: Some("zz".into()), ..ListQuery::default() };
        assert!(query.filter().is_err());
    }
}
