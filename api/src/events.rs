//! A task's log as a stream of A2A `StreamResponse`s: the snapshot first,
//! then every update in log order, ending at a terminal or interrupted state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a2a::StreamResponse;
use switchyard_engine::{Caller, Store, TaskRecord};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::hub::{EventHub, Subscription, TaskFeed};
use crate::rendered::{FeedEvent, Rendered};

/// One item of a stream: the log position (the SSE `id`) and the event,
/// shared with the other streams of its task in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    pub seq: i64,
    pub event: Result<Arc<Rendered>, ApiError>,
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The stream of a message (`SendStreamingMessage`): a snapshot of the
    /// task as it is, then what follows it, until a terminal or interrupted
    /// state after the snapshot ends it (a message that answers a question
    /// streams on from the question's state) — the client must answer
    /// before anything more happens.
    Snapshot,
    /// A subscription (`SubscribeToTask`): the snapshot, then what follows,
    /// across questions and their answers, until the task ends — a watcher
    /// (a dashboard, a second client) sees the answer arrive and the task
    /// finish.
    Subscribe,
    /// A subscription resumed (`Last-Event-ID`): every event after this
    /// sequence number, no snapshot, until the task ends; at or past a
    /// terminal event, it closes at once.
    After(i64),
}

/// Events read per round trip while catching up.
const PAGE: i64 = 200;
/// How long a stream waits for a wake-up before re-reading anyway.
const IDLE_REREAD: Duration = Duration::from_secs(30);
/// Items buffered per subscriber; a slow client slows only its own reader.
const BUFFER: usize = 64;

/// Streams a task. The producer is a task of its own that ends when the
/// client goes away (its channel closes) or the task reaches a stop state.
pub fn stream_task(
    store: Store,
    hub: &EventHub,
    task: TaskRecord,
    history: Vec<a2a::Message>,
    start: Start,
    permit: StreamPermit,
) -> ReceiverStream<StreamItem> {
    let (tx, rx) = mpsc::channel(BUFFER);
    let subscription = hub.subscribe();
    let feed = hub.feed(task.id);
    tokio::spawn(async move {
        // Held for as long as the stream runs.
        let _permit = permit;
        if let Err(error) = produce(&store, &feed, subscription, task, history, start, &tx).await {
            let _ = tx.send(StreamItem { seq: 0, event: Err(error) }).await;
        }
    });
    ReceiverStream::new(rx)
}

/// The streams each principal holds open in this process.
#[derive(Debug, Clone, Default)]
pub struct StreamCounts(Arc<Mutex<HashMap<(String, String), usize>>>);

/// One open stream, counted against its principal until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    counts: StreamCounts,
    key: (String, String),
}

impl StreamCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit for one more stream, unless this caller holds `limit`.
    pub fn acquire(&self, caller: &Caller, limit: usize) -> Option<StreamPermit> {
        let key = (caller.tenant.clone(), caller.principal.clone());
        let mut counts = self.lock();
        let open = counts.entry(key.clone()).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(StreamPermit { counts: self.clone(), key })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(open) = counts.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

async fn produce(
    store: &Store,
    feed: &TaskFeed,
    mut subscription: Subscription,
    task: TaskRecord,
    history: Vec<a2a::Message>,
    start: Start,
    tx: &mpsc::Sender<StreamItem>,
) -> Result<(), ApiError> {
    let id = task.id;
    let context_id = task.context_id.clone();
    let terminal = task.state.is_terminal();
    // What ends this stream: a message's, also the task stopping to ask.
    let ends = |event: &FeedEvent| if start == Start::Snapshot { event.stop } else { event.terminal };
    let mut last = match start {
        Start::Snapshot | Start::Subscribe => {
            let snapshot = task.to_a2a((!history.is_empty()).then_some(history));
            let snapshot = Rendered::new(StreamResponse::Task(snapshot));
            if tx.send(StreamItem { seq: task.version, event: Ok(snapshot) }).await.is_err() {
                return Ok(());
            }
            if terminal {
                return Ok(());
            }
            task.version
        }
        // Nothing after the event the task ended with: done.
        Start::After(seq) if terminal && seq >= task.version => return Ok(()),
        Start::After(seq) => seq,
    };
    loop {
        // Bounded like a request's other work on its store: a stream on a
        // store cut off ends (the client resumes from its last event)
        // rather than hold its connection silently until TCP gives up.
        let events = crate::deadline::bounded(async { Ok(feed.after(store, last, PAGE, &context_id).await?) }).await?;
        let full = events.len() as i64 == PAGE;
        for event in events {
            last = event.seq;
            let end = ends(&event);
            if let Some(rendered) = event.rendered
                && tx.send(StreamItem { seq: event.seq, event: Ok(rendered) }).await.is_err()
            {
                return Ok(());
            }
            if end {
                return Ok(());
            }
        }
        if !full {
            // The wake-up may also be a timeout: re-reading is always safe.
            tokio::select! {
                _ = subscription.changed(id, IDLE_REREAD) => {}
                () = tx.closed() => return Ok(()),
            }
        }
    }
}

/// Waits (bounded) until the task reaches a terminal state, or an interrupted
/// one newer than `task`, and returns it as it then is, with the last
/// `history` messages when it was read again (`None` if it never changed).
/// `subscription` must have been taken before `task` was read (or written),
/// so no change after it goes unseen: the task is read only when woken, and
/// with its history, so the answer needs no further read.
pub async fn wait_until_settled(
    store: &Store,
    mut subscription: Subscription,
    task: TaskRecord,
    baseline: i64,
    history: i64,
    timeout: Duration,
) -> Result<(TaskRecord, Option<Vec<a2a::Message>>), ApiError> {
    // Versions are log sequence numbers: a status written after `baseline`
    // (where the client's message was logged) is newer, whatever any clock says.
    let settled = |t: &TaskRecord| t.state.is_terminal() || (t.state.is_interrupted() && t.version > baseline);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut current = (task, None);
    while !settled(&current.0) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || !subscription.settled(current.0.id, left).await {
            break;
        }
        let (task, messages) = store.task_load_with_history(current.0.id, history).await?;
        current = (task, Some(messages));
    }
    Ok(current)
}
