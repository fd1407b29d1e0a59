//! Webhook delivery under load: 1,000 tasks, each with a webhook, through
//! `switchyard dev` and `switchyard demo-agent --pause 0ms`, to a receiver
//! in this process on loopback.
//!
//! `cargo bench --bench webhooks` (needs `DATABASE_URL`; the role must be
//! allowed to create a database: it uses `perf_hooks`, recreated each run).
//! Reports deliveries per second (first task sent → last delivery
//! received), and event → webhook latency p50/p99: from the event's commit
//! (its log row's timestamp) to the receiver's reading of the request.
//!
//! Knobs: `BENCH_TASKS` (default 1000), `BENCH_CLIENTS` (default 32).

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{DevStack, env_usize, percentile, with_database};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const DATABASE: &str = "perf_hooks";

/// Per request: task id, event seq, and when it arrived.
type Arrivals = Arc<Mutex<Vec<(String, i64, DateTime<Utc>)>>>;

async fn receive(
    axum::extract::State(arrivals): axum::extract::State<Arrivals>,
    headers: axum::http::HeaderMap,
    body: String,
) -> &'static str {
    let at = Utc::now();
    let seq = headers.get("switchyard-event-seq").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let update = body.get("statusUpdate").or_else(|| body.get("artifactUpdate"));
    if let (Some(seq), Some(task)) = (seq, update.and_then(|u| u["taskId"].as_str())) {
        arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((task.to_owned(), seq, at));
    }
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let tasks = env_usize("BENCH_TASKS", 1000);
    let clients = env_usize("BENCH_CLIENTS", 32);
    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_hooks WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_hooks").await?;
    let db_url = with_database(&url, DATABASE)?;

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = DevStack::start(&db_url, "webhooks-bench", "[push]\nallow = [\"127.0.0.0/8\"]\n").await?;
    let base = stack.broker.clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build()?;

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (http, next, base, hook) = (http.clone(), next.clone(), base.clone(), hook.clone());
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < tasks {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
                    "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                                "parts": [{"text": "echo hooked"}]},
                    "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {"url": hook}}}});
                let answer: Value =
                    http.post(&base).header("A2A-Version", "1.0").json(&body).send().await?.json().await?;
                anyhow::ensure!(answer.get("error").is_none(), "{answer}");
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&db_url).await?;
    let expected: i64 = loop {
        let (done, deliveries): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM switchyard.tasks WHERE state = 'completed'),
                    (SELECT count(*) FROM switchyard.push_deliveries)",
        )
        .fetch_one(&pool)
        .await?;
        if done as usize == tasks {
            break deliveries;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "only {done} of {tasks} tasks completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while (arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() as i64) < expected {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "deliveries did not all arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let span = started.elapsed();
    let committed: Vec<(uuid::Uuid, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT task_id, seq, created_at FROM switchyard.task_events WHERE kind <> 'message'")
            .fetch_all(&pool)
            .await?;
    let committed: std::collections::HashMap<(String, i64), DateTime<Utc>> =
        committed.into_iter().map(|(t, s, at)| ((t.to_string(), s), at)).collect();
    let arrived = arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut latencies: Vec<f64> = arrived
        .iter()
        .filter_map(|(task, seq, at)| committed.get(&(task.clone(), *seq)).map(|c| (*at - *c).num_microseconds()))
        .flatten()
        .map(|us| us as f64 / 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!("| tasks, clients | deliveries | deliveries/s | event → webhook p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| {tasks}, {clients} | {} | {:.0} | {:.1} | {:.1} |",
        arrived.len(),
        arrived.len() as f64 / span.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}
