//! Webhook configurations: the push notification configs of a caller's
//! tasks (their deliveries go through the [`super::outbox`]).

use serde_json::Value;

use super::{Store, in_tx};
use crate::error::StoreError;
use crate::id::{Caller, TaskId};

/// Webhooks a task may have at most.
pub const MAX_PUSH_CONFIGS: i64 = 50;

/// A webhook registered for a task.
#[derive(Clone, PartialEq)]
pub struct PushConfig {
    pub task_id: TaskId,
    pub id: String,
    pub url: String,
    pub token: Option<String>,
    /// A2A `AuthenticationInfo` as JSON (`scheme`, `credentials`).
    pub authentication: Option<Value>,
    /// The protocol version it was created through ("1.0" or "0.3"): its
    /// deliveries take that version's payload shape.
    pub version: String,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token, the credentials and the URL's query are the receiver's
        // secrets: whether they are set, and where, is all a log may say.
        f.debug_struct("PushConfig")
            .field("task_id", &self.task_id)
            .field("id", &self.id)
            .field("url", &crate::egress::redacted(&self.url))
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("authentication", &self.authentication.as_ref().map(|_| "…"))
            .field("version", &self.version)
            .finish()
    }
}

super::seam::statements! {
    room push_config;
    /// Locks the caller's task's row; false when it is not theirs (or none).
    tx fn config_lock_task(caller: &Caller, task_id: TaskId) -> bool;
    /// How many webhooks the task has besides `id`.
    tx fn configs_besides(task_id: TaskId, id: &str) -> i64;
    /// Creates or replaces (same id) a webhook of the task.
    tx fn config_upsert(task_id: TaskId, push: &PushConfig) -> ();
    db fn config_get(task_id: TaskId, id: &str) -> Option<PushConfig>;
    /// In id order, after `after`.
    db fn config_list(task_id: TaskId, limit: i64, after: Option<&str>) -> Vec<PushConfig>;
    db fn config_delete(task_id: TaskId, id: &str) -> u64;
}

impl Store {
    /// Creates or replaces (same id) a webhook on a caller's task. The
    /// limit of [`MAX_PUSH_CONFIGS`] is checked under the task's row lock,
    /// so concurrent creates cannot pass it together.
    pub async fn push_config_put(&self, caller: &Caller, config: &PushConfig) -> Result<PushConfig, StoreError> {
        in_tx!(self, |tx| {
            if !tx.config_lock_task(caller, config.task_id).await? {
                return Err(StoreError::TaskNotFound(config.task_id));
            }
            if tx.configs_besides(config.task_id, &config.id).await? >= MAX_PUSH_CONFIGS {
                return Err(StoreError::TooManyPushConfigs { task: config.task_id, limit: MAX_PUSH_CONFIGS });
            }
            tx.config_upsert(config.task_id, config).await?;
            Ok(config.clone())
        })
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
        self.db.config_get(task_id, id).await
    }

    /// A task's webhooks, whoever's the task is: for operators (the
    /// console), never for callers.
    pub async fn push_configs_of(&self, task_id: TaskId, limit: i64) -> Result<Vec<PushConfig>, StoreError> {
        self.db.config_list(task_id, limit, None).await
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
        self.db.config_list(task_id, limit, after).await
    }

    /// Deletes a webhook; true when one was deleted.
    pub async fn push_config_delete(&self, caller: &Caller, task_id: TaskId, id: &str) -> Result<bool, StoreError> {
        self.task_get(caller, task_id).await?;
        Ok(self.db.config_delete(task_id, id).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_configs_debug_form_shows_no_secret() {
        let config = PushConfig {
            task_id: TaskId(uuid::Uuid::nil()),
            id: "hook".into(),
            url: "https://hooks.example/in?token=url-s3cret".into(),
            token: Some("token-s3cret".into()),
            authentication: Some(serde_json::json!({"scheme": "Bearer", "credentials": "auth-s3cret"})),
            version: "1.0".into(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("hooks.example/in"), "{shown}");
    }
}
