//! A long stream into one artifact: does a chunk cost the same at position
//! 2,000 as at position 1?
//!
//! `cargo bench --bench chunks` (needs `DATABASE_URL`). It creates a task in
//! a schema of its own, claims its delegate job as a worker would, and
//! appends 2,000 chunks of 200 bytes to one artifact, one delegation fold
//! (one transaction, the worker's write) per chunk, so each chunk's cost
//! stands alone. For windows of 100 chunks at the start, the middle and the
//! end it reports the time per chunk and the WAL bytes per chunk
//! (`pg_current_wal_lsn`; the bench is the only writer it assumes), and at
//! the end the task row's size and one read of the whole artifact.
//!
//! Knobs: `BENCH_CHUNKS` (default 2000), `BENCH_CHUNK_BYTES` (default 200).

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::env_usize;

use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_engine::a2a::{Artifact, Message, Part, Role};
use switchyard_engine::{ArtifactUpdate, Caller, JobKind, NewJob, NewTask, Store, StoreConfig, TaskEvent, TaskState};

fn chunk(i: usize, bytes: usize) -> TaskEvent {
    TaskEvent::Artifact(ArtifactUpdate {
        artifact: Artifact {
            artifact_id: "stream".into(),
            name: None,
            description: None,
            parts: vec![Part::text(format!("{i:06}:{}", "x".repeat(bytes.saturating_sub(7))))],
            metadata: None,
            extensions: None,
        },
        append: i > 0,
        last_chunk: false,
    })
}

async fn wal_lsn(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").fetch_one(pool).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let chunks = env_usize("BENCH_CHUNKS", 2000);
    let bytes = env_usize("BENCH_CHUNK_BYTES", 200);
    let schema = format!("bench_chunks_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let store = Store::connect(&StoreConfig { schema: schema.clone(), ..StoreConfig::new(&url) }).await?;
    store.migrate().await?;

    let message = Message::new(Role::User, vec![Part::text("stream")]);
    let task = store
        .task_submit(NewTask {
            job: Some(NewJob::new(JobKind::Delegate, 3)),
            ..NewTask::new(Caller::new("bench", "bench"), message)
        })
        .await?
        .task;
    let job = store.job_claim("bench", 1, Duration::from_secs(3600)).await?.pop().context("the job")?;
    store.delegation_fold(&job.lease, None, &[TaskEvent::status(TaskState::Working, None)], false).await?;

    let windows = [0, chunks / 2 - 50, chunks - 100];
    let mut report = Vec::new();
    let mut i = 0;
    for &start in &windows {
        while i < start {
            store.delegation_fold(&job.lease, None, &[chunk(i, bytes)], false).await?;
            i += 1;
        }
        let wal = wal_lsn(store.pg_pool().expect("the benchmark runs on PostgreSQL")).await?;
        let t = Instant::now();
        for _ in 0..100 {
            store.delegation_fold(&job.lease, None, &[chunk(i, bytes)], false).await?;
            i += 1;
        }
        let elapsed = t.elapsed();
        let wal = wal_lsn(store.pg_pool().expect("the benchmark runs on PostgreSQL")).await? - wal;
        report.push((start + 1, start + 100, elapsed.as_secs_f64() * 1000.0 / 100.0, wal as f64 / 100.0));
    }
    let row: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_column_size(t.*) FROM \"{schema}\".tasks t WHERE id = $1"
    )))
    .bind(task.id.0)
    .fetch_one(store.pg_pool().expect("the benchmark runs on PostgreSQL"))
    .await?;
    let t = Instant::now();
    let read = store.task_load(task.id).await?;
    let read_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(read.artifacts[0].parts.len() == i, "{} parts read, {i} written", read.artifacts[0].parts.len());

    println!("| chunks | ms per chunk | WAL bytes per chunk |");
    println!("| --- | ---: | ---: |");
    for (from, to, ms, wal) in report {
        println!("| {from}–{to} | {ms:.3} | {wal:.0} |");
    }
    println!();
    println!("task row after {i} chunks of {bytes} bytes: {row} bytes; reading the whole task back: {read_ms:.1} ms");

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pg_pool().expect("the benchmark runs on PostgreSQL"))
        .await?;
    Ok(())
}
