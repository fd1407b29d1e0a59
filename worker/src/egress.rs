//! The agent egress guard in the HTTP client: every name a remote agent's
//! URL (or its card's interface URL) resolves to is checked before the
//! connection is made, so an allowed-looking name that resolves inward is
//! refused, and redirects are never followed. Literal addresses skip DNS,
//! so callers judge URLs with [`Egress::check_url`] before each use; it reads
//! them with the client's own URL parser, so the address it judges is the
//! one the client connects to.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use switchyard_engine::egress::{Egress, Refused};

/// A resolver that drops the addresses the guard refuses; a name with
/// none left fails with the guard's reason.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    egress: Arc<Egress>,
}

impl GuardedResolver {
    pub fn new(egress: Arc<Egress>) -> Self {
        GuardedResolver { egress }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.egress.clone();
        Box::pin(async move {
            let allowed = resolve_checked(&egress, name.as_str(), 0).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest a name may take to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The addresses `host` resolves to that the guard allows; none left is
/// the guard's refusal (an allow-listed name passes whatever it resolves to).
pub async fn resolve_checked(egress: &Egress, host: &str, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // The system resolver's own retries can take far longer than any caller
    // would wait: every lookup has this deadline, whoever asks.
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)));
    let resolved: Vec<SocketAddr> =
        lookup.await.map_err(|_| format!("{host} did not resolve within {RESOLVE_TIMEOUT:?}"))??.collect();
    if egress.allows_host(host) {
        return Ok(resolved);
    }
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match egress.check_ip(host, addr.ip()) {
            Ok(()) => true,
            Err(refused) => {
                refusal.get_or_insert(refused);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), refusal) {
        (true, Some(refused)) => Err(Box::new(refused)),
        _ => Ok(allowed),
    }
}

/// Connects gRPC channels only to addresses the guard allows, resolving
/// the name itself so the checked address is the one connected to.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    egress: Arc<Egress>,
}

impl tower::Service<tonic::transport::Uri> for GuardedConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::transport::Uri) -> Self::Future {
        let egress = self.egress.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("the gRPC address has no host")?.to_owned();
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let mut failure: Option<BoxError> = None;
            for addr in resolve_checked(&egress, &host, port).await? {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(hyper_util::rt::TokioIo::new(stream));
                    }
                    Err(e) => failure = Some(Box::new(e)),
                }
            }
            Err(failure.unwrap_or_else(|| format!("{host} resolves to no address").into()))
        })
    }
}

/// A gRPC channel to `address` through the guard: `host:port` or
/// `http://host:port` in cleartext, `https://host:port` over TLS verified
/// against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace
/// them), as HTTP agents are. Connections are made lazily, on first use.
pub fn grpc_channel(
    address: &str,
    egress: &Arc<Egress>,
    connect_timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, String> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| format!("{address} is not a gRPC address: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30));
    if address.starts_with("https://") {
        let tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{address}: {e}"))?;
    }
    Ok(endpoint.connect_with_connector_lazy(GuardedConnector { egress: egress.clone() }))
}

/// The guard's refusal, if it is what stopped this request.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

/// What a client or a log line may be told about a failed request: its
/// kind, and the kind of I/O error under it if any, built from closed sets
/// of words. Never reqwest's own text, which ends with the URL (query-string
/// tokens included), nor a resolver's, which names hosts.
pub fn reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "answered with a redirect, which is not followed"
    } else if e.is_body() || e.is_decode() {
        "the response broke off or could not be read"
    } else if e.is_request() {
        "the request could not be sent"
    } else {
        "the request failed"
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return format!("{kind} ({})", io.kind());
        }
        current = error.source();
    }
    kind.to_owned()
}

/// An HTTP client for remote agents: guarded resolution, no redirects, and
/// no proxy from the environment (`HTTP_PROXY` would make every request a
/// connection to the proxy, which is all the resolver would ever check).
/// (No fallback to a default client on failure: that one would be unguarded.)
pub fn client(builder: reqwest::ClientBuilder, egress: &Arc<Egress>) -> Result<reqwest::Client, reqwest::Error> {
    builder
        .dns_resolver(GuardedResolver::new(egress.clone()))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A server on 127.0.0.1 and a guard that allows only 127.0.0.2: no
    /// spelling of 127.0.0.1 gets a card fetched from it, and no connection
    /// reaches it at all.
    #[tokio::test]
    async fn no_spelling_of_a_refused_address_reaches_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let egress = Arc::new(Egress::for_agents(&["127.0.0.2".into()]).expect("valid"));
        for host in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "017700000001",
            "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
            "127\u{3002}0\u{3002}0\u{3002}1",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
            "localhost",
        ] {
            let url = format!("http://{host}:{port}/");
            let refused = crate::delegate::fetch_card(&url, &egress, None, None).await.expect_err(&url);
            assert!(refused.contains("loopback") || refused.contains("this machine"), "{url}: {refused}");
        }
        // The gRPC connector resolves what it is given itself.
        let mut connector = GuardedConnector { egress: egress.clone() };
        for host in ["2130706433", "127.1", "0x7f.0.0.1"] {
            let uri: tonic::transport::Uri = format!("http://{host}:{port}").parse().expect("uri");
            assert!(tower::Service::call(&mut connector, uri).await.is_err(), "{host}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing reached the refused address");
    }
}
