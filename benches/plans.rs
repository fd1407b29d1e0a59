//! Fan-outs and pipelines: what a plan costs beside the client doing the
//! same work itself with separate single-agent tasks, in one run.
//!
//! `cargo bench --bench plans` (needs `DATABASE_URL`; the role must be
//! allowed to create a database). It starts `switchyard demo-agent --pause
//! 0ms` and `switchyard dev` on a database of its own (`perf_plans`,
//! recreated each run, so `pg_stat_database` counts only this), with two
//! plans: `fan10`, a 10-way fan-out joined by `all`, and `pipe5`, a 5-step
//! pipeline, both over the demo agent. For each, at 1 and 8 clients:
//!
//! - the plan: blocking `SendMessage` naming it, until the parent completes;
//! - the reference: what a client does without plans, through the same
//!   broker: 10 blocking single-agent tasks sent at once (for the fan-out),
//!   or 5 sent one after the other, each with the previous answer (for the
//!   pipeline).
//!
//! It reports parent (or group) throughput and p50/p99 latency, and per
//! child task: database transactions and, when `pg_stat_statements` is
//! loaded, statements.
//!
//! Knobs: `BENCH_SECONDS` per cell (default 8), `BENCH_CLIENTS` (default "1 8").

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{DevStack, percentile, with_database};

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const DATABASE: &str = "perf_plans";
const WIDTH: usize = 10;
const STEPS: usize = 5;

/// One blocking send; the completed task.
async fn send(http: &reqwest::Client, url: &str, text: &str, plan: Option<&str>) -> anyhow::Result<Value> {
    let mut message = json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                             "parts": [{"text": text}]});
    if let Some(plan) = plan {
        message["metadata"] = json!({"switchyard": {"skill": plan}});
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}});
    let answer: Value = http.post(url).header("A2A-Version", "1.0").json(&body).send().await?.json().await?;
    let task = answer["result"]["task"].clone();
    anyhow::ensure!(task["status"]["state"] == "TASK_STATE_COMPLETED", "not completed: {answer}");
    Ok(task)
}

/// What one client does once, in each scenario.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    FanoutPlan,
    SeparateParallel,
    PipelinePlan,
    SeparateSequential,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::FanoutPlan => "fan10 plan (10-way fan-out, join all)",
            Scenario::SeparateParallel => "10 separate tasks at once",
            Scenario::PipelinePlan => "pipe5 plan (5-step pipeline)",
            Scenario::SeparateSequential => "5 separate tasks in sequence",
        }
    }

    fn children(self) -> usize {
        match self {
            Scenario::FanoutPlan | Scenario::SeparateParallel => WIDTH,
            Scenario::PipelinePlan | Scenario::SeparateSequential => STEPS,
        }
    }

    async fn once(self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        match self {
            Scenario::FanoutPlan => {
                let task = send(http, url, "echo fox", Some("fan10")).await?;
                let n = task["artifacts"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(n == WIDTH, "{n} artifacts: {task}");
            }
            Scenario::SeparateParallel => {
                let mut sends = tokio::task::JoinSet::new();
                for _ in 0..WIDTH {
                    let (http, url) = (http.clone(), url.to_owned());
                    sends.spawn(async move { send(&http, &url, "echo fox", None).await });
                }
                while let Some(task) = sends.join_next().await {
                    task??;
                }
            }
            Scenario::PipelinePlan => {
                send(http, url, "echo fox", Some("pipe5")).await?;
            }
            Scenario::SeparateSequential => {
                let mut text = "echo fox".to_owned();
                for _ in 0..STEPS {
                    let task = send(http, url, &text, None).await?;
                    text = task["artifacts"][0]["parts"][0]["text"].as_str().unwrap_or("fox").to_owned();
                }
            }
        }
        Ok(())
    }
}

/// Runs `scenario` from `clients` loops for `seconds`; each latency in ms.
async fn load(url: &str, scenario: Scenario, clients: usize, seconds: u64) -> anyhow::Result<(Vec<f64>, Duration)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients * WIDTH).tcp_nodelay(true).build()?;
    let url = url.to_owned();
    common::closed_loop(clients, seconds, move || {
        let (http, url) = (http.clone(), url.clone());
        async move { scenario.once(&http, &url).await }
    })
    .await
}

/// Transactions and statements the database has run so far.
async fn db_work(admin: &mut PgConnection) -> anyhow::Result<(i64, Option<i64>)> {
    admin.execute("SELECT pg_stat_clear_snapshot()").await?;
    let xacts: i64 = sqlx::query_scalar("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1")
        .bind(DATABASE)
        .fetch_one(&mut *admin)
        .await?;
    let statements: Option<i64> = sqlx::query_scalar(
        "SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1",
    )
    .bind(DATABASE)
    .fetch_one(&mut *admin)
    .await
    .ok()
    .flatten();
    Ok((xacts, statements))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let (seconds, clients) = common::cells(8, "1 8");

    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_plans WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_plans").await?;
    let db_url = with_database(&url, DATABASE)?;

    let fan = ["\"demo\""; WIDTH].join(", ");
    let pipe = ["\"demo\""; STEPS].join(", ");
    let plans =
        format!("[[plans]]\nname = \"fan10\"\nfanout = [{fan}]\n\n[[plans]]\nname = \"pipe5\"\npipeline = [{pipe}]\n");
    let stack = DevStack::start(&db_url, "plans-bench", &plans).await?;
    let broker = stack.broker.clone();
    let scenarios =
        [Scenario::FanoutPlan, Scenario::SeparateParallel, Scenario::PipelinePlan, Scenario::SeparateSequential];
    for scenario in scenarios {
        load(&broker, scenario, 2, 1).await?;
    }
    let statements = admin.execute("SELECT pg_stat_statements_reset()").await.is_ok();

    println!("| clients | what | per second | p50 ms | p99 ms | transactions / child | statements / child |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for &n in &clients {
        for scenario in scenarios {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = db_work(&mut admin).await?;
            let (latencies, elapsed) = load(&broker, scenario, n, seconds).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = db_work(&mut admin).await?;
            let children = (latencies.len() * scenario.children()) as f64;
            let statements = match (after.1, before.1) {
                (Some(a), Some(b)) if statements => format!("{:.1}", (a - b) as f64 / children),
                _ => "n/a".into(),
            };
            println!(
                "| {n} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {statements} |",
                scenario.name(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                (after.0 - before.0) as f64 / children,
            );
        }
    }
    drop(admin);
    Ok(())
}
