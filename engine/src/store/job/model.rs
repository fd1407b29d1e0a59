//! What a job is: its kinds, its lifecycle, the lease that proves who
//! holds it, and the records operators see.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::store::DelegationStart;

/// What a job does. Stored by name in `jobs.kind`; a name this build does
/// not know (written by a newer version during a rolling upgrade) stays a
/// string on the claimed job, see [`ClaimedJob::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Carry a task to its remote agent and fold back what it says.
    Delegate,
    /// Cancel the remote task of a task that ended here.
    CancelRemote,
    /// Fire at a task's deadline.
    Deadline,
    /// End a child task whose parent no longer needs it (the parent ended,
    /// or the join was decided without it).
    CancelChild,
    /// Deliver one webhook's outbox, in log order.
    Push,
}

impl JobKind {
    /// Every kind this build runs.
    pub const ALL: [JobKind; 5] =
        [JobKind::Delegate, JobKind::CancelRemote, JobKind::Deadline, JobKind::CancelChild, JobKind::Push];

    /// The name stored in `jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Delegate => "delegate",
            JobKind::CancelRemote => "cancel_remote",
            JobKind::Deadline => "deadline",
            JobKind::CancelChild => "cancel_child",
            JobKind::Push => "push",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| s.to_owned())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: Value,
    pub priority: i16,
    pub max_attempts: i32,
    /// Not before this instant; `None` for now.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A job of `kind` with defaults: no payload, priority 0, ready now.
    pub fn new(kind: JobKind, max_attempts: i32) -> Self {
        NewJob { kind, payload: Value::Object(Default::default()), priority: 0, max_attempts, run_at: None }
    }
}

/// Proof of holding a job: the fencing token the claim handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub task_id: TaskId,
    pub token: i64,
    /// This attempt's number, 1-based.
    pub attempt: i32,
    pub max_attempts: i32,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub lease: Lease,
    /// The stored name; see [`ClaimedJob::kind`].
    pub kind_name: String,
    pub payload: Value,
    /// When the job became due; claim latency is the time from then to the claim.
    pub due_at: DateTime<Utc>,
    /// The delegations of the claim this job came in, whose starts are read
    /// together (see `Store::delegation_start_claimed`).
    pub(crate) claimed: Option<Arc<ClaimedStarts>>,
}

/// What the delegations of one claim start from (the task, its checkpoint,
/// the next message), read in one round trip by whichever of them asks
/// first while the others wait for it; `None` inside when the read failed.
#[derive(Debug, Default)]
pub(crate) struct ClaimedStarts {
    pub(crate) tasks: Vec<TaskId>,
    pub(crate) read: tokio::sync::OnceCell<Option<HashMap<TaskId, DelegationStart>>>,
}

/// What became of a job that failed an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFate {
    /// Ready again at this instant.
    RetryAt(DateTime<Utc>),
    /// Out of attempts: dead-lettered until an operator requeues it.
    Dead,
}

/// A job's place in its lifecycle (`jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Ready,
    Leased,
    Done,
    Dead,
}

impl JobState {
    /// The name stored in `jobs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "ready" => Ok(JobState::Ready),
            "leased" => Ok(JobState::Leased),
            "done" => Ok(JobState::Done),
            "dead" => Ok(JobState::Dead),
            other => Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        }
    }
}

/// A job as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub task_id: TaskId,
    pub kind: String,
    pub state: JobState,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_token: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job put aside by `Store::job_snooze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    /// When it is due again.
    pub until: DateTime<Utc>,
    /// A wake-up came while it was leased (a remote agent's push): it is
    /// due now, not after the interval it asked for.
    pub woken: bool,
}

/// What one sweep of expired leases did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Made ready again for another worker.
    pub requeued: Vec<JobId>,
    /// Out of attempts (the lost leases counted): dead-lettered.
    pub dead: Vec<JobId>,
}

/// A `jobs` row.
pub(in crate::store) struct JobRow {
    pub(in crate::store) id: i64,
    pub(in crate::store) task_id: uuid::Uuid,
    pub(in crate::store) kind: String,
    pub(in crate::store) state: String,
    pub(in crate::store) priority: i16,
    pub(in crate::store) attempt: i32,
    pub(in crate::store) max_attempts: i32,
    pub(in crate::store) run_at: DateTime<Utc>,
    pub(in crate::store) lease_owner: Option<String>,
    pub(in crate::store) lease_token: i64,
    pub(in crate::store) lease_expires_at: Option<DateTime<Utc>>,
    pub(in crate::store) last_error: Option<String>,
    pub(in crate::store) created_at: DateTime<Utc>,
    pub(in crate::store) finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(JobRecord {
            id: JobId(r.id),
            task_id: TaskId(r.task_id),
            kind: r.kind,
            state: r.state.parse()?,
            priority: r.priority,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            run_at: r.run_at,
            lease_owner: r.lease_owner,
            lease_token: r.lease_token,
            lease_expires_at: r.lease_expires_at,
            last_error: r.last_error,
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
    }
}

impl ClaimedJob {
    /// What the job does, or the unknown name (a job written by a newer
    /// version, which this worker must leave alone).
    pub fn kind(&self) -> Result<JobKind, &str> {
        self.kind_name.parse().map_err(|_| self.kind_name.as_str())
    }
}
