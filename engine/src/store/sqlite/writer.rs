//! The embedded store's one writer, and its group commit.
//!
//! Every transaction of the store runs on one connection, one at a time
//! (a fair mutex). An fsync per COMMIT would cap the store at one
//! transaction per fsync, so, as PostgreSQL's group commit does,
//! transactions that queue for the writer share one: each runs as a
//! SAVEPOINT inside one open SQLite transaction, and the last of a group
//! (or the flusher, should nobody come after it) COMMITs for all of them.
//! None returns before that COMMIT; if it fails, all of them fail (none was
//! acknowledged); a transaction that fails on its own is rolled back to its
//! SAVEPOINT and takes nobody with it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::broadcast;

use super::{Notice, now};
use crate::error::StoreError;

/// The most transactions one COMMIT covers.
const GROUP_LIMIT: usize = 64;

/// The writing connection and the group of transactions waiting for its
/// next COMMIT.
///
/// Callers may be dropped at any await (a worker gives up an attempt whose
/// lease it lost; a client disconnects). So every statement that changes
/// the writer's own state (BEGIN, SAVEPOINT, RELEASE, COMMIT, ROLLBACK)
/// runs in a task of its own that no caller can cancel, and the only
/// statements a dropped caller can leave half-done are its own, inside its
/// SAVEPOINT, which the next holder rolls back.
pub(super) struct Writer {
    options: SqliteConnectOptions,
    state: tokio::sync::OnceCell<Arc<tokio::sync::Mutex<WriterState>>>,
    /// Transactions queued for the mutex: while there are some, a finished
    /// transaction leaves the COMMIT to them.
    waiting: std::sync::atomic::AtomicUsize,
    /// Wakes the flusher, which COMMITs a group nobody came after.
    flush: Arc<tokio::sync::Notify>,
    wakes: broadcast::Sender<Notice>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("filename", &self.options.get_filename()).finish_non_exhaustive()
    }
}

struct WriterState {
    conn: sqlx::SqliteConnection,
    /// An SQLite transaction is open (`BEGIN IMMEDIATE`), holding the group.
    open: bool,
    /// A transaction's SAVEPOINT is open: if its holder was dropped
    /// mid-way, the next one rolls it back first.
    savepoint: bool,
    /// Finished transactions waiting for the COMMIT.
    group: Vec<Member>,
}

struct Member {
    committed: tokio::sync::oneshot::Sender<Result<(), String>>,
    notices: Vec<Notice>,
}

/// The writer, held: when dropped by a holder that did not settle it (a
/// caller dropped mid-transaction), the flusher is told, so the group it
/// leaves is committed all the same.
struct Held {
    guard: tokio::sync::OwnedMutexGuard<WriterState>,
    flush: Arc<tokio::sync::Notify>,
    settled: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.settled {
            self.flush.notify_one();
        }
    }
}

/// A transaction on the embedded store, with its time and the wake-ups it
/// sends once committed.
pub(crate) struct LiteTx {
    held: Held,
    writer: Arc<Writer>,
    pub(crate) now: DateTime<Utc>,
    notices: Vec<Notice>,
}

impl LiteTx {
    /// Queues a wake-up for after COMMIT.
    pub(crate) fn notify(&mut self, channel: &str, payload: &str) {
        self.notices.push((channel.to_owned(), payload.to_owned()));
    }

    /// The connection to run statements on.
    pub(crate) fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.held.guard.conn
    }

    /// Ends the transaction: on success it joins the group and returns once
    /// the group's COMMIT is on disk (then its wake-ups go out); on failure
    /// it is rolled back to its SAVEPOINT, alone.
    pub(crate) async fn finish<T>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let LiteTx { mut held, writer, notices, .. } = self;
        let (committed, outcome) = tokio::sync::oneshot::channel();
        let ok = result.is_ok();
        let wakes = writer.wakes.clone();
        tokio::spawn(async move {
            let guard = &mut *held.guard;
            if ok {
                match control(guard, "RELEASE SAVEPOINT tx").await {
                    Ok(()) => {
                        guard.savepoint = false;
                        guard.group.push(Member { committed, notices });
                    }
                    Err(e) => {
                        let _ = committed.send(Err(e.to_string()));
                        reset(guard, &e).await;
                    }
                }
            } else {
                drop(committed);
                match control(guard, "ROLLBACK TO SAVEPOINT tx; RELEASE SAVEPOINT tx").await {
                    Ok(()) => guard.savepoint = false,
                    Err(e) => reset(guard, &e).await,
                }
            }
            let queued = writer.waiting.load(std::sync::atomic::Ordering::SeqCst);
            if queued == 0 || held.guard.group.len() >= GROUP_LIMIT {
                commit(&mut held.guard, &wakes).await;
            } else {
                writer.flush.notify_one();
            }
            held.settled = true;
            drop(held);
        });
        let value = result?;
        match outcome.await {
            Ok(Ok(())) => Ok(value),
            Ok(Err(reason)) => Err(StoreError::Unavailable(format!("the commit failed: {reason}"))),
            Err(_) => Err(StoreError::Unavailable("the commit was abandoned".into())),
        }
    }
}

impl Writer {
    pub(super) fn new(options: SqliteConnectOptions, wakes: broadcast::Sender<Notice>) -> Writer {
        Writer {
            options,
            state: tokio::sync::OnceCell::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            flush: Arc::new(tokio::sync::Notify::new()),
            wakes,
        }
    }

    /// COMMITs whatever group is waiting, then folds the write-ahead log
    /// back into the database file (graceful shutdown).
    pub(super) async fn close(&self) {
        if let Some(state) = self.state.get() {
            let mut guard = state.lock().await;
            recover(&mut guard).await;
            commit(&mut guard, &self.wakes).await;
            if let Err(error) = control(&mut guard, "PRAGMA wal_checkpoint(TRUNCATE)").await {
                tracing::warn!(%error, "the write-ahead log could not be checkpointed; it is replayed at the next start");
            }
        }
    }

    /// The writing connection's state, connecting on first use (and
    /// starting the flusher).
    async fn state(self: &Arc<Self>) -> Result<Arc<tokio::sync::Mutex<WriterState>>, StoreError> {
        let state = self
            .state
            .get_or_try_init(|| async {
                let conn = sqlx::ConnectOptions::connect(&self.options).await?;
                let state = Arc::new(tokio::sync::Mutex::new(WriterState {
                    conn,
                    open: false,
                    savepoint: false,
                    group: Vec::new(),
                }));
                tokio::spawn(flusher(Arc::downgrade(self), Arc::downgrade(&state), self.flush.clone()));
                Ok::<_, StoreError>(state)
            })
            .await?;
        Ok(state.clone())
    }

    pub(super) async fn begin(self: &Arc<Self>) -> Result<LiteTx, StoreError> {
        let state = self.state().await?;
        // Counted while queued, and uncounted however the wait ends (a
        // caller dropped while it waits must not look queued for good).
        let queued = Queued::enter(&self.waiting);
        let guard = state.lock_owned().await;
        drop(queued);
        let mut held = Held { guard, flush: self.flush.clone(), settled: false };
        // In a task of its own: a caller dropped here leaves the writer as
        // the statements left it, with the flags saying so.
        let prepared = tokio::spawn(async move {
            let guard = &mut *held.guard;
            recover(guard).await;
            if !guard.open {
                control(guard, "BEGIN IMMEDIATE").await?;
                guard.open = true;
            }
            control(guard, "SAVEPOINT tx").await?;
            guard.savepoint = true;
            Ok::<_, StoreError>(held)
        });
        let held = prepared.await.map_err(|e| StoreError::Unavailable(format!("the writer stopped: {e}")))??;
        Ok(LiteTx { held, writer: self.clone(), now: now(), notices: Vec::new() })
    }
}

/// One transaction waiting for the writer, for as long as it waits.
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a std::sync::atomic::AtomicUsize) -> Self {
        waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Queued(waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Puts the writer back in order after a holder that was dropped
/// mid-transaction: what it wrote goes, the group stays.
async fn recover(guard: &mut WriterState) {
    if guard.savepoint {
        match control(guard, "ROLLBACK TO SAVEPOINT tx; RELEASE SAVEPOINT tx").await {
            Ok(()) => guard.savepoint = false,
            Err(e) => reset(guard, &e).await,
        }
    }
}

/// COMMITs the open transaction for its group (or ends it, if the group
/// is empty), and tells each member how it went.
async fn commit(guard: &mut WriterState, wakes: &broadcast::Sender<Notice>) {
    if !guard.open || guard.savepoint {
        return;
    }
    let statement = if guard.group.is_empty() { "ROLLBACK" } else { "COMMIT" };
    match control(guard, statement).await {
        Ok(()) => {
            guard.open = false;
            for member in guard.group.drain(..) {
                for notice in member.notices {
                    // No receiver is fine: nobody is waiting.
                    let _ = wakes.send(notice);
                }
                let _ = member.committed.send(Ok(()));
            }
        }
        Err(e) => reset(guard, &e).await,
    }
}

/// The open transaction failed as a whole: roll back whatever is left of
/// it and fail its group (nothing of it was acknowledged).
async fn reset(guard: &mut WriterState, error: &StoreError) {
    tracing::error!(%error, members = guard.group.len(), "an embedded store transaction failed; its group is rolled back");
    let reason = error.to_string();
    for member in guard.group.drain(..) {
        let _ = member.committed.send(Err(reason.clone()));
    }
    // "No transaction is active" is a fine answer here.
    let _ = control(guard, "ROLLBACK").await;
    guard.open = false;
    guard.savepoint = false;
}

/// Runs a control statement on the writer.
async fn control(guard: &mut WriterState, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql).execute(&mut guard.conn).await?;
    Ok(())
}

/// COMMITs groups that nobody came after to commit. Runs while the store
/// lives.
async fn flusher(
    writer: std::sync::Weak<Writer>,
    state: std::sync::Weak<tokio::sync::Mutex<WriterState>>,
    flush: Arc<tokio::sync::Notify>,
) {
    loop {
        flush.notified().await;
        let (Some(writer), Some(state)) = (writer.upgrade(), state.upgrade()) else { return };
        let mut guard = state.lock().await;
        recover(&mut guard).await;
        commit(&mut guard, &writer.wakes).await;
    }
}
