//! Protocol reach: clients of every binding and version reach agents of
//! every binding and version through Switchyard. The agents are the
//! official Python SDK's (1.x over JSON-RPC, HTTP+JSON and gRPC only, and
//! 0.3.x over JSON-RPC); so are the clients, one per row of the
//! compatibility matrix in docs/a2a.md.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::api::{message, rpc_call};
use crate::harness::{TestDb, agent_config, eventually};
use crate::interop::{python_sdk, python_sdk_v03};
use crate::processes::{free_port, http_get, quick_worker, switchyard};

/// An agent process on the Python SDK, and what it reported receiving.
struct PyAgent {
    _child: tokio::process::Child,
    port: u16,
    log: Arc<Mutex<Vec<Value>>>,
}

impl PyAgent {
    /// Starts `script` (under tests/interop) on a free port, with `args` after it.
    async fn start(python: PathBuf, script: &str, args: &[String]) -> PyAgent {
        let port = free_port();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
        let mut child = tokio::process::Command::new(python)
            .arg(path)
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("log").push(event);
                }
            }
        });
        PyAgent { _child: child, port, log }
    }

    fn received(&self) -> Vec<Value> {
        self.log.lock().expect("log").clone()
    }
}

/// The four agents the matrix's columns name, by the name Switchyard knows
/// them as: `jsonrpc` (1.0), `rest` (HTTP+JSON 1.0), `grpc` (gRPC 1.0,
/// nothing else on its card) and `v03` (JSON-RPC 0.3, SDK 0.3.x).
struct Fleet {
    agents: Vec<(&'static str, PyAgent)>,
}

impl Fleet {
    async fn start() -> Fleet {
        let (v1, v03) =
            tokio::join!(tokio::task::spawn_blocking(python_sdk), tokio::task::spawn_blocking(python_sdk_v03));
        let (v1, v03) = (v1.expect("venv"), v03.expect("venv"));
        let agents = vec![
            ("jsonrpc", PyAgent::start(v1.clone(), "python_agent.py", &["JSONRPC".into()]).await),
            ("rest", PyAgent::start(v1.clone(), "python_agent.py", &["HTTP+JSON".into()]).await),
            ("grpc", PyAgent::start(v1, "python_agent.py", &["GRPC".into(), free_port().to_string()]).await),
            ("v03", PyAgent::start(v03, "python_agent_v03.py", &[]).await),
        ];
        for (name, agent) in &agents {
            let port = agent.port;
            eventually(Duration::from_secs(60), name, || async move {
                http_get(port, "/.well-known/agent-card.json").await.is_some()
            })
            .await;
        }
        Fleet { agents }
    }

    fn agent(&self, name: &str) -> &PyAgent {
        &self.agents.iter().find(|(n, _)| *n == name).expect("agent").1
    }

    fn config(&self, db: &TestDb) -> String {
        let mut toml = String::new();
        for (name, agent) in &self.agents {
            toml += &format!("[[agents]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{}\"\n", agent.port);
        }
        let path = std::env::temp_dir().join(format!("{}-reach.toml", db.schema));
        std::fs::write(&path, toml).expect("config");
        path.to_string_lossy().into_owned()
    }
}

/// A broker (api with gRPC, and a worker) in front of the fleet.
struct Broker {
    _serve: tokio::process::Child,
    _worker: tokio::process::Child,
    base: String,
}

async fn broker(db: &TestDb, config: &str) -> Broker {
    let grpc = format!("127.0.0.1:{}", free_port());
    let (serve, base) = api(db, config, &["--grpc-listen", &grpc]).await;
    let worker = quick_worker(db, config, "reach", &[]);
    Broker { _serve: serve, _worker: worker, base }
}

/// An api process on `config` (plus `extra` flags), answering; its base URL.
async fn api(db: &TestDb, config: &str, extra: &[&str]) -> (tokio::process::Child, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen, "--config", config];
    args.extend_from_slice(extra);
    let serve = switchyard(db, &args).spawn().expect("serve");
    eventually(Duration::from_secs(30), "the api up", || async { http_get(port, "/readyz").await.is_some() }).await;
    (serve, format!("http://{listen}"))
}

/// Runs one row's client; one report line per agent.
async fn row(python: PathBuf, script: &str, args: &[&str]) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python).arg(path).args(args).stderr(Stdio::inherit()).output(),
    )
    .await
    .expect("the client finished")
    .expect("the client ran");
    assert!(out.status.success(), "{script} {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// Every cell of the compatibility matrix: each client binding and version
/// sends (blocking) and streams through Switchyard to each agent binding
/// and version, and sees the agent's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_binding_reaches_every_agent_binding() {
    let Some(db) = TestDb::new().await else { return };
    let fleet = Fleet::start().await;
    let broker = broker(&db, &fleet.config(&db)).await;
    let agents = ["jsonrpc", "rest", "grpc", "v03"];
    let (v1, v03) = (python_sdk(), python_sdk_v03());
    let mut rows = Vec::new();
    for binding in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        let args: Vec<&str> = [broker.base.as_str(), binding].into_iter().chain(agents).collect();
        rows.push((format!("{binding} 1.0"), row(v1.clone(), "python_matrix_v1.py", &args).await));
    }
    for transport in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        let args: Vec<&str> = [broker.base.as_str(), transport].into_iter().chain(agents).collect();
        rows.push((format!("{transport} 0.3"), row(v03.clone(), "python_matrix_v03.py", &args).await));
    }

    for (client, reports) in &rows {
        assert_eq!(reports.len(), agents.len(), "{client}: {reports:?}");
        for report in reports {
            let cell = format!("{client} → {}", report["agent"]);
            assert_eq!(report["send_state"], "TASK_STATE_COMPLETED", "{cell}: {report}");
            assert_eq!(report["send_text"], json!(["python says: hello"]), "{cell}");
            assert_eq!(report["stream_state"], "TASK_STATE_COMPLETED", "{cell}: {report}");
            assert_eq!(report["stream_text"], json!(["python says: hello"]), "{cell}");
            let kinds = report["stream_kinds"].as_array().expect("kinds");
            assert_eq!(kinds.first(), Some(&json!("task")), "{cell}: the stream starts with the task");
            assert!(kinds.contains(&json!("artifact_update")), "{cell}: {kinds:?}");
        }
    }
    // Every agent received each row's two messages.
    for name in agents {
        let hellos = fleet.agent(name).received().iter().filter(|e| e["text"] == "hello").count();
        assert_eq!(hellos, 2 * rows.len(), "{name} received {hellos} messages");
    }
}

/// Delegation to each kind of agent carries the rest of a task's life: a
/// question and its answer reach the same remote task, and a cancel here
/// cancels the task over there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_and_cancels_reach_every_kind_of_agent() {
    let Some(db) = TestDb::new().await else { return };
    let fleet = Fleet::start().await;
    let broker = broker(&db, &fleet.config(&db)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let url = format!("{}/", broker.base);
    let call = |method: &'static str, params: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move { rpc_call(&http, &url, method, params, &[("A2A-Version", "1.0")]).await["result"].clone() }
    };
    let to = |agent: &str, text: &str| {
        let mut m = message(text);
        m["metadata"] = json!({ "switchyard": { "agent": agent } });
        m
    };

    for agent in ["rest", "grpc", "v03", "jsonrpc"] {
        // A question, answered.
        let asked = call("SendMessage", json!({ "message": to(agent, "ask") })).await["task"].clone();
        assert_eq!(asked["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{agent}: {asked}");
        assert_eq!(asked["status"]["message"]["parts"][0]["text"], "what shall I say?", "{agent}");
        let mut answer = message("bonjour");
        answer["taskId"] = asked["id"].clone();
        let answered = call("SendMessage", json!({ "message": answer })).await["task"].clone();
        assert_eq!(answered["status"]["state"], "TASK_STATE_COMPLETED", "{agent}: {answered}");
        assert_eq!(answered["artifacts"][0]["parts"][0]["text"], "python says: bonjour", "{agent}");
        let received = fleet.agent(agent).received();
        let remote = |text: &str| received.iter().find(|e| e["text"] == text).map(|e| e["task"].clone());
        assert!(remote("ask").is_some(), "{agent} got the question's message: {received:?}");
        assert_eq!(remote("ask"), remote("bonjour"), "{agent}: the answer went to the task that asked");

        // A cancel, while the agent works.
        let params = json!({ "message": to(agent, "slow"), "configuration": { "returnImmediately": true } });
        let slow = call("SendMessage", params).await["task"].clone();
        let log = fleet.agent(agent).log.clone();
        let working = move || {
            let log = log.clone();
            async move { log.lock().expect("log").iter().any(|e| e["text"] == "slow") }
        };
        eventually(Duration::from_secs(30), "the agent working on it", working).await;
        let id = slow["id"].clone();
        // The remote task id is checkpointed just after the agent answers
        // the send; a cancel before that reaches the agent once it is known.
        let canceled = call("CancelTask", json!({ "id": id })).await;
        assert_eq!(canceled["status"]["state"], "TASK_STATE_CANCELED", "{agent}: {canceled}");
        let remote_task = fleet.agent(agent).received().iter().find(|e| e["text"] == "slow").map(|e| e["task"].clone());
        let log = fleet.agent(agent).log.clone();
        let reached = move || {
            let (log, remote_task) = (log.clone(), remote_task.clone());
            async move {
                log.lock()
                    .expect("log")
                    .iter()
                    .any(|e| e["event"] == "cancel" && Some(&e["task"]) == remote_task.as_ref())
            }
        };
        eventually(Duration::from_secs(30), "the cancel at the agent", reached).await;
    }
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with openssl;
/// (CA certificate, leaf certificate, leaf key) paths.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca_key, ca, key, csr, cert, ext) =
        (path("ca.key"), path("ca.pem"), path("leaf.key"), path("leaf.csr"), path("leaf.pem"), path("leaf.ext"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-subj",
        "/CN=test ca",
        "-days",
        "2",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (ca, cert, key)
}

/// A gRPC agent behind TLS (`https://` on its card) is reached once the
/// worker trusts its CA (the system roots, extended by `SSL_CERT_FILE`,
/// as for HTTP agents); until then the connection is refused, never made
/// in cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_agent_over_tls_is_reached_when_its_certificate_is_trusted() {
    let Some(db) = TestDb::new().await else { return };
    let (ca, cert, key) = certificates(&std::env::temp_dir().join(format!("{}-tls", db.schema)));
    let python = tokio::task::spawn_blocking(python_sdk).await.expect("venv");
    let args = ["GRPC".to_owned(), free_port().to_string(), cert, key];
    let agent = PyAgent::start(python, "python_agent.py", &args).await;
    let card_port = agent.port;
    eventually(Duration::from_secs(60), "the agent up", || async move {
        http_get(card_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    let card = http_get(card_port, "/.well-known/agent-card.json").await.expect("card").1;
    assert!(card.contains("https://127.0.0.1:"), "the card names TLS: {card}");
    let config = agent_config(&db, "tls", &format!("http://127.0.0.1:{card_port}"));
    let (_serve, base) = api(&db, &config, &[]).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let url = format!("{base}/");
    let params = json!({ "message": message("hello"), "configuration": { "returnImmediately": true } });
    let id = rpc_call(&http, &url, "SendMessage", params, &[("A2A-Version", "1.0")]).await["result"]["task"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A worker that does not trust the CA: the attempt fails on the certificate.
    let untrusting = quick_worker(&db, &config, "untrusting", &[]);
    let error = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT last_error FROM jobs WHERE task_id = $1::uuid AND kind = 'delegate'",
        )
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .expect("job")
    };
    eventually(Duration::from_secs(30), "a failed attempt", || async { error().await.is_some() }).await;
    let reason = error().await.unwrap_or_default();
    assert!(reason.contains("certificate"), "the attempt failed on the certificate: {reason}");
    assert!(agent.received().is_empty(), "nothing reached the agent: {:?}", agent.received());
    drop(untrusting);

    // One that does: the task completes over TLS.
    let mut trusting = switchyard(
        &db,
        &["worker", "--config", &config, "--worker-id", "trusting", "--poll-interval", "200ms", "--retry-cap", "1s"],
    );
    trusting.env("SSL_CERT_FILE", &ca);
    let _trusting = trusting.spawn().expect("worker");
    eventually(Duration::from_secs(60), "the task completed over TLS", || async {
        let task = rpc_call(&http, &url, "GetTask", json!({ "id": id }), &[("A2A-Version", "1.0")]).await;
        task["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
    })
    .await;
    assert!(agent.received().iter().any(|e| e["text"] == "hello"), "{:?}", agent.received());
}

/// A worker killed while an agent of each kind works is replaced, and the
/// replacement re-attaches to the remote task (`tasks/resubscribe` on v0.3,
/// `SubscribeToTask` over gRPC and HTTP+JSON) instead of sending again: the
/// task completes, and each agent received the message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_is_resumed_on_every_kind_of_agent() {
    let Some(db) = TestDb::new().await else { return };
    let fleet = Fleet::start().await;
    let config = fleet.config(&db);
    let (_serve, base) = api(&db, &config, &[]).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let url = format!("{base}/");
    let agents = ["v03", "grpc", "rest"];
    let mut ids = Vec::new();
    for agent in agents {
        let mut m = message("wait");
        m["metadata"] = json!({ "switchyard": { "agent": agent } });
        let params = json!({ "message": m, "configuration": { "returnImmediately": true } });
        let sent = rpc_call(&http, &url, "SendMessage", params, &[("A2A-Version", "1.0")]).await;
        ids.push(sent["result"]["task"]["id"].as_str().expect("id").to_owned());
    }

    let mut first = quick_worker(&db, &config, "first", &[]);
    // Every remote task is known (checkpointed) and still working.
    eventually(Duration::from_secs(30), "every remote task checkpointed", || async {
        let known: i64 = sqlx::query_scalar("SELECT count(*) FROM delegations WHERE remote_task_id IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .expect("count");
        known == agents.len() as i64
    })
    .await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");

    let _second = quick_worker(&db, &config, "second", &[]);
    for (agent, id) in agents.iter().zip(&ids) {
        let done = || async {
            let task = rpc_call(&http, &url, "GetTask", json!({ "id": id }), &[("A2A-Version", "1.0")]).await;
            task["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
                && task["result"]["artifacts"][0]["parts"][0]["text"] == "python says: wait"
        };
        eventually(Duration::from_secs(60), agent, done).await;
        let sends = fleet.agent(agent).received().iter().filter(|e| e["text"] == "wait").count();
        assert_eq!(sends, 1, "{agent}: the message reached the agent once");
    }
}
