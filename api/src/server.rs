//! The router and the server loop.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::connections::{self, Activity, Admission, ConnectionLimits, Tracking};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{admin, compat_rest, health, jsonrpc, remote_push, rest};

async fn card(State(state): State<AppState>, headers: HeaderMap) -> Response {
    // The plans come from the same one-second cache routing reads.
    let doc = match state.handler.plans().await {
        Ok(plans) => state.card.for_plans(plans),
        Err(_) => state.card.last(),
    };
    doc.respond(&headers)
}

async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("switchyard_streams_active").set(state.handler.stream_subscribers() as f64);
    match state.metrics {
        Some(handle) => {
            let stores = state.stores.all().map(|(name, store)| (name.to_owned(), store.clone())).collect();
            crate::metrics::render(State(crate::metrics::MetricsState { stores, handle })).await
        }
        None => crate::metrics::disabled().await,
    }
}

/// One server span per request, continuing the caller's W3C trace, named
/// and attributed by the OpenTelemetry HTTP server conventions (`{method}
/// {route}`); the JSON-RPC method and the task it touched are added by the
/// handlers. Health and metrics scrapes are not traced: they would drown the
/// rest.
async fn trace_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let carrier = switchyard_engine::trace::from_headers(|h| request.headers().get(h).and_then(|v| v.to_str().ok()));
    let method = request.method().clone();
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_owned());
    let name = route.as_deref().map_or_else(|| method.to_string(), |r| format!("{method} {r}"));
    let host = request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let (address, port) = split_host(host);
    let span = tracing::info_span!(
        "a2a request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route,
        url.path = %path,
        url.scheme = "http",
        server.address = address,
        server.port = port,
        network.protocol.version = ?request.version(),
        rpc.system = tracing::field::Empty,
        rpc.method = tracing::field::Empty,
        a2a.task.id = tracing::field::Empty,
        a2a.context.id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    switchyard_engine::trace::continue_from(&span, Some(&carrier));
    switchyard_engine::trace::record_trace_id(&span);
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// Authenticates every A2A request before it is read, then takes it from
/// the principal's rate budget; the principal goes on in the request's
/// extensions. Refusals are answered in the binding's own error shape.
async fn authenticate(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let json_rpc = request.uri().path() == "/";
    let refuse = |e: ApiError| {
        let body = if json_rpc {
            serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": e.to_jsonrpc() })
        } else {
            e.to_rest()
        };
        e.respond_with(&body)
    };
    let principal: Principal = match state.auth.authenticate(request.headers()).await {
        Ok(principal) => principal,
        Err(e) => {
            if matches!(e, ApiError::Unauthenticated(_)) {
                tracing::warn!(target: "switchyard::audit", action = "auth.refused", reason = %e, path = %request.uri().path());
            }
            return refuse(e);
        }
    };
    if let Err(e) = state.auth.admit(&principal) {
        return refuse(e);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `host[:port]` from a Host header.
fn split_host(host: &str) -> (Option<&str>, Option<u16>) {
    if host.is_empty() {
        return (None, None);
    }
    // An IPv6 literal without a port ("[::1]") does not parse as one.
    match host.rsplit_once(':').map(|(address, port)| (address, port.parse::<u16>())) {
        Some((address, Ok(port))) => (Some(address), Some(port)),
        _ => (Some(host), None),
    }
}

/// The whole HTTP surface, ready for `oneshot` in tests or a listener in `serve`.
pub fn app(state: AppState) -> Router {
    // The A2A operations, each authenticated (the card, health, metrics and
    // the admin API are not A2A operations; the admin API checks its own).
    let a2a = Router::new()
        .route("/", post(jsonrpc::endpoint))
        .merge(rest::routes())
        .nest("/{tenant}", rest::routes())
        .route_service("/v1/{*rest}", v1_or_v03(state.clone()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate));
    let console = crate::console::routes(state.handler.config().console.enabled);
    Router::new()
        .merge(a2a)
        .merge(console)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/agent-card.json", get(card))
        .route("/.well-known/agent.json", get(card))
        .route("/admin/agents", get(admin::list).post(admin::add))
        .route("/admin/agents/{name}", axum::routing::delete(admin::remove))
        .route("/_switchyard/push/{task}", post(remote_push::receive))
        .route("/admin/plans", get(admin::plans_list))
        .route("/admin/plans/{name}", axum::routing::put(admin::plans_put).delete(admin::plans_remove))
        .layer(axum::middleware::from_fn(trace_request))
        .fallback(|| async {
            let e = ApiError::MethodNotFound("no such endpoint".into());
            (e.classify().http, axum::Json(e.to_rest()))
        })
        .with_state(state)
        .layer(axum::middleware::from_fn(clean_uri))
}

/// `/v1/…`: v0.3's HTTP+JSON binding, or, for a request that says it
/// speaks 1.0, the v1.0 binding, which refuses `v1` as a tenant name with
/// a message that says so (see [`compat_rest`]).
fn v1_or_v03(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    use tower::ServiceExt;
    let tenant_v1: Router = Router::new().nest("/{tenant}", rest::routes()).with_state(state.clone());
    let v03: Router = compat_rest::routes().with_state(state);
    tower::service_fn(move |request: axum::extract::Request| {
        let router = match compat_rest::v1_or_v03(request.headers(), request.uri().query()) {
            crate::version::Version::V1 => tenant_v1.clone(),
            crate::version::Version::V03 => v03.clone(),
        };
        router.oneshot(request)
    })
}

/// Refuses a request whose path or query holds bytes no handler should
/// see (see [`crate::validate::uri`]), whatever route it was meant for.
async fn clean_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::response::IntoResponse;
    match crate::validate::uri(request.uri()) {
        Ok(()) => next.run(request).await,
        Err(e) => (e.classify().http, axum::Json(e.to_rest())).into_response(),
    }
}

/// A listener whose accepted sockets set `TCP_NODELAY`: `axum::serve`
/// leaves it off, and a keep-alive connection then stalls each small write
/// (an SSE event, a JSON-RPC answer) on Nagle plus the peer's delayed ACK.
pub fn no_delay(listener: TcpListener) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    })
}

/// Serves until `shutdown` fires, then stops accepting and lets open
/// requests finish for up to `drain_timeout` (open streams are cut then).
/// Connections are held to `admission`'s limits (see [`crate::connections`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    admission: Admission,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let limits = admission.limits();
    let app = app(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, a connection reset before accept:
                // this connection is lost, the server is not.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(place) = admission.admit() else {
            tokio::spawn(connections::refuse_http(stream));
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let (app, builder, shutdown) = (app.clone(), builder.clone(), shutdown.clone());
        connections.spawn(async move {
            let _place = place;
            serve_connection(stream, app, &builder, limits, shutdown).await;
        });
    }
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(?drain_timeout, "requests still open after the drain timeout; closing them");
        }
    }
    Ok(())
}

/// How long an idle connection asked to close may take to do so.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One connection, from its first byte to its end: closed if it sends
/// nothing within the header timeout, gracefully when it has been idle for
/// the idle timeout or the server stops.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    if !connections::first_byte(&stream, limits.header_timeout).await {
        return;
    }
    let activity = Activity::new();
    let tracked = Tracking::new(app, activity.clone());
    let service = TowerToHyperService::new(tracked);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    // An idle connection is asked to close (HTTP/2: GOAWAY), and dropped if
    // the peer does not let it (an HTTP/2 peer that never acknowledges).
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        let abandon = async {
            match give_up {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(limits.idle_timeout), if !closing => {
                closing = true;
                give_up = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                connection.as_mut().graceful_shutdown();
            }
            () = abandon => return,
        }
    }
}
