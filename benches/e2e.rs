//! End to end: tasks through `switchyard serve`, one `switchyard worker` and
//! `switchyard demo-agent`, all real processes on loopback.
//!
//! Run with `cargo bench --bench e2e` and `DATABASE_URL` set. Knobs:
//! `BENCH_TASKS` (default 2000), `BENCH_CLIENTS` (concurrent clients,
//! default 32). Reports acceptance (SendMessage with returnImmediately:
//! durable write + response), completion (accepted → COMPLETED by the agent,
//! from the task's own timestamps) and blocking round trips.

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{env_usize, free_port, percentile, switchyard};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL to a PostgreSQL to benchmark against")?;
    let tasks = env_usize("BENCH_TASKS", 2000);
    let clients = env_usize("BENCH_CLIENTS", 32);
    let schema = format!("bench_e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let status = switchyard(&url, &schema, &["migrate"])?.wait().await?;
    anyhow::ensure!(status.success(), "migrate failed");

    let agent_port = free_port()?;
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = switchyard(&url, &schema, &["demo-agent", "--listen", &agent_listen])?;
    let config = std::env::temp_dir().join(format!("{schema}.toml"));
    std::fs::write(
        &config,
        format!("default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"http://{agent_listen}\"\n"),
    )?;
    let config = config.to_string_lossy().into_owned();
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let _serve = switchyard(&url, &schema, &["serve", "--listen", &listen, "--config", &config])?;
    let _worker = switchyard(&url, &schema, &["worker", "--config", &config, "--concurrency", "64", "--batch", "16"])?;
    let base = format!("http://{listen}/");
    let probe = reqwest::Client::new();
    for _ in 0..100 {
        if probe.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
            && probe.get(format!("http://{agent_listen}/.well-known/agent-card.json")).send().await.is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up: connections, the agent card, prepared statements.
    load(&base, 50, 8, false).await?;

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    let stat = |sql: &str| sqlx::AssertSqlSafe(sql.replace("{schema}", &schema));
    let baseline: i64 = sqlx::query_scalar(stat("SELECT count(*) FROM \"{schema}\".tasks")).fetch_one(&pool).await?;

    let (accepts, accept_time) = load(&base, tasks, clients, true).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar(stat("SELECT count(*) FROM \"{schema}\".tasks WHERE state = 'completed'"))
            .fetch_one(&pool)
            .await?;
        if done >= baseline + tasks as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {done} of {} tasks completed", baseline + tasks as i64);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut turnarounds: Vec<f64> = sqlx::query_scalar(stat(
        "SELECT (EXTRACT(EPOCH FROM status_at - created_at) * 1000)::float8 FROM \"{schema}\".tasks
         ORDER BY created_at DESC LIMIT $1",
    ))
    .bind(tasks as i64)
    .fetch_all(&pool)
    .await?;
    turnarounds.sort_by(f64::total_cmp);
    let span: f64 = sqlx::query_scalar(stat(
        "SELECT EXTRACT(EPOCH FROM max(status_at) - min(created_at))::float8 FROM
         (SELECT created_at, status_at FROM \"{schema}\".tasks ORDER BY created_at DESC LIMIT $1) recent",
    ))
    .bind(tasks as i64)
    .fetch_one(&pool)
    .await?;

    let blocking_total = tasks / 4;
    let (blocking, blocking_time) = load(&base, blocking_total, clients, false).await?;

    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| tasks, clients | {tasks}, {clients} |");
    println!("| accepted per second (returnImmediately) | {:.0} |", tasks as f64 / accept_time.as_secs_f64());
    println!(
        "| accept latency p50 / p99 (ms) | {:.1} / {:.1} |",
        percentile(&accepts, 0.5),
        percentile(&accepts, 0.99)
    );
    println!("| completed per second (first accept → last completion) | {:.0} |", tasks as f64 / span);
    println!(
        "| accept → completed p50 / p95 / p99 (ms) | {:.0} / {:.0} / {:.0} |",
        percentile(&turnarounds, 0.5),
        percentile(&turnarounds, 0.95),
        percentile(&turnarounds, 0.99)
    );
    println!(
        "| blocking round trips per second ({blocking_total} sends) | {:.0} |",
        blocking_total as f64 / blocking_time.as_secs_f64()
    );
    println!(
        "| blocking round trip p50 / p99 (ms) | {:.1} / {:.1} |",
        percentile(&blocking, 0.5),
        percentile(&blocking, 0.99)
    );

    sqlx::query(stat("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await?;
    Ok(())
}
