//! Server-sent events for both bindings: one A2A event per SSE event, the
//! log sequence number as its `id`, keep-alive comments, no buffering.
//!
//! Written by hand rather than with axum's `Sse`, for the keep-alive: a
//! comment line alone (`: keep-alive`), never followed by a blank line of
//! its own, so it can never form an (empty) event. Some clients dispatch an
//! empty event after an `id:` when a comment block ends with a blank line.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::time::MissedTickBehavior;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{IntervalStream, ReceiverStream};

use crate::events::StreamItem;

/// How often an idle stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_LINE: &[u8] = b": keep-alive\n";

/// One SSE event: its `id`, then its data on one `data:` line — compact
/// JSON has no line break (serde escapes those inside strings) — written
/// straight into the frame's buffer.
fn render(seq: i64, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 32);
    if seq > 0 {
        out.extend_from_slice(format!("id: {seq}\n").as_bytes());
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Renders a task stream; `frame` turns each item into the `data:` JSON
/// (compact, so one line).
/// The body is the stream itself, keep-alives merged in: no task or channel
/// of its own between the producer and the connection.
pub fn respond<F>(items: ReceiverStream<StreamItem>, frame: F) -> Response
where
    F: Fn(StreamItem) -> Bytes + Send + Sync + 'static,
{
    let mut alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let alive = IntervalStream::new(alive).map(|_| Some(Bytes::from_static(KEEP_ALIVE_LINE)));
    // `None` after the last event ends the body (the keep-alives never end).
    let events = items.map(move |item| Some(render(item.seq, &frame(item)))).chain(tokio_stream::once(None));
    let body = Body::from_stream(events.merge(alive).map_while(|bytes| bytes.map(Ok::<_, Infallible>)));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells reverse proxies (nginx) not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The sequence number an SSE client last saw, from `Last-Event-ID`.
pub fn last_event_id(headers: &axum::http::HeaderMap) -> Option<i64> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).filter(|n| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_its_id_and_one_data_line() {
        let data = serde_json::to_vec(&serde_json::json!({"text": "two\nlines"})).expect("serializes");
        assert_eq!(render(7, &data), Bytes::from("id: 7\ndata: {\"text\":\"two\\nlines\"}\n\n"));
        assert_eq!(render(0, b"\"x\""), Bytes::from("data: \"x\"\n\n"));
    }
}
