//! `switchyard demo-agent`: a real A2A v1.0 agent (JSON-RPC, with SSE) whose
//! behaviour the message chooses, for tests, benchmarks and the walkthrough.
//!
//! The first text part of a message is a command:
//!
//! | command | behaviour |
//! | --- | --- |
//! | `echo TEXT` | completes with an artifact holding TEXT |
//! | `stream N` | works, then sends N artifact chunks, then completes |
//! | `sleep MS` | completes after MS milliseconds |
//! | `ask` | asks for input; the answer completes it (artifact `answer: …`) |
//! | `fail N REST` | answers HTTP 503 to the first N deliveries of this messageId, then runs REST |
//! | `throttle N REST` | answers HTTP 429 with `Retry-After: 1` to the first N deliveries, then runs REST |
//! | `status CODE` | answers every delivery with HTTP CODE |
//! | `reject` | rejects the task |
//! | `message TEXT` | answers with a Message, no task |
//! | `hang` | works forever (until canceled) |
//!
//! It also answers `GetTask`, `SubscribeToTask`, `CancelTask` and
//! `ListTasks` (filtered by `contextId` only).
//!
//! `GET /received` reports how many times each messageId arrived, and
//! `GET /traces` the `traceparent` it last came with, so tests can check what
//! a broker delivered.
//!
//! With a journal file (`dev` keeps one beside its store, `--journal` for
//! `demo-agent`), its tasks survive a restart, a `kill -9` included: every
//! task, event and answer is appended to the file as it happens, and on
//! start the agent reads it back and runs again what was in flight (a
//! command from its start, an answer from the answer), so a broker that
//! re-attaches after the restart finds the task and sees it finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a2a::{
    Artifact, Message, Part, Role, SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, AgentTask>,
    received: HashMap<String, u32>,
    /// The `traceparent` each messageId last arrived with.
    traces: HashMap<String, String>,
}

struct AgentTask {
    context_id: String,
    events: Vec<StreamResponse>,
    changed: watch::Sender<usize>,
    /// The command it runs, and the answer it was given, if any: what a
    /// restart needs to run it again.
    command: String,
    answer: Option<String>,
}

impl AgentTask {
    fn new(context_id: String, command: String) -> AgentTask {
        let (changed, _) = watch::channel(0);
        AgentTask { context_id, events: Vec::new(), changed, command, answer: None }
    }
}

/// One line of the journal.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum Entry {
    Task { task: String, context: String, command: String },
    Event { task: String, event: Box<StreamResponse> },
    Answer { task: String, text: String },
}

#[derive(Clone, Default)]
struct Agent {
    inner: Arc<Mutex<Inner>>,
    url: Arc<String>,
    streaming: bool,
    /// Each scripted step's pause.
    pause: Duration,
    /// Where its tasks are written as they change, if anywhere.
    journal: Option<Arc<Mutex<std::fs::File>>>,
}

impl Agent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, task_id: &str, event: StreamResponse) {
        let mut inner = self.lock();
        if let Some(task) = inner.tasks.get_mut(task_id) {
            self.write(&Entry::Event { task: task_id.to_owned(), event: Box::new(event.clone()) });
            task.events.push(event);
            let n = task.events.len();
            task.changed.send_replace(n);
        }
    }

    /// Appends one entry to the journal (before the change is visible, so
    /// nothing a caller saw is missing after a restart).
    fn write(&self, entry: &Entry) {
        let Some(journal) = &self.journal else { return };
        let Ok(line) = serde_json::to_string(entry) else { return };
        let mut file = journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = std::io::Write::write_all(&mut *file, format!("{line}\n").as_bytes()) {
            tracing::warn!(%error, "the demo agent could not write its journal");
        }
    }

    /// Reads the journal back, and runs again what was in flight when it
    /// was written last.
    fn restore(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        {
            let mut inner = self.lock();
            // A line cut short by a kill is the last one: skipped.
            for entry in text.lines().filter_map(|line| serde_json::from_str::<Entry>(line).ok()) {
                match entry {
                    Entry::Task { task, context, command } => {
                        inner.tasks.insert(task, AgentTask::new(context, command));
                    }
                    Entry::Event { task, event } => {
                        if let Some(t) = inner.tasks.get_mut(&task) {
                            t.events.push(*event);
                        }
                    }
                    Entry::Answer { task, text } => {
                        if let Some(t) = inner.tasks.get_mut(&task) {
                            t.answer = Some(text);
                        }
                    }
                }
            }
        }
        let in_flight: Vec<(String, String, Option<String>)> = {
            let inner = self.lock();
            inner.tasks.iter().map(|(id, t)| (id.clone(), t.command.clone(), t.answer.clone())).collect()
        };
        for (task_id, command, answer) in in_flight {
            let Some(state) = self.snapshot(&task_id).map(|t| t.status.state) else { continue };
            if state.is_terminal() || (state == TaskState::InputRequired && answer.is_none()) {
                continue;
            }
            tracing::info!(task = %task_id, "the demo agent runs again a task it had in flight");
            match answer {
                Some(answer) => {
                    self.artifact(&task_id, &format!("answer: {answer}"), false, true);
                    self.status(&task_id, TaskState::Completed, None);
                }
                None => {
                    tokio::spawn(self.clone().run(task_id, command));
                }
            }
        }
        Ok(())
    }

    fn status(&self, task_id: &str, state: TaskState, text: Option<&str>) {
        let context_id = self.lock().tasks.get(task_id).map(|t| t.context_id.clone()).unwrap_or_default();
        let message = text.map(|t| {
            let mut m = Message::new(Role::Agent, vec![Part::text(t)]);
            m.context_id = Some(context_id.clone());
            m.task_id = Some(task_id.to_owned());
            m
        });
        self.push(
            task_id,
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: task_id.to_owned(),
                context_id,
                status: TaskStatus { state, message, timestamp: Some(chrono::Utc::now()) },
                metadata: None,
            }),
        );
    }

    fn artifact(&self, task_id: &str, text: &str, append: bool, last: bool) {
        let context_id = self.lock().tasks.get(task_id).map(|t| t.context_id.clone()).unwrap_or_default();
        self.push(
            task_id,
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: task_id.to_owned(),
                context_id,
                artifact: Artifact {
                    artifact_id: "result".into(),
                    name: Some("result".into()),
                    description: None,
                    parts: vec![Part::text(text)],
                    metadata: None,
                    extensions: None,
                },
                append: append.then_some(true),
                last_chunk: last.then_some(true),
                metadata: None,
            }),
        );
    }

    /// The task as folded from its events.
    fn snapshot(&self, task_id: &str) -> Option<Task> {
        let inner = self.lock();
        let task = inner.tasks.get(task_id)?;
        let mut snapshot = Task {
            id: task_id.to_owned(),
            context_id: task.context_id.clone(),
            status: TaskStatus { state: TaskState::Submitted, message: None, timestamp: Some(chrono::Utc::now()) },
            artifacts: None,
            history: None,
            metadata: None,
        };
        for event in &task.events {
            match event {
                StreamResponse::StatusUpdate(s) => snapshot.status = s.status.clone(),
                StreamResponse::ArtifactUpdate(a) => {
                    let artifacts = snapshot.artifacts.get_or_insert_with(Vec::new);
                    match artifacts.iter_mut().find(|x| x.artifact_id == a.artifact.artifact_id) {
                        Some(existing) if a.append == Some(true) => existing.parts.extend(a.artifact.parts.clone()),
                        Some(existing) => *existing = a.artifact.clone(),
                        None => artifacts.push(a.artifact.clone()),
                    }
                }
                _ => {}
            }
        }
        Some(snapshot)
    }

    fn settled(&self, task_id: &str) -> bool {
        self.snapshot(task_id)
            .is_some_and(|t| t.status.state.is_terminal() || t.status.state == TaskState::InputRequired)
    }

    /// Runs a command on a task, pushing its events over time.
    async fn run(self, task_id: String, command: String) {
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or("echo").to_owned();
        let rest: Vec<&str> = words.collect();
        let pause = self.pause;
        match verb.as_str() {
            "stream" => {
                let n: usize = rest.first().and_then(|n| n.parse().ok()).unwrap_or(3);
                self.status(&task_id, TaskState::Working, None);
                for i in 0..n {
                    tokio::time::sleep(pause).await;
                    self.artifact(&task_id, &format!("chunk {i};"), i > 0, i + 1 == n);
                }
                self.status(&task_id, TaskState::Completed, Some("streamed"));
            }
            "sleep" => {
                let ms: u64 = rest.first().and_then(|n| n.parse().ok()).unwrap_or(100);
                self.status(&task_id, TaskState::Working, None);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.artifact(&task_id, "slept", false, true);
                self.status(&task_id, TaskState::Completed, None);
            }
            "ask" => self.status(&task_id, TaskState::InputRequired, Some("what is your answer?")),
            "reject" => self.status(&task_id, TaskState::Rejected, Some("I do not do that")),
            "hang" => self.status(&task_id, TaskState::Working, None),
            _ => {
                let text = if verb == "echo" { rest.join(" ") } else { command.clone() };
                self.status(&task_id, TaskState::Working, None);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                self.artifact(&task_id, &text, false, true);
                self.status(&task_id, TaskState::Completed, None);
            }
        }
    }

    /// Accepts a message: a new task, an answer to a question, or a Message reply.
    fn accept(&self, request: &SendMessageRequest) -> Result<Accepted, (StatusCode, Value)> {
        let message = &request.message;
        let text = message.text().unwrap_or("").trim().to_owned();
        let mut command = text.clone();
        // `fail N REST`: refuse the first N deliveries of this messageId.
        let seen = {
            let mut inner = self.lock();
            let n = inner.received.entry(message.message_id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        for (prefix, status) in
            [("fail ", StatusCode::SERVICE_UNAVAILABLE), ("throttle ", StatusCode::TOO_MANY_REQUESTS)]
        {
            if let Some(rest) = text.strip_prefix(prefix) {
                let mut words = rest.splitn(2, ' ');
                let n: u32 = words.next().and_then(|n| n.parse().ok()).unwrap_or(1);
                if seen <= n {
                    return Err((status, json!({"error": "try again"})));
                }
                command = words.next().unwrap_or("echo recovered").to_owned();
            }
        }
        if let Some(code) = text.strip_prefix("status ").and_then(|c| c.trim().parse::<u16>().ok()) {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err((status, json!({"error": "as you asked"})));
        }
        if let Some(reply) = command.strip_prefix("message ") {
            let mut m = Message::new(Role::Agent, vec![Part::text(reply)]);
            m.context_id = message.context_id.clone().or_else(|| Some(uuid::Uuid::new_v4().to_string()));
            return Ok(Accepted::Message(m));
        }
        if let Some(task_id) = message.task_id.clone() {
            let known = self.lock().tasks.contains_key(&task_id);
            if !known {
                return Err((StatusCode::OK, json!({"code": -32001, "message": "task not found"})));
            }
            // Working before the answer is acknowledged, so nobody sees the
            // old question as the reply to the answer.
            self.write(&Entry::Answer { task: task_id.clone(), text: text.clone() });
            if let Some(task) = self.lock().tasks.get_mut(&task_id) {
                task.answer = Some(text.clone());
            }
            self.status(&task_id, TaskState::Working, None);
            let answer = text.clone();
            let agent = self.clone();
            let id = task_id.clone();
            tokio::spawn(async move {
                agent.artifact(&id, &format!("answer: {answer}"), false, true);
                agent.status(&id, TaskState::Completed, None);
            });
            return Ok(Accepted::Task(task_id));
        }
        let task_id = uuid::Uuid::new_v4().to_string();
        let context_id = message.context_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.write(&Entry::Task { task: task_id.clone(), context: context_id.clone(), command: command.clone() });
        self.lock().tasks.insert(task_id.clone(), AgentTask::new(context_id, command.clone()));
        tokio::spawn(self.clone().run(task_id.clone(), command));
        Ok(Accepted::Task(task_id))
    }

    /// The task's events from index `from` on, until it settles.
    fn follow(&self, task_id: String, mut from: usize) -> impl tokio_stream::Stream<Item = StreamResponse> + use<> {
        let agent = self.clone();
        async_stream_like(move |tx| async move {
            let Some(mut rx) = agent.lock().tasks.get(&task_id).map(|t| t.changed.subscribe()) else {
                return;
            };
            loop {
                let batch: Vec<StreamResponse> =
                    agent.lock().tasks.get(&task_id).map(|t| t.events[from..].to_vec()).unwrap_or_default();
                for event in batch {
                    from += 1;
                    let stop = match &event {
                        StreamResponse::StatusUpdate(s) => {
                            s.status.state.is_terminal() || s.status.state == TaskState::InputRequired
                        }
                        _ => false,
                    };
                    if tx.send(event).await.is_err() || stop {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

enum Accepted {
    Task(String),
    Message(Message),
}

/// A stream fed by a producer task through a channel.
fn async_stream_like<F, Fut>(producer: F) -> tokio_stream::wrappers::ReceiverStream<StreamResponse>
where
    F: FnOnce(tokio::sync::mpsc::Sender<StreamResponse>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})).into_response()
}

async fn jsonrpc(State(agent): State<Agent>, headers: axum::http::HeaderMap, Json(call): Json<Value>) -> Response {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The agent's own span continues the caller's trace (exported when the
    // process is started with the OTLP environment set).
    let method = call.get("method").and_then(Value::as_str).unwrap_or("?").to_owned();
    let span = tracing::info_span!(
        "demo agent",
        otel.name = %format!("A2A/{method}"),
        otel.kind = "server",
        rpc.system = "jsonrpc",
        rpc.service = "A2A",
        rpc.method = %method,
        http.request.method = "POST",
        http.route = "/",
        url.path = "/",
        http.response.status_code = tracing::field::Empty,
    );
    let carrier = switchyard_engine::trace::from_headers(|h| headers.get(h).and_then(|v| v.to_str().ok()));
    switchyard_engine::trace::continue_from(&span, Some(&carrier));
    let response = tracing::Instrument::instrument(answer(agent, traceparent, call), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn answer(agent: Agent, traceparent: Option<String>, call: Value) -> Response {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let params = call.get("params").cloned().unwrap_or(json!({}));
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    match method {
        "SendMessage" | "SendStreamingMessage" => {
            let Ok(request) = serde_json::from_value::<SendMessageRequest>(params) else {
                return rpc_error(&id, -32602, "invalid params");
            };
            if let Some(trace) = traceparent {
                agent.lock().traces.insert(request.message.message_id.clone(), trace);
            }
            let accepted = match agent.accept(&request) {
                Ok(a) => a,
                Err((StatusCode::OK, e)) => {
                    return Json(json!({"jsonrpc": "2.0", "id": id, "error": e})).into_response();
                }
                Err((status, body)) => {
                    let mut response = (status, Json(body)).into_response();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                    }
                    return response;
                }
            };
            let task_id = match accepted {
                Accepted::Message(m) => {
                    let wrapped = serde_json::to_value(StreamResponse::Message(m)).unwrap_or(Value::Null);
                    if method == "SendMessage" {
                        return rpc_result(&id, wrapped);
                    }
                    let event =
                        Event::default().data(json!({"jsonrpc": "2.0", "id": id, "result": wrapped}).to_string());
                    return Sse::new(tokio_stream::once(Ok::<_, Infallible>(event))).into_response();
                }
                Accepted::Task(task_id) => task_id,
            };
            if method == "SendMessage" {
                let blocking = !request.configuration.and_then(|c| c.return_immediately).unwrap_or(false);
                // Woken by the task's own changes, not a polling interval.
                let changes = agent.lock().tasks.get(&task_id).map(|t| t.changed.subscribe());
                if let (true, Some(mut changes)) = (blocking, changes) {
                    while !agent.settled(&task_id) && changes.changed().await.is_ok() {}
                }
                return rpc_result(&id, json!({ "task": agent.snapshot(&task_id) }));
            }
            stream(&agent, id, task_id)
        }
        "GetTask" => match params.get("id").and_then(Value::as_str).and_then(|t| agent.snapshot(t)) {
            Some(task) => rpc_result(&id, serde_json::to_value(task).unwrap_or(Value::Null)),
            None => rpc_error(&id, -32001, "task not found"),
        },
        // Only the context filter, which a broker uses to find the task a
        // message it never heard the answer to made.
        "ListTasks" => {
            let context = params.get("contextId").and_then(Value::as_str).unwrap_or_default().to_owned();
            let ids: Vec<String> = agent
                .lock()
                .tasks
                .iter()
                .filter(|(_, t)| context.is_empty() || t.context_id == context)
                .map(|(id, _)| id.clone())
                .collect();
            let tasks: Vec<Task> = ids.iter().filter_map(|t| agent.snapshot(t)).collect();
            let size = tasks.len();
            rpc_result(&id, json!({ "tasks": tasks, "nextPageToken": "", "pageSize": size, "totalSize": size }))
        }
        "SubscribeToTask" => match params.get("id").and_then(Value::as_str) {
            Some(t) if agent.snapshot(t).is_some() => stream(&agent, id, t.to_owned()),
            _ => rpc_error(&id, -32001, "task not found"),
        },
        "CancelTask" => match params.get("id").and_then(Value::as_str) {
            Some(t) if agent.snapshot(t).is_some_and(|s| !s.status.state.is_terminal()) => {
                agent.status(t, TaskState::Canceled, Some("canceled"));
                rpc_result(&id, serde_json::to_value(agent.snapshot(t)).unwrap_or(Value::Null))
            }
            Some(t) if agent.snapshot(t).is_some() => rpc_error(&id, -32002, "task not cancelable"),
            _ => rpc_error(&id, -32001, "task not found"),
        },
        _ => rpc_error(&id, -32601, "method not found"),
    }
}

/// SSE: the task snapshot first, then its events until it settles.
fn stream(agent: &Agent, id: Value, task_id: String) -> Response {
    use tokio_stream::StreamExt;
    let first = agent.snapshot(&task_id).map(StreamResponse::Task);
    let already = agent.lock().tasks.get(&task_id).map(|t| t.events.len()).unwrap_or(0);
    let settled = agent.settled(&task_id);
    let rest = agent.follow(task_id, already);
    let events = tokio_stream::iter(first).chain(rest.take_while(move |_| !settled));
    let frames = events.map(move |event| {
        let data = json!({"jsonrpc": "2.0", "id": id, "result": serde_json::to_value(event).unwrap_or(Value::Null)});
        Ok::<_, Infallible>(Event::default().data(data.to_string()))
    });
    Sse::new(frames).into_response()
}

async fn card(State(agent): State<Agent>) -> Json<Value> {
    Json(json!({
        "name": "Switchyard demo agent",
        "description": "A scriptable A2A agent: the message text chooses its behaviour.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{"url": agent.url.as_str(), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": agent.streaming, "pushNotifications": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "Repeats, streams, asks, fails on command.", "tags": ["demo"]}],
    }))
}

async fn received(State(agent): State<Agent>) -> Json<HashMap<String, u32>> {
    Json(agent.lock().received.clone())
}

async fn traces(State(agent): State<Agent>) -> Json<HashMap<String, String>> {
    Json(agent.lock().traces.clone())
}

/// Serves the demo agent until `shutdown`; with `journal`, its tasks
/// outlive the process (see the module's documentation).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    public_url: Option<String>,
    streaming: bool,
    pause: Duration,
    journal: Option<&std::path::Path>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let url = match public_url {
        Some(url) => url,
        None => format!("http://{}", listener.local_addr()?),
    };
    let file = match journal {
        Some(path) => Some(Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))),
        None => None,
    };
    let agent = Agent { inner: Arc::default(), url: Arc::new(url), streaming, pause, journal: file };
    if let Some(path) = journal {
        agent.restore(path)?;
    }
    let app = Router::new()
        .route("/", post(jsonrpc))
        .route("/.well-known/agent-card.json", get(card))
        .route("/received", get(received))
        .route("/traces", get(traces))
        .with_state(agent);
    axum::serve(switchyard_api::no_delay(listener), app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
