//! The built-in handler: one entry per job kind.

use std::time::Duration;

use switchyard_engine::{ClaimedJob, JobKind};

use crate::delegate::{DelegationSettings, Delegator};
use crate::handler::{Handler, JobContext, Outcome};
use crate::push::{PushSettings, Pusher};

/// How long a job of a kind this worker does not know is left for another
/// (newer) worker before this one looks at it again.
const UNKNOWN_KIND_BACKOFF: Duration = Duration::from_secs(30);

/// Routes each claimed job to the code for its kind.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    delegator: Delegator,
    pusher: Pusher,
}

impl Dispatcher {
    /// A dispatcher delegating and delivering webhooks with these settings.
    pub fn new(settings: DelegationSettings, push: PushSettings) -> Result<Self, reqwest::Error> {
        Ok(Dispatcher { delegator: Delegator::new(settings)?, pusher: Pusher::new(push) })
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, job: ClaimedJob, ctx: JobContext) -> Outcome {
        match job.kind() {
            Ok(JobKind::Delegate) => self.delegator.delegate(&job, &ctx).await,
            Ok(JobKind::CancelRemote) => self.delegator.cancel_remote(&job, &ctx).await,
            Ok(JobKind::Deadline) => {
                match ctx.store().task_expire(job.lease.task_id, "the task's deadline passed").await {
                    Ok(_) => Outcome::Done(Vec::new()),
                    Err(e) => Outcome::Retry { error: e.to_string(), retry_after: None },
                }
            }
            Ok(JobKind::Push) => self.pusher.deliver(&job, &ctx).await,
            Ok(JobKind::CancelChild) => {
                let reason = job.payload.get("reason").and_then(|r| r.as_str()).unwrap_or("the parent task ended");
                match ctx.store().task_cancel_child(&job.lease, reason).await {
                    Ok(()) => Outcome::Recorded,
                    Err(e) => Outcome::Retry { error: e.to_string(), retry_after: None },
                }
            }
            // A newer version's job, met during a rolling upgrade: not a
            // failure of the task. Give it back without spending an attempt.
            Err(unknown) => Outcome::Snooze {
                after: UNKNOWN_KIND_BACKOFF,
                reason: format!("this worker does not know job kind {unknown:?}; left for a newer worker"),
            },
        }
    }
}
