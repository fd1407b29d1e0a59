//! The built-in handler: one entry per job kind.

use std::time::Duration;

use switchyard_engine::ClaimedJob;

use crate::delegate::Delegator;
use crate::handler::{Handler, JobContext, Outcome};

/// The job kind that carries a client's task to a remote agent.
pub const DELEGATE: &str = "delegate";
/// The job kind that cancels the remote task of a task canceled here.
pub const CANCEL_REMOTE: &str = "cancel_remote";

/// Routes each claimed job to the code for its kind.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    delegator: Delegator,
}

impl Dispatcher {
    /// A dispatcher whose remote calls time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Dispatcher { delegator: Delegator::new(timeout) }
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, job: ClaimedJob, ctx: JobContext) -> Outcome {
        match job.kind.as_str() {
            DELEGATE => self.delegator.delegate(&job, &ctx).await,
            CANCEL_REMOTE => self.delegator.cancel_remote(&job, &ctx).await,
            other => Outcome::Fail { reason: format!("this worker does not know job kind {other:?}") },
        }
    }
}
