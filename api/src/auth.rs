//! Who is calling. Every A2A request is authenticated before it is read:
//! by an API key (`X-API-Key`), by a JWT bearer token, or, only where the
//! configuration says so, as nobody in particular. The credential decides
//! the tenant and the principal; the request body never does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use subtle::ConstantTimeEq;
use switchyard_engine::{AuditEntry, Caller, PresentedKey, Store};

use crate::error::ApiError;
use crate::limit::{Rate, RateLimits};
use crate::validate;

/// The header an API key travels in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The principal and credential name of a caller who presented nothing.
pub const ANONYMOUS: &str = "anonymous";

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Requests without credentials are served, as the principal
    /// `anonymous` of the tenant they name. Only ever on by explicit choice.
    pub anonymous: bool,
    /// JWT bearer tokens, when configured.
    pub jwt: Option<JwtConfig>,
    /// Requests per second for a principal whose key sets none (and for
    /// JWT and anonymous callers); `None` for no limit.
    pub rate: Option<Rate>,
    /// The scope that admits a credential to the admin API.
    pub admin_scope: String,
}

impl Default for AuthConfig {
    /// Credentials required; API keys only; no rate limit.
    fn default() -> Self {
        AuthConfig { anonymous: false, jwt: None, rate: None, admin_scope: "admin".into() }
    }
}

impl AuthConfig {
    /// Anyone may call, unauthenticated (development, tests).
    pub fn anonymous() -> Self {
        AuthConfig { anonymous: true, ..AuthConfig::default() }
    }
}

/// Which tokens are trusted, and what they must say.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub keys: JwtKeys,
    /// Accepted `iss` values; empty accepts any issuer.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty skips the audience check.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most five minutes).
    pub leeway: Duration,
    /// The claim naming the caller's tenant.
    pub tenant_claim: String,
    /// The tenant of tokens without that claim; `None` refuses them.
    pub default_tenant: Option<String>,
}

/// Where token signatures are checked against.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// A shared secret: HS256, and only HS256.
    Secret(Vec<u8>),
    /// RS256 / ES256 public keys from a JWKS document on disk (read again
    /// when a token names a key it lacks, at most every second: rotation is
    /// replacing the file).
    JwksFile(PathBuf),
    /// The same from a URL, cached, fetched again on an unknown key id (at
    /// most every [`JWKS_MIN_REFRESH`]) and every [`JWKS_MAX_AGE`].
    JwksUrl(String),
}

/// The longest leeway accepted: more would make `exp` meaningless.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// A JWKS is fetched again at least this often.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// A token naming an unknown key fetches the JWKS again at most this often,
/// so forged key ids cannot make us hammer the key server.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// The largest JWKS document read.
const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// The longest credential read from a header.
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The tenant the credential belongs to; `None` for an anonymous
    /// caller, who may name any tenant.
    pub tenant: Option<String>,
    pub principal: String,
    /// The credential's public name (`key:<id>`, `jwt:<issuer>`,
    /// `anonymous`): never the secret.
    pub credential: String,
    /// Admitted to the admin API.
    pub admin: bool,
    /// This principal's own rate, if its key sets one.
    pub rate: Option<Rate>,
}

impl Principal {
    fn anonymous() -> Self {
        Principal { tenant: None, principal: ANONYMOUS.into(), credential: ANONYMOUS.into(), admin: false, rate: None }
    }

    /// The holder of the deployment's admin token.
    pub fn admin_token() -> Self {
        Principal { tenant: None, principal: "admin".into(), credential: "admin-token".into(), admin: true, rate: None }
    }

    pub fn is_anonymous(&self) -> bool {
        self.credential == ANONYMOUS
    }

    /// The store's caller for a request naming `requested` as its tenant.
    /// A tenant the credential does not cover answers like something that
    /// does not exist: TaskNotFound when the request is about `task`, an
    /// unknown tenant otherwise.
    pub fn caller(&self, requested: Option<&str>, task: Option<&str>) -> Result<Caller, ApiError> {
        if let Some(t) = requested {
            validate::tenant(t)?;
        }
        let caller = match &self.tenant {
            None => Caller::new(requested.unwrap_or("default"), &self.principal),
            Some(own) if requested.is_none_or(|t| t == own) => Caller::new(own, &self.principal),
            Some(_) => {
                return Err(match task {
                    Some(task) => ApiError::TaskNotFound(task.to_owned()),
                    None => ApiError::invalid_field("tenant", "no such tenant"),
                });
            }
        };
        Ok(caller.with_credential(&self.credential))
    }

    /// An audit entry for something this principal did outside any tenant
    /// (the admin API).
    pub fn audit(&self, action: &str) -> AuditEntry {
        AuditEntry {
            tenant: self.tenant.clone(),
            credential: Some(self.credential.clone()),
            ..AuditEntry::new(&self.principal, action)
        }
    }
}

/// Checks credentials and rates.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    store: Store,
    jwks: Option<Jwks>,
    limits: RateLimits,
    /// Keys verified lately, for when their store cannot be asked.
    verified: VerifiedKeys,
}

/// How long a key verified by the store still admits its holder while the
/// store holding the keys cannot be reached. Every request asks the store
/// first: this changes nothing while it answers (a revoked key is refused
/// at once), and during an outage of the default store it keeps the
/// tenants of the other stores served — a key cannot be revoked then anyway.
const STALE_IF_UNREACHABLE: Duration = Duration::from_secs(15 * 60);

/// The most keys remembered (the oldest go first).
const VERIFIED_KEYS: usize = 10_000;

/// Keys the store verified, by a hash of the whole presented key (never
/// the key itself), with when.
#[derive(Debug, Default)]
struct VerifiedKeys(std::sync::Mutex<std::collections::HashMap<[u8; 32], (Instant, Principal)>>);

impl VerifiedKeys {
    fn digest(key: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes()).into()
    }

    fn remember(&self, key: &str, principal: &Principal) {
        let digest = Self::digest(key);
        let mut keys = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= VERIFIED_KEYS && !keys.contains_key(&digest) {
            let oldest = keys.iter().min_by_key(|(_, (at, _))| *at).map(|(digest, _)| *digest);
            if let Some(oldest) = oldest {
                keys.remove(&oldest);
            }
        }
        keys.insert(digest, (Instant::now(), principal.clone()));
    }

    fn recall(&self, key: &str) -> Option<Principal> {
        let keys = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, principal) = keys.get(&Self::digest(key))?;
        (at.elapsed() < STALE_IF_UNREACHABLE).then(|| principal.clone())
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&Self::digest(key));
    }
}

impl Authenticator {
    pub fn new(config: AuthConfig, store: Store) -> Self {
        let jwks = config.jwt.as_ref().and_then(|j| match &j.keys {
            JwtKeys::Secret(_) => None,
            JwtKeys::JwksFile(path) => Some(Jwks::new(JwksSource::File(path.clone()))),
            JwtKeys::JwksUrl(url) => Some(Jwks::new(JwksSource::Url(url.clone()))),
        });
        let limits = RateLimits::new(config.rate);
        Authenticator { config, store, jwks, limits, verified: VerifiedKeys::default() }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Who sent these headers. An invalid credential is refused even where
    /// anonymous calls are allowed: a caller who meant to be someone must
    /// learn that they are not.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if let Some(key) = header_text(headers, API_KEY_HEADER)? {
            return self.api_key(key).await;
        }
        if let Some(value) = header_text(headers, header::AUTHORIZATION.as_str())? {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| ApiError::Unauthenticated("only Bearer credentials are accepted".into()))?
                .trim();
            // A key sent as a bearer token is still a key.
            if PresentedKey::parse(token).is_some() {
                return self.api_key(token).await;
            }
            return self.jwt(token).await;
        }
        if self.config.anonymous {
            return Ok(Principal::anonymous());
        }
        Err(ApiError::Unauthenticated("credentials are required: an X-API-Key header or a Bearer token".into()))
    }

    /// Takes one request from the principal's budget; the wait until the
    /// next one would be admitted when it is spent. Anonymous callers, whom
    /// nothing tells apart, share one budget.
    pub fn admit(&self, principal: &Principal) -> Result<(), ApiError> {
        let tenant = principal.tenant.as_deref().unwrap_or("");
        self.limits
            .check(tenant, &principal.principal, principal.rate)
            .map_err(|wait| ApiError::RateLimited { retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) })
    }

    async fn api_key(&self, key: &str) -> Result<Principal, ApiError> {
        let invalid = || ApiError::Unauthenticated("the API key is not valid".into());
        let presented = PresentedKey::parse(key).ok_or_else(invalid)?;
        // Bounded like every store call of a request (a store that stops
        // answering would otherwise hold the caller until TCP gives up).
        let verified = tokio::time::timeout(crate::deadline::STORE_DEADLINE, self.store.key_verify(&presented)).await;
        let record = match verified {
            Ok(Ok(Some(record))) => record,
            Ok(Ok(None)) => {
                self.verified.forget(key);
                return Err(invalid());
            }
            Ok(Err(e)) if e.is_transient() => return self.recall(key, &e.to_string()).ok_or_else(|| e.into()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return self.recall(key, "no answer in time").ok_or(ApiError::Unavailable),
        };
        let principal = Principal {
            admin: record.scopes.contains(&self.config.admin_scope),
            rate: record.rate_per_sec.map(|per_sec| Rate {
                per_sec,
                burst: record.burst.and_then(|b| u32::try_from(b).ok()).unwrap_or_else(|| Rate::burst_for(per_sec)),
            }),
            tenant: Some(record.tenant),
            principal: record.principal,
            credential: format!("key:{}", record.id),
        };
        self.verified.remember(key, &principal);
        Ok(principal)
    }

    /// The holder of a key verified lately, while the keys' store cannot
    /// be reached (see [`STALE_IF_UNREACHABLE`]).
    fn recall(&self, key: &str, why: &str) -> Option<Principal> {
        let principal = self.verified.recall(key)?;
        tracing::warn!(why, credential = %principal.credential, "the keys' store is unreachable: a key it verified lately admits its holder");
        metrics::counter!("switchyard_auth_keys_recalled_total").increment(1);
        Some(principal)
    }

    async fn jwt(&self, token: &str) -> Result<Principal, ApiError> {
        let Some(config) = &self.config.jwt else {
            return Err(ApiError::Unauthenticated("bearer tokens are not accepted here; use an API key".into()));
        };
        let invalid = |why: &str| ApiError::Unauthenticated(format!("the bearer token is not valid: {why}"));
        // `alg: none` and unknown algorithms fail here, before any key is chosen.
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed or unsupported algorithm"))?;
        let (key, algorithm) = match &config.keys {
            JwtKeys::Secret(secret) => {
                (DecodingKey::from_secret(secret).map_err(|_| invalid("no usable secret"))?, Algorithm::HS256)
            }
            JwtKeys::JwksFile(_) | JwtKeys::JwksUrl(_) => {
                let jwks = self.jwks.as_ref().ok_or_else(|| invalid("no key set"))?;
                jwks.key(header.kid.as_deref()).await.map_err(|e| invalid(&e))?
            }
        };
        // The algorithm comes from our key, never from the token: a token
        // saying HS256 against an RSA public key (algorithm confusion) fails.
        if header.alg != algorithm {
            return Err(invalid("unexpected algorithm"));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.min(MAX_LEEWAY).as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if config.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&config.issuers);
            required.push("iss");
        }
        if config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                _ => "rejected",
            })
        })?;
        let claims = data.claims;
        let subject = claims.get("sub").and_then(Value::as_str).ok_or_else(|| invalid("sub must be a string"))?;
        if subject.is_empty() {
            return Err(invalid("sub is empty"));
        }
        validate::identifier(subject, "sub").map_err(|_| invalid("sub is not a valid principal"))?;
        let tenant = match claims.get(&config.tenant_claim) {
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(invalid("the tenant claim must be a string")),
            None => config.default_tenant.clone().ok_or_else(|| invalid("the token names no tenant"))?,
        };
        validate::tenant(&tenant).map_err(|_| invalid("the tenant claim is not a valid tenant"))?;
        let scopes: Vec<&str> = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or("token");
        Ok(Principal {
            admin: scopes.contains(&self.config.admin_scope.as_str()),
            rate: None,
            tenant: Some(tenant),
            principal: subject.to_owned(),
            credential: format!("jwt:{}", issuer.chars().take(128).collect::<String>()),
        })
    }
}

/// A header's value as text, bounded; `None` when absent.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(ApiError::Unauthenticated(format!("the {name} header is too long")));
    }
    let text = value.to_str().map_err(|_| ApiError::Unauthenticated(format!("the {name} header is not text")))?;
    Ok(Some(text.trim()))
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

#[derive(Debug, Clone)]
enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// A key set, cached, refreshed on age and on unknown key ids.
#[derive(Debug)]
struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    state: tokio::sync::Mutex<JwksState>,
}

#[derive(Debug, Default)]
struct JwksState {
    set: Arc<JwkSet>,
    fetched: Option<Instant>,
    tried: Option<Instant>,
    /// A file's modification time when it was read: a file changed since
    /// (a key added or removed) is read again on the next token.
    modified: Option<std::time::SystemTime>,
}

impl Jwks {
    fn new(source: JwksSource) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // The key server the operator named, not whatever a proxy
            // variable in the environment would route it through.
            .no_proxy()
            .build()
            .unwrap_or_default();
        Jwks { source, http, state: tokio::sync::Mutex::new(JwksState::default()) }
    }

    /// The verification key (and its one algorithm) for a token's `kid`.
    async fn key(&self, kid: Option<&str>) -> Result<(DecodingKey, Algorithm), String> {
        let mut state = self.state.lock().await;
        let modified = match &self.source {
            JwksSource::File(path) => tokio::fs::metadata(path).await.and_then(|m| m.modified()).ok(),
            JwksSource::Url(_) => None,
        };
        let changed = modified.is_some() && modified != state.modified;
        let stale = changed || state.fetched.is_none_or(|at| at.elapsed() >= JWKS_MAX_AGE);
        let known = find(&state.set, kid).is_some();
        // A file is cheap to read again; a key server is not ours to hammer.
        let min_refresh = match self.source {
            JwksSource::File(_) => Duration::from_secs(1),
            JwksSource::Url(_) => JWKS_MIN_REFRESH,
        };
        let may_retry = state.tried.is_none_or(|at| at.elapsed() >= min_refresh);
        if (stale || !known) && may_retry {
            state.tried = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    state.set = Arc::new(set);
                    state.fetched = Some(Instant::now());
                    state.modified = modified;
                }
                // The keys we had stay good until they are replaced.
                Err(error) => tracing::warn!(%error, "fetching the JWKS failed"),
            }
        }
        let jwk = find(&state.set, kid).ok_or("unknown key id")?;
        verification_key(jwk)
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let bytes = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path).await.map_err(|e| format!("{}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url}: HTTP {}", response.status()));
                }
                if response.content_length().is_some_and(|n| n > JWKS_MAX_BYTES as u64) {
                    return Err(format!("{url}: larger than {JWKS_MAX_BYTES} bytes"));
                }
                let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                if body.len() > JWKS_MAX_BYTES {
                    return Err(format!("{url}: larger than {JWKS_MAX_BYTES} bytes"));
                }
                body.to_vec()
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))
    }
}

/// The key a token names; a set of one key serves tokens without `kid`.
fn find<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// RSA keys verify RS256 and P-256 keys ES256; symmetric keys in a JWKS
/// are refused (a public key set must not hold secrets), as is a key whose
/// declared algorithm disagrees with its type.
fn verification_key(jwk: &Jwk) -> Result<(DecodingKey, Algorithm), String> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return Err("unsupported key type (RS256 and ES256 keys only)".into()),
    };
    match jwk.common.key_algorithm {
        None | Some(KeyAlgorithm::RS256) if algorithm == Algorithm::RS256 => {}
        None | Some(KeyAlgorithm::ES256) if algorithm == Algorithm::ES256 => {}
        _ => return Err("the key's declared algorithm does not match its type".into()),
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok((key, algorithm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verified_lately_are_recalled_by_the_whole_key_and_forgotten_when_refused() {
        let keys = VerifiedKeys::default();
        let ann = Principal { tenant: Some("acme".into()), ..Principal::anonymous() };
        keys.remember("sy_abc_secret1", &ann);
        assert_eq!(keys.recall("sy_abc_secret1"), Some(ann.clone()));
        // The same id with another secret is another key.
        assert_eq!(keys.recall("sy_abc_secret2"), None);
        keys.forget("sy_abc_secret1");
        assert_eq!(keys.recall("sy_abc_secret1"), None);
        // Bounded: the oldest goes first.
        for n in 0..=VERIFIED_KEYS {
            keys.remember(&format!("sy_k{n}_s"), &ann);
        }
        assert_eq!(keys.0.lock().expect("keys").len(), VERIFIED_KEYS);
        assert_eq!(keys.recall(&format!("sy_k{VERIFIED_KEYS}_s")), Some(ann));
    }

    #[test]
    fn a_credential_fixes_the_tenant_and_a_foreign_one_is_not_found() {
        let p = Principal {
            tenant: Some("acme".into()),
            principal: "ann".into(),
            credential: "key:x".into(),
            admin: false,
            rate: None,
        };
        let ann = Caller::new("acme", "ann").with_credential("key:x");
        assert_eq!(p.caller(None, None).expect("own"), ann);
        assert_eq!(p.caller(Some("acme"), None).expect("own"), ann);
        assert_eq!(p.caller(Some("other"), Some("t1")), Err(ApiError::TaskNotFound("t1".into())));
        assert!(matches!(p.caller(Some("other"), None), Err(ApiError::InvalidParams { .. })));
        assert!(matches!(p.caller(Some(" acme"), None), Err(ApiError::InvalidParams { .. })));
        let anonymous = Principal::anonymous();
        let anon = |t: &str| Caller::new(t, "anonymous").with_credential("anonymous");
        assert_eq!(anonymous.caller(Some("t2"), None).expect("any"), anon("t2"));
        assert_eq!(anonymous.caller(None, None).expect("any"), anon("default"));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3crex"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
    }
}
