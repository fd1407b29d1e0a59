//! Interoperability with an independent implementation: the official A2A
//! Python SDK's client against a running `switchyard serve`, over JSON-RPC,
//! HTTP+JSON and gRPC in v1.0, and JSON-RPC in v0.3.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use switchyard_engine::{TaskEvent, TaskId, TaskState};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};

/// What the interop virtualenv holds: the SDK with gRPC, and a server to
/// run its agents.
const PACKAGES: [&str; 2] = ["a2a-sdk[http-server,grpc]==1.3.0", "uvicorn==0.54.0"];

/// The last SDK of the v0.3 protocol, for v0.3 agents and clients.
const PACKAGES_V03: [&str; 2] = ["a2a-sdk[http-server,grpc]==0.3.26", "uvicorn==0.54.0"];

/// One virtualenv per SDK for the whole run, created on first use and
/// kept under `target/` so later runs reuse it.
static VENVS: Mutex<Vec<(&'static str, PathBuf)>> = Mutex::new(Vec::new());

/// The Python of the SDK 1.x virtualenv.
pub(crate) fn python_sdk() -> PathBuf {
    venv("interop-venv", &PACKAGES)
}

/// The Python of the SDK 0.3.x virtualenv.
pub(crate) fn python_sdk_v03() -> PathBuf {
    venv("interop-venv-v03", &PACKAGES_V03)
}

/// A virtualenv under `target/` holding `packages`, made once per run.
pub(crate) fn venv(name: &'static str, packages: &[&str]) -> PathBuf {
    let mut venvs = VENVS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, python)) = venvs.iter().find(|(n, _)| *n == name) {
        return python.clone();
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join(name);
    let python = dir.join("bin/python");
    let marker = dir.join(".installed");
    let wanted = packages.join(" ");
    let pinned = std::fs::read_to_string(&marker).unwrap_or_default();
    if pinned != wanted {
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("run python");
            assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&dir));
        run(std::process::Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(packages));
        std::fs::write(&marker, wanted).expect("marker");
    }
    venvs.push((name, python.clone()));
    python
}

/// Runs the SDK client script in one mode; drives the streamed task to
/// completion when the script says it is listening; returns its report.
async fn run_client(db: &TestDb, base: &str, binding: &str, version: &str) -> Vec<Value> {
    let python = tokio::task::spawn_blocking(python_sdk).await.expect("venv");
    run_script(db, python, "python_client.py", &[base, binding, version]).await
}

/// Runs a client script with `args`, driving what it streams (see [`run_client`]).
pub(crate) async fn run_script(db: &TestDb, python: PathBuf, script: &str, args: &[&str]) -> Vec<Value> {
    let mode = format!("{script} {}", args.join(" "));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the python client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut report = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if event["step"] == "streaming" || event["step"] == "subscribing" {
            let id: TaskId = event["task_id"].as_str().expect("id").parse().expect("uuid");
            for events in [
                vec![TaskEvent::status(TaskState::Working, None)],
                vec![TaskEvent::status_with_text(TaskState::Completed, "done")],
            ] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                db.store.task_append(id, &events, None).await.expect("drive");
            }
        }
        report.push(event);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exit").expect("wait");
    assert!(status.success(), "{mode} failed: {report:?}");
    report
}

fn step<'a>(report: &'a [Value], name: &str) -> &'a Value {
    report.iter().find(|e| e["step"] == name).unwrap_or_else(|| panic!("no {name} step in {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_works_in_every_mode() {
    let Some(db) = TestDb::new().await else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // A default agent that no worker calls: tasks stay where the test puts them.
    let config = std::env::temp_dir().join(format!("{}-interop.toml", db.schema));
    let toml = "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n";
    std::fs::write(&config, toml).expect("config");
    let config = config.to_string_lossy().into_owned();
    let grpc = format!("127.0.0.1:{}", free_port());
    let _server = switchyard(&db, &["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config])
        .spawn()
        .expect("serve");
    eventually(Duration::from_secs(30), "the server up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let base = format!("http://{listen}");

    for (binding, version) in [("GRPC", "1.0"), ("JSONRPC", "1.0"), ("HTTP+JSON", "1.0"), ("JSONRPC", "0.3")] {
        let report = run_client(&db, &base, binding, version).await;
        let mode = format!("{binding} {version}");
        assert_eq!(step(&report, "card")["streaming"], true, "{mode}");
        let sent = step(&report, "send");
        assert_eq!(sent["state"], "TASK_STATE_SUBMITTED", "{mode}");
        let got = step(&report, "get");
        assert_eq!((got["task_id"].clone(), got["history"].clone()), (sent["task_id"].clone(), 1.into()), "{mode}");
        if version == "1.0" {
            let ids = step(&report, "list")["ids"].as_array().expect("ids").clone();
            assert!(ids.contains(&sent["task_id"]), "{mode}: the new task is listed");
        }
        assert_eq!(step(&report, "cancel")["state"], "TASK_STATE_CANCELED", "{mode}");
        let streamed: Vec<&str> = step(&report, "stream_done")["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            streamed,
            ["task", "status_update:TASK_STATE_WORKING", "status_update:TASK_STATE_COMPLETED"],
            "{mode}"
        );
        if version != "1.0" {
            continue;
        }
        let configs = step(&report, "push_configs");
        assert_eq!(configs["created"], "hook-1", "{mode}");
        assert_eq!(
            (configs["url"].as_str(), configs["token"].as_str()),
            (Some("https://hooks.example.com/a2a"), Some("tok"))
        );
        assert_eq!(configs["listed"], serde_json::json!(["hook-1"]), "{mode}");
        assert_eq!(configs["after_delete"], 0, "{mode}");
        // The subscription starts from the task as it is, and ends with it.
        let subscribed: Vec<&str> = step(&report, "subscribe_done")["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(subscribed.first(), Some(&"task"), "{mode}: {subscribed:?}");
        assert_eq!(subscribed.last(), Some(&"status_update:TASK_STATE_COMPLETED"), "{mode}: {subscribed:?}");
        let errors = step(&report, "errors");
        assert_eq!(errors["get_unknown"], "TaskNotFoundError", "{mode}");
        assert_eq!(errors["cancel_completed"], "TaskNotCancelableError", "{mode}");
        assert_eq!(errors["list_bad_page"], "InvalidParamsError", "{mode}");
        assert_eq!(errors["push_config_unknown"], "TaskNotFoundError", "{mode}");
    }
}

/// The official SDK 0.3.x client over each of its transports — JSON-RPC,
/// HTTP+JSON (`/v1/…`) and gRPC (`a2a.v1.A2AService`) — finds each on the
/// card's v0.3 face and sends, reads, registers a webhook, cancels, streams
/// and resubscribes, and gets errors as errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_v03_client_works_over_every_v03_binding() {
    let Some(db) = TestDb::new().await else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = std::env::temp_dir().join(format!("{}-interop-v03.toml", db.schema));
    let toml = "default_agent = \"stub\"\n[[agents]]\nname = \"stub\"\nurl = \"http://127.0.0.1:9\"\n";
    std::fs::write(&config, toml).expect("config");
    let config = config.to_string_lossy().into_owned();
    let grpc = format!("127.0.0.1:{}", free_port());
    let _server = switchyard(&db, &["serve", "--listen", &listen, "--grpc-listen", &grpc, "--config", &config])
        .spawn()
        .expect("serve");
    eventually(Duration::from_secs(30), "the server up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let base = format!("http://{listen}");
    let python = tokio::task::spawn_blocking(python_sdk_v03).await.expect("venv");

    for transport in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        let report = run_script(&db, python.clone(), "python_client_v03.py", &[&base, transport]).await;
        let card = step(&report, "card");
        assert_eq!(card["streaming"], true, "{transport}");
        let expected = if transport == "GRPC" { grpc.clone() } else { base.clone() };
        assert_eq!(card["url"], expected.as_str(), "{transport}: offered on the card's v0.3 face");
        let sent = step(&report, "send");
        assert_eq!(sent["state"], "TASK_STATE_SUBMITTED", "{transport}");
        let got = step(&report, "get");
        assert_eq!(
            (got["task_id"].clone(), got["history"].clone()),
            (sent["task_id"].clone(), 1.into()),
            "{transport}"
        );
        let hook = step(&report, "push_config");
        assert_eq!(
            (hook["created"].as_str(), hook["url"].as_str(), hook["token"].as_str()),
            (Some("hook-1"), Some("https://hooks.example.com/a2a"), Some("tok")),
            "{transport}"
        );
        assert_eq!(hook["task_id"], sent["task_id"], "{transport}");
        assert_eq!(step(&report, "cancel")["state"], "TASK_STATE_CANCELED", "{transport}");
        let streamed = step(&report, "stream_done")["events"].clone();
        assert_eq!(
            streamed,
            serde_json::json!(["task", "status_update:TASK_STATE_WORKING", "status_update:TASK_STATE_COMPLETED"]),
            "{transport}"
        );
        let subscribed: Vec<Value> = step(&report, "subscribe_done")["events"].as_array().expect("events").clone();
        assert_eq!(subscribed.first(), Some(&Value::from("task")), "{transport}: {subscribed:?}");
        assert_eq!(subscribed.last(), Some(&Value::from("status_update:TASK_STATE_COMPLETED")), "{transport}");
        let errors = step(&report, "errors");
        for (name, raised) in errors.as_object().expect("errors").iter().filter(|(k, _)| *k != "step") {
            assert_ne!(raised, "no error", "{transport}: {name}");
        }
    }
}

/// Switchyard's copy of the v0.3 proto (`api/proto/a2a_v03.proto`) is the
/// official SDK 0.3.x's, field by field: every message, field, number,
/// type, JSON name and oneof it declares is the SDK's, every enum has the
/// same values, and every method the same types. What it leaves out is
/// only what its header says it leaves out.
#[tokio::test]
async fn the_v03_proto_is_the_official_sdks() {
    use prost::Message as _;
    let python = tokio::task::spawn_blocking(python_sdk_v03).await.expect("venv");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_v03_descriptor.py");
    let out = tokio::process::Command::new(python).arg(script).output().await.expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let official: Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let set = prost_types::FileDescriptorSet::decode(switchyard_api::compat_proto::DESCRIPTOR).expect("descriptor set");
    let ours = set.file.iter().find(|f| f.package() == "a2a.v1").expect("the a2a.v1 file");
    assert_eq!(official["package"], "a2a.v1");
    let type_name = |f: &prost_types::FieldDescriptorProto| f.type_name().trim_start_matches('.').to_owned();
    let left_out: &[(&str, &str)] = &[
        ("AgentCard", "security_schemes"),
        ("AgentCard", "security"),
        ("AgentCard", "signatures"),
        ("AgentSkill", "security"),
    ];
    for message in &ours.message_type {
        let name = message.name();
        let theirs = official["messages"][name].as_object().unwrap_or_else(|| panic!("{name}: not in the SDK"));
        for field in &message.field {
            let oneof = field.oneof_index.map(|i| message.oneof_decl[i as usize].name().to_owned()).unwrap_or_default();
            let mine = serde_json::json!({
                "number": field.number(),
                "type": field.r#type() as i32,
                "repeated": field.label() == prost_types::field_descriptor_proto::Label::Repeated,
                "json_name": field.json_name(),
                "type_name": type_name(field),
                "oneof": oneof,
            });
            assert_eq!(Some(&mine), theirs.get(field.name()), "{name}.{}", field.name());
        }
        for field in theirs.keys() {
            let declared = message.field.iter().any(|f| f.name() == field);
            assert!(declared || left_out.contains(&(name, field.as_str())), "{name}.{field} is missing");
        }
    }
    for e in &ours.enum_type {
        let values: serde_json::Map<String, Value> =
            e.value.iter().map(|v| (v.name().to_owned(), v.number().into())).collect();
        assert_eq!(official["enums"][e.name()], Value::Object(values), "enum {}", e.name());
    }
    let service = &ours.service[0];
    assert_eq!(official["service"], format!("a2a.v1.{}", service.name()));
    let methods: serde_json::Map<String, Value> = service
        .method
        .iter()
        .map(|m| {
            let method = serde_json::json!({
                "input": m.input_type().trim_start_matches('.'),
                "output": m.output_type().trim_start_matches('.'),
                "streaming": m.server_streaming(),
            });
            (m.name().to_owned(), method)
        })
        .collect();
    assert_eq!(official["methods"], Value::Object(methods), "the service's methods");
}

/// Delegation to an agent built on the official Python SDK: a plain answer,
/// and the input-required round trip, through real serve and worker processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_delegated_to_an_agent_on_the_official_python_sdk() {
    let Some(db) = TestDb::new().await else { return };
    let python = tokio::task::spawn_blocking(python_sdk).await.expect("venv");
    let agent_port = free_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_agent.py");
    let _agent = tokio::process::Command::new(python)
        .arg(script)
        .arg(agent_port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("python agent");
    let config = std::env::temp_dir().join(format!("{}-py.toml", db.schema));
    let toml = format!("default_agent = \"py\"\n[[agents]]\nname = \"py\"\nurl = \"http://127.0.0.1:{agent_port}\"\n");
    std::fs::write(&config, toml).expect("config");
    let config = config.to_string_lossy().into_owned();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
    let _worker =
        switchyard(&db, &["worker", "--config", &config, "--poll-interval", "200ms"]).spawn().expect("worker");
    eventually(Duration::from_secs(60), "api and python agent up", || async {
        http_get(port, "/readyz").await.is_some()
            && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let url = format!("http://{listen}/");
    let send = |message: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let params = serde_json::json!({"message": message});
            crate::api::rpc_call(&http, &url, "SendMessage", params, &[("A2A-Version", "1.0")]).await["result"]["task"]
                .clone()
        }
    };

    let done = send(crate::api::message("hello")).await;
    assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(done["artifacts"][0]["parts"][0]["text"], "python says: hello");

    let asked = send(crate::api::message("ask")).await;
    assert_eq!(asked["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{asked}");
    assert_eq!(asked["status"]["message"]["parts"][0]["text"], "what shall I say?");
    let mut answer = crate::api::message("bonjour");
    answer["taskId"] = asked["id"].clone();
    let answered = send(answer).await;
    assert_eq!(answered["status"]["state"], "TASK_STATE_COMPLETED", "{answered}");
    assert_eq!(answered["artifacts"][0]["parts"][0]["text"], "python says: bonjour");
}
