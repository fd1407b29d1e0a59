//! Who may call: API keys (kept as hashes), and the audit log of what
//! callers and operators did.

use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Db, Store, lite};
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

impl Store {
    /// Creates a key; the returned string is the only copy of its secret.
    pub async fn key_create(&self, new: &NewKey) -> Result<(KeyRecord, String), StoreError> {
        let id = random_alnum(12);
        // 43 characters: more than 256 bits.
        let secret = random_alnum(43);
        let hash = Sha256::digest(secret.as_bytes()).to_vec();
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let now = lite::now();
                lite.write(async |c, _now| Ok(sqlx::query(
                    "INSERT INTO api_keys (id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(&hash)
                .bind(&new.tenant)
                .bind(&new.principal)
                .bind(serde_json::to_string(&new.scopes)?)
                .bind(new.rate_per_sec)
                .bind(new.burst)
                .bind(lite::us(now))
                .execute(c)
                .await?)).await?;
                return Ok((self.key_record(&id, new, now), format!("{KEY_PREFIX}{id}_{secret}")));
            }
        };
        let row = sqlx::query!(
            r#"INSERT INTO api_keys (id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               RETURNING created_at"#,
            id,
            hash,
            new.tenant,
            new.principal,
            &new.scopes,
            new.rate_per_sec,
            new.burst,
        )
        .fetch_one(pool)
        .await?;
        Ok((self.key_record(&id, new, row.created_at), format!("{KEY_PREFIX}{id}_{secret}")))
    }

    fn key_record(&self, id: &str, new: &NewKey, created_at: DateTime<Utc>) -> KeyRecord {
        KeyRecord {
            id: id.to_owned(),
            tenant: new.tenant.clone(),
            principal: new.principal.clone(),
            scopes: new.scopes.clone(),
            rate_per_sec: new.rate_per_sec,
            burst: new.burst,
            created_at,
            revoked_at: None,
        }
    }

    /// The live key this presented key names, if its secret matches. Read
    /// on every request, so a revoked key stops working at once.
    pub async fn key_verify(&self, presented: &PresentedKey<'_>) -> Result<Option<KeyRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let row = sqlx::query(
                    "SELECT id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at \
                     FROM api_keys WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(presented.id)
                .fetch_optional(&lite.read)
                .await?;
                let Some(r) = row else { return Ok(None) };
                let hash: Vec<u8> = r.try_get("secret_sha256")?;
                return if presented.matches(&hash) { key_lite(&r).map(Some) } else { Ok(None) };
            }
        };
        let row = sqlx::query!(
            r#"SELECT id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at
               FROM api_keys WHERE id = $1 AND revoked_at IS NULL"#,
            presented.id,
        )
        .fetch_optional(pool)
        .await?;
        Ok(row.filter(|r| presented.matches(&r.secret_sha256)).map(|r| KeyRecord {
            id: r.id,
            tenant: r.tenant,
            principal: r.principal,
            scopes: r.scopes,
            rate_per_sec: r.rate_per_sec,
            burst: r.burst,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }))
    }

    /// Every key, newest first (revoked ones too).
    pub async fn keys_list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let rows = sqlx::query(
                    "SELECT id, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at \
                     FROM api_keys ORDER BY created_at DESC, id",
                )
                .fetch_all(&lite.read)
                .await?;
                return rows.iter().map(key_lite).collect();
            }
        };
        Ok(sqlx::query_as!(
            KeyRecord,
            r#"SELECT id, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at
               FROM api_keys ORDER BY created_at DESC, id"#
        )
        .fetch_all(pool)
        .await?)
    }

    /// Revokes a key; false when no live key has that id.
    pub async fn key_revoke(&self, id: &str) -> Result<bool, StoreError> {
        let done = match &self.db {
            Db::Pg(pool) => {
                sqlx::query!("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Db::Lite(lite) => lite
                .write(async |c, now| {
                    Ok(sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                        .bind(lite::us(now))
                        .bind(id)
                        .execute(c)
                        .await?)
                })
                .await?
                .rows_affected(),
        };
        Ok(done == 1)
    }

    /// Records an entry: a log line, and a row in the audit log. Called
    /// once the action has happened, so a failure to write the row is
    /// logged, not returned: the action is not undone by it.
    pub async fn audit(&self, entry: &AuditEntry) {
        entry.log();
        if let Err(error) = self.audit_insert(entry).await {
            tracing::error!(%error, action = %entry.action, "could not write the audit log");
        }
    }

    async fn audit_insert(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                lite.write(async |c, now| {
                    Ok(sqlx::query(
                        "INSERT INTO audit_log (at, tenant, principal, credential, action, task_id, detail) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(lite::us(now))
                    .bind(&entry.tenant)
                    .bind(&entry.principal)
                    .bind(&entry.credential)
                    .bind(&entry.action)
                    .bind(entry.task_id.map(|t| t.0))
                    .bind(entry.detail.as_ref().map(lite::json))
                    .execute(c)
                    .await?)
                })
                .await?;
                return Ok(());
            }
        };
        sqlx::query!(
            r#"INSERT INTO audit_log (tenant, principal, credential, action, task_id, detail)
               VALUES ($1, $2, $3, $4, $5, $6)"#,
            entry.tenant,
            entry.principal,
            entry.credential,
            entry.action,
            entry.task_id.map(|t| t.0),
            entry.detail,
        )
        .execute(pool)
        .await?;
        Ok(())
    }

    /// A task's audit entries, oldest first.
    pub async fn audit_for_task(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let rows = sqlx::query(
                    "SELECT at, tenant, principal, credential, action, task_id, detail \
                     FROM audit_log WHERE task_id = ? ORDER BY id",
                )
                .bind(task.0)
                .fetch_all(&lite.read)
                .await?;
                return rows
                    .iter()
                    .map(|r| {
                        Ok(AuditEntry {
                            at: Some(lite::at(r.try_get("at")?)),
                            tenant: r.try_get("tenant")?,
                            principal: r.try_get("principal")?,
                            credential: r.try_get("credential")?,
                            action: r.try_get("action")?,
                            task_id: r.try_get::<Option<uuid::Uuid>, _>("task_id")?.map(TaskId),
                            detail: lite::parse_opt(r.try_get("detail")?)?,
                        })
                    })
                    .collect();
            }
        };
        let rows = sqlx::query!(
            r#"SELECT at, tenant, principal, credential, action, task_id, detail
               FROM audit_log WHERE task_id = $1 ORDER BY id"#,
            task.0,
        )
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at: Some(r.at),
                tenant: r.tenant,
                principal: r.principal,
                credential: r.credential,
                action: r.action,
                task_id: r.task_id.map(TaskId),
                detail: r.detail,
            })
            .collect())
    }
}

/// An `api_keys` row on the embedded store.
fn key_lite(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        principal: r.try_get("principal")?,
        scopes: serde_json::from_str(&r.try_get::<String, _>("scopes")?)?,
        rate_per_sec: r.try_get("rate_per_sec")?,
        burst: r.try_get("burst")?,
        created_at: lite::at(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(lite::at),
    })
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
