//! Push-notification (webhook) configurations of a caller's tasks.

use serde_json::Value;

use super::Store;
use crate::error::StoreError;
use crate::id::{Caller, TaskId};

/// A webhook registered for a task.
#[derive(Debug, Clone, PartialEq)]
pub struct PushConfig {
    pub task_id: TaskId,
    pub id: String,
    pub url: String,
    pub token: Option<String>,
    /// A2A `AuthenticationInfo` as JSON (`scheme`, `credentials`).
    pub authentication: Option<Value>,
}

impl Store {
    /// Creates or replaces (same id) a webhook on a caller's task.
    pub async fn push_config_put(&self, caller: &Caller, config: &PushConfig) -> Result<PushConfig, StoreError> {
        self.task_get(caller, config.task_id).await?;
        upsert_push_config(&self.pool, config.task_id, config).await?;
        Ok(config.clone())
    }

    /// One webhook of a caller's task; `None` when the task is visible but
    /// has no such config.
    pub async fn push_config_get(
        &self,
        caller: &Caller,
        task_id: TaskId,
        id: &str,
    ) -> Result<Option<PushConfig>, StoreError> {
        self.task_get(caller, task_id).await?;
        let row = sqlx::query!(
            "SELECT url, token, authentication FROM push_configs WHERE task_id = $1 AND id = $2",
            task_id.0,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| PushConfig {
            task_id,
            id: id.to_owned(),
            url: r.url,
            token: r.token,
            authentication: r.authentication,
        }))
    }

    /// A page of a caller's task's webhooks in id order, starting after `after`.
    pub async fn push_config_list(
        &self,
        caller: &Caller,
        task_id: TaskId,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<PushConfig>, StoreError> {
        self.task_get(caller, task_id).await?;
        let rows = sqlx::query!(
            r#"SELECT id, url, token, authentication FROM push_configs
               WHERE task_id = $1 AND ($2::text IS NULL OR id > $2)
               ORDER BY id LIMIT $3"#,
            task_id.0,
            after,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PushConfig { task_id, id: r.id, url: r.url, token: r.token, authentication: r.authentication })
            .collect())
    }

    /// Deletes a webhook; true when one was deleted.
    pub async fn push_config_delete(&self, caller: &Caller, task_id: TaskId, id: &str) -> Result<bool, StoreError> {
        self.task_get(caller, task_id).await?;
        let deleted = sqlx::query!("DELETE FROM push_configs WHERE task_id = $1 AND id = $2", task_id.0, id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}

/// Creates or replaces (same id) a webhook of `task_id`; the caller has
/// checked the task is theirs, or is creating it.
pub(super) async fn upsert_push_config<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    task_id: TaskId,
    push: &PushConfig,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO push_configs (task_id, id, url, token, authentication) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (task_id, id) DO UPDATE
               SET url = EXCLUDED.url, token = EXCLUDED.token, authentication = EXCLUDED.authentication"#,
        task_id.0,
        push.id,
        push.url,
        push.token,
        push.authentication,
    )
    .execute(executor)
    .await?;
    Ok(())
}
