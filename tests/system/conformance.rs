//! What the A2A conformance suite and interop runs found: bad input named
//! by field and never a 5xx, errors typed as JSON, a Message answer passed
//! on as a Message, the agent's turns in history, and the CLI's own manners.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, message, rpc_call};
use crate::harness::{TestDb, agent_config, eventually};
use crate::processes::{free_port, http_get, switchyard};

fn invalid_field(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    answer["error"].to_string()
}

#[tokio::test]
async fn nul_characters_and_over_long_identifiers_are_named_never_a_server_error() {
    let Some(db) = TestDb::new().await else { return };
    let api = Api::start(&db).await;
    let send = |m: Value, extra: Value| {
        let mut params = json!({"message": m, "configuration": {"returnImmediately": true}});
        if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        params
    };
    let mut nul_text = message("a\u{0}b");
    nul_text["parts"][0]["text"] = json!("a\u{0}b");
    let answer = api.rpc("SendMessage", send(nul_text.clone(), json!({}))).await;
    assert!(invalid_field(&answer).contains("message.parts[0].text"), "{answer}");

    let mut long_id = message("x");
    long_id["messageId"] = json!("m".repeat(300));
    assert!(invalid_field(&api.rpc("SendMessage", send(long_id, json!({}))).await).contains("message.messageId"));

    let answer = api.rpc("SendMessage", send(message("x"), json!({"tenant": "t".repeat(300)}))).await;
    assert!(invalid_field(&answer).contains("tenant"), "{answer}");
    let answer = api.rpc("GetTask", json!({"id": "x\u{0}y"})).await;
    assert!(invalid_field(&answer).contains("id"), "{answer}");

    let key = "k".repeat(300);
    let answer = api.rpc_with("SendMessage", send(message("x"), json!({})), &[("Idempotency-Key", &key)]).await;
    assert!(invalid_field(&answer).contains("Idempotency-Key"), "{answer}");

    // HTTP+JSON: 400, as application/json, naming the field.
    let body = json!({"message": nul_text}).to_string();
    let response = api
        .http
        .post(format!("{}/message:send", api.base))
        .header("content-type", "application/a2a+json")
        .header("A2A-Version", "1.0")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert_eq!(content_type, "application/json", "REST errors are plain JSON");
    let error: Value = response.json().await.expect("json");
    assert!(error.to_string().contains("message.parts[0].text"), "{error}");
    let (status, _) = api.rest(reqwest::Method::GET, &format!("/{}/tasks", "t".repeat(300)), None).await;
    assert_eq!(status, 400, "an over-long tenant in the path");
}

#[tokio::test]
async fn a_resent_message_id_naming_another_task_is_refused_by_field() {
    let Some(db) = TestDb::new().await else { return };
    let api = Api::start(&db).await;
    let first = message("first");
    let sent = api.rpc("SendMessage", json!({"message": first, "configuration": {"returnImmediately": true}})).await;
    let produced = sent["result"]["task"]["id"].as_str().expect("id").to_owned();
    // Another task, waiting for input.
    let other = api
        .rpc("SendMessage", json!({"message": message("other"), "configuration": {"returnImmediately": true}}))
        .await;
    let other_id: switchyard_engine::TaskId =
        other["result"]["task"]["id"].as_str().expect("id").parse().expect("uuid");
    db.store
        .task_append(
            other_id,
            &[switchyard_engine::TaskEvent::status_with_text(switchyard_engine::TaskState::InputRequired, "?")],
            None,
        )
        .await
        .expect("ask");
    // Answer the second task with the first message's id: not a resend.
    let mut reused = first.clone();
    reused["taskId"] = json!(other_id.to_string());
    let answer = api.rpc("SendMessage", json!({"message": reused, "configuration": {"returnImmediately": true}})).await;
    let error = invalid_field(&answer);
    assert!(error.contains("message.taskId") && error.contains(&produced), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_answer_comes_back_as_a_message_and_history_holds_both_sides() {
    let Some(db) = TestDb::new().await else { return };
    let agent_port = free_port();
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = switchyard(&db, &["demo-agent", "--listen", &agent_listen]).spawn().expect("agent");
    let config = agent_config(&db, "demo", &format!("http://{agent_listen}"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config]).spawn().expect("serve");
    let _worker =
        switchyard(&db, &["worker", "--config", &config, "--poll-interval", "200ms"]).spawn().expect("worker");
    eventually(Duration::from_secs(30), "up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
            && http_get(agent_port, "/.well-known/agent-card.json").await.is_some()
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{listen}/");
    let headers = [("A2A-Version", "1.0")];

    let reply =
        rpc_call(&http, &base, "SendMessage", json!({"message": message("message hello there")}), &headers).await;
    let answer = &reply["result"]["message"];
    assert_eq!(answer["role"], "ROLE_AGENT", "{reply}");
    assert!(answer["parts"][0]["text"].as_str().is_some_and(|t| t.contains("hello there")), "{reply}");
    let task_id = answer["taskId"].as_str().expect("the recorded task's id").to_owned();
    let task = rpc_call(&http, &base, "GetTask", json!({"id": task_id}), &headers).await;
    assert_eq!(task["result"]["status"]["state"], "TASK_STATE_COMPLETED", "the task stays recorded");
    let roles: Vec<&str> =
        task["result"]["history"].as_array().expect("history").iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["ROLE_USER", "ROLE_AGENT"]);

    // A question is the agent's turn too, between the user's.
    let asked = rpc_call(&http, &base, "SendMessage", json!({"message": message("ask")}), &headers).await;
    let id = asked["result"]["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(asked["result"]["task"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{asked}");
    let mut answer = message("42");
    answer["taskId"] = json!(id);
    let done = rpc_call(&http, &base, "SendMessage", json!({"message": answer}), &headers).await;
    assert_eq!(done["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    let history: Vec<(String, String)> = done["result"]["task"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["parts"][0]["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("ROLE_USER".to_owned(), "ask".to_owned()),
            ("ROLE_AGENT".to_owned(), "what is your answer?".to_owned()),
            ("ROLE_USER".to_owned(), "42".to_owned()),
        ]
    );
}

#[tokio::test]
async fn connection_flags_follow_any_command_and_an_unreachable_database_says_where_and_why() {
    let Some(db) = TestDb::new().await else { return };
    let task = crate::harness::submit(&db.store, "inspect me").await;
    let id = task.to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["tasks", "show", &id, "--database-url", &db.url, "--schema", &db.schema])
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHYARD_SCHEMA")
        .output()
        .await
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    let closed = free_port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["tasks", "list", "--database-url", &format!("postgres://postgres@127.0.0.1:{closed}/test")])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "the reason, not only a timeout: {stderr}");
}
