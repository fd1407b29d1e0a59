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
use serde_json::Value;
use tokio::time::MissedTickBehavior;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::events::StreamItem;

/// How often an idle stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_LINE: &[u8] = b": keep-alive\n";

/// One SSE event: its `id`, then its data, a `data:` line per line.
fn render(seq: i64, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if seq > 0 {
        out.push_str(&format!("id: {seq}\n"));
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// Renders a task stream; `frame` turns each item into the `data:` JSON.
pub fn respond<F>(mut items: ReceiverStream<StreamItem>, frame: F) -> Response
where
    F: Fn(StreamItem) -> Value + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let bytes = tokio::select! {
                item = items.next() => match item {
                    Some(item) => {
                        let seq = item.seq;
                        render(seq, &frame(item).to_string())
                    }
                    None => return,
                },
                _ = alive.tick() => Bytes::from_static(KEEP_ALIVE_LINE),
                () = tx.closed() => return,
            };
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
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
    fn an_event_is_its_id_and_one_data_line_per_line() {
        assert_eq!(render(7, "{\"a\":\n1}"), Bytes::from("id: 7\ndata: {\"a\":\ndata: 1}\n\n"));
        assert_eq!(render(0, "x"), Bytes::from("data: x\n\n"));
    }
}
