//! The HTTP+JSON binding: routes, tenants, and `google.rpc.Status` errors.

use reqwest::Method;
use serde_json::{Value, json};
use switchyard_engine::{TaskEvent, TaskState};

use crate::api::{Api, message};
use crate::harness::TestDb;

async fn every_operation_has_its_route(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, sent) = api
        .rest(
            Method::POST,
            "/message:send",
            Some(json!({"message": message("hi"), "configuration": {"returnImmediately": true}})),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["task"]["id"].as_str().expect("id").to_owned();

    let (status, task) = api.rest(Method::GET, &format!("/tasks/{id}?historyLength=1"), None).await;
    assert_eq!((status, task["history"].as_array().map(Vec::len)), (200, Some(1)));

    let (status, list) = api.rest(Method::GET, "/tasks?pageSize=10&status=TASK_STATE_SUBMITTED", None).await;
    assert_eq!((status, list["totalSize"].as_i64()), (200, Some(1)));
    assert_eq!(list["nextPageToken"], "");

    let push = json!({"url": "https://hooks.example/x", "id": "cfg"});
    let (status, config) = api.rest(Method::POST, &format!("/tasks/{id}/pushNotificationConfigs"), Some(push)).await;
    assert_eq!((status, config["taskId"].as_str()), (200, Some(id.as_str())));
    let (status, listed) = api.rest(Method::GET, &format!("/tasks/{id}/pushNotificationConfigs"), None).await;
    assert_eq!((status, listed["configs"].as_array().map(Vec::len)), (200, Some(1)));
    let (status, _) = api.rest(Method::GET, &format!("/tasks/{id}/pushNotificationConfigs/cfg"), None).await;
    assert_eq!(status, 200);
    let (status, _) = api.rest(Method::DELETE, &format!("/tasks/{id}/pushNotificationConfigs/cfg"), None).await;
    assert_eq!(status, 200);
    let conflicting = json!({"url": "https://hooks.example/x", "taskId": uuid::Uuid::new_v4()});
    let (status, _) = api.rest(Method::POST, &format!("/tasks/{id}/pushNotificationConfigs"), Some(conflicting)).await;
    assert_eq!(status, 400, "a body taskId must match the path");

    let (status, canceled) = api.rest(Method::POST, &format!("/tasks/{id}:cancel"), Some(json!({}))).await;
    assert_eq!((status, canceled["status"]["state"].as_str()), (200, Some("TASK_STATE_CANCELED")));
    let (status, _) = api.rest(Method::GET, "/extendedAgentCard", None).await;
    assert_eq!(status, 401, "the extended card is for authenticated callers");
}

async fn errors_are_google_rpc_status_with_the_right_http_status(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, body) = api.rest(Method::GET, &format!("/tasks/{}", uuid::Uuid::new_v4()), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["details"][0]["reason"], "TASK_NOT_FOUND");
    assert_eq!(body["error"]["details"][0]["domain"], "a2a-protocol.org");

    let (status, body) = api.rest(Method::POST, "/message:send", Some(json!({"message": {"role": "ROLE_USER"}}))).await;
    assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
    let (status, _) = api.rest(Method::GET, "/tasks?pageSize=abc", None).await;
    assert_eq!(status, 400);
    let (status, _) = api.rest(Method::GET, "/tasks?status=TASK_STATE_BOGUS", None).await;
    assert_eq!(status, 400);
    let (status, body) = api.post_raw("/message:send", "{oops".into(), &[]).await;
    assert_eq!((status, body["error"]["details"][0]["reason"].as_str()), (400, Some("PARSE_ERROR")));

    let done = api
        .rest(
            Method::POST,
            "/message:send",
            Some(json!({"message": message("x"), "configuration": {"returnImmediately": true}})),
        )
        .await
        .1["task"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    db.store
        .task_append(done.parse().expect("uuid"), &[TaskEvent::status(TaskState::Failed, None)], None)
        .await
        .expect("fail");
    let (status, body) = api.rest(Method::POST, &format!("/tasks/{done}:cancel"), None).await;
    assert_eq!((status, body["error"]["details"][0]["reason"].as_str()), (400, Some("TASK_NOT_CANCELABLE")));
    let (status, body) = api.rest(Method::GET, "/nowhere/at/all/really", None).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (404, Some(404)));
}

async fn tenant_prefixed_routes_scope_every_task(db: TestDb) {
    let api = Api::start(&db).await;
    let (_, sent) = api
        .rest(
            Method::POST,
            "/acme/message:send",
            Some(json!({"message": message("hi"), "configuration": {"returnImmediately": true}})),
        )
        .await;
    let id = sent["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.rest(Method::GET, &format!("/acme/tasks/{id}"), None).await.0, 200);
    assert_eq!(api.rest(Method::GET, &format!("/tasks/{id}"), None).await.0, 404, "invisible outside its tenant");
    assert_eq!(api.rest(Method::GET, &format!("/globex/tasks/{id}"), None).await.0, 404);
    assert_eq!(api.rest(Method::GET, "/acme/tasks", None).await.1["totalSize"], 1);
    let rpc = api.rpc("GetTask", json!({"id": id, "tenant": "acme"})).await;
    assert_eq!(rpc["result"]["id"], id.as_str(), "the JSON-RPC tenant is the same tenant");
}

/// `/v1/…` is v0.3's HTTP+JSON binding. A request there that says it
/// speaks 1.0 is a v1.0 request for the tenant `v1`, a name no tenant may
/// take, and is told so; without the header it is v0.3 (the spec's rule).
async fn v1_paths_are_v03_unless_the_request_says_1_0(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, refused) = api.rest(Method::POST, "/v1/message:send", Some(json!({"message": message("hi")}))).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["details"][1]["fieldViolations"][0]["field"], "tenant", "{refused}");

    // v0.3: no header. The body is v0.3's ProtoJSON (`content`, not `parts`).
    let v03 = |method: Method, path: &str, body: Option<Value>| {
        let mut request = api.http.request(method, format!("{}{path}", api.base));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = json!({"message": {"messageId": "m-1", "role": "ROLE_USER", "content": [{"text": "hi"}]},
                      "configuration": {"blocking": false}});
    let (status, sent) = v03(Method::POST, "/v1/message:send", Some(body)).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
    assert_eq!(sent["task"]["history"][0]["content"][0]["text"], "hi", "v0.3 shapes back");
    let v03_id = sent["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.rest(Method::GET, &format!("/tasks/{v03_id}"), None).await.0,
        200,
        "a v0.3 task is a default-tenant task"
    );
    let (status, canceled) = v03(Method::POST, &format!("/v1/tasks/{v03_id}:cancel"), Some(json!({}))).await;
    assert_eq!((status, &canceled["status"]["state"]), (200, &json!("TASK_STATE_CANCELLED")));
    // Refusals keep their HTTP status; a v1-shaped body is not a v0.3 request.
    let (status, _) = v03(Method::GET, "/v1/tasks/00000000-0000-0000-0000-000000000000", None).await;
    assert_eq!(status, 404);
    let (status, body) = v03(Method::POST, "/v1/message:send", Some(json!({"message": message("hi")}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = v03(Method::GET, "/v1/nowhere", None).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (404, Some(404)), "{body}");
}

async fn the_admin_api_registers_agents_only_for_its_token_holder(db: TestDb) {
    let closed = Api::start(&db).await;
    let (status, _) = closed.rest(Method::GET, "/admin/agents", None).await;
    assert_eq!(status, 401, "an anonymous caller is no admin");

    let api = Api::start_on(db.another_store().await, |c| switchyard_api::ApiConfig {
        admin_token: Some("s3cret".into()),
        ..c
    })
    .await;
    let url = format!("{}/admin/agents", api.base);
    let anonymous = api.http.get(&url).send().await.expect("get");
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(anonymous.headers().get("www-authenticate").is_some());
    let wrong = api.http.get(&url).bearer_auth("guess").send().await.expect("get");
    assert_eq!(wrong.status().as_u16(), 401);

    let added = api
        .http
        .post(&url)
        .bearer_auth("s3cret")
        .json(&json!({"name": "remote-1", "url": "https://agents.example/a"}))
        .send()
        .await;
    assert_eq!(added.expect("post").status().as_u16(), 201);
    let bad =
        api.http.post(&url).bearer_auth("s3cret").json(&json!({"name": "bad name!", "url": "https://x"})).send().await;
    assert_eq!(bad.expect("post").status().as_u16(), 400);
    let listed: Value = api.http.get(&url).bearer_auth("s3cret").send().await.expect("get").json().await.expect("json");
    let names: Vec<&str> =
        listed["agents"].as_array().expect("agents").iter().filter_map(|a| a["name"].as_str()).collect();
    assert!(names.contains(&"remote-1"), "{listed}");
    let removed = api.http.delete(format!("{url}/remote-1")).bearer_auth("s3cret").send().await.expect("delete");
    assert_eq!(removed.status().as_u16(), 204);
    let again = api.http.delete(format!("{url}/remote-1")).bearer_auth("s3cret").send().await.expect("delete");
    assert_eq!(again.status().as_u16(), 404);
}

/// A browser lets any web page POST `text/plain`, or nothing, to any
/// origin without asking: such a request must change nothing, on either
/// binding.
async fn a_post_that_does_not_say_json_changes_nothing(db: TestDb) {
    let api = Api::start(&db).await;
    let (_, sent) = api
        .rest(
            Method::POST,
            "/message:send",
            Some(json!({"message": message("x"), "configuration": {"returnImmediately": true}})),
        )
        .await;
    let id = sent["task"]["id"].as_str().expect("id").to_owned();
    let body = json!({"message": message("forged")}).to_string();
    let forged = [
        ("/message:send".to_owned(), Some("text/plain"), body.clone()),
        ("/message:send".to_owned(), None, body.clone()),
        (format!("/tasks/{id}:cancel"), Some("text/plain"), String::new()),
        (format!("/tasks/{id}:cancel"), None, String::new()),
        (format!("/tasks/{id}:cancel"), Some("application/x-www-form-urlencoded"), "a=b".to_owned()),
    ];
    for (path, content_type, body) in forged {
        let mut request = api.http.post(format!("{}{path}", api.base)).header("A2A-Version", "1.0").body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), 415, "{path} {content_type:?}");
        let refusal: Value = response.json().await.expect("a google.rpc.Status body");
        assert_eq!(refusal["error"]["details"][0]["reason"], "UNSUPPORTED_MEDIA_TYPE", "{refusal}");
        assert!(!refusal.to_string().contains("JSON-RPC"), "the HTTP+JSON binding speaks of itself: {refusal}");
    }
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "CancelTask", "params": {"id": id}}).to_string();
    let response = api
        .http
        .post(format!("{}/", api.base))
        .header("A2A-Version", "1.0")
        .header("content-type", "text/plain")
        .body(rpc)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 415);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    // Nothing was created or canceled.
    let (_, task) = api.rest(Method::GET, &format!("/tasks/{id}"), None).await;
    assert_ne!(task["status"]["state"], "TASK_STATE_CANCELED", "{task}");
    let (_, listed) = api.rest(Method::GET, "/tasks", None).await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(1), "{listed}");
}

/// A client that never finishes its headers (slowloris) is cut off at the
/// header timeout, one that trickles its body at the body timeout; the
/// server goes on serving others.
#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_or_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(db) = TestDb::new().await else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = switchyard_api::ApiConfig {
        body_timeout: std::time::Duration::from_millis(500),
        auth: switchyard_api::auth::AuthConfig::anonymous(),
        ..switchyard_api::ApiConfig::new(format!("http://{addr}"))
    };
    let state = switchyard_api::AppState::new(db.another_store().await, config, shutdown.clone());
    let limits = switchyard_api::ConnectionLimits {
        header_timeout: std::time::Duration::from_millis(500),
        ..switchyard_api::ConnectionLimits::default()
    };
    let server = tokio::spawn(switchyard_api::serve(
        listener,
        state,
        shutdown.clone(),
        std::time::Duration::from_secs(1),
        switchyard_api::Admission::new(limits),
    ));
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: appl").await.expect("write");
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buffer))
        .await
        .expect("the server closed the connection in time");
    // Closed (EOF or reset), or answered 408 before closing.
    let n = read.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    // A body that trickles is refused at the body timeout.
    let mut trickle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head =
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"";
    trickle.write_all(head.as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    // The whole answer: headers and body may come in separate reads.
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("did not arrive") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), trickle.read(&mut buffer))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "closed without the error: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("-32600"), "a JSON-RPC invalid request: {answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    // Everyone else is still served.
    let ok = reqwest::get(format!("http://{addr}/healthz")).await.expect("healthz");
    assert_eq!(ok.status(), 200);
    shutdown.cancel();
    server.await.expect("joined").expect("served");
}

crate::harness::on_both_drivers!(
    every_operation_has_its_route,
    errors_are_google_rpc_status_with_the_right_http_status,
    tenant_prefixed_routes_scope_every_task,
    v1_paths_are_v03_unless_the_request_says_1_0,
    the_admin_api_registers_agents_only_for_its_token_holder,
    a_post_that_does_not_say_json_changes_nothing,
);
