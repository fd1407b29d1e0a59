//! The built-in handler: one entry per job kind.

use switchyard_engine::ClaimedJob;

use crate::delegate::{DelegationSettings, Delegator};
use crate::handler::{Handler, JobContext, Outcome};

/// The job kind that carries a client's task to a remote agent.
pub const DELEGATE: &str = "delegate";
/// The job kind that cancels the remote task of a task canceled here.
pub const CANCEL_REMOTE: &str = "cancel_remote";
/// The job kind that fires at a task's deadline.
pub const DEADLINE: &str = "deadline";

/// Routes each claimed job to the code for its kind.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    delegator: Delegator,
}

impl Dispatcher {
    /// A dispatcher delegating with these settings.
    pub fn new(settings: DelegationSettings) -> Self {
        Dispatcher { delegator: Delegator::new(settings) }
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, job: ClaimedJob, ctx: JobContext) -> Outcome {
        match job.kind.as_str() {
            DELEGATE => self.delegator.delegate(&job, &ctx).await,
            CANCEL_REMOTE => self.delegator.cancel_remote(&job, &ctx).await,
            DEADLINE => match ctx.store().task_expire(job.lease.task_id, "the task's deadline passed").await {
                Ok(_) => Outcome::Done(Vec::new()),
                Err(e) => Outcome::Retry { error: e.to_string(), retry_after: None },
            },
            other => Outcome::Fail { reason: format!("this worker does not know job kind {other:?}") },
        }
    }
}
