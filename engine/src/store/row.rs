//! Row shapes as SQL returns them, and their conversion to domain types.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::ArtifactUpdate;
use crate::id::TaskId;
use crate::task::{TaskRecord, fold_artifacts};

/// A [`TaskRow`] from any query record that selects the task's columns
/// under their own names (`query!` records are anonymous types).
/// Moves only those fields out, so the record's others stay usable.
macro_rules! task_row {
    ($r:ident) => {
        $crate::store::row::TaskRow {
            id: $r.id,
            tenant: $r.tenant,
            owner: $r.owner,
            context_id: $r.context_id,
            parent_id: $r.parent_id,
            state: $r.state,
            status: $r.status,
            artifacts: $r.artifacts,
            artifact_ids: $r.artifact_ids,
            metadata: $r.metadata,
            trace_context: $r.trace_context,
            version: $r.version,
            created_at: $r.created_at,
            status_at: $r.status_at,
        }
    };
}
pub(super) use task_row;

/// A caller's idempotency key, claimed for a new task.
pub(super) struct KeyClaim {
    pub tenant: String,
    pub owner: String,
    pub key: String,
    pub task_id: TaskId,
}

impl KeyClaim {
    pub(super) fn of(caller: &crate::id::Caller, key: &str, task_id: TaskId) -> KeyClaim {
        KeyClaim { tenant: caller.tenant.clone(), owner: caller.principal.clone(), key: key.to_owned(), task_id }
    }
}

/// A new task's rows, ready to write: the task, its snapshot, its first
/// log rows and its first job. A task is born with no artifacts.
pub(super) struct NewTaskRows {
    pub task: TaskRecord,
    pub snapshot: Snapshot,
    pub metadata: Option<Value>,
    pub rows: EventRows,
    pub job: Option<crate::store::job::NewJob>,
}

/// Events as the columns of `task_events` rows, numbered from `first_seq`,
/// for one `INSERT … SELECT FROM UNNEST(…)`.
pub(super) struct EventRows {
    pub seqs: Vec<i64>,
    pub kinds: Vec<String>,
    pub payloads: Vec<Value>,
}

impl EventRows {
    pub(super) fn of(first_seq: i64, events: &[crate::event::TaskEvent]) -> Self {
        EventRows {
            seqs: (first_seq..).take(events.len()).collect(),
            kinds: events.iter().map(|e| e.kind().as_str().to_owned()).collect(),
            payloads: events.iter().map(crate::event::TaskEvent::to_payload).collect(),
        }
    }
}

/// A `tasks` row.
#[derive(Debug)]
pub(super) struct TaskRow {
    pub id: Uuid,
    pub tenant: String,
    pub owner: String,
    pub context_id: String,
    pub parent_id: Option<Uuid>,
    pub state: String,
    pub status: Value,
    /// The task's artifact events in log order (a JSON array), when the
    /// query read them; `None` from queries that do not need them.
    pub artifacts: Option<Value>,
    pub artifact_ids: Vec<String>,
    pub metadata: Option<Value>,
    pub trace_context: Option<Value>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub status_at: DateTime<Utc>,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Self, StoreError> {
        Ok(TaskRecord {
            id: TaskId(row.id),
            tenant: row.tenant,
            owner: row.owner,
            context_id: row.context_id,
            parent_id: row.parent_id.map(TaskId),
            state: row.state.parse()?,
            status: serde_json::from_value(row.status)?,
            artifacts: match row.artifacts {
                Some(events) => fold_artifacts(&serde_json::from_value::<Vec<ArtifactUpdate>>(events)?)
                    .map_err(|e| StoreError::Corrupt(format!("task {}: {e}", row.id)))?,
                None => Vec::new(),
            },
            artifact_ids: row.artifact_ids,
            metadata: row.metadata.map(serde_json::from_value).transpose()?,
            trace_context: row.trace_context,
            version: row.version,
            created_at: row.created_at,
            status_at: row.status_at,
        })
    }
}

/// The snapshot columns written after a fold.
pub(super) struct Snapshot {
    pub state: &'static str,
    pub status: Value,
    pub artifact_ids: Vec<String>,
}

impl Snapshot {
    pub(super) fn of(task: &TaskRecord) -> Result<Self, StoreError> {
        Ok(Snapshot {
            state: task.state.as_str(),
            status: serde_json::to_value(&task.status)?,
            artifact_ids: task.artifact_ids.clone(),
        })
    }
}
