//! Reads from a streaming replica: what the freshness check costs a read,
//! and how much of the reads' work leaves the primary.
//!
//! `cargo bench --bench replica` (needs `DATABASE_URL` and a streaming
//! replica of it: `SWITCHYARD_BENCH_REPLICA_URL`, else the same URL on port
//! 5433, as `tests/local-replica.sh` makes). It migrates a schema of its
//! own, starts two `switchyard serve` on it — one reading only the
//! primary, one with `--read-database-url` — sends `BENCH_TASKS` (2,000)
//! tasks through the first, waits for the replica to have them, then loads
//! each api in turn (alternating, two rounds each) with `BENCH_CLIENTS`
//! (8) clients for `BENCH_SECONDS` (8) per round:
//!
//! - GetTask of a random task,
//! - ListTasks, a page of 50,
//! - read-your-write: SendMessage, then GetTask of that task at once.
//!
//! Per cell: reads per second, p50 and p99, and the CPU per read of the
//! primary's processes and of the replica's (each cluster's postmaster and
//! its children, from `/proc`). The api processes, the bench client and
//! both clusters share the machine's cores.

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::{closed_loop, cluster_cpu, env_usize, free_port, percentile, port_of, switchyard};
use serde_json::{Value, json};
use sqlx::Executor;

const SCHEMA: &str = "replica_bench";

#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer: Value = self.http.post(format!("{}/", self.base)).json(&body).send().await?.json().await?;
        anyhow::ensure!(answer.get("error").is_none(), "{method}: {answer}");
        Ok(answer["result"].clone())
    }

    async fn send(&self, text: &str) -> anyhow::Result<String> {
        let message =
            json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]});
        let sent =
            self.rpc("SendMessage", json!({"message": message, "configuration": {"returnImmediately": true}})).await?;
        Ok(sent["task"]["id"].as_str().context("a task id")?.to_owned())
    }
}

#[derive(Clone, Copy)]
enum Load {
    GetTask,
    ListTasks,
    OwnWrite,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::GetTask => "GetTask",
            Load::ListTasks => "ListTasks (50)",
            Load::OwnWrite => "SendMessage, then GetTask of it",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let replica = std::env::var("SWITCHYARD_BENCH_REPLICA_URL")
        .unwrap_or_else(|_| url.replacen(&format!(":{}/", port_of(&url)), ":5433/", 1));
    let tasks = env_usize("BENCH_TASKS", 2_000);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let seconds = u64::try_from(env_usize("BENCH_SECONDS", 8))?;

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    let replica_pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&replica).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&replica_pool).await?;
    anyhow::ensure!(in_recovery, "{replica} is not a replica");
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))).await?;
    let migrate = switchyard(&url, SCHEMA, &["migrate"])?.wait_with_output().await?;
    anyhow::ensure!(migrate.status.success(), "switchyard migrate failed");
    let config = std::env::temp_dir().join("replica-bench.toml");
    std::fs::write(&config, "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n")?;
    let config = config.to_string_lossy().into_owned();

    let http = reqwest::Client::builder().tcp_nodelay(true).timeout(Duration::from_secs(30)).build()?;
    let mut apis = Vec::new();
    let mut children = Vec::new();
    for with_replica in [false, true] {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec!["serve", "--listen", &listen, "--config", &config];
        if with_replica {
            args.extend(["--read-database-url", &replica]);
        }
        children.push(switchyard(&url, SCHEMA, &args)?);
        let base = format!("http://{listen}");
        for _ in 0..300 {
            if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        apis.push(Api { base, http: http.clone() });
    }

    let mut ids = Vec::with_capacity(tasks);
    for i in 0..tasks {
        ids.push(apis[0].send(&format!("task {i}")).await?);
    }
    let ids = Arc::new(ids);
    // The replica has them all before anything is measured.
    let primary_at: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetch_one(&pool).await?;
    loop {
        let replayed: Option<i64> =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint")
                .fetch_one(&replica_pool)
                .await?;
        if replayed.is_some_and(|r| r >= primary_at) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.execute(sqlx::AssertSqlSafe(format!("ANALYZE {SCHEMA}.tasks, {SCHEMA}.task_events"))).await?;
    println!("{tasks} tasks sent; {clients} clients, {seconds} s per round, two rounds per api alternating");
    println!();
    println!("| read | api reads | reads/s | p50 ms | p99 ms | primary CPU ms/read | replica CPU ms/read |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");

    let (primary_port, replica_port) = (port_of(&url), port_of(&replica));
    for read in [Load::GetTask, Load::ListTasks, Load::OwnWrite] {
        // [arm] → (latencies, reads, seconds, primary CPU, replica CPU)
        let mut totals: [(Vec<f64>, usize, f64, f64, f64); 2] = Default::default();
        for _round in 0..2 {
            for (arm, api) in apis.iter().enumerate() {
                let (cpu_p, cpu_r) = (cluster_cpu(&primary_port)?, cluster_cpu(&replica_port)?);
                let (api, ids) = (api.clone(), ids.clone());
                let (latencies, elapsed) = closed_loop(clients, seconds, move || {
                    let (api, ids) = (api.clone(), ids.clone());
                    async move {
                        match read {
                            Load::GetTask => {
                                let id = &ids[rand::random_range(0..ids.len())];
                                api.rpc("GetTask", json!({"id": id, "historyLength": 1})).await?;
                            }
                            Load::ListTasks => {
                                api.rpc("ListTasks", json!({"pageSize": 50})).await?;
                            }
                            Load::OwnWrite => {
                                let id = api.send("written, then read").await?;
                                let got = api.rpc("GetTask", json!({"id": id})).await?;
                                anyhow::ensure!(got["id"] == id.as_str(), "read back {id}");
                            }
                        }
                        Ok(())
                    }
                })
                .await?;
                let t = &mut totals[arm];
                t.1 += latencies.len();
                t.0.extend(latencies);
                t.2 += elapsed.as_secs_f64();
                t.3 += cluster_cpu(&primary_port)? - cpu_p;
                t.4 += cluster_cpu(&replica_port)? - cpu_r;
            }
        }
        for (arm, (mut latencies, reads, secs, cpu_p, cpu_r)) in totals.into_iter().enumerate() {
            latencies.sort_by(f64::total_cmp);
            let reads_f = reads.max(1) as f64;
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {:.3} |",
                read.name(),
                if arm == 0 { "primary only" } else { "replica when current" },
                reads_f / secs,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                cpu_p * 1000.0 / reads_f,
                cpu_r * 1000.0 / reads_f,
            );
        }
    }
    let routes = scrape(&apis[1]).await?;
    println!();
    println!("the replica api's reads: {routes}");
    drop(children);
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))).await?;
    Ok(())
}

/// `switchyard_store_reads_total` from an api's `/metrics`, one line.
async fn scrape(api: &Api) -> anyhow::Result<String> {
    let body = api.http.get(format!("{}/metrics", api.base)).send().await?.text().await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("switchyard_store_reads_total"))
        .map(|l| l.trim_start_matches("switchyard_store_reads_total").to_owned())
        .collect::<Vec<_>>()
        .join(", "))
}
