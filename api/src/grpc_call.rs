//! One gRPC call's span and status, shared by the v1.0 service
//! ([`crate::grpc`]) and v0.3's ([`crate::compat_grpc`]).

use tonic::{Request, Response, Status};

use crate::error::ApiError;

/// One server span per call, by the OpenTelemetry RPC conventions,
/// continuing the caller's trace from its `traceparent` metadata.
pub(crate) fn span_for<T>(request: &Request<T>, service: &str, method: &str) -> tracing::Span {
    let metadata = request.metadata();
    let carrier = switchyard_engine::trace::from_headers(|h| metadata.get(h).and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!(
        "a2a request",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        a2a.task.id = tracing::field::Empty,
        a2a.context.id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    switchyard_engine::trace::continue_from(&span, Some(&carrier));
    switchyard_engine::trace::record_trace_id(&span);
    span
}

/// Runs one call inside its span and renders its error as a status.
pub(crate) async fn traced<T>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    match result {
        Ok(value) => {
            span.record("rpc.grpc.status_code", 0);
            Ok(Response::new(value))
        }
        Err(e) => {
            let status = e.to_grpc();
            span.record("rpc.grpc.status_code", status.code() as i32);
            if e.classify().http.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            Err(status)
        }
    }
}
