//! W3C trace context stored with a task, so work done later, in another
//! process, joins the trace of the request that created it.
//!
//! The stored form is a JSON object of the propagation headers
//! (`traceparent`, `tracestate`, `baggage`), written and read with the
//! global propagator the binary installs. When OpenTelemetry is not
//! configured, spans have no context of their own and the client's headers
//! are stored and forwarded as they came.

use std::collections::HashMap;

use opentelemetry::global::get_text_map_propagator;
use opentelemetry::trace::TraceContextExt;
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The propagation headers this module reads and writes.
pub const HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

/// The propagation headers of an incoming request, in the stored form;
/// `header` looks one up by its (lower-case) name.
pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Value {
    Value::Object(HEADERS.iter().filter_map(|h| header(h).map(|v| ((*h).to_owned(), v.into()))).collect())
}

/// The current span's context as stored headers, or `None` when the span
/// carries no valid context (OpenTelemetry not configured).
pub fn current() -> Option<Value> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    if carrier.is_empty() {
        return None;
    }
    Some(Value::Object(carrier.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

/// Makes `span` a child of the stored context, if there is one.
pub fn continue_from(span: &tracing::Span, stored: Option<&Value>) {
    let Some(carrier) = stored.map(to_carrier).filter(|c| !c.is_empty()) else { return };
    let parent = get_text_map_propagator(|p| p.extract(&carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Headers for an outbound call: the current span's context when there is
/// one, else the stored context as it came.
pub fn outbound(stored: Option<&Value>) -> Vec<(String, String)> {
    let source = current();
    let carrier = source.as_ref().or(stored).map(to_carrier).unwrap_or_default();
    HEADERS.iter().filter_map(|h| carrier.get(*h).map(|v| ((*h).to_owned(), v.clone()))).collect()
}

fn to_carrier(value: &Value) -> HashMap<String, String> {
    value
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
        .unwrap_or_default()
}

/// Records the span's trace id in its `trace_id` field, so structured logs
/// written inside it carry the id an operator can look the trace up by.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}
