//! Remote agents and their circuit breakers.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::time::Duration;

use super::{Store, in_tx};
pub use crate::agent::AgentRecord;
use crate::error::StoreError;

/// What an agent's circuit breaker allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Healthy: send work.
    Closed,
    /// Cooled down: this caller probes; the others keep waiting.
    Probe,
    /// Failing: wait until then (`wait` from now, by the database's clock).
    Open { until: DateTime<Utc>, wait: Duration },
}

super::seam::statements! {
    room agent;
    db fn agent_upsert(name: &str, url: &str) -> ();
    db fn agent_set_card(name: &str, card: &Value) -> ();
    /// Counts a call's outcome; opens the breaker at `threshold` failures.
    db fn agent_record_call(name: &str, ok: bool, threshold: i32, cooldown: Duration) -> ();
    /// Locks the agent's row: until when its breaker is open, and how many
    /// seconds of that are left by the database's clock (negative: passed).
    tx fn breaker_lock(name: &str) -> Option<(DateTime<Utc>, f64)>;
    /// Keeps the breaker open for another `cooldown` (while one probe runs).
    tx fn breaker_reopen(name: &str, cooldown: Duration) -> ();
    db fn agent_remove(name: &str) -> u64;
    db fn agent_get(name: &str) -> Option<AgentRecord>;
    db fn agents_list() -> Vec<AgentRecord>;
}

impl Store {
    /// Registers an agent, or updates its URL (keeping its card if the URL is unchanged).
    pub async fn agent_upsert(&self, name: &str, url: &str) -> Result<(), StoreError> {
        self.db.agent_upsert(name, url).await
    }

    /// Stores a freshly fetched card.
    pub async fn agent_set_card(&self, name: &str, card: &Value) -> Result<(), StoreError> {
        self.db.agent_set_card(name, card).await
    }

    /// Records the outcome of a call. A success closes the breaker and
    /// resets the count; the `threshold`-th consecutive failure (or any
    /// failed probe) opens it for `cooldown`.
    pub async fn agent_record_call(
        &self,
        name: &str,
        ok: bool,
        threshold: i32,
        cooldown: Duration,
    ) -> Result<(), StoreError> {
        self.db.agent_record_call(name, ok, threshold, cooldown).await
    }

    /// Whether work may be sent to the agent now. An open breaker whose
    /// cool-down has passed lets exactly one caller through as the probe
    /// (the gate moves forward by another cool-down as it lets it pass).
    pub async fn agent_breaker_gate(&self, name: &str, cooldown: Duration) -> Result<Gate, StoreError> {
        in_tx!(self, |tx| {
            // Compared with the database's clock, which set it.
            let Some((open_until, left)) = tx.breaker_lock(name).await? else {
                return Ok(Gate::Closed);
            };
            if left > 0.0 {
                return Ok(Gate::Open { until: open_until, wait: Duration::from_secs_f64(left) });
            }
            tx.breaker_reopen(name, cooldown).await?;
            Ok(Gate::Probe)
        })
    }

    /// Removes an agent; true when one was removed.
    pub async fn agent_remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db.agent_remove(name).await? > 0)
    }

    /// One agent by name.
    pub async fn agent_get(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.db.agent_get(name).await
    }

    /// Every agent, by name.
    pub async fn agents_list(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.db.agents_list().await
    }
}
