//! The console on a large store: how long its pages take to answer with
//! 100,000 tasks in the list and 2,000 events in one task's log.
//!
//! `cargo bench --bench console` (needs `DATABASE_URL`). It migrates a
//! schema of its own (`console_bench`, recreated each run), writes the
//! tasks straight into it (UUIDv7 ids over the last day, four tenants, two
//! agents for a fifth of them, most completed, some failed, canceled or
//! running) and one task with 2,000 events (its message, a status, 1,996
//! streamed chunks, its ending), starts `switchyard serve` on it, and asks
//! each page sequentially. It reports p50 and p99 per page of the server's
//! time (its `Server-Timing` header: from the request's arrival to the
//! rendered page) and of the time at the client on loopback, beside the
//! budget of 50 ms of server time.
//!
//! Knobs: `BENCH_TASKS` (default 100000), `BENCH_EVENTS` (2000),
//! `BENCH_REQUESTS` per page (50).

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use std::time::Instant;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use common::{env_usize, free_port, percentile, switchyard};
use sqlx::Executor;
use switchyard_engine::{ArtifactUpdate, TaskEvent, TaskState};

const SCHEMA: &str = "console_bench";
const BUDGET_MS: f64 = 50.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let tasks = env_usize("BENCH_TASKS", 100_000);
    let events = env_usize("BENCH_EVENTS", 2_000).max(4);
    let requests = env_usize("BENCH_REQUESTS", 50);

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))).await?;
    let migrate = switchyard(&url, SCHEMA, &["migrate"])?.wait_with_output().await?;
    anyhow::ensure!(migrate.status.success(), "switchyard migrate failed");

    let started = Instant::now();
    let (middle, big) = fill(&pool, tasks, events).await?;
    pool.execute(sqlx::AssertSqlSafe(format!("ANALYZE {SCHEMA}.tasks, {SCHEMA}.task_events, {SCHEMA}.delegations")))
        .await?;
    println!("wrote {tasks} tasks and a task of {events} events in {:.1} s", started.elapsed().as_secs_f64());

    let listen = format!("127.0.0.1:{}", free_port()?);
    let _serve = switchyard(&url, SCHEMA, &["serve", "--listen", &listen])?;
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder().tcp_nodelay(true).timeout(std::time::Duration::from_secs(60)).build()?;
    for _ in 0..300 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let prefix = &big.to_string()[..9];
    let pages: Vec<(&str, String)> = vec![
        ("task list, first page", "/console/tasks".into()),
        ("task list, a page in the middle", format!("/console/tasks?before={middle}")),
        ("task list, state=working (2 %)", "/console/tasks?state=working".into()),
        ("task list, state=rejected (none)", "/console/tasks?state=rejected".into()),
        ("task list, tenant=t2", "/console/tasks?tenant=t2".into()),
        ("task list, agent=beta", "/console/tasks?agent=beta".into()),
        ("task list, id prefix", format!("/console/tasks?id={prefix}")),
        (
            "task list, created since 1 h ago",
            format!("/console/tasks?since={}", (Utc::now() - TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M")),
        ),
        ("task list, live refresh (rows)", "/console/tasks?part=rows".into()),
        ("task page, 2,000 events", format!("/console/tasks/{big}")),
        ("overview", "/console".into()),
        ("agents", "/console/agents".into()),
        ("queues", "/console/queues".into()),
    ];
    println!();
    println!(
        "| page | server p50 ms | server p99 ms | at the client p50 / p99 ms | bytes | server p99 within {BUDGET_MS:.0} ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (name, path) in &pages {
        let (mut took, mut server) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
        let mut bytes = 0;
        let mut phases = String::new();
        for i in 0..requests + 5 {
            let at = Instant::now();
            let response = http.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
            let timing = response.headers().get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            bytes = response.bytes().await?.len();
            if i >= 5 {
                took.push(at.elapsed().as_secs_f64() * 1000.0);
                server.push(duration(&timing, "total").context("a Server-Timing total")?);
                phases = timing;
            }
        }
        took.sort_by(f64::total_cmp);
        server.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&server, 0.5), percentile(&server, 0.99));
        let verdict = if p99 <= BUDGET_MS {
            "yes"
        } else if p50 <= BUDGET_MS {
            "p50 only"
        } else {
            "no"
        };
        println!(
            "| {name} | {p50:.1} | {p99:.1} | {:.1} / {:.1} | {bytes} | {verdict} |",
            percentile(&took, 0.5),
            percentile(&took, 0.99)
        );
        if phases.contains("read;") {
            println!("| (its phases, last request: {phases}) | | | | | |");
        }
    }
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))).await?;
    Ok(())
}

/// A phase's duration (ms) from a `Server-Timing` header.
fn duration(timing: &str, phase: &str) -> Option<f64> {
    timing.split(',').map(str::trim).find_map(|entry| {
        let (name, rest) = entry.split_once(';')?;
        (name == phase).then(|| rest.strip_prefix("dur=")?.parse().ok()).flatten()
    })
}

/// Writes `tasks` tasks and one task of `events` events; the id of a task
/// in the middle of the list, and the big task's id.
async fn fill(pool: &sqlx::PgPool, tasks: usize, events: usize) -> anyhow::Result<(uuid::Uuid, uuid::Uuid)> {
    let status = |state: TaskState| {
        serde_json::to_value(a2a::TaskStatus { state: state.to_a2a(), message: None, timestamp: None })
    };
    let now = Utc::now();
    let mut middle = uuid::Uuid::nil();
    const BATCH: usize = 10_000;
    for start in (0..tasks).step_by(BATCH) {
        let n = BATCH.min(tasks - start);
        let (mut ids, mut tenants, mut states, mut statuses, mut created, mut agents) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in start..start + n {
            // Spread over the last day, oldest first, as ids would be made.
            let at = now - TimeDelta::milliseconds(((tasks - i) as i64) * 86_400_000 / tasks as i64);
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, at.timestamp_subsec_nanos());
            let id = uuid::Uuid::new_v7(ts);
            if i == tasks / 2 {
                middle = id;
            }
            let state = match i % 100 {
                0..=89 => TaskState::Completed,
                90..=94 => TaskState::Failed,
                95..=97 => TaskState::Canceled,
                _ => TaskState::Working,
            };
            ids.push(id);
            tenants.push(format!("t{}", i % 4));
            states.push(state.as_str().to_owned());
            statuses.push(status(state)?);
            created.push(at);
            agents.push(match i % 10 {
                0 => Some("alpha".to_owned()),
                5 => Some("beta".to_owned()),
                _ => None,
            });
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {SCHEMA}.tasks (id, tenant, owner, context_id, state, status, version, created_at, status_at)
             SELECT id, tenant, 'bench', id::text, state, status, 2, at, at + interval '40 milliseconds'
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
                  AS t(id, tenant, state, status, at)"
        )))
        .bind(&ids)
        .bind(&tenants)
        .bind(&states)
        .bind(&statuses)
        .bind(&created)
        .execute(pool)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {SCHEMA}.delegations (task_id, agent, remote_task_id)
             SELECT id, agent, id::text FROM unnest($1::uuid[], $2::text[]) AS d(id, agent) WHERE agent IS NOT NULL"
        )))
        .bind(&ids)
        .bind(&agents)
        .execute(pool)
        .await?;
    }

    // One task with a long log: its message, working, chunks, completed.
    let big = uuid::Uuid::now_v7();
    let mut log: Vec<TaskEvent> = vec![
        TaskEvent::Message(a2a::Message::new(a2a::Role::User, vec![a2a::Part::text("stream a long answer")])),
        TaskEvent::status(TaskState::Working, None),
    ];
    for i in 0..events - 3 {
        log.push(TaskEvent::Artifact(ArtifactUpdate {
            artifact: a2a::Artifact {
                artifact_id: "answer".into(),
                name: Some("answer".into()),
                description: None,
                parts: vec![a2a::Part::text(format!("chunk {i} of a long streamed answer; "))],
                metadata: None,
                extensions: None,
            },
            append: i > 0,
            last_chunk: i + 4 == events,
        }));
    }
    log.push(TaskEvent::status(TaskState::Completed, None));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.tasks (id, tenant, owner, context_id, state, status, version, artifact_ids)
         VALUES ($1, 't0', 'bench', 'big', 'completed', $2, $3, ARRAY['answer'])"
    )))
    .bind(big)
    .bind(status(TaskState::Completed)?)
    .bind(log.len() as i64)
    .execute(pool)
    .await?;
    let kinds: Vec<&str> = log.iter().map(|e| e.kind().as_str()).collect();
    let payloads: Vec<serde_json::Value> = log.iter().map(TaskEvent::to_payload).collect();
    let seqs: Vec<i64> = (1..=log.len() as i64).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.task_events (task_id, seq, kind, payload)
         SELECT $1, seq, kind, payload FROM unnest($2::bigint[], $3::text[], $4::jsonb[]) AS e(seq, kind, payload)"
    )))
    .bind(big)
    .bind(&seqs)
    .bind(&kinds)
    .bind(&payloads)
    .execute(pool)
    .await?;
    Ok((middle, big))
}
