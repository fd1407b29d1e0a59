//! The call to a remote agent, behind our own type so every failure is
//! classified where it is visible: at the HTTP or gRPC layer.
//!
//! JSON-RPC agents, v1.0 or v0.3, are called by [`JsonRpcAgent`], which
//! sees status codes and `Retry-After` (v0.3 shapes are translated by
//! [`crate::v03`]); gRPC agents by [`GrpcAgent`], which sees status codes
//! and their `ErrorInfo`; agents offering only HTTP+JSON go through the
//! official client's REST transport, whose errors carry the status in their
//! text.

use std::pin::Pin;
use std::time::Duration;

use a2a::{A2AError, AgentCard, SendMessageRequest, SendMessageResponse, StreamResponse, Task, error_code};
use a2a_client::{A2AClient, Transport};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_stream::{Stream, StreamExt};

use crate::sse::{Decoder, Limits};
use switchyard_engine::v03;

mod grpc;
pub use grpc::GrpcAgent;

/// A stream of remote task events.
pub type Events = Pin<Box<dyn Stream<Item = Result<StreamResponse, RemoteError>> + Send>>;

/// What went wrong talking to a remote agent: retry or not, and when.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// Worth another try (connection refused, timeout, HTTP 5xx/429, the
    /// agent's own internal error), no sooner than `retry_after` if it said.
    #[error("{message}")]
    Transient { message: String, retry_after: Option<Duration> },
    /// A verdict: retrying would get the same answer (HTTP 4xx, an invalid
    /// response, an A2A error such as invalid params or unsupported operation).
    #[error("{message}")]
    Permanent { message: String, code: Option<i32> },
}

impl RemoteError {
    fn transient(message: impl Into<String>) -> Self {
        RemoteError::Transient { message: message.into(), retry_after: None }
    }

    fn permanent(message: impl Into<String>) -> Self {
        RemoteError::Permanent { message: message.into(), code: None }
    }

    /// The A2A error code the agent answered with, if it answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            RemoteError::Permanent { code, .. } => *code,
            RemoteError::Transient { .. } => None,
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        // The egress guard's refusal is a verdict: the address will not
        // become allowed by retrying.
        if let Some(refused) = crate::egress::refusal(e) {
            return RemoteError::permanent(refused.0.clone());
        }
        if e.is_redirect() || e.status().is_some_and(|s| s.is_redirection()) {
            return RemoteError::permanent("the agent answered with a redirect, which is not followed");
        }
        // Connection, timeout and body errors are all about the way there.
        RemoteError::transient(format!("request failed: {}", crate::egress::reason(e)))
    }

    /// The status alone: what an endpoint wrote in its body (perhaps an
    /// internal service's page) never reaches the caller.
    fn from_status(status: StatusCode, headers: &HeaderMap, _body: &str) -> Self {
        let message = format!("HTTP {status}");
        if status.is_redirection() {
            return RemoteError::permanent(format!("{message}: redirects are not followed"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
        {
            RemoteError::Transient { message, retry_after: retry_after(headers) }
        } else {
            RemoteError::permanent(message)
        }
    }

    /// An A2A/JSON-RPC error object from the agent.
    fn from_rpc(error: &Value) -> Self {
        let code = error.get("code").and_then(Value::as_i64).and_then(|c| i32::try_from(c).ok());
        let message = sanitise(error.get("message").and_then(Value::as_str).unwrap_or("error without a message"));
        match code {
            // The agent's own failure may pass; everything else is a verdict.
            Some(error_code::INTERNAL_ERROR) => RemoteError::transient(format!("agent internal error: {message}")),
            code => RemoteError::Permanent { message, code },
        }
    }

    /// An answer that does not translate into the v1 model.
    fn untranslatable(method: &str, e: &v03::Untranslatable) -> Self {
        RemoteError::permanent(format!("invalid result of {method}: {e}"))
    }

    /// Classifies an error from the official client (REST transport).
    fn from_sdk(e: &A2AError) -> Self {
        if e.code != error_code::INTERNAL_ERROR {
            return RemoteError::Permanent { message: sanitise(&e.message), code: Some(e.code) };
        }
        // "HTTP 404 Not Found: …" — the REST transport's way of saying.
        let status = e
            .message
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|code| code.trim_end_matches(':').parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok());
        // Its text carries the reply's body after the status: kept out.
        let message = match status {
            Some(status) => format!("HTTP {status}"),
            None => sanitise(&e.message),
        };
        match status {
            Some(status) if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS => {
                RemoteError::permanent(message)
            }
            _ => RemoteError::transient(message),
        }
    }
}

/// The longest text from a remote agent passed on in a reason.
const MAX_REASON_CHARS: usize = 200;

/// A remote party's words as they may appear in a task's status: printable
/// characters only, whitespace collapsed, at most [`MAX_REASON_CHARS`].
pub fn sanitise(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        if chars + word.chars().count() + 1 > MAX_REASON_CHARS {
            out.push_str(" …");
            break;
        }
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        chars += word.chars().count();
        out.push_str(&word);
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

/// A remote agent, by whichever interface its card offers.
pub enum RemoteAgent {
    JsonRpc(JsonRpcAgent),
    /// A v0.3 JSON-RPC agent: v0.3 method names and shapes on the wire.
    JsonRpcV03(JsonRpcAgent),
    Grpc(Box<GrpcAgent>),
    Sdk(A2AClient<Box<dyn Transport>>),
}

impl std::fmt::Debug for RemoteAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAgent::JsonRpc(a) => f.debug_tuple("JsonRpc").field(&a.url).finish(),
            RemoteAgent::JsonRpcV03(a) => f.debug_tuple("JsonRpcV03").field(&a.url).finish(),
            RemoteAgent::Grpc(a) => f.debug_tuple("Grpc").field(&a.endpoint).finish(),
            RemoteAgent::Sdk(_) => f.write_str("Sdk"),
        }
    }
}

impl RemoteAgent {
    /// The binding and version on the wire, as a card names them.
    pub fn binding(&self) -> &'static str {
        match self {
            RemoteAgent::JsonRpc(_) => "JSONRPC 1.0",
            RemoteAgent::JsonRpcV03(_) => "JSONRPC 0.3",
            RemoteAgent::Grpc(_) => "GRPC 1.0",
            RemoteAgent::Sdk(_) => "HTTP+JSON 1.0",
        }
    }

    /// Whether this interface can list a context's tasks (v0.3 cannot).
    pub fn can_list(&self) -> bool {
        !matches!(self, RemoteAgent::JsonRpcV03(_))
    }

    pub async fn send(&self, request: &SendMessageRequest) -> Result<SendMessageResponse, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => a.call("SendMessage", json!(request)).await,
            RemoteAgent::JsonRpcV03(a) => {
                let result: v03::V03Result = a.call("message/send", json!(v03::send_params(request))).await?;
                v03::send_response_from_v03(result).map_err(|e| RemoteError::untranslatable("message/send", &e))
            }
            RemoteAgent::Grpc(a) => a.send(request).await,
            RemoteAgent::Sdk(c) => c.send_message(request).await.map_err(|e| RemoteError::from_sdk(&e)),
        }
    }

    pub async fn send_streaming(&self, request: &SendMessageRequest) -> Result<Events, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => a.stream("SendStreamingMessage", json!(request)).await,
            RemoteAgent::JsonRpcV03(a) => a.stream("message/stream", json!(v03::send_params(request))).await,
            RemoteAgent::Grpc(a) => a.send_streaming(request).await,
            RemoteAgent::Sdk(c) => sdk_events(c.send_streaming_message(request).await),
        }
    }

    pub async fn subscribe(&self, task_id: &str) -> Result<Events, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => a.stream("SubscribeToTask", json!({ "id": task_id })).await,
            RemoteAgent::JsonRpcV03(a) => a.stream("tasks/resubscribe", json!({ "id": task_id })).await,
            RemoteAgent::Grpc(a) => a.subscribe(task_id).await,
            RemoteAgent::Sdk(c) => {
                sdk_events(c.subscribe_to_task(&a2a::SubscribeToTaskRequest { id: task_id.into(), tenant: None }).await)
            }
        }
    }

    /// The remote task, with its last `history` messages.
    pub async fn get_task(&self, task_id: &str, history: i32) -> Result<Task, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => a.call("GetTask", json!({ "id": task_id, "historyLength": history })).await,
            RemoteAgent::JsonRpcV03(a) => {
                let result = a.call("tasks/get", json!({ "id": task_id, "historyLength": history })).await?;
                v03::task_result_from_v03(result).map_err(|e| RemoteError::untranslatable("tasks/get", &e))
            }
            RemoteAgent::Grpc(a) => a.get_task(task_id, history).await,
            RemoteAgent::Sdk(c) => c
                .get_task(&a2a::GetTaskRequest { id: task_id.into(), history_length: Some(history), tenant: None })
                .await
                .map_err(|e| RemoteError::from_sdk(&e)),
        }
    }

    /// The remote tasks in `context_id`, with their last `history`
    /// messages; `None` when this interface cannot list tasks (v0.3 has no
    /// such method).
    pub async fn tasks_in_context(&self, context_id: &str, history: i32) -> Result<Option<Vec<Task>>, RemoteError> {
        /// Only the tasks: agents differ in which paging fields they send.
        #[derive(serde::Deserialize)]
        struct Listed {
            #[serde(default)]
            tasks: Vec<Task>,
        }
        match self {
            RemoteAgent::JsonRpc(a) => {
                let params = json!({ "contextId": context_id, "historyLength": history, "pageSize": 10 });
                let listed: Listed = a.call("ListTasks", params).await?;
                Ok(Some(listed.tasks))
            }
            RemoteAgent::JsonRpcV03(_) => Ok(None),
            RemoteAgent::Grpc(a) => a.tasks_in_context(context_id, history).await.map(Some),
            RemoteAgent::Sdk(c) => {
                let request = a2a::ListTasksRequest {
                    context_id: Some(context_id.into()),
                    status: None,
                    page_size: Some(10),
                    page_token: None,
                    history_length: Some(history),
                    status_timestamp_after: None,
                    include_artifacts: Some(true),
                    tenant: None,
                };
                c.list_tasks(&request).await.map(|r| Some(r.tasks)).map_err(|e| RemoteError::from_sdk(&e))
            }
        }
    }

    pub async fn cancel(&self, task_id: &str) -> Result<Task, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => a.call("CancelTask", json!({ "id": task_id })).await,
            RemoteAgent::JsonRpcV03(a) => {
                let result = a.call("tasks/cancel", json!({ "id": task_id })).await?;
                v03::task_result_from_v03(result).map_err(|e| RemoteError::untranslatable("tasks/cancel", &e))
            }
            RemoteAgent::Grpc(a) => a.cancel(task_id).await,
            RemoteAgent::Sdk(c) => c
                .cancel_task(&a2a::CancelTaskRequest { id: task_id.into(), metadata: None, tenant: None })
                .await
                .map_err(|e| RemoteError::from_sdk(&e)),
        }
    }

    /// Registers a webhook on the remote task (its pushes wake a parked
    /// delegation). `false` when this interface is not one we register on.
    pub async fn register_push(&self, task_id: &str, url: &str, token: &str) -> Result<bool, RemoteError> {
        match self {
            RemoteAgent::JsonRpc(a) => {
                let params = json!({ "taskId": task_id, "url": url, "token": token });
                let _: Value = a.call("CreateTaskPushNotificationConfig", params).await?;
                Ok(true)
            }
            RemoteAgent::JsonRpcV03(a) => {
                let params = json!({ "taskId": task_id, "pushNotificationConfig": { "url": url, "token": token } });
                let _: Value = a.call("tasks/pushNotificationConfig/set", params).await?;
                Ok(true)
            }
            RemoteAgent::Grpc(a) => a.register_push(task_id, url, token).await.map(|()| true),
            RemoteAgent::Sdk(_) => Ok(false),
        }
    }
}

/// What a connection to an agent is made of: the HTTP clients (`http`
/// without a read timeout, for streams and our JSON-RPC calls; `sdk` for the
/// official client's REST transport), the headers a gRPC call carries as
/// metadata, and the limits every call keeps.
#[derive(Debug)]
pub struct Transports<'a> {
    pub http: &'a reqwest::Client,
    pub sdk: &'a reqwest::Client,
    pub headers: &'a HeaderMap,
    pub timeout: Duration,
    pub limits: Limits,
    pub trace: Option<&'a Value>,
}

/// The agent over `interface` (one of its card's): JSON-RPC (v1.0 or v0.3)
/// and gRPC called directly, HTTP+JSON through the official client's REST
/// transport. `channel` gives the gRPC channel to an address.
pub async fn connect(
    card: &AgentCard,
    interface: &a2a::AgentInterface,
    transports: &Transports<'_>,
    channel: impl FnOnce(&str) -> Result<tonic::transport::Channel, RemoteError>,
) -> Result<RemoteAgent, RemoteError> {
    let t = transports;
    let v1 = !interface.protocol_version.starts_with("0.");
    match interface.protocol_binding.to_ascii_uppercase().as_str() {
        "JSONRPC" => {
            let agent = JsonRpcAgent::new(t.http.clone(), interface.url.clone(), t.timeout, t.limits)
                .with_trace_context(t.trace);
            Ok(if v1 { RemoteAgent::JsonRpc(agent) } else { RemoteAgent::JsonRpcV03(agent.v03()) })
        }
        "GRPC" => {
            let channel = channel(&interface.url)?;
            let (headers, tenant) = (t.headers.clone(), interface.tenant.clone());
            let agent = GrpcAgent::new(channel, interface.url.clone(), headers, tenant, t.timeout, t.limits)
                .with_trace_context(t.trace);
            Ok(RemoteAgent::Grpc(Box::new(agent)))
        }
        _ => {
            let mut only = card.clone();
            only.supported_interfaces = vec![interface.clone()];
            a2a_client::A2AClientFactory::builder()
                .no_defaults()
                .register(std::sync::Arc::new(a2a_client::rest::RestTransportFactory::new(Some(t.sdk.clone()))))
                .build()
                .create_from_card(&only)
                .await
                .map(RemoteAgent::Sdk)
                .map_err(|e| RemoteError::permanent(format!("no usable interface: {}", e.message)))
        }
    }
}

fn sdk_events(
    result: Result<a2a_client::BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError>,
) -> Result<Events, RemoteError> {
    let events = result.map_err(|e| RemoteError::from_sdk(&e))?;
    Ok(Box::pin(events.map(|e| e.map_err(|e| RemoteError::from_sdk(&e)))))
}

/// An A2A JSON-RPC endpoint, v1.0 or v0.3, called directly.
#[derive(Debug, Clone)]
pub struct JsonRpcAgent {
    http: reqwest::Client,
    url: String,
    /// Speaks v0.3: its stream frames are v0.3 objects.
    v03: bool,
    /// The task's stored trace context, carried on calls made outside any
    /// traced span (tracing off); inside one, the span's own context goes.
    trace: Option<Value>,
    /// How long a unary call may take in all. Streams have none: a quiet
    /// stream is the caller's to judge (silence is not failure).
    call_timeout: Duration,
    limits: Limits,
}

impl JsonRpcAgent {
    /// `http` must not have a read timeout, or it would cut quiet streams.
    pub fn new(http: reqwest::Client, url: String, call_timeout: Duration, limits: Limits) -> Self {
        JsonRpcAgent { http, url, v03: false, trace: None, call_timeout, limits }
    }

    /// The same endpoint, speaking v0.3.
    pub fn v03(mut self) -> Self {
        self.v03 = true;
        self
    }

    /// Carries `traceparent` (and `tracestate`) from a stored trace context.
    pub fn with_trace_context(mut self, context: Option<&Value>) -> Self {
        self.trace = context.cloned();
        self
    }

    fn request(&self, method: &str, params: Value) -> reqwest::RequestBuilder {
        let id = uuid::Uuid::now_v7().to_string();
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let version = if self.v03 { "0.3" } else { "1.0" };
        let mut request = self
            .http
            .post(&self.url)
            .header("A2A-Version", version)
            .header(CONTENT_TYPE, "application/json")
            .json(&body);
        for (name, value) in switchyard_engine::trace::outbound(self.trace.as_ref()) {
            request = request.header(name, value);
        }
        request
    }

    /// A unary call.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RemoteError> {
        let span = client_span(method, &self.url);
        let result = tracing::Instrument::instrument(self.call_inner(method, params), span.clone()).await;
        record_outcome(&span, &result);
        result
    }

    async fn call_inner<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RemoteError> {
        let response = self
            .request(method, params)
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| RemoteError::from_reqwest(&e))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let headers = response.headers().clone();
        let body = read_capped(response, self.limits.event_bytes).await?;
        if !status.is_success() {
            return Err(RemoteError::from_status(status, &headers, &body));
        }
        let envelope: Value = serde_json::from_str(&body)
            .map_err(|_| RemoteError::permanent(format!("invalid response to {method}: not JSON")))?;
        result_of(method, envelope)
    }

    /// A streaming call: SSE frames, each a JSON-RPC response.
    pub async fn stream(&self, method: &str, params: Value) -> Result<Events, RemoteError> {
        let span = client_span(method, &self.url);
        let result = tracing::Instrument::instrument(self.stream_inner(method, params), span.clone()).await;
        record_outcome(&span, &result);
        result
    }

    async fn stream_inner(&self, method: &str, params: Value) -> Result<Events, RemoteError> {
        // The response headers are a unary wait: an agent that accepts the
        // connection and never answers must not hold a worker's slot for
        // ever. (Silence between events is the caller's to judge.)
        let opened = tokio::time::timeout(
            self.call_timeout,
            self.request(method, params).header(ACCEPT, "text/event-stream").send(),
        );
        let response = opened
            .await
            .map_err(|_| RemoteError::transient(format!("{method} opened no stream within {:?}", self.call_timeout)))?
            .map_err(|e| RemoteError::from_reqwest(&e))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let headers = response.headers().clone();
        if !status.is_success() {
            let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
            return Err(RemoteError::from_status(status, &headers, &body));
        }
        let is_sse =
            headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/event-stream"));
        if !is_sse {
            // An error before the stream started comes back as plain JSON.
            let body = read_capped(response, self.limits.event_bytes).await?;
            let envelope: Value = serde_json::from_str(&body)
                .map_err(|_| RemoteError::permanent(format!("invalid response to {method}: neither SSE nor JSON")))?;
            let first = event_of(self.v03, method, envelope)?;
            return Ok(Box::pin(tokio_stream::once(Ok(first))));
        }
        let method = method.to_owned();
        let v03 = self.v03;
        let mut bytes = response.bytes_stream();
        let mut decoder = Decoder::new(self.limits);
        let (tx, rx) = tokio::sync::mpsc::channel(32);
        // The reader carries the call's span, so the span lasts as long as
        // the stream does.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            loop {
                let chunk = match bytes.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(RemoteError::from_reqwest(&e))).await;
                        return;
                    }
                    None => return,
                };
                let frames = match decoder.push(&chunk) {
                    Ok(frames) => frames,
                    Err(e) => {
                        let _ = tx.send(Err(RemoteError::permanent(format!("reply to {method}: {e}")))).await;
                        return;
                    }
                };
                for frame in frames {
                    let event = serde_json::from_str::<Value>(&frame)
                        .map_err(|_| RemoteError::permanent(format!("invalid SSE frame from {method}")))
                        .and_then(|envelope| event_of(v03, &method, envelope));
                    let stop = event.is_err();
                    if tx.send(event).await.is_err() || stop {
                        return;
                    }
                }
            }
        }));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// A client span per remote call, by the OpenTelemetry RPC conventions
/// (`{service}/{method}`, `rpc.*`) over the HTTP client ones (`url.full`,
/// `server.address`, `http.response.status_code`).
fn client_span(method: &str, url: &str) -> tracing::Span {
    let parsed = reqwest::Url::parse(url).ok();
    let address = parsed.as_ref().and_then(|u| u.host_str().map(str::to_owned));
    let port = parsed.as_ref().and_then(reqwest::Url::port_or_known_default);
    tracing::info_span!(
        "remote call",
        otel.name = %format!("A2A/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "jsonrpc",
        rpc.service = "A2A",
        rpc.method = %method,
        rpc.jsonrpc.version = "2.0",
        rpc.jsonrpc.error_code = tracing::field::Empty,
        http.request.method = "POST",
        // Without credentials or query: tokens travel there.
        url.full = %switchyard_engine::egress::redacted(url),
        server.address = address,
        server.port = port,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Marks a failed call's span: an error status, and the JSON-RPC error code
/// when the agent answered with one.
fn record_outcome<T>(span: &tracing::Span, result: &Result<T, RemoteError>) {
    if let Err(error) = result {
        span.record("otel.status_code", "ERROR");
        if let Some(code) = error.code() {
            span.record("rpc.jsonrpc.error_code", code);
        }
    }
}

/// A response body, refused past `limit` bytes (the sender chooses its
/// size; we choose how much of it we hold).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<String, RemoteError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| RemoteError::from_reqwest(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(RemoteError::permanent(format!("the reply exceeded {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| RemoteError::permanent("the reply is not valid UTF-8"))
}

/// An agent's card, fetched and checked. Trouble reaching it may pass
/// (transient); a card that is not valid A2A will not (permanent, at once).
/// With `trusted`, the card must carry a valid signature by one of its
/// keys (checked on the card as served, before anything else reads it).
pub async fn fetch_card(
    http: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
    trusted: Option<&jsonwebtoken::jwk::JwkSet>,
) -> Result<AgentCard, RemoteError> {
    let url = format!("{}/.well-known/agent-card.json", base_url.trim_end_matches('/'));
    let response = http.get(&url).timeout(timeout).send().await.map_err(|e| RemoteError::from_reqwest(&e))?;
    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
        return Err(RemoteError::from_status(status, &headers, &body));
    }
    let body = read_capped(response, CARD_MAX_BYTES).await?;
    let raw: Value =
        serde_json::from_str(&body).map_err(|e| RemoteError::permanent(format!("its agent card is not JSON: {e}")))?;
    if let Some(trusted) = trusted {
        switchyard_engine::card_signature::verify(&raw, trusted).map_err(RemoteError::permanent)?;
    }
    // A v0.3 card is read as one and translated: its interfaces become
    // interfaces of version 0.3 in our model.
    let card: AgentCard = if v03::is_v03_card(&raw) {
        serde_json::from_value::<v03::V03Card>(raw)
            .map(v03::V03Card::into_v1)
            .map_err(|e| RemoteError::permanent(format!("its agent card is not a valid A2A v0.3 card: {e}")))?
    } else {
        serde_json::from_value(raw)
            .map_err(|e| RemoteError::permanent(format!("its agent card is not a valid A2A card: {e}")))?
    };
    if card.supported_interfaces.is_empty() {
        return Err(RemoteError::permanent("its agent card declares no interfaces".to_owned()));
    }
    Ok(card)
}

/// The largest Agent Card we read.
const CARD_MAX_BYTES: usize = 1024 * 1024;

/// One streamed event, in the v1 model whatever the agent's version.
fn event_of(v03: bool, method: &str, envelope: Value) -> Result<StreamResponse, RemoteError> {
    if v03 {
        let result: v03::V03Result = result_of(method, envelope)?;
        return v03::stream_response_from_v03(result).map_err(|e| RemoteError::untranslatable(method, &e));
    }
    result_of(method, envelope)
}

fn result_of<T: DeserializeOwned>(method: &str, mut envelope: Value) -> Result<T, RemoteError> {
    if let Some(error) = envelope.get("error") {
        return Err(RemoteError::from_rpc(error));
    }
    let result = envelope
        .get_mut("result")
        .map(Value::take)
        .ok_or_else(|| RemoteError::permanent(format!("invalid response to {method}: no result")))?;
    serde_json::from_value(result).map_err(|e| RemoteError::permanent(format!("invalid result of {method}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_remote_reason_is_bounded_and_printable() {
        assert_eq!(sanitise("a\r\nb\u{1b}[31m  c\0d"), "a b [31m c d");
        let long = sanitise(&"word ".repeat(100));
        assert!(long.chars().count() <= MAX_REASON_CHARS + 2, "{long}");
        assert!(long.ends_with('…'));
        // A body never makes it into the message.
        let e = RemoteError::from_status(StatusCode::NOT_FOUND, &HeaderMap::new(), "internal admin page");
        assert_eq!(e.to_string(), "HTTP 404 Not Found");
    }

    #[test]
    fn statuses_split_into_retry_and_verdict() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            RemoteError::from_status(StatusCode::TOO_MANY_REQUESTS, &headers, "slow down"),
            RemoteError::Transient {
                message: "HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            RemoteError::from_status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""),
            RemoteError::Transient { .. }
        ));
        assert!(matches!(
            RemoteError::from_status(StatusCode::NOT_FOUND, &HeaderMap::new(), ""),
            RemoteError::Permanent { .. }
        ));
        assert!(matches!(
            RemoteError::from_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), ""),
            RemoteError::Permanent { .. }
        ));
    }

    #[test]
    fn rpc_errors_are_verdicts_except_the_agents_own_failure() {
        let refused = RemoteError::from_rpc(&json!({"code": -32602, "message": "bad"}));
        assert_eq!(refused.code(), Some(-32602));
        assert!(matches!(
            RemoteError::from_rpc(&json!({"code": -32603, "message": "oops"})),
            RemoteError::Transient { .. }
        ));
    }

    #[test]
    fn sdk_errors_are_classified_by_their_status_text() {
        let not_found = A2AError::internal("HTTP 404 Not Found: no route");
        assert!(matches!(RemoteError::from_sdk(&not_found), RemoteError::Permanent { .. }));
        let unavailable = A2AError::internal("HTTP 503 Service Unavailable: later");
        assert!(matches!(RemoteError::from_sdk(&unavailable), RemoteError::Transient { .. }));
        let refused = A2AError::new(error_code::TASK_NOT_FOUND, "gone");
        assert_eq!(RemoteError::from_sdk(&refused).code(), Some(error_code::TASK_NOT_FOUND));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("header"));
        assert!(retry_after(&headers).is_some_and(|d| d > Duration::from_secs(50)));
    }
}
