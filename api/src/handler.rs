//! The one A2A request handler: a method per operation. The bindings
//! (JSON-RPC, HTTP+JSON, and the v0.3 layer) decode, call, and encode.

use std::sync::Arc;

use a2a::{
    CancelTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse, SendMessageRequest, SendMessageResponse,
    SubscribeToTaskRequest, Task, TaskPushNotificationConfig,
};
use serde_json::json;
use switchyard_engine::plan::{Node, PlanError, PlanSpec, Resolver};
use switchyard_engine::route::{self, Target};
use switchyard_engine::{
    AuditEntry, Caller, FollowUp, JobKind, MAX_PUSH_CONFIGS, NewJob, NewTask, PushConfig, Store, StoreError,
    TaskFilter, TaskId, TaskPlan, TaskRecord, TaskState,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::card::CardCache;
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::events::{Start, StreamCounts, StreamItem, StreamPermit, stream_task, wait_until_settled};
use crate::hub::EventHub;
use crate::page;
use crate::validate::{self, Intake, history_length};

/// The job kind that carries a task to a remote agent.
/// ListTasks page sizes (PROTOCOL.md §5.4 L5).
const DEFAULT_PAGE: i32 = 50;
const MAX_PAGE: i32 = 100;

/// Serves the A2A operations over the store.
#[derive(Debug, Clone)]
pub struct A2aHandler {
    store: Store,
    hub: EventHub,
    config: Arc<ApiConfig>,
    registry: RegistryCache,
    card: Arc<CardCache>,
    streams: StreamCounts,
}

/// How long the api routes from the agents and plans it last read. An
/// agent or plan added or removed (or a breaker that opened) is seen at
/// most this late.
const REGISTRY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// What routing reads: the registered agents and the named plans.
#[derive(Debug, Default)]
pub struct Registry {
    pub agents: Vec<switchyard_engine::AgentRecord>,
    pub plans: Vec<PlanSpec>,
}

/// The registry, read at most once per [`REGISTRY_TTL`] per process:
/// routing a message needs no query.
#[derive(Debug, Clone, Default)]
struct RegistryCache(Arc<std::sync::Mutex<Option<Read>>>);

/// When the registry was read, and what it held.
type Read = (std::time::Instant, Arc<Registry>);

impl RegistryCache {
    async fn get(&self, store: &Store) -> Result<Arc<Registry>, StoreError> {
        {
            let cached = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, registry)) = cached.as_ref()
                && at.elapsed() < REGISTRY_TTL
            {
                return Ok(registry.clone());
            }
        }
        self.refresh(store).await
    }

    /// Reads the registry now, whatever the cache holds.
    async fn refresh(&self, store: &Store) -> Result<Arc<Registry>, StoreError> {
        let registry = Arc::new(Registry { agents: store.agents_list().await?, plans: store.plans_list().await? });
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), registry.clone()));
        Ok(registry)
    }
}

/// Where a new task goes.
enum Routed {
    Agent(String),
    Plan(TaskPlan),
}

impl A2aHandler {
    pub fn new(store: Store, hub: EventHub, config: Arc<ApiConfig>, card: Arc<CardCache>) -> Self {
        A2aHandler { store, hub, config, registry: RegistryCache::default(), card, streams: StreamCounts::default() }
    }

    /// A permit for one more open stream of this caller.
    fn stream_permit(&self, caller: &Caller) -> Result<StreamPermit, ApiError> {
        let limit = self.config.max_streams_per_principal;
        self.streams.acquire(caller, limit).ok_or(ApiError::RateLimited { retry_after: 1 }).inspect_err(|_| {
            tracing::warn!(tenant = %caller.tenant, principal = %caller.principal, limit, "too many open streams");
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Streams (and blocking sends) waiting on task events in this process.
    pub fn stream_subscribers(&self) -> usize {
        self.hub.subscribers()
    }

    /// `SendMessage`: accept (create or continue a task), then by default wait,
    /// bounded, until it ends or asks for input.
    pub async fn send_message(
        &self,
        caller: &Caller,
        request: SendMessageRequest,
        intake: Intake,
    ) -> Result<SendMessageResponse, ApiError> {
        let config = request.configuration.as_ref();
        let history = history_length(config.and_then(|c| c.history_length), "configuration.historyLength")?;
        let return_immediately = config.and_then(|c| c.return_immediately).unwrap_or(false);
        // Subscribed before the task exists, so no change after it can be
        // missed and the wait needs no read of its own before the first wake.
        let subscription = self.hub.subscribe();
        let (task, created, baseline) = self.accept(caller, request, intake).await?;
        record_task(&task);
        // A resent message whose task already waits or ended is answered at
        // once: there is nothing new to wait for.
        let settled = !created && (task.state.is_terminal() || task.state.is_interrupted());
        if return_immediately || settled {
            return Ok(SendMessageResponse::Task(self.render(&task, history).await?));
        }
        // One more message than asked for: the last tells whether the agent
        // answered with a Message.
        let wanted = history.max(1);
        let (task, messages) =
            wait_until_settled(&self.store, subscription, task, baseline, wanted, self.config.blocking_timeout).await?;
        let mut messages = match messages {
            Some(messages) => messages,
            None => self.store.task_history(task.id, wanted).await?,
        };
        // An agent that answered with a Message, not a task, gets its answer
        // passed on as it came (the task stays recorded for operators): the
        // completed task's last turn is then the agent's.
        if task.state == TaskState::Completed
            && let Some(reply) = messages.pop_if(|m| m.role == a2a::Role::Agent)
        {
            return Ok(SendMessageResponse::Message(reply));
        }
        if history == 0 {
            messages.clear();
        }
        Ok(SendMessageResponse::Task(task.to_a2a((!messages.is_empty()).then_some(messages))))
    }

    /// `SendStreamingMessage`: accept, then stream the task from its snapshot.
    pub async fn send_streaming_message(
        &self,
        caller: &Caller,
        request: SendMessageRequest,
        intake: Intake,
    ) -> Result<ReceiverStream<StreamItem>, ApiError> {
        let history = history_length(
            request.configuration.as_ref().and_then(|c| c.history_length),
            "configuration.historyLength",
        )?;
        let permit = self.stream_permit(caller)?;
        let (task, _, _) = self.accept(caller, request, intake).await?;
        record_task(&task);
        let (task, messages) = self.complete(&task, history).await?;
        Ok(stream_task(self.store.clone(), &self.hub, task, messages, Start::Snapshot, permit))
    }

    /// Creates a task, or continues the one the message names, durably;
    /// false when the message was seen before and nothing new was written.
    async fn accept(
        &self,
        caller: &Caller,
        request: SendMessageRequest,
        intake: Intake,
    ) -> Result<(TaskRecord, bool, i64), ApiError> {
        let SendMessageRequest { message, configuration, metadata, .. } = request;
        if let Some(key) = &intake.idempotency_key {
            validate::identifier(key, "Idempotency-Key")?;
        }
        let key = intake.idempotency_key.unwrap_or_else(|| message.message_id.clone());
        // Our own span's context when tracing is on, so later work is a child
        // of this request; else the caller's, as sent. The task keeps it, and
        // so does the job, whose span the worker opens on claiming it.
        let trace = switchyard_engine::trace::current().or(intake.trace_context);
        let push_config = configuration.and_then(|c| c.task_push_notification_config);
        let job =
            NewJob { payload: json!({ "trace": trace }), ..NewJob::new(JobKind::Delegate, self.config.max_attempts) };
        match message.task_id.as_deref().filter(|id| !id.is_empty()) {
            Some(raw) => {
                let task_id = validate::task_id(raw)?;
                let push_config = push_config.map(|p| self.push_config_from(task_id, p, intake.v03)).transpose()?;
                let follow_up = FollowUp {
                    caller: caller.clone(),
                    task_id,
                    context_id: message.context_id.clone().filter(|c| !c.is_empty()),
                    idempotency_key: key,
                    message,
                    job,
                    push_config,
                };
                let submission = self.store.task_continue(follow_up).await?;
                // A key seen before answers with the task it went to; if the
                // resend names another task, it is not a resend but a
                // mistake, and silently answering with that task would hide it.
                if !submission.created && submission.task.id != task_id {
                    return Err(ApiError::invalid_field(
                        "message.taskId",
                        format!("this messageId was already used for task {}", submission.task.id),
                    ));
                }
                if submission.created {
                    self.store.audit(&AuditEntry::for_task(caller, "task.message", task_id)).await;
                }
                Ok((submission.task, submission.created, submission.baseline))
            }
            None => {
                // Route now, so a message nobody can take is rejected at once
                // with the reason, and the job names its agent.
                let deadline = deadline(message.metadata.as_ref(), self.config.default_ttl)?;
                let adhoc = PlanSpec::from_metadata(message.metadata.as_ref()).map_err(plan_refused)?;
                let target = Target::from_metadata(message.metadata.as_ref());
                let registry = self.registry.get(&self.store).await?;
                // A message the cached registry cannot take may name an agent
                // or plan registered a moment ago: look again before refusing it.
                let routed = match self.route(&target, adhoc.as_ref(), &registry) {
                    Err(PlanError::NoRoute(_)) => {
                        self.route(&target, adhoc.as_ref(), &*self.registry.refresh(&self.store).await?)
                    }
                    routed => routed,
                };
                let (job, plan, reject_reason) = match routed {
                    Ok(Routed::Agent(agent)) => {
                        (Some(NewJob { payload: json!({ "agent": agent, "trace": trace }), ..job }), None, None)
                    }
                    Ok(Routed::Plan(plan)) => (None, Some(plan), None),
                    Err(PlanError::NoRoute(reason)) => (None, None, Some(reason)),
                    Err(invalid @ PlanError::Invalid(_)) => return Err(plan_refused(invalid)),
                };
                // The id is filled in by the store; validate the rest now.
                let push_config =
                    push_config.map(|p| self.push_config_from(TaskId(uuid::Uuid::nil()), p, intake.v03)).transpose()?;
                let new = NewTask {
                    caller: caller.clone(),
                    context_id: message.context_id.clone().filter(|c| !c.is_empty()),
                    idempotency_key: key,
                    message,
                    metadata,
                    trace_context: trace,
                    parent_id: None,
                    job,
                    reject_reason,
                    push_config,
                    deadline,
                    plan,
                };
                let submission = self.store.task_submit(new).await?;
                if submission.created {
                    // The task row names its owner and creation time: a log
                    // line is enough, and the hot path takes no extra write.
                    AuditEntry::for_task(caller, "task.create", submission.task.id).log();
                    let outcome = if submission.task.state.is_terminal() { "rejected" } else { "accepted" };
                    metrics::counter!("switchyard_tasks_received_total", "outcome" => outcome).increment(1);
                }
                Ok((submission.task, submission.created, submission.baseline))
            }
        }
    }

    /// The agent or plan a new task goes to: an ad hoc plan from the
    /// message; else the plan named by `switchyard.skill`; else an agent
    /// chosen by name, skill or default.
    fn route(&self, target: &Target, adhoc: Option<&PlanSpec>, registry: &Registry) -> Result<Routed, PlanError> {
        let resolver = Resolver { agents: &registry.agents, plans: &registry.plans, limits: self.config.plan_limits };
        let spec = match (adhoc, &target.skill) {
            (Some(spec), _) => Some(spec),
            (None, Some(skill)) if target.agent.is_none() => resolver.plan(skill),
            _ => None,
        };
        let Some(spec) = spec else {
            return Ok(Routed::Agent(route::choose(target, &registry.agents, &self.config.routing)?));
        };
        Ok(match resolver.resolve(spec)? {
            Node::Agent { agent } => Routed::Agent(agent),
            node => Routed::Plan(TaskPlan { node, max_attempts: self.config.max_attempts }),
        })
    }

    /// Validates a client's webhook (its URL through the SSRF guard, every
    /// field's size and form) and gives it an id if it has none.
    fn push_config_from(
        &self,
        task_id: TaskId,
        config: TaskPushNotificationConfig,
        v03: bool,
    ) -> Result<PushConfig, ApiError> {
        let url = config.url.trim();
        if url.len() > 2048 {
            return Err(ApiError::invalid_field("url", "must be at most 2048 characters"));
        }
        self.config.egress.check_url(url).map_err(|refused| ApiError::invalid_field("url", refused.0))?;
        let header_safe = |s: &str| !s.contains(['\r', '\n']);
        if let Some(token) = &config.token
            && (!header_safe(token) || token.len() > 4096)
        {
            return Err(ApiError::invalid_field("token", "must be at most 4096 bytes, with no line breaks"));
        }
        if let Some(auth) = &config.authentication {
            let scheme_ok = !auth.scheme.trim().is_empty()
                && auth.scheme.len() <= 64
                && auth.scheme.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
            let credentials_ok = auth.credentials.as_deref().is_none_or(|c| header_safe(c) && c.len() <= 4096);
            if !scheme_ok || !credentials_ok {
                return Err(ApiError::invalid_field(
                    "authentication",
                    "needs a scheme (a token of at most 64 characters) and credentials of at most 4096 bytes, \
                     with no line breaks",
                ));
            }
        }
        let id = config.id.filter(|id| !id.is_empty()).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        if id.len() > 256 {
            return Err(ApiError::invalid_field("id", "must be at most 256 characters"));
        }
        Ok(PushConfig {
            task_id,
            id,
            url: url.to_owned(),
            token: config.token,
            authentication: config.authentication.map(|a| json!({ "scheme": a.scheme, "credentials": a.credentials })),
            version: if v03 { "0.3" } else { "1.0" }.to_owned(),
        })
    }

    /// The named plans, for the card and the admin API.
    pub async fn plans(&self) -> Result<Vec<PlanSpec>, ApiError> {
        Ok(self.registry.get(&self.store).await?.plans.clone())
    }

    /// `GetTask`.
    pub async fn get_task(&self, caller: &Caller, request: GetTaskRequest) -> Result<Task, ApiError> {
        let history = history_length(request.history_length, "historyLength")?;
        let task = self.store.task_get(caller, validate::task_id(&request.id)?).await?;
        self.render(&task, history).await
    }

    /// `ListTasks`: the caller's top-level tasks, newest status first; with
    /// `parent` (an extension: `parentTaskId`), that task's children.
    pub async fn list_tasks(
        &self,
        caller: &Caller,
        request: ListTasksRequest,
        parent: Option<&str>,
    ) -> Result<ListTasksResponse, ApiError> {
        let page_size = request.page_size.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&page_size) {
            return Err(ApiError::invalid_field("pageSize", format!("must be between 1 and {MAX_PAGE}")));
        }
        // Lists carry no history unless asked: it costs a read per task.
        let history = match request.history_length {
            None => 0,
            some => history_length(some, "historyLength")?,
        };
        let state = match &request.status {
            None => None,
            Some(s) => Some(
                TaskState::from_a2a(s).ok_or_else(|| ApiError::invalid_field("status", "must name a task state"))?,
            ),
        };
        if let Some(context) = &request.context_id {
            validate::identifier(context, "contextId")?;
        }
        if let Some(token) = &request.page_token {
            validate::identifier(token, "pageToken")?;
        }
        let filter = TaskFilter {
            context_id: request.context_id.clone().filter(|c| !c.is_empty()),
            state,
            status_after: request.status_timestamp_after,
            parent: parent.map(|p| validate::task_id_field(p, "parentTaskId")).transpose()?,
        };
        let after = page::decode(request.page_token.as_deref().unwrap_or(""), &filter)?;
        let with_artifacts = request.include_artifacts == Some(true);
        let page = self.store.task_list(caller, &filter, i64::from(page_size), after, with_artifacts).await?;
        let mut tasks = Vec::with_capacity(page.tasks.len());
        for record in &page.tasks {
            // The page read the artifacts if they were asked for, so no
            // record needs completing.
            let messages = self.history(record, history).await?;
            let mut task = record.to_a2a((!messages.is_empty()).then_some(messages));
            task.artifacts = with_artifacts.then(|| task.artifacts.unwrap_or_default());
            tasks.push(task);
        }
        Ok(ListTasksResponse {
            tasks,
            next_page_token: page.next.map(|c| page::encode(c, &filter)).unwrap_or_default(),
            page_size,
            total_size: i32::try_from(page.total).unwrap_or(i32::MAX),
        })
    }

    /// `CancelTask`: idempotent on a canceled task, refused on other terminal ones.
    pub async fn cancel_task(&self, caller: &Caller, request: CancelTaskRequest) -> Result<Task, ApiError> {
        let task_id = validate::task_id(&request.id)?;
        let task = match self.store.task_cancel(caller, task_id, None).await {
            Ok(task) => task,
            Err(StoreError::Rejected { source: switchyard_engine::FoldError::Terminal(state), .. }) => {
                return Err(ApiError::TaskNotCancelable { task: request.id, state });
            }
            Err(e) => return Err(e.into()),
        };
        self.store.audit(&AuditEntry::for_task(caller, "task.cancel", task_id)).await;
        self.render(&task, validate::MAX_HISTORY).await
    }

    /// `SubscribeToTask`; with `resume_after` (an SSE `Last-Event-ID`) it
    /// replays the log after that event instead of starting from a snapshot.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        request: SubscribeToTaskRequest,
        resume_after: Option<i64>,
    ) -> Result<ReceiverStream<StreamItem>, ApiError> {
        let task = self.store.task_get(caller, validate::task_id(&request.id)?).await?;
        let permit = self.stream_permit(caller)?;
        let start = match resume_after {
            Some(seq) => Start::After(seq),
            None if task.state.is_terminal() => {
                return Err(ApiError::UnsupportedOperation(format!(
                    "task {} is {}; there is nothing left to subscribe to",
                    task.id, task.state
                )));
            }
            None => Start::Subscribe,
        };
        let messages = match start {
            Start::Snapshot | Start::Subscribe => self.history(&task, validate::MAX_HISTORY).await?,
            Start::After(_) => Vec::new(),
        };
        Ok(stream_task(self.store.clone(), &self.hub, task, messages, start, permit))
    }

    /// `CreateTaskPushNotificationConfig` (replaces a config with the same
    /// id); `v03` when it came through the v0.3 binding.
    pub async fn create_push_config(
        &self,
        caller: &Caller,
        config: TaskPushNotificationConfig,
        v03: bool,
    ) -> Result<TaskPushNotificationConfig, ApiError> {
        let task_id = validate::task_id_in(&config.task_id, "taskId")?;
        let config = self.push_config_from(task_id, config, v03)?;
        let stored = self.store.push_config_put(caller, &config).await?;
        // The host only: paths and tokens may be secrets.
        let host = switchyard_engine::egress::Target::parse(&stored.url).map(|t| t.host).unwrap_or_default();
        let entry = AuditEntry::for_task(caller, "push_config.create", task_id);
        self.store.audit(&entry.with_detail(json!({ "id": stored.id, "host": host }))).await;
        Ok(push_config_to(stored))
    }

    /// `GetTaskPushNotificationConfig`.
    pub async fn get_push_config(
        &self,
        caller: &Caller,
        task_id: &str,
        id: &str,
    ) -> Result<TaskPushNotificationConfig, ApiError> {
        let task = validate::task_id_in(task_id, "taskId")?;
        validate::identifier(id, "id")?;
        self.store
            .push_config_get(caller, task, id)
            .await?
            .map(push_config_to)
            .ok_or_else(|| ApiError::PushConfigNotFound { task: task_id.to_owned(), config: id.to_owned() })
    }

    /// `ListTaskPushNotificationConfigs`: pages in id order; the token is the
    /// last id of the previous page.
    pub async fn list_push_configs(
        &self,
        caller: &Caller,
        task_id: &str,
        page_size: Option<i32>,
        page_token: Option<&str>,
    ) -> Result<a2a::ListTaskPushNotificationConfigsResponse, ApiError> {
        let task = validate::task_id_in(task_id, "taskId")?;
        let size = i64::from(page_size.unwrap_or(MAX_PUSH_CONFIGS as i32));
        if !(1..=MAX_PUSH_CONFIGS).contains(&size) {
            return Err(ApiError::invalid_field("pageSize", format!("must be between 1 and {MAX_PUSH_CONFIGS}")));
        }
        let after = page_token.filter(|t| !t.is_empty());
        if let Some(token) = after {
            validate::identifier(token, "pageToken")?;
        }
        let mut configs = self.store.push_config_list(caller, task, size + 1, after).await?;
        let next = if configs.len() as i64 > size {
            configs.truncate(size as usize);
            configs.last().map(|c| c.id.clone())
        } else {
            None
        };
        Ok(a2a::ListTaskPushNotificationConfigsResponse {
            configs: configs.into_iter().map(push_config_to).collect(),
            next_page_token: next,
        })
    }

    /// `DeleteTaskPushNotificationConfig`: idempotent.
    pub async fn delete_push_config(&self, caller: &Caller, task_id: &str, id: &str) -> Result<(), ApiError> {
        let task = validate::task_id_in(task_id, "taskId")?;
        validate::identifier(id, "id")?;
        self.store.push_config_delete(caller, task, id).await?;
        self.store
            .audit(&AuditEntry::for_task(caller, "push_config.delete", task).with_detail(json!({ "id": id })))
            .await;
        Ok(())
    }

    /// `GetExtendedAgentCard`, for authenticated callers only: the public
    /// card plus every skill the registered agents offer (what a caller can
    /// route to by `switchyard.skill`), never their URLs.
    pub async fn extended_card(&self, caller: &Caller) -> Result<a2a::AgentCard, ApiError> {
        if caller.credential.as_deref().is_none_or(|c| c == crate::auth::ANONYMOUS) {
            return Err(ApiError::Unauthenticated("the extended agent card is for authenticated callers".into()));
        }
        let registry = self.registry.get(&self.store).await?;
        let public = self.card.for_plans(registry.plans.clone());
        crate::card::extended(&public, &registry.agents)
    }

    async fn history(&self, task: &TaskRecord, length: i64) -> Result<Vec<a2a::Message>, ApiError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        Ok(self.store.task_history(task.id, length).await?)
    }

    async fn render(&self, task: &TaskRecord, history: i64) -> Result<Task, ApiError> {
        let (task, messages) = self.complete(task, history).await?;
        Ok(task.to_a2a((!messages.is_empty()).then_some(messages)))
    }

    /// The task with its artifacts, and its last `history` messages: a
    /// record a write returned has only its artifacts' ids, so it is read
    /// again (with the history, in the same round trip); one that is
    /// complete costs the history's read alone, if any.
    async fn complete(&self, task: &TaskRecord, history: i64) -> Result<(TaskRecord, Vec<a2a::Message>), ApiError> {
        if task.has_all_artifacts() {
            return Ok((task.clone(), self.history(task, history).await?));
        }
        Ok(self.store.task_load_with_history(task.id, history).await?)
    }
}

/// The task's deadline: message metadata `switchyard.deadline` (RFC 3339)
/// or `switchyard.timeoutSeconds`, else the configured default, else none.
/// Names the task on the request's span, so a trace shows which task a
/// request created or continued.
fn record_task(task: &TaskRecord) {
    let span = tracing::Span::current();
    span.record("a2a.task.id", tracing::field::display(task.id));
    span.record("a2a.context.id", task.context_id.as_str());
}

fn deadline(
    metadata: Option<&std::collections::HashMap<String, serde_json::Value>>,
    default_ttl: Option<std::time::Duration>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let hint = metadata.and_then(|m| m.get("switchyard"));
    if let Some(at) = hint.and_then(|h| h.get("deadline")) {
        let parsed = at.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let at = parsed.ok_or_else(|| {
            ApiError::invalid_field("message.metadata.switchyard.deadline", "must be an RFC 3339 timestamp")
        })?;
        return Ok(Some(at.with_timezone(&chrono::Utc)));
    }
    if let Some(secs) = hint.and_then(|h| h.get("timeoutSeconds")) {
        let secs = secs.as_f64().filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9).ok_or_else(|| {
            ApiError::invalid_field("message.metadata.switchyard.timeoutSeconds", "must be a positive number")
        })?;
        let ttl = chrono::Duration::milliseconds((secs * 1000.0) as i64);
        return Ok(Some(chrono::Utc::now() + ttl));
    }
    Ok(default_ttl.and_then(|ttl| chrono::Duration::from_std(ttl).ok()).map(|ttl| chrono::Utc::now() + ttl))
}

/// A plan the client asked for that cannot be run as asked: invalid params.
fn plan_refused(e: PlanError) -> ApiError {
    ApiError::invalid_field("message.metadata.switchyard", e.to_string())
}

fn push_config_to(config: PushConfig) -> TaskPushNotificationConfig {
    TaskPushNotificationConfig {
        url: config.url,
        id: Some(config.id),
        task_id: config.task_id.to_string(),
        token: config.token,
        authentication: config.authentication.and_then(|a| serde_json::from_value(a).ok()),
        tenant: None,
    }
}
