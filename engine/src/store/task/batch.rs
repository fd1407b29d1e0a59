//! Group commit of new tasks on PostgreSQL (see `store/group.rs`): one
//! BEGIN, one statement claiming every key, one inserting every task, its
//! first events and its job, one COMMIT — instead of a transaction each.
//!
//! Exactness is the single submit's: each key is claimed in the batch's
//! transaction, keys in one global order (so two batches never wait on
//! each other in a circle); a member whose key was taken is answered "not
//! created" and looked up by its caller as before; a member whose rows
//! cannot be built fails alone, before anything is claimed; a batch the
//! database refuses for what one member holds is written again one member
//! at a time, so only that one fails; a COMMIT that fails for the
//! database's sake fails every member, none of them acknowledged.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::NewTask;
use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::group::{LANES, Lanes};
use crate::store::row::KeyClaim;
use crate::store::{Store, in_tx};
use crate::task::TaskRecord;

/// The created task, or `None` when the key went to another task.
type Answer = Result<Option<TaskRecord>, StoreError>;

/// The queue of submits waiting for a lane.
#[derive(Debug)]
pub(in crate::store) struct Batcher {
    lanes: Lanes<Pending>,
}

#[derive(Debug)]
struct Pending {
    new: NewTask,
    id: TaskId,
    reply: oneshot::Sender<Answer>,
}

impl Pending {
    /// The key's place in the one order every batch claims keys in.
    fn key(&self) -> (&str, &str, &str) {
        (&self.new.caller.tenant, &self.new.caller.principal, &self.new.idempotency_key)
    }
}

impl Batcher {
    /// Starts the lanes on `store`, a handle that does not batch (the
    /// lanes write with it).
    pub(in crate::store) fn start(store: Store) -> Batcher {
        Batcher {
            lanes: Lanes::start(
                store,
                "submit",
                LANES,
                |store: Store, batch| async move { store.write_batch(batch).await },
            ),
        }
    }

    /// Writes `new` in the next batch. `None` when no lane runs any more
    /// (their runtime ended): the caller writes it alone.
    pub(in crate::store) async fn submit(&self, new: NewTask) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        if !self.lanes.send(Pending { new, id: TaskId::new(), reply }).await {
            return None;
        }
        Some(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Batch {
                reason: "the batch this submit was in was abandoned; whether it committed is unknown".into(),
                transient: true,
            })
        }))
    }
}

impl Store {
    async fn write_batch(&self, members: Vec<Pending>) {
        // A member whose rows cannot be built fails alone, before the batch
        // claims anything for it (the same check runs again at the
        // database's time below, where it cannot fail differently).
        let mut batch = Vec::with_capacity(members.len());
        for member in members {
            match Store::born(member.id, &member.new, Utc::now()) {
                Ok(_) => batch.push(member),
                Err(error) => {
                    let _ = member.reply.send(Err(error));
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        batch.sort_by(|a, b| a.key().cmp(&b.key()));
        let written = self.write_members(&batch).await;
        match written {
            Ok(created) => {
                for (member, task) in batch.into_iter().zip(created) {
                    let _ = member.reply.send(Ok(task));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(member) = batch.pop() {
                    let _ = member.reply.send(Err(error));
                }
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, members = batch.len(), "a batch of new tasks failed; none was acknowledged");
                let reason = format!("the task was not created: {error}");
                for member in batch {
                    let _ = member.reply.send(Err(StoreError::Batch { reason: reason.clone(), transient: true }));
                }
            }
            Err(error) => {
                // Refused for what one member holds (a value the database
                // cannot store, say): nothing was written, so each is written
                // alone, and only the member at fault fails.
                tracing::debug!(%error, members = batch.len(), "a batch of new tasks was refused; writing each alone");
                for member in batch {
                    let alone = self.task_submit(member.new).await.map(|s| s.created.then_some(s.task));
                    let _ = member.reply.send(alone);
                }
            }
        }
    }

    /// The batch's one transaction: every key claimed, every task whose key
    /// was free written; for each member (in order) its task if created.
    async fn write_members(&self, batch: &[Pending]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        in_tx!(self, |tx| {
            let claims: Vec<KeyClaim> =
                batch.iter().map(|m| KeyClaim::of(&m.new.caller, &m.new.idempotency_key, m.id)).collect();
            let claimed: HashMap<TaskId, DateTime<Utc>> = tx.keys_claim(&claims).await?.into_iter().collect();
            let mut rows = Vec::with_capacity(claimed.len());
            let mut created = Vec::with_capacity(batch.len());
            for member in batch {
                match claimed.get(&member.id) {
                    Some(now) => {
                        let (born, _, _) = Store::born(member.id, &member.new, *now)?;
                        created.push(Some(born.task.clone()));
                        rows.push(born);
                    }
                    None => created.push(None),
                }
            }
            if !rows.is_empty() {
                tx.tasks_insert(&rows, &self.channels.jobs).await?;
            }
            Ok(created)
        })
    }
}
