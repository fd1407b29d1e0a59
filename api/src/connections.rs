//! What a connection may hold: a place among a capped number, a deadline
//! for its first byte, and an idle limit once it has served.
//!
//! Every connection costs a descriptor and memory whether or not it ever
//! sends a request. So both ports (HTTP and gRPC) share one cap per process
//! and refuse past it at once (HTTP: a 503 written and the socket closed;
//! gRPC: the socket closed), a connection that sends nothing within the
//! header timeout is closed before any protocol is chosen for it (HTTP/1,
//! HTTP/2 and gRPC alike), and an HTTP connection with no request in flight
//! for the idle timeout is closed gracefully.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits every accepted connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accepting a connection to its first byte, and (HTTP/1) to the
    /// end of each request's headers.
    pub header_timeout: Duration,
    /// How long an HTTP connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Connections open at once in this process, both ports together.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The places for connections, shared by the ports of one process.
#[derive(Debug, Clone)]
pub struct Admission {
    places: Arc<Semaphore>,
    limits: ConnectionLimits,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Admission {
        Admission { places: Arc::new(Semaphore::new(limits.max_connections.max(1))), limits }
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// A place for a new connection, or `None` when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.places.clone().try_acquire_owned().ok();
        if permit.is_none() {
            metrics::counter!("switchyard_connections_refused_total").increment(1);
        }
        permit
    }
}

/// Whether the peer sent its first byte within `timeout` (and had not
/// closed); a connection that says nothing is dropped before any protocol
/// machinery is spent on it.
pub async fn first_byte(stream: &TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0)
}

/// Refuses an HTTP connection past the cap: a 503 the client can read and
/// retry after, then the socket closed. Bounded: a peer that does not read
/// does not hold the acceptor.
pub async fn refuse_http(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
Content-Type: application/json\r\nContent-Length: 75\r\n\r\n\
{\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\",\"message\":\"too many connections\"}}";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// What one connection is doing: requests in flight (a response counts
/// until its body has been sent or dropped, so a long SSE stream is not
/// idle) and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { in_flight: AtomicUsize::new(0), last: std::sync::Mutex::new(Instant::now()) })
    }

    /// Marks a request begun; the guard marks it ended when dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When the connection has been idle for `limit`, or `None` while a
    /// request is in flight.
    fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) + limit)
    }

    /// Resolves once the connection has had no request in flight for
    /// `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            match self.idle_deadline(limit) {
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => tokio::time::sleep(limit.min(Duration::from_secs(1))).await,
            }
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it is done.
#[derive(Debug)]
pub struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub fn body(inner: Body, in_flight: InFlight) -> Body {
        Body::new(Tracked { inner, _in_flight: in_flight })
    }
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A service counting each request in flight on its connection until the
/// response body is done.
#[derive(Debug, Clone)]
pub struct Tracking {
    app: axum::Router,
    activity: Arc<Activity>,
}

impl Tracking {
    pub fn new(app: axum::Router, activity: Arc<Activity>) -> Tracking {
        Tracking { app, activity }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for Tracking
where
    B: HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        use tower::ServiceExt;
        let in_flight = self.activity.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            Ok(response.map(|body| Tracked::body(body, in_flight)))
        })
    }
}
