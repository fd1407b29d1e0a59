//! `switchyard send`: a small A2A client for any agent or broker, Switchyard
//! or not. It reads the card (v1.0 or v0.3), picks an interface the way
//! Switchyard's workers do, sends one message (blocking or streaming), shows
//! status and artifacts as they arrive, and when the task asks for input,
//! asks the user and sends the answer to the same task.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use a2a::{Message, Part, PartContent, Role, SendMessageRequest, SendMessageResponse, StreamResponse, Task, TaskState};
use anyhow::Context;
use switchyard_worker::remote::{self, RemoteAgent, Transports};
use tokio_stream::StreamExt;

/// What to send, and where.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The message's text.
    text: String,
    /// Stream the task's events as they happen (else wait for the answer).
    #[arg(long)]
    stream: bool,
    /// Route to this agent registered with Switchyard (message metadata
    /// `switchyard.agent`; other agents ignore it).
    #[arg(long)]
    agent: Option<String>,
    /// Route to an agent or plan by skill (`switchyard.skill`): a plan's
    /// name runs the plan.
    #[arg(long, conflicts_with = "agent")]
    skill: Option<String>,
    /// Continue this task: the message answers its question.
    #[arg(long)]
    task: Option<String>,
    /// The agent's base URL; its card is read from
    /// /.well-known/agent-card.json.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key, sent as X-API-Key (gRPC: x-api-key metadata).
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The bindings to use, in order of preference (JSONRPC, GRPC,
    /// HTTP+JSON; default all three, in that order).
    #[arg(long, value_delimiter = ',')]
    binding: Vec<String>,
    /// Print what arrives as JSON, one object per line (the v1 model).
    #[arg(long)]
    json: bool,
    /// Never read an answer: a question ends the command with exit code 2
    /// (else the answer is read from stdin, prompted on a terminal).
    #[arg(long)]
    no_input: bool,
}

/// How a task that ended came out: the process's exit code.
pub(crate) enum Ending {
    Completed,
    /// Failed, canceled or rejected.
    Unsuccessful,
    /// It asks for input that was not given.
    Waiting,
}

impl Ending {
    pub(crate) fn code(&self) -> i32 {
        match self {
            Ending::Completed => 0,
            Ending::Unsuccessful => 1,
            Ending::Waiting => 2,
        }
    }
}

pub(crate) async fn send(mut args: SendArgs) -> anyhow::Result<Ending> {
    // `--url 127.0.0.1:8080` means what it says on loopback: plain HTTP.
    if !args.url.contains("://") {
        args.url = format!("http://{}", args.url);
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &args.api_key {
        let mut value = reqwest::header::HeaderValue::from_str(key).context("the API key is not a header value")?;
        value.set_sensitive(true);
        headers.insert("x-api-key", value);
    }
    let base = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).default_headers(headers.clone());
    let http = base.build()?;
    let sdk = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(300))
        .default_headers(headers.clone())
        .build()?;
    let card = remote::fetch_card(&http, &args.url, Duration::from_secs(10), None)
        .await
        .map_err(explain)
        .with_context(|| format!("reading the agent card at {}", args.url))?;
    let preferred: Vec<String> = args.binding.iter().map(|b| b.to_ascii_uppercase()).collect();
    let preferred = (!preferred.is_empty()).then_some(preferred.as_slice());
    let interface = switchyard_worker::delegate::choose_interface(&card, preferred).ok_or_else(|| {
        let refused = anyhow::Error::from(switchyard_worker::delegate::no_interface(&card, preferred));
        if preferred.is_some_and(|p| p.iter().any(|b| b == "GRPC")) {
            // The usual reason, said: a Switchyard serves gRPC only when told to.
            refused.context("a Switchyard offers gRPC only when started with --grpc-listen")
        } else {
            refused
        }
    })?;
    let transports = Transports {
        http: &http,
        sdk: &sdk,
        headers: &headers,
        timeout: Duration::from_secs(300),
        limits: switchyard_worker::sse::Limits::default(),
        trace: None,
    };
    let agent = remote::connect(&card, interface, &transports, |address| {
        let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
        let refused = |e: tonic::transport::Error| remote::RemoteError::Permanent {
            message: format!("{address}: {e}"),
            code: None,
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(uri).map_err(refused)?;
        if address.starts_with("https://") {
            endpoint =
                endpoint.tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots()).map_err(refused)?;
        }
        Ok(endpoint.connect_timeout(Duration::from_secs(5)).connect_lazy())
    })
    .await?;
    let mut out = Output { json: args.json, out: std::io::stdout().lock() };
    out.note(&format!(
        "{} — {} {} at {}",
        card.name, interface.protocol_binding, interface.protocol_version, interface.url
    ))?;

    // An agent that does not stream is sent to and waited for instead.
    let streaming = args.stream && card.capabilities.streaming == Some(true);
    if args.stream && !streaming {
        out.note("the agent does not stream; waiting for its answer instead")?;
    }
    let mut text = args.text.clone();
    let mut task_id = args.task.clone();
    let mut context_id = None;
    loop {
        let mut message = Message::new(Role::User, vec![Part::text(text)]);
        message.task_id = task_id.clone();
        message.context_id = context_id.clone();
        if let Some(agent) = &args.agent {
            message.metadata = Some([("switchyard".to_owned(), serde_json::json!({ "agent": agent }))].into());
        }
        if let Some(skill) = &args.skill {
            message.metadata = Some([("switchyard".to_owned(), serde_json::json!({ "skill": skill }))].into());
        }
        let request = SendMessageRequest { message, configuration: None, metadata: None, tenant: None };
        let last = if streaming {
            stream(&agent, &request, &mut out).await?
        } else {
            blocking(&agent, &request, &mut out).await?
        };
        let Some(task) = last else {
            // The agent answered with a message: nothing more to follow.
            return Ok(Ending::Completed);
        };
        match task.state {
            TaskState::Completed => return Ok(Ending::Completed),
            TaskState::InputRequired | TaskState::AuthRequired => {
                // The answer is the next line on stdin: typed at the prompt,
                // or piped in by a script. None (or --no-input) ends here.
                let answer = if args.no_input { None } else { out.ask()? };
                let Some(answer) = answer else {
                    out.note(&format!(
                        "the task asks for input; answer with: switchyard send \"…\" --task {} --url {}",
                        task.id, args.url
                    ))?;
                    return Ok(Ending::Waiting);
                };
                text = answer;
                task_id = Some(task.id);
                context_id = Some(task.context_id);
            }
            state if state.is_terminal() => return Ok(Ending::Unsuccessful),
            // A stream that ended before the task did.
            _ => {
                out.note(&format!("the stream ended with the task {} still open", task.id))?;
                return Ok(Ending::Waiting);
            }
        }
    }
}

/// Where a task stands after an exchange.
struct Last {
    id: String,
    context_id: String,
    state: TaskState,
}

async fn blocking(
    agent: &RemoteAgent,
    request: &SendMessageRequest,
    out: &mut Output<'_>,
) -> anyhow::Result<Option<Last>> {
    // A new task is acknowledged at once, then followed: its id is known
    // from the start, so a client cut off while it waits can say which task
    // goes on. (An answer to a task waits for the agent's reply: the task,
    // and so its id, is known already, and an immediate reply would still
    // show the question just answered.)
    let mut request = request.clone();
    let follow_up = request.message.task_id.clone();
    if follow_up.is_none() {
        request.configuration = Some(a2a::SendMessageConfiguration {
            accepted_output_modes: None,
            task_push_notification_config: None,
            history_length: None,
            return_immediately: Some(true),
        });
    }
    let lost = |id: &str, state: &str| {
        format!(
            "lost touch with the agent while task {id} was {state}; the task goes on there: look at it again \
             with GetTask (or `switchyard tasks show {id}` beside the broker's store)"
        )
    };
    let answer = agent.send(&request).await.map_err(explain);
    let answer = match &follow_up {
        Some(id) => answer.with_context(|| lost(id, "working on the answer"))?,
        None => answer?,
    };
    match answer {
        SendMessageResponse::Message(message) => {
            out.message(&message)?;
            Ok(None)
        }
        SendMessageResponse::Task(mut task) if follow_up.is_none() => {
            // Its id now, its outcome when it settles: the steps between
            // are for --stream.
            out.accepted(&task)?;
            let mut wait = Duration::from_millis(50);
            while matches!(task.status.state, TaskState::Submitted | TaskState::Working) {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
                let now = agent
                    .get_task(&task.id, 0)
                    .await
                    .map_err(explain)
                    .with_context(|| lost(&task.id, &state_name(&task.status.state)))?;
                task = now;
            }
            out.outcome(&task)?;
            Ok(Some(Last { id: task.id, context_id: task.context_id, state: task.status.state }))
        }
        SendMessageResponse::Task(task) => {
            out.task(&task)?;
            Ok(Some(Last { id: task.id, context_id: task.context_id, state: task.status.state }))
        }
    }
}

async fn stream(
    agent: &RemoteAgent,
    request: &SendMessageRequest,
    out: &mut Output<'_>,
) -> anyhow::Result<Option<Last>> {
    let mut events = agent.send_streaming(request).await.map_err(explain)?;
    let mut last: Option<Last> = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(explain)?;
        out.event(&event)?;
        match event {
            StreamResponse::Message(_) => return Ok(None),
            StreamResponse::Task(task) => {
                last = Some(Last { id: task.id, context_id: task.context_id, state: task.status.state });
            }
            StreamResponse::StatusUpdate(update) => {
                let state = update.status.state.clone();
                last = Some(Last { id: update.task_id, context_id: update.context_id, state: state.clone() });
                // The stream's end, whether or not the server closes it now.
                if state.is_terminal() || matches!(state, TaskState::InputRequired | TaskState::AuthRequired) {
                    break;
                }
            }
            StreamResponse::ArtifactUpdate(_) => {}
        }
    }
    Ok(last)
}

/// An agent's refusal, with what to do about the usual one.
fn explain(error: remote::RemoteError) -> anyhow::Error {
    let text = error.to_string();
    let refused = text.contains("HTTP 401") || text.contains("Unauthenticated") || error.code() == Some(-31401);
    if refused {
        return anyhow::anyhow!("{text}: the agent wants credentials; pass --api-key or set SWITCHYARD_API_KEY");
    }
    if text.contains("could not connect") {
        return anyhow::anyhow!("{text}: is it running, and at that address (--url)?");
    }
    error.into()
}

/// What the user sees: lines for people, or JSON.
struct Output<'a> {
    json: bool,
    out: std::io::StdoutLock<'a>,
}

impl Output<'_> {
    fn note(&mut self, text: &str) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        writeln!(self.out, "· {text}")
    }

    /// The user's answer: a line from stdin (with a prompt when it is a
    /// terminal); `None` at its end.
    fn ask(&mut self) -> std::io::Result<Option<String>> {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            write!(self.out, "> ")?;
            self.out.flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
    }

    fn json(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        writeln!(self.out, "{}", serde_json::to_string(value).unwrap_or_default())
    }

    fn message(&mut self, message: &Message) -> std::io::Result<()> {
        if self.json {
            return self.json(&SendMessageResponse::Message(message.clone()));
        }
        writeln!(self.out, "agent: {}", parts(&message.parts))
    }

    fn task(&mut self, task: &Task) -> std::io::Result<()> {
        if self.json {
            return self.json(&SendMessageResponse::Task(task.clone()));
        }
        writeln!(self.out, "task {}", task.id)?;
        self.outcome(task)
    }

    /// A task just acknowledged: its id (JSON: the task as it is).
    fn accepted(&mut self, task: &Task) -> std::io::Result<()> {
        if self.json {
            return self.json(&SendMessageResponse::Task(task.clone()));
        }
        writeln!(self.out, "task {}", task.id)?;
        self.out.flush()
    }

    /// Where a task ended up: its artifacts and status (JSON: the task).
    fn outcome(&mut self, task: &Task) -> std::io::Result<()> {
        if self.json {
            return self.json(&SendMessageResponse::Task(task.clone()));
        }
        for artifact in task.artifacts.iter().flatten() {
            let name = artifact.name.as_deref().unwrap_or(&artifact.artifact_id);
            writeln!(self.out, "artifact {name}: {}", parts(&artifact.parts))?;
        }
        self.status(&task.status)
    }

    fn status(&mut self, status: &a2a::TaskStatus) -> std::io::Result<()> {
        let state = state_name(&status.state);
        match &status.message {
            Some(message) => writeln!(self.out, "{state}: {}", parts(&message.parts)),
            None => writeln!(self.out, "{state}"),
        }
    }

    fn event(&mut self, event: &StreamResponse) -> std::io::Result<()> {
        if self.json {
            return self.json(event);
        }
        match event {
            StreamResponse::Task(task) => self.task(task),
            StreamResponse::Message(message) => self.message(message),
            StreamResponse::StatusUpdate(update) => self.status(&update.status),
            StreamResponse::ArtifactUpdate(update) => {
                let artifact = &update.artifact;
                let name = artifact.name.as_deref().unwrap_or(&artifact.artifact_id);
                let verb = if update.append == Some(true) { "artifact (more)" } else { "artifact" };
                writeln!(self.out, "{verb} {name}: {}", parts(&artifact.parts))
            }
        }
    }
}

fn state_name(state: &TaskState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.trim_start_matches("TASK_STATE_").to_lowercase().replace('_', "-")))
        .unwrap_or_else(|| "unknown".into())
}

/// Parts as one line of text: text as is, data as JSON, files by name.
fn parts(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match &part.content {
            PartContent::Text(text) => text.clone(),
            PartContent::Data(data) => data.to_string(),
            PartContent::Url(url) => format!("[file {} {url}]", part.filename.as_deref().unwrap_or("")),
            PartContent::Raw(bytes) => {
                format!("[file {} ({} bytes)]", part.filename.as_deref().unwrap_or(""), bytes.len())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
