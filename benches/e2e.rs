//! End to end: tasks through real Switchyard processes to
//! `switchyard demo-agent` on loopback, in three shapes, one after the
//! other in one invocation (this machine's speed drifts; only figures from
//! one run compare):
//!
//! - `serve + worker, PostgreSQL`: the deployment shape, two processes;
//! - `dev, PostgreSQL`: api and worker in one process;
//! - `dev, embedded`: the same one process on the embedded SQLite store
//!   (WAL, `synchronous=FULL`, the default), in a fresh directory;
//! - `dev, embedded, synchronous=NORMAL`: the same without an fsync per
//!   commit (what `?synchronous=NORMAL` trades away: the last commits on
//!   power loss, never on a process crash).
//!
//! `BENCH_SHAPES` picks some (`split,dev-pg,dev-sqlite,dev-sqlite-normal`).
//!
//! Run with `cargo bench --bench e2e` and `DATABASE_URL` set. Knobs:
//! `BENCH_TASKS` (default 2000), `BENCH_CLIENTS` (concurrent clients,
//! default 32). Reports acceptance (SendMessage with returnImmediately:
//! durable write + response), completion (accepted → COMPLETED by the agent,
//! from the tasks' own timestamps) and blocking round trips.

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{env_usize, free_port, percentile, switchyard};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use switchyard_engine::{Store, StoreConfig, TaskState};
use tokio::process::Child;

async fn send(http: &reqwest::Client, base: &str, text: &str, immediately: bool) -> anyhow::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]},
        "configuration": {"returnImmediately": immediately}}});
    let answer: Value = http.post(base).header("A2A-Version", "1.0").json(&body).send().await?.json().await?;
    anyhow::ensure!(answer.get("error").is_none(), "error: {answer}");
    Ok(answer)
}

/// Runs `total` sends over `clients` concurrent clients; returns each latency in ms.
async fn load(base: &str, total: usize, clients: usize, immediately: bool) -> anyhow::Result<(Vec<f64>, Duration)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (http, next, base) = (http.clone(), next.clone(), base.to_owned());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let t = Instant::now();
                send(&http, &base, "echo bench", immediately).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = started.elapsed();
    all.sort_by(f64::total_cmp);
    Ok((all, elapsed))
}

/// One way of running Switchyard.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Split,
    DevPostgres,
    DevEmbedded,
    /// The embedded store with `synchronous=NORMAL`: no fsync per commit.
    DevEmbeddedNormal,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Split => "serve + worker, PostgreSQL",
            Shape::DevPostgres => "dev, PostgreSQL",
            Shape::DevEmbedded => "dev, embedded SQLite",
            Shape::DevEmbeddedNormal => "dev, embedded, synchronous=NORMAL",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Shape::Split => "split",
            Shape::DevPostgres => "dev-pg",
            Shape::DevEmbedded => "dev-sqlite",
            Shape::DevEmbeddedNormal => "dev-sqlite-normal",
        }
    }
}

/// What one shape measured.
struct Row {
    accepted_per_sec: f64,
    accept: (f64, f64),
    completed_per_sec: f64,
    turnaround: (f64, f64, f64),
    blocking_per_sec: f64,
    blocking: (f64, f64),
}

const WORKER: [&str; 4] = ["--concurrency", "64", "--batch", "16"];

async fn measure(shape: Shape, pg_url: &str, config: &str, tasks: usize, clients: usize) -> anyhow::Result<Row> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let schema = format!("bench_e2e_{id}");
    let dir = std::env::temp_dir().join(format!("switchyard-bench-e2e-{id}"));
    let url = match shape {
        Shape::DevEmbedded => format!("sqlite://{}", dir.join("switchyard.db").display()),
        Shape::DevEmbeddedNormal => format!("sqlite://{}?synchronous=NORMAL", dir.join("switchyard.db").display()),
        _ => pg_url.to_owned(),
    };
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut processes: Vec<Child> = Vec::new();
    match shape {
        Shape::Split => {
            anyhow::ensure!(switchyard(&url, &schema, &["migrate"])?.wait().await?.success(), "migrate failed");
            processes.push(switchyard(&url, &schema, &["serve", "--listen", &listen, "--config", config])?);
            processes.push(switchyard(&url, &schema, &[&["worker", "--config", config][..], &WORKER].concat())?);
        }
        Shape::DevPostgres | Shape::DevEmbedded | Shape::DevEmbeddedNormal => {
            let args = [&["dev", "--listen", &listen, "--config", config][..], &WORKER].concat();
            processes.push(switchyard(&url, &schema, &args)?);
        }
    }
    let base = format!("http://{listen}/");
    let probe = reqwest::Client::new();
    for _ in 0..100 {
        if probe.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up: connections, the agent card, prepared statements.
    load(&base, 50, 8, false).await?;
    // Read through the store itself (beside the embedded store's owner, read-only).
    let store = Store::connect(&StoreConfig { schema: schema.clone(), read_only: true, ..StoreConfig::new(&url) })
        .await
        .context("reading the store")?;
    let open = || async { anyhow::Ok(store.stats().await?.tasks.iter().map(|(_, n)| *n).sum::<i64>()) };

    let (accepts, accept_time) = load(&base, tasks, clients, true).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while open().await? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "tasks still open after 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The most recent completions are the measured tasks (the warm-up's ended before).
    let done = store.tasks_recent(None, Some(TaskState::Completed), tasks as i64).await?;
    anyhow::ensure!(done.len() == tasks, "{} of {tasks} tasks completed", done.len());
    let mut turnarounds: Vec<f64> =
        done.iter().map(|t| (t.status_at - t.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0).collect();
    turnarounds.sort_by(f64::total_cmp);
    let first = done.iter().map(|t| t.created_at).min().context("no tasks")?;
    let last = done.iter().map(|t| t.status_at).max().context("no tasks")?;
    let span = (last - first).num_microseconds().unwrap_or(1) as f64 / 1e6;

    let blocking_total = tasks / 4;
    let (blocking, blocking_time) = load(&base, blocking_total, clients, false).await?;

    store.close().await;
    for mut process in processes {
        process.kill().await?;
    }
    match shape {
        Shape::DevEmbedded | Shape::DevEmbeddedNormal => std::fs::remove_dir_all(&dir)?,
        _ => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(pg_url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&pool).await?;
        }
    }
    Ok(Row {
        accepted_per_sec: tasks as f64 / accept_time.as_secs_f64(),
        accept: (percentile(&accepts, 0.5), percentile(&accepts, 0.99)),
        completed_per_sec: tasks as f64 / span,
        turnaround: (percentile(&turnarounds, 0.5), percentile(&turnarounds, 0.95), percentile(&turnarounds, 0.99)),
        blocking_per_sec: blocking_total as f64 / blocking_time.as_secs_f64(),
        blocking: (percentile(&blocking, 0.5), percentile(&blocking, 0.99)),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL to a PostgreSQL to benchmark against")?;
    let tasks = env_usize("BENCH_TASKS", 2000);
    let clients = env_usize("BENCH_CLIENTS", 32);

    let agent_port = free_port()?;
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = switchyard(&url, "unused", &["demo-agent", "--listen", &agent_listen])?;
    let config = std::env::temp_dir().join(format!("bench-e2e-{agent_port}.toml"));
    std::fs::write(
        &config,
        format!("default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"http://{agent_listen}\"\n"),
    )?;
    let config = config.to_string_lossy().into_owned();
    let probe = reqwest::Client::new();
    for _ in 0..100 {
        if probe.get(format!("http://{agent_listen}/.well-known/agent-card.json")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let all = [Shape::Split, Shape::DevPostgres, Shape::DevEmbedded, Shape::DevEmbeddedNormal];
    let chosen = std::env::var("BENCH_SHAPES").unwrap_or_default();
    let shapes: Vec<Shape> =
        all.into_iter().filter(|s| chosen.is_empty() || chosen.split(',').any(|c| c.trim() == s.key())).collect();
    let mut rows = Vec::new();
    for &shape in &shapes {
        rows.push(measure(shape, &url, &config, tasks, clients).await.with_context(|| shape.name())?);
    }

    println!("{tasks} tasks, {clients} clients");
    println!();
    print!("| measure |");
    for shape in &shapes {
        print!(" {} |", shape.name());
    }
    println!();
    println!("| --- |{}", " ---: |".repeat(shapes.len()));
    let line = |label: &str, cell: &dyn Fn(&Row) -> String| {
        print!("| {label} |");
        for row in &rows {
            print!(" {} |", cell(row));
        }
        println!();
    };
    line("accepted per second (returnImmediately)", &|r| format!("{:.0}", r.accepted_per_sec));
    line("accept latency p50 / p99 (ms)", &|r| format!("{:.1} / {:.1}", r.accept.0, r.accept.1));
    line("completed per second (first accept → last completion)", &|r| format!("{:.0}", r.completed_per_sec));
    line("accept → completed p50 / p95 / p99 (ms)", &|r| {
        format!("{:.0} / {:.0} / {:.0}", r.turnaround.0, r.turnaround.1, r.turnaround.2)
    });
    line(&format!("blocking round trips per second ({} sends)", tasks / 4), &|r| format!("{:.0}", r.blocking_per_sec));
    line("blocking round trip p50 / p99 (ms)", &|r| format!("{:.1} / {:.1}", r.blocking.0, r.blocking.1));
    Ok(())
}
