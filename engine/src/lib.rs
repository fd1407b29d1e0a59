//! Switchyard's engine: the domain and the durable store.
//!
//! Layout, in the order data flows through it:
//!
//! - [`id`]: newtypes for task and job ids, and the [`Caller`] every
//!   caller-facing query is scoped to.
//! - [`state`]: the A2A task states and the one table of legal transitions.
//! - [`event`]: the events a task's append-only log holds.
//! - [`task`]: the task snapshot and the fold that builds it from events.
//! - [`retry`]: the pure delay function behind durable retries.
//! - [`route`]: which registered agent a message goes to.
//! - [`plan`]: fan-outs and pipelines, resolved into a tree of agents.
//! - [`store`]: PostgreSQL — submit, append-and-fold, cancel, and the job
//!   queue (claim, lease, heartbeat, complete, retry, dead-letter, rescue,
//!   requeue). All SQL in Switchyard lives here.
//! - [`stores`]: several stores, and which tenant lives on which.
//! - [`notify`]: LISTEN/NOTIFY wake-ups with reconnects.
//! - [`trace`]: the W3C trace context stored with a task and continued later.
//! - [`wire`]: log events as A2A stream responses.
//! - [`v03`]: the A2A v0.3 wire model and its translation to and from v1,
//!   for v0.3 clients, webhooks and agents.
//! - [`egress`]: where webhooks may be sent (the SSRF guard).
//! - [`error`]: the store's error type.
//!
//! This crate has no HTTP server and no HTTP client; `api` and `worker`
//! build on it and meet only through the database.

pub mod agent;
pub mod card_signature;
pub mod channel;
pub mod egress;
pub mod error;
pub mod event;
pub mod id;
pub mod notify;
pub mod plan;
pub mod retry;
pub mod route;
pub mod state;
pub mod store;
pub mod stores;
pub mod task;
pub mod trace;
pub mod v03;
pub mod wire;

pub use channel::{Channels, EventNotice};
pub use error::StoreError;
pub use event::{ArtifactUpdate, StoredEvent, TaskEvent};
pub use id::{Caller, JobId, TaskId};
pub use notify::{Listener, Wake};
pub use retry::RetryPolicy;
pub use state::TaskState;
pub use store::{
    AgentLoad, AgentRecord, AuditEntry, ChildPlace, ClaimedJob, ConsoleFilter, ConsoleTask, Counts, Cursor, Delegation,
    DelegationStart, DeliveryFate, DeliveryRecord, Fold, FoldRequest, FollowUp, Gate, JobFate, JobKind, JobRecord,
    JobState, KeyRecord, Lease, LogRotation, MAX_PUSH_CONFIGS, MinuteStat, NewJob, NewKey, NewTask, Outbox,
    PendingDelivery, PresentedKey, PushConfig, ReadRoutes, Rescued, SessionLimits, Stats, Store, StoreConfig,
    Submission, Swept, TaskFilter, TaskPage, TaskPlan, asking_child, id_range, is_sqlite_url,
};
pub use stores::{DEFAULT_STORE, PlacementError, StoreFailed, Stores};
pub use task::{FoldError, TaskRecord};

/// Re-exported so dependants name the same A2A types the store speaks.
pub use a2a;
