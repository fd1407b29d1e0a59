//! What the benchmarks share: knobs, ports, the `switchyard` binary as a
//! child process, per-benchmark databases, percentiles.

// Each benchmark is its own crate and uses a part of this.
#![allow(dead_code)]

use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

/// Runs `op` back to back from `clients` concurrent loops for `seconds`;
/// each run's latency in ms (sorted), and how long it all took. The first
/// error stops the measurement.
pub(crate) async fn closed_loop<F, Fut>(
    clients: usize,
    seconds: u64,
    op: F,
) -> anyhow::Result<(Vec<f64>, std::time::Duration)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (op, stop) = (op.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                op().await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = started.elapsed();
    all.sort_by(f64::total_cmp);
    Ok((all, elapsed))
}

/// A numeric knob from the environment, or its default.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The per-cell knobs: `BENCH_SECONDS` (else `seconds`) and the client
/// counts in `BENCH_CLIENTS` (else `clients`, space-separated).
pub(crate) fn cells(seconds: u64, clients: &str) -> (u64, Vec<usize>) {
    let seconds = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(seconds);
    let clients = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| clients.into())
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    (seconds, clients)
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `switchyard ARGS` on database `url` and `schema`, killed when dropped;
/// its stdout discarded, its warnings on stderr, no trace export. The
/// binary built with this bench, or `SWITCHYARD_BIN` (to compare builds in
/// one invocation).
pub(crate) fn switchyard(url: &str, schema: &str, args: &[&str]) -> anyhow::Result<Child> {
    let binary = std::env::var_os("SWITCHYARD_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_switchyard").into());
    Command::new(binary)
        .args(args)
        .env("DATABASE_URL", url)
        .env("SWITCHYARD_SCHEMA", schema)
        .env("RUST_LOG", "warn")
        // Loopback agents, clients without credentials: what a benchmark on
        // one machine needs.
        .env("SWITCHYARD_ANONYMOUS", "true")
        .env("SWITCHYARD_EGRESS_ALLOW", "127.0.0.0/8,::1")
        // Every subscriber of a fan-out benchmark is the same anonymous
        // principal: the default cap (64 streams each) would refuse the rest.
        .env("SWITCHYARD_MAX_STREAMS_PER_PRINCIPAL", "1000")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning switchyard")
}

/// Statements run in `database` so far (BEGIN and COMMIT included), when
/// `pg_stat_statements` is loaded; `admin` is any connection to the server.
pub(crate) async fn statements(admin: &mut sqlx::PgConnection, database: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT sum(calls)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .ok()
    .flatten()
}

/// User + system CPU seconds of one PostgreSQL cluster: its postmaster
/// (the PID its socket's lock file for `port` names) and every process it
/// started — not another cluster's on the same machine (a replica's).
pub(crate) fn cluster_cpu(port: &str) -> anyhow::Result<f64> {
    let lock = std::fs::read_to_string(format!("/var/run/postgresql/.s.PGSQL.{port}.lock"))
        .with_context(|| format!("the lock file of the PostgreSQL on port {port}"))?;
    let postmaster: u32 = lock.lines().next().unwrap_or("").trim().parse().context("the postmaster's PID")?;
    let ticks: f64 = String::from_utf8(std::process::Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()
        .unwrap_or(100.0);
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`: the name may hold spaces; fields follow the last ')'.
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ppid = fields.get(1).and_then(|p| p.parse::<u32>().ok());
        if pid != postmaster && ppid != Some(postmaster) {
            continue;
        }
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
        let (utime, stime) = (fields.get(11), fields.get(12));
        total += utime.and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + stime.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total as f64 / ticks)
}

/// The port of a PostgreSQL URL (5432 when it names none).
pub(crate) fn port_of(url: &str) -> String {
    reqwest::Url::parse(url).ok().and_then(|u| u.port()).unwrap_or(5432).to_string()
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

/// `switchyard demo-agent --pause 0ms` (or another pause) and `switchyard dev --concurrency 64`
/// (gRPC served too) on one database, the config naming the agent `demo` (the default) plus
/// `extra` TOML, both answering; dropped, both stop.
pub(crate) struct DevStack {
    /// The broker's JSON-RPC endpoint (`http://host:port/`).
    pub(crate) broker: String,
    /// The agent's JSON-RPC endpoint (`http://host:port/`).
    pub(crate) agent: String,
    /// The broker's gRPC address (`host:port`).
    pub(crate) grpc: String,
    _processes: [Child; 2],
}

impl DevStack {
    pub(crate) async fn start(db_url: &str, name: &str, extra: &str) -> anyhow::Result<DevStack> {
        DevStack::start_paced(db_url, name, extra, "0ms").await
    }

    /// The same with the demo agent pausing `pause` between steps (a
    /// stream's chunks arrive that far apart).
    pub(crate) async fn start_paced(db_url: &str, name: &str, extra: &str, pause: &str) -> anyhow::Result<DevStack> {
        let agent_listen = format!("127.0.0.1:{}", free_port()?);
        let agent = switchyard(db_url, "switchyard", &["demo-agent", "--listen", &agent_listen, "--pause", pause])?;
        let config = std::env::temp_dir().join(format!("switchyard-{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"http://{agent_listen}\"\n\n{extra}"
            ),
        )?;
        let config = config.to_string_lossy().into_owned();
        let api_listen = format!("127.0.0.1:{}", free_port()?);
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let dev = switchyard(
            db_url,
            "switchyard",
            &["dev", "--listen", &api_listen, "--grpc-listen", &grpc, "--config", &config, "--concurrency", "64"],
        )?;
        let stack = DevStack {
            broker: format!("http://{api_listen}/"),
            agent: format!("http://{agent_listen}/"),
            grpc,
            _processes: [agent, dev],
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            let ready = http.get(format!("{}readyz", stack.broker)).send().await.is_ok_and(|r| r.status().is_success());
            if ready && http.get(format!("{}.well-known/agent-card.json", stack.agent)).send().await.is_ok() {
                return Ok(stack);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("switchyard dev or the demo agent did not come up")
    }
}
