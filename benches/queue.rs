//! Queue throughput: claim + complete, in jobs per second, at claim batch
//! sizes 1, 16 and 128 with 1 and 8 concurrent workers; and claim latency
//! with and without 100 000 future-dated jobs (retry backoffs, parked
//! delegations, deadline timers) beside the due ones; and the trickle: one
//! job at a time through a real worker (woken by NOTIFY, claiming, calling
//! its handler), from the enqueue's start to the handler's.
//!
//! Run with `cargo bench --bench queue` and `DATABASE_URL` pointing at a
//! PostgreSQL you can create schemas in. Each run uses a fresh schema,
//! prefilled with finished history so the planner and the indexes see a
//! realistically sized table, not an empty one. Knobs (environment):
//! `BENCH_JOBS` (jobs per measurement, default 20000) and `BENCH_HISTORY`
//! (finished jobs prefilled, default 200000).

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::env_usize;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_engine::a2a::{Message, Part, Role};
use switchyard_engine::{Caller, ClaimedJob, JobKind, NewJob, NewTask, Store, StoreConfig};
use switchyard_worker::{Handler, JobContext, Outcome, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL to a PostgreSQL to benchmark against")?;
    let jobs = env_usize("BENCH_JOBS", 20_000);
    let history = env_usize("BENCH_HISTORY", 200_000);
    let schema = format!("bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let store =
        Store::connect(&StoreConfig { schema: schema.clone(), max_connections: 10, ..StoreConfig::new(url.clone()) })
            .await?;
    store.migrate().await?;

    eprintln!("schema {schema}: prefilling {history} finished jobs");
    fill(&store, history, "done").await?;
    sqlx::query("ANALYZE").execute(store.pg_pool().expect("the benchmark runs on PostgreSQL")).await?;
    print_claim_plan(&store).await?;

    println!("| completion | workers | claim batch | jobs | seconds | jobs/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for completion in [Completion::PerJob, Completion::PerBatch] {
        for workers in [1usize, 8] {
            for batch in [1i64, 16, 128] {
                fill(&store, jobs, "ready").await?;
                let started = Instant::now();
                let done = drain(&store, workers, batch, completion).await?;
                let secs = started.elapsed().as_secs_f64();
                anyhow::ensure!(done == jobs, "drained {done} of {jobs} jobs");
                let rate = jobs as f64 / secs;
                println!("| {completion:?} | {workers} | {batch} | {jobs} | {secs:.2} | {rate:.0} |");
            }
        }
    }

    println!();
    let trickled = trickle(&store, env_usize("BENCH_TRICKLE", 500)).await?;
    println!("| trickle (one job at a time, real worker) | samples | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");
    for (what, sorted) in [
        ("enqueue → handler", &trickled.total),
        ("of which the enqueue (its transaction, NOTIFY, COMMIT)", &trickled.enqueue),
        ("of which COMMIT → handler (wake-up, claim, spawn)", &trickled.woken),
    ] {
        let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
        println!("| {what} | {} | {:.2} | {:.2} |", sorted.len(), pct(0.5), pct(0.99));
    }

    println!();
    println!("| future-dated ready jobs present | claims | claim p50 ms | claim p99 ms |");
    println!("| ---: | ---: | ---: | ---: |");
    let empty = claim_latency(&store).await?;
    println!("| 0 | {} | {:.3} | {:.3} |", empty.0, empty.1, empty.2);
    let future = env_usize("BENCH_FUTURE", 100_000);
    fill_at(&store, future, "ready", "now() + interval '1 hour'").await?;
    sqlx::query("ANALYZE").execute(store.pg_pool().expect("the benchmark runs on PostgreSQL")).await?;
    let crowded = claim_latency(&store).await?;
    println!("| {future} | {} | {:.3} | {:.3} |", crowded.0, crowded.1, crowded.2);

    let drop = format!(r#"DROP SCHEMA "{schema}" CASCADE"#);
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(store.pg_pool().expect("the benchmark runs on PostgreSQL")).await?;
    Ok(())
}

/// Claims 16 at a time (completing each batch) from 8 000 due jobs, one
/// worker; returns (claims, p50 ms, p99 ms) of the claim statement alone.
async fn claim_latency(store: &Store) -> anyhow::Result<(usize, f64, f64)> {
    fill(store, 8_000, "ready").await?;
    let mut latencies = Vec::new();
    loop {
        let started = Instant::now();
        let claimed = store.job_claim("bench-latency", 16, LEASE).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if claimed.is_empty() {
            break;
        }
        let leases: Vec<_> = claimed.iter().map(|j| &j.lease).collect();
        store.job_complete_many(&leases).await?;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    Ok((latencies.len(), at(0.5), at(0.99)))
}

/// Inserts `n` tasks with one job each, in `state`, in bulk.
async fn fill(store: &Store, n: usize, state: &str) -> anyhow::Result<()> {
    fill_at(store, n, state, "now()").await
}

/// Like [`fill`], the jobs due at `run_at` (an SQL expression).
async fn fill_at(store: &Store, n: usize, state: &str, run_at: &str) -> anyhow::Result<()> {
    let finished = if state == "done" { "now()" } else { "NULL" };
    let sql = format!(
        r#"WITH t AS (
               INSERT INTO tasks (id, tenant, owner, context_id, state, status, version)
               SELECT gen_random_uuid(), 'bench', 'bench', 'ctx', 'submitted',
                      '{{"state":"TASK_STATE_SUBMITTED"}}', 1
               FROM generate_series(1, $1)
               RETURNING id)
           INSERT INTO jobs (task_id, kind, state, max_attempts, attempt, finished_at, run_at)
           SELECT id, 'bench', '{state}', 3, CASE WHEN '{state}' = 'done' THEN 1 ELSE 0 END, {finished}, {run_at}
           FROM t"#
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(n as i64)
        .execute(store.pg_pool().expect("the benchmark runs on PostgreSQL"))
        .await?;
    Ok(())
}

/// How a worker records finished jobs.
#[derive(Debug, Clone, Copy)]
enum Completion {
    /// One fenced statement per job, as the worker does when a job's
    /// completion carries events for its task.
    PerJob,
    /// One fenced statement per claimed batch (`job_complete_many`).
    PerBatch,
}

/// Runs `workers` claim/complete loops until the queue is empty.
async fn drain(store: &Store, workers: usize, batch: i64, completion: Completion) -> anyhow::Result<usize> {
    let store = Arc::new(store.clone());
    let mut handles = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("bench-{w}");
            let mut done = 0usize;
            loop {
                let claimed = store.job_claim(&owner, batch, LEASE).await?;
                if claimed.is_empty() {
                    return anyhow::Ok(done);
                }
                match completion {
                    Completion::PerJob => {
                        for job in &claimed {
                            store.job_complete(&job.lease, &[]).await?;
                        }
                    }
                    Completion::PerBatch => {
                        let leases: Vec<_> = claimed.iter().map(|j| &j.lease).collect();
                        let completed = store.job_complete_many(&leases).await?;
                        anyhow::ensure!(completed.len() == claimed.len(), "lost a lease");
                    }
                }
                done += claimed.len();
            }
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    Ok(total)
}

async fn print_claim_plan(store: &Store) -> anyhow::Result<()> {
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM jobs WHERE state = 'ready' AND run_at <= now() \
         ORDER BY run_at, id LIMIT 16 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(store.pg_pool().expect("the benchmark runs on PostgreSQL"))
    .await?;
    eprintln!("claim plan:\n  {}", plan.join("\n  "));
    Ok(())
}

/// A handler that reports when it was called.
struct Probe(tokio::sync::mpsc::UnboundedSender<Instant>);

impl Handler for Probe {
    async fn handle(&self, _job: ClaimedJob, _ctx: JobContext) -> Outcome {
        let _ = self.0.send(Instant::now());
        Outcome::Done(Vec::new())
    }
}

/// The trickle's latencies in ms, each sorted.
struct Trickled {
    /// From the enqueue's start to the handler's.
    total: Vec<f64>,
    /// The enqueue alone.
    enqueue: Vec<f64>,
    /// From the enqueue's return (its COMMIT) to the handler's start.
    woken: Vec<f64>,
}

/// Enqueues one job at a time (5 ms apart) for a real worker and measures
/// from the enqueue's start (its transaction and NOTIFY included) to the
/// handler's start, and the two parts of that. The first 20 warm up.
async fn trickle(store: &Store, samples: usize) -> anyhow::Result<Trickled> {
    let message = Message::new(Role::User, vec![Part::text("trickle")]);
    let task = store.task_submit(NewTask::new(Caller::new("bench", "bench"), message)).await?.task.id;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = WorkerConfig {
        concurrency: 4,
        batch: 4,
        poll_interval: Duration::from_secs(5),
        ..WorkerConfig::new("trickle")
    };
    let worker = Worker::new(store.clone(), config, Probe(tx))?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let mut trickled = Trickled { total: Vec::new(), enqueue: Vec::new(), woken: Vec::new() };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for i in 0..samples + 20 {
        let started = Instant::now();
        store.job_enqueue(task, &NewJob::new(JobKind::Deadline, 1)).await?;
        let committed = Instant::now();
        let called = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.context("the worker stopped")?;
        if i >= 20 {
            trickled.total.push(ms(called - started));
            trickled.enqueue.push(ms(committed - started));
            trickled.woken.push(ms(called.saturating_duration_since(committed)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    running.await??;
    for sorted in [&mut trickled.total, &mut trickled.enqueue, &mut trickled.woken] {
        sorted.sort_by(f64::total_cmp);
    }
    Ok(trickled)
}
