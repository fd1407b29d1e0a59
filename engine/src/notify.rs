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
    /// New task events. Payload: `<task id>:<seq of the last event>`.
    pub events: String,
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
#[derive(Debug)]
pub struct Listener {
    inner: PgListener,
    channels: Vec<String>,
    backoff: ExponentialBuilder,
}

impl Listener {
    /// Opens a dedicated connection listening on `channels`.
    pub async fn connect(store: &Store, channels: &[&str]) -> Result<Listener, StoreError> {
        let mut inner = PgListener::connect_with(store.pool()).await?;
        inner.listen_all(channels.iter().copied()).await?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        Ok(Listener { inner, channels: channels.iter().map(|c| (*c).to_owned()).collect(), backoff })
    }

    /// The next wake-up. Cancel-safe: dropping the future loses nothing
    /// that the tables do not still hold.
    pub async fn recv(&mut self) -> Wake {
        match self.inner.try_recv().await {
            Ok(Some(n)) => Wake::Notified { channel: n.channel().to_owned(), payload: n.payload().to_owned() },
            // The connection dropped and sqlx re-established it (eager
            // reconnect, LISTENs re-issued); whatever was sent meanwhile is lost.
            Ok(None) => Wake::Resync,
            Err(error) => {
                tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                self.reconnect().await;
                Wake::Resync
            }
        }
    }

    /// Re-issues the LISTENs (which reconnects first) until it succeeds.
    async fn reconnect(&mut self) {
        let mut delays = self.backoff.build();
        loop {
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::time::sleep(delay).await;
            match self.inner.listen_all(self.channels.iter().map(String::as_str)).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, ?delay, "LISTEN reconnect failed; retrying"),
            }
        }
    }
}
