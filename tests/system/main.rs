//! Whole-system tests: a real PostgreSQL (`DATABASE_URL`, or a container
//! started by testcontainers), real processes and real sockets. Each test
//! gets a schema of its own, so they run in parallel.

mod api;
mod batch;
mod browser;
mod chaos;
mod client;
mod conformance;
mod connections;
mod console;
mod contract;
mod delegation;
mod deploy;
mod errors;
mod exact;
mod first_run;
mod harness;
mod interop;
mod layout;
mod plans;
mod strict_agent;
mod webhooks;

mod a2a_compat;
mod a2a_grpc;
mod a2a_jsonrpc;
mod a2a_rest;
mod a2a_stream;

mod listener;
mod log_windows;
mod processes;
mod protojson;
mod proxy;
mod query_plans;
mod queue;
mod races;
mod reach;
mod replica;
mod schema;
mod security;
mod shards;
mod store;
mod traces;
mod worker;
