//! v0.3 clients (no `A2A-Version` header) through the compatibility layer,
//! and random input thrown at the JSON-RPC endpoint.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_engine::{TaskEvent, TaskState};
use tower::ServiceExt;

use crate::api::{Api, error_code};
use crate::harness::TestDb;

fn v03_message(text: &str) -> Value {
    json!({"kind": "message", "messageId": uuid::Uuid::new_v4().to_string(), "role": "user",
           "parts": [{"kind": "text", "text": text}]})
}

async fn a_v03_client_sees_only_v03_shapes(db: TestDb) {
    let api = Api::start(&db).await;
    let sent = api
        .rpc_with("message/send", json!({"message": v03_message("hi"), "configuration": {"blocking": false}}), &[])
        .await;
    let task = &sent["result"];
    assert_eq!(task["kind"], "task", "a bare task, not {{\"task\": …}}: {sent}");
    assert_eq!(task["status"]["state"], "submitted");
    assert_eq!(task["history"][0]["role"], "user");
    assert_eq!(task["history"][0]["parts"][0]["kind"], "text");
    let id = task["id"].as_str().expect("id").to_owned();

    let got = api.rpc_with("tasks/get", json!({"id": id}), &[]).await;
    assert_eq!(got["result"]["id"], id.as_str());

    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/resubscribe", "params": {"id": id}});
    let mut sse = api.sse("/", Some(body), &[]).await;
    assert_eq!(sse.next().await.expect("task").data["result"]["kind"], "task");
    let task_id = id.parse().expect("uuid");
    db.store.task_append(task_id, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    db.store.task_append(task_id, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("done");
    let rest = sse.rest().await;
    let updates: Vec<(&str, &str, bool)> = rest
        .iter()
        .map(|e| {
            let r = &e.data["result"];
            (
                r["kind"].as_str().unwrap_or(""),
                r["status"]["state"].as_str().unwrap_or(""),
                r["final"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(updates, [("status-update", "working", false), ("status-update", "completed", true)]);

    let set = api
        .rpc_with(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": id, "pushNotificationConfig": {"url": "https://hooks.example/v03",
                   "authentication": {"schemes": ["Bearer"], "credentials": "c"}}}),
            &[],
        )
        .await;
    assert_eq!(set["result"]["pushNotificationConfig"]["authentication"]["schemes"][0], "Bearer");
    let listed = api.rpc_with("tasks/pushNotificationConfig/list", json!({"id": id}), &[]).await;
    assert_eq!(listed["result"].as_array().map(Vec::len), Some(1), "a bare array");

    assert_eq!(error_code(&api.rpc_with("tasks/cancel", json!({"id": id}), &[]).await), -32002);
    assert_eq!(error_code(&api.rpc_with("tasks/get", json!({"id": uuid::Uuid::new_v4()}), &[]).await), -32001);
    // Offered, to authenticated callers only; this one is anonymous.
    assert_eq!(error_code(&api.rpc_with("agent/getAuthenticatedExtendedCard", json!({}), &[]).await), -31401);
}

async fn a_v1_method_without_the_header_is_served_as_v1(db: TestDb) {
    let api = Api::start(&db).await;
    let msg = json!({"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hi"}]});
    let sent =
        api.rpc_with("SendMessage", json!({"message": msg, "configuration": {"returnImmediately": true}}), &[]).await;
    assert_eq!(sent["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9/_:-]{0,12}".prop_map(Value::String),
        Just(json!("2.0")),
        Just(json!("SendMessage")),
        Just(json!("ROLE_USER")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("jsonrpc".to_owned()),
                    Just("id".to_owned()),
                    Just("method".to_owned()),
                    Just("params".to_owned()),
                    Just("message".to_owned()),
                    Just("parts".to_owned()),
                    Just("messageId".to_owned()),
                    Just("role".to_owned()),
                    Just("text".to_owned()),
                    Just("taskId".to_owned()),
                    Just("configuration".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn method_names() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("SendMessage".to_owned()),
        Just("GetTask".to_owned()),
        Just("ListTasks".to_owned()),
        Just("CancelTask".to_owned()),
        Just("CreateTaskPushNotificationConfig".to_owned()),
        Just("GetTaskPushNotificationConfig".to_owned()),
        Just("DeleteTaskPushNotificationConfig".to_owned()),
        Just("message/send".to_owned()),
        Just("tasks/get".to_owned()),
        Just("tasks/cancel".to_owned()),
        Just("tasks/pushNotificationConfig/set".to_owned()),
        "[A-Za-z/]{0,20}",
    ]
}

/// Random and half-valid bodies: every answer is a well-formed JSON-RPC
/// response, never a panic, never a 5xx.
#[test]
fn random_json_rpc_bodies_get_well_formed_answers() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDb::new()) else { return };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = runtime.block_on(async {
        let config = switchyard_api::ApiConfig {
            blocking_timeout: std::time::Duration::from_millis(10),
            auth: switchyard_api::auth::AuthConfig::anonymous(),
            ..switchyard_api::ApiConfig::new("http://fuzz")
        };
        switchyard_api::app(switchyard_api::AppState::new(db.store.clone(), config, shutdown.clone()))
    });
    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(method in method_names(), params in arbitrary_json(), raw in arbitrary_json(), shape in 0u8..3, v1 in any::<bool>())| {
        let body = match shape {
            0 => json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string(),
            1 => raw.to_string(),
            _ => { let mut s = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string(); s.truncate(s.len() / 2); s }
        };
        let mut request = axum::http::Request::post("/").header("content-type", "application/json");
        if v1 {
            request = request.header("A2A-Version", "1.0");
        }
        let request = request.body(axum::body::Body::from(body.clone())).expect("request");
        let (status, answer) = runtime.block_on(async {
            let response = app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            if response.headers().get("content-type").is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream")) {
                return (status, json!({"jsonrpc": "2.0", "id": 7, "result": "stream"}));
            }
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        });
        prop_assert!(status.as_u16() < 500, "{status} for {body}");
        prop_assert_eq!(&answer["jsonrpc"], "2.0", "{} -> {}", body, answer);
        let has_result = answer.get("result").is_some();
        let has_error = answer["error"]["code"].is_i64() && answer["error"]["message"].is_string();
        prop_assert!(has_result != has_error, "exactly one of result/error: {} -> {}", body, answer);
    });
    shutdown.cancel();
}

crate::harness::on_both_drivers!(a_v03_client_sees_only_v03_shapes, a_v1_method_without_the_header_is_served_as_v1,);
