//! Wake-ups over LISTEN/NOTIFY, with reconnects that never lose a wake-up.
//!
//! NOTIFY is an optimisation, not a source of truth: every consumer re-reads
//! the tables after a wake-up, and after a reconnect (when notifications may
//! have been missed) the listener says so with [`Wake::Resync`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::postgres::PgListener;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::store::Store;

pub use crate::channel::{Channels, EventNotice};

/// What a listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A notification arrived on `channel`.
    Notified { channel: String, payload: String },
    /// The connection was lost and re-established; notifications sent in
    /// between are gone, so re-read whatever you are watching.
    Resync,
}

/// A LISTEN connection that reconnects with exponential backoff (`backon`)
/// and never returns an error: callers fall back to polling meanwhile.
///
/// Any error drops the connection: a connection that failed once (reset,
/// timeout, a half-open socket) is never trusted again, and a fresh one
/// LISTENs on the channels it was given, no more. A listener that could not
/// connect at first keeps trying, so a worker started while PostgreSQL was
/// down is woken by NOTIFY once it is back, not left polling for good.
///
/// A connection can also die without an error: a half-open socket, a
/// partition that passes nothing and closes nothing. So a listener that has
/// heard nothing for [`PROBE_AFTER`] sends a NOTIFY to a channel of its own
/// (over another connection) and expects to hear it back within
/// [`PROBE_DEADLINE`]; if it does not, the connection is dropped and a fresh
/// one made, as after an error.
#[derive(Debug)]
pub struct Listener {
    /// `None` on the embedded store, whose wake-ups are in-process.
    pool: Option<sqlx::PgPool>,
    inner: Option<PgListener>,
    lite: Option<tokio::sync::broadcast::Receiver<crate::store::Notice>>,
    channels: Vec<String>,
    backoff: ExponentialBuilder,
    /// This listener's own channel, for its liveness probes.
    probe_channel: String,
    /// When the connection last delivered anything (or was opened).
    heard_at: Instant,
    /// When the outstanding probe was sent, if one is.
    probe_sent: Option<Instant>,
    probe_after: Duration,
    probe_deadline: Duration,
}

/// Silence on the LISTEN connection after which it is probed.
pub const PROBE_AFTER: Duration = Duration::from_secs(10);
/// How long a probe may take to come back before the connection is
/// declared dead.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

impl Listener {
    /// A listener on `channels` that connects on first use (and reports
    /// that first connection as a [`Wake::Resync`]).
    pub fn new(store: &Store, channels: &[&str]) -> Listener {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        Listener {
            pool: store.pg_pool().cloned(),
            inner: None,
            lite: store.lite_notices(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            backoff,
            probe_channel: format!("switchyard_probe_{}", uuid::Uuid::new_v4().simple()),
            heard_at: Instant::now(),
            probe_sent: None,
            probe_after: PROBE_AFTER,
            probe_deadline: PROBE_DEADLINE,
        }
    }

    /// The same listener with other probe timings (tests use short ones).
    pub fn with_probe(mut self, after: Duration, deadline: Duration) -> Listener {
        self.probe_after = after;
        self.probe_deadline = deadline;
        self
    }

    /// Opens a dedicated connection listening on `channels` now.
    pub async fn connect(store: &Store, channels: &[&str]) -> Result<Listener, StoreError> {
        let mut listener = Listener::new(store, channels);
        if listener.lite.is_none() {
            listener.inner = Some(listener.open().await?);
            listener.heard_at = Instant::now();
        }
        Ok(listener)
    }

    /// The next wake-up. Cancel-safe: dropping the future loses nothing
    /// that the tables do not still hold.
    pub async fn recv(&mut self) -> Wake {
        if let Some(lite) = self.lite.as_mut() {
            return loop {
                match lite.recv().await {
                    Ok((channel, payload)) if self.channels.contains(&channel) => {
                        break Wake::Notified { channel, payload };
                    }
                    Ok(_) => continue,
                    // Fell behind: whatever was dropped, re-read.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break Wake::Resync,
                    // The store is gone: nothing will ever come.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            };
        }
        loop {
            let Some(inner) = self.inner.as_mut() else {
                self.reconnect().await;
                return Wake::Resync;
            };
            let next_check = match self.probe_sent {
                Some(sent) => sent + self.probe_deadline,
                None => self.heard_at + self.probe_after,
            };
            let received = tokio::select! {
                received = inner.try_recv() => received,
                () = tokio::time::sleep_until(next_check) => {
                    if self.probe_sent.is_some() {
                        tracing::warn!(
                            deadline = ?self.probe_deadline,
                            "LISTEN connection silent: its probe did not come back; reconnecting"
                        );
                        self.inner = None;
                        self.reconnect().await;
                        return Wake::Resync;
                    }
                    self.probe().await;
                    continue;
                }
            };
            self.heard_at = Instant::now();
            self.probe_sent = None;
            return match received {
                Ok(Some(n)) if n.channel() == self.probe_channel => continue,
                Ok(Some(n)) => Wake::Notified { channel: n.channel().to_owned(), payload: n.payload().to_owned() },
                // The connection dropped and sqlx re-established it (eager
                // reconnect, LISTENs re-issued); whatever was sent meanwhile is lost.
                Ok(None) => Wake::Resync,
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                    self.inner = None;
                    self.reconnect().await;
                    Wake::Resync
                }
            };
        }
    }

    /// Sends this listener's probe over another connection. Marked sent
    /// first: a probe that cannot even be sent (the database unreachable)
    /// counts as one that did not come back.
    async fn probe(&mut self) {
        self.probe_sent = Some(Instant::now());
        let Some(pool) = &self.pool else { return };
        let send = sqlx::query("SELECT pg_notify($1, '')").bind(&self.probe_channel).execute(pool);
        match tokio::time::timeout(self.probe_deadline, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "LISTEN probe could not be sent"),
            Err(_) => tracing::debug!("LISTEN probe could not be sent in time"),
        }
    }

    async fn open(&self) -> Result<PgListener, sqlx::Error> {
        let pool = self.pool.as_ref().ok_or(sqlx::Error::PoolClosed)?;
        let mut listener = PgListener::connect_with(pool).await?;
        let channels = self.channels.iter().map(String::as_str).chain([self.probe_channel.as_str()]);
        listener.listen_all(channels).await?;
        Ok(listener)
    }

    /// A fresh connection, LISTENing, tried at once and then with backoff
    /// until it works. Cancel-safe: a dropped attempt leaves `inner` empty
    /// and the next call starts over.
    async fn reconnect(&mut self) {
        let mut delays = self.backoff.build();
        loop {
            match self.open().await {
                Ok(listener) => {
                    self.inner = Some(listener);
                    self.heard_at = Instant::now();
                    self.probe_sent = None;
                    return;
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%error, ?delay, "LISTEN reconnect failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notices_round_trip_and_tolerate_older_payloads() {
        let task = crate::task::TaskRecord::genesis(
            crate::id::TaskId::new(),
            &crate::id::Caller::new("t", "p"),
            "c".into(),
            chrono::Utc::now(),
        );
        let notice = EventNotice::parse(&EventNotice::payload(&task)).expect("parses");
        assert_eq!((notice.task, notice.version, notice.state), (task.id, 0, Some(task.state)));
        let older = EventNotice::parse(&format!("{}:7", task.id)).expect("parses");
        assert_eq!((older.version, older.state), (7, None));
        assert!(EventNotice::parse("garbage").is_none());
    }
}
