//! API keys and the audit log, on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::access::{AuditEntry, KeyRecord, NewKey};

pub(in crate::store) async fn key_insert(
    pool: &PgPool,
    id: &str,
    secret_sha256: &[u8],
    new: &NewKey,
) -> Result<DateTime<Utc>, StoreError> {
    let row = sqlx::query!(
        r#"INSERT INTO api_keys (id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               RETURNING created_at"#,
        id,
        secret_sha256,
        new.tenant,
        new.principal,
        &new.scopes,
        new.rate_per_sec,
        new.burst,
    )
    .fetch_one(pool)
    .await?;
    Ok(row.created_at)
}

pub(in crate::store) async fn key_live(pool: &PgPool, id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT id, secret_sha256, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at
               FROM api_keys WHERE id = $1 AND revoked_at IS NULL"#,
        id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let key = KeyRecord {
            id: r.id,
            tenant: r.tenant,
            principal: r.principal,
            scopes: r.scopes,
            rate_per_sec: r.rate_per_sec,
            burst: r.burst,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        };
        (key, r.secret_sha256)
    }))
}

pub(in crate::store) async fn keys_list(pool: &PgPool) -> Result<Vec<KeyRecord>, StoreError> {
    Ok(sqlx::query_as!(
        KeyRecord,
        r#"SELECT id, tenant, principal, scopes, rate_per_sec, burst, created_at, revoked_at
               FROM api_keys ORDER BY created_at DESC, id"#
    )
    .fetch_all(pool)
    .await?)
}

pub(in crate::store) async fn key_revoke(pool: &PgPool, id: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query!("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id)
        .execute(pool)
        .await?
        .rows_affected())
}

pub(in crate::store) async fn audit_insert(pool: &PgPool, entry: &AuditEntry) -> Result<(), StoreError> {
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

pub(in crate::store) async fn audit_for_task(pool: &PgPool, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
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
