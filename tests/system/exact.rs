//! Delegation made exact, against a strict agent: `switchyard serve` and
//! `switchyard worker` as real processes (killed with SIGKILL where a crash
//! is the point), the strict agent in this process recording what reached
//! it. Each test names a way delegation went wrong and checks what the agent
//! received and how the task ended.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::process::Child;

use crate::api::{message, rpc_call, stream_started};
use crate::harness::{TestDb, agent_config, eventually, submit};
use crate::processes::{free_port, http_get, quick_worker, switchyard};
use crate::proxy::Proxy;
use crate::strict_agent::{StrictAgent, Verdict};

const WAIT: Duration = Duration::from_secs(30);

struct Stack {
    db: TestDb,
    base: String,
    config: String,
    http: reqwest::Client,
    _serve: Child,
}

impl Stack {
    /// `None` when there is no PostgreSQL to test against.
    async fn start(agent_url: &str) -> Option<Stack> {
        Stack::start_with(agent_url, "").await
    }

    /// With `extra` appended to the agent's `[[agents]]` entry.
    async fn start_with(agent_url: &str, extra: &str) -> Option<Stack> {
        let db = TestDb::new().await?;
        let config = agent_config(&db, "strict", agent_url);
        let entry = std::fs::read_to_string(&config).expect("config") + extra;
        std::fs::write(&config, entry).expect("config");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
        eventually(WAIT, "the api up", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) }).await;
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Some(Stack { db, base: format!("http://{listen}"), config, http, _serve: serve })
    }

    fn worker(&self, id: &str, extra: &[&str]) -> Child {
        let mut all = vec!["--retry-base", "100ms", "--retry-cap", "300ms"];
        all.extend_from_slice(extra);
        quick_worker(&self.db, &self.config, id, &all)
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        rpc_call(&self.http, &self.base, method, params, &[("A2A-Version", "1.0")]).await
    }

    /// Sends a new task as a stream and hangs up after its first event; its
    /// id. The worker streams from the agent for it, which is what most
    /// tests here are about (frames split, cut, silent, never ending).
    async fn send(&self, text: &str) -> String {
        stream_started(&self.http, &self.base, message(text), &[("A2A-Version", "1.0")]).await
    }

    /// Sends a new task without waiting for it (`returnImmediately`); its
    /// id. Nobody follows it as a stream, so with `call = "blocking"` its
    /// worker takes the blocking call to the agent.
    async fn send_blocking(&self, text: &str) -> String {
        let answer = self
            .rpc("SendMessage", json!({"message": message(text), "configuration": {"returnImmediately": true}}))
            .await;
        answer["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
    }

    /// Answers a task that waits for input.
    async fn answer(&self, task_id: &str, text: &str) {
        let mut answer = message(text);
        answer["taskId"] = json!(task_id);
        let reply =
            self.rpc("SendMessage", json!({"message": answer, "configuration": {"returnImmediately": true}})).await;
        assert!(reply.get("result").is_some(), "the answer is accepted: {reply}");
    }

    async fn task(&self, task_id: &str) -> Value {
        self.rpc("GetTask", json!({"id": task_id})).await["result"].clone()
    }

    async fn reaches(&self, task_id: &str, state: &str) -> Value {
        eventually(WAIT, state, || async { self.task(task_id).await["status"]["state"] == state }).await;
        self.task(task_id).await
    }

    async fn delegate_job(&self, task_id: &str) -> (String, i32, Option<String>) {
        sqlx::query_as("SELECT state, attempt, last_error FROM jobs WHERE task_id = $1::uuid AND kind = 'delegate'")
            .bind(task_id)
            .fetch_one(self.db.pool())
            .await
            .expect("job")
    }
}

fn sigkill(child: &Child) {
    kill(Pid::from_raw(child.id().expect("running") as i32), Signal::SIGKILL).expect("kill");
}

async fn sigterm_and_wait(child: &mut Child) {
    kill(Pid::from_raw(child.id().expect("running") as i32), Signal::SIGTERM).expect("term");
    tokio::time::timeout(WAIT, child.wait()).await.expect("exit in time").expect("wait");
}

fn status_text(task: &Value) -> String {
    task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_the_agent_works_on_an_answer_does_not_send_it_again() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let mut worker = stack.worker("w1", &[]);
    let id = stack.send("ask 1 3000").await;
    stack.reaches(&id, "TASK_STATE_INPUT_REQUIRED").await;
    stack.answer(&id, "Lisbon").await;
    eventually(WAIT, "the agent working on the answer", || async {
        agent.received().iter().any(|r| r.text == "Lisbon" && r.verdict == Verdict::Accepted)
    })
    .await;
    sigkill(&worker);
    let _ = worker.wait().await;
    let _next = stack.worker("w2", &[]);
    let task = stack.reaches(&id, "TASK_STATE_COMPLETED").await;
    assert_eq!(status_text(&task), "answered");
    let answers: Vec<_> = agent.received().into_iter().filter(|r| r.text == "Lisbon").collect();
    assert_eq!(answers.len(), 1, "the resumed worker re-attached instead of sending again: {answers:?}");
}

/// A first message is not recorded before it is sent, so a worker killed
/// before its answer came leaves no trace of the remote task. It went out in
/// a context named after our task, and the next attempt finds the task it
/// made there: the message reaches the agent once, whether the worker had
/// taken the blocking call (nobody followed the task as a stream) or streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_a_first_answer_finds_the_task_instead_of_sending_again() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start_with(&agent.url, "call = \"blocking\"\n").await else { return };
    let mut worker = stack.worker("w1", &[]);
    // `late`: the agent makes the task at once and says nothing for 1.5 s,
    // so neither the blocking call nor the stream has answered yet.
    let blocking = stack.send_blocking("late 1500").await;
    let streamed = stack.send("late 1500").await;
    eventually(WAIT, "both messages at the agent", || async { agent.received().len() == 2 }).await;
    sigkill(&worker);
    let _ = worker.wait().await;
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM delegations WHERE remote_task_id IS NOT NULL")
        .fetch_one(stack.db.pool())
        .await
        .expect("count");
    assert_eq!(known, 0, "the killed worker had heard of no remote task");
    let _next = stack.worker("w2", &[]);
    for id in [&blocking, &streamed] {
        stack.reaches(id, "TASK_STATE_COMPLETED").await;
    }
    let received = agent.received();
    assert_eq!(received.len(), 2, "each first message reached the agent once: {received:?}");
    assert!(received.iter().all(|r| r.verdict == Verdict::Accepted), "{received:?}");
    assert!(agent.looks() >= 2, "the next attempt looked for the tasks it made");
    for id in [&blocking, &streamed] {
        let (state, attempt, _) = stack.delegate_job(id).await;
        assert_eq!((state.as_str(), attempt), ("done", 2), "{id}");
    }
}

/// An agent the operator marked `call = "blocking"`, and a task nobody
/// follows as a stream: its worker takes one blocking call to the agent,
/// which answers with the finished task, and looks for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_nobody_streams_takes_one_blocking_call() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start_with(&agent.url, "call = \"blocking\"\n").await else { return };
    let _worker = stack.worker("w1", &[]);
    let id = stack.send_blocking("silent 300").await;
    stack.reaches(&id, "TASK_STATE_COMPLETED").await;
    assert_eq!(agent.received().len(), 1);
    assert_eq!(agent.looks(), 0, "no look: the blocking call's answer was the finished task");
    assert_eq!(agent.streams(), 0, "no stream was opened");
}

/// A worker writes what concurrent exchanges of different tasks produced
/// in shared transactions; killed while such batches (and its blocking
/// calls) are in flight, it loses no task, none ends twice, and no message
/// reaches the agent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_batches_in_flight_finishes_every_task_once() {
    const TASKS: usize = 120;
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start_with(&agent.url, "call = \"blocking\"\n").await else { return };
    let mut worker = stack.worker("w1", &["--concurrency", "64"]);
    let mut ids = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        ids.push(stack.send_blocking(&format!("silent {}", 20 + (i % 7) * 10)).await);
    }
    let completed = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state = 'completed'")
            .fetch_one(stack.db.pool())
            .await
            .expect("count");
        n as usize
    };
    eventually(WAIT, "a quarter of the tasks done", || async { completed().await >= TASKS / 4 }).await;
    sigkill(&worker);
    let _ = worker.wait().await;
    let killed_at = completed().await;
    let _next = stack.worker("w2", &["--concurrency", "64"]);
    eventually(WAIT, "every task done", || async { completed().await == TASKS }).await;
    assert!(killed_at < TASKS, "the kill came while tasks were in flight ({killed_at} done)");

    let endings: Vec<(String, i64)> = sqlx::query_as(
        "SELECT task_id::text, count(*) FROM task_events WHERE kind = 'status' \
         AND payload->>'state' IN ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED') \
         GROUP BY task_id",
    )
    .fetch_all(stack.db.pool())
    .await
    .expect("endings");
    assert_eq!(endings.len(), TASKS);
    assert!(endings.iter().all(|(_, n)| *n == 1), "a task ended twice: {endings:?}");
    let mut accepted: std::collections::HashMap<String, usize> = Default::default();
    for received in agent.received().into_iter().filter(|r| r.verdict == Verdict::Accepted) {
        *accepted.entry(received.message_id).or_default() += 1;
    }
    assert_eq!(accepted.len(), TASKS, "every task's message reached the agent");
    // A first message whose answer the killed worker never heard is found
    // by the next attempt in its context, not sent again.
    assert!(accepted.values().all(|n| *n == 1), "a message was taken twice: {accepted:?}");
    let duplicates = agent.received().iter().filter(|r| r.verdict != Verdict::Accepted).count();
    assert_eq!(duplicates, 0, "and none was even offered twice");
    // The worker did write in batches: endings that share a transaction share its time.
    let (rows, times): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT created_at) FROM task_events \
         WHERE kind = 'status' AND payload->>'state' = 'TASK_STATE_COMPLETED'",
    )
    .fetch_one(stack.db.pool())
    .await
    .expect("times");
    assert!(times < rows, "{rows} endings in {times} transactions: nothing was batched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_given_before_the_first_is_delivered_reach_the_agent_once_each_in_order() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let mut worker = stack.worker("w1", &[]);
    let id = stack.send("ask 2 200").await;
    stack.reaches(&id, "TASK_STATE_INPUT_REQUIRED").await;
    sigterm_and_wait(&mut worker).await;

    stack.answer(&id, "first").await;
    stack.answer(&id, "second").await;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE task_id = $1::uuid AND kind = 'delegate' AND state IN ('ready', 'leased')",
    )
    .bind(&id)
    .fetch_one(stack.db.pool())
    .await
    .expect("count");
    assert_eq!(live, 1, "one live delegation per task, however many answers");

    let _worker = stack.worker("w2", &[]);
    stack.reaches(&id, "TASK_STATE_COMPLETED").await;
    let answers: Vec<(String, Verdict)> = agent.received().into_iter().skip(1).map(|r| (r.text, r.verdict)).collect();
    assert_eq!(
        answers,
        [("first".to_owned(), Verdict::Accepted), ("second".to_owned(), Verdict::Accepted)],
        "each answer once, in order, each to the question it answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_remote_task_is_known_cancels_it_there() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let _worker = stack.worker("w1", &[]);
    let id = stack.send("late 1500").await;
    // The agent has the message and has said nothing yet: we know no remote id.
    eventually(WAIT, "the message at the agent", || async { !agent.received().is_empty() }).await;
    let remote = agent.received()[0].task_id.clone();
    let canceled = stack.rpc("CancelTask", json!({"id": id})).await;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED", "{canceled}");
    eventually(WAIT, "the remote task canceled", || async { agent.cancels().contains(&remote) }).await;
    assert_eq!(agent.state(&remote), Some(a2a::TaskState::Canceled));
    assert_eq!(stack.task(&id).await["status"]["state"], "TASK_STATE_CANCELED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_split_inside_characters_and_line_ends_arrives_intact() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let _worker = stack.worker("w1", &[]);
    let id = stack.send("euro 50000").await;
    let task = stack.reaches(&id, "TASK_STATE_COMPLETED").await;
    let text = task["artifacts"][0]["parts"][0]["text"].as_str().expect("artifact text");
    assert!(!text.contains('\u{FFFD}'), "no replacement characters");
    assert_eq!(text, "a€".repeat(50_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_never_ends_fails_the_task_at_the_limit() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let _worker = stack.worker("w1", &["--remote-max-event-bytes", "65536"]);
    let id = stack.send("forever").await;
    let task = stack.reaches(&id, "TASK_STATE_FAILED").await;
    assert!(status_text(&task).contains("exceeded 65536 bytes"), "{task}");
    assert_eq!(stack.delegate_job(&id).await.1, 1, "a verdict, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_remote_task_is_followed_not_failed() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let _worker = stack.worker("w1", &["--remote-timeout", "1s"]);
    let id = stack.send("silent 4000").await;
    stack.reaches(&id, "TASK_STATE_COMPLETED").await;
    let (state, attempt, _) = stack.delegate_job(&id).await;
    assert_eq!((state.as_str(), attempt), ("done", 1), "silence cost no attempt");
    let failures: i32 = sqlx::query_scalar("SELECT consecutive_failures FROM agents WHERE name = 'strict'")
        .fetch_one(stack.db.pool())
        .await
        .expect("agent");
    assert_eq!(failures, 0, "and nothing against the agent's breaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_card_that_is_not_valid_a2a_fails_the_task_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/.well-known/agent-card.json",
        axum::routing::get(|| async { axum::Json(json!({"name": 5, "skills": "none"})) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let Some(stack) = Stack::start(&url).await else { return };
    let _worker = stack.worker("w1", &[]);
    let id = stack.send("hello").await;
    let task = stack.reaches(&id, "TASK_STATE_FAILED").await;
    assert!(status_text(&task).contains("no usable Agent Card"), "{task}");
    assert_eq!(stack.delegate_job(&id).await.1, 1, "failed at once, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_kind_this_worker_does_not_know_is_left_for_a_newer_one() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let task = submit(&stack.db.store, "from the future").await;
    sqlx::query("UPDATE jobs SET kind = 'from_the_future' WHERE task_id = $1")
        .bind(task.0)
        .execute(stack.db.pool())
        .await
        .expect("kind");
    let _worker = stack.worker("w1", &[]);
    eventually(WAIT, "the job looked at and left", || async {
        let (error,): (Option<String>,) = sqlx::query_as("SELECT last_error FROM jobs WHERE task_id = $1")
            .bind(task.0)
            .fetch_one(stack.db.pool())
            .await
            .expect("job");
        error.is_some_and(|e| e.contains("from_the_future"))
    })
    .await;
    let (state, attempt): (String, i32) = sqlx::query_as("SELECT state, attempt FROM jobs WHERE task_id = $1")
        .bind(task.0)
        .fetch_one(stack.db.pool())
        .await
        .expect("job");
    assert_eq!((state.as_str(), attempt), ("ready", 0), "no attempt spent");
    let state: String = sqlx::query_scalar("SELECT state FROM tasks WHERE id = $1")
        .bind(task.0)
        .fetch_one(stack.db.pool())
        .await
        .expect("task");
    assert_eq!(state, "submitted", "the customer's task is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_postgresql_stops_calling_the_agent() {
    let agent = StrictAgent::start_polled().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let proxy = Proxy::start(&stack.db.url).await;
    // This worker reaches the database only through the proxy.
    let mut args = vec!["worker", "--config", &stack.config, "--lease", "2s", "--heartbeat", "500ms"];
    args.extend(["--poll-interval", "200ms", "--db-max-connections", "2"]);
    let _worker = switchyard(&stack.db, &args).env("DATABASE_URL", proxy.url(&stack.db.url)).spawn().expect("worker");
    let id = stack.send("silent 60000").await;
    stack.reaches(&id, "TASK_STATE_WORKING").await;
    // It polls the remote task (at most every 5 s once it has backed off).
    eventually(WAIT, "the worker polling", || async { agent.looks() >= 2 }).await;

    proxy.cut();
    // Within its lease (2 s) it can no longer prove it holds the job, and
    // stops: no more calls to the agent, however long the cut lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_stop = agent.looks();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(agent.looks(), after_stop, "a worker that cannot prove its lease calls no agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_remote_task_is_known_reaches_the_agent_once() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let _worker = stack.worker("w1", &[]);
    let id = stack.send("silent 3000").await;
    // The remote task is checkpointed: the cancel queues its own cancel_remote job.
    eventually(WAIT, "the remote task checkpointed", || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT remote_task_id FROM delegations WHERE task_id = $1::uuid")
            .bind(&id)
            .fetch_optional(stack.db.pool())
            .await
            .expect("delegation")
            .flatten()
            .is_some()
    })
    .await;
    let remote = agent.received()[0].task_id.clone();
    let canceled = stack.rpc("CancelTask", json!({"id": id})).await;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED", "{canceled}");
    eventually(WAIT, "the remote task canceled", || async { agent.cancels().contains(&remote) }).await;
    // The delegation, still following the silent stream, learns of the
    // cancel when the agent speaks again (after 3 s), and leaves the remote
    // task to the cancel_remote job.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = agent.cancels().iter().filter(|t| **t == remote).count();
    assert_eq!(asked, 1, "the agent is asked to cancel once");
}

/// A worker cut off from PostgreSQL in the middle of a transaction (the
/// link goes silent, nothing closes) holds nothing past half its lease:
/// PostgreSQL ends its session, releasing the task's and the job's row
/// locks, so another worker finishes the task soon after the lease, a
/// cancel during the cut is answered, and when the link returns nothing is
/// applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_mid_transaction_blocks_nobody() {
    let agent = StrictAgent::start().await;
    let Some(stack) = Stack::start(&agent.url).await else { return };
    let proxy = Proxy::start(&stack.db.url).await;
    let mut args = vec!["worker", "--config", &stack.config, "--lease", "2s", "--heartbeat", "500ms"];
    args.extend(["--poll-interval", "200ms", "--worker-id", "cut-off"]);
    let _cut_off = switchyard(&stack.db, &args).env("DATABASE_URL", proxy.url(&stack.db.url)).spawn().expect("worker");
    let id = stack.send("silent 1500").await;
    stack.reaches(&id, "TASK_STATE_WORKING").await;
    // Its next transaction (folding the agent's answer) is cut after its
    // first statement ran.
    proxy.cut_after_begin();
    eventually(WAIT, "the cut", || async { proxy.is_cut() }).await;
    let cut_at = std::time::Instant::now();
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND client_port = ANY($1)",
    )
    .bind(proxy.upstream_ports())
    .fetch_one(stack.db.pool())
    .await
    .expect("sessions");
    // The cut sprang only once a statement inside a transaction had run, so
    // the session is left inside it: seen here, unless its idle limit (1 s)
    // already ended it on a slow machine.
    assert!(held <= 1, "{held} sessions of the cut-off worker inside a transaction");

    let _rescuer = stack.worker("rescuer", &[]);
    let cancel = async {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(8), stack.rpc("CancelTask", json!({"id": id}))).await;
        (started.elapsed(), answer.expect("a cancel during the cut is answered within 8 s"))
    };
    let (waited, canceled) = cancel.await;
    let state = canceled["result"]["status"]["state"].as_str().map(str::to_owned);
    let refused = canceled["error"]["data"][0]["reason"].as_str().map(str::to_owned);
    assert!(
        state.as_deref() == Some("TASK_STATE_CANCELED") || refused.as_deref() == Some("TASK_NOT_CANCELABLE"),
        "{canceled}"
    );
    assert!(waited < Duration::from_secs(4), "the cancel waited {waited:?} for a cut-off session's locks");
    let terminal = ["TASK_STATE_COMPLETED", "TASK_STATE_CANCELED", "TASK_STATE_FAILED"];
    eventually(WAIT, "the task ended", || async {
        terminal.contains(&stack.task(&id).await["status"]["state"].as_str().unwrap_or(""))
    })
    .await;
    let ended = stack.task(&id).await;
    // Lease (2 s), then the rescuer's poll, then its fold: about 3 s; the
    // bound leaves room for a busy machine, but not for a session left to
    // live until the link returns.
    assert!(cut_at.elapsed() < Duration::from_secs(8), "ended {:?} after the cut: {ended}", cut_at.elapsed());

    proxy.heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let terminal: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_events WHERE task_id = $1::uuid AND kind = 'status' \
         AND payload->>'state' IN ('TASK_STATE_COMPLETED', 'TASK_STATE_CANCELED', 'TASK_STATE_FAILED')",
    )
    .bind(&id)
    .fetch_one(stack.db.pool())
    .await
    .expect("events");
    assert_eq!(terminal, 1, "one ending, whatever the cut-off worker does when the link returns");
    assert_eq!(agent.received().len(), 1, "the message reached the agent once");
}
