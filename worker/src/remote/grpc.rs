//! The gRPC agent: `lf.a2a.v1.A2AService` called through the official
//! proto and conversions, its failures classified from the status code.

use std::time::Duration;

use a2a::{SendMessageRequest, SendMessageResponse, Task};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_stream::StreamExt;

use super::{Events, RemoteError, sanitise};
use crate::sse::Limits;

impl RemoteError {
    /// A gRPC status: the ways there (unavailable, exhausted, deadline,
    /// aborted) and the agent's own failure may pass; the rest is a verdict,
    /// carrying the A2A code its `ErrorInfo` names.
    fn from_grpc(status: &tonic::Status) -> Self {
        use tonic::Code;
        if let Some(refused) = crate::egress::refusal(status) {
            return RemoteError::permanent(refused.0.clone());
        }
        let message = format!("gRPC {:?}: {}", status.code(), sanitise(status.message()));
        match status.code() {
            Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled => {
                let retry_after = tonic_types::StatusExt::get_details_retry_info(status).and_then(|r| r.retry_delay);
                RemoteError::Transient { message, retry_after }
            }
            _ => RemoteError::Permanent { message, code: Some(a2a_code(status)) },
        }
    }
}

/// The A2A error code a status carries: its `ErrorInfo` reason (in A2A's
/// domain) by the official table, else the spec's code for its status.
fn a2a_code(status: &tonic::Status) -> i32 {
    use a2a::error_code;
    tonic_types::StatusExt::get_details_error_info(status)
        .filter(|info| info.domain == a2a::errordetails::PROTOCOL_DOMAIN)
        .and_then(|info| a2a::reason_to_error_code(&info.reason))
        .unwrap_or(match status.code() {
            tonic::Code::NotFound => error_code::TASK_NOT_FOUND,
            tonic::Code::FailedPrecondition => error_code::TASK_NOT_CANCELABLE,
            tonic::Code::Unimplemented => error_code::METHOD_NOT_FOUND,
            tonic::Code::InvalidArgument => error_code::INVALID_PARAMS,
            _ => error_code::INTERNAL_ERROR,
        })
}

/// An A2A v1.0 gRPC endpoint (`lf.a2a.v1.A2AService`), called through
/// the official proto and conversions, on a channel whose connections pass
/// the egress guard.
#[derive(Debug, Clone)]
pub struct GrpcAgent {
    client: a2a_pb::proto::a2a_service_client::A2aServiceClient<tonic::transport::Channel>,
    pub(super) endpoint: String,
    /// The agent's credentials (the same headers HTTP calls carry).
    credentials: HeaderMap,
    /// The interface's declared tenant, put on every request.
    tenant: String,
    trace: Option<Value>,
    call_timeout: Duration,
}

impl GrpcAgent {
    pub fn new(
        channel: tonic::transport::Channel,
        endpoint: String,
        credentials: HeaderMap,
        tenant: Option<String>,
        call_timeout: Duration,
        limits: Limits,
    ) -> Self {
        let client = a2a_pb::proto::a2a_service_client::A2aServiceClient::new(channel)
            .max_decoding_message_size(limits.event_bytes);
        GrpcAgent { client, endpoint, credentials, tenant: tenant.unwrap_or_default(), trace: None, call_timeout }
    }

    /// Carries `traceparent` (and `tracestate`) from a stored trace context.
    pub fn with_trace_context(mut self, context: Option<&Value>) -> Self {
        self.trace = context.cloned();
        self
    }

    /// The request with its metadata: the version, the credentials, the
    /// trace context.
    fn request<T>(&self, message: T, unary: bool) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        *metadata = tonic::metadata::MetadataMap::from_headers(self.credentials.clone());
        metadata.insert("a2a-version", tonic::metadata::MetadataValue::from_static("1.0"));
        for (name, value) in switchyard_engine::trace::outbound(self.trace.as_ref()) {
            if let (Ok(name), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_str()),
            ) {
                metadata.insert(name, value);
            }
        }
        if unary {
            request.set_timeout(self.call_timeout);
        }
        request
    }

    async fn unary<T, F, Fut>(&self, method: &str, call: F) -> Result<T, RemoteError>
    where
        F: FnOnce(a2a_pb::proto::a2a_service_client::A2aServiceClient<tonic::transport::Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let span = grpc_span(method, &self.endpoint);
        let attempt = tokio::time::timeout(self.call_timeout, call(self.client.clone()));
        let result = match tracing::Instrument::instrument(attempt, span.clone()).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status),
            Err(_) => {
                Err(tonic::Status::deadline_exceeded(format!("{method} took longer than {:?}", self.call_timeout)))
            }
        };
        grpc_outcome(&span, result)
    }

    async fn events(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<tonic::Response<tonic::Streaming<a2a_pb::proto::StreamResponse>>, tonic::Status>>,
    ) -> Result<Events, RemoteError> {
        let span = grpc_span(method, &self.endpoint);
        // The response headers are a unary wait: an agent that accepts the
        // call and never answers must not hold a worker's slot for ever.
        // (Silence between events is the caller's to judge.)
        let opened = tokio::time::timeout(self.call_timeout, call);
        let result = match tracing::Instrument::instrument(opened, span.clone()).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "{method} opened no stream within {:?}",
                self.call_timeout
            ))),
        };
        let mut stream = grpc_outcome(&span, result)?;
        let (tx, rx) = tokio::sync::mpsc::channel(32);
        // One error ends the stream: the caller judges what to do next. The
        // reader carries the call's span, which lasts as long as the stream.
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                while let Some(item) = stream.next().await {
                    let event = match item {
                        Ok(event) => a2a_pb::pbconv::from_proto_stream_response(&event)
                            .ok_or_else(|| RemoteError::permanent(format!("invalid event from {method}: empty"))),
                        Err(status) => Err(RemoteError::from_grpc(&status)),
                    };
                    let stop = event.is_err();
                    if tx.send(event).await.is_err() || stop {
                        return;
                    }
                }
            },
            span,
        ));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    fn send_request(&self, request: &SendMessageRequest) -> a2a_pb::proto::SendMessageRequest {
        let mut proto = a2a_pb::pbconv::to_proto_send_message_request(request);
        proto.tenant.clone_from(&self.tenant);
        proto
    }

    pub async fn send(&self, request: &SendMessageRequest) -> Result<SendMessageResponse, RemoteError> {
        let request = self.request(self.send_request(request), true);
        let response = self.unary("SendMessage", |mut c| async move { c.send_message(request).await }).await?;
        a2a_pb::pbconv::from_proto_send_message_response(&response)
            .ok_or_else(|| RemoteError::permanent("invalid response to SendMessage: neither task nor message"))
    }

    pub async fn send_streaming(&self, request: &SendMessageRequest) -> Result<Events, RemoteError> {
        let request = self.request(self.send_request(request), false);
        self.events("SendStreamingMessage", self.client.clone().send_streaming_message(request)).await
    }

    pub async fn subscribe(&self, task_id: &str) -> Result<Events, RemoteError> {
        let message = a2a_pb::proto::SubscribeToTaskRequest { id: task_id.into(), tenant: self.tenant.clone() };
        let request = self.request(message, false);
        self.events("SubscribeToTask", self.client.clone().subscribe_to_task(request)).await
    }

    pub async fn get_task(&self, task_id: &str, history: i32) -> Result<Task, RemoteError> {
        let message = a2a_pb::proto::GetTaskRequest {
            id: task_id.into(),
            history_length: Some(history),
            tenant: self.tenant.clone(),
        };
        let request = self.request(message, true);
        let task = self.unary("GetTask", |mut c| async move { c.get_task(request).await }).await?;
        Ok(a2a_pb::pbconv::from_proto_task(&task))
    }

    pub async fn tasks_in_context(&self, context_id: &str, history: i32) -> Result<Vec<Task>, RemoteError> {
        let message = a2a_pb::proto::ListTasksRequest {
            context_id: context_id.into(),
            page_size: Some(10),
            history_length: Some(history),
            include_artifacts: Some(true),
            tenant: self.tenant.clone(),
            ..Default::default()
        };
        let request = self.request(message, true);
        let listed = self.unary("ListTasks", |mut c| async move { c.list_tasks(request).await }).await?;
        Ok(listed.tasks.iter().map(a2a_pb::pbconv::from_proto_task).collect())
    }

    pub async fn cancel(&self, task_id: &str) -> Result<Task, RemoteError> {
        let message =
            a2a_pb::proto::CancelTaskRequest { id: task_id.into(), tenant: self.tenant.clone(), ..Default::default() };
        let request = self.request(message, true);
        let task = self.unary("CancelTask", |mut c| async move { c.cancel_task(request).await }).await?;
        Ok(a2a_pb::pbconv::from_proto_task(&task))
    }

    pub async fn register_push(&self, task_id: &str, url: &str, token: &str) -> Result<(), RemoteError> {
        let config = a2a::TaskPushNotificationConfig {
            url: url.into(),
            id: None,
            task_id: task_id.into(),
            token: Some(token.into()),
            authentication: None,
            tenant: Some(self.tenant.clone()).filter(|t| !t.is_empty()),
        };
        let request = self.request(a2a_pb::pbconv::to_proto_task_push_notification_config(&config), true);
        let method = "CreateTaskPushNotificationConfig";
        self.unary(method, |mut c| async move { c.create_task_push_notification_config(request).await }).await?;
        Ok(())
    }
}

/// Records a gRPC call's status code on its span (and marks a failure),
/// then classifies the failure.
fn grpc_outcome<T>(span: &tracing::Span, result: Result<T, tonic::Status>) -> Result<T, RemoteError> {
    match result {
        Ok(value) => {
            span.record("rpc.grpc.status_code", 0);
            Ok(value)
        }
        Err(status) => {
            span.record("rpc.grpc.status_code", status.code() as i32);
            span.record("otel.status_code", "ERROR");
            Err(RemoteError::from_grpc(&status))
        }
    }
}

/// A client span per gRPC call, by the OpenTelemetry RPC conventions.
fn grpc_span(method: &str, endpoint: &str) -> tracing::Span {
    let url = if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
    let parsed = reqwest::Url::parse(&url).ok();
    let address = parsed.as_ref().and_then(|u| u.host_str().map(str::to_owned));
    let port = parsed.as_ref().and_then(reqwest::Url::port_or_known_default);
    tracing::info_span!(
        "remote call",
        otel.name = %format!("lf.a2a.v1.A2AService/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = "lf.a2a.v1.A2AService",
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = address,
        server.port = port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a::error_code;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn the_code_is_the_error_infos_reason_else_the_statuss() {
        let with = |code: tonic::Code, domain: &str, reason: &str| {
            tonic::Status::with_error_details(code, "x", ErrorDetails::with_error_info(reason, domain, []))
        };
        let domain = a2a::errordetails::PROTOCOL_DOMAIN;
        let cases = [
            (with(tonic::Code::FailedPrecondition, domain, "UNSUPPORTED_OPERATION"), error_code::UNSUPPORTED_OPERATION),
            (with(tonic::Code::FailedPrecondition, domain, "TASK_NOT_CANCELABLE"), error_code::TASK_NOT_CANCELABLE),
            (with(tonic::Code::NotFound, "elsewhere.example", "UNSUPPORTED_OPERATION"), error_code::TASK_NOT_FOUND),
            (tonic::Status::new(tonic::Code::InvalidArgument, "x"), error_code::INVALID_PARAMS),
            (tonic::Status::new(tonic::Code::Unimplemented, "x"), error_code::METHOD_NOT_FOUND),
            (tonic::Status::new(tonic::Code::PermissionDenied, "x"), error_code::INTERNAL_ERROR),
        ];
        for (status, code) in cases {
            assert_eq!(a2a_code(&status), code, "{status:?}");
        }
    }
}
