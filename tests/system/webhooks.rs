//! Webhook delivery end to end: real `serve`, `worker` and demo agent
//! processes, and a real receiver (an HTTP server in the test) on loopback.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::api::{message, rpc_call};
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

const WAIT: Duration = Duration::from_secs(30);

/// What the receiver got: per request, the hook's name, the headers that
/// matter, and the body.
#[derive(Debug, Clone)]
struct Received {
    hook: String,
    authorization: Option<String>,
    token: Option<String>,
    content_type: Option<String>,
    traceparent: Option<String>,
    seq: Option<i64>,
    body: Value,
}

/// A webhook receiver on loopback. `fail` makes the next N requests answer
/// 503 (with `Retry-After: 0`); `stall` makes the next one answer only
/// after 5 s (having recorded it).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    fail: Arc<AtomicU32>,
    stall: Arc<AtomicU32>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new().route("/hook/{name}", axum::routing::post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, base)
    }

    fn of(&self, hook: &str) -> Vec<Received> {
        self.got.lock().expect("lock").iter().filter(|r| r.hook == hook).cloned().collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap) {
    let mut reply = HeaderMap::new();
    if receiver.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        reply.insert("retry-after", "0".parse().expect("header"));
        return (StatusCode::SERVICE_UNAVAILABLE, reply);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    receiver.got.lock().expect("lock").push(Received {
        hook,
        authorization: header("authorization"),
        token: header("x-a2a-notification-token"),
        content_type: header("content-type"),
        traceparent: header("traceparent"),
        seq: header("switchyard-event-seq").and_then(|s| s.parse().ok()),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    // Received, but the answer is late: the sender cannot know it arrived.
    if receiver.stall.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    (StatusCode::OK, reply)
}

struct Stack {
    db: TestDb,
    base: String,
    worker_config: String,
    http: reqwest::Client,
    _processes: Vec<Child>,
    worker: Option<Child>,
}

impl Stack {
    /// serve (its config allowing loopback webhooks unless `serve_allows`
    /// is false), a worker (allowing them unless `worker_allows` is false),
    /// and the demo agent.
    /// `None` when there is no PostgreSQL to test against.
    async fn start(serve_allows: bool, worker_allows: bool) -> Option<Stack> {
        let db = TestDb::new().await?;
        let agent_port = free_port();
        let agent_listen = format!("127.0.0.1:{agent_port}");
        let agent =
            switchyard(&db, &["demo-agent", "--listen", &agent_listen, "--pause", "0ms"]).spawn().expect("agent");
        let write = |name: &str, allow: bool| {
            let path = std::env::temp_dir().join(format!("{}-{name}.toml", db.schema));
            let mut toml =
                format!("default_agent = \"demo\"\n[[agents]]\nname = \"demo\"\nurl = \"http://{agent_listen}\"\n");
            if allow {
                toml.push_str("\n[push]\nallow = [\"127.0.0.0/8\"]\n");
            }
            std::fs::write(&path, toml).expect("config");
            path.to_string_lossy().into_owned()
        };
        let config = write("serve", serve_allows);
        let worker_config = write("worker", worker_allows);
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
        eventually(WAIT, "api and agent up", || async {
            http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
                && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
        })
        .await;
        let mut stack = Stack {
            db,
            base: format!("http://{listen}/"),
            worker_config,
            http: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
            _processes: vec![agent, serve],
            worker: None,
        };
        stack.worker = Some(stack.spawn_worker("w1"));
        Some(stack)
    }

    fn spawn_worker(&self, id: &str) -> Child {
        let extra =
            ["--retry-base", "50ms", "--retry-cap", "200ms", "--push-max-attempts", "4", "--push-timeout", "2s"];
        quick_worker(&self.db, &self.worker_config, id, &extra)
    }

    async fn rpc(&self, method: &str, params: Value, headers: &[(&str, &str)]) -> Value {
        rpc_call(&self.http, &self.base, method, params, headers).await
    }

    /// Sends `text` with a webhook at `url` named `hook`; the task's id.
    async fn send_with_hook(&self, text: &str, url: &str) -> String {
        let params = json!({"message": message(text), "configuration": {
            "returnImmediately": true,
            "taskPushNotificationConfig": {"url": url, "token": "tok-1",
                                           "authentication": {"scheme": "Bearer", "credentials": "s3cret"}}}});
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let answer = self.rpc("SendMessage", params, &[("A2A-Version", "1.0"), ("traceparent", traceparent)]).await;
        answer["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
    }

    /// The states and artifact texts a task's log holds, in order, as the
    /// webhook should announce them.
    async fn announced(&self, task: &str) -> Vec<String> {
        let rows: Vec<(String, Value)> = sqlx::query_as(
            "SELECT kind, payload FROM task_events WHERE task_id = $1::uuid AND kind <> 'message' ORDER BY seq",
        )
        .bind(task)
        .fetch_all(self.db.pool())
        .await
        .expect("events");
        rows.into_iter()
            .map(|(kind, p)| match kind.as_str() {
                "status" => p["state"].as_str().unwrap_or("").to_owned(),
                _ => p["artifact"]["parts"][0]["text"].as_str().unwrap_or("").to_owned(),
            })
            .collect()
    }
}

/// What a v1 body announces: a state, or an artifact's text.
fn v1_item(body: &Value) -> String {
    if let Some(update) = body.get("statusUpdate") {
        return update["status"]["state"].as_str().unwrap_or("").to_owned();
    }
    body["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str().unwrap_or("?").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_every_event_in_order_with_its_credentials_in_either_version() {
    let (receiver, hooks) = Receiver::start().await;
    let Some(stack) = Stack::start(true, true).await else { return };

    // v1: statusUpdate / artifactUpdate bodies, in log order.
    let task = stack.send_with_hook("stream 3", &format!("{hooks}/hook/v1")).await;
    eventually(WAIT, "the task completed", || async {
        stack.announced(&task).await.last().is_some_and(|s| s == "TASK_STATE_COMPLETED")
    })
    .await;
    let expected = stack.announced(&task).await;
    eventually(WAIT, "every event delivered", || async { receiver.of("v1").len() == expected.len() }).await;
    let got = receiver.of("v1");
    assert_eq!(got.iter().map(|r| v1_item(&r.body)).collect::<Vec<_>>(), expected, "in log order, each once");
    for r in &got {
        assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(r.token.as_deref(), Some("tok-1"));
        assert_eq!(r.content_type.as_deref(), Some("application/a2a+json"));
        assert!(r.traceparent.as_deref().is_some_and(|t| t.contains("4bf92f3577b34da6a3ce929d0e0e4736")), "{r:?}");
        let update = r.body.get("statusUpdate").or_else(|| r.body.get("artifactUpdate")).expect("a StreamResponse");
        assert_eq!(update["taskId"], task.as_str());
        assert!(update["contextId"].is_string());
    }

    // HTTP+JSON: a config added to a running task hears what follows.
    let params = json!({"message": message("sleep 400"), "configuration": {"returnImmediately": true}});
    let answer = stack.rpc("SendMessage", params, &[("A2A-Version", "1.0")]).await;
    let running = answer["result"]["task"]["id"].as_str().expect("task").to_owned();
    let created = stack
        .http
        .post(format!("{}tasks/{running}/pushNotificationConfigs", stack.base))
        .header("A2A-Version", "1.0")
        .header("content-type", "application/json")
        .body(json!({"taskId": running, "url": format!("{hooks}/hook/rest"), "token": "tok-r"}).to_string())
        .send()
        .await
        .expect("create over REST");
    assert_eq!(created.status(), 200, "{:?}", created.text().await);
    eventually(WAIT, "the REST webhook heard the end", || async {
        receiver.of("rest").last().is_some_and(|r| v1_item(&r.body) == "TASK_STATE_COMPLETED")
    })
    .await;
    let heard: Vec<String> = receiver.of("rest").iter().map(|r| v1_item(&r.body)).collect();
    let all = stack.announced(&running).await;
    assert!(all.ends_with(&heard), "a suffix of the log, in order: {heard:?} of {all:?}");
    assert!(receiver.of("rest").iter().all(|r| r.token.as_deref() == Some("tok-r")));

    // v0.3: a config created through v0.3 hears the whole task as it stood
    // at each event (`kind: task`), as v0.3 receivers expect.
    let params = json!({
        "message": {"kind": "message", "messageId": uuid::Uuid::new_v4().to_string(), "role": "user",
                    "parts": [{"kind": "text", "text": "echo old"}]},
        "configuration": {"blocking": false,
                          "pushNotificationConfig": {"url": format!("{hooks}/hook/v03"), "token": "tok-3"}}});
    let answer = stack.rpc("message/send", params, &[]).await;
    assert!(answer["result"]["id"].is_string(), "{answer}");
    eventually(WAIT, "the v0.3 webhook heard the end", || async {
        receiver.of("v03").iter().any(|r| r.body["status"]["state"] == "completed")
    })
    .await;
    let got = receiver.of("v03");
    assert!(got.iter().all(|r| r.body["kind"] == "task" && r.body["id"] == answer["result"]["id"]), "{got:?}");
    let states: Vec<&str> = got.iter().filter_map(|r| r.body["status"]["state"].as_str()).collect();
    assert_eq!(states, ["submitted", "working", "working", "completed"], "{got:?}");
    assert!(got[1].body.get("artifacts").is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)), "{got:?}");
    assert_eq!(got[2].body["artifacts"][0]["parts"][0], json!({"kind": "text", "text": "old"}), "as of the chunk");
    assert_eq!(got[3].body["artifacts"][0]["parts"][0], json!({"kind": "text", "text": "old"}));
    // The official v0.3 SDK's own model takes every one of them.
    let bodies = Value::Array(got.iter().map(|r| r.body.clone()).collect()).to_string();
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk_v03).await.expect("venv");
    let mut check = std::process::Command::new(python)
        .args(["-c", "import sys, json\nfrom a2a.types import Task\nfor body in json.load(sys.stdin):\n    Task.model_validate(body)\nprint('ok')"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    check.stdin.take().expect("stdin").write_all(bodies.as_bytes()).expect("write");
    let out = check.wait_with_output().expect("python ran");
    assert!(out.status.success(), "the v0.3 SDK refused a webhook body: {}", String::from_utf8_lossy(&out.stderr));
    assert!(got.iter().all(|r| r.token.as_deref() == Some("tok-3") && r.authorization.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_gets_everything_in_order_and_dead_letters_can_be_requeued() {
    let (receiver, hooks) = Receiver::start().await;
    let Some(stack) = Stack::start(true, true).await else { return };

    // Down for three requests (each delivery has four tries here):
    // retried, in order, nothing lost.
    receiver.fail.store(3, Ordering::SeqCst);
    let task = stack.send_with_hook("stream 4", &format!("{hooks}/hook/flaky")).await;
    eventually(WAIT, "everything delivered after the outage", || async {
        receiver.of("flaky").last().is_some_and(|r| v1_item(&r.body) == "TASK_STATE_COMPLETED")
    })
    .await;
    let got: Vec<String> = receiver.of("flaky").iter().map(|r| v1_item(&r.body)).collect();
    assert_eq!(got, stack.announced(&task).await, "every event once, in order");

    // Down for longer than four tries: dead-lettered, shown, requeued, delivered.
    receiver.fail.store(4, Ordering::SeqCst);
    let task = stack.send_with_hook("echo late", &format!("{hooks}/hook/dead")).await;
    let dead = || async {
        let out = switchyard(&stack.db, &["webhooks", "dead"]).output().await.expect("webhooks dead");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually(WAIT, "the first delivery dead-lettered", || async { dead().await.contains(&task) }).await;
    let listing = dead().await;
    let line = listing.lines().find(|l| l.contains(&task)).expect("the dead delivery");
    assert!(line.contains("HTTP 503"), "the reason is shown: {line}");
    assert!(!listing.contains("s3cret") && !listing.contains("tok-1"), "no secret is shown: {listing}");
    let id = line.split_whitespace().next().expect("id").to_owned();
    // Later deliveries went on meanwhile.
    eventually(WAIT, "the others delivered", || async { !receiver.of("dead").is_empty() }).await;
    let requeued = switchyard(&stack.db, &["webhooks", "requeue", &id]).output().await.expect("requeue");
    assert!(requeued.status.success(), "{}", String::from_utf8_lossy(&requeued.stderr));
    eventually(WAIT, "the requeued one delivered", || async {
        receiver.of("dead").iter().any(|r| v1_item(&r.body) == "TASK_STATE_SUBMITTED")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_leaves_the_delivery_to_another() {
    let (receiver, hooks) = Receiver::start().await;
    let Some(mut stack) = Stack::start(true, true).await else { return };
    receiver.stall.store(1, Ordering::SeqCst);
    let task = stack.send_with_hook("echo once", &format!("{hooks}/hook/k")).await;
    // The first POST hangs at the receiver: kill the worker holding it.
    eventually(WAIT, "a delivery in flight", || async {
        let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'push' AND state = 'leased'")
            .fetch_one(stack.db.pool())
            .await
            .expect("count");
        leased == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worker = stack.worker.take().expect("worker");
    worker.start_kill().expect("SIGKILL");
    worker.wait().await.expect("reaped");
    stack.worker = Some(stack.spawn_worker("w2"));
    eventually(WAIT, "every event delivered by the next worker", || async {
        receiver.of("k").iter().any(|r| v1_item(&r.body) == "TASK_STATE_COMPLETED")
    })
    .await;
    // At least once: the stalled one came again; dropping what a receiver
    // has seen (by Switchyard-Event-Seq) leaves each event once, in order.
    let got = receiver.of("k");
    assert!(got.len() > stack.announced(&task).await.len(), "the unanswered POST was sent again");
    let mut highest = 0;
    let mut seen = Vec::new();
    for r in &got {
        let seq = r.seq.expect("every request names its event");
        if seq > highest {
            highest = seq;
            seen.push(v1_item(&r.body));
        }
    }
    assert_eq!(seen, stack.announced(&task).await, "all of them, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_inward_addresses_are_refused_when_created_and_when_delivered() {
    let (receiver, hooks) = Receiver::start().await;
    // serve allows nothing: creation refuses every inward class.
    let Some(strict) = Stack::start(false, false).await else { return };
    let created = strict.rpc("SendMessage", json!({"message": message("echo x")}), &[("A2A-Version", "1.0")]).await;
    let task = created["result"]["task"]["id"].as_str().expect("task").to_owned();
    for url in [
        format!("{hooks}/hook/x"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]:9/".to_owned(),
        "http://localhost:9/".to_owned(),
        "http://user:pw@example.com/".to_owned(),
        // Other spellings of inward addresses, as the HTTP client reads them.
        "http://2130706433:9/".to_owned(),
        "http://0x7f.1:9/".to_owned(),
        "http://0177.0.0.1:9/".to_owned(),
        "http://127.1:9/".to_owned(),
        "http://2852039166/latest".to_owned(),
        "http://127.0.0.1.:9/".to_owned(),
        "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1:9/".to_owned(),
        "http://[::ffff:127.0.0.1]:9/".to_owned(),
        "http://localhost.:9/".to_owned(),
    ] {
        let answer = strict
            .rpc("CreateTaskPushNotificationConfig", json!({"taskId": task, "url": url}), &[("A2A-Version", "1.0")])
            .await;
        assert_eq!(answer["error"]["code"], -32602, "{url}: {answer}");
    }
    let refused = strict
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "url": "http://169.254.169.254/"}),
            &[("A2A-Version", "1.0")],
        )
        .await;
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("link-local"), "{refused}");
    drop(strict);

    // serve allows loopback, the worker does not: the worker refuses at
    // delivery, and says why, without trying again.
    let Some(split) = Stack::start(true, false).await else { return };
    let task = split.send_with_hook("echo in", &format!("{hooks}/hook/inward")).await;
    eventually(WAIT, "the delivery refused and dead-lettered", || async {
        let reasons: Vec<Option<String>> =
            sqlx::query_scalar("SELECT last_error FROM push_deliveries WHERE task_id = $1::uuid AND state = 'dead'")
                .bind(&task)
                .fetch_all(split.db.pool())
                .await
                .expect("deliveries");
        !reasons.is_empty() && reasons.iter().all(|r| r.as_deref().is_some_and(|r| r.contains("loopback")))
    })
    .await;
    assert!(receiver.of("inward").is_empty(), "nothing reached the inward address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_pass_the_limit_of_configs_per_task() {
    let (_receiver, hooks) = Receiver::start().await;
    let Some(stack) = Stack::start(true, true).await else { return };
    let created = stack
        .rpc(
            "SendMessage",
            json!({"message": message("hang"), "configuration": {"returnImmediately": true}}),
            &[("A2A-Version", "1.0")],
        )
        .await;
    let task = created["result"]["task"]["id"].as_str().expect("task").to_owned();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..120 {
        let (http, base, task, url) =
            (stack.http.clone(), stack.base.clone(), task.clone(), format!("{hooks}/hook/n{i}"));
        creates.spawn(async move {
            let params = json!({"taskId": task, "id": format!("c{i}"), "url": url});
            rpc_call(&http, &base, "CreateTaskPushNotificationConfig", params, &[("A2A-Version", "1.0")]).await
        });
    }
    let mut stored = 0;
    while let Some(answer) = creates.join_next().await {
        let answer = answer.expect("joined");
        if answer.get("result").is_some() {
            stored += 1;
        } else {
            assert_eq!(answer["error"]["code"], -32602, "{answer}");
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM push_configs WHERE task_id = $1::uuid")
        .bind(&task)
        .fetch_one(stack.db.pool())
        .await
        .expect("count");
    assert_eq!((stored, count), (50, 50));
}

/// A delegation parked on an agent that pushes (the official Python SDK
/// with a push config store) registers a webhook on the remote task and is
/// woken by the push, well before its next poll (at least 5 s after parking).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_delegation_wakes_on_the_remote_agents_push() {
    let python = tokio::task::spawn_blocking(crate::interop::python_sdk).await.expect("venv");
    let agent_port = free_port();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_push_agent.py");
    let _agent = tokio::process::Command::new(python)
        .arg(script)
        .arg(agent_port.to_string())
        .arg("1.5")
        .kill_on_drop(true)
        .spawn()
        .expect("python agent");
    let Some(db) = TestDb::new().await else { return };
    let config = std::env::temp_dir().join(format!("{}-pusher.toml", db.schema));
    std::fs::write(
        &config,
        format!("default_agent = \"py\"\n[[agents]]\nname = \"py\"\nurl = \"http://127.0.0.1:{agent_port}\"\n"),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let receiver = format!("http://{listen}");
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
    let _worker = switchyard(
        &db,
        &[
            "worker",
            "--config",
            &config,
            "--poll-interval",
            "200ms",
            "--attach-budget",
            "300ms",
            "--push-receiver-url",
            &receiver,
        ],
    )
    .spawn()
    .expect("worker");
    eventually(Duration::from_secs(60), "api and python agent up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
            && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let params = json!({"message": message("take your time"), "configuration": {"returnImmediately": true}});
    let answer = rpc_call(&http, &format!("{receiver}/"), "SendMessage", params, &[("A2A-Version", "1.0")]).await;
    let task = answer["result"]["task"]["id"].as_str().expect("task").to_owned();
    // Parked, with a webhook registered on the remote task.
    eventually(WAIT, "the delegation parked with its webhook registered", || async {
        let token: Option<String> = sqlx::query_scalar("SELECT push_token FROM delegations WHERE task_id = $1::uuid")
            .bind(&task)
            .fetch_optional(db.pool())
            .await
            .expect("delegation")
            .flatten();
        token.is_some()
    })
    .await;
    let get = || async {
        rpc_call(&http, &format!("{receiver}/"), "GetTask", json!({"id": task}), &[("A2A-Version", "1.0")]).await
    };
    eventually(WAIT, "the task completed", || async {
        get().await["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
    })
    .await;
    // By the database's clock, not this process's: a parked job looks
    // again at the earliest 5 s after it parked, which is after the task
    // was created, so a task finished sooner than that was woken by the push.
    let took: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM status_at - created_at)::float8 FROM tasks WHERE id = $1::uuid")
            .bind(&task)
            .fetch_one(db.pool())
            .await
            .expect("times");
    assert!(took < 5.0, "finished {took:.2} s after it was created: the poll, not the push, woke it");
    assert_eq!(get().await["result"]["artifacts"][0]["parts"][0]["text"], "python slept");
    // A push without the secret wakes nothing.
    let forged = http
        .post(format!("{receiver}/_switchyard/push/{task}"))
        .header("X-A2A-Notification-Token", "guess")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 401);
}

/// Every way a task ends reaches its webhook: the terminal event arrives,
/// after everything before it, once. Each ending below takes a different
/// path to its terminal write (the agent's answer, the agent's refusal, the
/// client's cancel, the deadline timer, a plan's join in a child's
/// transaction, a parent's `cancel_child` job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_task_ends_reaches_its_webhook_once_in_order() {
    let (receiver, hooks) = Receiver::start().await;
    let Some(stack) = Stack::start(true, true).await else { return };
    let with_metadata = |text: &str, hook: &str, metadata: Value| {
        let mut message = message(text);
        message["metadata"] = metadata;
        json!({"message": message, "configuration": {"returnImmediately": true,
               "taskPushNotificationConfig": {"url": format!("{hooks}/hook/{hook}")}}})
    };
    let stack = &stack;
    let send = |params: Value| async move {
        let answer = stack.rpc("SendMessage", params, &[("A2A-Version", "1.0")]).await;
        answer["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
    };
    let state = |task: String| async move {
        let got = stack.rpc("GetTask", json!({"id": task}), &[("A2A-Version", "1.0")]).await;
        got["result"]["status"]["state"].as_str().unwrap_or("").to_owned()
    };

    let completed = send(with_metadata("echo done", "completed", json!({}))).await;
    let failed = send(with_metadata("status 400", "failed", json!({}))).await;
    let rejected = send(with_metadata("reject", "rejected", json!({}))).await;
    let expired = send(with_metadata("hang", "expired", json!({"switchyard": {"timeoutSeconds": 1}}))).await;
    let joined =
        send(with_metadata("echo both", "joined", json!({"switchyard": {"fanout": ["demo", "demo"], "join": "all"}})))
            .await;
    let canceled = send(with_metadata("hang", "canceled", json!({}))).await;
    // A pipeline whose first step hangs: the child gets a webhook of its own,
    // and ends when its parent is canceled.
    let parent = send(with_metadata("hang", "parent", json!({"switchyard": {"pipeline": ["demo", "demo"]}}))).await;
    let child = eventually_value(|| async {
        let listed = stack.rpc("ListTasks", json!({"parentTaskId": parent}), &[("A2A-Version", "1.0")]).await;
        listed["result"]["tasks"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let created = stack
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": child, "url": format!("{hooks}/hook/child")}),
            &[("A2A-Version", "1.0")],
        )
        .await;
    assert!(created["result"]["id"].is_string(), "{created}");

    for task in [&canceled, &child] {
        eventually(WAIT, "working at its agent", || async { state(task.clone()).await == "TASK_STATE_WORKING" }).await;
    }
    for task in [&canceled, &parent] {
        let answer = stack.rpc("CancelTask", json!({"id": task}), &[("A2A-Version", "1.0")]).await;
        assert_eq!(answer["result"]["status"]["state"], "TASK_STATE_CANCELED", "{answer}");
    }

    for (hook, task, end) in [
        ("completed", &completed, "TASK_STATE_COMPLETED"),
        ("failed", &failed, "TASK_STATE_FAILED"),
        ("rejected", &rejected, "TASK_STATE_REJECTED"),
        ("expired", &expired, "TASK_STATE_FAILED"),
        ("joined", &joined, "TASK_STATE_COMPLETED"),
        ("canceled", &canceled, "TASK_STATE_CANCELED"),
        ("parent", &parent, "TASK_STATE_CANCELED"),
        ("child", &child, "TASK_STATE_CANCELED"),
    ] {
        eventually(WAIT, &format!("{hook}: the task ended"), || async {
            stack.announced(task).await.last().is_some_and(|s| s == end)
        })
        .await;
        let log = stack.announced(task).await;
        eventually(WAIT, &format!("{hook}: the receiver heard the end"), || async {
            receiver.of(hook).last().is_some_and(|r| v1_item(&r.body) == end)
        })
        .await;
        let heard: Vec<String> = receiver.of(hook).iter().map(|r| v1_item(&r.body)).collect();
        if hook == "child" {
            // Its webhook was added while it ran: a suffix of its log.
            assert!(log.ends_with(&heard), "{hook}: {heard:?} of {log:?}");
        } else {
            assert_eq!(heard, log, "{hook}: every event in log order, each once");
        }
    }
    // Nothing more arrives later (a duplicate of the end would).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for hook in ["completed", "failed", "rejected", "expired", "joined", "canceled", "parent", "child"] {
        let terminal = ["TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_REJECTED", "TASK_STATE_CANCELED"];
        let ends = receiver.of(hook).iter().filter(|r| terminal.contains(&v1_item(&r.body).as_str())).count();
        assert_eq!(ends, 1, "{hook}: one terminal event");
    }
}

/// Polls `probe` until it gives a value.
async fn eventually_value<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "no value within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outbox's net: a webhook whose pending deliveries lost their job (as
/// a retired task's did before) gets one back from the sweep, on both stores.
async fn an_orphaned_outbox_gets_its_delivery_job_back(db: TestDb) {
    let task = crate::harness::submit(&db.store, "with a webhook").await;
    let caller = crate::harness::caller();
    let config = switchyard_engine::PushConfig {
        task_id: task,
        id: "hook".into(),
        url: "https://hooks.example/x".into(),
        token: None,
        authentication: None,
        version: "1.0".into(),
    };
    db.store.push_config_put(&caller, &config).await.expect("config");
    db.store
        .task_append(task, &[switchyard_engine::TaskEvent::status(switchyard_engine::TaskState::Working, None)], None)
        .await
        .expect("an event to deliver");
    let live = "SELECT count(*) FROM jobs WHERE task_id = $1 AND kind = 'push' AND state IN ('ready', 'leased')";
    assert_eq!(db.count(live, live, task.0).await, 1);
    assert_eq!(db.store.push_adopt_orphans(10).await.expect("sweep"), 0, "nothing to adopt");
    let strand = "UPDATE jobs SET state = 'done', finished_at = CURRENT_TIMESTAMP WHERE task_id = $1 AND kind = 'push'";
    let strand_lite = "UPDATE jobs SET state = 'done', finished_at = 1 WHERE task_id = $1 AND kind = 'push'";
    db.exec(strand, strand_lite, task.0).await.expect("strand it");
    assert_eq!(db.count(live, live, task.0).await, 0);
    assert_eq!(db.store.push_adopt_orphans(10).await.expect("sweep"), 1);
    assert_eq!(db.count(live, live, task.0).await, 1, "one live job again");
    assert_eq!(db.store.push_adopt_orphans(10).await.expect("sweep"), 0, "and only one");
}

crate::harness::on_both_drivers!(an_orphaned_outbox_gets_its_delivery_job_back);
