//! Fan-outs and pipelines end to end: real `serve` and `worker` processes,
//! several demo agents (and one on the official Python SDK), on loopback.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::api::{Sse, message, rpc_call};
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

const WAIT: Duration = Duration::from_secs(60);

/// The plans every stack is configured with.
const PLANS: &str = r#"
[[plans]]
name = "both"
fanout = ["a", "b"]

[[plans]]
name = "first"
fanout = ["slow", "a"]
join = "any"

[[plans]]
name = "two_of_three"
fanout = ["a", "slow", "b"]
join = "quorum"
quorum = 2

[[plans]]
name = "strict"
fanout = ["a", "dead"]

[[plans]]
name = "partial"
fanout = ["a", "dead"]
allow_partial = true

[[plans]]
name = "chain"
pipeline = ["a", "b", "a"]

[[plans]]
name = "nested"
description = "Both agents at once, then a summary by a"
pipeline = ["both", "a"]
"#;

/// serve + worker + demo agents `a`, `b` (no pause), `slow` (4 s per echo),
/// and `dead` (a closed port).
struct Stack {
    db: TestDb,
    base: String,
    config: String,
    http: reqwest::Client,
    agents: HashMap<&'static str, String>,
    _processes: Vec<Child>,
    worker: Option<Child>,
}

impl Stack {
    /// `None` when there is no PostgreSQL to test against.
    async fn start(extra_agents: &[(&'static str, String)]) -> Option<Stack> {
        let db = TestDb::new().await?;
        let mut processes = Vec::new();
        let mut agents = HashMap::new();
        let mut ports = Vec::new();
        for (name, pause) in [("a", "0ms"), ("b", "0ms"), ("slow", "4s")] {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            processes.push(
                switchyard(&db, &["demo-agent", "--listen", &listen, "--pause", pause]).spawn().expect("demo agent"),
            );
            agents.insert(name, format!("http://{listen}"));
            ports.push(port);
        }
        agents.insert("dead", format!("http://127.0.0.1:{}", free_port()));
        for (name, url) in extra_agents {
            agents.insert(name, url.clone());
        }
        let mut toml = String::new();
        for (name, url) in &agents {
            toml.push_str(&format!("[[agents]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"));
        }
        toml.push_str(PLANS);
        let path = std::env::temp_dir().join(format!("{}-plans.toml", db.schema));
        std::fs::write(&path, toml).expect("config");
        let config = path.to_string_lossy().into_owned();
        // The admin token from a file, as it should be given (not on a
        // command line, where `ps` shows it).
        let token_file = std::env::temp_dir().join(format!("{}-admin-token", db.schema));
        std::fs::write(&token_file, "s3cret\n").expect("token file");
        let token_file = token_file.to_string_lossy().into_owned();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        processes.push(
            switchyard(
                &db,
                &[
                    "serve",
                    "--listen",
                    &listen,
                    "--config",
                    &config,
                    "--max-attempts",
                    "2",
                    "--admin-token-file",
                    &token_file,
                ],
            )
            .spawn()
            .expect("serve"),
        );
        eventually(WAIT, "api and agents up", || async {
            let mut up = http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200);
            for p in &ports {
                up = up && http_get(*p, "/.well-known/agent-card.json").await.is_some();
            }
            up
        })
        .await;
        let mut stack = Stack {
            db,
            base: format!("http://{listen}"),
            config,
            http: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
            agents,
            _processes: processes,
            worker: None,
        };
        stack.worker = Some(stack.spawn_worker("w1"));
        Some(stack)
    }

    fn spawn_worker(&self, id: &str) -> Child {
        let extra = ["--concurrency", "32", "--retry-base", "100ms", "--retry-cap", "300ms"];
        quick_worker(&self.db, &self.config, id, &extra)
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        rpc_call(&self.http, &self.base, method, params, &[("A2A-Version", "1.0")]).await
    }

    /// A blocking send; the task it returns.
    async fn send(&self, message: Value) -> Value {
        let answer = self.rpc("SendMessage", json!({ "message": message })).await;
        assert!(answer.get("error").is_none(), "{answer}");
        answer["result"]["task"].clone()
    }

    async fn send_to(&self, plan: &str, text: &str) -> Value {
        let mut m = message(text);
        m["metadata"] = json!({"switchyard": {"skill": plan}});
        self.send(m).await
    }

    async fn task(&self, id: &str) -> Value {
        self.rpc("GetTask", json!({ "id": id, "historyLength": 10 })).await["result"].clone()
    }

    async fn settled(&self, id: &str) -> Value {
        let mut task = self.task(id).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !is_settled(&task) {
            assert!(tokio::time::Instant::now() < deadline, "task {id} did not settle: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            task = self.task(id).await;
        }
        task
    }

    /// The skill ids Switchyard's Agent Card offers.
    async fn skills(&self) -> Vec<String> {
        let url = format!("{}/.well-known/agent-card.json", self.base);
        let card: Value = self.http.get(url).send().await.expect("card").json().await.expect("json");
        let skills = card["skills"].as_array().expect("skills");
        skills.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect()
    }

    /// The parent's children as ListTasks gives them, by position.
    async fn children(&self, parent: &str) -> Vec<Value> {
        let listed =
            self.rpc("ListTasks", json!({ "parentTaskId": parent, "pageSize": 100, "includeArtifacts": true })).await;
        let mut tasks = listed["result"]["tasks"].as_array().cloned().unwrap_or_else(|| panic!("{listed}"));
        tasks.sort_by_key(|t| t["metadata"]["switchyard"]["position"].as_i64());
        tasks
    }

    /// The state of a task at a demo agent, as that agent reports it.
    async fn remote_state(&self, agent: &str, child: &str) -> String {
        let remote: Option<String> =
            sqlx::query_scalar("SELECT remote_task_id FROM delegations WHERE task_id = $1::uuid")
                .bind(child)
                .fetch_optional(self.db.pool())
                .await
                .expect("delegation")
                .flatten();
        let Some(remote) = remote else { return "unknown".into() };
        let answer = rpc_call(&self.http, &self.agents[agent], "GetTask", json!({"id": remote}), &[]).await;
        answer["result"]["status"]["state"].as_str().unwrap_or("?").to_owned()
    }

    /// The status events of a task's log, as state names.
    async fn status_events(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT payload->>'state' FROM task_events WHERE task_id = $1::uuid AND kind = 'status' ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await
        .expect("events")
    }
}

fn is_settled(task: &Value) -> bool {
    matches!(
        state(task),
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_REJECTED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_INPUT_REQUIRED"
    )
}

fn state(task: &Value) -> &str {
    task["status"]["state"].as_str().unwrap_or("")
}

fn status_text(task: &Value) -> String {
    task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// The texts of a task's artifacts, with the agent each came from.
fn artifacts(task: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = task["artifacts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    let agent = a["metadata"]["switchyard"]["agent"].as_str().unwrap_or("?").to_owned();
                    let text: String =
                        a["parts"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect();
                    (agent, text)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanouts_are_joined_by_their_policy() {
    let Some(stack) = Stack::start(&[]).await else { return };

    // The plans are skills on the card.
    let skills = stack.skills().await;
    for plan in ["both", "first", "two_of_three", "strict", "partial", "chain", "nested"] {
        assert!(skills.iter().any(|s| s == plan), "{plan} missing from {skills:?}");
    }

    // all: both children complete; the parent shows each one's artifact,
    // naming the agent; the children are real tasks the caller can read.
    let both = stack.send_to("both", "echo hi").await;
    assert_eq!(state(&both), "TASK_STATE_COMPLETED", "{both}");
    assert_eq!(status_text(&both), "all 2 children completed");
    assert_eq!(artifacts(&both), [("a".into(), "hi".into()), ("b".into(), "hi".into())]);
    let id = both["id"].as_str().expect("id");
    let children = stack.children(id).await;
    assert_eq!(children.len(), 2);
    for (i, child) in children.iter().enumerate() {
        assert_eq!(state(child), "TASK_STATE_COMPLETED");
        assert_eq!(child["metadata"]["switchyard"]["parentTaskId"], id);
        assert_eq!(child["metadata"]["switchyard"]["position"], i);
        let read = stack.task(child["id"].as_str().expect("child id")).await;
        assert_eq!(read["artifacts"][0]["parts"][0]["text"], "hi", "{read}");
    }
    // Children are not listed beside the tasks the client sent.
    let top = stack.rpc("ListTasks", json!({"pageSize": 100})).await;
    let top_ids: Vec<&str> =
        top["result"]["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
    assert!(top_ids.contains(&id) && !children.iter().any(|c| top_ids.contains(&c["id"].as_str().unwrap_or(""))));

    // any: the fast agent wins; the slow one's child and remote task are canceled.
    let first = stack.send_to("first", "echo quick").await;
    assert_eq!(state(&first), "TASK_STATE_COMPLETED", "{first}");
    assert!(status_text(&first).contains("#1 (a) completed first"), "{first}");
    let children = stack.children(first["id"].as_str().expect("id")).await;
    let loser = children[0]["id"].as_str().expect("loser").to_owned();
    // Canceled here, and at its agent; or, on a busy machine, canceled
    // before its delegation ever ran, so no remote task exists to cancel.
    eventually(WAIT, "the loser canceled here and at its agent", || async {
        state(&stack.task(&loser).await) == "TASK_STATE_CANCELED"
            && matches!(stack.remote_state("slow", &loser).await.as_str(), "TASK_STATE_CANCELED" | "unknown")
    })
    .await;

    // quorum 2 of 3: the two fast agents decide; the slow one is canceled.
    let quorum = stack.send_to("two_of_three", "echo q").await;
    assert_eq!(state(&quorum), "TASK_STATE_COMPLETED", "{quorum}");
    assert!(status_text(&quorum).starts_with("2 of 3 children completed (quorum 2)"), "{quorum}");
    let children = stack.children(quorum["id"].as_str().expect("id")).await;
    let slow = children[1]["id"].as_str().expect("slow").to_owned();
    eventually(WAIT, "the slow child canceled", || async { state(&stack.task(&slow).await) == "TASK_STATE_CANCELED" })
        .await;

    // all, one child failing: the parent fails and says which child and why.
    let strict = stack.send_to("strict", "echo s").await;
    assert_eq!(state(&strict), "TASK_STATE_FAILED", "{strict}");
    let why = status_text(&strict);
    assert!(why.starts_with("child #1 (dead) failed"), "{why}");

    // all with allow_partial: completes with what succeeded, naming what failed.
    let partial = stack.send_to("partial", "echo p").await;
    assert_eq!(state(&partial), "TASK_STATE_COMPLETED", "{partial}");
    let why = status_text(&partial);
    assert!(why.starts_with("1 of 2 children completed; failed: #1 (dead) failed"), "{why}");
    assert_eq!(artifacts(&partial), [("a".into(), "p".into())]);

    // A fan-out over a skill: every registered agent whose card offers it
    // (the dead agent's card was never fetched, so it offers nothing).
    let mut by_skill = message("echo skill");
    by_skill["metadata"] = json!({"switchyard": {"fanoutSkill": "echo", "join": "quorum", "quorum": 2}});
    let skilled = stack.send(by_skill).await;
    assert_eq!(state(&skilled), "TASK_STATE_COMPLETED", "{skilled}");
    let mut agents: Vec<String> = stack
        .children(skilled["id"].as_str().expect("id"))
        .await
        .iter()
        .map(|c| c["metadata"]["switchyard"]["agent"].as_str().unwrap_or("").to_owned())
        .collect();
    agents.sort();
    assert_eq!(agents, ["a", "b", "slow"]);

    // Every parent ended exactly once.
    for task in [&both, &first, &quorum, &strict, &partial] {
        let trail = stack.status_events(task["id"].as_str().expect("id")).await;
        let terminal =
            trail.iter().filter(|s| matches!(s.as_str(), "TASK_STATE_COMPLETED" | "TASK_STATE_FAILED")).count();
        assert_eq!(terminal, 1, "{trail:?}");
    }

    // An ad hoc plan naming an agent nobody registered is rejected with the
    // reason; one over the limits is refused outright.
    let mut unknown = message("echo x");
    unknown["metadata"] = json!({"switchyard": {"fanout": ["a", "ghost"]}});
    let rejected = stack.send(unknown).await;
    assert_eq!(state(&rejected), "TASK_STATE_REJECTED");
    assert!(status_text(&rejected).contains("\"ghost\""), "{rejected}");
    let mut wide = message("echo x");
    wide["metadata"] = json!({"switchyard": {"fanout": vec!["a"; 129]}});
    let refused = stack.rpc("SendMessage", json!({"message": wide})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("between 1 and 128"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_pass_artifacts_along_and_questions_reach_the_client() {
    let Some(stack) = Stack::start(&[]).await else { return };

    // Each step's artifact is the next step's input: the demo agent strips
    // one "echo" per step.
    let chain = stack.send_to("chain", "echo echo echo hi").await;
    assert_eq!(state(&chain), "TASK_STATE_COMPLETED", "{chain}");
    assert_eq!(status_text(&chain), "all 3 steps completed");
    let steps = stack.children(chain["id"].as_str().expect("id")).await;
    let outputs: Vec<&str> =
        steps.iter().map(|s| s["artifacts"][0]["parts"][0]["text"].as_str().unwrap_or("")).collect();
    assert_eq!(outputs, ["echo echo hi", "echo hi", "hi"]);
    // Every step sees the original request.
    for step in &steps {
        let first = &stack.task(step["id"].as_str().expect("id")).await["history"][0];
        assert_eq!(first["metadata"]["switchyard"]["request"]["parts"][0]["text"], "echo echo echo hi", "{first}");
    }

    // A plan inside a plan: a fan-out as a pipeline's first step.
    let nested = stack.send_to("nested", "echo echo deep").await;
    assert_eq!(state(&nested), "TASK_STATE_COMPLETED", "{nested}");
    let steps = stack.children(nested["id"].as_str().expect("id")).await;
    assert_eq!(steps.len(), 2);
    assert_eq!(stack.children(steps[0]["id"].as_str().expect("id")).await.len(), 2, "the fan-out's own children");
    // The second step got both fan-out members' artifacts as its input.
    let input = &stack.task(steps[1]["id"].as_str().expect("id")).await["history"][0];
    let parts: Vec<&str> =
        input["parts"].as_array().expect("parts").iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(parts, ["echo deep", "echo deep"], "{input}");
    assert_eq!(steps[1]["artifacts"][0]["parts"][0]["text"], "deep", "{}", steps[1]);
    // The operator sees the tree.
    let nested_id = nested["id"].as_str().expect("id");
    let shown = switchyard(&stack.db, &["tasks", "show", nested_id]).output().await.expect("tasks show");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let tree: Vec<&str> = shown.lines().skip_while(|l| *l != "CHILDREN").skip(1).collect();
    let fanout = steps[0]["id"].as_str().expect("id");
    let summary = steps[1]["id"].as_str().expect("id");
    assert_eq!(tree.len(), 4, "{shown}");
    assert!(tree[0].starts_with("  ├─ #0 both") && tree[0].contains(fanout), "{shown}");
    assert!(tree[1].starts_with("     ├─ #0 a") && tree[2].starts_with("     └─ #1 b"), "{shown}");
    assert!(tree[3].starts_with("  └─ #1 a") && tree[3].contains(summary), "{shown}");
    assert!(tree.iter().all(|l| l.contains("COMPLETED")), "{shown}");

    // A step asking for input: the question surfaces on the parent, naming
    // the child; the answer given to the parent reaches that child's agent.
    let asked = stack.send_to("chain", "echo ask").await;
    assert_eq!(state(&asked), "TASK_STATE_INPUT_REQUIRED", "{asked}");
    assert_eq!(status_text(&asked), "what is your answer?");
    let steps = stack.children(asked["id"].as_str().expect("id")).await;
    assert_eq!(asked["status"]["message"]["metadata"]["switchyard"]["childTaskId"], steps[1]["id"]);
    assert_eq!(asked["status"]["message"]["metadata"]["switchyard"]["agent"], "b");
    let mut answer = message("42");
    answer["taskId"] = asked["id"].clone();
    let answered = stack.send(answer).await;
    assert_eq!(state(&answered), "TASK_STATE_COMPLETED", "{answered}");
    let steps = stack.children(asked["id"].as_str().expect("id")).await;
    assert_eq!(steps[1]["artifacts"][0]["parts"][0]["text"], "answer: 42");
    assert_eq!(steps[2]["artifacts"][0]["parts"][0]["text"], "answer: 42", "the last step got b's answer");
    // A question from a plan inside a plan: each answer given to the top
    // task reaches the grandchild that asked.
    let deep = stack.send_to("nested", "ask").await;
    assert_eq!(state(&deep), "TASK_STATE_INPUT_REQUIRED", "{deep}");
    let mut answer = message("first");
    answer["taskId"] = deep["id"].clone();
    let again = stack.send(answer).await;
    assert_eq!(state(&again), "TASK_STATE_INPUT_REQUIRED", "the other grandchild asks next: {again}");
    let mut answer = message("second");
    answer["taskId"] = deep["id"].clone();
    let done = stack.send(answer).await;
    assert_eq!(state(&done), "TASK_STATE_COMPLETED", "{done}");
    let steps = stack.children(deep["id"].as_str().expect("id")).await;
    let mut answers: Vec<String> = stack
        .children(steps[0]["id"].as_str().expect("id"))
        .await
        .iter()
        .map(|g| g["artifacts"][0]["parts"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    answers.sort();
    assert_eq!(answers, ["answer: first", "answer: second"]);

    // The answer is in the parent's history and in the child's.
    let parent = stack.task(asked["id"].as_str().expect("id")).await;
    let said: Vec<&str> = parent["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|m| m["role"] == "ROLE_USER")
        .filter_map(|m| m["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(said, ["echo ask", "42"]);

    // Two children asking at once: the first to ask is answered first; the
    // answer surfaces the other's question at once; both answers arrive.
    let pair = stack.send_to("both", "ask").await;
    assert_eq!(state(&pair), "TASK_STATE_INPUT_REQUIRED", "{pair}");
    let first = pair["status"]["message"]["metadata"]["switchyard"]["childTaskId"].clone();
    let mut answer = message("one");
    answer["taskId"] = pair["id"].clone();
    let next = stack.send(answer).await;
    assert_eq!(state(&next), "TASK_STATE_INPUT_REQUIRED", "{next}");
    let second = next["status"]["message"]["metadata"]["switchyard"]["childTaskId"].clone();
    assert!(second.is_string() && second != first, "the other child's question: {next}");
    let mut answer = message("two");
    answer["taskId"] = pair["id"].clone();
    let done = stack.send(answer).await;
    assert_eq!(state(&done), "TASK_STATE_COMPLETED", "{done}");
    let by_child: HashMap<String, String> = done["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| {
            let child = a["metadata"]["switchyard"]["childTaskId"].as_str().unwrap_or("").to_owned();
            (child, a["parts"][0]["text"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(by_child[first.as_str().expect("first")], "answer: one");
    assert_eq!(by_child[second.as_str().expect("second")], "answer: two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_parent_cancels_its_children_and_their_remote_tasks() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let mut m = message("hang");
    m["metadata"] = json!({"switchyard": {"skill": "both"}});
    let sent = stack.rpc("SendMessage", json!({"message": m, "configuration": {"returnImmediately": true}})).await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "both children working at their agents", || async {
        let children = stack.children(&id).await;
        let mut working = children.len() == 2;
        for (child, agent) in children.iter().zip(["a", "b"]) {
            working =
                working && stack.remote_state(agent, child["id"].as_str().unwrap_or("")).await == "TASK_STATE_WORKING";
        }
        working
    })
    .await;
    let canceled = stack.rpc("CancelTask", json!({"id": id})).await;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED", "{canceled}");
    let children = stack.children(&id).await;
    for (child, agent) in children.iter().zip(["a", "b"]) {
        let child = child["id"].as_str().expect("id").to_owned();
        eventually(WAIT, "the child and its remote task canceled", || async {
            state(&stack.task(&child).await) == "TASK_STATE_CANCELED"
                && stack.remote_state(agent, &child).await == "TASK_STATE_CANCELED"
        })
        .await;
    }
    assert_eq!(stack.status_events(&id).await.last().map(String::as_str), Some("TASK_STATE_CANCELED"));

    // A parent's deadline ends its children too.
    let mut m = message("hang");
    m["metadata"] = json!({"switchyard": {"skill": "both", "timeoutSeconds": 1}});
    let expired = stack.send(m).await;
    assert_eq!(state(&expired), "TASK_STATE_FAILED", "{expired}");
    assert!(status_text(&expired).contains("deadline"), "{expired}");
    let id = expired["id"].as_str().expect("id").to_owned();
    for (child, agent) in stack.children(&id).await.iter().zip(["a", "b"]) {
        let child = child["id"].as_str().expect("id").to_owned();
        eventually(WAIT, "the child and its remote task ended with the parent", || async {
            state(&stack.task(&child).await) == "TASK_STATE_CANCELED"
                && stack.remote_state(agent, &child).await == "TASK_STATE_CANCELED"
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_children_stream_into_the_parent_exactly_once_each() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let names: Vec<&str> = (0..100).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
    let mut m = message("stream 2");
    m["metadata"] = json!({"switchyard": {"fanout": names}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": m}});
    let response = stack
        .http
        .post(&stack.base)
        .header("A2A-Version", "1.0")
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("stream");
    let mut sse = Sse::from_response(response);
    assert_eq!(sse.status, 200);
    // artifact id -> chunks seen, in order
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut last = None;
    let mut parent = None;
    while let Some(event) = tokio::time::timeout(WAIT, sse.next()).await.expect("an event in time") {
        let result = &event.data["result"];
        if let Some(id) = result.get("task").and_then(|t| t["id"].as_str()) {
            parent.get_or_insert_with(|| id.to_owned());
        }
        if let Some(id) = result.get("artifactUpdate").and_then(|u| u["taskId"].as_str()) {
            parent.get_or_insert_with(|| id.to_owned());
        }
        if let Some(update) = result.get("artifactUpdate") {
            let artifact = &update["artifact"];
            let id = artifact["artifactId"].as_str().expect("artifact id").to_owned();
            assert!(artifact["metadata"]["switchyard"]["childTaskId"].is_string(), "{artifact}");
            // As A2A has a client rebuild it: a chunk appends, anything
            // else replaces (a worker that re-attached to a child's remote
            // task folds the whole artifact again).
            let parts = seen.entry(id.clone()).or_default();
            if update["append"] != json!(true) {
                parts.clear();
            }
            for part in artifact["parts"].as_array().expect("parts") {
                parts.push(part["text"].as_str().unwrap_or("").to_owned());
            }
        }
        if let Some(status) = result.get("statusUpdate") {
            last = status["status"]["state"].as_str().map(str::to_owned);
        }
    }
    assert_eq!(last.as_deref(), Some("TASK_STATE_COMPLETED"));
    // What the parent holds, apart from what its stream told.
    let parent = parent.expect("the stream named its task");
    let stored = stack.rpc("GetTask", json!({"id": parent})).await;
    let artifacts = stored["result"]["artifacts"].as_array().expect("artifacts");
    assert_eq!(artifacts.len(), 100, "one artifact per child in the parent");
    for artifact in artifacts {
        let texts: Vec<&str> =
            artifact["parts"].as_array().expect("parts").iter().map(|p| p["text"].as_str().unwrap_or("")).collect();
        assert_eq!(texts, ["chunk 0;", "chunk 1;"], "stored artifact {}: every chunk once", artifact["artifactId"]);
    }
    assert_eq!(seen.len(), 100, "one artifact per child");
    for (id, chunks) in &seen {
        assert_eq!(chunks, &["chunk 0;", "chunk 1;"], "artifact {id}: every chunk once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_fanout_leaves_one_join_and_no_duplicate_child() {
    let Some(mut stack) = Stack::start(&[]).await else { return };
    let mut m = message("sleep 1500");
    m["metadata"] = json!({"switchyard": {"fanout": vec!["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]}});
    let sent = stack.rpc("SendMessage", json!({"message": m, "configuration": {"returnImmediately": true}})).await;
    let id = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    // Kill the worker while every child's delegation is in flight.
    eventually(WAIT, "ten children leased", || async {
        let leased: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE t.parent_id = $1::uuid AND j.state = 'leased'",
        )
        .bind(&id)
        .fetch_one(stack.db.pool())
        .await
        .expect("count");
        leased == 10
    })
    .await;
    let mut worker = stack.worker.take().expect("worker");
    worker.start_kill().expect("SIGKILL");
    worker.wait().await.expect("reaped");
    stack.worker = Some(stack.spawn_worker("w2"));
    let done = stack.settled(&id).await;
    assert_eq!(state(&done), "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(artifacts(&done).len(), 10, "each child's artifact once: {done}");
    let trail = stack.status_events(&id).await;
    assert_eq!(trail.iter().filter(|s| *s == "TASK_STATE_COMPLETED").count(), 1, "{trail:?}");
    let children = stack.children(&id).await;
    assert_eq!(children.len(), 10, "no child created twice");
    for child in &children {
        let trail = stack.status_events(child["id"].as_str().expect("id")).await;
        assert_eq!(trail.iter().filter(|s| *s == "TASK_STATE_COMPLETED").count(), 1, "{trail:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_reaches_an_agent_on_the_official_python_sdk() {
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk).await.expect("venv");
    let port = free_port();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_agent.py");
    let _agent = tokio::process::Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("python agent");
    eventually(WAIT, "python agent up", || async { http_get(port, "/.well-known/agent-card.json").await.is_some() })
        .await;
    let Some(stack) = Stack::start(&[("py", format!("http://127.0.0.1:{port}"))]).await else { return };
    let mut m = message("hello");
    m["metadata"] = json!({"switchyard": {"fanout": ["py", "a"]}});
    let done = stack.send(m).await;
    assert_eq!(state(&done), "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(artifacts(&done), [("a".into(), "hello".into()), ("py".into(), "python says: hello".into())]);
    // And as a pipeline step whose question is answered through the parent.
    let mut m = message("ask");
    m["metadata"] = json!({"switchyard": {"pipeline": ["py", "a"]}});
    let asked = stack.send(m).await;
    assert_eq!(state(&asked), "TASK_STATE_INPUT_REQUIRED", "{asked}");
    assert_eq!(status_text(&asked), "what shall I say?");
    let mut answer = message("echo bonjour");
    answer["taskId"] = asked["id"].clone();
    let answered = stack.send(answer).await;
    assert_eq!(state(&answered), "TASK_STATE_COMPLETED", "{answered}");
    let steps = stack.children(asked["id"].as_str().expect("id")).await;
    assert_eq!(steps[0]["artifacts"][0]["parts"][0]["text"], "python says: echo bonjour");
    assert_eq!(
        steps[1]["artifacts"][0]["parts"][0]["text"], "python says: echo bonjour",
        "a read py's words as its input"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_added_and_removed_at_run_time() {
    let Some(stack) = Stack::start(&[]).await else { return };
    let admin = |method: reqwest::Method, path: &str| {
        stack.http.request(method, format!("{}{path}", stack.base)).bearer_auth("s3cret")
    };
    // The token from the file is the one that works.
    let wrong = stack.http.get(format!("{}/admin/plans", stack.base)).bearer_auth("guess").send().await.expect("get");
    assert_eq!(wrong.status(), 401);
    // A bad plan is refused with the reason; a good one is stored.
    let bad = admin(reqwest::Method::PUT, "/admin/plans/odd")
        .json(&json!({"fanout": ["a"], "pipeline": ["b"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap_or_default().contains("exactly one"));
    let put = admin(reqwest::Method::PUT, "/admin/plans/pair")
        .json(&json!({"fanout": ["a", "b"], "join": "any"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    let listed: Value =
        admin(reqwest::Method::GET, "/admin/plans").send().await.expect("get").json().await.expect("json");
    assert!(listed["plans"].as_array().expect("plans").iter().any(|p| p["name"] == "pair"), "{listed}");
    // The card offers it within a second, and clients can use it.
    eventually(WAIT, "the card lists the new plan", || async { stack.skills().await.iter().any(|s| s == "pair") })
        .await;
    let done = stack.send_to("pair", "echo x").await;
    assert_eq!(state(&done), "TASK_STATE_COMPLETED", "{done}");
    // The CLI sees what the admin API stored, and removes it.
    let listed = switchyard(&stack.db, &["plans", "list"]).output().await.expect("plans list");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("pair") && l.contains("a, b (join any)")), "{listed}");
    let removed = switchyard(&stack.db, &["plans", "remove", "pair"]).output().await.expect("plans remove");
    assert!(removed.status.success());
    let gone = admin(reqwest::Method::DELETE, "/admin/plans/pair").send().await.expect("delete");
    assert_eq!(gone.status(), 404, "already removed by the CLI");
}

/// Two answers racing to a plan whose children both ask: whichever locks
/// second finds the question moved to the other child and tries again, and
/// its answer still arrives there (a try that found the asker changed does
/// not keep the message's idempotency key). Several rounds, so the two
/// meet between reading the question and locking it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_answers_to_a_changing_asker_are_both_delivered() {
    let Some(stack) = Stack::start(&[]).await else { return };
    for round in 0..4 {
        let pair = stack.send_to("both", "ask").await;
        assert_eq!(state(&pair), "TASK_STATE_INPUT_REQUIRED", "{pair}");
        let id = pair["id"].as_str().expect("id").to_owned();
        // The send returned at the first question; the race is between two
        // children that both ask, so the second must have asked too.
        eventually(WAIT, "both children ask", || async {
            let children = stack.children(&id).await;
            children.len() == 2 && children.iter().all(|c| state(c) == "TASK_STATE_INPUT_REQUIRED")
        })
        .await;
        let answer = |text: String| {
            let mut m = message(&text);
            m["taskId"] = json!(id);
            stack.rpc("SendMessage", json!({"message": m, "configuration": {"returnImmediately": true}}))
        };
        let (one, two) = tokio::join!(answer(format!("{round}-one")), answer(format!("{round}-two")));
        for sent in [&one, &two] {
            assert!(sent.get("error").is_none(), "round {round}: {sent}");
        }
        // Input-required again in between (the other child's question).
        let mut done = stack.task(&id).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(state(&done), "TASK_STATE_COMPLETED" | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED") {
            assert!(tokio::time::Instant::now() < deadline, "round {round}: an answer was swallowed: {done}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            done = stack.task(&id).await;
        }
        assert_eq!(state(&done), "TASK_STATE_COMPLETED", "round {round}: {done}");
        let mut got: Vec<String> = artifacts(&done).into_iter().map(|(_, text)| text).collect();
        got.sort();
        assert_eq!(got, [format!("answer: {round}-one"), format!("answer: {round}-two")], "round {round}");
    }
}
