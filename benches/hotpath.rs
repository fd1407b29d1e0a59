//! The hot path: what one simple delegated task costs, in time and in
//! database work, beside the agent called directly in the same run.
//!
//! `cargo bench --bench hotpath` (needs `DATABASE_URL`; the role must be
//! allowed to create a database). It starts `switchyard demo-agent
//! --pause 0ms` and `switchyard dev` on a database of its own (`perf_sy`,
//! recreated each run, so `pg_stat_database` counts only this), then for 1
//! and 32 clients sends blocking `SendMessage` `echo` tasks through
//! Switchyard and, as the reference, straight to the agent. It reports
//! tasks/s, p50/p99, and per task: transactions (commits and rollbacks), rows
//! inserted and updated, and, when `pg_stat_statements` is loaded, statements
//! (BEGIN and COMMIT included) with the busiest ones listed.
//!
//! Knobs: `BENCH_SECONDS` per cell (default 10), `BENCH_CLIENTS` (default
//! "1 32").

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{DevStack, percentile, with_database};

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

/// Its own database, so `pg_stat_database` counts only this (named in the
/// DROP and CREATE statements too).
const DATABASE: &str = "perf_sy";

/// Sends blocking echo tasks from `clients` loops for `seconds`; every
/// answer must be a completed task (or a message) carrying the text.
async fn load(url: &str, clients: usize, seconds: u64) -> anyhow::Result<(usize, Vec<f64>, Duration)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build()?;
    let url = url.to_owned();
    let (all, elapsed) = common::closed_loop(clients, seconds, move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
                "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                            "parts": [{"text": "echo the quick brown fox"}]}}});
            let answer: Value = http.post(&url).header("A2A-Version", "1.0").json(&body).send().await?.json().await?;
            let state = &answer["result"]["task"]["status"]["state"];
            anyhow::ensure!(state == "TASK_STATE_COMPLETED", "not completed: {answer}");
            Ok(())
        }
    })
    .await?;
    Ok((all.len(), all, elapsed))
}

#[derive(Debug, Clone, Default)]
struct DbStats {
    commits: i64,
    rollbacks: i64,
    inserted: i64,
    updated: i64,
    statements: Option<i64>,
    /// Per table: rows inserted, updated, deleted.
    tables: std::collections::BTreeMap<String, (i64, i64, i64)>,
}

/// `admin` on the server's maintenance database, `perf` on the benchmark's.
async fn db_stats(admin: &mut PgConnection, perf: &mut PgConnection) -> anyhow::Result<DbStats> {
    // Statistics are cached per transaction and flushed by backends lazily.
    admin.execute("SELECT pg_stat_clear_snapshot()").await?;
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = $1",
    )
    .bind(DATABASE)
    .fetch_one(&mut *admin)
    .await?;
    let statements = common::statements(&mut *admin, DATABASE).await;
    // Switchyard's own tables, by the counters PostgreSQL keeps per table
    // (that database holds nothing else).
    perf.execute("SELECT pg_stat_clear_snapshot()").await?;
    let tables: Vec<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
            .fetch_all(&mut *perf)
            .await?;
    let tables = tables.into_iter().map(|(name, i, u, d)| (name, (i, u, d))).collect();
    Ok(DbStats { commits: row.0, rollbacks: row.1, inserted: row.2, updated: row.3, statements, tables })
}

/// The statements that took the database's time, most first: calls and
/// milliseconds of execution per task, and the statement's start.
async fn top_statements(admin: &mut PgConnection, tasks: f64) -> Vec<(f64, f64, String)> {
    let rows: Vec<(i64, f64, String)> = sqlx::query_as(
        "SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements s
         JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 ORDER BY total_exec_time DESC LIMIT 16",
    )
    .bind(DATABASE)
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    rows.into_iter().map(|(calls, ms, q)| (calls as f64 / tasks, ms / tasks, q.chars().take(110).collect())).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let (seconds, clients) = common::cells(10, "1 32");

    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_sy WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_sy").await?;
    let statements = admin.execute("SELECT pg_stat_statements_reset()").await.is_ok();
    let db_url = with_database(&url, DATABASE)?;

    let stack = DevStack::start(&db_url, "hotpath", "").await?;
    let mut perf = PgConnection::connect(&db_url).await?;
    let (broker, agent) = (stack.broker.clone(), stack.agent.clone());
    // Warm up both paths (connections, the card cache, plans).
    load(&broker, 4, 2).await?;
    load(&agent, 4, 1).await?;

    println!("| clients | path | tasks/s | p50 ms | p99 ms |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    let mut per_task = Vec::new();
    for &n in &clients {
        let (done, latencies, elapsed) = load(&agent, n, seconds).await?;
        let direct_p50 = percentile(&latencies, 0.5);
        println!(
            "| {n} | agent directly | {:.0} | {:.2} | {:.2} |",
            done as f64 / elapsed.as_secs_f64(),
            direct_p50,
            percentile(&latencies, 0.99)
        );
        if statements {
            admin.execute("SELECT pg_stat_statements_reset()").await?;
        }
        // Let the last run's stragglers settle before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = db_stats(&mut admin, &mut perf).await?;
        let (done, latencies, elapsed) = load(&broker, n, seconds).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = db_stats(&mut admin, &mut perf).await?;
        let p50 = percentile(&latencies, 0.5);
        println!(
            "| {n} | through Switchyard | {:.0} | {:.2} (+{:.2}) | {:.2} |",
            done as f64 / elapsed.as_secs_f64(),
            p50,
            p50 - direct_p50,
            percentile(&latencies, 0.99)
        );
        let tasks = done as f64;
        let top = if statements { top_statements(&mut admin, tasks).await } else { Vec::new() };
        per_task.push((n, tasks, before, after, top));
    }
    println!();
    println!(
        "| clients | transactions/task (commits + rollbacks) | statements/task | rows inserted/task | rows updated/task |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (n, tasks, before, after, _) in &per_task {
        let per = |a: i64, b: i64| (a - b) as f64 / tasks;
        let statements = match (after.statements, before.statements) {
            (Some(a), _) => format!("{:.1}", a as f64 / tasks),
            _ => "n/a (pg_stat_statements not loaded)".into(),
        };
        println!(
            "| {n} | {:.2} ({:.2} + {:.2}) | {statements} | {:.2} | {:.2} |",
            per(after.commits + after.rollbacks, before.commits + before.rollbacks),
            per(after.commits, before.commits),
            per(after.rollbacks, before.rollbacks),
            per(after.inserted, before.inserted),
            per(after.updated, before.updated),
        );
    }
    for (n, tasks, before, after, _) in &per_task {
        println!();
        println!("Rows per task by table, {n} client(s) (inserted / updated / deleted):");
        for (table, (i, u, d)) in &after.tables {
            let (bi, bu, bd) = before.tables.get(table).copied().unwrap_or_default();
            let per = |a: &i64, b: i64| (a - b) as f64 / tasks;
            if (i - bi, u - bu, d - bd) != (0, 0, 0) {
                println!("  {table:24} {:6.2} / {:6.2} / {:6.2}", per(i, bi), per(u, bu), per(d, bd));
            }
        }
    }
    for (n, _, _, _, top) in &per_task {
        if top.is_empty() {
            continue;
        }
        println!();
        println!("Statements by the database's time, {n} client(s) (calls and execution ms per task):");
        for (calls, ms, query) in top {
            println!("  {calls:6.2}  {ms:6.3}  {query}");
        }
    }
    Ok(())
}
