//! A strict, scriptable A2A agent on loopback, for the ways real agents are
//! hard to delegate to. It refuses a message to a task that has moved on,
//! ignores a message id it has seen (deduplication), splits its SSE frames
//! across TCP writes (inside multi-byte characters, between `\r` and `\n`),
//! stays silent, streams forever, or answers late. It records every message
//! and cancel it receives, which is what the tests assert on.
//!
//! The first message's text picks the script:
//! - `ask N MS`: asks N questions in turn; after each answer it works MS
//!   milliseconds, then asks the next or completes with "answered";
//! - `euro N`: completes with an artifact of N times "a€", its frames split
//!   at awkward byte offsets;
//! - `silent MS`: working, then silent for MS milliseconds, then completes;
//! - `forever`: one SSE frame that never ends;
//! - `late MS`: creates its task at once but says nothing for MS
//!   milliseconds, then works 2 s and completes;
//! - `flaky MS`: like `silent`, but the first stream of the task breaks off
//!   in the middle of a frame (the connection dies mid-stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use a2a::{
    Artifact, Message, Part, Role, SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What became of a message the agent received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    /// Seen before (same message id): ignored.
    Duplicate,
    /// Sent to a task that was not waiting for input.
    Refused,
}

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) task_id: String,
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) verdict: Verdict,
}

#[derive(Debug, Clone)]
enum Script {
    Ask { left: u32, work: Duration },
    Other,
}

#[derive(Debug)]
struct RemoteTask {
    task: Task,
    events: Vec<StreamResponse>,
    script: Script,
    questions: u32,
    /// Whether its first stream broke off already (`flaky`).
    broke: bool,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, RemoteTask>,
    received: Vec<Received>,
    cancels: Vec<String>,
    looks: usize,
    /// Streams opened (sends as a stream, subscriptions).
    streams: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct StrictAgent {
    inner: Arc<Mutex<Inner>>,
    pub(crate) url: String,
    /// Whether its card offers streaming; without, callers send and poll.
    streaming: bool,
}

fn text_of(message: &Message) -> String {
    message.parts.iter().filter_map(|p| p.as_text()).collect::<Vec<_>>().join("")
}

fn agent_message(id: String, text: &str) -> Message {
    Message {
        message_id: id,
        context_id: None,
        task_id: None,
        role: Role::Agent,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: None,
        reference_task_ids: None,
    }
}

fn settled(state: &TaskState) -> bool {
    state.is_terminal() || matches!(state, TaskState::InputRequired | TaskState::AuthRequired)
}

impl StrictAgent {
    pub(crate) async fn start() -> StrictAgent {
        StrictAgent::start_with(true).await
    }

    /// One whose card offers no streaming: it is sent to, then polled.
    pub(crate) async fn start_polled() -> StrictAgent {
        StrictAgent::start_with(false).await
    }

    async fn start_with(streaming: bool) -> StrictAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let agent = StrictAgent { inner: Arc::default(), url, streaming };
        let app = axum::Router::new()
            .route("/", axum::routing::post(rpc))
            .route("/.well-known/agent-card.json", axum::routing::get(card))
            .with_state(agent.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        agent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub(crate) fn cancels(&self) -> Vec<String> {
        self.lock().cancels.clone()
    }

    /// How many times a task was looked at (`GetTask`, `ListTasks`).
    pub(crate) fn looks(&self) -> usize {
        self.lock().looks
    }

    /// How many streams were opened.
    pub(crate) fn streams(&self) -> usize {
        self.lock().streams
    }

    pub(crate) fn state(&self, task_id: &str) -> Option<TaskState> {
        self.lock().tasks.get(task_id).map(|t| t.task.status.state.clone())
    }

    /// Moves a task to `state`, as an event its followers see.
    fn status(&self, task_id: &str, state: TaskState, message: Option<Message>) {
        let mut inner = self.lock();
        let Some(remote) = inner.tasks.get_mut(task_id) else { return };
        if remote.task.status.state.is_terminal() {
            return;
        }
        let message = message.map(|mut m| {
            m.task_id = Some(task_id.to_owned());
            m.context_id = Some(remote.task.context_id.clone());
            m
        });
        remote.task.status = TaskStatus { state, message, timestamp: None };
        let update = TaskStatusUpdateEvent {
            task_id: task_id.to_owned(),
            context_id: remote.task.context_id.clone(),
            status: remote.task.status.clone(),
            metadata: None,
        };
        remote.events.push(StreamResponse::StatusUpdate(update));
    }

    fn artifact(&self, task_id: &str, text: &str) {
        let mut inner = self.lock();
        let Some(remote) = inner.tasks.get_mut(task_id) else { return };
        let artifact = Artifact {
            artifact_id: "result".into(),
            name: Some("result".into()),
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
            extensions: None,
        };
        remote.task.artifacts.get_or_insert_with(Vec::new).push(artifact.clone());
        let update = TaskArtifactUpdateEvent {
            task_id: task_id.to_owned(),
            context_id: remote.task.context_id.clone(),
            artifact,
            append: None,
            last_chunk: Some(true),
            metadata: None,
        };
        remote.events.push(StreamResponse::ArtifactUpdate(update));
    }

    fn ask(&self, task_id: &str) {
        let question = {
            let mut inner = self.lock();
            let Some(remote) = inner.tasks.get_mut(task_id) else { return };
            remote.questions += 1;
            format!("q{}-{task_id}", remote.questions)
        };
        self.status(task_id, TaskState::InputRequired, Some(agent_message(question, "which one?")));
    }

    /// Takes a message: a new task, or an answer to a waiting one.
    fn take(&self, message: Message) -> Result<(String, usize), Value> {
        let text = text_of(&message);
        let mut inner = self.lock();
        let Some(task_id) = message.task_id.clone() else {
            let task_id = uuid::Uuid::new_v4().to_string();
            // The client's context when it names one, as A2A agents do.
            let context_id = message.context_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let words: Vec<&str> = text.split_whitespace().collect();
            let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
            let script = match words.first().copied() {
                Some("ask") => {
                    Script::Ask { left: u32::try_from(number(1)).unwrap_or(1), work: Duration::from_millis(number(2)) }
                }
                _ => Script::Other,
            };
            let mut stored = message.clone();
            stored.task_id = Some(task_id.clone());
            stored.context_id = Some(context_id.clone());
            let task = Task {
                id: task_id.clone(),
                context_id,
                status: TaskStatus { state: TaskState::Submitted, message: None, timestamp: None },
                artifacts: None,
                history: Some(vec![stored]),
                metadata: None,
            };
            inner
                .tasks
                .insert(task_id.clone(), RemoteTask { task, events: Vec::new(), script, questions: 0, broke: false });
            inner.received.push(Received {
                task_id: task_id.clone(),
                message_id: message.message_id.clone(),
                text: text.clone(),
                verdict: Verdict::Accepted,
            });
            drop(inner);
            let agent = self.clone();
            let id = task_id.clone();
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            tokio::spawn(async move { agent.run(&id, &words).await });
            return Ok((task_id, 0));
        };
        let Some(remote) = inner.tasks.get_mut(&task_id) else {
            return Err(json!({"code": -32001, "message": "task not found"}));
        };
        let seen = remote.task.history.iter().flatten().any(|m| m.message_id == message.message_id);
        let verdict = if seen {
            Verdict::Duplicate
        } else if remote.task.status.state != TaskState::InputRequired {
            Verdict::Refused
        } else {
            Verdict::Accepted
        };
        let from = remote.events.len();
        if verdict == Verdict::Accepted {
            remote.task.history.get_or_insert_with(Vec::new).push(message.clone());
        }
        let script = remote.script.clone();
        inner.received.push(Received {
            task_id: task_id.clone(),
            message_id: message.message_id.clone(),
            text,
            verdict: verdict.clone(),
        });
        drop(inner);
        match verdict {
            Verdict::Refused => Err(json!({"code": -32602, "message": "this task is not waiting for input"})),
            Verdict::Duplicate => Ok((task_id, from)),
            Verdict::Accepted => {
                let agent = self.clone();
                let id = task_id.clone();
                tokio::spawn(async move { agent.answered(&id, script).await });
                Ok((task_id, from))
            }
        }
    }

    async fn run(&self, task_id: &str, words: &[String]) {
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        match words.first().map(String::as_str) {
            Some("ask") => self.ask(task_id),
            Some("euro") => {
                self.status(task_id, TaskState::Working, None);
                self.artifact(task_id, &"a€".repeat(usize::try_from(number(1)).unwrap_or(0)));
                self.status(
                    task_id,
                    TaskState::Completed,
                    Some(agent_message(uuid::Uuid::new_v4().to_string(), "done")),
                );
            }
            Some("silent" | "flaky") => {
                self.status(task_id, TaskState::Working, None);
                tokio::time::sleep(Duration::from_millis(number(1))).await;
                self.status(task_id, TaskState::Completed, None);
            }
            Some("late") => {
                tokio::time::sleep(Duration::from_millis(number(1))).await;
                self.status(task_id, TaskState::Working, None);
                tokio::time::sleep(Duration::from_millis(2000)).await;
                self.status(task_id, TaskState::Completed, None);
            }
            Some("forever") => self.status(task_id, TaskState::Working, None),
            _ => self.status(task_id, TaskState::Completed, None),
        }
    }

    async fn answered(&self, task_id: &str, script: Script) {
        self.status(task_id, TaskState::Working, None);
        let Script::Ask { left, work } = script else { return };
        tokio::time::sleep(work).await;
        let asked = self.lock().tasks.get(task_id).map_or(0, |t| t.questions);
        if asked < left {
            self.ask(task_id);
        } else {
            self.status(
                task_id,
                TaskState::Completed,
                Some(agent_message(uuid::Uuid::new_v4().to_string(), "answered")),
            );
        }
    }

    fn snapshot(&self, task_id: &str, history: Option<usize>) -> Option<Task> {
        let inner = self.lock();
        let mut task = inner.tasks.get(task_id)?.task.clone();
        let keep = history.unwrap_or(0);
        task.history = task.history.map(|h| h.iter().rev().take(keep).rev().cloned().collect());
        Some(task)
    }

    /// The task's events from index `from` on, then until it settles; a
    /// snapshot first when `snapshot`. `split` cuts every frame into pieces
    /// that fall inside characters and line ends.
    fn stream(&self, id: Value, task_id: String, from: usize, snapshot: bool, split: bool) -> Response {
        self.lock().streams += 1;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let agent = self.clone();
        let late =
            self.lock().tasks.get(&task_id).is_some_and(|t| {
                t.task.history.iter().flatten().next().is_some_and(|m| text_of(m).starts_with("late"))
            }) && from == 0;
        let forever =
            self.lock().tasks.get(&task_id).is_some_and(|t| {
                t.task.history.iter().flatten().next().is_some_and(|m| text_of(m).starts_with("forever"))
            });
        // `flaky`: the first stream of the task breaks off inside a frame.
        let breaks = {
            let mut inner = self.lock();
            inner.tasks.get_mut(&task_id).is_some_and(|t| {
                let flaky = t.task.history.iter().flatten().next().is_some_and(|m| text_of(m).starts_with("flaky"));
                let first = flaky && !t.broke;
                t.broke |= flaky;
                first
            })
        };
        tokio::spawn(async move {
            let frame = |event: StreamResponse| {
                let data = json!({"jsonrpc": "2.0", "id": id, "result": event});
                Bytes::from(format!("data: {data}\r\n\r\n"))
            };
            if late {
                // Say nothing until the task has moved.
                while agent.state(&task_id) == Some(TaskState::Submitted) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if forever {
                if tx.send(Ok(Bytes::from_static(b"data: "))).await.is_err() {
                    return;
                }
                loop {
                    if tx.send(Ok(Bytes::from(vec![b'x'; 16 * 1024]))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            if snapshot
                && let Some(task) = agent.snapshot(&task_id, None)
                && tx.send(Ok(frame(StreamResponse::Task(task)))).await.is_err()
            {
                return;
            }
            let mut next = from;
            loop {
                let (events, done) = {
                    let inner = agent.lock();
                    let Some(remote) = inner.tasks.get(&task_id) else { return };
                    (remote.events[next.min(remote.events.len())..].to_vec(), settled(&remote.task.status.state))
                };
                next += events.len();
                if breaks && next > 0 {
                    for event in events {
                        if tx.send(Ok(frame(event))).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Ok(Bytes::from_static(b"data: {\"jsonrpc\": \"2.0\", \"res"))).await;
                    let _ = tx.send(Err(std::io::Error::other("the connection broke off"))).await;
                    return;
                }
                for event in events {
                    let bytes = frame(event);
                    if split {
                        // Odd-sized pieces, and a cut between the last `\r` and `\n`.
                        let end = bytes.len() - 3;
                        let mut at = 0;
                        while at < end {
                            let to = (at + 1001).min(end);
                            if tx.send(Ok(bytes.slice(at..to))).await.is_err() {
                                return;
                            }
                            at = to;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        if tx.send(Ok(bytes.slice(end..))).await.is_err() {
                            return;
                        }
                    } else if tx.send(Ok(bytes)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        ([("content-type", "text/event-stream")], body).into_response()
    }
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(id: &Value, error: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response()
}

async fn rpc(State(agent): State<StrictAgent>, Json(call): Json<Value>) -> Response {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let params = call.get("params").cloned().unwrap_or(json!({}));
    let task_param = params.get("id").and_then(Value::as_str).map(str::to_owned);
    match call.get("method").and_then(Value::as_str).unwrap_or("") {
        "SendStreamingMessage" => {
            let Ok(request) = serde_json::from_value::<SendMessageRequest>(params) else {
                return rpc_error(&id, json!({"code": -32602, "message": "invalid params"}));
            };
            let split = text_of(&request.message).starts_with("euro");
            match agent.take(request.message) {
                Ok((task_id, from)) => agent.stream(id, task_id, from, from == 0, split),
                Err(error) => rpc_error(&id, error),
            }
        }
        "SendMessage" => {
            let Ok(request) = serde_json::from_value::<SendMessageRequest>(params) else {
                return rpc_error(&id, json!({"code": -32602, "message": "invalid params"}));
            };
            let blocking = !request.configuration.as_ref().and_then(|c| c.return_immediately).unwrap_or(false);
            match agent.take(request.message) {
                Ok((task_id, _)) => {
                    // A blocking send answers once the task settles (or
                    // asks), as the spec has it.
                    while blocking
                        && agent.state(&task_id).is_some_and(|s| !s.is_terminal() && s != TaskState::InputRequired)
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let task = agent.snapshot(&task_id, None);
                    rpc_result(&id, json!({ "task": task }))
                }
                Err(error) => rpc_error(&id, error),
            }
        }
        "SubscribeToTask" => match task_param.filter(|t| agent.state(t).is_some()) {
            Some(t) => {
                let from = agent.lock().tasks.get(&t).map_or(0, |r| r.events.len());
                agent.stream(id, t, from, true, false)
            }
            None => rpc_error(&id, json!({"code": -32001, "message": "task not found"})),
        },
        "ListTasks" => {
            agent.lock().looks += 1;
            let context = params.get("contextId").and_then(Value::as_str).unwrap_or_default().to_owned();
            let ids: Vec<String> = agent
                .lock()
                .tasks
                .iter()
                .filter(|(_, t)| context.is_empty() || t.task.context_id == context)
                .map(|(id, _)| id.clone())
                .collect();
            let tasks: Vec<Task> = ids.iter().filter_map(|t| agent.snapshot(t, Some(20))).collect();
            rpc_result(
                &id,
                json!({ "tasks": tasks, "nextPageToken": "", "pageSize": tasks.len(), "totalSize": tasks.len() }),
            )
        }
        "GetTask" => {
            agent.lock().looks += 1;
            let history = params.get("historyLength").and_then(Value::as_u64).map(|h| h as usize);
            match task_param.and_then(|t| agent.snapshot(&t, history)) {
                Some(task) => rpc_result(&id, serde_json::to_value(task).unwrap_or(Value::Null)),
                None => rpc_error(&id, json!({"code": -32001, "message": "task not found"})),
            }
        }
        "CancelTask" => {
            let Some(t) = task_param.filter(|t| agent.state(t).is_some()) else {
                return rpc_error(&id, json!({"code": -32001, "message": "task not found"}));
            };
            agent.lock().cancels.push(t.clone());
            agent.status(&t, TaskState::Canceled, None);
            rpc_result(&id, serde_json::to_value(agent.snapshot(&t, None)).unwrap_or(Value::Null))
        }
        _ => rpc_error(&id, json!({"code": -32601, "message": "method not found"})),
    }
}

async fn card(State(agent): State<StrictAgent>) -> Json<Value> {
    Json(json!({
        "name": "strict agent",
        "description": "Refuses what a careful agent would refuse.",
        "version": "1.0.0",
        "supportedInterfaces": [{"url": agent.url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": agent.streaming, "pushNotifications": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "strict", "name": "Strict", "description": "Scripted.", "tags": ["test"]}],
    }))
}
