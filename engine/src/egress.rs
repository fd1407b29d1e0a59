//! Where Switchyard may connect: the SSRF guard.
//!
//! A webhook URL is the client's choice, and an agent's URL (or the
//! interface URL inside whatever card it serves) is whatever the admin API
//! was given, so neither may point Switchyard at its own network: loopback,
//! private, link-local (the cloud metadata address among them), carrier-grade
//! NAT, multicast, unspecified and other special addresses are refused,
//! unless the operator's allow-list (config file `[push] allow` for
//! webhooks, `[egress] allow` for agents: CIDRs, addresses and host names)
//! permits them. The check runs on the URL when it is given, and again on
//! every address its host resolves to when it is used (a name may resolve
//! elsewhere later); the connection then goes to an address it checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The operator's exceptions, for one kind of destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
    /// What the destinations are ("webhook", "agent"), for messages.
    what: &'static str,
    /// Where the operator lists exceptions, for messages.
    section: &'static str,
}

impl Default for Egress {
    /// The webhook guard with no exceptions.
    fn default() -> Self {
        Egress { nets: Vec::new(), hosts: Vec::new(), what: "webhook", section: "[push] allow" }
    }
}

/// Why a webhook destination is refused; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Egress {
    /// The allow-list from `[push] allow`: each entry a CIDR (`10.1.0.0/16`),
    /// a single address, or a host name.
    pub fn new(allow: &[String]) -> Result<Egress, String> {
        Egress::default().allowing(allow)
    }

    /// The guard for remote agents, with no exceptions.
    pub fn agents() -> Egress {
        Egress { what: "agent", section: "[egress] allow", ..Egress::default() }
    }

    /// The guard for remote agents, with the allow-list from `[egress] allow`.
    pub fn for_agents(allow: &[String]) -> Result<Egress, String> {
        Egress::agents().allowing(allow)
    }

    fn allowing(mut self, allow: &[String]) -> Result<Egress, String> {
        let section = self.section;
        let egress = &mut self;
        for entry in allow {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                egress.nets.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                egress.nets.push(IpNet::from(ip));
            } else if valid_host(entry) {
                egress.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("{section}: {entry:?} is neither a CIDR, an address nor a host name"));
            }
        }
        Ok(self)
    }

    /// Checks a webhook URL as written: its scheme, its form, and its host
    /// when that is an address or a name everyone knows is local.
    pub fn check_url(&self, url: &str) -> Result<Target, Refused> {
        let target = Target::parse(url).map_err(|e| Refused(format!("{} URL: {e}", self.what)))?;
        if self.hosts.contains(&target.host) {
            return Ok(target);
        }
        if let Ok(ip) = target.host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            self.check_ip(&target.host, ip)?;
        } else if target.host == "localhost" || target.host.ends_with(".localhost") {
            return Err(Refused(format!("{} host {} is this machine", self.what, target.host)));
        }
        Ok(target)
    }

    /// Whether a name the allow-list permits outright (its addresses are
    /// then not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks one address a webhook host resolved to.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            Some(class) => Err(Refused(format!(
                "{} host {host} is {ip}, a {class} address; an operator may allow it in {}",
                self.what, self.section
            ))),
            None => Ok(()),
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The class of address a webhook may not reach, if it is one.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if let Some(v4) = ip.to_ipv4() {
        // NAT64 and the other embeddings reach IPv4 space: judge that address.
        forbidden_v4(v4).filter(|_| first == 0 || first == 0x64)
    } else {
        None
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        })
}

/// A destination URL taken apart (this crate has no HTTP client to do it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Lower-case; an IPv6 literal keeps its brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses an absolute http(s) URL with no credentials in it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must be absolute http or https".into());
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("may not contain spaces or control characters".into());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err("may not carry credentials; configure them separately".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') && !port.contains(']') => {
                let port = port.parse::<u16>().map_err(|_| format!("{port:?} is not a port"))?;
                (host, port)
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err("needs a host".into());
        }
        Ok(Target { https, host: host.to_ascii_lowercase(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inward_class_is_refused_and_public_addresses_pass() {
        let guard = Egress::default();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9000/",
            "http://api.localhost/",
        ] {
            assert!(guard.check_url(url).is_err(), "{url} must be refused");
        }
        assert!(guard.check_url("https://93.184.216.34/hook").is_ok());
        assert!(guard.check_url("https://hooks.example.com/x").is_ok(), "names are checked once resolved");
        let refused = guard.check_url("http://169.254.169.254/").expect_err("metadata");
        assert!(refused.0.contains("link-local"), "{refused}");
    }

    #[test]
    fn the_allow_list_takes_cidrs_addresses_and_names() {
        let guard =
            Egress::new(&["127.0.0.0/8".into(), "10.0.0.5".into(), "hooks.internal.example".into()]).expect("valid");
        assert!(guard.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(guard.check_url("http://10.0.0.5/x").is_ok());
        assert!(guard.check_url("http://10.0.0.6/x").is_err());
        assert!(guard.allows_host("HOOKS.internal.example"));
        assert!(guard.check_ip("a", "::1".parse().expect("ip")).is_err());
        assert!(Egress::new(&["not a host!".into()]).is_err());
    }

    #[test]
    fn urls_with_credentials_or_odd_schemes_are_refused() {
        let guard = Egress::default();
        assert!(guard.check_url("ftp://example.com/").is_err());
        assert!(guard.check_url("http://user:pass@example.com/").is_err());
        assert!(guard.check_url("http://example.com/a b").is_err());
        assert!(guard.check_url("http://example.com\r\n/").is_err());
        let t = guard.check_url("https://Example.com:8443/p?q").expect("fine");
        assert_eq!((t.https, t.host.as_str(), t.port), (true, "example.com", 8443));
        let t = guard.check_url("http://[2001:db8::1]:81/").expect("v6");
        assert_eq!((t.host.as_str(), t.port), ("[2001:db8::1]", 81));
    }
}
