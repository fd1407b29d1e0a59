//! A real `switchyard` API on a loopback socket, and helpers to talk to it
//! over both bindings and read its SSE streams.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use switchyard_api::{ApiConfig, AppState};
use switchyard_engine::Store;
use switchyard_engine::route::RoutingRules;
use tokio_util::sync::CancellationToken;

use crate::harness::TestDb;

/// One api process (in-process, on a real socket).
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Api {
    pub(crate) async fn start(db: &TestDb) -> Api {
        Api::start_on(db.another_store().await, |c| c).await
    }

    pub(crate) async fn start_on(store: Store, tweak: impl FnOnce(ApiConfig) -> ApiConfig) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        // Messages route to a registered agent no worker ever calls here, so
        // tasks stay where the tests put them.
        store.agent_upsert("stub", "http://127.0.0.1:9").await.expect("register the stub agent");
        let routing = RoutingRules { default_agent: Some("stub".into()), ..RoutingRules::default() };
        // Anonymous: these tests are about the protocol; the security tests
        // start their own api with credentials required.
        let config = tweak(ApiConfig {
            blocking_timeout: Duration::from_secs(5),
            routing,
            auth: switchyard_api::auth::AuthConfig::anonymous(),
            ..ApiConfig::new(base.clone())
        });
        let shutdown = CancellationToken::new();
        let state = AppState::new(store, config, shutdown.clone());
        let token = shutdown.clone();
        let admission = switchyard_api::Admission::new(switchyard_api::ConnectionLimits::default());
        tokio::spawn(
            async move { switchyard_api::serve(listener, state, token, Duration::from_secs(1), admission).await },
        );
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Api { base, http, shutdown }
    }

    /// A v1 JSON-RPC call; returns the whole response envelope.
    pub(crate) async fn rpc(&self, method: &str, params: Value) -> Value {
        self.rpc_with(method, params, &[("A2A-Version", "1.0")]).await
    }

    pub(crate) async fn rpc_with(&self, method: &str, params: Value, headers: &[(&str, &str)]) -> Value {
        rpc_call(&self.http, &format!("{}/", self.base), method, params, headers).await
    }

    pub(crate) async fn post_raw(&self, path: &str, body: String, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request =
            self.http.post(format!("{}{path}", self.base)).body(body).header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, HeaderMap, Value) {
        let response =
            self.http.get(format!("{}{path}", self.base)).header("A2A-Version", "1.0").send().await.expect("get");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn rest(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let post = method == reqwest::Method::POST;
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("A2A-Version", "1.0");
        if let Some(body) = body {
            request = request.header("content-type", "application/a2a+json").body(body.to_string());
        } else if post {
            // A POST says it is JSON even when it has no body, as clients do.
            request = request.header("content-type", "application/a2a+json");
        }
        let response = request.send().await.expect("rest");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Opens an SSE stream (POST with a body, or GET without).
    pub(crate) async fn sse(&self, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Sse {
        let url = format!("{}{path}", self.base);
        let mut request = match &body {
            Some(b) => self.http.post(url).header("content-type", "application/json").body(b.to_string()),
            None => self.http.get(url),
        };
        request = request.header("accept", "text/event-stream");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("sse");
        Sse {
            status: response.status().as_u16(),
            content_type: content_type(response.headers()),
            response: Some(response),
            buffer: Vec::new(),
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// A client-side SSE reader.
pub(crate) struct Sse {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    response: Option<reqwest::Response>,
    /// Bytes until a whole event has arrived: a chunk may end mid-character.
    buffer: Vec<u8>,
}

/// One SSE event: its `id` (if any) and its `data` as JSON.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<i64>,
    pub(crate) data: Value,
}

impl Sse {
    /// Reads the SSE body of a response.
    pub(crate) fn from_response(response: reqwest::Response) -> Sse {
        Sse {
            status: response.status().as_u16(),
            content_type: content_type(response.headers()),
            response: Some(response),
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the server closed the stream.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("an event is UTF-8");
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(SseEvent { id, data: serde_json::from_str(&data).expect("data is JSON") });
            }
            let response = self.response.as_mut()?;
            let chunk =
                tokio::time::timeout(Duration::from_secs(20), response.chunk()).await.expect("an event within 20s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => {
                    self.response = None;
                    return None;
                }
            }
        }
    }

    /// Every remaining event until the server closes the stream.
    pub(crate) async fn rest(&mut self) -> Vec<SseEvent> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}

/// One JSON-RPC call to any A2A endpoint (ours or an agent's) with these
/// headers; returns the whole response envelope.
pub(crate) async fn rpc_call(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
    headers: &[(&str, &str)],
) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut request = http.post(url).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("rpc").json().await.expect("a JSON-RPC response")
}

/// Sends `message` as a stream (`SendStreamingMessage`, JSON-RPC), reads
/// the stream's first event (the new task) and hangs up; the task's id. A
/// task sent this way is followed as a stream, so its worker streams from
/// the agent too.
pub(crate) async fn stream_started(
    http: &reqwest::Client,
    url: &str,
    message: Value,
    headers: &[(&str, &str)],
) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": message}});
    let mut request = http.post(url).header("accept", "text/event-stream").json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send().await.expect("stream");
    let mut seen = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the stream's first event") {
        seen.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&seen);
        if let Some(line) = text.lines().find(|l| l.starts_with("data:")).filter(|_| text.contains("\n\n")) {
            let event: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).expect("an event");
            return event["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{event}")).to_owned();
        }
    }
    panic!("the stream ended before its first event: {}", String::from_utf8_lossy(&seen));
}

/// A minimal valid v1 message.
pub(crate) fn message(text: &str) -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]})
}

/// The `result` of a JSON-RPC response, or a panic showing the error.
#[track_caller]
pub(crate) fn result(response: &Value) -> &Value {
    assert!(response.get("error").is_none(), "unexpected error: {response}");
    &response["result"]
}

/// The JSON-RPC error code of a response.
#[track_caller]
pub(crate) fn error_code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error: {response}"))
}
