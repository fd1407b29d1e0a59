//! The wake-up channels a store signals on and what their notices say:
//! written by the store inside its transactions, read by the listeners
//! ([`crate::notify`]).

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
