//! One LISTEN connection per api process, fanned out in memory.
//!
//! The hub carries wake-ups, not events: a woken subscriber re-reads the
//! task's log after the last sequence number it delivered, so any replica
//! can serve any stream with no gap and no duplicate, and a lost
//! notification (reconnect, lag) costs a re-read, never an event.

use std::time::Duration;

use switchyard_engine::{Listener, Store, TaskId, Wake};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A wake-up for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Task `0` has new events.
    Task(TaskId),
    /// Anything may have changed (the listener reconnected): re-read.
    All,
}

/// The process-wide fan-out.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Signal>,
}

impl EventHub {
    /// Starts the listener task; it runs until `shutdown` fires.
    pub fn start(store: Store, shutdown: CancellationToken) -> EventHub {
        let (tx, _) = broadcast::channel(4096);
        let hub = EventHub { tx: tx.clone() };
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
                    Wake::Notified { payload, .. } => {
                        match payload.split_once(':').and_then(|(id, _)| id.parse().ok()) {
                            Some(id) => Signal::Task(id),
                            None => Signal::All,
                        }
                    }
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
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Ok(Signal::Task(id)) if id != task => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    // The hub stopped (shutdown): nothing will wake us; the timeout will.
                    Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}
