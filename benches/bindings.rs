//! The bindings side by side: blocking `SendMessage` and
//! `SendStreamingMessage` through Switchyard over JSON-RPC, HTTP+JSON and
//! gRPC, at 1 and 32 clients, with the demo agent called directly (JSON-RPC)
//! as the reference, all in one run.
//!
//! `cargo bench --bench bindings` (needs `DATABASE_URL`; the role must be
//! allowed to create a database). It starts `switchyard demo-agent --pause
//! 0ms` and `switchyard dev` (gRPC on) on a database of its own
//! (`perf_bindings`, recreated each run). Every answer is checked: a
//! blocking send must come back completed, a stream must end with the
//! completed status. The task's work in the store is the same whatever the
//! binding (one handler behind all three); what differs is the encoding,
//! the connection (HTTP/1.1 per client vs one multiplexed HTTP/2 channel)
//! and the framing of streams (SSE vs gRPC messages).
//!
//! Knobs: `BENCH_SECONDS` per cell (default 5), `BENCH_CLIENTS` (default
//! "1 32").

// A benchmark reports on stdout; that is its output, not stray logging.
#![allow(clippy::print_stdout)]

mod common;

use common::{DevStack, percentile, with_database};

use std::time::Duration;

use a2a_pb::proto;
use a2a_pb::proto::a2a_service_client::A2aServiceClient;
use anyhow::Context;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const DATABASE: &str = "perf_bindings";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    JsonRpc,
    HttpJson,
    Grpc,
    /// The agent itself, over JSON-RPC: the reference.
    AgentDirect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Stream,
}

const TEXT: &str = "echo the quick brown fox";

fn json_message() -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": TEXT}]})
}

fn proto_request() -> proto::SendMessageRequest {
    proto::SendMessageRequest {
        message: Some(proto::Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: proto::Role::User as i32,
            parts: vec![proto::Part { content: Some(proto::part::Content::Text(TEXT.into())), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An SSE body's last `data:` frame, as JSON.
fn last_frame(body: &str) -> anyhow::Result<Value> {
    let data = body.lines().rev().find_map(|l| l.strip_prefix("data:")).context("no SSE frame")?;
    Ok(serde_json::from_str(data.trim())?)
}

/// Targets for one cell, cheap to clone into each client loop.
#[derive(Clone)]
struct Targets {
    http: reqwest::Client,
    broker: String,
    agent: String,
    grpc: A2aServiceClient<tonic::transport::Channel>,
}

async fn once(t: Targets, binding: Binding, mode: Mode) -> anyhow::Result<()> {
    match (binding, mode) {
        (Binding::JsonRpc | Binding::AgentDirect, mode) => {
            let url = if binding == Binding::AgentDirect { &t.agent } else { &t.broker };
            let method = if mode == Mode::Send { "SendMessage" } else { "SendStreamingMessage" };
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": json_message()}});
            let text = t.http.post(url).header("A2A-Version", "1.0").json(&body).send().await?.text().await?;
            let answer = if mode == Mode::Send { serde_json::from_str(&text)? } else { last_frame(&text)? };
            let result = &answer["result"];
            let state =
                result["task"]["status"]["state"].as_str().or(result["statusUpdate"]["status"]["state"].as_str());
            anyhow::ensure!(state == Some("TASK_STATE_COMPLETED"), "not completed: {answer}");
        }
        (Binding::HttpJson, mode) => {
            let path = if mode == Mode::Send { "message:send" } else { "message:stream" };
            let body = json!({"message": json_message()});
            let request = t.http.post(format!("{}{path}", t.broker)).header("A2A-Version", "1.0").json(&body);
            let text = request.send().await?.text().await?;
            let answer: Value = if mode == Mode::Send { serde_json::from_str(&text)? } else { last_frame(&text)? };
            let state =
                answer["task"]["status"]["state"].as_str().or(answer["statusUpdate"]["status"]["state"].as_str());
            anyhow::ensure!(state == Some("TASK_STATE_COMPLETED"), "not completed: {answer}");
        }
        (Binding::Grpc, Mode::Send) => {
            let answer = t.grpc.clone().send_message(proto_request()).await?.into_inner();
            let Some(proto::send_message_response::Payload::Task(task)) = answer.payload else {
                anyhow::bail!("not a task: {answer:?}");
            };
            let state = task.status.map(|s| s.state);
            anyhow::ensure!(state == Some(proto::TaskState::Completed as i32), "not completed: {state:?}");
        }
        (Binding::Grpc, Mode::Stream) => {
            let mut stream = t.grpc.clone().send_streaming_message(proto_request()).await?.into_inner();
            let mut last = None;
            while let Some(event) = stream.message().await? {
                if let Some(proto::stream_response::Payload::StatusUpdate(update)) = event.payload {
                    last = update.status.map(|s| s.state);
                }
            }
            anyhow::ensure!(last == Some(proto::TaskState::Completed as i32), "stream ended at {last:?}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let (seconds, clients) = common::cells(5, "1 32");

    let mut admin = PgConnection::connect(&url).await?;
    admin.execute("DROP DATABASE IF EXISTS perf_bindings WITH (FORCE)").await?;
    admin.execute("CREATE DATABASE perf_bindings").await?;
    let stack = DevStack::start(&with_database(&url, DATABASE)?, "bindings-bench", "").await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.grpc))?.connect().await?;
    let targets = Targets {
        http: reqwest::Client::builder().pool_max_idle_per_host(64).tcp_nodelay(true).build()?,
        broker: stack.broker.clone(),
        agent: stack.agent.clone(),
        grpc: A2aServiceClient::new(channel),
    };
    let cells = [
        (Binding::AgentDirect, Mode::Send),
        (Binding::JsonRpc, Mode::Send),
        (Binding::HttpJson, Mode::Send),
        (Binding::Grpc, Mode::Send),
        (Binding::AgentDirect, Mode::Stream),
        (Binding::JsonRpc, Mode::Stream),
        (Binding::HttpJson, Mode::Stream),
        (Binding::Grpc, Mode::Stream),
    ];
    // Warm every path (connections, the card and registry caches).
    for (binding, mode) in cells {
        let t = targets.clone();
        common::closed_loop(2, 1, move || once(t.clone(), binding, mode)).await?;
    }

    println!("| clients | binding | call | tasks/s | p50 ms | p99 ms |");
    println!("| ---: | --- | --- | ---: | ---: | ---: |");
    for &n in &clients {
        for (binding, mode) in cells {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = targets.clone();
            let (latencies, elapsed) = common::closed_loop(n, seconds, move || once(t.clone(), binding, mode)).await?;
            let name = match binding {
                Binding::JsonRpc => "JSON-RPC",
                Binding::HttpJson => "HTTP+JSON",
                Binding::Grpc => "gRPC",
                Binding::AgentDirect => "agent directly (JSON-RPC)",
            };
            let call = if mode == Mode::Send { "SendMessage" } else { "SendStreamingMessage" };
            println!(
                "| {n} | {name} | {call} | {:.0} | {:.2} | {:.2} |",
                latencies.len() as f64 / elapsed.as_secs_f64(),
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
        }
    }
    Ok(())
}
