//! Webhook configurations, on PostgreSQL.

use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::store::push_config::PushConfig;

pub(in crate::store) async fn config_lock_task(
    tx: &mut PgTx,
    caller: &Caller,
    task_id: TaskId,
) -> Result<bool, StoreError> {
    let owned = sqlx::query_scalar!(
        "SELECT id FROM tasks WHERE id = $1 AND tenant = $2 AND owner = $3 FOR UPDATE",
        task_id.0,
        caller.tenant,
        caller.principal,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(owned.is_some())
}

pub(in crate::store) async fn configs_besides(tx: &mut PgTx, task_id: TaskId, id: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM push_configs WHERE task_id = $1 AND id <> $2"#,
        task_id.0,
        id,
    )
    .fetch_one(&mut **tx)
    .await?)
}

pub(in crate::store) async fn config_upsert(
    tx: &mut PgTx,
    task_id: TaskId,
    push: &PushConfig,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO push_configs (task_id, id, url, token, authentication, version) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (task_id, id) DO UPDATE
               SET url = EXCLUDED.url, token = EXCLUDED.token, authentication = EXCLUDED.authentication,
                   version = EXCLUDED.version"#,
        task_id.0,
        push.id,
        push.url,
        push.token,
        push.authentication,
        push.version,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(in crate::store) async fn config_get(
    pool: &PgPool,
    task_id: TaskId,
    id: &str,
) -> Result<Option<PushConfig>, StoreError> {
    let row = sqlx::query!(
        "SELECT url, token, authentication, version FROM push_configs WHERE task_id = $1 AND id = $2",
        task_id.0,
        id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| PushConfig {
        task_id,
        id: id.to_owned(),
        url: r.url,
        token: r.token,
        authentication: r.authentication,
        version: r.version,
    }))
}

pub(in crate::store) async fn config_list(
    pool: &PgPool,
    task_id: TaskId,
    limit: i64,
    after: Option<&str>,
) -> Result<Vec<PushConfig>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT id, url, token, authentication, version FROM push_configs
               WHERE task_id = $1 AND ($2::text IS NULL OR id > $2)
               ORDER BY id LIMIT $3"#,
        task_id.0,
        after,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PushConfig {
            task_id,
            id: r.id,
            url: r.url,
            token: r.token,
            authentication: r.authentication,
            version: r.version,
        })
        .collect())
}

pub(in crate::store) async fn config_delete(pool: &PgPool, task_id: TaskId, id: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query!("DELETE FROM push_configs WHERE task_id = $1 AND id = $2", task_id.0, id)
        .execute(pool)
        .await?
        .rows_affected())
}
