//! ProtoJSON input: every field of every operation by its JSON name or its
//! proto name, on both JSON bindings, with the same result; a field given
//! both ways is refused by name; a field that is neither is ignored and
//! counted, or refused under `--strict-json`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchyard_engine::{TaskEvent, TaskId, TaskState};

use crate::api::Api;
use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};

/// A message, its id and task id under the names `style` picks.
fn message(text: &str, task: Option<&str>, proto: bool) -> Value {
    let (id_name, task_name) = if proto { ("message_id", "task_id") } else { ("messageId", "taskId") };
    let mut message = json!({"role": "ROLE_USER", "parts": [{"text": text}]});
    message[id_name] = json!(uuid::Uuid::new_v4().to_string());
    if let Some(task) = task {
        message[task_name] = json!(task);
    }
    message
}

/// Sends over JSON-RPC or HTTP+JSON; the result (the `SendMessageResponse`).
async fn send(api: &Api, rest: bool, params: Value) -> Value {
    if rest {
        let (status, body) = api.rest(Method::POST, "/message:send", Some(params)).await;
        assert_eq!(status, 200, "{body}");
        body
    } else {
        let answer = api.rpc("SendMessage", params).await;
        answer.get("result").cloned().unwrap_or_else(|| panic!("an answer: {answer}"))
    }
}

/// A task waiting for input, and its id.
async fn asking(db: &TestDb, api: &Api) -> String {
    let sent =
        send(api, false, json!({"message": message("q", None, false), "configuration": {"returnImmediately": true}}))
            .await;
    let id = sent["task"]["id"].as_str().expect("a task").to_owned();
    let task: TaskId = id.parse().expect("uuid");
    db.store
        .task_append(task, &[TaskEvent::status_with_text(TaskState::InputRequired, "which?")], None)
        .await
        .expect("ask");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_field_is_accepted_by_its_json_name_and_its_proto_name() {
    let Some(db) = TestDb::new().await else { return };
    let api = Api::start(&db).await;
    for rest in [false, true] {
        for proto in [false, true] {
            let case = format!(
                "{} with {} names",
                if rest { "HTTP+JSON" } else { "JSON-RPC" },
                if proto { "proto" } else { "JSON" }
            );
            let configuration = |history: i64| {
                if proto {
                    json!({"return_immediately": true, "history_length": history})
                } else {
                    json!({"returnImmediately": true, "historyLength": history})
                }
            };

            // A follow-up naming its task continues it (never a new task).
            let waiting = asking(&db, &api).await;
            let answered = send(
                &api,
                rest,
                json!({"message": message("a", Some(&waiting), proto), "configuration": configuration(0)}),
            )
            .await;
            assert_eq!(answered["task"]["id"], waiting.as_str(), "{case}: the follow-up went to its task");
            assert!(answered["task"].get("history").is_none(), "{case}: historyLength 0 was heard: {answered}");

            // A webhook in the send configuration, and one created alone.
            let push = if proto { "task_push_notification_config" } else { "taskPushNotificationConfig" };
            let mut config = configuration(1);
            config[push] = json!({"url": "https://hooks.example.com/x"});
            let created =
                send(&api, rest, json!({"message": message("b", None, proto), "configuration": config})).await;
            let task = created["task"]["id"].as_str().expect("created").to_owned();
            assert_eq!(
                created["task"]["history"].as_array().map(Vec::len),
                Some(1),
                "{case}: historyLength 1: {created}"
            );
            let task_field = if proto { "task_id" } else { "taskId" };
            let mut hook = json!({"url": "https://hooks.example.com/y", "id": "second"});
            hook[task_field] = json!(task);
            let stored = if rest {
                let (status, body) =
                    api.rest(Method::POST, &format!("/tasks/{task}/pushNotificationConfigs"), Some(hook)).await;
                assert_eq!(status, 200, "{case}: {body}");
                body
            } else {
                api.rpc("CreateTaskPushNotificationConfig", hook).await["result"].clone()
            };
            assert_eq!(stored["taskId"], task.as_str(), "{case}: {stored}");
            let listed = if rest {
                api.rest(Method::GET, &format!("/tasks/{task}/pushNotificationConfigs"), None).await.1
            } else {
                let (page, token) = if proto { ("page_size", "page_token") } else { ("pageSize", "pageToken") };
                let mut params = json!({});
                params[task_field] = json!(task);
                params[page] = json!(10);
                params[token] = json!("");
                api.rpc("ListTaskPushNotificationConfigs", params).await["result"].clone()
            };
            assert_eq!(listed["configs"].as_array().map(Vec::len), Some(2), "{case}: both webhooks: {listed}");

            if !rest {
                // GetTask and ListTasks (HTTP+JSON takes these as query
                // parameters, which stay camelCase as the spec says).
                let history = if proto { "history_length" } else { "historyLength" };
                let mut get = json!({"id": task});
                get[history] = json!(0);
                let got = api.rpc("GetTask", get).await;
                assert!(got["result"].get("history").is_none(), "{case}: {got}");
                let context = created["task"]["contextId"].as_str().expect("context").to_owned();
                let context_field = if proto { "context_id" } else { "contextId" };
                let mut list = json!({});
                list[context_field] = json!(context);
                let listed = api.rpc("ListTasks", list).await;
                let tasks = listed["result"]["tasks"].as_array().cloned().unwrap_or_default();
                assert_eq!(tasks.len(), 1, "{case}: the context filter was heard: {listed}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_named_both_ways_is_refused_by_name() {
    let Some(db) = TestDb::new().await else { return };
    let api = Api::start(&db).await;
    let mut twice = message("x", None, false);
    twice["message_id"] = json!("other");
    let answer = api.rpc("SendMessage", json!({"message": twice.clone()})).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(answer.to_string().contains("message.messageId"), "names the field: {answer}");
    let (status, body) = api.rest(Method::POST, "/message:send", Some(json!({"message": twice}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("message.messageId"), "names the field: {body}");
    let (_, listed) = api.rest(Method::GET, "/tasks", None).await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(0), "nothing was created: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_is_ignored_and_counted_or_refused_under_strict_json() {
    let Some(db) = TestDb::new().await else { return };
    let start = |strict: bool| {
        let (port, listen) = {
            let port = free_port();
            (port, format!("127.0.0.1:{port}"))
        };
        let mut args = vec!["serve".to_owned(), "--listen".into(), listen];
        if strict {
            args.push("--strict-json".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (port, switchyard(&db, &args).spawn().expect("serve"))
    };
    let (lenient, _lenient) = start(false);
    let (strict, _strict) = start(true);
    for port in [lenient, strict] {
        eventually(Duration::from_secs(30), "serve up", || async move { http_get(port, "/readyz").await.is_some() })
            .await;
    }
    let http = reqwest::Client::new();
    let body = |n: u16| {
        json!({"jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {
            "message": message("x", None, false), "configuration": {"returnImmediately": true},
            "flavour": "vanilla"}})
    };
    let call = |port: u16, body: Value| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("http://127.0.0.1:{port}/"))
                .header("A2A-Version", "1.0")
                .json(&body)
                .send()
                .await
                .expect("post");
            response.json::<Value>().await.expect("json")
        }
    };
    let answer = call(lenient, body(1)).await;
    assert!(answer["result"]["task"]["id"].is_string(), "ignored: {answer}");
    let metrics = http_get(lenient, "/metrics").await.map(|(_, text)| text).unwrap_or_default();
    let counted = metrics.lines().find(|l| l.starts_with("switchyard_json_unknown_fields_total")).unwrap_or_default();
    assert!(counted.ends_with(" 1"), "counted once: {counted:?}");

    let refused = call(strict, body(2)).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused.to_string().contains("params.flavour"), "names the field: {refused}");
    let known = call(
        strict,
        json!({"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {
        "message": message("x", None, true), "configuration": {"return_immediately": true}}}),
    )
    .await;
    assert!(known["result"]["task"]["id"].is_string(), "proto names are no unknown fields: {known}");
}
