//! The command line: every flag has an environment fallback, and each
//! process's settings become one validated config struct.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use switchyard_api::ApiConfig;
use switchyard_engine::RetryPolicy;
use switchyard_worker::WorkerConfig;

pub(crate) use crate::database_args::{DatabaseArgs, Embedded};

/// Switchyard: a durable task broker for the A2A protocol.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade the database schema (or revert it with --undo).
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Revert every migration instead of applying them: this drops every
        /// table, with every task in it. Says what it will drop and asks
        /// first (or needs --yes when no terminal can answer).
        #[arg(long)]
        undo: bool,
        /// With --undo: drop without asking.
        #[arg(long, requires = "undo")]
        yes: bool,
        /// `status`: change nothing; list this build's migrations, applied
        /// or pending (exit code 1 when some are pending).
        #[arg(value_parser = ["status"], conflicts_with = "undo")]
        action: Option<String>,
    },
    /// Serve the HTTP API.
    Serve {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        file: ConfigArgs,
        #[command(flatten)]
        security: SecurityArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Claim and run jobs.
    Worker {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        file: ConfigArgs,
        #[command(flatten)]
        security: SecurityArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Migrate, then run the API and a worker in one process (and the demo
    /// agent, when the config names no agents). With no database URL it
    /// runs on an embedded store in `--data-dir`. Unless the config file has
    /// an `[auth]` table, anyone may call it, and agents on this machine
    /// (loopback) may be reached.
    Dev {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        file: ConfigArgs,
        #[command(flatten)]
        security: SecurityArgs,
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Create, list and revoke API keys.
    Keys {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Copy the embedded store, consistent, to a new file, while `dev` runs
    /// (PostgreSQL: use pg_dump). Restore by putting the copy in place of
    /// `switchyard.db` while nothing runs on it.
    Backup {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The file to write; it must not exist.
        to: PathBuf,
    },
    /// Exit 0 when URL answers 2xx within --timeout, else 1: a health check
    /// for images without curl (the Dockerfile's HEALTHCHECK uses it).
    Probe {
        /// Default: $SWITCHYARD_HEALTH_URL, else http://127.0.0.1:8080/readyz.
        #[arg(env = "SWITCHYARD_HEALTH_URL", default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Run the scriptable demo A2A agent; the message text picks what it does:
    /// `echo TEXT`, `stream N`, `sleep MS`, `ask`, `fail N REST`, `throttle N REST`,
    /// `status CODE`, `reject`, `message TEXT`, `hang` (see the README).
    DemoAgent {
        /// host:port to listen on.
        #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// The URL its card advertises (default: http://<listen address>).
        #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
        public_url: Option<String>,
        /// Advertise no streaming, so callers send and poll.
        #[arg(long)]
        no_streaming: bool,
        /// How long each step of a script pauses (`echo` works this long;
        /// `stream` waits this long between chunks); `0ms` for benchmarks.
        #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
        pause: Duration,
        /// A file its tasks are written to as they change, and read back from
        /// at start: tasks survive a restart, and those in flight run again.
        #[arg(long)]
        journal: Option<PathBuf>,
    },
    /// Register, list and remove remote agents.
    Agents {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        file: ConfigArgs,
        #[command(flatten)]
        security: SecurityArgs,
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Webhook deliveries: list them, the dead-lettered ones, requeue one.
    Webhooks {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Print the commented default configuration, or check a file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Add, list and remove plans (fan-outs and pipelines offered as skills).
    Plans {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Send a message to an A2A agent or broker (Switchyard or any other)
    /// and show what comes back; asks you when the task asks for input.
    /// Exit code 0 completed, 1 failed/canceled/rejected, 2 waiting for input.
    Send(crate::client::SendArgs),
    /// Inspect tasks: one task's whole story, or the recent ones.
    Tasks {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Inspect and requeue jobs.
    Jobs {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key; it is printed once, as the last line of output, and
    /// only its hash is stored.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        principal: String,
        /// A scope the key carries (`admin` admits it to the admin API); repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Requests per second this key may make (default: `[auth] rate`).
        #[arg(long)]
        rate: Option<f64>,
        /// Requests it may make at once above the rate (default: one second's worth).
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List keys (ids, tenants, principals, scopes; never secrets).
    List,
    /// Revoke a key by its id; it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List dead-lettered jobs, newest first.
    Dead {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead job back in the queue with a fresh set of attempts.
    Requeue { job_id: i64 },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TasksCommand {
    /// A task: its summary, event timeline with latencies, jobs and attempts, children.
    Show {
        task_id: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Link template for the trace viewer, `{trace_id}` replaced
        /// (e.g. http://localhost:16686/trace/{trace_id}).
        #[arg(long, env = "SWITCHYARD_TRACE_URL")]
        trace_url: Option<String>,
    },
    /// Cancel an open task, whoever's it is (its children and its remote
    /// task are canceled too); audited as the operator's.
    Cancel {
        task_id: String,
        /// Why, as the task's status message says it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Recent tasks, newest change first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only tasks in this state (submitted, working, input_required, completed, …).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Recent deliveries, newest first (`--state pending|delivered|dead`).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Dead-lettered deliveries, newest first.
    Dead {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead delivery back in its webhook's outbox with a fresh set of attempts.
    Requeue { delivery_id: i64 },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the default configuration, every key commented:
    /// `switchyard config default > switchyard.toml`.
    Default,
    /// Check a configuration file as `serve`, `worker` and `dev` will read
    /// it; an error names the key.
    Check {
        /// The file (default: --config / SWITCHYARD_CONFIG).
        file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlansCommand {
    /// Add or replace a plan, given as JSON in the `[[plans]]` shape, e.g.
    /// '{"name": "research", "fanout": ["search", "papers"], "join": "any"}'.
    Add { json: String },
    /// List the plans.
    List,
    /// Remove a plan (tasks already running it carry on).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// Register an agent (its Agent Card is fetched and checked first).
    Add { name: String, url: String },
    /// List registered agents.
    List,
    /// Unregister an agent.
    Remove { name: String },
}

/// The configuration file.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// TOML file with `[[agents]]`, `[[routes]]`, `default_agent`, `[[plans]]` and `[plan_limits]`.
    #[arg(long = "config", env = "SWITCHYARD_CONFIG")]
    pub(crate) path: Option<PathBuf>,
}

/// Who may call, and where Switchyard may connect.
#[derive(Debug, Args)]
pub(crate) struct SecurityArgs {
    /// Serve requests without credentials, as `[auth] anonymous = true`
    /// does. Never for a deployment reachable by anyone you do not trust.
    #[arg(long, env = "SWITCHYARD_ANONYMOUS")]
    pub(crate) anonymous: bool,
    /// CIDRs, addresses and host names agents may be at although the egress
    /// guard would refuse them (comma-separated; adds to `[egress] allow`).
    #[arg(long, env = "SWITCHYARD_EGRESS_ALLOW", value_delimiter = ',')]
    pub(crate) egress_allow: Vec<String>,
}

/// The HTTP listener.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// host:port to listen on.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// host:port for the gRPC binding (A2A v1.0 `lf.a2a.v1.A2AService`);
    /// unset, gRPC is not served.
    #[arg(long, env = "SWITCHYARD_GRPC_LISTEN")]
    pub(crate) grpc_listen: Option<SocketAddr>,
    /// host:port clients reach the gRPC binding at, as the agent card
    /// advertises it (default: the gRPC listen address).
    #[arg(long, env = "SWITCHYARD_GRPC_PUBLIC_ADDRESS", requires = "grpc_listen")]
    pub(crate) grpc_public_address: Option<String>,
    /// A PEM certificate chain: the gRPC port then speaks TLS only (rustls).
    #[arg(long, env = "SWITCHYARD_GRPC_TLS_CERT", requires_all = ["grpc_listen", "grpc_tls_key"])]
    pub(crate) grpc_tls_cert: Option<PathBuf>,
    /// The PEM private key of `--grpc-tls-cert`.
    #[arg(long, env = "SWITCHYARD_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub(crate) grpc_tls_key: Option<PathBuf>,
    /// On shutdown, how long open requests may finish.
    #[arg(long, env = "SWITCHYARD_HTTP_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) http_drain_timeout: Duration,
    /// The URL clients reach this server at, as the agent card advertises it
    /// (default: http://<listen address>).
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// How long a blocking SendMessage waits for the task to finish or ask
    /// for input before answering with the task as it is.
    #[arg(long, env = "SWITCHYARD_BLOCKING_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) blocking_timeout: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Attempts a task's delegation gets before it is dead-lettered.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 8)]
    pub(crate) max_attempts: u32,
    /// Deadline for tasks whose message sets none (metadata
    /// switchyard.deadline or switchyard.timeoutSeconds); unset for none.
    #[arg(long, env = "SWITCHYARD_TASK_TTL", value_parser = humantime::parse_duration)]
    pub(crate) task_ttl: Option<Duration>,
    /// Bearer token that enables the admin API (`/admin/agents`); unset, it
    /// is off. On a command line it shows in `ps`: prefer the environment
    /// variable or --admin-token-file.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// How long a request's body may take to arrive after its headers.
    #[arg(long, env = "SWITCHYARD_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) body_timeout: Duration,
    /// A file holding the admin token (its first line), so the token appears
    /// in no process listing.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Streams (SSE) one principal may hold open per api process.
    #[arg(long, env = "SWITCHYARD_MAX_STREAMS_PER_PRINCIPAL", default_value_t = 64)]
    pub(crate) max_streams_per_principal: usize,
    /// Refuse a JSON request that names a field A2A does not define (by
    /// default it is ignored, as the specification asks, and counted in
    /// `switchyard_json_unknown_fields_total`).
    #[arg(long, env = "SWITCHYARD_STRICT_JSON")]
    pub(crate) strict_json: bool,
    /// How long a new connection (HTTP or gRPC) may take to send its first
    /// byte, and an HTTP/1 request its headers; it is closed after that.
    #[arg(long, env = "SWITCHYARD_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) header_timeout: Duration,
    /// How long an HTTP connection (HTTP/1 keep-alive or HTTP/2) may stay
    /// open with no request in flight.
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) idle_timeout: Duration,
    /// Connections open at once in this process, HTTP and gRPC together;
    /// past it new ones are refused at once (HTTP: 503). Keep it below the
    /// process's descriptor limit (`ulimit -n`).
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Serve the web console at /console (admin credentials; open to anyone
    /// only where anonymous calls are allowed and no admin token is set).
    #[arg(long, env = "SWITCHYARD_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) console: bool,
    /// Signs the console's session cookies. Give every api process of a
    /// deployment the same one so a sign-in holds across them and restarts;
    /// unset, each process signs with a random key of its own.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SECRET", hide_env_values = true)]
    pub(crate) console_secret: Option<String>,
    /// How long a console sign-in lasts.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SESSION", default_value = "12h", value_parser = humantime::parse_duration)]
    pub(crate) console_session: Duration,
    /// Link template for a task's trace in the console, `{trace_id}`
    /// replaced (e.g. http://jaeger:16686/trace/{trace_id}).
    #[arg(long, env = "SWITCHYARD_TRACE_URL")]
    pub(crate) trace_url: Option<String>,
}

impl ServeArgs {
    /// The places for connections, shared by the HTTP and gRPC ports.
    pub(crate) fn admission(&self) -> switchyard_api::Admission {
        switchyard_api::Admission::new(switchyard_api::ConnectionLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections.max(1),
        })
    }

    /// The gRPC port's TLS identity, read now, so a missing or unreadable
    /// file stops the start with its name.
    pub(crate) fn grpc_tls(&self) -> anyhow::Result<Option<tonic::transport::Identity>> {
        let (Some(cert), Some(key)) = (&self.grpc_tls_cert, &self.grpc_tls_key) else { return Ok(None) };
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading the gRPC TLS {what} {}: {e}", path.display()))
        };
        Ok(Some(tonic::transport::Identity::from_pem(read(cert, "certificate")?, read(key, "key")?)))
    }

    pub(crate) fn api_config(&self, bound: SocketAddr, grpc: Option<SocketAddr>) -> anyhow::Result<ApiConfig> {
        let grpc_url = grpc.map(|bound| self.grpc_public_address.clone().unwrap_or_else(|| bound.to_string()));
        let public_url = self.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
        let admin_token = match &self.admin_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading the admin token from {}: {e}", path.display()))?;
                let token = text.lines().next().unwrap_or("").trim().to_owned();
                anyhow::ensure!(!token.is_empty(), "the admin token file {} is empty", path.display());
                Some(token)
            }
            None => self.admin_token.clone().filter(|t| !t.is_empty()),
        };
        Ok(ApiConfig {
            blocking_timeout: self.blocking_timeout,
            max_body_bytes: self.max_body_bytes,
            body_timeout: self.body_timeout,
            max_attempts: i32::try_from(self.max_attempts.max(1)).unwrap_or(i32::MAX),
            default_ttl: self.task_ttl,
            admin_token,
            max_streams_per_principal: self.max_streams_per_principal.max(1),
            strict_json: self.strict_json,
            grpc_url,
            console: {
                let secret = self.console_secret.as_deref().filter(|s| !s.is_empty());
                let mut console = switchyard_api::console::ConsoleConfig::new(secret);
                console.enabled = self.console;
                console.session_ttl = self.console_session.max(Duration::from_secs(1));
                console.trace_url = self.trace_url.clone().filter(|t| !t.is_empty());
                console
            },
            ..ApiConfig::new(public_url)
        })
    }
}

/// How the worker claims and holds jobs.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// Shown as the lease owner (default: host, pid and a random suffix).
    #[arg(long, env = "SWITCHYARD_WORKER_ID")]
    pub(crate) worker_id: Option<String>,
    /// Jobs run at once, at most.
    #[arg(long, env = "SWITCHYARD_WORKER_CONCURRENCY", default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Jobs claimed per statement, at most.
    #[arg(long, env = "SWITCHYARD_WORKER_BATCH", default_value_t = 16)]
    pub(crate) batch: usize,
    /// How long a claim holds a job without a heartbeat.
    #[arg(long, env = "SWITCHYARD_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) lease: Duration,
    /// How often leases are renewed (default: a third of the lease).
    #[arg(long, env = "SWITCHYARD_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub(crate) heartbeat: Option<Duration>,
    /// Fallback polling (and expired-lease sweep) interval.
    #[arg(long, env = "SWITCHYARD_POLL_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) poll_interval: Duration,
    /// On shutdown, how long in-flight jobs may finish before their leases are released.
    #[arg(long, env = "SWITCHYARD_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Duration,
    /// host:port to serve this worker's Prometheus metrics on (`/metrics`);
    /// `serve` and `dev` serve theirs on the API's port.
    #[arg(long, env = "SWITCHYARD_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// How long a unary call to a remote agent may take, and how long its
    /// stream may stay silent before the worker looks at the remote task
    /// (a quiet task is followed again, not failed).
    #[arg(long, env = "SWITCHYARD_REMOTE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) remote_timeout: Duration,
    /// The largest single event (SSE frame or unary reply) a remote agent may send.
    #[arg(long, env = "SWITCHYARD_REMOTE_MAX_EVENT_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub(crate) remote_max_event_bytes: usize,
    /// The largest whole reply (a stream, all its events) a remote agent may send.
    #[arg(long, env = "SWITCHYARD_REMOTE_MAX_REPLY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub(crate) remote_max_reply_bytes: usize,
    /// Consecutive failures that open an agent's circuit breaker.
    #[arg(long, env = "SWITCHYARD_BREAKER_FAILURES", default_value_t = 5)]
    pub(crate) breaker_failures: u32,
    /// How long an open circuit breaker keeps work away from its agent.
    #[arg(long, env = "SWITCHYARD_BREAKER_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) breaker_cooldown: Duration,
    /// How long one attempt follows a remote task before parking the job
    /// (releasing its lease) and looking again later.
    #[arg(long, env = "SWITCHYARD_ATTACH_BUDGET", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) attach_budget: Duration,
    /// How long finished tasks (with their events, jobs and idempotency
    /// keys) and done jobs are kept; `0s` keeps them for good.
    #[arg(long, env = "SWITCHYARD_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub(crate) retention: Duration,
    /// Delay before the first retry; it doubles per attempt.
    #[arg(long, env = "SWITCHYARD_RETRY_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) retry_base: Duration,
    /// Longest delay between retries.
    #[arg(long, env = "SWITCHYARD_RETRY_CAP", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) retry_cap: Duration,
    /// How long one webhook POST may take.
    #[arg(long, env = "SWITCHYARD_PUSH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) push_timeout: Duration,
    /// Tries a webhook delivery gets before it is dead-lettered (its delays
    /// follow --retry-base and --retry-cap).
    #[arg(long, env = "SWITCHYARD_PUSH_MAX_ATTEMPTS", default_value_t = 10)]
    pub(crate) push_max_attempts: u32,
    /// The URL remote agents can reach the api at: a delegation parked on an
    /// agent that pushes registers a webhook there and wakes on its push.
    /// Unset, parked delegations only poll (`dev` defaults it to its own URL).
    #[arg(long, env = "SWITCHYARD_PUSH_RECEIVER_URL")]
    pub(crate) push_receiver_url: Option<String>,
    /// Delegations one tenant may run at once across the deployment, so one
    /// tenant's long tasks cannot take every worker slot (unset: no cap;
    /// give every worker the same value).
    #[arg(long, env = "SWITCHYARD_TENANT_MAX_RUNNING")]
    pub(crate) tenant_max_running: Option<u32>,
}

impl WorkerArgs {
    pub(crate) fn delegation(
        &self,
        egress: switchyard_engine::egress::Egress,
        credentials: std::collections::HashMap<String, switchyard_worker::delegate::AgentCredentials>,
        trusted_cards: Option<std::sync::Arc<jsonwebtoken::jwk::JwkSet>>,
        bindings: std::collections::HashMap<String, Vec<String>>,
        blocking: std::collections::HashSet<String>,
    ) -> switchyard_worker::delegate::DelegationSettings {
        switchyard_worker::delegate::DelegationSettings {
            timeout: self.remote_timeout,
            breaker_failures: i32::try_from(self.breaker_failures.max(1)).unwrap_or(i32::MAX),
            breaker_cooldown: self.breaker_cooldown,
            attach_budget: self.attach_budget,
            limits: switchyard_worker::sse::Limits {
                event_bytes: self.remote_max_event_bytes,
                reply_bytes: self.remote_max_reply_bytes,
            },
            push_receiver: self.push_receiver_url.clone().filter(|u| !u.is_empty()),
            push_store: None,
            egress: std::sync::Arc::new(egress),
            credentials,
            trusted_cards,
            bindings,
            blocking,
        }
    }

    pub(crate) fn push(&self, egress: switchyard_engine::egress::Egress) -> switchyard_worker::PushSettings {
        switchyard_worker::PushSettings {
            timeout: self.push_timeout,
            max_attempts: i32::try_from(self.push_max_attempts.max(1)).unwrap_or(i32::MAX),
            retry: RetryPolicy { base: self.retry_base, cap: self.retry_cap, ..RetryPolicy::default() },
            egress,
        }
    }

    pub(crate) fn worker_config(&self) -> WorkerConfig {
        let id = self.worker_id.clone().unwrap_or_else(default_worker_id);
        WorkerConfig {
            concurrency: self.concurrency,
            batch: self.batch,
            lease: self.lease,
            heartbeat: self.heartbeat.unwrap_or(self.lease / 3),
            poll_interval: self.poll_interval,
            drain_timeout: self.drain_timeout,
            retry: RetryPolicy { base: self.retry_base, cap: self.retry_cap, ..RetryPolicy::default() },
            retention: (!self.retention.is_zero()).then_some(self.retention),
            tenant_cap: self.tenant_max_running.map(|n| i64::from(n.max(1))),
            ..WorkerConfig::new(id)
        }
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}
