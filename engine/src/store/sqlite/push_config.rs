//! Webhook configurations, on the embedded store.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Lite, LiteTx, json, parse_opt, us};
use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::store::push_config::PushConfig;

/// The one writer holds every row already: this only looks.
pub(in crate::store) async fn config_lock_task(
    tx: &mut LiteTx,
    caller: &Caller,
    task_id: TaskId,
) -> Result<bool, StoreError> {
    let owned: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM tasks WHERE id = ? AND tenant = ? AND owner = ?")
            .bind(task_id.0)
            .bind(&caller.tenant)
            .bind(&caller.principal)
            .fetch_optional(tx.conn())
            .await?;
    Ok(owned.is_some())
}

pub(in crate::store) async fn configs_besides(tx: &mut LiteTx, task_id: TaskId, id: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM push_configs WHERE task_id = ? AND id <> ?")
        .bind(task_id.0)
        .bind(id)
        .fetch_one(tx.conn())
        .await?)
}

pub(in crate::store) async fn config_upsert(
    tx: &mut LiteTx,
    task_id: TaskId,
    push: &PushConfig,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO push_configs (task_id, id, url, token, authentication, version, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (task_id, id) DO UPDATE SET url = excluded.url, token = excluded.token, \
             authentication = excluded.authentication, version = excluded.version",
    )
    .bind(task_id.0)
    .bind(&push.id)
    .bind(&push.url)
    .bind(&push.token)
    .bind(push.authentication.as_ref().map(json))
    .bind(&push.version)
    .bind(us(tx.now))
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub(in crate::store) async fn config_get(
    lite: &Lite,
    task_id: TaskId,
    id: &str,
) -> Result<Option<PushConfig>, StoreError> {
    let row = sqlx::query(
        "SELECT task_id, id, url, token, authentication, version FROM push_configs WHERE task_id = ? AND id = ?",
    )
    .bind(task_id.0)
    .bind(id)
    .fetch_optional(&lite.read)
    .await?;
    row.as_ref().map(push_config).transpose()
}

pub(in crate::store) async fn config_list(
    lite: &Lite,
    task_id: TaskId,
    limit: i64,
    after: Option<&str>,
) -> Result<Vec<PushConfig>, StoreError> {
    let rows = sqlx::query(
        "SELECT task_id, id, url, token, authentication, version FROM push_configs \
         WHERE task_id = ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
    )
    .bind(task_id.0)
    .bind(after)
    .bind(after)
    .bind(limit)
    .fetch_all(&lite.read)
    .await?;
    rows.iter().map(push_config).collect()
}

pub(in crate::store) async fn config_delete(lite: &Lite, task_id: TaskId, id: &str) -> Result<u64, StoreError> {
    lite.write(async |c, _now| {
        Ok(sqlx::query("DELETE FROM push_configs WHERE task_id = ? AND id = ?")
            .bind(task_id.0)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected())
    })
    .await
}

/// A `push_configs` row (with `task_id`).
pub(super) fn push_config(r: &SqliteRow) -> Result<PushConfig, StoreError> {
    Ok(PushConfig {
        task_id: TaskId(r.try_get("task_id")?),
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        token: r.try_get("token")?,
        authentication: parse_opt(r.try_get("authentication")?)?,
        version: r.try_get("version")?,
    })
}
