//! What the console reads and changes that no A2A operation does: every
//! tenant's tasks under an operator's filters, the overview's counts, each
//! agent's load, and discarding dead letters.
//!
//! Task ids are UUIDv7, so "newest first" is the primary key read
//! backwards, and "created since" and "id starts with" are ranges of it:
//! the list needs no index of its own, and costs the hot path nothing.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::row::TaskRow;
use super::{Store, client_read};
use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::state::TaskState;
use crate::task::TaskRecord;

/// The console's task filters; they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleFilter {
    pub state: Option<TaskState>,
    pub tenant: Option<String>,
    /// Tasks delegated (or to be delegated) to this agent.
    pub agent: Option<String>,
    /// Tasks running this plan (the top of the tree, not its children).
    pub plan: Option<String>,
    pub context_id: Option<String>,
    /// Ids within this inclusive range: an id prefix, tasks created since
    /// an instant, or both (see [`id_range`]).
    pub ids: Option<(Uuid, Uuid)>,
}

/// One row of the console's task list.
#[derive(Debug, Clone)]
pub struct ConsoleTask {
    pub task: TaskRecord,
    /// The agent it was delegated to, if it was.
    pub agent: Option<String>,
    /// The plan it runs, if it runs one.
    pub plan: Option<String>,
}

/// How many tasks there are, by what an operator groups them by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_state: Vec<(String, i64)>,
    pub by_tenant: Vec<(String, i64)>,
    /// Delegated tasks by agent.
    pub by_agent: Vec<(String, i64)>,
    /// Webhook deliveries that ran out of attempts.
    pub dead_deliveries: i64,
}

/// Tasks that ended in one minute of the last hour, and how long they took.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteStat {
    pub minute: DateTime<Utc>,
    pub ended: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What an agent is doing and how it did in the last hour (counted from
/// open tasks and the last hour's endings only, never the whole history).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLoad {
    pub agent: String,
    /// Delegated tasks still open.
    pub in_flight: i64,
    pub completed: i64,
    /// Failed or rejected.
    pub failed: i64,
    /// Mean duration of the tasks that ended, in milliseconds.
    pub mean_ms: Option<f64>,
}

super::seam::statements! {
    room console;
    /// At most `limit` tasks matching `filter`, newest first, created
    /// before `before` (a task id).
    db fn console_tasks(filter: &ConsoleFilter, before: Option<TaskId>, limit: i64) -> Vec<TaskRow>;
    /// The agent and the plan of each of these tasks that has one.
    db fn console_labels(ids: &[Uuid]) -> Vec<(Uuid, Option<String>, Option<String>)>;
    db fn console_counts() -> Counts;
    /// Tasks that ended in the last hour, by minute, by the database's clock.
    db fn console_minutes() -> Vec<MinuteStat>;
    db fn console_agents() -> Vec<AgentLoad>;
    /// Deletes a dead job; false when it is not dead (or gone).
    db fn console_job_discard(job: JobId) -> bool;
    /// Deletes a dead delivery; false when it is not dead (or gone).
    db fn console_delivery_discard(delivery: i64) -> bool;
}

impl Store {
    /// A page of at most `limit` tasks of every tenant matching `filter`,
    /// newest first, created before `before`; each with its agent and plan.
    pub async fn console_tasks(
        &self,
        filter: &ConsoleFilter,
        before: Option<TaskId>,
        limit: i64,
    ) -> Result<Vec<ConsoleTask>, StoreError> {
        let (rows, labels) = client_read!(self, |db| async {
            let rows = db.console_tasks(filter, before, limit).await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            Ok((rows, db.console_labels(&ids).await?))
        }
        .await)?;
        let mut labels: std::collections::HashMap<Uuid, (Option<String>, Option<String>)> =
            labels.into_iter().map(|(id, agent, plan)| (id, (agent, plan))).collect();
        rows.into_iter()
            .map(|row| {
                let (agent, plan) = labels.remove(&row.id).unwrap_or_default();
                Ok(ConsoleTask { task: TaskRecord::try_from(row)?, agent, plan })
            })
            .collect()
    }

    /// The agent a task was (or is to be) delegated to, and the plan it
    /// runs: what its delegation row says, else what its delegate job was
    /// given (a task whose agent was never reached has no delegation).
    pub async fn console_label(&self, task: TaskId) -> Result<(Option<String>, Option<String>), StoreError> {
        let labels = client_read!(self, |db| db.console_labels(&[task.0]).await)?;
        Ok(labels.into_iter().next().map(|(_, agent, plan)| (agent, plan)).unwrap_or_default())
    }

    /// Tasks by state, tenant and agent.
    pub async fn console_counts(&self) -> Result<Counts, StoreError> {
        client_read!(self, |db| db.console_counts().await)
    }

    /// The last hour's endings, by minute (minutes without any are left out).
    pub async fn console_minutes(&self) -> Result<Vec<MinuteStat>, StoreError> {
        client_read!(self, |db| db.console_minutes().await)
    }

    /// Every agent with a delegated task open or ended in the last hour, with its load.
    pub async fn console_agents(&self) -> Result<Vec<AgentLoad>, StoreError> {
        client_read!(self, |db| db.console_agents().await)
    }

    /// Deletes a dead job (a dead letter an operator gave up on).
    pub async fn job_discard(&self, job: JobId) -> Result<bool, StoreError> {
        self.db.console_job_discard(job).await
    }

    /// Deletes a dead webhook delivery.
    pub async fn delivery_discard(&self, delivery: i64) -> Result<bool, StoreError> {
        self.db.console_delivery_discard(delivery).await
    }
}

/// The ids a filter may cover: those starting with `prefix` (hex digits,
/// dashes ignored) and created at or after `since`. `None` when neither is
/// given; an empty range (`lo > hi`) when they cannot meet.
pub fn id_range(prefix: Option<&str>, since: Option<DateTime<Utc>>) -> Result<Option<(Uuid, Uuid)>, String> {
    let mut range: Option<(u128, u128)> = None;
    if let Some(prefix) = prefix {
        let digits: String = prefix.chars().filter(|c| *c != '-').collect();
        if digits.is_empty() || digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{prefix:?} is not the start of a task id (hex digits and dashes)"));
        }
        let shift = 4 * (32 - digits.len() as u32);
        let value = u128::from_str_radix(&digits, 16).map_err(|e| e.to_string())?;
        let lo = value.checked_shl(shift).unwrap_or(0);
        let hi = lo | if shift == 128 { u128::MAX } else { (1u128 << shift) - 1 };
        range = Some((lo, hi));
    }
    if let Some(since) = since {
        // A UUIDv7 starts with its creation time in milliseconds (48 bits).
        let millis = u128::try_from(since.timestamp_millis().max(0)).unwrap_or(0);
        let lo = millis << 80;
        range = Some(match range {
            Some((a, b)) => (a.max(lo), b),
            None => (lo, u128::MAX),
        });
    }
    Ok(range.map(|(lo, hi)| (Uuid::from_u128(lo), Uuid::from_u128(hi))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_covers_exactly_the_ids_that_start_with_it() {
        let (lo, hi) = id_range(Some("0193ab"), None).expect("valid").expect("range");
        assert_eq!(lo.to_string(), "0193ab00-0000-0000-0000-000000000000");
        assert_eq!(hi.to_string(), "0193abff-ffff-ffff-ffff-ffffffffffff");
        let (lo, hi) = id_range(Some("0193ab12-3"), None).expect("valid").expect("range");
        assert_eq!(lo.to_string(), "0193ab12-3000-0000-0000-000000000000");
        assert_eq!(hi.to_string(), "0193ab12-3fff-ffff-ffff-ffffffffffff");
        let whole = "0193ab12-3456-7890-abcd-ef0123456789";
        let (lo, hi) = id_range(Some(whole), None).expect("valid").expect("range");
        assert_eq!((lo.to_string(), hi.to_string()), (whole.to_owned(), whole.to_owned()));
        assert!(id_range(Some("xyz"), None).is_err());
        assert!(id_range(Some(""), None).is_err());
        assert_eq!(id_range(None, None), Ok(None));
    }

    #[test]
    fn since_is_the_ids_created_from_then_on() {
        let since = DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z").expect("time").with_timezone(&Utc);
        let (lo, hi) = id_range(None, Some(since)).expect("valid").expect("range");
        let before = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_796_544_000 - 1, 0));
        let after = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_796_544_000 + 1, 0));
        assert_eq!(since.timestamp(), 1_796_544_000);
        assert!(before < lo && lo <= after && after <= hi);
        // With a prefix from before that instant the two cannot meet.
        let (lo, hi) = id_range(Some("00"), Some(since)).expect("valid").expect("range");
        assert!(lo > hi);
    }
}
