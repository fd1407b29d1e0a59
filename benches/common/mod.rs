//! What the benchmarks share: knobs, ports, the `switchyard` binary as a
//! child process, per-benchmark databases, percentiles.

// Each benchmark is its own crate and uses a part of this.
#![allow(dead_code)]

use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

/// A numeric knob from the environment, or its default.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `switchyard ARGS` on database `url` and `schema`, killed when dropped;
/// its stdout discarded, its warnings on stderr, no trace export.
pub(crate) fn switchyard(url: &str, schema: &str, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("SWITCHYARD_SCHEMA", schema)
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning switchyard")
}

/// The same server's URL for another database.
pub(crate) fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url)?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// The `p` quantile (0–1) of sorted values; 0 for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
