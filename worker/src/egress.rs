//! The agent egress guard in the HTTP client: every name a remote agent's
//! URL (or its card's interface URL) resolves to is checked before the
//! connection is made, so an allowed-looking name that resolves inward is
//! refused, and redirects are never followed. Literal addresses skip DNS,
//! so callers judge URLs with [`Egress::check_url`] before each use.

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
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if egress.allows_host(&host) {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match egress.check_ip(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(refused)) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
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

/// An HTTP client for remote agents: guarded resolution, no redirects.
/// (No fallback to a default client on failure: that one would be unguarded.)
pub fn client(builder: reqwest::ClientBuilder, egress: &Arc<Egress>) -> Result<reqwest::Client, reqwest::Error> {
    builder.dns_resolver(GuardedResolver::new(egress.clone())).redirect(reqwest::redirect::Policy::none()).build()
}
