//! Switchyard's workers: claim jobs, carry them out, keep their leases alive.
//!
//! Layout:
//!
//! - [`config`]: the worker's validated settings.
//! - [`handler`]: the [`Handler`] trait a job kind implements, what it may
//!   answer ([`Outcome`]), and the fenced [`JobContext`] it writes through.
//! - [`runtime`]: the loop — woken by NOTIFY (polling as the fallback), it
//!   claims batches, runs them with bounded concurrency, heartbeats their
//!   leases, rescues leases other workers lost, and drains on shutdown.
//! - [`dispatch`]: the built-in handler that routes each job kind.
//! - [`remote`]: the call to a remote agent, with failures classified at
//!   the HTTP layer (retry or not, and `Retry-After`).
//! - [`delegate`]: carries a task to its remote agent (streaming, blocking
//!   or polling, as the agent's card allows), checkpoints the remote ids,
//!   folds the agent's events into the task, and resumes after a crash.
//! - [`push`]: delivers webhooks from the outbox, in order, behind the
//!   SSRF guard.

pub mod config;
pub mod delegate;
pub mod dispatch;
pub mod egress;
mod exchange;
pub mod handler;
pub mod push;
pub mod remote;
pub mod runtime;
pub mod sse;

pub use config::{ConfigError, WorkerConfig};
pub use dispatch::Dispatcher;
pub use handler::{Handler, JobContext, Outcome};
pub use push::PushSettings;
pub use runtime::{Worker, WorkerError};
