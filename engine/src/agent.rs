//! A remote A2A agent as Switchyard knows it: registered by name, with the
//! card it last fetched and its circuit breaker's state.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A registered remote A2A agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: String,
    pub url: String,
    /// Its Agent Card as last fetched (JSON), if it has been.
    pub card: Option<Value>,
    pub card_fetched_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// While in the future, the agent's circuit breaker is open.
    pub breaker_open_until: Option<DateTime<Utc>>,
}

impl AgentRecord {
    /// Whether the stored card lists a skill with this id.
    pub fn offers_skill(&self, skill: &str) -> bool {
        self.card
            .as_ref()
            .and_then(|c| c.get("skills"))
            .and_then(Value::as_array)
            .is_some_and(|skills| skills.iter().any(|s| s.get("id").and_then(Value::as_str) == Some(skill)))
    }
}
