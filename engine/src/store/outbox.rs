//! The webhook outbox: every status and artifact event of a task with
//! webhooks gets one outbox row per webhook, written by the transaction
//! that writes the event, and a `push` job per webhook (one live at a time)
//! delivers that webhook's rows in log order. The job settles under the
//! task's row lock, the lock every event writer holds, so a row written
//! while it drained is never stranded. Failures are counted per delivery,
//! not per job: the job waits for a retry without spending attempts, and
//! its 1,000 attempts are spent only by workers that died holding it (each
//! such loss requeues it).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::job::{JobKind, Lease};
use super::push_config::PushConfig;
use super::{Store, Tx, in_tx};
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::TaskId;

/// A delivery waiting to go out, with what it announces.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: i64,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub event: StoredEvent,
}

/// What a webhook's delivery job works from: the webhook, the task's
/// context id, and its oldest pending deliveries in log order.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub config: PushConfig,
    pub context_id: String,
    /// The task's trace context, continued on the POST.
    pub trace_context: Option<Value>,
    pub pending: Vec<PendingDelivery>,
    /// The database's clock, for comparing with `next_at`.
    pub now: DateTime<Utc>,
}

/// A delivery as operators see it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: i64,
    pub task_id: TaskId,
    pub config_id: String,
    /// Where it goes, without credentials, query or fragment.
    pub url: String,
    pub seq: i64,
    pub state: String,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What became of a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFate {
    /// Tried again at this instant.
    RetryAt(DateTime<Utc>),
    /// Out of attempts: dead-lettered; the webhook's next deliveries go on.
    Dead,
}

super::seam::statements! {
    room outbox;
    /// The outbox rows for events `seqs` of a task, one per webhook it has,
    /// and each webhook's live delivery job (waking workers for a new one).
    tx fn outbox_enqueue(jobs_channel: &str, task_id: TaskId, seqs: &[i64]) -> ();
    /// A webhook with its task's context and its oldest pending deliveries.
    db fn outbox_read(task_id: TaskId, config_id: &str, limit: i64) -> Option<Outbox>;
    db fn outbox_delivered(deliveries: &[i64]) -> ();
    db fn outbox_failed(delivery: i64, error: &str, delay: std::time::Duration, max_attempts: i32) -> DeliveryFate;
    /// Whether the webhook has pending deliveries, looked at so that none
    /// can be written before COMMIT.
    tx fn outbox_pending(task_id: TaskId, config_id: &str) -> bool;
    /// Queues a job for up to `limit` webhooks with pending deliveries and none.
    tx fn outbox_adopt_orphans(limit: i64) -> u64;
    /// Newest first; `state` pending, delivered or dead, or all.
    db fn deliveries_list(state: Option<&str>, task: Option<TaskId>, limit: i64) -> Vec<DeliveryRecord>;
    /// A dead delivery pending again, its webhook's job live.
    tx fn delivery_requeue(delivery: i64) -> ();
}

/// The sequence numbers of the events a webhook announces: status and
/// artifact updates (messages are history, not stream events).
pub(super) fn pushable(first_seq: i64, events: &[TaskEvent]) -> Vec<i64> {
    (first_seq..).zip(events).filter(|(_, e)| !matches!(e, TaskEvent::Message(_))).map(|(seq, _)| seq).collect()
}

/// Writes the outbox rows for events `seqs` of a task and makes sure each
/// of its webhooks has its live delivery job; nothing when there are none.
pub(super) async fn enqueue_deliveries(
    tx: &mut Tx,
    jobs_channel: &str,
    task_id: TaskId,
    seqs: &[i64],
) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    tx.outbox_enqueue(jobs_channel, task_id, seqs).await
}

impl Store {
    /// A webhook's next pending deliveries (at most `limit`, in log order),
    /// with the events they announce; `None` when the webhook is gone.
    pub async fn push_outbox(
        &self,
        task_id: TaskId,
        config_id: &str,
        limit: i64,
    ) -> Result<Option<Outbox>, StoreError> {
        self.db.outbox_read(task_id, config_id, limit).await
    }

    /// Marks deliveries delivered (any 2xx), in one statement. At least
    /// once: a crash before this sends them again.
    pub async fn push_delivered(&self, deliveries: &[i64]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.db.outbox_delivered(deliveries).await
    }

    /// Records a failed try: again after `delay`, or dead-lettered once it
    /// has had `max_attempts`.
    pub async fn push_failed(
        &self,
        delivery: i64,
        error: &str,
        delay: std::time::Duration,
        max_attempts: i32,
    ) -> Result<DeliveryFate, StoreError> {
        self.db.outbox_failed(delivery, error, delay, max_attempts).await
    }

    /// Settles a webhook's delivery job once its outbox looked empty: done,
    /// unless a delivery was written meanwhile (checked under the task's row
    /// lock, which every event writer holds), in which case it is ready
    /// again at once. True when it was requeued.
    pub async fn push_settle(&self, lease: &Lease, config_id: &str) -> Result<bool, StoreError> {
        in_tx!(self, |tx| {
            let pending = tx.outbox_pending(lease.task_id, config_id).await?;
            self.finish_or_requeue(tx, lease, pending, JobKind::Push).await?;
            Ok(pending)
        })
    }

    /// Gives a delivery job back to every webhook that has pending
    /// deliveries and no live job (at most `limit` webhooks), and wakes the
    /// workers for them; how many it gave. Every writer queues the job with
    /// the row, so this finds nothing unless a path forgot to: it is the
    /// net under all of them, run by the workers' periodic sweep.
    pub async fn push_adopt_orphans(&self, limit: i64) -> Result<u64, StoreError> {
        in_tx!(self, |tx| {
            let adopted = tx.outbox_adopt_orphans(limit).await?;
            if adopted > 0 {
                tx.notify(&self.channels.jobs, JobKind::Push.as_str()).await?;
            }
            Ok(adopted)
        })
    }

    /// Deliveries for operators: `state` one of pending, delivered, dead
    /// (or all), newest first.
    pub async fn push_deliveries(&self, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.db.deliveries_list(state, None, limit).await
    }

    /// One task's deliveries, in any state, newest first.
    pub async fn push_deliveries_of(&self, task: TaskId, limit: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.db.deliveries_list(None, Some(task), limit).await
    }

    /// Puts a dead delivery back in its webhook's outbox with a fresh set of
    /// attempts, and makes sure the webhook's job is live.
    pub async fn push_requeue(&self, delivery: i64) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            tx.delivery_requeue(delivery).await?;
            tx.notify(&self.channels.jobs, JobKind::Push.as_str()).await?;
            Ok(())
        })
    }
}
