//! Wake-ups over LISTEN/NOTIFY, with reconnects that never lose a wake-up.
//!
//! NOTIFY is an optimisation, not a source of truth: every consumer re-reads
//! the tables after a wake-up, and after a reconnect (when notifications may
//! have been missed) the listener says so with [`Wake::Resync`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::postgres::PgListener;

use crate::error::StoreError;
use crate::store::Store;

/// The channel names of one store. Channels are global to a database, so
/// they carry the schema's name: deployments sharing a database do not wake
/// each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// New or newly ready jobs. Payload: the job kind.
    pub jobs: String,
    /// New task events. Payload: see [`EventNotice`].
    pub events: String,
}

/// What a NOTIFY on the events channel says: the task, the sequence number
/// of its last event, and the state that commit left it in, as
/// `<task id>:<seq>:<state>`. The state lets a waiter that only cares about
/// the task settling skip the reads of progress it does not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventNotice {
    pub task: crate::id::TaskId,
    pub version: i64,
    /// `None` from a sender that did not say (re-read to know).
    pub state: Option<crate::state::TaskState>,
}

impl EventNotice {
    /// The payload announcing `task` as it now is.
    pub fn payload(task: &crate::task::TaskRecord) -> String {
        format!("{}:{}:{}", task.id, task.version, task.state.as_str())
    }

    /// Reads a payload; `None` if it names no task.
    pub fn parse(payload: &str) -> Option<EventNotice> {
        let mut fields = payload.split(':');
        let task = fields.next()?.parse().ok()?;
        let version = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let state = fields.next().and_then(|s| s.parse().ok());
        Some(EventNotice { task, version, state })
    }
}

impl Channels {
    /// The channels of the store in `schema`.
    pub fn for_schema(schema: &str) -> Self {
        Channels { jobs: format!("{schema}.jobs"), events: format!("{schema}.events") }
    }
}

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
#[derive(Debug)]
pub struct Listener {
    /// `None` on the embedded store, whose wake-ups are in-process.
    pool: Option<sqlx::PgPool>,
    inner: Option<PgListener>,
    lite: Option<tokio::sync::broadcast::Receiver<crate::store::Notice>>,
    channels: Vec<String>,
    backoff: ExponentialBuilder,
}

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
        }
    }

    /// Opens a dedicated connection listening on `channels` now.
    pub async fn connect(store: &Store, channels: &[&str]) -> Result<Listener, StoreError> {
        let mut listener = Listener::new(store, channels);
        if listener.lite.is_none() {
            listener.inner = Some(listener.open().await?);
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
        let Some(inner) = self.inner.as_mut() else {
            self.reconnect().await;
            return Wake::Resync;
        };
        match inner.try_recv().await {
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
        }
    }

    async fn open(&self) -> Result<PgListener, sqlx::Error> {
        let pool = self.pool.as_ref().ok_or(sqlx::Error::PoolClosed)?;
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all(self.channels.iter().map(String::as_str)).await?;
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
