//! The built-in handler: one entry per job kind.

use switchyard_engine::{ClaimedJob, TaskEvent, TaskState};

use crate::handler::{Handler, JobContext, Outcome};

/// The job kind that carries a client's task to a remote agent.
pub const DELEGATE: &str = "delegate";

/// Routes each claimed job to the code for its kind.
#[derive(Debug, Clone, Default)]
pub struct Dispatcher {}

impl Dispatcher {
    /// A dispatcher with no remote agents registered.
    pub fn new() -> Self {
        Dispatcher {}
    }

    async fn delegate(&self, job: &ClaimedJob, ctx: &JobContext) -> Outcome {
        let task = match ctx.store().task_load(job.lease.task_id).await {
            Ok(task) => task,
            Err(e) if e.is_transient() => {
                return Outcome::Retry {
                    error: e.to_string(),
                    retry_after: None,
                };
            }
            Err(e) => {
                return Outcome::Fail {
                    reason: format!("the task could not be read: {e}"),
                };
            }
        };
        if task.state.is_terminal() {
            // Canceled (or otherwise ended) while the job waited: nothing to do.
            return Outcome::Done(Vec::new());
        }
        // No agent registry yet: every task is unroutable, and the client
        // is told so plainly rather than left waiting.
        Outcome::Done(vec![TaskEvent::status_with_text(
            TaskState::Rejected,
            "no remote agent is registered that could take this task",
        )])
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, job: ClaimedJob, ctx: JobContext) -> Outcome {
        match job.kind.as_str() {
            DELEGATE => self.delegate(&job, &ctx).await,
            other => Outcome::Fail {
                reason: format!("this worker does not know job kind {other:?}"),
            },
        }
    }
}
