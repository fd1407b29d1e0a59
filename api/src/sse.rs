//! Server-sent events for both bindings: one A2A event per SSE event, the
//! log sequence number as its `id`, keep-alive comments, no buffering.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::events::StreamItem;

/// Renders a task stream; `frame` turns each item into the `data:` JSON.
pub fn respond<F>(items: ReceiverStream<StreamItem>, frame: F) -> Response
where
    F: Fn(StreamItem) -> Value + Send + Sync + 'static,
{
    let events = items.map(move |item| {
        let seq = item.seq;
        let data = frame(item).to_string();
        let event = Event::default().data(data);
        Ok::<_, Infallible>(if seq > 0 { event.id(seq.to_string()) } else { event })
    });
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells reverse proxies (nginx) not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The sequence number an SSE client last saw, from `Last-Event-ID`.
pub fn last_event_id(headers: &axum::http::HeaderMap) -> Option<i64> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).filter(|n| *n >= 0)
}
