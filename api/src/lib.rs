//! Switchyard's HTTP face.
//!
//! Layout:
//!
//! - [`health`]: `GET /healthz` (the process is up) and `GET /readyz` (the
//!   database answers).
//! - [`server`]: the router and the server loop with graceful shutdown.
//!
//! The A2A bindings (JSON-RPC, HTTP+JSON, SSE) and the admin API mount on
//! the same router as they land; they reach the engine only through
//! [`switchyard_engine::Store`].

pub mod health;
pub mod server;

pub use server::{AppState, app, serve};
