//! A TCP proxy in front of PostgreSQL that fails the way networks do: it can
//! reset every connection through it (RST, as a NAT timeout or a failover
//! does), or cut them (nothing passes any more, nothing is closed: a
//! partition, where every query just hangs).

use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Reset(u32),
    Cut,
    /// The connections open now go silent for good; new ones pass.
    Silence(u32),
}

pub(crate) struct Proxy {
    pub(crate) port: u16,
    fault: watch::Sender<Fault>,
}

impl Proxy {
    /// A proxy to the database of `url`; [`Proxy::url`] is the same URL through it.
    pub(crate) async fn start(url: &str) -> Proxy {
        let parsed = reqwest::Url::parse(url).expect("url");
        let upstream = format!("{}:{}", parsed.host_str().unwrap_or("127.0.0.1"), parsed.port().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (fault, watch) = watch::channel(Fault::None);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut watch = watch.clone();
                watch.mark_unchanged();
                tokio::spawn(async move {
                    if *watch.borrow() == Fault::Cut {
                        // Partitioned: the connection opens and goes nowhere.
                        let _held = client;
                        return std::future::pending::<()>().await;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.changed() => {
                            if matches!(*watch.borrow(), Fault::Cut | Fault::Silence(_)) {
                                // Hold both ends open and pass nothing.
                                std::future::pending::<()>().await;
                            }
                            // Linger zero: closing sends RST.
                            let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                        }
                    }
                });
            }
        });
        Proxy { port, fault }
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
        self.fault.send_modify(|f| {
            *f = match *f {
                Fault::Reset(n) => Fault::Reset(n + 1),
                _ => Fault::Reset(0),
            }
        });
    }

    /// The connections open now pass nothing more and never close (a
    /// half-open socket, a NAT that forgot them); new ones pass.
    pub(crate) fn silence_open(&self) {
        self.fault.send_modify(|f| {
            *f = match *f {
                Fault::Silence(n) => Fault::Silence(n + 1),
                _ => Fault::Silence(0),
            }
        });
    }

    /// From now on nothing passes, on open connections or new ones, and
    /// nothing closes.
    pub(crate) fn cut(&self) {
        self.fault.send_replace(Fault::Cut);
    }
}
