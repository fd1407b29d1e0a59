//! One LISTEN connection per api process, fanned out in memory.
//!
//! The hub carries wake-ups, not events: a woken subscriber re-reads the
//! task's log after the last sequence number it delivered, so any replica
//! can serve any stream with no gap and no duplicate, and a lost
//! notification (reconnect, lag) costs a re-read, never an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use switchyard_engine::{EventNotice, Listener, Store, StoreError, StoredEvent, TaskId, Wake};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A wake-up for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Task `0` has new events; `settled` when the commit left it ended or
    /// waiting for input (or did not say).
    Task(TaskId, bool),
    /// Anything may have changed (the listener reconnected): re-read.
    All,
}

/// The process-wide fan-out.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Signal>,
    feeds: Arc<std::sync::Mutex<HashMap<TaskId, Weak<TaskFeed>>>>,
}

/// What this process last read of one task's log, shared by every stream of
/// that task here: woken together by one NOTIFY, its subscribers make one
/// read between them, not one each.
#[derive(Debug)]
pub struct TaskFeed {
    id: TaskId,
    /// The last page read (consecutive events), behind a lock held across
    /// the read, so the first subscriber reads and the others wait for it.
    page: tokio::sync::Mutex<Vec<StoredEvent>>,
    /// Reads of the log made for this task's streams.
    reads: AtomicU64,
}

impl TaskFeed {
    /// Up to `limit` events after `last`: from the shared page when it
    /// holds the next one and more, else read (and shared).
    pub async fn after(&self, store: &Store, last: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut page = self.page.lock().await;
        let first = page.first().map(|e| e.seq);
        let through = page.last().map(|e| e.seq);
        if let (Some(first), Some(through)) = (first, through)
            && first <= last + 1
            && through > last
        {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            return Ok(page.iter().filter(|e| e.seq > last).take(limit).cloned().collect());
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("switchyard_stream_log_reads_total").increment(1);
        let events = store.task_events(self.id, last, limit).await?;
        if !events.is_empty() {
            page.clone_from(&events);
        }
        Ok(events)
    }

    /// How many times this feed has read the log.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl EventHub {
    /// Starts the listener task; it runs until `shutdown` fires.
    pub fn start(store: Store, shutdown: CancellationToken) -> EventHub {
        let (tx, _) = broadcast::channel(4096);
        let hub = EventHub { tx: tx.clone(), feeds: Arc::default() };
        tokio::spawn(async move {
            let channel = store.channels().events.clone();
            // Connects on first use and after any failure (each reconnect a
            // `Resync`, so every subscriber re-reads once); meanwhile
            // subscribers re-read at their own periodic timeout.
            let mut listener = Listener::new(&store, &[&channel]);
            loop {
                let wake = tokio::select! {
                    () = shutdown.cancelled() => return,
                    wake = listener.recv() => wake,
                };
                let signal = match wake {
                    Wake::Notified { payload, .. } => match EventNotice::parse(&payload) {
                        Some(n) => Signal::Task(n.task, n.state.is_none_or(|s| s.is_terminal() || s.is_interrupted())),
                        None => Signal::All,
                    },
                    Wake::Resync => Signal::All,
                };
                // No receivers is fine: nobody is streaming right now.
                let _ = tx.send(signal);
            }
        });
        hub
    }

    /// A receiver of every wake-up from now on. Subscribe before reading
    /// the state you will watch, so nothing falls between the two.
    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe() }
    }

    /// The shared feed of `task`'s log in this process (one per task while
    /// anyone holds it).
    pub fn feed(&self, task: TaskId) -> Arc<TaskFeed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(feed) = feeds.get(&task).and_then(Weak::upgrade) {
            return feed;
        }
        // Forget the feeds nobody holds any more while we are here.
        feeds.retain(|_, feed| feed.strong_count() > 0);
        let feed = Arc::new(TaskFeed { id: task, page: tokio::sync::Mutex::new(Vec::new()), reads: AtomicU64::new(0) });
        feeds.insert(task, Arc::downgrade(&feed));
        feed
    }

    /// Subscribers right now (for metrics).
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One subscriber's view of the hub.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Signal>,
}

impl Subscription {
    /// Waits until `task` may have changed, or `timeout` passes. Returns
    /// false on timeout. Lagging behind counts as a change: re-read.
    pub async fn changed(&mut self, task: TaskId, timeout: Duration) -> bool {
        self.wait(task, timeout, false).await
    }

    /// Like [`Subscription::changed`], but passes over commits that left the
    /// task working: for a waiter that needs it ended or asking.
    pub async fn settled(&mut self, task: TaskId, timeout: Duration) -> bool {
        self.wait(task, timeout, true).await
    }

    async fn wait(&mut self, task: TaskId, timeout: Duration, settled_only: bool) -> bool {
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Ok(Signal::Task(id, _)) if id != task => continue,
                    Ok(Signal::Task(_, false)) if settled_only => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    // The hub stopped: nothing will wake us, so look again
                    // now and then rather than wait out the whole timeout.
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        return true;
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}
