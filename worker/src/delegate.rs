//! Delegation: carry a task to its remote agent and fold what the agent
//! says back into the task's log, resuming from the checkpoint after a crash.
//!
//! The task's delegation is driven by one job at a time (the database allows
//! no second live one), and every checkpoint is fenced by that job's lease.
//! Client messages are forwarded in log order, each one checkpointed as
//! forwarded *before* it is sent and as acknowledged once the agent answered
//! that send; a worker resuming after a crash between the two looks at the
//! remote task before deciding to send it again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use a2a::{AgentCard, error_code};
use switchyard_engine::egress::Egress;
use switchyard_engine::{AgentRecord, ClaimedJob, Delegation, Gate, StoreError, TaskEvent, TaskState};
use tokio::time::Instant;

use crate::exchange::{Run, RunError, Settled, park_delay};
use crate::handler::{JobContext, Outcome};
use crate::remote::{RemoteAgent, RemoteError};
use crate::sse::Limits;

/// How long a fetched Agent Card is trusted before it is fetched again.
const CARD_MAX_AGE: Duration = Duration::from_secs(600);

/// Fetches and checks an agent's card (for registering it), through the
/// egress guard, with the agent's credentials if it has any, and verified
/// against `trusted` when signed cards are required.
pub async fn fetch_card(
    url: &str,
    egress: &Arc<Egress>,
    credentials: Option<&AgentCredentials>,
    trusted: Option<&jsonwebtoken::jwk::JwkSet>,
) -> Result<serde_json::Value, String> {
    egress.check_url(url).map_err(|e| e.to_string())?;
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    let http = crate::egress::client(with_credentials(builder, credentials), egress).map_err(|e| e.to_string())?;
    let card =
        crate::remote::fetch_card(&http, url, Duration::from_secs(10), trusted).await.map_err(|e| e.to_string())?;
    check_interfaces(egress, &card).map_err(|e| e.to_string())?;
    serde_json::to_value(card).map_err(|e| e.to_string())
}

/// What Switchyard presents to one agent, and to no other: headers (a
/// bearer token, an API key) and a client certificate for mutual TLS.
#[derive(Clone, Default)]
pub struct AgentCredentials {
    /// Sent on every request to the agent; marked sensitive, so never
    /// printed by the HTTP stack.
    pub headers: reqwest::header::HeaderMap,
    /// A PEM client certificate and key.
    pub identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are secrets.
        f.debug_struct("AgentCredentials")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

fn with_credentials(builder: reqwest::ClientBuilder, credentials: Option<&AgentCredentials>) -> reqwest::ClientBuilder {
    match credentials {
        Some(c) => {
            let builder = builder.default_headers(c.headers.clone());
            match &c.identity {
                Some(identity) => builder.identity(identity.clone()),
                None => builder,
            }
        }
        None => builder,
    }
}

/// Every interface a card offers must pass the guard: a card is the
/// agent's to write, and must not point us inward either. (A gRPC address
/// is `host:port`; its name is judged again by the channel's connector.)
fn check_interfaces(egress: &Egress, card: &AgentCard) -> Result<(), RemoteError> {
    for interface in &card.supported_interfaces {
        egress
            .check_url(&interface_url(interface))
            .map_err(|e| RemoteError::Permanent { message: format!("its card's interface: {e}"), code: None })?;
    }
    Ok(())
}

/// An interface's address as a URL: a gRPC one may be a bare `host:port`.
fn interface_url(interface: &a2a::AgentInterface) -> String {
    if interface.protocol_binding.eq_ignore_ascii_case(GRPC) && !interface.url.contains("://") {
        format!("http://{}", interface.url)
    } else {
        interface.url.clone()
    }
}

const JSONRPC: &str = "JSONRPC";
const GRPC: &str = "GRPC";
const HTTP_JSON: &str = "HTTP+JSON";

/// The bindings Switchyard calls agents over, in its default order of
/// preference: JSON-RPC first (the binding every A2A agent is most likely
/// to serve well, and the one whose failures we see best), then gRPC, then
/// HTTP+JSON. Any v1 interface is preferred to a v0.3 one.
pub const BINDINGS: [&str; 3] = [JSONRPC, GRPC, HTTP_JSON];

/// Why a card offers nothing to call (a verdict: the card will not change
/// by asking again).
pub fn no_interface(card: &AgentCard, preferred: Option<&[String]>) -> RemoteError {
    let offered: Vec<String> =
        card.supported_interfaces.iter().map(|i| format!("{} {}", i.protocol_binding, i.protocol_version)).collect();
    RemoteError::Permanent {
        message: format!(
            "no usable interface: the card offers [{}]; Switchyard calls JSONRPC, GRPC and HTTP+JSON at 1.x, \
             and JSONRPC at 0.3{}",
            offered.join(", "),
            preferred.map(|p| format!(" (configured for {})", p.join(", "))).unwrap_or_default()
        ),
        code: None,
    }
}

/// The interface to call, from the card, in the order `preferred` gives
/// (default [`BINDINGS`]): each binding at 1.x, then JSON-RPC at 0.3 (the
/// one v0.3 binding spoken here).
pub fn choose_interface<'a>(card: &'a AgentCard, preferred: Option<&[String]>) -> Option<&'a a2a::AgentInterface> {
    let default: Vec<String> = BINDINGS.iter().map(|b| (*b).to_owned()).collect();
    let order = preferred.filter(|p| !p.is_empty()).unwrap_or(&default);
    let find = |binding: &str, v1: bool| {
        card.supported_interfaces.iter().find(|i| {
            i.protocol_binding.eq_ignore_ascii_case(binding)
                && if v1 {
                    i.protocol_version.starts_with("1.") || i.protocol_version == "1"
                } else {
                    i.protocol_version.starts_with("0.3")
                }
        })
    };
    order
        .iter()
        .find_map(|binding| find(binding, true))
        .or_else(|| order.iter().any(|b| b.eq_ignore_ascii_case(JSONRPC)).then(|| find(JSONRPC, false)).flatten())
}

/// How delegation behaves.
#[derive(Debug, Clone)]
pub struct DelegationSettings {
    /// How long a unary call may take, and how long a stream may stay
    /// silent before the worker looks at the remote task instead.
    pub timeout: Duration,
    /// Consecutive failures that open an agent's circuit breaker.
    pub breaker_failures: i32,
    /// How long an open breaker keeps work away from the agent.
    pub breaker_cooldown: Duration,
    /// How long one attempt follows a remote task (streaming or polling)
    /// before parking the job and giving up its lease.
    pub attach_budget: Duration,
    /// The most a remote agent's reply may make a worker hold.
    pub limits: Limits,
    /// Where remote agents can reach this deployment's api: a delegation
    /// parked on an agent that pushes registers a webhook there, so its
    /// push wakes it. `None`: parked delegations only poll.
    pub push_receiver: Option<String>,
    /// The store this worker serves, when not the default: named in the
    /// receiver's URL, since the api serves several.
    pub push_store: Option<String>,
    /// Where agents may be (the SSRF guard and its allow-list).
    pub egress: Arc<Egress>,
    /// Per agent (by name), what to present to it.
    pub credentials: HashMap<String, AgentCredentials>,
    /// When set, agents' cards must be signed by one of these keys.
    pub trusted_cards: Option<Arc<jsonwebtoken::jwk::JwkSet>>,
    /// Per agent (by name), the bindings to call it over, in order of
    /// preference (default [`BINDINGS`]).
    pub bindings: HashMap<String, Vec<String>>,
    /// The agents (by name) a task nobody follows as a stream is sent to
    /// with one blocking call (`call = "blocking"`); the others are streamed
    /// from whenever their card offers it.
    pub blocking: HashSet<String>,
}

impl Default for DelegationSettings {
    fn default() -> Self {
        DelegationSettings {
            timeout: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            attach_budget: Duration::from_secs(300),
            limits: Limits::default(),
            push_receiver: None,
            push_store: None,
            egress: Arc::new(Egress::agents()),
            credentials: HashMap::new(),
            trusted_cards: None,
            bindings: HashMap::new(),
            blocking: HashSet::new(),
        }
    }
}

/// Calls remote agents over one shared pair of HTTP clients, or the
/// agent's own pair when it has credentials.
#[derive(Debug, Clone)]
pub struct Delegator {
    shared: Clients,
    own: Arc<HashMap<String, Clients>>,
    settings: DelegationSettings,
    agents: AgentCache,
    /// One gRPC channel (HTTP/2, multiplexed) per agent and address.
    channels: Arc<std::sync::Mutex<HashMap<(String, String), tonic::transport::Channel>>>,
    /// With signed cards required: the stored card of each agent that this
    /// process fetched and verified itself. A stored card is used only if it
    /// is that one: whoever else wrote it (`agents add`, an older process
    /// with other trust) did not check its signature against our keys.
    verified: Arc<std::sync::Mutex<HashMap<String, serde_json::Value>>>,
}

/// The HTTP clients for agents: `http` (no read timeout, for streams and
/// our JSON-RPC calls) and `sdk` (the official client's REST transport).
#[derive(Debug, Clone)]
struct Clients {
    http: reqwest::Client,
    sdk: reqwest::Client,
    /// The credentials' headers, for gRPC metadata.
    headers: reqwest::header::HeaderMap,
}

impl Clients {
    fn new(settings: &DelegationSettings, credentials: Option<&AgentCredentials>) -> Result<Self, reqwest::Error> {
        // No read timeout on the first: it would cut a quiet stream, and
        // silence is not failure. Unary calls carry their own timeout.
        let base = || reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).tcp_nodelay(true);
        let http = crate::egress::client(with_credentials(base(), credentials), &settings.egress)?;
        // The official client (REST agents) sets none per call: this one does.
        let sdk = crate::egress::client(
            with_credentials(base().read_timeout(settings.timeout), credentials),
            &settings.egress,
        )?;
        Ok(Clients { http, sdk, headers: credentials.map(|c| c.headers.clone()).unwrap_or_default() })
    }
}

/// How long a worker trusts an agent's record (URL, card, breaker) without
/// reading it again. A breaker opened by another worker is seen at most this
/// late; this worker's own changes forget the entry at once.
const AGENT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Agents' records, read at most once per [`AGENT_CACHE_TTL`] per process:
/// routing one message needs no query.
#[derive(Debug, Clone, Default)]
struct AgentCache {
    entries: Arc<std::sync::Mutex<HashMap<String, (Instant, AgentRecord)>>>,
}

impl AgentCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, AgentRecord)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn get(&self, store: &switchyard_engine::Store, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        if let Some((at, record)) = self.lock().get(name)
            && at.elapsed() < AGENT_CACHE_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = store.agent_get(name).await?;
        match &record {
            Some(r) => self.lock().insert(name.to_owned(), (Instant::now(), r.clone())),
            None => self.lock().remove(name),
        };
        Ok(record)
    }

    fn forget(&self, name: &str) {
        self.lock().remove(name);
    }
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
            // The database busy or away for a moment: the task did nothing
            // wrong, so no attempt is spent on it.
            e if e.is_transient() => {
                Outcome::Snooze { after: crate::push::STORE_BACKOFF, reason: format!("store: {e}") }
            }
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
    /// A delegator with these settings (fails only if no HTTP client can
    /// be built, say for an unreadable client certificate).
    pub fn new(settings: DelegationSettings) -> Result<Self, reqwest::Error> {
        let shared = Clients::new(&settings, None)?;
        let own = settings
            .credentials
            .iter()
            .map(|(name, credentials)| Ok((name.clone(), Clients::new(&settings, Some(credentials))?)))
            .collect::<Result<HashMap<_, _>, reqwest::Error>>()?;
        Ok(Delegator {
            shared,
            own: Arc::new(own),
            settings,
            agents: AgentCache::default(),
            channels: Arc::default(),
            verified: Arc::default(),
        })
    }

    fn clients(&self, agent: &str) -> &Clients {
        self.own.get(agent).unwrap_or(&self.shared)
    }

    /// The agent's card: stored, or fetched now and stored. A stored card
    /// older than [`CARD_MAX_AGE`] is refreshed; if the refresh fails, the
    /// stored card is used (an agent whose card server hiccups still works).
    /// With signed cards required, a stored card is used only if this
    /// process verified it, and a card that fails verification is never
    /// used: the task fails with the reason.
    async fn card(&self, ctx: &JobContext, agent: &AgentRecord) -> Result<AgentCard, Stop> {
        let required = self.settings.trusted_cards.is_some();
        let trusted_stored = |json: &serde_json::Value| {
            !required
                || self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&agent.name)
                    == Some(json)
        };
        let stored: Option<AgentCard> =
            agent.card.clone().filter(|json| trusted_stored(json)).and_then(|c| serde_json::from_value(c).ok());
        let fresh = agent
            .card_fetched_at
            .is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::from_std(CARD_MAX_AGE).unwrap_or_default());
        if let (Some(card), true) = (&stored, fresh) {
            return Ok(card.clone());
        }
        // A literal address meets no resolver: judged here. Names are judged
        // by the client's resolver; the card's interfaces by `client`.
        let fetched = match self.settings.egress.check_url(&agent.url) {
            Ok(_) => {
                crate::remote::fetch_card(
                    &self.clients(&agent.name).http,
                    &agent.url,
                    self.settings.timeout,
                    self.settings.trusted_cards.as_deref(),
                )
                .await
            }
            Err(refused) => Err(RemoteError::Permanent { message: refused.0, code: None }),
        };
        match fetched {
            Ok(card) => {
                let json = serde_json::to_value(&card).unwrap_or_default();
                ctx.store().agent_set_card(&agent.name, &json).await?;
                if required {
                    self.verified
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(agent.name.clone(), json);
                }
                self.agents.forget(&agent.name);
                Ok(card)
            }
            // A card that fails verification now is not the agent's any
            // more, whatever was verified before.
            Err(RemoteError::Permanent { message, .. }) if required => {
                self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&agent.name);
                Err(Stop::Outcome(Outcome::Fail {
                    reason: format!("agent {} has no usable Agent Card: {message}", agent.name),
                }))
            }
            Err(e) => match (stored, e) {
                (Some(card), e) => {
                    tracing::warn!(agent = %agent.name, error = %e, "card refresh failed; using the stored card");
                    Ok(card)
                }
                // Not a valid A2A card: retrying fetches the same one.
                (None, RemoteError::Permanent { message, .. }) => Err(Stop::Outcome(Outcome::Fail {
                    reason: format!("agent {} has no usable Agent Card: {message}", agent.name),
                })),
                (None, e) => Err(Stop::Outcome(Outcome::Retry {
                    error: format!("fetching the card of {}: {e}", agent.name),
                    retry_after: None,
                })),
            },
        }
    }

    /// The agent over the interface [`choose_interface`] picks: JSON-RPC
    /// (v1.0 or v0.3) and gRPC called directly, HTTP+JSON through the
    /// official client's REST transport.
    async fn client(
        &self,
        agent: &str,
        card: &AgentCard,
        trace: Option<&serde_json::Value>,
    ) -> Result<RemoteAgent, RemoteError> {
        // The stored card was checked when fetched; the allow-list may have
        // shrunk since.
        check_interfaces(&self.settings.egress, card)?;
        let clients = self.clients(agent);
        let preferred = self.settings.bindings.get(agent).map(Vec::as_slice);
        let interface = choose_interface(card, preferred).ok_or_else(|| no_interface(card, preferred))?;
        if interface.protocol_binding.eq_ignore_ascii_case(GRPC) {
            // Judged before the first connection, so a refusal is a verdict
            // here rather than a failed connection later.
            // `check_interfaces` judged its address above; here its name.
            let target = switchyard_engine::egress::Target::parse(&interface_url(interface))
                .map_err(|e| RemoteError::Permanent { message: format!("its gRPC address: {e}"), code: None })?;
            if target.ip.is_none() {
                crate::egress::resolve_checked(&self.settings.egress, &target.host, target.port).await.map_err(
                    |e| match crate::egress::refusal(e.as_ref()) {
                        Some(refused) => RemoteError::Permanent { message: refused.0.clone(), code: None },
                        // The resolver's text names the host: the agent's, not the client's business.
                        None => RemoteError::Transient {
                            message: "its gRPC host could not be resolved".into(),
                            retry_after: None,
                        },
                    },
                )?;
            }
        }
        let transports = crate::remote::Transports {
            http: &clients.http,
            sdk: &clients.sdk,
            headers: &clients.headers,
            timeout: self.settings.timeout,
            limits: self.settings.limits,
            trace,
        };
        crate::remote::connect(card, interface, &transports, |address| self.channel(agent, address)).await
    }

    /// The agent's gRPC channel to `address`, made on first use.
    fn channel(&self, agent: &str, address: &str) -> Result<tonic::transport::Channel, RemoteError> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (agent.to_owned(), address.to_owned());
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let channel = crate::egress::grpc_channel(address, &self.settings.egress, Duration::from_secs(5))
            .map_err(|message| RemoteError::Permanent { message, code: None })?;
        channels.insert(key, channel.clone());
        Ok(channel)
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
            let client = match self.client(&agent.name, &card, trace.as_ref()).await {
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
            switchyard.parent_task.id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        // A child of the job's span (a job enqueued without a trace context
        // joins the task's once its start is read, in `try_delegate`).
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
        // The task, its checkpoint, the next message to send, in one round
        // trip (shared with the delegations claimed with this one).
        let Some(start) = store.delegation_start_claimed(job).await? else {
            return Ok(Outcome::Done(Vec::new()));
        };
        let task = start.task;
        let span = tracing::Span::current();
        span.record("a2a.context.id", task.context_id.as_str());
        if let Some(parent) = task.parent_id {
            // A fan-out member or pipeline step: its span names the task it serves.
            span.record("switchyard.parent_task.id", tracing::field::display(parent));
        }
        // A job enqueued without a trace context still joins the task's.
        if switchyard_engine::trace::current().is_none() {
            switchyard_engine::trace::continue_from(&span, task.trace_context.as_ref());
        }
        if task.state.is_terminal() {
            return Ok(Outcome::Done(Vec::new()));
        }
        // A follow-up goes to the agent that holds the task already.
        let chosen = start
            .delegation
            .as_ref()
            .map(|d| d.agent.clone())
            .or_else(|| job.payload.get("agent").and_then(|a| a.as_str()).map(str::to_owned));
        let Some(name) = chosen.as_deref() else {
            return Ok(Outcome::Done(vec![TaskEvent::status_with_text(
                TaskState::Rejected,
                "no remote agent was chosen for this task",
            )]));
        };
        span.record("a2a.agent.name", name);
        let Some(agent) = self.agents.get(store, name).await? else {
            return Ok(Outcome::Fail { reason: format!("agent {name} is no longer registered") });
        };
        // A breaker that was closed a moment ago (the cached record) needs no
        // transaction; an open or cooling one asks the database.
        if agent.breaker_open_until.is_some()
            && let Gate::Open { wait, .. } = store.agent_breaker_gate(name, self.settings.breaker_cooldown).await?
        {
            let after = wait.max(Duration::from_millis(100));
            return Ok(Outcome::Snooze { after, reason: format!("agent {name}'s circuit breaker is open") });
        }
        let card = self.card(ctx, &agent).await?;
        let client = match self.client(name, &card, task.trace_context.as_ref()).await {
            Ok(client) => client,
            Err(e) => return Ok(classify(name, &e)),
        };
        let delegation =
            start.delegation.unwrap_or_else(|| Delegation { agent: name.to_owned(), ..Delegation::default() });
        let remote_stored = delegation.remote_task_id.is_some();
        // Both instants are the database's: how long the remote task has
        // been at it when this attempt became due.
        let working_for = (job.due_at - task.status_at).to_std().unwrap_or_default();
        let mut run = Run {
            ctx,
            task,
            delegation,
            next: start.next,
            unwritten: Vec::new(),
            dirty: false,
            since: None,
            client: &client,
            streaming: card.capabilities.streaming == Some(true),
            // Streamed from, unless nobody streams the task and the
            // operator chose the blocking call for this agent.
            wants_stream: job.payload.get("stream").and_then(serde_json::Value::as_bool).unwrap_or(false)
                || !self.settings.blocking.contains(name),
            silence: self.settings.timeout,
            deadline: Instant::now() + self.settings.attach_budget,
            // Past one budget of following, look once per wake-up and park.
            look_once: working_for > self.settings.attach_budget,
            remote_stored,
        };
        let started = Instant::now();
        let result = run.drive().await;
        metrics::histogram!("switchyard_remote_exchange_seconds", "agent" => name.to_owned())
            .record(started.elapsed().as_secs_f64());
        let parking = matches!(result, Ok(Settled::Later)) && card.capabilities.push_notifications == Some(true);
        let outcome = self.conclude(&mut run, &agent, result, park_delay(working_for)).await;
        // After the checkpoint (the remote task id) is written, before the
        // job is put aside: a push that lands in between finds the job still
        // leased and changes nothing; the poll covers that.
        if parking && matches!(outcome, Ok(Outcome::Snooze { .. })) {
            self.ask_for_pushes(&run).await;
        }
        outcome
    }

    /// Before parking on an agent that pushes: registers a webhook on the
    /// remote task (once per delegation) whose secret token a push must
    /// present to wake the job early. Failing that, the job polls as usual.
    async fn ask_for_pushes(&self, run: &Run<'_>) {
        let (Some(receiver), Some(remote)) = (&self.settings.push_receiver, &run.delegation.remote_task_id) else {
            return;
        };
        let store = run.ctx.store();
        let task = run.task.id;
        match store.delegation_push_token(task).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(error) => {
                tracing::warn!(%error, "could not read the delegation's push registration");
                return;
            }
        }
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut url = format!("{}/_switchyard/push/{task}", receiver.trim_end_matches('/'));
        if let Some(store) = &self.settings.push_store {
            // A store name is a plain identifier (`stores::valid_name`).
            url.push_str("?store=");
            url.push_str(store);
        }
        match run.client.register_push(remote, &url, &token).await {
            Ok(true) => {
                if let Err(error) = store.delegation_set_push_token(task, &token).await {
                    tracing::warn!(%error, "could not record the push registration; the job polls");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::info!(%error, "the agent took no webhook; the parked job polls"),
        }
    }

    /// Counts a call, and writes the breaker's bookkeeping only when it
    /// changes: a success to an agent with no failures on record (the hot
    /// path) writes nothing.
    async fn record(&self, ctx: &JobContext, agent: &AgentRecord, ok: bool) -> Result<(), Stop> {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!("switchyard_remote_calls_total", "agent" => agent.name.clone(), "outcome" => outcome)
            .increment(1);
        if ok && agent.consecutive_failures == 0 && agent.breaker_open_until.is_none() {
            return Ok(());
        }
        self.agents.forget(&agent.name);
        let s = &self.settings;
        Ok(ctx.store().agent_record_call(&agent.name, ok, s.breaker_failures, s.breaker_cooldown).await?)
    }

    async fn conclude(
        &self,
        run: &mut Run<'_>,
        agent: &AgentRecord,
        result: Result<Settled, RunError>,
        park: Duration,
    ) -> Result<Outcome, Stop> {
        let ctx = run.ctx;
        let name = agent.name.as_str();
        // What the exchange produced is written before anything else is
        // decided: with the job's settlement when the remote task settled,
        // else on its own (progress survives a retry or a park).
        let result = match result {
            Ok(Settled::Yes) => match run.finish().await {
                Ok(()) => {
                    self.record(ctx, agent, true).await?;
                    return Ok(Outcome::Recorded);
                }
                // Settled as done in that same write (the task had ended).
                Err(RunError::Ended) => return Ok(Outcome::Recorded),
                Err(e) => Err(e),
            },
            other => match run.flush().await {
                Ok(()) => other,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(Settled::Yes) => Ok(Outcome::Recorded),
            Ok(Settled::No) => Ok(Outcome::Retry {
                error: format!("agent {name} ended the exchange before the task settled"),
                retry_after: None,
            }),
            Ok(Settled::Quiet) => Ok(Outcome::Retry {
                error: format!("agent {name} stayed silent before naming its task"),
                retry_after: None,
            }),
            Ok(Settled::Later) => {
                // Long work: give the lease back and look again later.
                self.record(ctx, agent, true).await?;
                Ok(Outcome::Snooze { after: park, reason: format!("agent {name} is still working") })
            }
            Err(RunError::Ended) => Ok(Outcome::Done(Vec::new())),
            Err(RunError::Store(e)) => Err(Stop::from(e)),
            Err(RunError::Remote(e)) => {
                let outcome = classify(name, &e);
                // Only trouble reaching the agent counts against its breaker,
                // not an agent that answered "no".
                self.record(ctx, agent, !matches!(outcome, Outcome::Retry { .. })).await?;
                Ok(outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(interfaces: &[(&str, &str, &str)]) -> AgentCard {
        let interfaces: Vec<serde_json::Value> = interfaces
            .iter()
            .map(|(url, binding, version)| {
                serde_json::json!({ "url": url, "protocolBinding": binding, "protocolVersion": version })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "a", "description": "", "version": "1", "supportedInterfaces": interfaces,
            "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": [], "skills": []
        }))
        .expect("a card")
    }

    fn chosen(card: &AgentCard, preferred: Option<&[String]>) -> Option<String> {
        choose_interface(card, preferred).map(|i| format!("{} {}", i.protocol_binding, i.protocol_version))
    }

    #[test]
    fn interfaces_are_chosen_by_binding_then_version() {
        let all = card(&[
            ("http://a/rest", "HTTP+JSON", "1.0"),
            ("a:50051", "GRPC", "1.0"),
            ("http://a/v03", "JSONRPC", "0.3"),
            ("http://a/rpc", "JSONRPC", "1.0"),
        ]);
        assert_eq!(chosen(&all, None).as_deref(), Some("JSONRPC 1.0"));
        let grpc_first = ["GRPC".to_owned(), "JSONRPC".to_owned()];
        assert_eq!(chosen(&all, Some(&grpc_first)).as_deref(), Some("GRPC 1.0"));
        // Any v1 interface goes before a v0.3 one.
        let old_and_rest = card(&[("http://a/v03", "JSONRPC", "0.3"), ("http://a/rest", "HTTP+JSON", "1.0")]);
        assert_eq!(chosen(&old_and_rest, None).as_deref(), Some("HTTP+JSON 1.0"));
        let old = card(&[("http://a/v03", "JSONRPC", "0.3")]);
        assert_eq!(chosen(&old, None).as_deref(), Some("JSONRPC 0.3"));
        // Configured away from JSON-RPC, a v0.3 agent cannot be reached;
        // nor can bindings Switchyard does not call.
        assert_eq!(chosen(&old, Some(&["GRPC".to_owned()])), None);
        let unknown = card(&[("slim://a", "SLIMRPC", "1.0"), ("a:1", "GRPC", "0.3")]);
        assert_eq!(chosen(&unknown, None), None);
    }
}
