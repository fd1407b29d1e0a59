//! The API's settings.

use std::time::Duration;

use switchyard_engine::egress::Egress;

use crate::auth::AuthConfig;
use switchyard_engine::plan::PlanLimits;
use switchyard_engine::route::RoutingRules;

/// How the API serves requests.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The base URL clients reach this server at, as the agent card
    /// advertises it (no trailing slash).
    pub public_url: String,
    /// Where clients reach the gRPC binding (`host:port`), as the agent
    /// card advertises it; `None` when it is not served.
    pub grpc_url: Option<String>,
    /// How long a blocking `SendMessage` waits for the task to finish or ask
    /// for input before answering with the task as it is.
    pub blocking_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive once its headers have:
    /// a client trickling it cannot hold a request open.
    pub body_timeout: Duration,
    /// Attempts a delegation gets before it is dead-lettered.
    pub max_attempts: i32,
    /// How messages are routed to registered agents.
    pub routing: RoutingRules,
    /// Deadline for tasks whose message sets none; `None` for no limit.
    pub default_ttl: Option<Duration>,
    /// Bearer token for the admin API; `None` disables it.
    pub admin_token: Option<String>,
    /// How wide and deep a fan-out or pipeline may grow.
    pub plan_limits: PlanLimits,
    /// Where webhooks may point (the SSRF guard and its allow-list).
    pub egress: Egress,
    /// Where agents registered through the admin API may be.
    pub agent_egress: Egress,
    /// Who may call, and how often.
    pub auth: AuthConfig,
    /// Streams (SSE) one principal may hold open in this process at once.
    pub max_streams_per_principal: usize,
    /// Refuse a JSON request naming a field the model does not know,
    /// rather than ignore it (it is counted and logged either way).
    pub strict_json: bool,
    /// Signs the agent card, when configured.
    pub card_signer: Option<switchyard_engine::card_signature::CardSigner>,
    /// The web console at `/console`.
    pub console: ConsoleConfig,
}

impl ApiConfig {
    /// Defaults for a server reachable at `public_url`.
    pub fn new(public_url: impl Into<String>) -> Self {
        ApiConfig {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            grpc_url: None,
            blocking_timeout: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_attempts: 8,
            routing: RoutingRules::default(),
            default_ttl: None,
            admin_token: None,
            plan_limits: PlanLimits::default(),
            egress: Egress::default(),
            agent_egress: Egress::agents(),
            auth: AuthConfig::default(),
            max_streams_per_principal: 64,
            strict_json: false,
            card_signer: None,
            console: ConsoleConfig::default(),
        }
    }
}

/// How the console is served.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// Served at all (`--console false` turns it off).
    pub enabled: bool,
    /// A link template for a task's trace, `{trace_id}` replaced.
    pub trace_url: Option<String>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// The keys signed agent cards are verified against (`[trust]`), to
    /// say on the agents page whether a stored card's signature holds.
    pub trusted_cards: Option<std::sync::Arc<jsonwebtoken::jwk::JwkSet>>,
    /// Signs session cookies and the forms' anti-forgery tokens.
    pub(crate) key: [u8; 32],
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("enabled", &self.enabled)
            .field("trace_url", &self.trace_url)
            .field("session_ttl", &self.session_ttl)
            .field("trusted_cards", &self.trusted_cards.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig::new(None)
    }
}

impl ConsoleConfig {
    /// Sessions signed with a key derived from `secret`, so that every api
    /// process of a deployment accepts the others' sessions and a restart
    /// keeps them; without one, a random key of this process's own.
    pub fn new(secret: Option<&str>) -> Self {
        use sha2::Digest;
        let key = match secret {
            Some(secret) => sha2::Sha256::digest(format!("switchyard console session\0{secret}")).into(),
            None => rand::random(),
        };
        ConsoleConfig {
            enabled: true,
            trace_url: None,
            session_ttl: Duration::from_secs(12 * 3600),
            trusted_cards: None,
            key,
        }
    }
}
