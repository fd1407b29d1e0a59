//! Who may call: API keys (kept as hashes), and the audit log of what
//! callers and operators did.

use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Store;
use crate::error::StoreError;
use crate::id::{Caller, TaskId};

/// Prefix of every key, so leaked keys are recognisable to secret scanners.
const KEY_PREFIX: &str = "sy_";

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The public half: names the key in listings and the audit log.
    pub id: String,
    pub tenant: String,
    pub principal: String,
    pub scopes: Vec<String>,
    /// Requests per second this key may make; `None` takes the default.
    pub rate_per_sec: Option<f64>,
    pub burst: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub tenant: String,
    pub principal: String,
    pub scopes: Vec<String>,
    pub rate_per_sec: Option<f64>,
    pub burst: Option<i32>,
}

/// A key as presented: `sy_<id>_<secret>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub id: &'a str,
    secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// Splits a presented key; `None` when it is not in the key format.
    pub fn parse(key: &'a str) -> Option<Self> {
        let rest = key.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let plain = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        (plain(id) && plain(secret)).then_some(PresentedKey { id, secret })
    }

    /// Whether this key's secret is the one whose hash is stored, compared
    /// in time independent of where they differ.
    pub fn matches(&self, stored_sha256: &[u8]) -> bool {
        Sha256::digest(self.secret.as_bytes()).as_slice().ct_eq(stored_sha256).into()
    }
}

/// Random letters and digits: `len` of them carry `len * 5.95` bits.
fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// One audit entry: who (tenant, principal, and the credential's public
/// name), did what, to which task.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Option<DateTime<Utc>>,
    pub tenant: Option<String>,
    pub principal: String,
    pub credential: Option<String>,
    pub action: String,
    pub task_id: Option<TaskId>,
    pub detail: Option<Value>,
}

impl AuditEntry {
    /// An entry to record now.
    pub fn new(principal: impl Into<String>, action: impl Into<String>) -> Self {
        AuditEntry {
            at: None,
            tenant: None,
            principal: principal.into(),
            credential: None,
            action: action.into(),
            task_id: None,
            detail: None,
        }
    }

    /// An entry about something a caller did to a task.
    pub fn for_task(caller: &Caller, action: impl Into<String>, task: TaskId) -> Self {
        AuditEntry {
            tenant: Some(caller.tenant.clone()),
            credential: caller.credential.clone(),
            task_id: Some(task),
            ..AuditEntry::new(&caller.principal, action)
        }
    }

    /// The same entry, with details.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Writes the entry as a structured `switchyard::audit` log line.
    pub fn log(&self) {
        tracing::info!(
            target: "switchyard::audit",
            action = %self.action,
            tenant = self.tenant.as_deref().unwrap_or("-"),
            principal = %self.principal,
            credential = self.credential.as_deref().unwrap_or("-"),
            task = self.task_id.map(|t| t.to_string()).unwrap_or_default(),
            detail = self.detail.as_ref().map(ToString::to_string).unwrap_or_default(),
        );
    }
}

super::seam::statements! {
    room access;
    /// Stores a new key (its secret as a hash); returns when it was made.
    db fn key_insert(id: &str, secret_sha256: &[u8], new: &NewKey) -> DateTime<Utc>;
    /// The key of this id, unless revoked, with its secret's hash.
    db fn key_live(id: &str) -> Option<(KeyRecord, Vec<u8>)>;
    /// Every key, newest first.
    db fn keys_list() -> Vec<KeyRecord>;
    /// Revokes a live key; how many were.
    db fn key_revoke(id: &str) -> u64;
    db fn audit_insert(entry: &AuditEntry) -> ();
    /// A task's entries, oldest first.
    db fn audit_for_task(task: TaskId) -> Vec<AuditEntry>;
}

impl Store {
    /// Creates a key; the returned string is the only copy of its secret.
    pub async fn key_create(&self, new: &NewKey) -> Result<(KeyRecord, String), StoreError> {
        let id = random_alnum(12);
        // 43 characters: more than 256 bits.
        let secret = random_alnum(43);
        let hash = Sha256::digest(secret.as_bytes()).to_vec();
        let created_at = self.db.key_insert(&id, &hash, new).await?;
        let record = KeyRecord {
            id: id.clone(),
            tenant: new.tenant.clone(),
            principal: new.principal.clone(),
            scopes: new.scopes.clone(),
            rate_per_sec: new.rate_per_sec,
            burst: new.burst,
            created_at,
            revoked_at: None,
        };
        Ok((record, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// The live key this presented key names, if its secret matches. Read
    /// on every request, so a revoked key stops working at once.
    pub async fn key_verify(&self, presented: &PresentedKey<'_>) -> Result<Option<KeyRecord>, StoreError> {
        let live = self.db.key_live(presented.id).await?;
        Ok(live.filter(|(_, hash)| presented.matches(hash)).map(|(key, _)| key))
    }

    /// Every key, newest first (revoked ones too).
    pub async fn keys_list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.db.keys_list().await
    }

    /// Revokes a key; false when no live key has that id.
    pub async fn key_revoke(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.db.key_revoke(id).await? == 1)
    }

    /// Records an entry: a log line, and a row in the audit log. Called
    /// once the action has happened, so a failure to write the row is
    /// logged, not returned: the action is not undone by it.
    pub async fn audit(&self, entry: &AuditEntry) {
        entry.log();
        if let Err(error) = self.db.audit_insert(entry).await {
            tracing::error!(%error, action = %entry.action, "could not write the audit log");
        }
    }

    /// A task's audit entries, oldest first.
    pub async fn audit_for_task(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
        self.db.audit_for_task(task).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_parsed_and_checked_against_its_hash() {
        let stored = Sha256::digest(b"s3cret").to_vec();
        let key = PresentedKey::parse("sy_abc123_s3cret").expect("key format");
        assert_eq!(key.id, "abc123");
        assert!(key.matches(&stored));
        assert!(!PresentedKey::parse("sy_abc123_s3creT").expect("key format").matches(&stored));
        for bad in ["", "sy_", "sy_abc", "sy__x", "sy_a_", "xx_a_b", "sy_a-b_c", "sy_a_b\r\n"] {
            assert_eq!(PresentedKey::parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever arrives in the header: no panic, and only the key
        /// format parses.
        #[test]
        fn any_presented_text_parses_or_is_refused_without_panicking(text in "\\PC{0,200}") {
            if let Some(key) = PresentedKey::parse(&text) {
                proptest::prop_assert!(text.starts_with("sy_"));
                proptest::prop_assert!(key.id.bytes().all(|b| b.is_ascii_alphanumeric()));
                let _ = key.matches(&[0u8; 32]);
            }
        }
    }

    #[test]
    fn generated_secrets_are_long_and_plain() {
        let a = random_alnum(43);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, random_alnum(43));
    }
}
