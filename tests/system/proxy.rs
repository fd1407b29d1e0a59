//! A TCP proxy in front of PostgreSQL that fails the way networks do: it can
//! reset every connection through it (RST, as a NAT timeout or a failover
//! does), silence the connections open now (a half-open socket: nothing
//! passes, nothing closes), cut everything (a partition, where every query
//! just hangs), cut everything just after a client began a transaction, and
//! heal (what was held back then flows, as when a partition ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What the network is doing, as every connection sees it. Resets and
/// silences are counted: a connection is hit by those that came after it
/// opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Fault {
    /// Nothing passes, on open connections or new ones.
    cut: bool,
    /// New connections are closed at once (a server that is down).
    down: bool,
    resets: u32,
    silences: u32,
}

pub(crate) struct Proxy {
    pub(crate) port: u16,
    fault: watch::Sender<Fault>,
    /// Armed by [`Proxy::cut_after_begin`].
    cut_after_begin: Arc<AtomicBool>,
    /// The local ports of its connections to PostgreSQL (PostgreSQL's
    /// `client_port` for them).
    upstream_ports: Arc<std::sync::Mutex<Vec<i32>>>,
}

impl Proxy {
    /// A proxy to the database of `url`; [`Proxy::url`] is the same URL through it.
    pub(crate) async fn start(url: &str) -> Proxy {
        let parsed = reqwest::Url::parse(url).expect("url");
        let upstream = format!("{}:{}", parsed.host_str().unwrap_or("127.0.0.1"), parsed.port().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (fault, watch) = watch::channel(Fault::default());
        let cut_after_begin = Arc::new(AtomicBool::new(false));
        let upstream_ports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let proxy = Proxy {
            port,
            fault: fault.clone(),
            cut_after_begin: cut_after_begin.clone(),
            upstream_ports: upstream_ports.clone(),
        };
        let fault = Arc::new(fault);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = *watch.borrow();
                if born.down {
                    drop(client);
                    continue;
                }
                let (upstream, watch, fault, trigger, ports) =
                    (upstream.clone(), watch.clone(), fault.clone(), cut_after_begin.clone(), upstream_ports.clone());
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let _ = server.set_nodelay(true);
                    if let Ok(local) = server.local_addr() {
                        ports.lock().expect("ports").push(i32::from(local.port()));
                    }
                    carry(client, server, born, watch, fault, trigger).await;
                });
            }
        });
        proxy
    }

    /// `url` with its host and port replaced by this proxy's.
    pub(crate) fn url(&self, url: &str) -> String {
        let mut proxied = reqwest::Url::parse(url).expect("url");
        proxied.set_host(Some("127.0.0.1")).expect("host");
        proxied.set_port(Some(self.port)).expect("port");
        proxied.to_string()
    }

    /// Resets every open connection (new ones still pass).
    pub(crate) fn reset_all(&self) {
        self.fault.send_modify(|f| f.resets += 1);
    }

    /// Down, as a stopped server is: every open connection reset, every
    /// new one closed at once, until [`Proxy::up`].
    pub(crate) fn down(&self) {
        self.fault.send_modify(|f| {
            f.down = true;
            f.resets += 1;
        });
    }

    /// Accepts new connections again after [`Proxy::down`].
    pub(crate) fn up(&self) {
        self.fault.send_modify(|f| f.down = false);
    }

    /// The connections open now pass nothing more and never close (a
    /// half-open socket, a NAT that forgot them); new ones pass.
    pub(crate) fn silence_open(&self) {
        self.fault.send_modify(|f| f.silences += 1);
    }

    /// From now on nothing passes, on open connections or new ones, and
    /// nothing closes.
    pub(crate) fn cut(&self) {
        self.fault.send_modify(|f| f.cut = true);
    }

    /// Cuts everything the moment a statement inside a transaction has run
    /// (the first CommandComplete after a BEGIN, on any connection), before
    /// its answer reaches the client: the transaction holds what that
    /// statement locked, and its session waits for a client that says
    /// nothing more. The held answer is delivered on [`Proxy::heal`].
    pub(crate) fn cut_after_begin(&self) {
        self.cut_after_begin.store(true, Ordering::SeqCst);
    }

    /// The local ports of the connections it made to PostgreSQL.
    pub(crate) fn upstream_ports(&self) -> Vec<i32> {
        self.upstream_ports.lock().expect("ports").clone()
    }

    /// Whether a cut is in force (one armed by `cut_after_begin` included).
    pub(crate) fn is_cut(&self) -> bool {
        self.fault.borrow().cut
    }

    /// Ends a cut (and disarms one not yet sprung): connections held open
    /// pass again, with what was held back.
    pub(crate) fn heal(&self) {
        self.cut_after_begin.store(false, Ordering::SeqCst);
        self.fault.send_modify(|f| f.cut = false);
    }
}

/// Carries one connection both ways until either side closes, or a reset
/// tears it down (with RST, as a NAT timeout or a failover does).
async fn carry(
    mut client: TcpStream,
    mut server: TcpStream,
    born: Fault,
    mut watch: watch::Receiver<Fault>,
    fault: Arc<watch::Sender<Fault>>,
    trigger: Arc<AtomicBool>,
) {
    let was_reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, born, watch.clone(), None);
        let down = pump(server_read, client_write, born, watch.clone(), Some((fault, trigger)));
        let reset = async {
            loop {
                if watch.changed().await.is_err() {
                    return std::future::pending().await;
                }
                if watch.borrow().resets > born.resets {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            () = reset => true,
        }
    };
    if was_reset {
        // Linger zero: closing sends RST.
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    }
}

/// One direction of a connection. Reads only while the network passes
/// bytes, and holds back what it read when a cut begins, so nothing is
/// lost: a heal delivers it all. `cutter`, on the server's side, watches
/// for the moment [`Proxy::cut_after_begin`] waits for.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    born: Fault,
    mut watch: watch::Receiver<Fault>,
    cutter: Option<(Arc<watch::Sender<Fault>>, Arc<AtomicBool>)>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    let mut messages = Backend::default();
    loop {
        let blocked = |f: &Fault| f.cut || f.silences > born.silences;
        while blocked(&watch.borrow()) {
            if watch.changed().await.is_err() {
                return;
            }
        }
        if !held.is_empty() {
            if to.write_all(&held).await.is_err() {
                return;
            }
            held.clear();
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Reading is cancel-safe: nothing was taken; look at the network again.
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some((fault, trigger)) = &cutter
            && messages.statement_ran_in_transaction(&buffer[..n])
            && trigger.swap(false, Ordering::SeqCst)
        {
            fault.send_modify(|f| f.cut = true);
            held.extend_from_slice(&buffer[..n]);
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Just enough of PostgreSQL's backend protocol (type byte, length, body)
/// to see a statement complete inside a transaction.
#[derive(Default)]
struct Backend {
    partial: Vec<u8>,
    in_transaction: bool,
    started: bool,
}

impl Backend {
    /// Feeds the server's bytes; true when they complete a statement run
    /// after a BEGIN (not the BEGIN itself).
    fn statement_ran_in_transaction(&mut self, bytes: &[u8]) -> bool {
        self.partial.extend_from_slice(bytes);
        if !self.started && !self.partial.is_empty() {
            // The answer to an SSLRequest ("N": no TLS) is one bare byte.
            self.started = true;
            if self.partial[0] == b'N' {
                self.partial.remove(0);
            }
        }
        let mut ran = false;
        let mut at = 0;
        while self.partial.len() >= at + 5 {
            let kind = self.partial[at];
            let length = u32::from_be_bytes([
                self.partial[at + 1],
                self.partial[at + 2],
                self.partial[at + 3],
                self.partial[at + 4],
            ]) as usize;
            if self.partial.len() < at + 1 + length {
                break;
            }
            let body = &self.partial[at + 5..at + 1 + length];
            match kind {
                b'C' if body.starts_with(b"BEGIN") => self.in_transaction = true,
                b'C' if self.in_transaction => ran = true,
                b'Z' => self.in_transaction = body.first() != Some(&b'I'),
                _ => {}
            }
            at += 1 + length;
        }
        self.partial.drain(..at);
        ran
    }
}

impl Drop for Proxy {
    /// A test that ends (or fails) during a cut lets the held connections
    /// go, so their sessions end instead of holding locks its cleanup needs.
    fn drop(&mut self) {
        self.heal();
    }
}
