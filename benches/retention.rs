//! Retention of a large event log: windows dropped whole against rows
//! deleted one by one, in one invocation.
//!
//! `cargo bench --bench retention` (needs `DATABASE_URL`). Two schemas get
//! the same history: `BENCH_EVENTS` (default 10,000,000) log rows of
//! `BENCH_EVENTS_PER_TASK` (20) per task, every task finished 40 days ago
//! (created over the 5 days before), each with its job and idempotency
//! key, and after it a tenth as much recent history that is kept.
//!
//! - **rows**: the schema as it was before the log was partitioned
//!   (migrated, then the partitioning migration reverted): retention
//!   deletes each task and its log rows follow through the cascade — the
//!   store's sweep statement, 500 tasks per transaction, until done.
//! - **windows**: today's schema; the history's days are windows of the
//!   log (made here with the store's own DDL, since the store makes
//!   windows only from now on), and `Store::retention_sweep` deletes the
//!   tasks in the same batches and then drops each window whole.
//!
//! Reported per arm: the sweep's time and WAL, the log's size on disk
//! before, after the sweep and after the `VACUUM` that deleted rows still
//! need (its time and WAL too), and what an append costs: `BENCH_APPENDS`
//! (2,000) events appended one per transaction through the store, four
//! rounds per arm alternating between the arms, the median round's ms and
//! WAL per append; and the bulk fill's rate.

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::env_usize;
use sqlx::{Executor, PgPool};
use switchyard_engine::a2a::{Message, Part, Role};
use switchyard_engine::{Caller, NewTask, Store, StoreConfig, TaskEvent};

const DAY_MS: i64 = 86_400_000;
/// The last migration before the log was partitioned.
const BEFORE_PARTITIONING: i64 = 20_261_206_000_002;

struct Arm {
    name: &'static str,
    schema: &'static str,
    partitioned: bool,
}

#[derive(Default)]
struct Figures {
    fill_s: f64,
    size_before: i64,
    sweep_s: f64,
    sweep_wal: i64,
    size_after: i64,
    vacuum_s: f64,
    vacuum_wal: i64,
    size_vacuumed: i64,
    append_ms: f64,
    append_wal: f64,
    deleted_tasks: u64,
    dropped: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let events = i64::try_from(env_usize("BENCH_EVENTS", 10_000_000))?;
    let per_task = i64::try_from(env_usize("BENCH_EVENTS_PER_TASK", 20).max(1))?;
    let appends = env_usize("BENCH_APPENDS", 2_000);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    let arms = [
        Arm { name: "rows (deleted through the cascade)", schema: "retention_bench_rows", partitioned: false },
        Arm { name: "windows (dropped whole)", schema: "retention_bench_windows", partitioned: true },
    ];
    println!(
        "{events} old log rows ({per_task} per task, {} tasks) and {} recent ones per arm",
        events / per_task,
        events / 10
    );
    let mut results = Vec::new();
    let mut stores = Vec::new();
    for arm in &arms {
        let (figures, store) = run(&pool, &url, arm, events, per_task).await?;
        results.push(figures);
        stores.push(store);
    }
    // Appends alternate between the arms, four rounds each, so that the
    // machine's drift falls on both; the median round counts.
    let mut rounds: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..4 {
        for (i, store) in stores.iter().enumerate() {
            rounds[i].push(appends_cost(&pool, store, appends).await?);
        }
    }
    for (figures, mut round) in results.iter_mut().zip(rounds) {
        round.sort_by(|a, b| a.0.total_cmp(&b.0));
        (figures.append_ms, figures.append_wal) = round[round.len() / 2];
    }
    for arm in &arms {
        pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", arm.schema))).await?;
    }
    println!();
    println!("| figure | {} | {} |", arms[0].name, arms[1].name);
    println!("| --- | ---: | ---: |");
    let row = |what: &str, f: &dyn Fn(&Figures) -> String| {
        println!("| {what} | {} | {} |", f(&results[0]), f(&results[1]));
    };
    let mb = |b: i64| format!("{:.1} MB", b as f64 / 1e6);
    row("bulk fill of the log (rows/s)", &|f| format!("{:.0}", (events + events / 10) as f64 / f.fill_s));
    row("tasks deleted / windows dropped", &|f| format!("{} / {}", f.deleted_tasks, f.dropped));
    row("retention sweep: time", &|f| format!("{:.1} s", f.sweep_s));
    row("retention sweep: WAL", &|f| mb(f.sweep_wal));
    row("log on disk before", &|f| mb(f.size_before));
    row("log on disk after the sweep", &|f| mb(f.size_after));
    row("VACUUM of the log after: time", &|f| format!("{:.1} s", f.vacuum_s));
    row("VACUUM of the log after: WAL", &|f| mb(f.vacuum_wal));
    row("log on disk after VACUUM", &|f| mb(f.size_vacuumed));
    row("one-event append, one per transaction: ms", &|f| format!("{:.3}", f.append_ms));
    row("one-event append: WAL bytes", &|f| format!("{:.0}", f.append_wal));
    Ok(())
}

async fn run(pool: &PgPool, url: &str, arm: &Arm, events: i64, per_task: i64) -> anyhow::Result<(Figures, Store)> {
    let schema = arm.schema;
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await?;
    let config = StoreConfig { schema: schema.into(), ..StoreConfig::new(url) };
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    if !arm.partitioned {
        store.migrate_undo(BEFORE_PARTITIONING).await?;
    }
    let now_ms: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint").fetch_one(pool).await?;
    let old_from = (now_ms - 45 * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    if arm.partitioned {
        // The store makes windows from now on; the history's days get theirs
        // here, with the store's DDL, in place of the (empty) history partition.
        pool.execute(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {schema}.task_events DETACH PARTITION {schema}.task_events_history; \
             DROP TABLE {schema}.task_events_history"
        )))
        .await?;
        for day in 0..6 {
            let (from, to) = (old_from + day * DAY_MS, old_from + (day + 1) * DAY_MS);
            let name = format!("task_events_old_{day}");
            pool.execute(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {schema}.{name} (LIKE {schema}.task_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
                 ALTER TABLE {schema}.task_events ATTACH PARTITION {schema}.{name} \
                 FOR VALUES FROM ('{}') TO ('{}')",
                uuid_at(from),
                uuid_at(to)
            )))
            .await?;
        }
    }

    let started = Instant::now();
    let tasks = events / per_task;
    // Old: created over five days from `old_from`, finished 40 days ago.
    fill(pool, schema, tasks, per_task, old_from, 5 * DAY_MS, "now() - interval '40 days'").await?;
    // Recent and kept: ids of the next minute (inside the windows the
    // migration made ahead), written after the old.
    fill(pool, schema, tasks / 10, per_task, now_ms + 1_000, 60_000, "now()").await?;
    let fill_s = started.elapsed().as_secs_f64();
    pool.execute(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {schema}.tasks, {schema}.task_events"))).await?;
    let size_before = log_size(pool, schema).await?;
    println!("{}: filled in {fill_s:.0} s, log {:.0} MB", arm.name, size_before as f64 / 1e6);

    let retention = Duration::from_secs(30 * 86_400);
    let wal = wal_at(pool).await?;
    let started = Instant::now();
    let (deleted_tasks, dropped) = if arm.partitioned {
        let swept = store.retention_sweep(retention, 500, u32::MAX).await?;
        (swept.tasks, swept.log.dropped)
    } else {
        // The store's sweep statement (pg/retention.rs), which this schema's
        // cascade turns into a delete of every log row of each task.
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {schema}.tasks WHERE id = ANY(ARRAY(
                     SELECT id FROM {schema}.tasks
                     WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND parent_id IS NULL
                       AND status_at < now() - make_interval(secs => $1)
                     ORDER BY status_at LIMIT $2
                     FOR UPDATE SKIP LOCKED))"
            )))
            .bind(retention.as_secs_f64())
            .bind(500_i64)
            .execute(pool)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < 500 {
                break;
            }
        }
        (deleted, 0)
    };
    let sweep_s = started.elapsed().as_secs_f64();
    let sweep_wal = wal_since(pool, &wal).await?;
    anyhow::ensure!(deleted_tasks == u64::try_from(tasks)?, "{}: deleted {deleted_tasks} of {tasks} tasks", arm.name);
    let size_after = log_size(pool, schema).await?;

    let wal = wal_at(pool).await?;
    let started = Instant::now();
    pool.execute(sqlx::AssertSqlSafe(format!("VACUUM {schema}.task_events"))).await?;
    let vacuum_s = started.elapsed().as_secs_f64();
    let vacuum_wal = wal_since(pool, &wal).await?;
    let size_vacuumed = log_size(pool, schema).await?;
    let kept: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {schema}.task_events")))
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(kept == tasks / 10 * per_task, "{}: {kept} log rows kept", arm.name);

    let figures = Figures {
        fill_s,
        size_before,
        sweep_s,
        sweep_wal,
        size_after,
        vacuum_s,
        vacuum_wal,
        size_vacuumed,
        append_ms: 0.0,
        append_wal: 0.0,
        deleted_tasks,
        dropped,
    };
    Ok((figures, store))
}

/// `appends` events appended to open tasks through the store, one event
/// per transaction: ms and WAL bytes per append.
async fn appends_cost(pool: &PgPool, store: &Store, appends: usize) -> anyhow::Result<(f64, f64)> {
    let mut open = Vec::new();
    for i in 0..20 {
        let new = NewTask::new(Caller::new("acme", "user"), message(&format!("task {i}")));
        open.push(store.task_submit(new).await?.task.id);
    }
    let wal = wal_at(pool).await?;
    let started = Instant::now();
    for i in 0..appends {
        let event = TaskEvent::Message(message("one more line"));
        store.task_append(open[i % open.len()], &[event], None).await?;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0 / appends as f64;
    Ok((ms, wal_since(pool, &wal).await? as f64 / appends as f64))
}

/// `tasks` finished tasks created over `span_ms` from `from_ms` (UUIDv7
/// ids of that time), each with `per_task` log rows, a done job and a key.
async fn fill(
    pool: &PgPool,
    schema: &str,
    tasks: i64,
    per_task: i64,
    from_ms: i64,
    span_ms: i64,
    finished: &str,
) -> anyhow::Result<()> {
    let step = (span_ms / tasks.max(1)).max(1);
    let statements = [
        format!(
            "INSERT INTO {schema}.tasks (id, tenant, owner, context_id, state, status, version, created_at, status_at)
             SELECT (lpad(to_hex({from_ms} + g * {step}), 12, '0') || substr(md5(random()::text), 1, 20))::uuid,
                    'acme', 'user', 'ctx-' || g, 'completed', '{{\"state\": \"completed\"}}', {per_task},
                    to_timestamp(({from_ms} + g * {step}) / 1000.0), {finished}
             FROM generate_series(1, {tasks}) g"
        ),
        format!(
            "INSERT INTO {schema}.task_events (task_id, seq, kind, payload, created_at)
             SELECT t.id, s, 'artifact',
                    jsonb_build_object('artifactId', 'out', 'parts',
                                       jsonb_build_array(jsonb_build_object('text', repeat('chunk ', 16)))),
                    t.created_at
             FROM {schema}.tasks t, generate_series(1, {per_task}) s
             WHERE t.status_at = {finished}"
        ),
        format!(
            "INSERT INTO {schema}.idempotency_keys (tenant, owner, key, task_id, created_at)
             SELECT tenant, owner, id::text, id, created_at FROM {schema}.tasks WHERE status_at = {finished}"
        ),
        format!(
            "INSERT INTO {schema}.jobs (task_id, kind, state, run_at, attempt, max_attempts, created_at, finished_at)
             SELECT id, 'delegate', 'done', created_at, 1, 3, created_at, status_at
             FROM {schema}.tasks WHERE status_at = {finished}"
        ),
    ];
    // One transaction: `now()` is the same in every statement of it.
    let mut tx = pool.begin().await?;
    for sql in statements {
        tx.execute(sqlx::AssertSqlSafe(sql)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The log's size on disk, every partition and index included.
async fn log_size(pool: &PgPool, schema: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('{schema}.task_events')
                          WHERE isleaf), pg_total_relation_size('{schema}.task_events'))::bigint"
    )))
    .fetch_one(pool)
    .await?)
}

async fn wal_at(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(pool).await?)
}

async fn wal_since(pool: &PgPool, lsn: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
        .bind(lsn)
        .fetch_one(pool)
        .await?)
}

fn message(text: &str) -> Message {
    Message::new(Role::User, vec![Part::text(text)])
}

fn uuid_at(ms: i64) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes)
}
