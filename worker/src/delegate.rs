//! Delegation: carry a task to its remote agent and fold what the agent
//! says back into the task's log, resuming from the checkpoint after a crash.

use std::time::Duration;

use a2a::{
    AgentCard, Message, Role, SendMessageConfiguration, SendMessageRequest, SendMessageResponse, StreamResponse,
    TaskState as WireState, error_code,
};
use a2a_client::A2AClientFactory;
use a2a_client::agent_card::AgentCardResolver;
use switchyard_engine::{
    AgentRecord, ArtifactUpdate, ClaimedJob, Delegation, Gate, StoreError, TaskEvent, TaskRecord, TaskState,
};
use tokio_stream::StreamExt;

use crate::handler::{JobContext, Outcome};
use crate::remote::{Events, JsonRpcAgent, RemoteAgent, RemoteError};

/// Fetches and parses an agent's card (for registering it).
pub async fn fetch_card(url: &str) -> Result<serde_json::Value, String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let card = AgentCardResolver::new(Some(http)).resolve(url).await.map_err(|e| e.message)?;
    if card.supported_interfaces.is_empty() {
        return Err("the card declares no interfaces".into());
    }
    serde_json::to_value(card).map_err(|e| e.to_string())
}

/// How delegation behaves.
#[derive(Debug, Clone)]
pub struct DelegationSettings {
    /// How long a remote agent may stay silent on one call.
    pub timeout: Duration,
    /// Consecutive failures that open an agent's circuit breaker.
    pub breaker_failures: i32,
    /// How long an open breaker keeps work away from the agent.
    pub breaker_cooldown: Duration,
    /// How long one attempt follows a remote task (streaming or polling)
    /// before parking the job and giving up its lease.
    pub attach_budget: Duration,
}

impl Default for DelegationSettings {
    fn default() -> Self {
        DelegationSettings {
            timeout: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            attach_budget: Duration::from_secs(300),
        }
    }
}

/// Calls remote agents over one shared HTTP client.
#[derive(Debug, Clone)]
pub struct Delegator {
    http: reqwest::Client,
    settings: DelegationSettings,
}

/// Why an attempt stopped early.
enum Stop {
    Outcome(Outcome),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Outcome(match e {
            // Canceled (or otherwise ended) while we worked: nothing more to do.
            e if e.terminal_state().is_some() => Outcome::Done(Vec::new()),
            e => Outcome::Retry { error: format!("store: {e}"), retry_after: None },
        })
    }
}

/// Retry or not, from what the remote agent (or the way to it) said.
fn classify(agent: &str, e: &RemoteError) -> Outcome {
    match e {
        RemoteError::Transient { message, retry_after } => {
            Outcome::Retry { error: format!("agent {agent}: {message}"), retry_after: *retry_after }
        }
        RemoteError::Permanent { message, .. } => {
            Outcome::Fail { reason: format!("agent {agent} refused the task: {message}") }
        }
    }
}

impl Delegator {
    /// A delegator with these settings.
    pub fn new(settings: DelegationSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        Delegator { http, settings }
    }

    /// The agent's card: stored, or fetched now and stored. A stored card
    /// older than [`CARD_MAX_AGE`] is refreshed; if the refresh fails, the
    /// stored card is used (an agent whose card server hiccups still works).
    async fn card(&self, ctx: &JobContext, agent: &AgentRecord) -> Result<AgentCard, Stop> {
        let stored: Option<AgentCard> = agent.card.clone().and_then(|c| serde_json::from_value(c).ok());
        let fresh = agent
            .card_fetched_at
            .is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::from_std(CARD_MAX_AGE).unwrap_or_default());
        if let (Some(card), true) = (&stored, fresh) {
            return Ok(card.clone());
        }
        match AgentCardResolver::new(Some(self.http.clone())).resolve(&agent.url).await {
            Ok(card) => {
                let json = serde_json::to_value(&card).unwrap_or_default();
                ctx.store().agent_set_card(&agent.name, &json).await?;
                Ok(card)
            }
            Err(e) => match stored {
                Some(card) => {
                    tracing::warn!(agent = %agent.name, error = %e.message, "card refresh failed; using the stored card");
                    Ok(card)
                }
                None => Err(Stop::Outcome(Outcome::Retry {
                    error: format!("fetching the card of {}: {}", agent.name, e.message),
                    retry_after: None,
                })),
            },
        }
    }

    /// The agent's JSON-RPC 1.x interface, called directly; failing that,
    /// the official client over whatever else the card offers.
    async fn client(&self, card: &AgentCard, trace: Option<&serde_json::Value>) -> Result<RemoteAgent, RemoteError> {
        let json_rpc = card
            .supported_interfaces
            .iter()
            .find(|i| i.protocol_binding.as_str() == "JSONRPC" && i.protocol_version.as_str().starts_with("1."));
        if let Some(interface) = json_rpc {
            let agent = JsonRpcAgent::new(self.http.clone(), interface.url.clone()).with_trace_context(trace);
            return Ok(RemoteAgent::JsonRpc(agent));
        }
        A2AClientFactory::builder()
            .no_defaults()
            .register(std::sync::Arc::new(a2a_client::rest::RestTransportFactory::new(Some(self.http.clone()))))
            .build()
            .create_from_card(card)
            .await
            .map(RemoteAgent::Sdk)
            .map_err(|e| RemoteError::Permanent { message: format!("no usable interface: {}", e.message), code: None })
    }

    /// One attempt at a `cancel_remote` job: cancel the remote task of a
    /// task canceled here. Already finished over there is fine too.
    pub async fn cancel_remote(&self, job: &ClaimedJob, ctx: &JobContext) -> Outcome {
        let store = ctx.store();
        let attempt = async {
            let Some(delegation) = store.delegation_get(job.lease.task_id).await? else {
                return Ok(Outcome::Done(Vec::new()));
            };
            let (Some(remote), Some(agent)) = (delegation.remote_task_id, store.agent_get(&delegation.agent).await?)
            else {
                return Ok(Outcome::Done(Vec::new()));
            };
            let card = self.card(ctx, &agent).await?;
            let trace = store.task_load(job.lease.task_id).await?.trace_context;
            let client = match self.client(&card, trace.as_ref()).await {
                Ok(client) => client,
                Err(e) => return Ok(classify(&agent.name, &e)),
            };
            Ok(match client.cancel(&remote).await {
                Ok(_) => Outcome::Done(Vec::new()),
                Err(e) if matches!(e.code(), Some(error_code::TASK_NOT_CANCELABLE | error_code::TASK_NOT_FOUND)) => {
                    Outcome::Done(Vec::new())
                }
                Err(e) => classify(&agent.name, &e),
            })
        };
        match attempt.await {
            Ok(outcome) | Err(Stop::Outcome(outcome)) => outcome,
        }
    }

    /// One attempt at a `delegate` job, in a span that continues the trace
    /// of the request that created the task.
    pub async fn delegate(&self, job: &ClaimedJob, ctx: &JobContext) -> Outcome {
        let span = tracing::info_span!(
            "delegate",
            otel.name = "delegate",
            otel.status_code = tracing::field::Empty,
            switchyard.job.id = job.lease.job_id.0,
            switchyard.job.attempt = job.lease.attempt,
            a2a.task.id = %job.lease.task_id,
            a2a.context.id = tracing::field::Empty,
            a2a.agent.name = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        // A child of the job's span; a job enqueued without a trace context
        // still joins the task's.
        if switchyard_engine::trace::current().is_none()
            && let Ok(task) = ctx.store().task_load(job.lease.task_id).await
        {
            switchyard_engine::trace::continue_from(&span, task.trace_context.as_ref());
        }
        switchyard_engine::trace::record_trace_id(&span);
        let outcome = match tracing::Instrument::instrument(self.try_delegate(job, ctx), span.clone()).await {
            Ok(outcome) | Err(Stop::Outcome(outcome)) => outcome,
        };
        span.in_scope(|| match &outcome {
            Outcome::Retry { error, .. } => tracing::warn!(%error, "attempt failed; will retry"),
            Outcome::Fail { reason } => tracing::warn!(%reason, "delegation failed"),
            _ => {}
        });
        if matches!(outcome, Outcome::Retry { .. } | Outcome::Fail { .. }) {
            span.record("otel.status_code", "ERROR");
        }
        outcome
    }

    async fn try_delegate(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<Outcome, Stop> {
        let store = ctx.store();
        let task = store.task_load(job.lease.task_id).await?;
        tracing::Span::current().record("a2a.context.id", task.context_id.as_str());
        if task.state.is_terminal() {
            return Ok(Outcome::Done(Vec::new()));
        }
        let existing = store.delegation_get(task.id).await?;
        // A follow-up goes to the agent that holds the task already.
        let chosen = existing
            .as_ref()
            .map(|d| d.agent.clone())
            .or_else(|| job.payload.get("agent").and_then(|a| a.as_str()).map(str::to_owned));
        let Some(name) = chosen.as_deref() else {
            return Ok(Outcome::Done(vec![TaskEvent::status_with_text(
                TaskState::Rejected,
                "no remote agent was chosen for this task",
            )]));
        };
        tracing::Span::current().record("a2a.agent.name", name);
        let Some(agent) = store.agent_get(name).await? else {
            return Ok(Outcome::Fail { reason: format!("agent {name} is no longer registered") });
        };
        if let Gate::Open { until } = store.agent_breaker_gate(name, self.settings.breaker_cooldown).await? {
            let after = (until - chrono::Utc::now()).to_std().unwrap_or_default().max(Duration::from_millis(100));
            return Ok(Outcome::Snooze { after, reason: format!("agent {name}'s circuit breaker is open") });
        }
        let card = self.card(ctx, &agent).await?;
        let client = match self.client(&card, task.trace_context.as_ref()).await {
            Ok(client) => client,
            Err(e) => return Ok(classify(name, &e)),
        };
        let mut delegation = existing.unwrap_or_else(|| Delegation { agent: name.to_owned(), ..Delegation::default() });
        let latest = store.task_history(task.id, 1).await?.pop();
        let Some(latest) = latest else {
            return Ok(Outcome::Fail { reason: "the task has no message to delegate".into() });
        };
        let streaming = card.capabilities.streaming == Some(true);
        let mut run = Run { ctx, task, delegation: &mut delegation, budget: self.settings.attach_budget };

        if run.delegation.forwarded_message_id.as_deref() == Some(latest.message_id.as_str())
            && let Some(remote) = run.delegation.remote_task_id.clone()
        {
            // Sent before this attempt: re-attach rather than send again.
            let result = if streaming {
                match client.subscribe(&remote).await {
                    Ok(events) => run.follow(events).await,
                    Err(e) if e.code() == Some(error_code::UNSUPPORTED_OPERATION) => run.poll(&client, &remote).await,
                    Err(e) => Err(e.into()),
                }
            } else {
                run.poll(&client, &remote).await
            };
            return self.conclude(ctx, name, result).await;
        }

        run.begin().await?;
        let mut message = Message {
            message_id: latest.message_id.clone(),
            context_id: run.delegation.remote_context_id.clone(),
            // A follow-up answers the remote task's question.
            task_id: run.delegation.remote_task_id.clone(),
            role: Role::User,
            parts: latest.parts.clone(),
            metadata: latest.metadata.clone(),
            extensions: latest.extensions.clone(),
            reference_task_ids: None,
        };
        if message.task_id.is_none() {
            message.context_id = None;
        }
        let request = SendMessageRequest {
            message,
            configuration: Some(SendMessageConfiguration {
                accepted_output_modes: None,
                task_push_notification_config: None,
                history_length: Some(0),
                // Without streaming, do not hold a connection open for the
                // whole task: take the acknowledgement, then poll (and park).
                return_immediately: (!streaming).then_some(true),
            }),
            metadata: None,
            tenant: None,
        };
        run.delegation.forwarded_message_id = Some(latest.message_id.clone());
        let started = tokio::time::Instant::now();
        let result = if streaming {
            match client.send_streaming(&request).await {
                Ok(events) => run.follow(events).await,
                Err(e) => Err(e.into()),
            }
        } else {
            match client.send(&request).await {
                Ok(SendMessageResponse::Task(t)) => run
                    .fold(StreamResponse::Task(t))
                    .await
                    .map(|settled| if settled { Settled::Yes } else { Settled::No }),
                Ok(SendMessageResponse::Message(m)) => run.fold(StreamResponse::Message(m)).await.map(|_| Settled::Yes),
                Err(e) => Err(e.into()),
            }
        };
        metrics::histogram!("switchyard_remote_exchange_seconds", "agent" => name.to_owned())
            .record(started.elapsed().as_secs_f64());
        let result = match result {
            Ok(Settled::No) => match run.delegation.remote_task_id.clone() {
                Some(remote) => run.poll(&client, &remote).await,
                None => Ok(Settled::No),
            },
            other => other,
        };
        self.conclude(ctx, name, result).await
    }

    async fn record(&self, ctx: &JobContext, agent: &str, ok: bool) -> Result<(), Stop> {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!("switchyard_remote_calls_total", "agent" => agent.to_owned(), "outcome" => outcome)
            .increment(1);
        let s = &self.settings;
        Ok(ctx.store().agent_record_call(agent, ok, s.breaker_failures, s.breaker_cooldown).await?)
    }

    async fn conclude(
        &self,
        ctx: &JobContext,
        agent: &str,
        result: Result<Settled, RunError>,
    ) -> Result<Outcome, Stop> {
        match result {
            Ok(Settled::Yes) => {
                self.record(ctx, agent, true).await?;
                Ok(Outcome::Done(Vec::new()))
            }
            Ok(Settled::No) => Ok(Outcome::Retry {
                error: format!("agent {agent} ended the exchange before the task settled"),
                retry_after: None,
            }),
            Ok(Settled::Later) => {
                // Long work: give the lease back and look again later.
                self.record(ctx, agent, true).await?;
                Ok(Outcome::Snooze { after: Duration::from_secs(5), reason: format!("agent {agent} is still working") })
            }
            Err(RunError::Store(e)) => Err(Stop::from(e)),
            Err(RunError::Remote(e)) => {
                let outcome = classify(agent, &e);
                // Only trouble reaching the agent counts against its breaker,
                // not an agent that answered "no".
                self.record(ctx, agent, !matches!(outcome, Outcome::Retry { .. })).await?;
                Ok(outcome)
            }
        }
    }
}

/// What can interrupt a run: the remote side, or our own store.
enum RunError {
    Remote(RemoteError),
    Store(StoreError),
}

impl From<RemoteError> for RunError {
    fn from(e: RemoteError) -> Self {
        RunError::Remote(e)
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Store(e)
    }
}

/// Whether the remote task reached a terminal or interrupted state.
enum Settled {
    Yes,
    /// The exchange ended without settling (a stream closed early).
    No,
    /// Still running when this attempt's attach budget ran out.
    Later,
}

/// One attempt's state: our task and its delegation checkpoint.
struct Run<'a> {
    ctx: &'a JobContext,
    task: TaskRecord,
    delegation: &'a mut Delegation,
    /// How long this attempt may follow the remote task.
    budget: Duration,
}

/// How long a fetched Agent Card is trusted before it is fetched again.
const CARD_MAX_AGE: Duration = Duration::from_secs(600);

/// How long polling waits at most between two looks at a remote task.
const POLL_CAP: Duration = Duration::from_secs(5);

impl Run<'_> {
    /// Marks our task as working (it is being carried out now).
    async fn begin(&mut self) -> Result<(), Stop> {
        if self.task.state != TaskState::Working {
            self.task = self.ctx.append(&[TaskEvent::status(TaskState::Working, None)]).await?;
        }
        Ok(())
    }

    async fn append(&mut self, events: &[TaskEvent]) -> Result<(), RunError> {
        let was_terminal = self.task.state.is_terminal();
        self.task = self.ctx.append(events).await?;
        if !was_terminal && self.task.state.is_terminal() {
            let took = (self.task.status_at - self.task.created_at).to_std().unwrap_or_default();
            metrics::histogram!("switchyard_task_duration_seconds", "state" => self.task.state.as_str())
                .record(took.as_secs_f64());
        }
        Ok(())
    }

    async fn checkpoint(&mut self, remote_task: &str, remote_context: &str) -> Result<(), RunError> {
        if self.delegation.remote_task_id.as_deref() == Some(remote_task)
            && self.delegation.remote_context_id.as_deref() == Some(remote_context)
            && self.delegation.forwarded_message_id.is_some()
        {
            return Ok(());
        }
        self.delegation.remote_task_id = Some(remote_task.to_owned());
        self.delegation.remote_context_id = Some(remote_context.to_owned());
        Ok(self.ctx.store().delegation_put(self.task.id, self.delegation).await?)
    }

    /// Our copy of an agent message: same words, our ids.
    fn ours(&self, mut message: Message) -> Message {
        message.task_id = Some(self.task.id.to_string());
        message.context_id = Some(self.task.context_id.clone());
        message
    }

    /// Folds one remote event into our log; true once the task settled.
    async fn fold(&mut self, event: StreamResponse) -> Result<bool, RunError> {
        match event {
            StreamResponse::Task(remote) => {
                self.checkpoint(&remote.id, &remote.context_id).await?;
                let mut events: Vec<TaskEvent> = remote
                    .artifacts
                    .unwrap_or_default()
                    .into_iter()
                    // A snapshot repeats what we may have folded already
                    // (every poll does): only what changed is news.
                    .filter(|artifact| !self.task.artifacts.contains(artifact))
                    .map(|artifact| TaskEvent::Artifact(ArtifactUpdate { artifact, append: false, last_chunk: true }))
                    .collect();
                let settles = self.status_event(remote.status, &mut events);
                if !events.is_empty() {
                    self.append(&events).await?;
                }
                Ok(settles)
            }
            StreamResponse::StatusUpdate(update) => {
                self.checkpoint(&update.task_id, &update.context_id).await?;
                let mut events = Vec::new();
                let settles = self.status_event(update.status, &mut events);
                if !events.is_empty() {
                    self.append(&events).await?;
                }
                Ok(settles)
            }
            StreamResponse::ArtifactUpdate(update) => {
                self.checkpoint(&update.task_id, &update.context_id).await?;
                let event = TaskEvent::Artifact(ArtifactUpdate {
                    artifact: update.artifact,
                    append: update.append.unwrap_or(false),
                    last_chunk: update.last_chunk.unwrap_or(false),
                });
                self.append(&[event]).await?;
                Ok(false)
            }
            StreamResponse::Message(reply) => {
                // A direct answer, no remote task: it completes ours.
                let reply = self.ours(reply);
                self.append(&[TaskEvent::status(TaskState::Completed, Some(reply))]).await?;
                Ok(true)
            }
        }
    }

    /// The status event (if any) a remote status becomes; true if it settles the task.
    fn status_event(&self, status: a2a::TaskStatus, events: &mut Vec<TaskEvent>) -> bool {
        let Some(state) = TaskState::from_a2a(&status.state) else {
            return false;
        };
        if state == TaskState::Submitted {
            return false; // we are already past that
        }
        // Progress within a state is news only if it says something new.
        let same_words =
            status.message.as_ref().map(|m| &m.parts) == self.task.status.message.as_ref().map(|m| &m.parts);
        if state != self.task.state || (status.message.is_some() && !same_words) {
            let message = status.message.map(|m| self.ours(m));
            events.push(TaskEvent::status(state, message));
        }
        state.is_terminal() || state.is_interrupted()
    }

    async fn follow(&mut self, mut events: Events) -> Result<Settled, RunError> {
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = tokio::time::sleep_until(deadline) => return Ok(Settled::Later),
                () = self.ctx.cancelled() => return Ok(Settled::Later),
            };
            let Some(event) = next else {
                return Ok(Settled::No);
            };
            if self.fold(event?).await? {
                return Ok(Settled::Yes);
            }
        }
    }

    /// Polls the remote task with growing intervals until it settles, or
    /// until this attempt's budget is spent (then the job is retried later).
    async fn poll(&mut self, client: &RemoteAgent, remote: &str) -> Result<Settled, RunError> {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let task = client.get_task(remote).await?;
            let settled = task.status.state.is_terminal()
                || task.status.state == WireState::InputRequired
                || task.status.state == WireState::AuthRequired;
            if self.fold(StreamResponse::Task(task)).await? || settled {
                return Ok(Settled::Yes);
            }
            if started.elapsed() > self.budget {
                return Ok(Settled::Later);
            }
            tokio::select! {
                () = self.ctx.cancelled() => return Ok(Settled::Later),
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(POLL_CAP);
        }
    }
}
