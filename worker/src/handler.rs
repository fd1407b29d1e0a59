//! What a job kind implements, and the fenced context it works through.

use std::future::Future;
use std::time::Duration;

use switchyard_engine::{ClaimedJob, Lease, Store, StoreError, TaskEvent, TaskRecord};
use tokio_util::sync::CancellationToken;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The job is finished; these events (possibly none) close it out on the task.
    Done(Vec<TaskEvent>),
    /// A transient failure: try again later (honouring a remote `Retry-After`).
    Retry { error: String, retry_after: Option<Duration> },
    /// A permanent failure: the task fails with this reason, no retry.
    Fail { reason: String },
    /// Not failing, waiting: run the job again after `after`, without
    /// spending an attempt (remote work still running, a breaker open).
    Snooze { after: Duration, reason: String },
    /// The handler settled the job itself, in the same transaction as its
    /// last write to the task (a delegation's final fold): nothing is left
    /// to record.
    Recorded,
}

/// Carries out one kind of job. Implementations must be idempotent per
/// attempt: a job whose worker died is run again by another worker, so the
/// same job may be started more than once (never under two live leases).
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt. Long work should watch `ctx.cancelled()`: it fires
    /// when the lease is lost or the worker is shutting down, and the
    /// runtime then abandons the attempt without spending it.
    fn handle(&self, job: ClaimedJob, ctx: JobContext) -> impl Future<Output = Outcome> + Send;
}

/// A handler's view of its job: the store, fenced by the job's lease.
#[derive(Debug, Clone)]
pub struct JobContext {
    store: Store,
    lease: Lease,
    cancel: CancellationToken,
}

impl JobContext {
    pub(crate) fn new(store: Store, lease: Lease, cancel: CancellationToken) -> Self {
        JobContext { store, lease, cancel }
    }

    /// The lease this attempt runs under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The store, for reads. Writes to the task go through [`JobContext::append`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resolves when this attempt must stop (lease lost, or shutdown).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Appends events to the job's task, only while the lease holds.
    pub async fn append(&self, events: &[TaskEvent]) -> Result<TaskRecord, StoreError> {
        self.store.task_append(self.lease.task_id, events, Some(&self.lease)).await
    }
}
