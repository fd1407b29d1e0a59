//! API keys and the audit log, on the embedded store.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Lite, at, json, parse_opt, us};
use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::access::{AuditEntry, KeyRecord, NewKey};

pub(in crate::store) async fn key_insert(
    lite: &Lite,
    id: &str,
    secret_sha256: &[u8],
    new: &NewKey,
) -> Result<DateTime<Utc>, StoreError> {
    let scopes = serde_json::to_string(&new.scopes)?;
    lite.write(async |c, now| {
        sqlx::query(
            "INSERT INTO api_keys (id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(secret_sha256)
        .bind(&new.tenant)
        .bind(&new.principal)
        .bind(&scopes)
        .bind(new.rate_per_sec)
        .bind(new.burst)
        .bind(us(now))
        .execute(c)
        .await?;
        Ok(now)
    })
    .await
}

pub(in crate::store) async fn key_live(lite: &Lite, id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at \
         FROM api_keys WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&lite.read)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some((key_record(&r)?, r.try_get("secret_sha256")?)))
}

pub(in crate::store) async fn keys_list(lite: &Lite) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at \
         FROM api_keys ORDER BY created_at DESC, id",
    )
    .fetch_all(&lite.read)
    .await?;
    rows.iter().map(key_record).collect()
}

pub(in crate::store) async fn key_revoke(lite: &Lite, id: &str) -> Result<u64, StoreError> {
    lite.write(async |c, now| {
        Ok(sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(us(now))
            .bind(id)
            .execute(c)
            .await?
            .rows_affected())
    })
    .await
}

pub(in crate::store) async fn audit_insert(lite: &Lite, entry: &AuditEntry) -> Result<(), StoreError> {
    lite.write(async |c, now| {
        sqlx::query(
            "INSERT INTO audit_log (at, tenant, principal, credential, action, task_id, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(us(now))
        .bind(&entry.tenant)
        .bind(&entry.principal)
        .bind(&entry.credential)
        .bind(&entry.action)
        .bind(entry.task_id.map(|t| t.0))
        .bind(entry.detail.as_ref().map(json))
        .execute(c)
        .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn audit_for_task(lite: &Lite, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, tenant, principal, credential, action, task_id, detail \
         FROM audit_log WHERE task_id = ? ORDER BY id",
    )
    .bind(task.0)
    .fetch_all(&lite.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at: Some(at(r.try_get("at")?)),
                tenant: r.try_get("tenant")?,
                principal: r.try_get("principal")?,
                credential: r.try_get("credential")?,
                action: r.try_get("action")?,
                task_id: r.try_get::<Option<uuid::Uuid>, _>("task_id")?.map(TaskId),
                detail: parse_opt(r.try_get("detail")?)?,
            })
        })
        .collect()
}

/// An `api_keys` row.
fn key_record(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        principal: r.try_get("principal")?,
        scopes: serde_json::from_str(&r.try_get::<String, _>("scopes")?)?,
        rate_per_sec: r.try_get("rate_per_sec")?,
        burst: r.try_get("burst")?,
        created_at: at(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(at),
    })
}
