//! The error table (PROTOCOL.md §6, the A2A specification v1.0.1's
//! mapping), row by row, on all three bindings of one real `serve`
//! process: the JSON-RPC code, the HTTP status, the gRPC status and the
//! `ErrorInfo` reason each binding answers with. The expected values are
//! written here from the table, not read from the code that produces them.

use std::time::Duration;

use a2a_pb::proto;
use a2a_pb::proto::a2a_service_client::A2aServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get, switchyard};

/// One row: what every binding must answer. `None` where a binding has no
/// way to make that mistake (gRPC has no JSON to misparse).
struct Row {
    name: &'static str,
    jsonrpc: i64,
    http: u16,
    grpc: Option<tonic::Code>,
    reason: &'static str,
}

/// The rows Switchyard can be made to answer. The catalogue's others are
/// never produced, and say why: push notifications are supported, so
/// `PushNotificationNotSupportedError` cannot happen; parts of any media
/// type are accepted and passed on (`ContentTypeNotSupportedError` is the
/// agent's to raise, and it reaches the client as the task's failure); a
/// misbehaving agent fails its task rather than the request
/// (`InvalidAgentResponseError`); the extended card is always configured
/// (`ExtendedAgentCardNotConfiguredError`); the card requires no extension
/// (`ExtensionSupportRequiredError`).
const ROWS: [Row; 8] = [
    Row {
        name: "TaskNotFound",
        jsonrpc: -32001,
        http: 404,
        grpc: Some(tonic::Code::NotFound),
        reason: "TASK_NOT_FOUND",
    },
    Row {
        name: "TaskNotCancelable",
        jsonrpc: -32002,
        http: 400,
        grpc: Some(tonic::Code::FailedPrecondition),
        reason: "TASK_NOT_CANCELABLE",
    },
    Row {
        name: "UnsupportedOperation",
        jsonrpc: -32004,
        http: 400,
        grpc: Some(tonic::Code::FailedPrecondition),
        reason: "UNSUPPORTED_OPERATION",
    },
    Row {
        name: "VersionNotSupported",
        jsonrpc: -32009,
        http: 400,
        grpc: Some(tonic::Code::FailedPrecondition),
        reason: "VERSION_NOT_SUPPORTED",
    },
    Row {
        name: "InvalidParams",
        jsonrpc: -32602,
        http: 400,
        grpc: Some(tonic::Code::InvalidArgument),
        reason: "INVALID_PARAMS",
    },
    Row { name: "MethodNotFound", jsonrpc: -32601, http: 404, grpc: None, reason: "METHOD_NOT_FOUND" },
    Row { name: "Parse", jsonrpc: -32700, http: 400, grpc: None, reason: "PARSE_ERROR" },
    Row { name: "UnsupportedMediaType", jsonrpc: -32600, http: 415, grpc: None, reason: "UNSUPPORTED_MEDIA_TYPE" },
];

/// What one binding answered.
#[derive(Debug, PartialEq)]
struct Answer {
    code: String,
    reason: String,
}

struct Server {
    base: String,
    http: reqwest::Client,
    grpc: A2aServiceClient<Channel>,
    _serve: tokio::process::Child,
}

impl Server {
    /// A JSON-RPC call with a raw body and headers: the error's code and
    /// `ErrorInfo` reason, and the HTTP status.
    async fn jsonrpc(&self, body: String, content_type: &str, version: &str) -> (u16, Answer) {
        let response = self
            .http
            .post(format!("{}/", self.base))
            .header("A2A-Version", version)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("a JSON-RPC response");
        let error = &answer["error"];
        let reason = error["data"].as_array().and_then(|d| d.iter().find_map(|x| x["reason"].as_str()));
        (status, Answer { code: error["code"].to_string(), reason: reason.unwrap_or_default().to_owned() })
    }

    async fn rpc(&self, method: &str, params: Value, version: &str) -> (u16, Answer) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        self.jsonrpc(body, "application/json", version).await
    }

    /// An HTTP+JSON call: the status and the `google.rpc.Status` body's
    /// code and reason.
    async fn rest(&self, method: reqwest::Method, path: &str, body: Option<(&str, String)>, version: &str) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("A2A-Version", version);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("a google.rpc.Status body");
        let error = &answer["error"];
        assert_eq!(error["code"], status, "the body's code is the HTTP status: {answer}");
        let reason = error["details"].as_array().and_then(|d| d.iter().find_map(|x| x["reason"].as_str()));
        Answer { code: status.to_string(), reason: reason.unwrap_or_default().to_owned() }
    }
}

fn grpc_request<T>(message: T, version: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("a2a-version", version.parse().expect("metadata"));
    request
}

fn grpc_answer<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Answer {
    let status = result.expect_err("an error");
    let reason = status.get_details_error_info().map(|info| info.reason).unwrap_or_default();
    Answer { code: format!("{:?}", status.code()), reason }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_error_table_on_every_binding() {
    let Some(db) = TestDb::new().await else { return };
    let (port, grpc) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let serve = switchyard(&db, &["serve", "--listen", &listen, "--grpc-listen", &grpc]).spawn().expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async { http_get(port, "/readyz").await.is_some() }).await;
    let channel = Channel::from_shared(format!("http://{grpc}")).expect("uri").connect().await.expect("connect");
    let server = Server {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
        grpc: A2aServiceClient::new(channel),
        _serve: serve,
    };

    // A finished task.
    let message = json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": "x"}]});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": {"message": message, "configuration": {"returnImmediately": true}}});
    let sent: Value = server
        .http
        .post(format!("{}/", server.base))
        .header("A2A-Version", "1.0")
        .json(&body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let done = sent["result"]["task"]["id"].as_str().expect("a task").to_owned();
    // No agent is configured, so the task was rejected at once: terminal.
    assert_eq!(sent["result"]["task"]["status"]["state"], "TASK_STATE_REJECTED", "{sent}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut grpc = server.grpc.clone();

    for row in &ROWS {
        // Each binding's way of making this row's mistake.
        let (jsonrpc, rest, over_grpc) = match row.name {
            "TaskNotFound" => (
                server.rpc("GetTask", json!({"id": unknown}), "1.0").await,
                server.rest(reqwest::Method::GET, &format!("/tasks/{unknown}"), None, "1.0").await,
                Some(grpc_answer(
                    grpc.get_task(grpc_request(
                        proto::GetTaskRequest { id: unknown.clone(), ..Default::default() },
                        "1.0",
                    ))
                    .await,
                )),
            ),
            "TaskNotCancelable" => (
                server.rpc("CancelTask", json!({"id": done}), "1.0").await,
                server
                    .rest(
                        reqwest::Method::POST,
                        &format!("/tasks/{done}:cancel"),
                        Some(("application/json", "{}".into())),
                        "1.0",
                    )
                    .await,
                Some(grpc_answer(
                    grpc.cancel_task(grpc_request(
                        proto::CancelTaskRequest { id: done.clone(), ..Default::default() },
                        "1.0",
                    ))
                    .await,
                )),
            ),
            "UnsupportedOperation" => (
                server.rpc("SubscribeToTask", json!({"id": done}), "1.0").await,
                server.rest(reqwest::Method::GET, &format!("/tasks/{done}:subscribe"), None, "1.0").await,
                Some(grpc_answer(
                    grpc.subscribe_to_task(grpc_request(
                        proto::SubscribeToTaskRequest { id: done.clone(), ..Default::default() },
                        "1.0",
                    ))
                    .await,
                )),
            ),
            "VersionNotSupported" => (
                server.rpc("GetTask", json!({"id": done}), "99.0").await,
                server.rest(reqwest::Method::GET, &format!("/tasks/{done}"), None, "99.0").await,
                Some(grpc_answer(
                    grpc.get_task(grpc_request(
                        proto::GetTaskRequest { id: done.clone(), ..Default::default() },
                        "99.0",
                    ))
                    .await,
                )),
            ),
            "InvalidParams" => (
                server.rpc("GetTask", json!({"id": done, "historyLength": -1}), "1.0").await,
                server.rest(reqwest::Method::GET, &format!("/tasks/{done}?historyLength=-1"), None, "1.0").await,
                Some(grpc_answer(
                    grpc.get_task(grpc_request(
                        proto::GetTaskRequest { id: done.clone(), history_length: Some(-1), ..Default::default() },
                        "1.0",
                    ))
                    .await,
                )),
            ),
            "MethodNotFound" => (
                server.rpc("FrobnicateTask", json!({}), "1.0").await,
                server
                    .rest(
                        reqwest::Method::POST,
                        &format!("/tasks/{done}:frobnicate"),
                        Some(("application/json", "{}".into())),
                        "1.0",
                    )
                    .await,
                None,
            ),
            "Parse" => (
                server.jsonrpc("{\"jsonrpc\": \"2.0\", \"id\": 1,".into(), "application/json", "1.0").await,
                server
                    .rest(
                        reqwest::Method::POST,
                        "/message:send",
                        Some(("application/json", "{\"message\":".into())),
                        "1.0",
                    )
                    .await,
                None,
            ),
            "UnsupportedMediaType" => (
                server
                    .jsonrpc(
                        json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": done}}).to_string(),
                        "text/plain",
                        "1.0",
                    )
                    .await,
                server
                    .rest(
                        reqwest::Method::POST,
                        "/message:send",
                        Some(("text/plain", json!({"message": message}).to_string())),
                        "1.0",
                    )
                    .await,
                None,
            ),
            other => panic!("no way to provoke {other}"),
        };
        let (http_status, jsonrpc) = jsonrpc;
        let expected_jsonrpc_status = if row.http == 415 { 415 } else { 200 };
        assert_eq!(http_status, expected_jsonrpc_status, "{}: JSON-RPC's HTTP status", row.name);
        assert_eq!(
            jsonrpc,
            Answer { code: row.jsonrpc.to_string(), reason: row.reason.into() },
            "{}: JSON-RPC",
            row.name
        );
        assert_eq!(rest, Answer { code: row.http.to_string(), reason: row.reason.into() }, "{}: HTTP+JSON", row.name);
        if let (Some(code), Some(answer)) = (row.grpc, over_grpc) {
            assert_eq!(answer, Answer { code: format!("{code:?}"), reason: row.reason.into() }, "{}: gRPC", row.name);
        }
    }
}
