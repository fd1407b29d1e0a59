//! Streams: from an event's commit to each of N subscribers of one task.
//!
//! `cargo bench --bench sse_fanout` (needs `DATABASE_URL`; the role must be
//! allowed to create a database). It starts `switchyard demo-agent` (20 ms
//! between steps) and `switchyard dev` on a database of its own
//! (`perf_sse`, recreated), sends `stream N` with `returnImmediately`, and
//! subscribes N clients at once over HTTP+JSON (`GET /tasks/{id}:subscribe`).
//! Each event's latency is from its commit (`task_events.created_at`, the
//! database's clock) to its arrival at a subscriber (this host's clock: the
//! same machine). The snapshot each subscription starts with is not counted.
//!
//! Each N is run twice: alone, and with `BENCH_NOISE` (default 8) clients
//! sending other tasks meanwhile, whose commits the subscribers must not
//! pay for.
//!
//! The subscribers are tokio tasks reading raw bytes and splitting lines,
//! so the client is not the bottleneck a Python one is at 100 streams.
//! Knobs: `BENCH_SUBSCRIBERS` (default "1 10 100"), `BENCH_NOISE`,
//! `BENCH_CHUNKS` (the stream's length, default 100: 2 s at 20 ms each).

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use common::{DevStack, percentile, with_database};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const DATABASE: &str = "perf_sse";

/// Reads one subscription to its end: (event id, arrival) for every event
/// after the snapshot.
async fn subscribe(http: reqwest::Client, url: String) -> anyhow::Result<Vec<(i64, SystemTime)>> {
    let mut response = http.get(&url).header("A2A-Version", "1.0").send().await?;
    anyhow::ensure!(response.status().is_success(), "subscription refused: {}", response.status());
    let mut pending: Vec<u8> = Vec::new();
    let mut id = None;
    let mut frames = 0usize;
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let now = SystemTime::now();
        pending.extend_from_slice(&chunk);
        // Whole lines only: a frame may arrive in pieces.
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(rest) = line.strip_prefix(b"id: ") {
                id = std::str::from_utf8(rest).ok().and_then(|s| s.trim().parse::<i64>().ok());
            } else if line.starts_with(b"data:") {
                frames += 1;
                if let Some(seq) = id.take()
                    && frames > 1
                {
                    arrivals.push((seq, now));
                }
            }
        }
    }
    Ok(arrivals)
}

/// Other clients' work meanwhile: blocking echo tasks, back to back.
fn noise(broker: &str, clients: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..clients)
        .map(|_| {
            let (http, url, stop) = (reqwest::Client::new(), broker.to_owned(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
                        "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                                    "parts": [{"text": "echo elsewhere"}]}}});
                    http.post(&url).header("A2A-Version", "1.0").json(&body).send().await?.error_for_status()?;
                }
                Ok(())
            })
        })
        .collect()
}

/// One run: a streaming task, `subscribers` on it; latencies in ms, sorted,
/// and the fewest and most events any subscriber saw.
async fn run(
    stack: &DevStack,
    db: &mut PgConnection,
    subscribers: usize,
    noisy: usize,
    chunks: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let rest = stack.broker.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().pool_max_idle_per_host(subscribers + 4).tcp_nodelay(true).build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let background = noise(&stack.broker, noisy, stop.clone());
    let sent: Value = http
        .post(format!("{rest}/message:send"))
        .header("A2A-Version", "1.0")
        .json(&json!({"message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                                  "parts": [{"text": format!("stream {chunks}")}]},
                      "configuration": {"returnImmediately": true}}))
        .send()
        .await?
        .json()
        .await?;
    let task = sent["task"]["id"].as_str().context("no task id in the answer")?.to_owned();
    let url = format!("{rest}/tasks/{task}:subscribe");
    let readers: Vec<_> = (0..subscribers).map(|_| tokio::spawn(subscribe(http.clone(), url.clone()))).collect();
    let mut arrivals = Vec::new();
    for reader in readers {
        arrivals.push(reader.await??);
    }
    stop.store(true, Ordering::Relaxed);
    for handle in background {
        handle.await??;
    }
    let commits: HashMap<i64, f64> = sqlx::query_as::<_, (i64, f64)>(
        "SELECT seq, extract(epoch FROM created_at)::float8 FROM switchyard.task_events WHERE task_id = $1::uuid",
    )
    .bind(&task)
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .collect();
    let mut latencies = Vec::new();
    for (seq, at) in arrivals.iter().flatten() {
        let Some(committed) = commits.get(seq) else { continue };
        let arrived = at.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64();
        latencies.push((arrived - committed) * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let seen = arrivals.iter().map(Vec::len);
    Ok((latencies, seen.clone().min().unwrap_or(0), seen.max().unwrap_or(0)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL")?;
    let counts: Vec<usize> = std::env::var("BENCH_SUBSCRIBERS")
        .unwrap_or_else(|_| "1 10 100".into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let noisy = common::env_usize("BENCH_NOISE", 8);
    let chunks = common::env_usize("BENCH_CHUNKS", 100);
    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_sse WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_sse").await?;
    let db_url = with_database(&url, DATABASE)?;
    let stack = DevStack::start_paced(&db_url, "sse-fanout", "", "20ms").await?;
    let mut db = PgConnection::connect(&db_url).await?;
    // Warm up: connections, the card cache, plans.
    run(&stack, &mut db, 2, 0, 10).await?;

    println!(
        "| subscribers | other clients meanwhile | events seen (min–max) | samples | p50 ms | p90 ms | p99 ms | max ms |"
    );
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for &n in &counts {
        for others in [0, noisy] {
            let (latencies, fewest, most) = run(&stack, &mut db, n, others, chunks).await?;
            println!(
                "| {n} | {others} | {fewest}–{most} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                latencies.len(),
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.9),
                percentile(&latencies, 0.99),
                latencies.last().copied().unwrap_or(0.0)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}
