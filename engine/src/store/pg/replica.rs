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

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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

impl Replica {
    pub(in crate::store) fn new(pool: PgPool, wait: Duration) -> Replica {
        Replica { pool, wait, down_until: Mutex::new(None), counts: Default::default() }
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
        // The primary's own position: if it cannot tell, the read's own
        // statement on the primary will say why.
        let target = sqlx::query_scalar!(r#"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS "lsn!""#)
            .fetch_one(primary)
            .await;
        let Ok(target) = target else { return Route::Lagging };
        let mut pause = Duration::from_micros(250);
        loop {
            // Each look may take the whole wait (a replica that cannot say
            // where it is in that time is down); looking again stops at
            // the deadline (one that says it is behind is lagging).
            let replayed = tokio::time::timeout(
                self.wait,
                sqlx::query_scalar!(r#"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint AS lsn"#)
                    .fetch_one(&self.pool),
            )
            .await;
            match replayed {
                Ok(Ok(Some(lsn))) if lsn >= target => return Route::Replica,
                Ok(Ok(Some(lsn))) => {
                    metrics::gauge!("switchyard_replica_lag_bytes").set((target - lsn) as f64);
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Route::Lagging;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Ok(Ok(None)) => {
                    tracing::warn!("the read database is not a replica in recovery; reading the primary");
                    self.mark_down();
                    return Route::Down;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the read replica failed; reading the primary for a while");
                    self.mark_down();
                    return Route::Down;
                }
                Err(_) => {
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
