//! Switchyard's HTTP face: to any A2A client, one well-behaved A2A v1.0 agent.
//!
//! Layout, from the wire inwards:
//!
//! - [`server`]: the router (JSON-RPC at `/`, HTTP+JSON routes at the root
//!   and under `/{tenant}`, the agent card, health) and the server loop;
//!   [`state`]: what every handler shares.
//! - [`jsonrpc`], [`rest`]: the two bindings, each a thin decode → call →
//!   encode layer over the one [`handler`]; [`compat`] translates v0.3
//!   JSON-RPC in front of the same handler, and [`compat_rest`] and
//!   [`compat_grpc`] put v0.3's HTTP+JSON and gRPC in front of [`compat`]
//!   (their protobuf model in [`compat_proto`]); [`version`] negotiates.
//! - [`grpc`]: the gRPC binding (A2A v1.0 `A2AService`, and v0.3's beside
//!   it) on its own port, over the same handler; [`grpc_call`]: a call's
//!   span and status, for both.
//! - [`handler`]: one method per A2A operation, over the engine's store.
//! - [`validate`], [`page`]: input checks and opaque page tokens.
//! - [`events`], [`sse`], [`hub`]: task streams read from the event log,
//!   framed as SSE, woken by this process's single LISTEN connection.
//! - [`card`]: the agent card. [`health`]: liveness and readiness.
//! - [`auth`], [`limit`]: who is calling (API keys, JWT, or anonymous by
//!   explicit choice) and how often they may.
//! - [`admin`]: the admin API for remote agents and plans (admin scope).
//! - [`console`]: the operators' web pages at `/console` (admin scope);
//!   [`console_state`]: what they share between viewers.
//! - [`remote_push`]: remote agents' pushes, which wake parked delegations.
//! - [`metrics`]: Prometheus metrics, with deployment-wide gauges read from
//!   the database at scrape time.
//! - [`deadline`]: the bound on a request's work on its store.
//! - [`error`]: the one error type and its mapping to A2A codes and HTTP.

pub mod admin;
pub mod auth;
pub mod card;
pub mod compat;
pub mod compat_grpc;
pub mod compat_proto;
pub mod compat_rest;
pub mod config;
pub mod connections;
pub mod console;
pub mod console_state;
pub mod deadline;
pub mod error;
pub mod events;
pub mod grpc;
pub mod grpc_call;
pub mod handler;
pub mod health;
pub mod hub;
pub mod jsonrpc;
pub mod limit;
pub mod metrics;
pub mod page;
pub mod protojson;
pub mod remote_push;
pub mod rendered;
pub mod reply;
pub mod request;
pub mod rest;
pub mod server;
pub mod sse;
pub mod state;
pub mod validate;
pub mod version;

pub use config::ApiConfig;
pub use connections::{Admission, ConnectionLimits};
pub use error::ApiError;
pub use server::{app, no_delay, serve};
pub use state::AppState;
