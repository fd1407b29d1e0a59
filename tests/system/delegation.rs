//! Delegation end to end, with real processes on loopback: `switchyard
//! serve`, `switchyard worker` and `switchyard demo-agent`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::api::{message, rpc_call};
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

const WAIT: Duration = Duration::from_secs(30);

struct Stack {
    db: TestDb,
    base: String,
    agent_url: String,
    config: PathBuf,
    http: reqwest::Client,
    _serve: Child,
    _agent: Child,
    worker: Option<Child>,
    worker_args: Vec<String>,
}

impl Stack {
    async fn start(serve_args: &[&str]) -> Option<Stack> {
        Stack::start_with(serve_args, &[]).await
    }

    async fn start_with(serve_args: &[&str], worker_args: &[&str]) -> Option<Stack> {
        Stack::start_full(serve_args, worker_args, &[]).await
    }

    /// `None` when there is no PostgreSQL to test against.
    async fn start_full(serve_args: &[&str], worker_args: &[&str], agent_args: &[&str]) -> Option<Stack> {
        let db = TestDb::new().await?;
        let agent_port = free_port();
        let agent_listen = format!("127.0.0.1:{agent_port}");
        let mut args = vec!["demo-agent", "--listen", &agent_listen];
        args.extend_from_slice(agent_args);
        let agent = switchyard(&db, &args).spawn().expect("demo agent");
        let agent_url = format!("http://{agent_listen}");
        let config = std::env::temp_dir().join(format!("{}-stack.toml", db.schema));
        std::fs::write(
            &config,
            format!("default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"{agent_url}\"\n"),
        )
        .expect("config");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let config_arg = config.to_string_lossy().into_owned();
        let mut args = vec!["serve", "--listen", &listen, "--config", &config_arg];
        args.extend_from_slice(serve_args);
        let serve = switchyard(&db, &args).spawn().expect("serve");
        eventually(WAIT, "api and agent up", || async {
            http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
                && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
        })
        .await;
        let mut stack = Stack {
            db,
            base: format!("http://{listen}"),
            agent_url,
            config,
            http: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
            _serve: serve,
            _agent: agent,
            worker: None,
            worker_args: worker_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        stack.worker = Some(stack.spawn_worker("w1"));
        Some(stack)
    }

    fn spawn_worker(&self, id: &str) -> Child {
        let mut extra = vec!["--retry-base", "100ms", "--retry-cap", "300ms"];
        extra.extend(self.worker_args.iter().map(String::as_str));
        quick_worker(&self.db, &self.config.to_string_lossy(), id, &extra)
    }

    async fn job(&self, id: &str, kind: &str) -> (String, i32, Option<String>) {
        sqlx::query_as("SELECT state, attempt, last_error FROM jobs WHERE task_id = $1::uuid AND kind = $2")
            .bind(id)
            .bind(kind)
            .fetch_one(self.db.pool())
            .await
            .expect("job")
    }

    async fn rpc(&self, url: &str, method: &str, params: Value) -> Value {
        rpc_call(&self.http, url, method, params, &[("A2A-Version", "1.0")]).await
    }

    async fn send(&self, text: &str) -> Value {
        self.send_message(message(text)).await
    }

    async fn send_message(&self, message: Value) -> Value {
        let answer = self.rpc(&self.base, "SendMessage", json!({"message": message})).await;
        answer["result"]["task"].clone()
    }

    async fn task(&self, id: &str) -> Value {
        self.rpc(&self.base, "GetTask", json!({"id": id})).await["result"].clone()
    }

    async fn settled(&self, id: &str) -> Value {
        let mut task = self.task(id).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(
            task["status"]["state"].as_str(),
            Some(
                "TASK_STATE_COMPLETED"
                    | "TASK_STATE_FAILED"
                    | "TASK_STATE_REJECTED"
                    | "TASK_STATE_CANCELED"
                    | "TASK_STATE_INPUT_REQUIRED"
            )
        ) {
            assert!(tokio::time::Instant::now() < deadline, "task {id} did not settle: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            task = self.task(id).await;
        }
        task
    }

    async fn received(&self, message_id: &str) -> u64 {
        let counts: Value = self
            .http
            .get(format!("{}/received", self.agent_url))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        counts[message_id].as_u64().unwrap_or(0)
    }

    async fn remote_task(&self, id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT remote_task_id FROM delegations WHERE task_id = $1::uuid")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .expect("delegation")
            .flatten()
    }
}

fn state(task: &Value) -> &str {
    task["status"]["state"].as_str().unwrap_or("")
}

fn status_text(task: &Value) -> String {
    task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_carried_out_by_the_remote_agent() {
    let Some(stack) = Stack::start(&[]).await else { return };

    let echoed = stack.send("echo hello there").await;
    assert_eq!(state(&echoed), "TASK_STATE_COMPLETED", "{echoed}");
    assert_eq!(echoed["artifacts"][0]["parts"][0]["text"], "hello there");

    let streamed = stack.send("stream 3").await;
    assert_eq!(state(&streamed), "TASK_STATE_COMPLETED");
    let chunks: Vec<&str> = streamed["artifacts"][0]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(chunks, ["chunk 0;", "chunk 1;", "chunk 2;"], "chunks appended in order");

    // An agent that answers with a Message: the client gets that Message.
    let replied = stack.rpc(&stack.base, "SendMessage", json!({"message": message("message hi yourself")})).await;
    assert_eq!(replied["result"]["message"]["parts"][0]["text"], "hi yourself", "{replied}");

    let rejected = stack.send("reject").await;
    assert_eq!((state(&rejected), status_text(&rejected).as_str()), ("TASK_STATE_REJECTED", "I do not do that"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_question_becomes_ours_and_the_answer_goes_back() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let asked = stack.send("ask").await;
    assert_eq!((state(&asked), status_text(&asked).as_str()), ("TASK_STATE_INPUT_REQUIRED", "what is your answer?"));
    let id = asked["id"].as_str().expect("id");
    let remote = stack.remote_task(id).await.expect("remote id checkpointed");

    let mut answer = message("forty-two");
    answer["taskId"] = json!(id);
    let answered = stack.send_message(answer).await;
    assert_eq!(state(&answered), "TASK_STATE_COMPLETED", "{answered}");
    assert_eq!(answered["artifacts"][0]["parts"][0]["text"], "answer: forty-two");
    assert_eq!(stack.remote_task(id).await, Some(remote), "the answer went to the same remote task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_task_cancels_its_remote_task() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let msg = message("hang");
    let sent = stack
        .rpc(&stack.base, "SendMessage", json!({"message": msg, "configuration": {"returnImmediately": true}}))
        .await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the remote task known", || async { stack.remote_task(&id).await.is_some() }).await;
    let remote = stack.remote_task(&id).await.expect("remote");

    let canceled = stack.rpc(&stack.base, "CancelTask", json!({"id": id})).await;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED");
    let agent_url = stack.agent_url.clone();
    eventually(WAIT, "the remote task canceled", || async {
        let remote_task = stack.rpc(&agent_url, "GetTask", json!({"id": remote})).await;
        remote_task["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    })
    .await;
    assert_eq!(state(&stack.task(&id).await), "TASK_STATE_CANCELED", "ours stays canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_the_same_message_id() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let msg = message("fail 2 echo recovered");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let task = stack.send_message(msg).await;
    let task = stack.settled(task["id"].as_str().expect("id")).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "recovered");
    assert_eq!(stack.received(&message_id).await, 3, "the same message, delivered three times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_dead_letter_the_job_and_fail_the_task() {
    let Some(stack) = Stack::start(&["--max-attempts", "2"]).await else { return };
    let task = stack.send("fail 99 never").await;
    let task = stack.settled(task["id"].as_str().expect("id")).await;
    assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
    assert!(status_text(&task).contains("gave up after 2 attempts"), "{task}");
    let dead = switchyard(&stack.db, &["jobs", "dead"]).output().await.expect("jobs dead");
    assert!(String::from_utf8_lossy(&dead.stdout).contains(task["id"].as_str().expect("id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_name_and_skill_and_rejection_without_a_route() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let mut to_nobody = message("echo x");
    to_nobody["metadata"] = json!({"switchyard": {"agent": "nobody"}});
    let rejected = stack.send_message(to_nobody).await;
    assert_eq!(state(&rejected), "TASK_STATE_REJECTED");
    assert!(status_text(&rejected).contains("nobody"), "the reason names the missing agent: {rejected}");

    let mut unknown_skill = message("echo x");
    unknown_skill["metadata"] = json!({"switchyard": {"skill": "juggling"}});
    assert_eq!(state(&stack.send_message(unknown_skill).await), "TASK_STATE_REJECTED");

    // Registering with the CLI fetches the card, so its skills route.
    let added = switchyard(&stack.db, &["agents", "add", "second", &stack.agent_url]).output().await.expect("add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = switchyard(&stack.db, &["agents", "list"]).output().await.expect("list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("second"));
    let mut by_skill = message("echo via skill");
    by_skill["metadata"] = json!({"switchyard": {"skill": "echo"}});
    let routed = stack.send_message(by_skill).await;
    assert_eq!(state(&routed), "TASK_STATE_COMPLETED", "{routed}");
    let bad = switchyard(&stack.db, &["agents", "add", "broken", "http://127.0.0.1:9"]).output().await.expect("add");
    assert!(!bad.status.success(), "an agent without a card is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delegation_is_resumed_without_sending_again() {
    let Some(mut stack) = Stack::start(&[]).await else { return };
    let msg = message("sleep 2500");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let sent = stack
        .rpc(&stack.base, "SendMessage", json!({"message": msg, "configuration": {"returnImmediately": true}}))
        .await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the remote task checkpointed", || async { stack.remote_task(&id).await.is_some() }).await;

    let mut doomed = stack.worker.take().expect("worker");
    doomed.start_kill().expect("SIGKILL");
    doomed.wait().await.expect("reaped");
    stack.worker = Some(stack.spawn_worker("w2"));

    let task = stack.settled(&id).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "slept");
    assert_eq!(stack.received(&message_id).await, 1, "re-attached to the remote task, not sent again");
    let jobs: Vec<(String, i32)> = sqlx::query_as("SELECT state, attempt FROM jobs WHERE task_id = $1::uuid")
        .bind(&id)
        .fetch_all(stack.db.pool())
        .await
        .expect("jobs");
    assert_eq!(jobs, [("done".to_owned(), 2)], "the second worker finished the same job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_deadline_fails_and_its_remote_task_is_canceled() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let mut msg = message("hang");
    msg["metadata"] = json!({"switchyard": {"timeoutSeconds": 1}});
    let sent = stack
        .rpc(&stack.base, "SendMessage", json!({"message": msg, "configuration": {"returnImmediately": true}}))
        .await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    let task = stack.settled(&id).await;
    assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
    assert!(status_text(&task).contains("deadline"), "{task}");
    let remote = stack.remote_task(&id).await.expect("it had reached the agent");
    let agent_url = stack.agent_url.clone();
    eventually(WAIT, "the remote task canceled", || async {
        stack.rpc(&agent_url, "GetTask", json!({"id": remote})).await["result"]["status"]["state"]
            == "TASK_STATE_CANCELED"
    })
    .await;

    let mut bad = message("echo x");
    bad["metadata"] = json!({"switchyard": {"deadline": "tomorrow"}});
    let refused = stack.rpc(&stack.base, "SendMessage", json!({"message": bad})).await;
    assert_eq!(refused["error"]["code"], -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_holds_work_for_its_agent_without_spending_attempts() {
    let Some(stack) = Stack::start_with(&[], &["--breaker-failures", "2", "--breaker-cooldown", "3s"]).await else {
        return;
    };
    let sent = stack
        .rpc(
            &stack.base,
            "SendMessage",
            json!({"message": message("fail 2 echo first"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let failing = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    // Two failures open the breaker; work for the agent now waits.
    eventually(WAIT, "the breaker open", || async {
        let open: Option<bool> =
            sqlx::query_scalar("SELECT breaker_open_until > now() FROM agents WHERE name = 'demo'")
                .fetch_one(stack.db.pool())
                .await
                .expect("agent");
        open == Some(true)
    })
    .await;
    let sent = stack
        .rpc(
            &stack.base,
            "SendMessage",
            json!({"message": message("echo second"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let waiting = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the new task parked by the breaker", || async {
        let (state, attempt, error) = stack.job(&waiting, "delegate").await;
        state == "ready" && attempt == 0 && error.is_some_and(|e| e.contains("circuit breaker is open"))
    })
    .await;
    // After the cool-down a probe succeeds, the breaker closes, both finish.
    assert_eq!(state(&stack.settled(&failing).await), "TASK_STATE_COMPLETED");
    assert_eq!(state(&stack.settled(&waiting).await), "TASK_STATE_COMPLETED");
    assert_eq!(stack.job(&waiting, "delegate").await.1, 1, "waiting cost the task no attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_remote_work_is_parked_instead_of_holding_a_lease() {
    let Some(mut stack) = Stack::start_with(&[], &["--attach-budget", "500ms"]).await else { return };
    let msg = message("sleep 2500");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let sent = stack
        .rpc(&stack.base, "SendMessage", json!({"message": msg, "configuration": {"returnImmediately": true}}))
        .await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the job parked while the agent works", || async {
        let (state, _, error) = stack.job(&id, "delegate").await;
        state == "ready" && error.is_some_and(|e| e.contains("still working"))
    })
    .await;
    // The worker dies while the job is parked; another picks it up.
    let mut doomed = stack.worker.take().expect("worker");
    doomed.start_kill().expect("SIGKILL");
    doomed.wait().await.expect("reaped");
    stack.worker = Some(stack.spawn_worker("w2"));
    let task = stack.settled(&id).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(stack.job(&id, "delegate").await.1, 1, "parking spends no attempt");
    assert_eq!(stack.received(&message_id).await, 1, "a parked job re-attaches; it does not resend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_decide_between_retrying_and_failing() {
    let Some(stack) = Stack::start(&[]).await else { return };
    // 429 with Retry-After: retried (no sooner than the agent asked), then done.
    let throttled = message("throttle 1 echo patient");
    let message_id = throttled["messageId"].as_str().expect("id").to_owned();
    let task = stack.send_message(throttled).await;
    let task = stack.settled(task["id"].as_str().expect("id")).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(stack.received(&message_id).await, 2);

    // 404: the agent's answer will not change; fail at once, no retries.
    let gone = stack.send("status 404").await;
    let gone = stack.settled(gone["id"].as_str().expect("id")).await;
    assert_eq!(state(&gone), "TASK_STATE_FAILED", "{gone}");
    assert!(status_text(&gone).contains("404"), "{gone}");
    assert_eq!(stack.job(gone["id"].as_str().expect("id"), "delegate").await.1, 1, "one attempt only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_trace_reaches_the_agent_and_tasks_show_tells_the_story() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let msg = message("echo traced");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let headers = [("A2A-Version", "1.0"), ("traceparent", traceparent.as_str())];
    let answer = rpc_call(&stack.http, &stack.base, "SendMessage", json!({"message": msg}), &headers).await;
    let id = answer["result"]["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(state(&answer["result"]["task"]), "TASK_STATE_COMPLETED");

    let traces: Value =
        stack.http.get(format!("{}/traces", stack.agent_url)).send().await.expect("get").json().await.expect("json");
    assert!(traces[&message_id].as_str().is_some_and(|t| t.contains(trace_id)), "the agent saw our trace: {traces}");

    let trace_url = "http://traces.example/trace/{trace_id}";
    let shown =
        switchyard(&stack.db, &["tasks", "show", &id, "--trace-url", trace_url]).output().await.expect("tasks show");
    let text = String::from_utf8_lossy(&shown.stdout);
    let link = format!("http://traces.example/trace/{trace_id}");
    for expected in
        [id.as_str(), "COMPLETED", trace_id, link.as_str(), "demo", "TIMELINE", "WORKING", "delegate", "1/8"]
    {
        assert!(text.contains(expected), "tasks show lacks {expected:?}:\n{text}");
    }
    let as_json = switchyard(&stack.db, &["tasks", "show", &id, "--json"]).output().await.expect("tasks show --json");
    let document: Value = serde_json::from_slice(&as_json.stdout).expect("JSON");
    assert_eq!(document["traceId"], trace_id);
    assert_eq!(document["delegation"]["agent"], "demo");
    let listed = switchyard(&stack.db, &["tasks", "list", "--state", "completed"]).output().await.expect("tasks list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_the_queue_the_tasks_and_the_workers() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let Some(stack) = Stack::start_with(&[], &["--metrics-listen", &listen]).await else { return };
    let scrape = |url: String| {
        let http = stack.http.clone();
        async move { http.get(url).send().await.expect("scrape").text().await.expect("text") }
    };
    // The worker answers orchestrators' probes beside its metrics.
    let probe = |path: &'static str| http_get(metrics_port, path);
    eventually(WAIT, "the worker's endpoints up", || async { probe("/healthz").await.is_some_and(|r| r.0 == 200) })
        .await;
    let ready = probe("/readyz").await.expect("readyz");
    assert_eq!(ready.0, 200, "{}", ready.1);
    // A task waiting for input is an open task; a resent message is not counted twice.
    let asking = stack.send("ask").await;
    assert_eq!(state(&asking), "TASK_STATE_INPUT_REQUIRED");
    let open = scrape(format!("{}/metrics", stack.base)).await;
    assert!(open.contains("switchyard_tasks{store=\"default\",state=\"input_required\"} 1"), "{open}");

    assert_eq!(state(&stack.send("echo counted").await), "TASK_STATE_COMPLETED");
    assert_eq!(state(&stack.send("status 400").await), "TASK_STATE_FAILED");
    let cancel = stack.rpc(&stack.base, "CancelTask", json!({"id": asking["id"]})).await;
    assert_eq!(cancel["result"]["status"]["state"], "TASK_STATE_CANCELED", "{cancel}");

    let api = scrape(format!("{}/metrics", stack.base)).await;
    for expected in [
        // Open tasks only: finished ones are counted by the workers' counters.
        "switchyard_tasks{store=\"default\",state=\"input_required\"} 0",
        "switchyard_tasks{store=\"default\",state=\"working\"} 0",
        "switchyard_tasks_received_total{outcome=\"accepted\"} 3",
        "switchyard_jobs{store=\"default\",state=\"ready\",kind=\"delegate\"} 0",
        "switchyard_jobs{store=\"default\",state=\"dead\",kind=\"delegate\"} 0",
        "switchyard_queue_oldest_ready_seconds",
        "switchyard_agent_breaker_open{store=\"default\",agent=\"demo\"} 0",
    ] {
        assert!(api.contains(expected), "api metrics lack {expected:?}:\n{api}");
    }
    let worker = scrape(format!("http://{listen}/metrics")).await;
    for expected in [
        // The question settled one delegation, the echo another.
        "switchyard_job_outcomes_total{kind=\"delegate\",outcome=\"done\"} 2",
        "switchyard_job_outcomes_total{kind=\"delegate\",outcome=\"failed\"} 1",
        "switchyard_claim_latency_seconds",
        "switchyard_remote_exchange_seconds",
        "switchyard_task_duration_seconds_count{state=\"completed\"} 1",
        "switchyard_task_duration_seconds_count{state=\"failed\"} 1",
        "switchyard_remote_calls_total{agent=\"demo\",outcome=\"ok\"}",
    ] {
        assert!(worker.contains(expected), "worker metrics lack {expected:?}:\n{worker}");
    }

    // Every metric the shipped alert rules and dashboard name exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/switchyard.json"] {
        let text = std::fs::read_to_string(root.join(file)).expect("deploy file");
        if file.ends_with(".json") {
            let parsed: Result<Value, _> = serde_json::from_str(&text);
            assert!(parsed.is_ok_and(|d| d["panels"].as_array().is_some_and(|p| !p.is_empty())), "{file}");
        }
        let mut named: Vec<&str> = text
            .match_indices("switchyard_")
            .map(|(at, _)| {
                let rest = &text[at..];
                &rest[..rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(rest.len())]
            })
            .collect();
        named.sort_unstable();
        named.dedup();
        assert!(named.len() >= 5, "{file} names metrics: {named:?}");
        for metric in named {
            let exported = |text: &str| {
                text.lines().any(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
            };
            assert!(exported(&api) || exported(&worker), "{file} names {metric}, which no process exports");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_streaming_is_sent_to_then_polled_without_repeating_itself() {
    let Some(stack) = Stack::start_full(&[], &[], &["--no-streaming"]).await else { return };
    let task = stack.send("sleep 1200").await;
    let id = task["id"].as_str().expect("id").to_owned();
    let task = stack.settled(&id).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "slept");
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM task_events WHERE task_id = $1::uuid ORDER BY seq")
        .bind(&id)
        .fetch_all(stack.db.pool())
        .await
        .expect("events");
    assert_eq!(
        kinds,
        ["status", "message", "status", "artifact", "status"],
        "each change once, however often we polled"
    );
}

/// An agent that serves its card and then accepts every call without ever
/// answering: its JSON-RPC endpoint never sends response headers, and its
/// gRPC port accepts connections and never writes a byte.
struct StalledAgent {
    url: String,
}

impl StalledAgent {
    async fn start() -> StalledAgent {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let grpc_addr = grpc.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = grpc.accept().await {
                held.push(socket);
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let card = |interface: Value| {
            json!({
                "name": "stalled", "description": "Says nothing.", "version": "1.0.0",
                "supportedInterfaces": [interface],
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
                "defaultOutputModes": ["text/plain"], "skills": [],
            })
        };
        let http_card =
            card(json!({"url": format!("{url}/rpc"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}));
        let grpc_card = card(json!({"url": grpc_addr, "protocolBinding": "GRPC", "protocolVersion": "1.0"}));
        let app = axum::Router::new()
            .route(
                "/http/.well-known/agent-card.json",
                axum::routing::get(move || async move { axum::Json(http_card) }),
            )
            .route(
                "/grpc/.well-known/agent-card.json",
                axum::routing::get(move || async move { axum::Json(grpc_card) }),
            )
            .route("/rpc", axum::routing::post(std::future::pending::<()>));
        tokio::spawn(async move { axum::serve(listener, app).await });
        StalledAgent { url }
    }
}

/// Agents that accept a call and never answer hold no worker slot for
/// ever: the wait for the response headers has the unary deadline, the
/// attempt fails as a transient failure (retried, then dead-lettered), and
/// the breaker hears of it; meanwhile a worker with one slot still serves
/// the working agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_never_answer_do_not_hold_a_worker() {
    let stalled = StalledAgent::start().await;
    let Some(stack) = Stack::start_with(
        &["--max-attempts", "2"],
        &["--remote-timeout", "1s", "--concurrency", "1", "--breaker-failures", "100"],
    )
    .await
    else {
        return;
    };
    for name in ["http", "grpc"] {
        let url = format!("{}/{name}", stalled.url);
        let added = switchyard(&stack.db, &["agents", "add", &format!("stalled-{name}"), &url]).output().await;
        let added = added.expect("agents add");
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    }
    let mut tasks = Vec::new();
    for name in ["http", "grpc"] {
        let mut to = message("echo never");
        to["metadata"] = json!({"switchyard": {"agent": format!("stalled-{name}")}});
        let sent = stack
            .rpc(&stack.base, "SendMessage", json!({"message": to, "configuration": {"returnImmediately": true}}))
            .await;
        tasks.push(sent["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{sent}")).to_owned());
    }
    for task in &tasks {
        let task = stack.settled(task).await;
        assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
        assert!(status_text(&task).contains("gave up after 2 attempts"), "{task}");
        assert!(status_text(&task).contains("opened no stream within 1s"), "{task}");
    }
    let failures: Vec<i32> =
        sqlx::query_scalar("SELECT consecutive_failures FROM agents WHERE name LIKE 'stalled-%' ORDER BY name")
            .fetch_all(stack.db.pool())
            .await
            .expect("breakers");
    assert_eq!(failures, [2, 2], "each stall counted against its agent");
    let done = stack.send("echo still served").await;
    assert_eq!(state(&stack.settled(done["id"].as_str().expect("id")).await), "TASK_STATE_COMPLETED");
    drop(stalled);
}

/// What a client and the logs are told about an agent that cannot be
/// reached is the kind of failure: never the agent's URL, whose query may
/// carry a token, nor the HTTP client's text that ends with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_no_url_in_statuses_or_logs() {
    let Some(mut stack) = Stack::start_with(&["--max-attempts", "2"], &[]).await else { return };
    drop(stack.worker.take()); // only the watched worker below runs
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}/a2a?token=s3cret-token-123");
    sqlx::query("INSERT INTO agents (name, url) VALUES ('hidden', $1)")
        .bind(&url)
        .execute(stack.db.pool())
        .await
        .expect("agent");
    // A worker whose logs are read (the stack's own writes to the terminal).
    let mut args = vec!["worker", "--config", stack.config.to_str().expect("path")];
    args.extend(["--poll-interval", "200ms", "--retry-base", "100ms", "--retry-cap", "200ms"]);
    let watched = switchyard(&stack.db, &args)
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("worker");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the api's agent registry
    let mut to = message("echo never");
    to["metadata"] = json!({"switchyard": {"agent": "hidden"}});
    let task = stack.send_message(to).await;
    let task = stack.settled(task["id"].as_str().expect("id")).await;
    assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
    let text = status_text(&task);
    assert!(text.contains("could not connect"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains(&closed.to_string()), "{text}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(watched.id().expect("pid")).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop");
    let output = watched.wait_with_output().await.expect("output");
    let logs = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("could not connect"), "the worker logged the failures");
    assert!(!logs.contains("s3cret-token-123"), "a log line carries the agent's token");
}

/// A graceful stop of `serve` does not cut a client waiting on a blocking
/// send: its task completes during the drain and the answer goes out then,
/// not when the drain runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_send_is_answered_during_a_drain_as_soon_as_its_task_ends() {
    let Some(stack) = Stack::start(&["--http-drain-timeout", "10s"]).await else { return };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(stack._serve.id().expect("pid")).expect("pid"));
    let started = std::time::Instant::now();
    let waiting = stack.send_message(message("sleep 2500"));
    let stop = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    };
    let (task, ()) = tokio::join!(waiting, stop);
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    assert!(started.elapsed() < Duration::from_secs(7), "answered after {:?}: held for the drain", started.elapsed());
}
