//! A capacity model, measured: what one task of each shape costs
//! PostgreSQL — CPU, WAL, rows written, round trips — and from it, tasks
//! per second per PostgreSQL core and WAL per million tasks; then the
//! model's prediction checked against a run at another concurrency.
//!
//! `cargo bench --bench capacity` (needs `DATABASE_URL` on this machine's
//! PostgreSQL: its CPU is read from `/proc`, its WAL position and counters
//! from the server; the role must be allowed to create a database). It
//! starts `switchyard demo-agent --pause 0ms` and `switchyard dev` on a
//! database of its own (`perf_capacity`, recreated each run) and, for each
//! shape, sends blocking tasks from `BENCH_CLIENTS` (default 32) loops for
//! `BENCH_SECONDS` (default 8):
//!
//! - **simple**: `echo` to one agent;
//! - **streamed**: `stream 10` and `stream 40`, artifact chunks;
//! - **fan-out**: plans of 2 and of 4 children, joined by "all";
//! - **webhook**: `echo` with a webhook on the task (its deliveries to a
//!   receiver in this process counted in, waited for before counting).
//!
//! Per task it reports PostgreSQL CPU (user and system time of the
//! cluster's processes — its postmaster and its children, not a replica's
//! beside it — from `/proc`, the `VACUUM` of what the run left
//! behind included: it is the run's cost, and left to autovacuum it would
//! land in the next run's figures), WAL bytes (`pg_current_wal_lsn()`
//! before and after; nothing else writes meanwhile), WAL flushes
//! (`pg_stat_wal.wal_sync`), rows written (inserted, updated and deleted,
//! `pg_stat_user_tables`), transactions and statements (round trips, with
//! `pg_stat_statements` loaded). Then it runs the simple shape again at
//! `BENCH_CHECK_CLIENTS` (default 8) and compares two models with what it
//! measured there: the per-task costs of the first run times the tasks it
//! did, and PostgreSQL's CPU as work (a cost per statement, per WAL flush
//! and per row, fitted to the shapes) fed that run's own counts.

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use common::{DevStack, env_usize, with_database};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const DATABASE: &str = "perf_capacity";

/// What the database had done by a moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// PostgreSQL's CPU, all its processes, in seconds.
    cpu: f64,
    wal: i64,
    /// WAL flushes to disk (`pg_stat_wal.wal_sync`): one per commit that
    /// found its WAL not yet flushed by another.
    syncs: i64,
    rows: i64,
    transactions: i64,
    statements: Option<i64>,
}

/// Per task, between two counters.
#[derive(Debug, Clone, Copy)]
struct Cost {
    tasks: f64,
    per_second: f64,
    cpu_ms: f64,
    wal_bytes: f64,
    syncs: f64,
    rows: f64,
    transactions: f64,
    statements: Option<f64>,
}

async fn counters(admin: &mut PgConnection, perf: &mut PgConnection) -> anyhow::Result<Counters> {
    admin.execute("SELECT pg_stat_clear_snapshot()").await?;
    perf.execute("SELECT pg_stat_clear_snapshot()").await?;
    let wal: i64 =
        sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").fetch_one(&mut *admin).await?;
    let syncs: i64 = sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal").fetch_one(&mut *admin).await?;
    let transactions: i64 =
        sqlx::query_scalar("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1")
            .bind(DATABASE)
            .fetch_one(&mut *admin)
            .await?;
    let statements = common::statements(&mut *admin, DATABASE).await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(&mut *perf)
    .await?;
    Ok(Counters {
        cpu: common::cluster_cpu(&common::port_of(&std::env::var("DATABASE_URL").unwrap_or_default()))?,
        wal,
        syncs,
        rows,
        transactions,
        statements,
    })
}

/// The counters once the run's maintenance is paid: a `VACUUM` of what it
/// left behind, whose CPU and WAL are the run's as much as its writes are
/// (left to autovacuum, they would land in whichever run came next).
async fn maintained(admin: &mut PgConnection, perf: &mut PgConnection) -> anyhow::Result<Counters> {
    perf.execute("VACUUM").await?;
    counters(admin, perf).await
}

fn cost(before: Counters, after: Counters, tasks: usize, elapsed: Duration) -> Cost {
    let n = tasks.max(1) as f64;
    Cost {
        tasks: n,
        per_second: n / elapsed.as_secs_f64(),
        cpu_ms: (after.cpu - before.cpu) * 1000.0 / n,
        wal_bytes: (after.wal - before.wal) as f64 / n,
        syncs: (after.syncs - before.syncs) as f64 / n,
        rows: (after.rows - before.rows) as f64 / n,
        transactions: (after.transactions - before.transactions) as f64 / n,
        statements: after.statements.zip(before.statements).map(|(a, b)| (a - b) as f64 / n),
    }
}

/// Blocking `SendMessage`s of `text` (with `metadata`, and a webhook to
/// `hook` if given) from `clients` loops for `seconds`; tasks done.
async fn load(
    broker: &str,
    clients: usize,
    seconds: u64,
    text: &'static str,
    metadata: Option<Value>,
    hook: Option<String>,
) -> anyhow::Result<(usize, Duration)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let broker = broker.to_owned();
    let (all, elapsed) = common::closed_loop(clients, seconds, move || {
        let (http, broker, metadata, hook) = (http.clone(), broker.clone(), metadata.clone(), hook.clone());
        async move {
            let mut message = json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                                     "parts": [{"text": text}]});
            if let Some(metadata) = metadata {
                message["metadata"] = metadata;
            }
            let mut params = json!({"message": message});
            if let Some(hook) = hook {
                params["configuration"] = json!({"taskPushNotificationConfig": {"url": hook}});
            }
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params});
            let answer: Value =
                http.post(&broker).header("A2A-Version", "1.0").json(&body).send().await?.json().await?;
            let state = &answer["result"]["task"]["status"]["state"];
            anyhow::ensure!(state == "TASK_STATE_COMPLETED" || answer["result"].get("message").is_some(), "{answer}");
            Ok(())
        }
    })
    .await?;
    Ok((all.len(), elapsed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let seconds = env_usize("BENCH_SECONDS", 8) as u64;
    let clients = env_usize("BENCH_CLIENTS", 32);
    let check_clients = env_usize("BENCH_CHECK_CLIENTS", 8);

    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_capacity WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_capacity").await?;
    let db_url = with_database(&url, DATABASE)?;

    // The webhooks' receiver: counts what arrives.
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let extra = "[[plans]]\nname = \"fan4\"\nfanout = [\"demo\", \"demo\", \"demo\", \"demo\"]\njoin = \"all\"\n\n\
                 [[plans]]\nname = \"fan2\"\nfanout = [\"demo\", \"demo\"]\njoin = \"all\"\n\n\
                 [push]\nallow = [\"127.0.0.0/8\"]\n";
    let stack = DevStack::start(&db_url, "capacity", extra).await?;
    let mut perf = PgConnection::connect(&db_url).await?;
    let broker = stack.broker.clone();
    load(&broker, 4, 2, "echo warm", None, None).await?;

    let fan = |n: usize| Some(json!({"switchyard": {"skill": format!("fan{n}")}}));
    let shapes: Vec<(&str, &'static str, Option<Value>, Option<String>)> = vec![
        ("simple", "echo the quick brown fox", None, None),
        ("streamed, 10 chunks", "stream 10", None, None),
        ("streamed, 40 chunks", "stream 40", None, None),
        ("fan-out of 2", "echo fanned", fan(2), None),
        ("fan-out of 4", "echo fanned", fan(4), None),
        ("with a webhook", "echo hooked", None, Some(hook.clone())),
    ];
    println!("Per task at {clients} clients, {seconds} s each (PostgreSQL's CPU from /proc, all its processes):");
    println!();
    println!(
        "| shape | tasks/s | PG CPU ms/task | WAL bytes/task | WAL flushes/task | rows written/task | transactions/task | statements/task | tasks/s per PG core | WAL per million tasks |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut check = None;
    let mut fitted: Vec<Cost> = Vec::new();
    for (name, text, metadata, hook) in shapes {
        settle(&received).await;
        let deliveries_before = received.load(Ordering::Relaxed);
        let before = counters(&mut admin, &mut perf).await?;
        let (done, elapsed) = load(&broker, clients, seconds, text, metadata, hook.clone()).await?;
        if hook.is_some() {
            settle(&received).await;
        }
        let after = maintained(&mut admin, &mut perf).await?;
        let c = cost(before, after, done, elapsed);
        let statements = c.statements.map_or_else(|| "n/a".into(), |s| format!("{s:.1}"));
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} | {:.2} | {statements} | {:.0} | {:.2} GB |",
            c.per_second,
            c.cpu_ms,
            c.wal_bytes,
            c.syncs,
            c.rows,
            c.transactions,
            1000.0 / c.cpu_ms,
            c.wal_bytes * 1e6 / 1e9
        );
        if hook.is_some() {
            let deliveries = received.load(Ordering::Relaxed) - deliveries_before;
            println!("| (webhook deliveries per task: {:.1}) | | | | | | | | | |", deliveries as f64 / c.tasks);
        }
        fitted.push(c);
        if check.is_none() {
            // The check: the simple shape at another concurrency, against
            // what the per-task costs just measured predict for the tasks
            // it does.
            let before = counters(&mut admin, &mut perf).await?;
            let (done, elapsed) = load(&broker, check_clients, seconds, text, None, None).await?;
            let after = maintained(&mut admin, &mut perf).await?;
            check = Some((c, cost(before, after, done, elapsed), before, after, done));
        }
    }

    let (model, measured, before, after, done) = check.context("the simple shape ran")?;
    let predicted_cpu = model.cpu_ms * done as f64 / 1000.0;
    let measured_cpu = after.cpu - before.cpu;
    let predicted_wal = model.wal_bytes * done as f64;
    let measured_wal = (after.wal - before.wal) as f64;
    let error = |p: f64, m: f64| (p - m) / m * 100.0;
    println!();
    println!(
        "The model (simple, {clients} clients) against a run at {check_clients} clients ({done} tasks, {:.0}/s):",
        measured.per_second
    );
    println!();
    println!("| quantity | predicted | measured | error |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| PostgreSQL CPU, s | {predicted_cpu:.2} | {measured_cpu:.2} | {:+.0} % |",
        error(predicted_cpu, measured_cpu)
    );
    println!(
        "| WAL, MB | {:.1} | {:.1} | {:+.0} % |",
        predicted_wal / 1e6,
        measured_wal / 1e6,
        error(predicted_wal, measured_wal)
    );
    println!(
        "| rows written | {:.0} | {:.0} | {:+.0} % |",
        model.rows * done as f64,
        measured.rows * measured.tasks,
        error(model.rows, measured.rows)
    );
    println!(
        "| (per task at {check_clients} clients: CPU {:.2} ms, WAL {:.0} B, {:.2} WAL flushes, {:.2} transactions, {:.1} statements) | | | |",
        measured.cpu_ms,
        measured.wal_bytes,
        measured.syncs,
        measured.transactions,
        measured.statements.unwrap_or(0.0)
    );

    // PostgreSQL's CPU as the work that makes it: a cost per statement
    // (a round trip), per WAL flush (a commit that waited for the disk) and
    // per row written, fitted to the shapes above (least
    // squares), then used on the check run's own counts.
    if let Some([per_statement, per_sync, per_row]) = fit(&fitted) {
        let work = |c: &Cost| per_statement * c.statements.unwrap_or(0.0) + per_sync * c.syncs + per_row * c.rows;
        println!();
        println!(
            "PostgreSQL CPU as work: {per_statement:.3} ms per statement + {per_sync:.3} ms per WAL flush + \
             {per_row:.3} ms per row written (fitted to the {} shapes)",
            fitted.len()
        );
        println!();
        println!("| run | measured ms/task | from its work ms/task | error |");
        println!("| --- | ---: | ---: | ---: |");
        let names = ["simple", "streamed 10", "streamed 40", "fan-out of 2", "fan-out of 4", "webhook"];
        for (name, c) in names.iter().zip(&fitted) {
            println!(
                "| {name}, {clients} clients | {:.2} | {:.2} | {:+.0} % |",
                c.cpu_ms,
                work(c),
                error(work(c), c.cpu_ms)
            );
        }
        println!(
            "| simple, {check_clients} clients (the check) | {:.2} | {:.2} | {:+.0} % |",
            measured.cpu_ms,
            work(&measured),
            error(work(&measured), measured.cpu_ms)
        );
    }
    drop(stack);
    admin.execute("DROP DATABASE IF EXISTS perf_capacity WITH (FORCE)").await?;
    Ok(())
}

/// Least squares for `cpu_ms ≈ a·statements + b·WAL flushes + c·rows`
/// over the runs; `None` without statement counts or with a singular fit.
fn fit(runs: &[Cost]) -> Option<[f64; 3]> {
    let rows: Vec<([f64; 3], f64)> =
        runs.iter().map(|c| Some(([c.statements?, c.syncs, c.rows], c.cpu_ms))).collect::<Option<_>>()?;
    // The normal equations AᵀA x = Aᵀb, solved by Cramer's rule (3×3).
    let mut ata = [[0.0f64; 3]; 3];
    let mut atb = [0.0f64; 3];
    for (x, y) in &rows {
        for i in 0..3 {
            atb[i] += x[i] * y;
            for j in 0..3 {
                ata[i][j] += x[i] * x[j];
            }
        }
    }
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&ata);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut solution = [0.0; 3];
    for (k, value) in solution.iter_mut().enumerate() {
        let mut m = ata;
        for i in 0..3 {
            m[i][k] = atb[i];
        }
        *value = det(&m) / d;
    }
    Some(solution)
}

/// Waits until the receiver has been quiet for a second (every delivery
/// of the tasks done so far has arrived).
async fn settle(received: &AtomicU64) {
    let mut last = received.load(Ordering::Relaxed);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = received.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}
