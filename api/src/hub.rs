//! One LISTEN connection per api process, fanned out in memory.
//!
//! The hub carries wake-ups, not events: a woken subscriber re-reads the
//! task's log after the last sequence number it delivered, so any replica
//! can serve any stream with no gap and no duplicate, and a lost
//! notification (reconnect, lag) costs a re-read, never an event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use switchyard_engine::{EventNotice, Listener, Store, StoreError, TaskId, Wake};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rendered::FeedEvent;

/// A wake-up for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Task `0` has new events; `settled` when the commit left it ended or
    /// waiting for input (or did not say).
    Task(TaskId, bool),
    /// Anything may have changed (the listener reconnected): re-read.
    All,
}

/// The process-wide fan-out: each wake-up goes to the subscribers of its
/// task only, so a hundred streams of one task cost nothing to the streams
/// of every other task, and a commit wakes only who must re-read.
#[derive(Debug, Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    routes: std::sync::Mutex<Routes>,
    feeds: std::sync::Mutex<HashMap<TaskId, Weak<TaskFeed>>>,
    /// Subscriptions alive (for metrics).
    subscriptions: AtomicUsize,
}

/// How many recent signals the hub remembers for subscriptions taken
/// before they knew their task (a blocking send subscribes before its task
/// exists). One that falls further behind than this re-reads once.
const RECENT: usize = 4096;

#[derive(Debug, Default)]
struct Routes {
    /// Signals published so far; each is numbered by this count.
    sent: u64,
    /// The last [`RECENT`] signals, oldest first, numbered consecutively.
    recent: VecDeque<(u64, Signal)>,
    /// Per task with a subscriber in this process, what wakes them.
    tasks: HashMap<TaskId, watch::Sender<Mark>>,
}

/// Signals seen for one task: all of them, and those that left it settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Mark {
    signals: u64,
    settled: u64,
}

impl Signal {
    /// Whether this signal should wake a waiter on `task`.
    fn wakes(self, task: TaskId, settled_only: bool) -> bool {
        match self {
            Signal::Task(id, settled) => id == task && (settled || !settled_only),
            Signal::All => true,
        }
    }
}

/// What this process last read of one task's log, shared by every stream of
/// that task here: woken together by one NOTIFY, its subscribers make one
/// read between them, not one each.
#[derive(Debug)]
pub struct TaskFeed {
    id: TaskId,
    /// The last page read (consecutive events, rendered), behind a lock
    /// held across the read, so the first subscriber reads and renders and
    /// the others wait for it and share what it rendered.
    page: tokio::sync::Mutex<Vec<FeedEvent>>,
    /// Reads of the log made for this task's streams.
    reads: AtomicU64,
}

impl TaskFeed {
    /// Up to `limit` events after `last`: from the shared page when it
    /// holds the next one and more, else read, rendered (in the task's
    /// `context_id`) and shared.
    pub async fn after(
        &self,
        store: &Store,
        last: i64,
        limit: i64,
        context_id: &str,
    ) -> Result<Vec<FeedEvent>, StoreError> {
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
        let stored = store.task_events(self.id, last, limit).await?;
        let events: Vec<FeedEvent> = stored.iter().map(|event| FeedEvent::of(event, context_id)).collect();
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
        let hub = EventHub { inner: Arc::default() };
        let publisher = hub.clone();
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
                publisher.publish(signal);
            }
        });
        hub
    }

    /// Wakes the subscribers `signal` is for, and remembers it for the
    /// subscriptions that do not know their task yet.
    fn publish(&self, signal: Signal) {
        let mut routes = self.inner.routes();
        routes.sent += 1;
        let number = routes.sent;
        if routes.recent.len() == RECENT {
            routes.recent.pop_front();
        }
        routes.recent.push_back((number, signal));
        let bump = |mark: &mut Mark, settled: bool| {
            mark.signals += 1;
            mark.settled += u64::from(settled);
        };
        match signal {
            Signal::Task(id, settled) => {
                if let Some(route) = routes.tasks.get(&id) {
                    route.send_modify(|mark| bump(mark, settled));
                }
            }
            Signal::All => routes.tasks.values().for_each(|route| route.send_modify(|mark| bump(mark, true))),
        }
    }

    /// A subscription to wake-ups from now on; it learns its task on its
    /// first wait, and a signal for that task published in between wakes
    /// that wait at once. Subscribe before reading (or writing) the state
    /// you will watch, so nothing falls between the two.
    pub fn subscribe(&self) -> Subscription {
        self.inner.subscriptions.fetch_add(1, Ordering::Relaxed);
        let from = self.inner.routes().sent;
        Subscription { inner: self.inner.clone(), from, watching: None }
    }

    /// The shared feed of `task`'s log in this process (one per task while
    /// anyone holds it).
    pub fn feed(&self, task: TaskId) -> Arc<TaskFeed> {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.inner.subscriptions.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One subscriber's view of the hub.
#[derive(Debug)]
pub struct Subscription {
    inner: Arc<Inner>,
    /// Signals published before this subscription was taken.
    from: u64,
    /// The task waited on, its wake-up, and what this subscriber has seen.
    watching: Option<Watch>,
}

#[derive(Debug)]
struct Watch {
    task: TaskId,
    rx: watch::Receiver<Mark>,
    seen: Mark,
}

impl Subscription {
    /// Waits until `task` may have changed, or `timeout` passes. Returns
    /// false on timeout. Falling behind counts as a change: re-read.
    pub async fn changed(&mut self, task: TaskId, timeout: Duration) -> bool {
        self.wait(task, timeout, false).await
    }

    /// Like [`Subscription::changed`], but passes over commits that left the
    /// task working: for a waiter that needs it ended or asking.
    pub async fn settled(&mut self, task: TaskId, timeout: Duration) -> bool {
        self.wait(task, timeout, true).await
    }

    async fn wait(&mut self, task: TaskId, timeout: Duration, settled_only: bool) -> bool {
        if self.watching.as_ref().is_none_or(|w| w.task != task) && self.attach(task, settled_only) {
            return true;
        }
        let Some(watch) = self.watching.as_mut() else { return true };
        let wait = async {
            loop {
                if watch.rx.changed().await.is_err() {
                    // The route is gone (cannot happen while we hold it):
                    // look again rather than wait for nothing.
                    return true;
                }
                let now = *watch.rx.borrow_and_update();
                let woke =
                    if settled_only { now.settled != watch.seen.settled } else { now.signals != watch.seen.signals };
                watch.seen = now;
                if woke {
                    return true;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Starts watching `task`; true when a signal for it was published
    /// since this subscription was taken (or may have been: the hub
    /// forgot signals that old), so the caller re-reads at once.
    fn attach(&mut self, task: TaskId, settled_only: bool) -> bool {
        self.detach();
        let mut routes = self.inner.routes();
        let rx = routes.tasks.entry(task).or_insert_with(|| watch::channel(Mark::default()).0).subscribe();
        let seen = *rx.borrow();
        let oldest = routes.recent.front().map_or(routes.sent + 1, |(number, _)| *number);
        // Numbered consecutively: the signals since `from` are the ring's
        // tail, usually a handful, never the whole ring under the lock.
        let newer = usize::try_from(routes.sent.saturating_sub(self.from)).unwrap_or(usize::MAX);
        let skip = routes.recent.len().saturating_sub(newer);
        let missed = oldest > self.from + 1
            || routes.recent.iter().skip(skip).any(|(_, signal)| signal.wakes(task, settled_only));
        self.watching = Some(Watch { task, rx, seen });
        missed
    }

    /// Stops watching; the task's route goes when its last watcher does.
    fn detach(&mut self) {
        let Some(Watch { task, rx, .. }) = self.watching.take() else { return };
        drop(rx);
        let mut routes = self.inner.routes();
        if routes.tasks.get(&task).is_some_and(|route| route.receiver_count() == 0) {
            routes.tasks.remove(&task);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.detach();
        self.inner.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOON: Duration = Duration::from_millis(50);

    fn hub() -> EventHub {
        EventHub { inner: Arc::default() }
    }

    #[tokio::test]
    async fn a_wake_up_reaches_the_subscribers_of_its_task_only() {
        let hub = hub();
        let (a, b) = (TaskId::new(), TaskId::new());
        let mut on_a = hub.subscribe();
        assert!(!on_a.changed(a, SOON).await, "nothing published yet");
        hub.publish(Signal::Task(b, true));
        assert!(!on_a.changed(a, SOON).await, "woken by another task's commit");
        hub.publish(Signal::Task(a, false));
        assert!(on_a.changed(a, SOON).await);
        assert!(!on_a.changed(a, SOON).await, "one signal wakes once");
        hub.publish(Signal::All);
        assert!(on_a.changed(a, SOON).await, "a resync wakes everyone");
    }

    #[tokio::test]
    async fn a_signal_published_before_the_task_was_known_is_not_lost() {
        let hub = hub();
        let task = TaskId::new();
        let mut early = hub.subscribe();
        hub.publish(Signal::Task(TaskId::new(), true));
        hub.publish(Signal::Task(task, true));
        assert!(early.settled(task, SOON).await);
        // Taken after the signal: it has nothing to wake for.
        let mut late = hub.subscribe();
        assert!(!late.settled(task, SOON).await);
    }

    #[tokio::test]
    async fn a_subscription_older_than_the_hub_remembers_re_reads_once() {
        let hub = hub();
        let task = TaskId::new();
        let mut old = hub.subscribe();
        for _ in 0..=RECENT {
            hub.publish(Signal::Task(TaskId::new(), true));
        }
        assert!(old.changed(task, SOON).await);
        assert!(!old.changed(task, SOON).await);
    }

    #[tokio::test]
    async fn settled_waits_pass_over_commits_that_leave_the_task_working() {
        let hub = hub();
        let task = TaskId::new();
        let mut waiter = hub.subscribe();
        assert!(!waiter.settled(task, SOON).await);
        let publisher = hub.clone();
        let wait = tokio::spawn(async move { waiter.settled(task, Duration::from_secs(5)).await });
        tokio::time::sleep(SOON).await;
        publisher.publish(Signal::Task(task, false));
        tokio::time::sleep(SOON).await;
        assert!(!wait.is_finished(), "woken by a commit that left the task working");
        publisher.publish(Signal::Task(task, true));
        assert!(wait.await.expect("joins"));
    }

    #[tokio::test]
    async fn a_route_lives_as_long_as_its_subscribers() {
        let hub = hub();
        let task = TaskId::new();
        let (mut one, mut two) = (hub.subscribe(), hub.subscribe());
        one.changed(task, Duration::ZERO).await;
        two.changed(task, Duration::ZERO).await;
        assert_eq!((hub.inner.routes().tasks.len(), hub.subscribers()), (1, 2));
        drop(one);
        assert_eq!((hub.inner.routes().tasks.len(), hub.subscribers()), (1, 1));
        drop(two);
        assert_eq!((hub.inner.routes().tasks.len(), hub.subscribers()), (0, 0));
    }
}
