//! The store's one error type.

use crate::event::UndecodableEvent;
use crate::id::{JobId, TaskId};
use crate::state::{TaskState, UnknownState};
use crate::task::FoldError;

/// Everything a store operation can report. Database text stays inside
/// `Database`; callers map variants to protocol errors and never show it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    #[error("task {task}: {source}")]
    Rejected {
        task: TaskId,
        #[source]
        source: FoldError,
    },
    #[error("task {task} belongs to context {actual}, not {given}")]
    ContextMismatch { task: TaskId, actual: String, given: String },
    #[error("task {task} is {state}; it takes new messages only while it waits for input")]
    NotInterrupted { task: TaskId, state: TaskState },
    /// The fencing check failed: the job is no longer leased under this
    /// token (it expired and was re-claimed, or was released). The caller
    /// must stop working on it; nothing it tried to write was written.
    #[error("lease on job {0} was lost")]
    LeaseLost(JobId),
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("job {job} is {state}; only dead jobs can be requeued")]
    JobNotDead { job: JobId, state: String },
    #[error("task {task} has {limit} webhooks already; that is the most a task takes")]
    TooManyPushConfigs { task: TaskId, limit: i64 },
    #[error("delivery {0} is not dead-lettered (or does not exist)")]
    DeliveryNotDead(i64),
    #[error("invalid schema name {0:?}: use lower-case letters, digits and underscores")]
    InvalidSchema(String),
    #[error("stored data does not decode: {0}")]
    Corrupt(String),
    /// The database could not be reached at all: where, and why.
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable { host: String, port: u16, reason: String },
    /// The embedded store cannot be opened (its file is another process's,
    /// its directory cannot be written): why, in words for an operator.
    #[error("{0}")]
    Unavailable(String),
    /// A write shared with other callers' (a batch of new tasks) failed as
    /// a whole: nothing of it was written; `transient` when the cause was.
    #[error("{reason}")]
    Batch { reason: String, transient: bool },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying again later may succeed (a lost connection, a pool
    /// timeout, a serialization failure), as opposed to a verdict.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(db) => {
                    // 40001 serialization_failure, 40P01 deadlock_detected,
                    // class 08 connection exceptions, 57P01 admin_shutdown;
                    // the session limits: 57014 statement timeout, 55P03
                    // lock timeout, 25P03 idle-in-transaction timeout.
                    // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (and their
                    // extended codes, which share the low byte).
                    db.code().is_some_and(|c| {
                        matches!(c.as_ref(), "40001" | "40P01" | "57P01" | "57014" | "55P03" | "25P03")
                            || c.starts_with("08")
                            || sqlite_busy(&c)
                    })
                }
                _ => false,
            },
            StoreError::Batch { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether PostgreSQL refused a value for its characters (a NUL in
    /// text, 22021; one the encoding cannot hold, 22P05): bad input, which
    /// no retry fixes.
    pub fn is_unstorable_input(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|c| matches!(c.as_ref(), "22021" | "22P05"))
            }
            _ => false,
        }
    }

    /// Whether PostgreSQL knew no such schema, table or column (3F000,
    /// 42P01, 42703): on a read replica, a schema behind the primary's.
    pub fn is_schema_missing(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|c| matches!(c.as_ref(), "3F000" | "42P01" | "42703"))
            }
            _ => false,
        }
    }

    /// The state a refused change found the task in, when that is the reason.
    pub fn terminal_state(&self) -> Option<TaskState> {
        match self {
            StoreError::Rejected { source: FoldError::Terminal(state), .. } => Some(*state),
            _ => None,
        }
    }
}

fn sqlite_busy(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

impl From<UndecodableEvent> for StoreError {
    fn from(e: UndecodableEvent) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<UnknownState> for StoreError {
    fn from(e: UnknownState) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
