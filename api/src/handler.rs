//! The one A2A request handler: a method per operation. The bindings
//! (JSON-RPC, HTTP+JSON, gRPC and the v0.3 layer) decode, check the request
//! into its [`crate::request`] type, call, and encode: what a method here
//! receives is already valid.

use std::sync::Arc;

use a2a::{ListTasksResponse, SendMessageResponse, Task, TaskPushNotificationConfig};
use serde_json::json;
use switchyard_engine::plan::{Node, PlanError, PlanSpec, Resolver};
use switchyard_engine::route::{self, Target};
use switchyard_engine::{
    AuditEntry, Caller, FollowUp, JobKind, NewJob, NewTask, PushConfig, Store, StoreError, Stores, TaskPlan,
    TaskRecord, TaskState,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::card::CardCache;
use crate::config::ApiConfig;
use crate::deadline::{STORE_DEADLINE, bounded, bounded_for};
use crate::error::ApiError;
use crate::events::{Start, StreamCounts, StreamItem, StreamPermit, stream_task, wait_until_settled};
use crate::hub::EventHub;
use crate::page;
use crate::request::{self, PushConfigPage, PushConfigRef, SendRequest, TaskList, TaskQuery, TaskRef, Turn};
use crate::validate::MAX_HISTORY;

/// Serves the A2A operations over the store.
#[derive(Debug, Clone)]
pub struct A2aHandler {
    stores: Stores,
    /// One per store, in the order of `stores`: a caller's requests go to
    /// the store its tenant lives on, and nothing crosses to another.
    shards: Arc<[Shard]>,
    config: Arc<ApiConfig>,
    card: Arc<CardCache>,
    streams: StreamCounts,
}

/// What the handler keeps per store: the store, its wake-ups (one LISTEN
/// connection each) and its registry of agents and plans.
#[derive(Debug)]
struct Shard {
    store: Store,
    hub: EventHub,
    registry: RegistryCache,
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
    /// `hubs`: one per store, in the order of `stores`.
    pub fn new(stores: Stores, hubs: Vec<EventHub>, config: Arc<ApiConfig>, card: Arc<CardCache>) -> Self {
        assert_eq!(hubs.len(), stores.len(), "one event hub per store");
        let shards = stores
            .all()
            .zip(hubs)
            .map(|((_, store), hub)| Shard { store: store.clone(), hub, registry: RegistryCache::default() })
            .collect();
        A2aHandler { stores, shards, config, card, streams: StreamCounts::default() }
    }

    /// The shard `caller`'s tenant lives on.
    fn on(&self, caller: &Caller) -> &Shard {
        &self.shards[self.stores.index_of(&caller.tenant)]
    }

    /// The stores this handler serves.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The store `caller`'s tenant lives on.
    pub fn store_for(&self, caller: &Caller) -> &Store {
        &self.on(caller).store
    }

    /// A permit for one more open stream of this caller.
    /// One stream slot of `caller`'s, held until the permit is dropped: the
    /// A2A streams and the console's live pages share the cap.
    pub fn stream_permit(&self, caller: &Caller) -> Result<StreamPermit, ApiError> {
        let limit = self.config.max_streams_per_principal;
        self.streams.acquire(caller, limit).ok_or(ApiError::RateLimited { retry_after: 1 }).inspect_err(|_| {
            tracing::warn!(tenant = %caller.tenant, principal = %caller.principal, limit, "too many open streams");
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// This process's wake-ups for the events of the store called `store`
    /// (the console follows a task through it as a subscriber does).
    pub fn hub_of(&self, store: &str) -> Option<&EventHub> {
        let index = self.stores.all().position(|(name, _)| name == store)?;
        Some(&self.shards[index].hub)
    }

    /// Streams (and blocking sends) waiting on task events in this process.
    pub fn stream_subscribers(&self) -> usize {
        self.shards.iter().map(|s| s.hub.subscribers()).sum()
    }

    /// `SendMessage`: accept (create or continue a task), then by default wait,
    /// bounded, until it ends or asks for input.
    pub async fn send_message(&self, caller: &Caller, request: SendRequest) -> Result<SendMessageResponse, ApiError> {
        let shard = self.on(caller);
        let (history, return_immediately) = (request.history, request.return_immediately);
        // Subscribed before the task exists, so no change after it can be
        // missed and the wait needs no read of its own before the first wake.
        let subscription = shard.hub.subscribe();
        let (task, created, baseline) = bounded(self.accept(caller, request, false)).await?;
        record_task(&task);
        // A resent message whose task already waits or ended is answered at
        // once: there is nothing new to wait for.
        let settled = !created && (task.state.is_terminal() || task.state.is_interrupted());
        if return_immediately || settled {
            return Ok(SendMessageResponse::Task(bounded(Self::render(&shard.store, &task, history)).await?));
        }
        // One more message than asked for: the last tells whether the agent
        // answered with a Message.
        let wanted = history.max(1);
        let wait = wait_until_settled(&shard.store, subscription, task, baseline, wanted, self.config.blocking_timeout);
        let (task, messages) = bounded_for(self.config.blocking_timeout + STORE_DEADLINE, wait).await?;
        let mut messages = match messages {
            Some(messages) => messages,
            None => bounded(async { Ok(shard.store.task_history(task.id, wanted).await?) }).await?,
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
        request: SendRequest,
    ) -> Result<ReceiverStream<StreamItem>, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let history = request.history;
            let permit = self.stream_permit(caller)?;
            let (task, _, _) = self.accept(caller, request, true).await?;
            record_task(&task);
            let (task, messages) = Self::complete(&shard.store, &task, history).await?;
            Ok(stream_task(shard.store.clone(), &shard.hub, task, messages, Start::Snapshot, permit))
        })
        .await
    }

    /// Creates a task, or continues the one the message names, durably;
    /// false when the message was seen before and nothing new was written.
    /// `stream`: the client follows this send as a stream, so the worker
    /// streams from the agent too (incremental output as it comes) rather
    /// than take the cheaper blocking call.
    async fn accept(
        &self,
        caller: &Caller,
        request: SendRequest,
        stream: bool,
    ) -> Result<(TaskRecord, bool, i64), ApiError> {
        let shard = self.on(caller);
        let SendRequest { message, metadata, idempotency_key: key, trace_context, push_config, turn, .. } = request;
        // Our own span's context when tracing is on, so later work is a child
        // of this request; else the caller's, as sent. The task keeps it, and
        // so does the job, whose span the worker opens on claiming it.
        let trace = switchyard_engine::trace::current().or(trace_context);
        let payload = if stream { json!({ "trace": trace, "stream": true }) } else { json!({ "trace": trace }) };
        let job = NewJob { payload, ..NewJob::new(JobKind::Delegate, self.config.max_attempts) };
        match turn {
            Turn::Continue(task_id) => {
                let follow_up = FollowUp {
                    caller: caller.clone(),
                    task_id,
                    context_id: message.context_id.clone().filter(|c| !c.is_empty()),
                    idempotency_key: key,
                    message,
                    job,
                    push_config,
                };
                let submission = shard.store.task_continue(follow_up).await?;
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
                    shard.store.audit(&AuditEntry::for_task(caller, "task.message", task_id)).await;
                }
                Ok((submission.task, submission.created, submission.baseline))
            }
            Turn::Start(start) => {
                let request::Start { deadline, plan: adhoc, target } = *start;
                // Route now, so a message nobody can take is rejected at once
                // with the reason, and the job names its agent.
                let registry = shard.registry.get(&shard.store).await?;
                // A message the cached registry cannot take may name an agent
                // or plan registered a moment ago: look again before refusing it.
                let routed = match self.route(&target, adhoc.as_ref(), &registry) {
                    Err(PlanError::NoRoute(_)) => {
                        self.route(&target, adhoc.as_ref(), &*shard.registry.refresh(&shard.store).await?)
                    }
                    routed => routed,
                };
                let (job, plan, reject_reason) = match routed {
                    Ok(Routed::Agent(agent)) => {
                        let mut job = job;
                        job.payload["agent"] = json!(agent);
                        (Some(job), None, None)
                    }
                    Ok(Routed::Plan(plan)) => (None, Some(plan), None),
                    Err(PlanError::NoRoute(reason)) => (None, None, Some(reason)),
                    Err(invalid @ PlanError::Invalid(_)) => return Err(request::plan_refused(invalid)),
                };
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
                let submission = shard.store.task_submit(new).await?;
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

    /// The named plans, for the card and the admin API.
    /// (The default store's: every store is given the same registry.)
    pub async fn plans(&self) -> Result<Vec<PlanSpec>, ApiError> {
        bounded(async {
            let shard = &self.shards[0];
            Ok(shard.registry.get(&shard.store).await?.plans.clone())
        })
        .await
    }

    /// `GetTask`.
    pub async fn get_task(&self, caller: &Caller, request: TaskQuery) -> Result<Task, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let task = shard.store.task_get(caller, request.id).await?;
            Self::render(&shard.store, &task, request.history).await
        })
        .await
    }

    /// `ListTasks`: the caller's top-level tasks, newest status first; with
    /// `parent` (an extension: `parentTaskId`), that task's children.
    pub async fn list_tasks(&self, caller: &Caller, request: TaskList) -> Result<ListTasksResponse, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let TaskList { filter, page_size, after, history, with_artifacts } = request;
            let page = shard.store.task_list(caller, &filter, i64::from(page_size), after, with_artifacts).await?;
            let mut tasks = Vec::with_capacity(page.tasks.len());
            for record in &page.tasks {
                // The page read the artifacts if they were asked for, so no
                // record needs completing.
                let messages = Self::history(&shard.store, record, history).await?;
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
        })
        .await
    }

    /// `CancelTask`: idempotent on a canceled task, refused on other terminal ones.
    pub async fn cancel_task(&self, caller: &Caller, request: TaskRef) -> Result<Task, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let task_id = request.id;
            let task = match shard.store.task_cancel(caller, task_id, None).await {
                Ok(task) => task,
                Err(StoreError::Rejected { source: switchyard_engine::FoldError::Terminal(state), .. }) => {
                    return Err(ApiError::TaskNotCancelable { task: request.named, state });
                }
                Err(e) => return Err(e.into()),
            };
            shard.store.audit(&AuditEntry::for_task(caller, "task.cancel", task_id)).await;
            Self::render(&shard.store, &task, MAX_HISTORY).await
        })
        .await
    }

    /// `SubscribeToTask`; with `resume_after` (an SSE `Last-Event-ID`) it
    /// replays the log after that event instead of starting from a snapshot.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        request: TaskRef,
        resume_after: Option<i64>,
    ) -> Result<ReceiverStream<StreamItem>, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let task = shard.store.task_get(caller, request.id).await?;
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
                Start::Snapshot | Start::Subscribe => Self::history(&shard.store, &task, MAX_HISTORY).await?,
                Start::After(_) => Vec::new(),
            };
            Ok(stream_task(shard.store.clone(), &shard.hub, task, messages, start, permit))
        })
        .await
    }

    /// `CreateTaskPushNotificationConfig` (replaces a config with the same id).
    pub async fn create_push_config(
        &self,
        caller: &Caller,
        config: PushConfig,
    ) -> Result<TaskPushNotificationConfig, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let task_id = config.task_id;
            let stored = shard.store.push_config_put(caller, &config).await?;
            // The host only: paths and tokens may be secrets.
            let host = switchyard_engine::egress::Target::parse(&stored.url).map(|t| t.host).unwrap_or_default();
            let entry = AuditEntry::for_task(caller, "push_config.create", task_id);
            shard.store.audit(&entry.with_detail(json!({ "id": stored.id, "host": host }))).await;
            Ok(push_config_to(stored))
        })
        .await
    }

    /// `GetTaskPushNotificationConfig`.
    pub async fn get_push_config(
        &self,
        caller: &Caller,
        request: PushConfigRef,
    ) -> Result<TaskPushNotificationConfig, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let PushConfigRef { task, named_task, id } = request;
            shard
                .store
                .push_config_get(caller, task, &id)
                .await?
                .map(push_config_to)
                .ok_or(ApiError::PushConfigNotFound { task: named_task, config: id })
        })
        .await
    }

    /// `ListTaskPushNotificationConfigs`.
    pub async fn list_push_configs(
        &self,
        caller: &Caller,
        request: PushConfigPage,
    ) -> Result<a2a::ListTaskPushNotificationConfigsResponse, ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let PushConfigPage { task, size, after } = request;
            let mut configs = shard.store.push_config_list(caller, task, size + 1, after.as_deref()).await?;
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
        })
        .await
    }

    /// `DeleteTaskPushNotificationConfig`: idempotent.
    pub async fn delete_push_config(&self, caller: &Caller, request: PushConfigRef) -> Result<(), ApiError> {
        bounded(async {
            let shard = self.on(caller);
            let PushConfigRef { task, id, .. } = request;
            shard.store.push_config_delete(caller, task, &id).await?;
            shard
                .store
                .audit(&AuditEntry::for_task(caller, "push_config.delete", task).with_detail(json!({ "id": id })))
                .await;
            Ok(())
        })
        .await
    }

    /// `GetExtendedAgentCard`, for authenticated callers only: the public
    /// card plus every skill the registered agents offer (what a caller can
    /// route to by `switchyard.skill`), never their URLs.
    pub async fn extended_card(&self, caller: &Caller) -> Result<a2a::AgentCard, ApiError> {
        bounded(async {
            if caller.credential.as_deref().is_none_or(|c| c == crate::auth::ANONYMOUS) {
                return Err(ApiError::Unauthenticated("the extended agent card is for authenticated callers".into()));
            }
            let shard = self.on(caller);
            let registry = shard.registry.get(&shard.store).await?;
            let public = self.card.for_plans(registry.plans.clone());
            crate::card::extended(&public, &registry.agents)
        })
        .await
    }

    async fn history(store: &Store, task: &TaskRecord, length: i64) -> Result<Vec<a2a::Message>, ApiError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        Ok(store.task_history(task.id, length).await?)
    }

    async fn render(store: &Store, task: &TaskRecord, history: i64) -> Result<Task, ApiError> {
        let (task, messages) = Self::complete(store, task, history).await?;
        Ok(task.to_a2a((!messages.is_empty()).then_some(messages)))
    }

    /// The task with its artifacts, and its last `history` messages: a
    /// record a write returned has only its artifacts' ids, so it is read
    /// again (with the history, in the same round trip); one that is
    /// complete costs the history's read alone, if any.
    async fn complete(
        store: &Store,
        task: &TaskRecord,
        history: i64,
    ) -> Result<(TaskRecord, Vec<a2a::Message>), ApiError> {
        if task.has_all_artifacts() {
            return Ok((task.clone(), Self::history(store, task, history).await?));
        }
        Ok(store.task_load_with_history(task.id, history).await?)
    }
}

/// Names the task on the request's span, so a trace shows which task a
/// request created or continued.
fn record_task(task: &TaskRecord) {
    let span = tracing::Span::current();
    span.record("a2a.task.id", tracing::field::display(task.id));
    span.record("a2a.context.id", task.context_id.as_str());
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
