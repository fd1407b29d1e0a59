//! The TOML configuration file (`--config`): remote agents, routes and plans.
//!
//! ```toml
//! default_agent = "echo"
//!
//! [[agents]]
//! name = "echo"
//! url = "http://127.0.0.1:9090"
//! bindings = ["GRPC", "JSONRPC"]   # optional: the order to try its interfaces in
//!
//! [[routes]]
//! skill = "translate"
//! agent = "translator"
//!
//! [[plans]]
//! name = "research"
//! fanout = ["search", "papers"]
//! join = "all"
//!
//! [plan_limits]
//! width = 128
//! depth = 3
//! tasks = 1024
//!
//! [push]
//! allow = ["10.20.0.0/16", "hooks.internal.example"]
//!
//! [egress]
//! allow = ["10.30.0.0/16"]
//!
//! [auth]
//! anonymous = false
//! rate = 50.0
//! burst = 100
//!
//! [auth.jwt]
//! jwks_url = "https://id.example.com/.well-known/jwks.json"
//! issuers = ["https://id.example.com/"]
//! audiences = ["switchyard"]
//! ```

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use switchyard_engine::Store;
use switchyard_engine::plan::{PlanLimits, PlanSpec};
use switchyard_engine::route::RoutingRules;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    agents: Vec<AgentEntry>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    default_agent: Option<String>,
    #[serde(default)]
    plans: Vec<PlanSpec>,
    #[serde(default)]
    plan_limits: LimitsEntry,
    #[serde(default)]
    push: PushEntry,
    #[serde(default)]
    egress: PushEntry,
    auth: Option<AuthEntry>,
    #[serde(default)]
    card: CardEntry,
    #[serde(default)]
    trust: TrustEntry,
}

/// `[card]`: how Switchyard's own card is signed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardEntry {
    /// A PKCS#8 PEM private key (P-256 signs ES256, RSA signs RS256).
    signing_key_file: Option<std::path::PathBuf>,
    /// The `kid` verifiers find the public key under.
    key_id: Option<String>,
}

/// `[trust]`: which agents' cards are believed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustEntry {
    /// A JWKS with the public keys agents' cards may be signed with.
    card_keys_file: Option<std::path::PathBuf>,
    /// Refuse agents whose card carries no valid signature by those keys.
    #[serde(default)]
    require_signed_cards: bool,
}

/// `[auth]`: who may call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthEntry {
    /// Serve requests without credentials (as the principal `anonymous`
    /// of whatever tenant they name).
    #[serde(default)]
    pub(crate) anonymous: bool,
    /// Requests per second per principal, unless its key sets its own.
    rate: Option<f64>,
    /// Requests a principal may make at once above the rate.
    burst: Option<u32>,
    /// The scope (key scope or JWT `scope`) that admits to the admin API.
    admin_scope: Option<String>,
    jwt: Option<JwtEntry>,
}

/// `[auth.jwt]`: which bearer tokens are trusted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtEntry {
    /// The environment variable holding the HS256 secret.
    hs256_secret_env: Option<String>,
    /// A file holding the HS256 secret.
    hs256_secret_file: Option<std::path::PathBuf>,
    /// A JWKS document on disk (RS256 / ES256 keys).
    jwks_file: Option<std::path::PathBuf>,
    /// A JWKS URL (RS256 / ES256 keys), cached and refreshed.
    jwks_url: Option<String>,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    /// Clock skew allowed on exp/nbf, e.g. "30s" (at most 5 minutes).
    leeway: Option<String>,
    tenant_claim: Option<String>,
    default_tenant: Option<String>,
}

/// `[push]`: where webhooks may point beyond the public internet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEntry {
    /// CIDRs, addresses and host names webhooks may reach although the SSRF
    /// guard would refuse them (loopback, private, link-local, …).
    #[serde(default)]
    allow: Vec<String>,
}

/// `[plan_limits]`: how wide and deep a fan-out or pipeline may grow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsEntry {
    /// Children of one fan-out, or steps of one pipeline.
    width: usize,
    /// Levels of plans within plans.
    depth: usize,
    /// Tasks one client task may create in all.
    tasks: usize,
}

impl Default for LimitsEntry {
    fn default() -> Self {
        let d = PlanLimits::default();
        LimitsEntry { width: d.width, depth: d.depth, tasks: d.tasks }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: String,
    url: String,
    /// The environment variable holding a bearer token for this agent.
    bearer_env: Option<String>,
    /// The environment variable holding an API key for this agent...
    api_key_env: Option<String>,
    /// ...and the header it goes in (default `X-API-Key`).
    api_key_header: Option<String>,
    /// PEM client certificate (chain) and key, for mutual TLS.
    client_cert: Option<std::path::PathBuf>,
    client_key: Option<std::path::PathBuf>,
    /// The bindings to call it over, in order of preference (default
    /// JSONRPC, GRPC, HTTP+JSON).
    bindings: Option<Vec<String>>,
    /// `stream` (the default) or `blocking`: how a task nobody follows as a
    /// stream is sent to this agent (docs/delegation.md).
    call: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    skill: String,
    agent: String,
}

/// The commented default configuration `switchyard config default` prints.
pub(crate) const DEFAULT: &str = include_str!("default_config.toml");

impl FileConfig {
    /// Reads and checks the file; no file means no agents and no routes.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a configuration's text. An unknown key is an error
    /// naming it (and where it is), as is every value that cannot work.
    pub(crate) fn parse(text: &str) -> anyhow::Result<FileConfig> {
        let config: FileConfig = toml::from_str(text)?;
        for agent in &config.agents {
            anyhow::ensure!(
                agent.url.starts_with("http://") || agent.url.starts_with("https://"),
                "agent {:?}: url must be http(s), got {:?}",
                agent.name,
                agent.url
            );
        }
        for agent in &config.agents {
            if let Some(call) = &agent.call {
                anyhow::ensure!(
                    call == "stream" || call == "blocking",
                    "agent {:?}: call must be \"stream\" or \"blocking\", got {call:?}",
                    agent.name
                );
            }
            for binding in agent.bindings.iter().flatten() {
                anyhow::ensure!(
                    switchyard_worker::delegate::BINDINGS.iter().any(|b| b.eq_ignore_ascii_case(binding)),
                    "agent {:?}: bindings: {binding:?} is not one of {}",
                    agent.name,
                    switchyard_worker::delegate::BINDINGS.join(", ")
                );
            }
        }
        let known = |name: &str| config.agents.iter().any(|a| a.name == name);
        for route in &config.routes {
            anyhow::ensure!(
                known(&route.agent),
                "route for skill {:?} names unknown agent {:?}",
                route.skill,
                route.agent
            );
        }
        if let Some(name) = &config.default_agent {
            anyhow::ensure!(known(name), "default_agent {name:?} is not among [[agents]]");
        }
        config.egress()?;
        config.agent_egress(&[])?;
        // `[auth]`, `[card]`, `[trust]` and agents' credentials name secrets
        // only some processes hold (a worker has no JWT secret, an api no
        // agent tokens): each is read, and checked, by the process that uses
        // it, at its start.
        let limits = config.plan_limits();
        anyhow::ensure!(
            limits.width >= 1 && limits.depth >= 1 && limits.tasks >= 1,
            "[plan_limits]: width, depth and tasks must be at least 1"
        );
        for (i, plan) in config.plans.iter().enumerate() {
            plan.validate(&limits).map_err(|e| anyhow::anyhow!("[[plans]] #{}: {e}", i + 1))?;
            anyhow::ensure!(
                !config.plans[..i].iter().any(|p| p.name == plan.name),
                "[[plans]]: plan {:?} is defined twice",
                plan.name
            );
        }
        Ok(config)
    }

    /// The routing rules the file configures.
    pub(crate) fn routing(&self) -> RoutingRules {
        RoutingRules {
            skills: self.routes.iter().map(|r| (r.skill.clone(), r.agent.clone())).collect(),
            default_agent: self.default_agent.clone(),
        }
    }

    /// The SSRF guard with the file's `[push] allow` list.
    pub(crate) fn egress(&self) -> anyhow::Result<switchyard_engine::egress::Egress> {
        switchyard_engine::egress::Egress::new(&self.push.allow).map_err(anyhow::Error::msg)
    }

    /// The guard for agents: the file's `[egress] allow` list, plus `extra`
    /// (from the command line).
    pub(crate) fn agent_egress(&self, extra: &[String]) -> anyhow::Result<switchyard_engine::egress::Egress> {
        let allow: Vec<String> = self.egress.allow.iter().chain(extra).cloned().collect();
        switchyard_engine::egress::Egress::for_agents(&allow).map_err(anyhow::Error::msg)
    }

    /// The signer of our own card, if `[card]` names a key.
    pub(crate) fn card_signer(&self) -> anyhow::Result<Option<switchyard_engine::card_signature::CardSigner>> {
        let Some(path) = &self.card.signing_key_file else {
            anyhow::ensure!(self.card.key_id.is_none(), "[card] key_id needs signing_key_file");
            return Ok(None);
        };
        let pem = std::fs::read(path).with_context(|| format!("[card] signing_key_file {}", path.display()))?;
        let kid = self.card.key_id.clone().unwrap_or_else(|| "switchyard".into());
        switchyard_engine::card_signature::CardSigner::from_pem(&pem, kid)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("[card] signing_key_file {}: {e}", path.display()))
    }

    /// The keys agents' cards must be signed with, if `[trust]` requires it.
    pub(crate) fn trusted_cards(&self) -> anyhow::Result<Option<std::sync::Arc<jsonwebtoken::jwk::JwkSet>>> {
        let t = &self.trust;
        match (&t.card_keys_file, t.require_signed_cards) {
            (Some(path), true) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("[trust] card_keys_file {}", path.display()))?;
                let set = serde_json::from_str(&text)
                    .with_context(|| format!("[trust] card_keys_file {} is not a JWKS", path.display()))?;
                Ok(Some(std::sync::Arc::new(set)))
            }
            (None, true) => anyhow::bail!("[trust] require_signed_cards needs card_keys_file"),
            (_, false) => Ok(None),
        }
    }

    /// Whether the file has an `[auth]` table.
    /// Whether the file names any agent.
    pub(crate) fn has_agents(&self) -> bool {
        !self.agents.is_empty()
    }

    /// Adds an agent (the default, unless the file names one).
    pub(crate) fn add_agent(&mut self, name: &str, url: &str) {
        self.agents.push(AgentEntry {
            name: name.to_owned(),
            url: url.to_owned(),
            bearer_env: None,
            api_key_env: None,
            api_key_header: None,
            client_cert: None,
            client_key: None,
            bindings: None,
            call: None,
        });
        self.default_agent.get_or_insert_with(|| name.to_owned());
    }

    pub(crate) fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// The `[auth]` table as the api takes it (secrets read now, so a
    /// missing one stops the process at start).
    pub(crate) fn auth(&self) -> anyhow::Result<switchyard_api::auth::AuthConfig> {
        use switchyard_api::auth::{AuthConfig, JwtConfig, JwtKeys, MAX_LEEWAY};
        let default = AuthEntry::default();
        let a = self.auth.as_ref().unwrap_or(&default);
        let rate = match a.rate {
            Some(per_sec) => {
                anyhow::ensure!(per_sec.is_finite() && per_sec > 0.0, "[auth] rate must be a positive number");
                let burst = a.burst.unwrap_or_else(|| switchyard_api::limit::Rate::burst_for(per_sec));
                anyhow::ensure!(burst >= 1, "[auth] burst must be at least 1");
                Some(switchyard_api::limit::Rate { per_sec, burst })
            }
            None => {
                anyhow::ensure!(a.burst.is_none(), "[auth] burst needs a rate");
                None
            }
        };
        let jwt = match &a.jwt {
            None => None,
            Some(j) => {
                let sources = [
                    j.hs256_secret_env.is_some(),
                    j.hs256_secret_file.is_some(),
                    j.jwks_file.is_some(),
                    j.jwks_url.is_some(),
                ];
                anyhow::ensure!(
                    sources.iter().filter(|s| **s).count() == 1,
                    "[auth.jwt] needs exactly one of hs256_secret_env, hs256_secret_file, jwks_file, jwks_url"
                );
                let keys = if let Some(var) = &j.hs256_secret_env {
                    let secret =
                        std::env::var(var).with_context(|| format!("[auth.jwt] hs256_secret_env: {var} is not set"))?;
                    anyhow::ensure!(secret.len() >= 32, "[auth.jwt] the HS256 secret must be at least 32 bytes");
                    JwtKeys::Secret(secret.into_bytes())
                } else if let Some(path) = &j.hs256_secret_file {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("[auth.jwt] hs256_secret_file {}", path.display()))?;
                    let secret = text.lines().next().unwrap_or("").trim().to_owned();
                    anyhow::ensure!(secret.len() >= 32, "[auth.jwt] the HS256 secret must be at least 32 bytes");
                    JwtKeys::Secret(secret.into_bytes())
                } else if let Some(path) = &j.jwks_file {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("[auth.jwt] jwks_file {}", path.display()))?;
                    serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text)
                        .with_context(|| format!("[auth.jwt] jwks_file {} is not a JWKS", path.display()))?;
                    JwtKeys::JwksFile(path.clone())
                } else {
                    let url = j.jwks_url.clone().unwrap_or_default();
                    anyhow::ensure!(
                        url.starts_with("https://") || url.starts_with("http://"),
                        "[auth.jwt] jwks_url must be an http(s) URL"
                    );
                    JwtKeys::JwksUrl(url)
                };
                let leeway = match &j.leeway {
                    Some(text) => humantime::parse_duration(text)
                        .with_context(|| format!("[auth.jwt] leeway {text:?} is not a duration"))?,
                    None => std::time::Duration::from_secs(30),
                };
                anyhow::ensure!(leeway <= MAX_LEEWAY, "[auth.jwt] leeway may be at most {MAX_LEEWAY:?}");
                Some(JwtConfig {
                    keys,
                    issuers: j.issuers.clone(),
                    audiences: j.audiences.clone(),
                    leeway,
                    tenant_claim: j.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
                    default_tenant: j.default_tenant.clone(),
                })
            }
        };
        Ok(AuthConfig {
            anonymous: a.anonymous,
            jwt,
            rate,
            admin_scope: a.admin_scope.clone().unwrap_or_else(|| "admin".into()),
        })
    }

    /// Each agent's bindings in order of preference, where configured.
    pub(crate) fn agent_bindings(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.agents
            .iter()
            .filter_map(|a| {
                let bindings = a.bindings.as_ref()?;
                Some((a.name.clone(), bindings.iter().map(|b| b.to_ascii_uppercase()).collect()))
            })
            .collect()
    }

    /// The agents a task nobody streams is sent to with one blocking call.
    pub(crate) fn blocking_agents(&self) -> std::collections::HashSet<String> {
        self.agents.iter().filter(|a| a.call.as_deref() == Some("blocking")).map(|a| a.name.clone()).collect()
    }

    /// What each agent with credentials gets presented, read from the
    /// environment and disk now (a missing one stops the process at start).
    pub(crate) fn agent_credentials(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<String, switchyard_worker::delegate::AgentCredentials>> {
        use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
        let mut all = std::collections::HashMap::new();
        for agent in &self.agents {
            let mut credentials = switchyard_worker::delegate::AgentCredentials::default();
            let secret = |var: &str| {
                let value = std::env::var(var)
                    .with_context(|| format!("agent {:?}: the environment variable {var} is not set", agent.name))?;
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| anyhow::anyhow!("agent {:?}: {var} is not a valid header value", agent.name))?;
                value.set_sensitive(true);
                anyhow::Ok(value)
            };
            if let Some(var) = &agent.bearer_env {
                let token = secret(var)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.to_str().unwrap_or_default()))
                    .map_err(|_| anyhow::anyhow!("agent {:?}: {var} is not a valid token", agent.name))?;
                value.set_sensitive(true);
                credentials.headers.insert(AUTHORIZATION, value);
            }
            if let Some(var) = &agent.api_key_env {
                let name = agent.api_key_header.as_deref().unwrap_or("X-API-Key");
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| anyhow::anyhow!("agent {:?}: {name:?} is not a header name", agent.name))?;
                credentials.headers.insert(header, secret(var)?);
            }
            match (&agent.client_cert, &agent.client_key) {
                (Some(cert), Some(key)) => {
                    let mut pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                    pem.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
                    let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                        format!("agent {:?}: the client certificate or key is unusable", agent.name)
                    })?;
                    credentials.identity = Some(identity);
                }
                (None, None) => {}
                _ => anyhow::bail!("agent {:?}: client_cert and client_key go together", agent.name),
            }
            if !credentials.headers.is_empty() || credentials.identity.is_some() {
                all.insert(agent.name.clone(), credentials);
            }
        }
        Ok(all)
    }

    /// The limits on fan-outs and pipelines.
    pub(crate) fn plan_limits(&self) -> PlanLimits {
        let l = &self.plan_limits;
        PlanLimits { width: l.width, depth: l.depth, tasks: l.tasks }
    }

    /// Registers the file's agents and plans (adding or updating; those
    /// added with the CLI or the admin API are left alone).
    /// Names the plans in the file use that the file does not define (as an
    /// agent or a plan): they must be registered before the plan runs.
    pub(crate) fn undefined_plan_members(&self) -> Vec<(String, String)> {
        let defined =
            |name: &str| self.agents.iter().any(|a| a.name == name) || self.plans.iter().any(|p| p.name == name);
        let mut missing = Vec::new();
        for plan in &self.plans {
            let members = plan.fanout.iter().flatten().chain(plan.pipeline.iter().flatten()).chain(plan.agent.iter());
            for member in members {
                if !defined(member) {
                    missing.push((plan.name.clone(), member.clone()));
                }
            }
        }
        missing
    }

    /// Looks once, in the background, at the card of every agent the file
    /// names, and warns about each that does not answer: a typo'd port or
    /// an agent not started yet is said at start, not after the first
    /// task's retries. Nothing waits on it.
    pub(crate) fn probe_agents(&self, security: &crate::cli::SecurityArgs) {
        let (Ok(egress), Ok(credentials)) = (self.agent_egress(&security.egress_allow), self.agent_credentials())
        else {
            return;
        };
        let egress = std::sync::Arc::new(egress);
        for agent in &self.agents {
            let (name, url, egress) = (agent.name.clone(), agent.url.clone(), egress.clone());
            let credentials = credentials.get(&name).cloned();
            tokio::spawn(async move {
                if let Err(error) =
                    switchyard_worker::delegate::fetch_card(&url, &egress, credentials.as_ref(), None).await
                {
                    tracing::warn!(
                        agent = %name,
                        url = %switchyard_engine::egress::redacted(&url),
                        %error,
                        "the agent does not answer with its card: is it running, at that address? \
                         its tasks wait and retry until it does"
                    );
                }
            });
        }
    }

    pub(crate) async fn register(&self, store: &Store) -> anyhow::Result<()> {
        for agent in &self.agents {
            store.agent_upsert(&agent.name, &agent.url).await.with_context(|| format!("registering {}", agent.name))?;
        }
        for plan in &self.plans {
            store.plan_put(plan).await.with_context(|| format!("registering plan {}", plan.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_bad_references_are_refused() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("switchyard.example.toml");
        let config = FileConfig::load(Some(&example)).expect("the shipped example is valid");
        assert_eq!(config.routing().default_agent.as_deref(), Some("demo"));

        let dir = std::env::temp_dir().join(format!("switchyard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "default_agent = \"ghost\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err());
        std::fs::write(&bad, "[[agents]]\nname = \"a\"\nurl = \"ftp://x\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err());
        std::fs::write(&bad, "[[agent]]\nname = \"typo\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err(), "unknown keys are errors, not silence");
        std::fs::write(&bad, "[[plans]]\nname = \"p\"\nfanout = [\"a\"]\npipeline = [\"b\"]\n").expect("write");
        let err = format!("{:#}", FileConfig::load(Some(&bad)).expect_err("two kinds"));
        assert!(err.contains("exactly one"), "{err}");
        std::fs::write(&bad, "[[plans]]\nname = \"p\"\nfanout = [\"a\"]\njoin = \"quorum\"\nquorum = 2\n")
            .expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err(), "a quorum larger than the fan-out");

        // A secret only the api holds does not stop a worker reading the file;
        // the api, which needs it, names what is missing.
        std::fs::write(&bad, "[auth.jwt]\nhs256_secret_env = \"SWITCHYARD_TEST_UNSET_SECRET\"\n").expect("write");
        let shared = FileConfig::load(Some(&bad)).expect("loads without the secret");
        let err = shared.auth().expect_err("the api needs it").to_string();
        assert!(err.contains("SWITCHYARD_TEST_UNSET_SECRET"), "{err}");
        std::fs::write(&bad, "[auth.jwt]\njwks_file = \"/a\"\njwks_url = \"https://b\"\n").expect("write");
        let err = FileConfig::load(Some(&bad)).expect("loads").auth().expect_err("two sources").to_string();
        assert!(err.contains("exactly one"), "{err}");
    }

    #[test]
    fn the_default_config_is_valid_and_unknown_keys_are_named() {
        let config = FileConfig::parse(DEFAULT).expect("the printed default is valid");
        assert!(config.agents.is_empty() && config.auth.is_none());
        let limits = config.plan_limits();
        let defaults = PlanLimits::default();
        assert_eq!((limits.width, limits.depth, limits.tasks), (defaults.width, defaults.depth, defaults.tasks));
        // Uncommenting the examples gives a valid configuration too.
        let uncommented: String = DEFAULT
            .lines()
            .map(|line| line.strip_prefix("# ").filter(|l| l.contains('=') || l.starts_with('[')).unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let config = FileConfig::parse(&uncommented).expect("the commented examples are valid");
        assert_eq!(config.agents.len(), 1);
        assert_eq!(config.agent_bindings().get("demo").map(Vec::len), Some(3));
        assert!(config.blocking_agents().is_empty(), "the example keeps the default, streaming");

        for (text, key) in [
            ("[auth]\nanonymus = true\n", "anonymus"),
            ("[[agents]]\nname = \"a\"\nurl = \"http://a\"\nbinding = [\"GRPC\"]\n", "binding"),
            ("[plan_limit]\nwidth = 2\n", "plan_limit"),
            ("[[agents]]\nname = \"a\"\nurl = \"http://a\"\nbindings = [\"SOAP\"]\n", "SOAP"),
            ("[[agents]]\nname = \"a\"\nurl = \"http://a\"\ncall = \"sometimes\"\n", "sometimes"),
        ] {
            let err = format!("{:#}", FileConfig::parse(text).expect_err(key));
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
