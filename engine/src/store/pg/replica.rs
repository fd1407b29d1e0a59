//! Reads from a streaming replica of the PostgreSQL store.
//!
//! A read an api serves to a client (GetTask, ListTasks, a stream's log,
//! the console's pages) may go to a replica, but must never show less than
//! the primary had committed when the read began: not the caller's own
//! write (read-your-writes), and not a state another client or a worker
//! already reported to it. So before each such read the primary's WAL
//! position is taken — every commit before this moment lies at or before
//! it — and the replica is used only once it has replayed that far; it is
//! given `wait` to get there, then the primary answers. This holds across
//! any number of api processes, with no session to be sticky to, at the
//! price of one small statement on the primary per read (no table is
//! read) and one on the replica.
//!
//! A replica that fails or does not answer within `wait` is left alone for
//! [`DOWN_FOR`] and every read goes to the primary meanwhile.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How long a replica that failed is not asked again.
const DOWN_FOR: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(in crate::store) struct Replica {
    pub(in crate::store) pool: PgPool,
    wait: Duration,
    down_until: Mutex<Option<Instant>>,
    /// Reads sent to the replica, and to the primary because it lagged or was down.
    pub(in crate::store) counts: [AtomicU64; 3],
    /// The primary's WAL position and the replica's replay position, each
    /// asked once for all the reads that arrive while it is being asked.
    primary_at: Arc<Coalesced>,
    replayed: Arc<Coalesced>,
    /// The furthest the replica has been seen to have replayed: it only
    /// grows, so a read whose target lies behind it needs no look.
    replayed_max: AtomicI64,
}

/// Where one read was sent, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Route {
    Replica,
    /// It had not replayed what the primary had committed within the wait.
    Lagging,
    /// It failed, did not answer, or is not a replica.
    Down,
}

/// What a look at a position found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    At(i64),
    /// The server is not a replica in recovery (no replay position).
    NotReplica,
    Failed,
    TimedOut,
}

impl Replica {
    pub(in crate::store) fn new(pool: PgPool, wait: Duration) -> Replica {
        Replica {
            pool,
            wait,
            down_until: Mutex::new(None),
            counts: Default::default(),
            primary_at: Arc::default(),
            replayed: Arc::default(),
            replayed_max: AtomicI64::new(i64::MIN),
        }
    }

    /// Counts a read sent where `route` says.
    pub(in crate::store) fn count(&self, route: Route) {
        self.counts[route as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this read may go to the replica: it has replayed everything
    /// `primary` had committed when this was called.
    pub(in crate::store) async fn route(&self, primary: &PgPool) -> Route {
        if self.down_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some_and(|t| Instant::now() < t)
        {
            return Route::Down;
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        // The primary's own position, asked after this read began: if it
        // cannot tell, the read's own statement on the primary will say why.
        let primary = primary.clone();
        let target = self
            .primary_at
            .fresh(move || {
                let primary = primary.clone();
                async move {
                    match sqlx::query_scalar!(
                        r#"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS "lsn!""#
                    )
                    .fetch_one(&primary)
                    .await
                    {
                        Ok(lsn) => Look::At(lsn),
                        Err(_) => Look::Failed,
                    }
                }
            })
            .await;
        let Look::At(target) = target else { return Route::Lagging };
        let mut pause = Duration::from_micros(250);
        loop {
            if self.replayed_max.load(Ordering::Relaxed) >= target {
                return Route::Replica;
            }
            // Each look may take the whole wait (a replica that cannot say
            // where it is in that time is down); looking again stops at
            // the deadline (one that says it is behind is lagging).
            let (pool, wait) = (self.pool.clone(), self.wait);
            let look = self
                .replayed
                .fresh(move || {
                    let pool = pool.clone();
                    async move {
                        let replayed = tokio::time::timeout(
                            wait,
                            sqlx::query_scalar!(
                                r#"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint AS lsn"#
                            )
                            .fetch_one(&pool),
                        )
                        .await;
                        match replayed {
                            Ok(Ok(Some(lsn))) => Look::At(lsn),
                            Ok(Ok(None)) => Look::NotReplica,
                            Ok(Err(_)) => Look::Failed,
                            Err(_) => Look::TimedOut,
                        }
                    }
                })
                .await;
            match look {
                Look::At(lsn) if lsn >= target => {
                    self.replayed_max.fetch_max(lsn, Ordering::Relaxed);
                    return Route::Replica;
                }
                Look::At(lsn) => {
                    self.replayed_max.fetch_max(lsn, Ordering::Relaxed);
                    metrics::gauge!("switchyard_replica_lag_bytes").set((target - lsn) as f64);
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Route::Lagging;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Look::NotReplica => {
                    tracing::warn!("the read database is not a replica in recovery; reading the primary");
                    self.mark_down();
                    return Route::Down;
                }
                Look::Failed => {
                    tracing::warn!("the read replica failed; reading the primary for a while");
                    self.mark_down();
                    return Route::Down;
                }
                Look::TimedOut => {
                    tracing::warn!(wait = ?self.wait, "the read replica did not answer in time; reading the primary for a while");
                    self.mark_down();
                    return Route::Down;
                }
            }
        }
    }

    /// Sends reads to the primary for [`DOWN_FOR`].
    pub(in crate::store) fn mark_down(&self) {
        *self.down_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + DOWN_FOR);
    }
}

/// One look shared by the reads that arrive while it is taken, as group
/// commit shares a flush: a read is answered by the first look *begun
/// after it arrived* (so a position is never older than the read), and
/// only one look runs at a time. The look runs as a task of its own, so a
/// read that goes away mid-look strands nobody.
#[derive(Debug, Default)]
struct Coalesced {
    state: Mutex<Looks>,
    done: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Looks {
    /// Looks begun, and the last one finished with what it found.
    begun: u64,
    finished: Option<(u64, Look)>,
    running: bool,
}

impl Coalesced {
    async fn fresh<F, Fut>(self: &Arc<Self>, look: F) -> Look
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Look> + Send + 'static,
    {
        let need = self.lock().begun + 1;
        let mut look = Some(look);
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some((number, found)) = state.finished
                    && number >= need
                {
                    return found;
                }
                if !state.running
                    && let Some(look) = look.take()
                {
                    state.running = true;
                    state.begun += 1;
                    let (number, shared, taken) = (state.begun, self.clone(), look());
                    tokio::spawn(async move {
                        let found = taken.await;
                        let mut state = shared.lock();
                        state.running = false;
                        state.finished = Some((number, found));
                        drop(state);
                        shared.done.notify_waiters();
                    });
                }
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Looks> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forty reads arriving over ~12 ms, each look taking 2 ms: they share
    /// looks, and every read is answered by a look begun after it arrived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_share_a_look_and_none_is_answered_by_one_older_than_itself() {
        let shared = Arc::new(Coalesced::default());
        let begun = Arc::new(AtomicI64::new(0));
        let mut reads = Vec::new();
        for i in 0..40u64 {
            let (shared, begun) = (shared.clone(), begun.clone());
            reads.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 300)).await;
                let before = begun.load(Ordering::SeqCst);
                let found = shared
                    .fresh(move || async move {
                        let number = begun.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Look::At(number)
                    })
                    .await;
                (before, found)
            }));
        }
        for read in reads {
            let (before, found) = read.await.expect("read");
            let Look::At(number) = found else { panic!("{found:?}") };
            assert!(number > before, "answered by look {number}, begun before it arrived ({before} had begun)");
        }
        let looks = begun.load(Ordering::SeqCst);
        assert!((2..40).contains(&looks), "{looks} looks for 40 reads");
    }

    /// A read that goes away while its look runs strands nobody.
    #[tokio::test]
    async fn a_read_dropped_mid_look_does_not_stop_the_others() {
        let shared = Arc::new(Coalesced::default());
        let first = {
            let shared = shared.clone();
            tokio::spawn(async move {
                shared
                    .fresh(|| async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Look::At(1)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        first.abort();
        let second = tokio::time::timeout(Duration::from_secs(2), shared.fresh(|| async { Look::At(2) })).await;
        assert_eq!(second.expect("answered"), Look::At(2));
    }
}
