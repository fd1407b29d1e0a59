//! Group commit of job completions on PostgreSQL (see `store/group.rs`):
//! concurrent fenced `leased -> done` transitions of different jobs share
//! one statement, each still fenced by its own lease token. A member whose
//! lease was lost is answered `LeaseLost` alone; a statement that fails
//! fails every member, none of them done.

use std::collections::HashSet;

use tokio::sync::oneshot;

use super::Lease;
use crate::error::StoreError;
use crate::id::JobId;
use crate::store::Store;
use crate::store::group::{FOLD_LANES, Lanes};

#[derive(Debug)]
pub(in crate::store) struct Batcher {
    lanes: Lanes<Pending>,
}

#[derive(Debug)]
struct Pending {
    lease: Lease,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl Batcher {
    pub(in crate::store) fn start(store: Store) -> Batcher {
        Batcher {
            lanes: Lanes::start(store, "done", FOLD_LANES, |store: Store, batch| async move {
                store.done_batch(batch).await
            }),
        }
    }

    /// Completes the job in the next batch; `None` when no lane runs any
    /// more (the caller completes it alone).
    pub(in crate::store) async fn complete(&self, lease: &Lease) -> Option<Result<(), StoreError>> {
        let (reply, answer) = oneshot::channel();
        if !self.lanes.send(Pending { lease: lease.clone(), reply }).await {
            return None;
        }
        Some(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Batch {
                reason: "the batch this completion was in was abandoned; whether it committed is unknown".into(),
                transient: true,
            })
        }))
    }
}

impl Store {
    async fn done_batch(&self, mut batch: Vec<Pending>) {
        // Rows are locked in id order, as every batch takes them.
        batch.sort_by_key(|p| p.lease.job_id.0);
        let leases: Vec<&Lease> = batch.iter().map(|p| &p.lease).collect();
        match self.db.jobs_done_many(&leases).await {
            Ok(done) => {
                let done: HashSet<JobId> = done.into_iter().collect();
                for member in batch {
                    let answer = member.lease.held(u64::from(done.contains(&member.lease.job_id)));
                    let _ = member.reply.send(answer);
                }
            }
            Err(error) => {
                tracing::warn!(%error, members = batch.len(), "a batch of job completions failed; none was done");
                let transient = error.is_transient();
                let reason = format!("the job was not completed: {error}");
                for member in batch {
                    let _ = member.reply.send(Err(StoreError::Batch { reason: reason.clone(), transient }));
                }
            }
        }
    }
}
