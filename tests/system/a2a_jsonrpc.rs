//! The A2A JSON-RPC binding: every operation, its errors, and the card.

use std::time::Duration;

use a2a::{Artifact, Part};
use serde_json::{Value, json};
use switchyard_engine::{ArtifactUpdate, TaskEvent, TaskId, TaskState};

use crate::api::{Api, error_code, message, result};
use crate::harness::TestDb;

fn task_id(task: &Value) -> TaskId {
    task["id"].as_str().expect("task id").parse().expect("uuid")
}

async fn submit(api: &Api, text: &str) -> Value {
    let response =
        api.rpc("SendMessage", json!({"message": message(text), "configuration": {"returnImmediately": true}})).await;
    result(&response)["task"].clone()
}

fn artifact(text: &str) -> TaskEvent {
    TaskEvent::Artifact(ArtifactUpdate {
        artifact: Artifact {
            artifact_id: "answer".into(),
            name: Some("answer".into()),
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
            extensions: None,
        },
        append: false,
        last_chunk: true,
    })
}

async fn send_message_acknowledges_a_durable_task_and_is_idempotent(db: TestDb) {
    let api = Api::start(&db).await;
    let msg = message("hello");
    let params = json!({"message": msg, "configuration": {"returnImmediately": true}});
    let first = api.rpc("SendMessage", params.clone()).await;
    let task = &result(&first)["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_SUBMITTED");
    assert!(task["contextId"].as_str().is_some_and(|c| !c.is_empty()), "the server always sets a context");
    assert_eq!(task["history"][0]["messageId"], msg["messageId"]);

    // On disk before the answer: the store has it, with its job.
    let id = task_id(task);
    assert_eq!(db.store.task_jobs(id).await.expect("jobs").len(), 1);

    let again = api.rpc("SendMessage", params).await;
    assert_eq!(result(&again)["task"]["id"], task["id"], "a resend is the same task");

    let got = api.rpc("GetTask", json!({"id": task["id"], "historyLength": 0})).await;
    assert_eq!(result(&got)["id"], task["id"]);
    assert!(result(&got).get("history").is_none(), "historyLength 0 omits history");
}

#[tokio::test]
async fn a_blocking_send_waits_for_the_end_and_a_timeout_answers_with_the_task_as_it_is() {
    let Some(db) = TestDb::new().await else { return };
    let api = Api::start(&db).await;
    let store = db.store.clone();
    let msg = message("work");
    let message_id = msg["messageId"].as_str().expect("id").to_owned();
    let worker = tokio::spawn(async move {
        // Play the worker: find the task, then finish it.
        let id = loop {
            let found: Option<uuid::Uuid> = sqlx::query_scalar("SELECT task_id FROM idempotency_keys WHERE key = $1")
                .bind(&message_id)
                .fetch_optional(store.pg_pool().expect("a PostgreSQL test database"))
                .await
                .expect("lookup");
            if let Some(id) = found {
                break TaskId(id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        store.task_append(id, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
        store
            .task_append(id, &[artifact("42"), TaskEvent::status(TaskState::Completed, None)], None)
            .await
            .expect("done");
    });
    let response = api.rpc("SendMessage", json!({"message": msg})).await;
    worker.await.expect("worker");
    let task = &result(&response)["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "42");

    let impatient = Api::start_on(db.another_store().await, |c| switchyard_api::ApiConfig {
        blocking_timeout: Duration::from_millis(300),
        ..c
    })
    .await;
    let response = impatient.rpc("SendMessage", json!({"message": message("nobody works on this")})).await;
    assert_eq!(result(&response)["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
}

async fn follow_ups_continue_interrupted_tasks_and_are_refused_otherwise(db: TestDb) {
    let api = Api::start(&db).await;
    let task = submit(&api, "book a flight").await;
    let id = task_id(&task);

    let mut answer = message("to Lisbon");
    answer["taskId"] = task["id"].clone();
    let working =
        api.rpc("SendMessage", json!({"message": answer.clone(), "configuration": {"returnImmediately": true}})).await;
    assert_eq!(error_code(&working), -32004, "not waiting for input yet");

    db.store
        .task_append(id, &[TaskEvent::status_with_text(TaskState::InputRequired, "where to?")], None)
        .await
        .expect("ask");
    let mut wrong_context = answer.clone();
    wrong_context["contextId"] = json!("another-context");
    let mismatch =
        api.rpc("SendMessage", json!({"message": wrong_context, "configuration": {"returnImmediately": true}})).await;
    assert_eq!(error_code(&mismatch), -32602);

    let accepted =
        api.rpc("SendMessage", json!({"message": answer, "configuration": {"returnImmediately": true}})).await;
    let continued = &result(&accepted)["task"];
    assert_eq!(continued["id"], task["id"]);
    let texts: Vec<&str> = continued["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, ["book a flight", "to Lisbon"]);
    let jobs = db.store.task_jobs(id).await.expect("jobs");
    assert_eq!(jobs.len(), 1, "the task's one live delegation carries the answer; no second job beside it");

    db.store.task_append(id, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("done");
    let mut late = message("one more thing");
    late["taskId"] = task["id"].clone();
    assert_eq!(error_code(&api.rpc("SendMessage", json!({"message": late})).await), -32004, "terminal");

    let mut unknown = message("?");
    unknown["taskId"] = json!(uuid::Uuid::new_v4().to_string());
    assert_eq!(error_code(&api.rpc("SendMessage", json!({"message": unknown})).await), -32001);
}

async fn list_tasks_filters_and_pages_newest_first_without_gaps_or_repeats(db: TestDb) {
    let api = Api::start(&db).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(submit(&api, &format!("task {i}")).await["id"].clone());
    }
    let done = task_id(&submit(&api, "done").await);
    db.store
        .task_append(done, &[artifact("x"), TaskEvent::status(TaskState::Completed, None)], None)
        .await
        .expect("done");

    let mut seen = Vec::new();
    let mut token = json!("");
    loop {
        let page = api.rpc("ListTasks", json!({"pageSize": 3, "pageToken": token})).await;
        let page = result(&page);
        assert_eq!(page["totalSize"], 8);
        assert_eq!(page["pageSize"], 3);
        for task in page["tasks"].as_array().expect("tasks") {
            assert!(task.get("artifacts").is_none(), "artifacts only when asked");
            seen.push(task["id"].clone());
        }
        token = page["nextPageToken"].clone();
        if token == "" {
            break;
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], json!(done.to_string()), "newest status first");
    seen.sort_by_key(|v| v.to_string());
    seen.dedup();
    assert_eq!(seen.len(), 8, "no task twice");

    let completed = api.rpc("ListTasks", json!({"status": "TASK_STATE_COMPLETED", "includeArtifacts": true})).await;
    let completed = result(&completed);
    assert_eq!(completed["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(completed["tasks"][0]["artifacts"][0]["artifactId"], "answer");

    for bad in [
        json!({"pageSize": 0}),
        json!({"pageSize": 101}),
        json!({"historyLength": -1}),
        json!({"pageToken": "garbage"}),
    ] {
        assert_eq!(error_code(&api.rpc("ListTasks", bad.clone()).await), -32602, "{bad}");
    }
    let other_tenant = api.rpc("ListTasks", json!({"tenant": "someone-else"})).await;
    assert_eq!(result(&other_tenant)["totalSize"], 0, "tenants see only their own tasks");
}

async fn cancel_is_idempotent_and_refused_on_finished_tasks(db: TestDb) {
    let api = Api::start(&db).await;
    let task = submit(&api, "x").await;
    let canceled = api.rpc("CancelTask", json!({"id": task["id"]})).await;
    assert_eq!(result(&canceled)["status"]["state"], "TASK_STATE_CANCELED");
    let again = api.rpc("CancelTask", json!({"id": task["id"]})).await;
    assert_eq!(result(&again)["status"]["state"], "TASK_STATE_CANCELED");

    let done = submit(&api, "y").await;
    db.store.task_append(task_id(&done), &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("done");
    let refused = api.rpc("CancelTask", json!({"id": done["id"]})).await;
    assert_eq!(error_code(&refused), -32002);
    assert_eq!(refused["error"]["data"][0]["reason"], "TASK_NOT_CANCELABLE");
    assert_eq!(error_code(&api.rpc("CancelTask", json!({"id": "not-a-task"})).await), -32001);
}

async fn push_notification_configs_have_full_crud(db: TestDb) {
    let api = Api::start(&db).await;
    let task = submit(&api, "x").await;
    let created = api
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task["id"], "url": "https://hooks.example/a2a", "token": "t0k",
                   "authentication": {"scheme": "Bearer", "credentials": "secret"}}),
        )
        .await;
    let config = result(&created).clone();
    let config_id = config["id"].as_str().expect("a server-assigned id").to_owned();
    assert_eq!(config["taskId"], task["id"]);

    let got = api.rpc("GetTaskPushNotificationConfig", json!({"taskId": task["id"], "id": config_id})).await;
    assert_eq!(result(&got)["url"], "https://hooks.example/a2a");
    let listed = api.rpc("ListTaskPushNotificationConfigs", json!({"taskId": task["id"]})).await;
    assert_eq!(result(&listed)["configs"].as_array().map(Vec::len), Some(1));

    for _ in 0..2 {
        let deleted = api.rpc("DeleteTaskPushNotificationConfig", json!({"taskId": task["id"], "id": config_id})).await;
        assert_eq!(result(&deleted), &json!({}), "delete is idempotent");
    }
    let gone = api.rpc("GetTaskPushNotificationConfig", json!({"taskId": task["id"], "id": config_id})).await;
    assert_eq!(error_code(&gone), -32001);
    let bad_url = api.rpc("CreateTaskPushNotificationConfig", json!({"taskId": task["id"], "url": "ftp://x"})).await;
    assert_eq!(error_code(&bad_url), -32602);
    let no_task =
        api.rpc("CreateTaskPushNotificationConfig", json!({"taskId": uuid::Uuid::new_v4(), "url": "https://x"})).await;
    assert_eq!(error_code(&no_task), -32001);

    // A config given with the message is stored with the new task.
    let with_push = api
        .rpc(
            "SendMessage",
            json!({"message": message("y"), "configuration": {"returnImmediately": true,
                   "taskPushNotificationConfig": {"url": "https://hooks.example/b", "id": "mine"}}}),
        )
        .await;
    let new_task = &result(&with_push)["task"];
    let stored = api.rpc("GetTaskPushNotificationConfig", json!({"taskId": new_task["id"], "id": "mine"})).await;
    assert_eq!(result(&stored)["url"], "https://hooks.example/b");
}

async fn malformed_requests_get_the_right_json_rpc_errors(db: TestDb) {
    let api = Api::start(&db).await;
    let v1 = [("A2A-Version", "1.0")];
    let raw = |body: &str| api.post_raw("/", body.to_owned(), &v1);
    assert_eq!(error_code(&raw("{not json").await.1), -32700);
    assert_eq!(raw("{not json").await.1["id"], Value::Null);
    assert_eq!(error_code(&raw("[]").await.1), -32600);
    assert_eq!(error_code(&raw(r#"{"jsonrpc":"2.0","method":"GetTask","params":{}}"#).await.1), -32600);
    assert_eq!(error_code(&raw(r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#).await.1), -32600);
    assert_eq!(error_code(&raw(r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":[1]}"#).await.1), -32602);
    assert_eq!(error_code(&api.rpc("NoSuchMethod", json!({})).await), -32601);
    assert_eq!(error_code(&api.rpc("GetTask", json!({"id": 5})).await), -32602);
    let missing_parts =
        api.rpc("SendMessage", json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": []}})).await;
    assert_eq!(error_code(&missing_parts), -32602);
    assert_eq!(missing_parts["error"]["data"][1]["fieldViolations"][0]["field"], "message.parts");
    let wrong_version = api.rpc_with("GetTask", json!({"id": "x"}), &[("A2A-Version", "2.0")]).await;
    assert_eq!(error_code(&wrong_version), -32009);
    assert_eq!(wrong_version["id"], 1);
    assert_eq!(error_code(&api.rpc("GetExtendedAgentCard", json!({})).await), -31401, "anonymous callers get none");
    let text = serde_json::to_string(&missing_parts).expect("json");
    assert!(!text.to_lowercase().contains("sql"), "no internals in errors");
    // Last: the server closes a connection whose body it refused unread, and
    // a request after it could be sent on that connection before the
    // client's pool notices.
    let huge =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{{"pad":"{}"}}}}"#, "x".repeat(5 << 20));
    let (status, body) = raw(&huge).await;
    assert_eq!((status, error_code(&body)), (413, -32600));
}

async fn the_agent_card_is_served_cached_and_truthful(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, headers, card) = api.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200);
    assert!(headers.get("cache-control").is_some() && headers.get("etag").is_some());
    assert_eq!(card["capabilities"]["streaming"], true);
    let bindings: Vec<(&str, &str)> = card["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|i| (i["protocolBinding"].as_str().unwrap_or(""), i["protocolVersion"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(bindings, [("JSONRPC", "1.0"), ("HTTP+JSON", "1.0"), ("JSONRPC", "0.3"), ("HTTP+JSON", "0.3")]);
    let v03: Vec<&str> = card["additionalInterfaces"]
        .as_array()
        .expect("v0.3 interfaces")
        .iter()
        .map(|i| i["transport"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(v03, ["JSONRPC", "HTTP+JSON"], "the v0.3 face names the same bindings");
    assert_eq!(card["supportedInterfaces"][0]["url"], api.base.as_str());
    let (legacy_status, _, legacy) = api.get("/.well-known/agent.json").await;
    assert_eq!((legacy_status, &legacy), (200, &card));

    let etag = headers.get("etag").expect("etag").to_str().expect("ascii").to_owned();
    let revalidated = api
        .http
        .get(format!("{}/.well-known/agent-card.json", api.base))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("get");
    assert_eq!(revalidated.status().as_u16(), 304);
}

async fn an_idempotency_key_header_deduplicates_like_a_message_id(db: TestDb) {
    let api = Api::start(&db).await;
    let params = |text: &str| json!({"message": message(text), "configuration": {"returnImmediately": true}});
    let headers = [("A2A-Version", "1.0"), ("Idempotency-Key", "order-42")];
    let first = api.rpc_with("SendMessage", params("one"), &headers).await;
    let second = api.rpc_with("SendMessage", params("two"), &headers).await;
    assert_eq!(result(&first)["task"]["id"], result(&second)["task"]["id"], "same key, same task");
    let other = api.rpc("SendMessage", params("three")).await;
    assert_ne!(result(&other)["task"]["id"], result(&first)["task"]["id"]);
}

crate::harness::on_both_drivers!(
    send_message_acknowledges_a_durable_task_and_is_idempotent,
    follow_ups_continue_interrupted_tasks_and_are_refused_otherwise,
    list_tasks_filters_and_pages_newest_first_without_gaps_or_repeats,
    cancel_is_idempotent_and_refused_on_finished_tasks,
    push_notification_configs_have_full_crud,
    malformed_requests_get_the_right_json_rpc_errors,
    the_agent_card_is_served_cached_and_truthful,
    an_idempotency_key_header_deduplicates_like_a_message_id,
);
