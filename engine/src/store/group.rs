//! Group commit on PostgreSQL: writes of *different* tasks that arrive while
//! others are being written wait for the next transaction and share it, so
//! the unit of a round trip and of a WAL flush is many tasks, not one. The
//! embedded store does the same in its writer.
//!
//! No one waits for company: a lane takes what is queued when it is free,
//! so a lone write goes at once, and under load a batch is whatever arrived
//! during the previous one. What a batch writes, and how one member's
//! failure stays that member's, is the business of each kind of batch
//! (`task/batch.rs`, `delegation/batch.rs`, `job.rs`); this module only
//! gathers.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::Store;

/// Transactions writing batches of one kind at once, by default: while one
/// commits, the next gathers and writes.
pub(super) const LANES: usize = 2;
/// Lanes for writes of work already underway (folds, completions). One:
/// members gather while the batch before them commits, so batches grow
/// with the load, where a second lane took the next member at once and
/// batches stayed at one or two. A lone write still goes at once.
pub(super) const FOLD_LANES: usize = 1;
/// The most members one transaction takes.
pub(super) const MAX_BATCH: usize = 64;

/// The queue of one kind of write, drained by its lanes.
#[derive(Debug)]
pub(super) struct Lanes<P> {
    queue: mpsc::Sender<P>,
}

impl<P: Send + 'static> Lanes<P> {
    /// Starts the lanes on `store` (a handle that does not batch: the lanes
    /// write with it). `write` takes a batch and answers each member
    /// through whatever reply channel the member carries.
    pub(super) fn start<W, F>(store: Store, kind: &'static str, lanes: usize, write: W) -> Lanes<P>
    where
        W: Fn(Store, Vec<P>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send,
    {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..lanes.max(1) {
            let (store, rx, write) = (store.clone(), rx.clone(), write.clone());
            tokio::spawn(async move {
                while let Some(batch) = gather(&rx).await {
                    metrics::histogram!("switchyard_batch_size", "kind" => kind).record(batch.len() as f64);
                    write(store.clone(), batch).await;
                }
            });
        }
        Lanes { queue }
    }

    /// Queues `member` for the next batch; false when no lane runs any more
    /// (their runtime ended), and the caller writes it alone.
    pub(super) async fn send(&self, member: P) -> bool {
        self.queue.send(member).await.is_ok()
    }
}

/// Whatever is queued (at least one member, waiting for it), up to a
/// batch; `None` when the queue closed.
async fn gather<P>(queue: &Mutex<mpsc::Receiver<P>>) -> Option<Vec<P>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}
