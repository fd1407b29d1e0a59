//! A task's page: its status, conversation and artifacts, the timeline of
//! its log, its children, jobs, remote agent, webhooks and audit trail, and
//! its trace; live while it runs. Actions: cancel, answer a question.

use std::convert::Infallible;
use std::time::Duration;

use a2a::{Part, PartContent};
use axum::Form;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;
use switchyard_engine::{
    AuditEntry, Caller, Delegation, DeliveryRecord, JobRecord, PushConfig, StoreError, StoredEvent, TaskEvent, TaskId,
    TaskRecord, TaskState,
};

use super::layout::{self, Section};
use super::session::{self, Viewer};
use crate::state::AppState;

/// The most of a task's log one page shows.
const MAX_EVENTS: i64 = 5_000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct PartQuery {
    part: Option<String>,
}

/// Everything the page shows, read before rendering.
struct Dossier {
    task: TaskRecord,
    events: Vec<StoredEvent>,
    jobs: Vec<JobRecord>,
    delegation: Option<Delegation>,
    /// The agent it is delegated to, even if never reached.
    agent: Option<String>,
    children: Vec<(TaskRecord, Option<String>)>,
    webhooks: Vec<PushConfig>,
    deliveries: Vec<DeliveryRecord>,
    audit: Vec<AuditEntry>,
}

async fn dossier(state: &AppState, viewer: &Viewer, id: TaskId) -> Result<Dossier, StoreError> {
    let store = viewer.store(state);
    let mut task = store.task_view(id).await?;
    // The rest is read side by side: none depends on another.
    let children = async {
        let mut children = Vec::new();
        for child in store.task_children(id).await?.into_iter().take(200) {
            let agent = store.console_label(child.id).await?.0;
            children.push((child, agent));
        }
        Ok(children)
    };
    let (events, jobs, delegation, (agent, _), children, webhooks, deliveries, audit) = tokio::try_join!(
        store.task_events(id, 0, MAX_EVENTS),
        store.task_jobs(id),
        store.delegation_get(id),
        store.console_label(id),
        children,
        store.push_configs_of(id, 100),
        store.push_deliveries_of(id, 100),
        store.audit_for_task(id),
    )?;
    // The artifacts, folded from the log just read rather than read twice.
    let updates: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            TaskEvent::Artifact(update) => Some(update.clone()),
            _ => None,
        })
        .collect();
    task.artifacts = switchyard_engine::task::fold_artifacts(&updates).unwrap_or_default();
    Ok(Dossier { task, events, jobs, delegation, agent, children, webhooks, deliveries, audit })
}

fn not_an_id(id: &str) -> Response {
    (StatusCode::BAD_REQUEST, layout::bare("Not a task id", &format!("{id:?} is not a task id"))).into_response()
}

fn not_found(id: TaskId) -> Response {
    (StatusCode::NOT_FOUND, layout::bare("No such task", &format!("There is no task {id}."))).into_response()
}

/// `GET /console/tasks/{id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    Query(query): Query<PartQuery>,
) -> Response {
    let mut viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(id) = id.parse::<TaskId>() else { return not_an_id(&id) };
    let started = std::time::Instant::now();
    let found = match super::store_choice::locate(&state, &mut viewer, id).await {
        Ok(_) => dossier(&state, &viewer, id).await,
        Err(e) => Err(e),
    };
    let dossier = match found {
        Ok(dossier) => dossier,
        Err(StoreError::TaskNotFound(_)) => return not_found(id),
        Err(e) => return layout::unavailable(e),
    };
    let read = started.elapsed();
    let trace_url = state.handler.config().console.trace_url.clone();
    let body = render(&viewer, &dossier, trace_url.as_deref());
    let title = format!("Task {id}");
    let mut response = if query.part.is_some() {
        axum::response::Html(body.into_string()).into_response()
    } else {
        let live = !dossier.task.state.is_terminal();
        let main = html! {
            div #live data-live={ "/console/tasks/" (id) "?part=main" }
                data-stream=[live.then(|| format!("/console/tasks/{id}/live"))] {
                (body)
            }
        };
        layout::page(&title, &viewer, Section::Tasks, main)
    };
    let timing = format!(
        "read;dur={:.1}, render;dur={:.1}",
        read.as_secs_f64() * 1000.0,
        (started.elapsed() - read).as_secs_f64() * 1000.0
    );
    if let Ok(timing) = axum::http::HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", timing);
    }
    response
}

fn render(viewer: &Viewer, d: &Dossier, trace_url: Option<&str>) -> Markup {
    let task = &d.task;
    let id = task.id.to_string();
    let trace = task.trace_id();
    let trace_link = trace.as_deref().zip(trace_url).map(|(t, template)| template.replace("{trace_id}", t));
    let asking = matches!(task.state, TaskState::InputRequired | TaskState::AuthRequired);
    html! {
        header .task-head {
            h1 { "Task " code .whole { (id) } }
            (layout::state(task.state.as_str()))
            @if !task.state.is_terminal() {
                (layout::button(viewer, &format!("/console/tasks/{id}/cancel"), "Cancel task", Some("Cancel this task?")))
            }
        }
        @if let Some(text) = task.status.message.as_ref().and_then(|m| m.text()) {
            p .status-message { (text) }
        }
        @if asking && task.parent_id.is_none() {
            form .answer method="post" action={ "/console/tasks/" (id) "/answer" } {
                (layout::csrf(viewer))
                label for="answer-text" { "Answer as " (task.owner) }
                textarea #answer-text name="text" rows="2" required {}
                button type="submit" { "Send answer" }
            }
        }
        dl .facts {
            dt { "Tenant / owner" } dd { (task.tenant) " / " (task.owner) }
            dt { "Context" } dd { code { (task.context_id) } }
            @if let Some(parent) = task.parent_id { dt { "Parent" } dd { (layout::task_link(&parent.to_string())) } }
            dt { "Created" } dd { (layout::time(task.created_at)) }
            dt { "Last change" } dd { (layout::time(task.status_at)) " (" (layout::human(task.status_at - task.created_at)) " after creation)" }
            dt { "Agent" }
            dd {
                @if let Some(del) = &d.delegation {
                    a href={ "/console/tasks?agent=" (del.agent) } { (del.agent) }
                    " · remote task "
                    @if let Some(remote) = &del.remote_task_id { code { (remote) } } @else { "not known yet" }
                } @else if let Some(agent) = &d.agent {
                    a href={ "/console/tasks?agent=" (agent) } { (agent) } " · not reached (no remote task)"
                } @else if !d.children.is_empty() { "a plan: see its children below" } @else { "—" }
            }
            dt { "Trace" }
            dd {
                @match (&trace, &trace_link) {
                    (Some(t), Some(link)) => { a href=(link) rel="noreferrer" { code { (t) } } }
                    (Some(t), None) => { code { (t) } }
                    _ => { "—" }
                }
            }
        }
        section aria-labelledby="conversation" {
            h2 #conversation { "Conversation" }
            (conversation(&d.events))
        }
        @if !task.artifacts.is_empty() {
            section aria-labelledby="artifacts" {
                h2 #artifacts { "Artifacts" }
                @for artifact in &task.artifacts {
                    article .artifact {
                        h3 { (artifact.name.clone().unwrap_or_else(|| artifact.artifact_id.to_string())) }
                        @if let Some(description) = &artifact.description { p { (description) } }
                        @for part in joined(&artifact.parts) { (part_view(&part)) }
                    }
                }
            }
        }
        @if !d.children.is_empty() {
            section aria-labelledby="children" {
                h2 #children { "Plan: children" }
                ol .children {
                    @for (child, agent) in &d.children {
                        li {
                            (layout::task_link(&child.id.to_string())) " " (layout::state(child.state.as_str()))
                            @if let Some(agent) = agent { " " (agent) }
                            @if let Some(text) = child.status.message.as_ref().and_then(|m| m.text()) { " — " (text) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            (timeline(&d.events))
        }
        section aria-labelledby="jobs" {
            h2 #jobs { "Jobs and attempts" }
            div .scroll { table {
                thead { tr { th { "Job" } th { "Kind" } th { "State" } th .num { "Attempt" } th { "Run at" } th { "Lease" } th { "Last error" } th {} } }
                tbody {
                    @for job in &d.jobs {
                        tr {
                            td .num { (job.id.0) } td { (job.kind) } td { (job.state.as_str()) }
                            td .num { (job.attempt) "/" (job.max_attempts) } td { (layout::time(job.run_at)) }
                            td { (job.lease_owner.clone().unwrap_or_default()) }
                            td .error-text { (job.last_error.clone().unwrap_or_default()) }
                            td { @if job.state.as_str() == "dead" {
                                (layout::button(viewer, &format!("/console/jobs/{}/requeue", job.id.0), "Requeue", None))
                            } }
                        }
                    }
                }
            } }
        }
        @if !d.webhooks.is_empty() || !d.deliveries.is_empty() {
            section aria-labelledby="webhooks" {
                h2 #webhooks { "Webhooks" }
                ul .plain {
                    @for hook in &d.webhooks {
                        li { (hook.id) " → " code { (switchyard_engine::egress::redacted(&hook.url)) }
                            " (A2A " (hook.version) ")" }
                    }
                }
                h3 { "Deliveries" }
                div .scroll { table {
                    thead { tr { th { "Delivery" } th { "Webhook" } th { "URL" } th .num { "Event" } th { "State" } th .num { "Attempts" } th { "Last error" } } }
                    tbody {
                        @for delivery in &d.deliveries {
                            tr {
                                td .num { (delivery.id) } td { (delivery.config_id) } td { code { (delivery.url) } }
                                td .num { (delivery.seq) } td { (delivery.state) } td .num { (delivery.attempts) }
                                td .error-text { (delivery.last_error.clone().unwrap_or_default()) }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="audit" {
            h2 #audit { "Audit trail" }
            div .scroll { table {
                thead { tr { th { "At" } th { "Action" } th { "Who" } th { "Credential" } th { "Detail" } } }
                tbody {
                    tr { td { (layout::time(task.created_at)) } td { "task.create" } td { (task.tenant) " / " (task.owner) } td {} td {} }
                    @for entry in &d.audit {
                        tr {
                            td { @if let Some(at) = entry.at { (layout::time(at)) } }
                            td { (entry.action) } td { (entry.principal) }
                            td { (entry.credential.clone().unwrap_or_default()) }
                            td { @if let Some(detail) = &entry.detail { code { (detail.to_string()) } } }
                        }
                    }
                }
            } }
        }
    }
}

/// The messages of the log, in order, each with its parts shown as what
/// they are.
fn conversation(events: &[StoredEvent]) -> Markup {
    html! {
        ol .conversation {
            @for e in events {
                @if let TaskEvent::Message(m) = &e.event {
                    @let role = if matches!(m.role, a2a::Role::User) { "user" } else { "agent" };
                    li class={ "message " (role) } {
                        div .meta { strong { (role) } " · " (layout::time(e.created_at)) " · #" (e.seq) }
                        @for part in &m.parts { (part_view(part)) }
                    }
                }
                @if let TaskEvent::Status(s) = &e.event {
                    @if let Some(m) = &s.message {
                        li .message.agent.status-note {
                            div .meta { strong { "agent (status)" } " · " (layout::time(e.created_at)) " · #" (e.seq) }
                            @for part in &m.parts { (part_view(part)) }
                        }
                    }
                }
            }
        }
    }
}

/// An artifact's parts with each run of text parts (a streamed artifact's
/// chunks) joined into one, as a client reading the stream would show it.
fn joined(parts: &[Part]) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::with_capacity(parts.len());
    for part in parts {
        if let (PartContent::Text(more), Some(Part { content: PartContent::Text(text), .. })) =
            (&part.content, out.last_mut())
        {
            text.push_str(more);
        } else {
            out.push(part.clone());
        }
    }
    out
}

/// One part: text as text, data as JSON, a file as a link or its size.
fn part_view(part: &Part) -> Markup {
    let media = part.media_type.clone();
    html! {
        @match &part.content {
            PartContent::Text(text) => { div .part.text { (layout::pre(text)) } }
            PartContent::Data(value) => {
                div .part.data {
                    span .tag { "data" }
                    (layout::pre(&serde_json::to_string_pretty(value).unwrap_or_default()))
                }
            }
            PartContent::Url(url) => {
                div .part.file {
                    span .tag { "file" }
                    @if url.starts_with("https://") || url.starts_with("http://") {
                        a href=(url) rel="noreferrer noopener" { (part.filename.clone().unwrap_or_else(|| url.clone())) }
                    } @else { code { (url) } }
                    @if let Some(media) = &media { " (" (media) ")" }
                }
            }
            PartContent::Raw(bytes) => {
                div .part.file {
                    span .tag { "file" }
                    (part.filename.clone().unwrap_or_else(|| "inline bytes".into()))
                    " — " (bytes.len()) " bytes"
                    @if let Some(media) = &media { " (" (media) ")" }
                }
            }
        }
    }
}

/// The log as a table: sequence, time, time since the previous event,
/// kind and what happened.
fn timeline(events: &[StoredEvent]) -> Markup {
    let mut previous: Option<DateTime<Utc>> = None;
    let deltas: Vec<Option<String>> =
        events.iter().map(|e| previous.replace(e.created_at).map(|p| layout::human(e.created_at - p))).collect();
    html! {
        div .scroll { table .timeline {
            thead { tr { th .num { "Seq" } th { "At" } th .num { "+" } th { "Kind" } th { "What" } } }
            tbody {
                @for (e, delta) in events.iter().zip(deltas) {
                    tr {
                        td .num { (e.seq) } td { (layout::time(e.created_at)) }
                        td .num { (delta.unwrap_or_default()) }
                        td { (e.event.kind().as_str()) }
                        td { (summary(&e.event)) }
                    }
                }
            }
        } }
        @if events.len() as i64 >= MAX_EVENTS { p { "The first " (MAX_EVENTS) " events are shown." } }
    }
}

fn summary(event: &TaskEvent) -> String {
    let clip = |s: &str| {
        let s = s.replace('\n', " ");
        if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
    };
    match event {
        TaskEvent::Status(s) => {
            let state = TaskState::from_a2a(&s.state).map(|s| s.as_str().to_owned()).unwrap_or_default();
            match s.message.as_ref().and_then(|m| m.text()) {
                Some(text) => format!("{state}: {}", clip(text)),
                None => state,
            }
        }
        TaskEvent::Message(m) => {
            let role = if matches!(m.role, a2a::Role::User) { "user" } else { "agent" };
            format!("{role}: {}", clip(m.text().unwrap_or("(parts that are not text)")))
        }
        TaskEvent::Artifact(a) => format!(
            "artifact {}{}{}",
            a.artifact.artifact_id,
            if a.append { " (chunk)" } else { "" },
            if a.last_chunk { " (last chunk)" } else { "" }
        ),
    }
}

/// `GET /console/tasks/{id}/live`: an event stream that says `changed`
/// whenever the task's log grows (the page then re-reads itself), and
/// `ended` when it ends.
pub(super) async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
) -> Response {
    let mut viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(id) = id.parse::<TaskId>() else { return not_an_id(&id) };
    // A live page is a stream like any other: it counts against its
    // viewer's cap (`--max-streams-per-principal`); refused, the browser
    // retries on its own.
    let tenant = viewer.who.tenant.clone().unwrap_or_else(|| "console".into());
    let permit = match state.handler.stream_permit(&Caller::new(tenant, viewer.who.principal.clone())) {
        Ok(permit) => permit,
        Err(e) => return e.respond_with(&e.to_rest()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    if let Err(e) = super::store_choice::locate(&state, &mut viewer, id).await {
        return match e {
            StoreError::TaskNotFound(_) => not_found(id),
            e => layout::unavailable(e),
        };
    }
    let Some(hub) = state.handler.hub_of(&viewer.store) else { return not_found(id) };
    let mut subscription = hub.subscribe();
    let store = viewer.store(&state).clone();
    tokio::spawn(async move {
        let _permit = permit;
        // A page is followed for at most this long; the browser reconnects.
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut seen = None;
        while tokio::time::Instant::now() < until && !tx.is_closed() {
            subscription.changed(id, Duration::from_secs(15)).await;
            let task = match store.task_view(id).await {
                Ok(task) => task,
                Err(_) => return,
            };
            if seen != Some(task.version) {
                seen = Some(task.version);
                let name = if task.state.is_terminal() { "ended" } else { "changed" };
                // A browser that stops reading is not waited for past the
                // page's time.
                let event = Ok(Event::default().event(name).data(task.version.to_string()));
                let sent = tokio::time::timeout_at(until, tx.send(event)).await;
                if !matches!(sent, Ok(Ok(()))) || task.state.is_terminal() {
                    return;
                }
                // Many changes in a burst (a streamed artifact) are one re-read.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct CancelForm {
    csrf: String,
}

/// `POST /console/tasks/{id}/cancel`: cancels the task as its owner could,
/// audited as the console's user.
pub(super) async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    let (viewer, task) = match acting_on(&state, &headers, &form.csrf, &id).await {
        Ok(acting) => acting,
        Err(refused) => return refused,
    };
    let id = task.id;
    let text = format!("canceled by {} from the console", viewer.who.principal);
    let reason = a2a::Message::new(a2a::Role::Agent, vec![Part::text(&text)]);
    match viewer.store(&state).task_cancel(&Caller::new(&task.tenant, &task.owner), id, Some(reason)).await {
        Ok(_) => {}
        Err(e) if e.terminal_state().is_some() => {
            let why = format!("The task is {} already; only an open task can be canceled.", task.state);
            return (StatusCode::CONFLICT, layout::bare("Not canceled", &why)).into_response();
        }
        Err(e) => return layout::unavailable(e),
    }
    audit(&state, &viewer, "task.cancel", &task, json!({ "via": "console" })).await;
    Redirect::to(&format!("/console/tasks/{id}")).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct AnswerForm {
    csrf: String,
    text: String,
}

/// `POST /console/tasks/{id}/answer`: sends the text as the owner's next
/// message, as the owner's own client would.
pub(super) async fn answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<AnswerForm>,
) -> Response {
    let (viewer, task) = match acting_on(&state, &headers, &form.csrf, &id).await {
        Ok(acting) => acting,
        Err(refused) => return refused,
    };
    let id = task.id;
    let text = form.text.trim();
    if text.is_empty() {
        return (StatusCode::BAD_REQUEST, layout::bare("Nothing sent", "The answer is empty.")).into_response();
    }
    let mut message = a2a::Message::new(a2a::Role::User, vec![Part::text(text)]);
    message.task_id = Some(id.to_string());
    message.context_id = Some(task.context_id.clone());
    let request = crate::request::SendRequest {
        idempotency_key: message.message_id.clone(),
        message,
        metadata: None,
        history: 0,
        return_immediately: true,
        trace_context: None,
        push_config: None,
        turn: crate::request::Turn::Continue(id),
    };
    let owner = Caller::new(&task.tenant, &task.owner).with_credential(&viewer.who.credential);
    if let Err(e) = state.handler.send_message(&owner, request).await {
        let status = e.classify().http;
        return (status, layout::bare("Not sent", &e.to_string())).into_response();
    }
    audit(&state, &viewer, "task.answer", &task, json!({ "via": "console" })).await;
    Redirect::to(&format!("/console/tasks/{id}")).into_response()
}

/// The viewer of a form post about task `id`, and that task: refused
/// unless the form is this console's, the id one, and the task there.
async fn acting_on(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    id: &str,
) -> Result<(Viewer, TaskRecord), Response> {
    let mut viewer = acting(state, headers, csrf).await?;
    let Ok(id) = id.parse::<TaskId>() else { return Err(not_an_id(id)) };
    match super::store_choice::locate(state, &mut viewer, id).await {
        Ok(task) => Ok((viewer, task)),
        Err(StoreError::TaskNotFound(_)) => Err(not_found(id)),
        Err(e) => Err(layout::unavailable(e)),
    }
}

/// The viewer of a form post, refused unless the form is this console's.
pub(super) async fn acting(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Viewer, Response> {
    let viewer = session::viewer(state, headers, "/console").await.map_err(IntoResponse::into_response)?;
    session::check_form(&viewer, headers, csrf).map_err(IntoResponse::into_response)?;
    Ok(viewer)
}

async fn audit(state: &AppState, viewer: &Viewer, action: &str, task: &TaskRecord, detail: serde_json::Value) {
    let mut entry = viewer.who.audit(action).with_detail(detail);
    entry.task_id = Some(task.id);
    entry.tenant = Some(task.tenant.clone());
    viewer.store(state).audit(&entry).await;
}
