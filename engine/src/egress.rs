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
//!
//! A URL is read by the WHATWG URL parser the HTTP client itself uses (the
//! `url` crate, reqwest's), so the guard judges the host the client will
//! connect to: `http://2130706433/`, `http://0x7f.1/`, `http://127。0。0。1/`,
//! `http://127.0.0.1./` and `http://\\127.0.0.1/` are all 127.0.0.1 to both.

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

    /// Checks a destination URL as the client will read it: its scheme, its
    /// form, and its host when that is an address (in any spelling the
    /// client accepts) or a name everyone knows is local. A name is checked
    /// again, address by address, when it is resolved for use.
    pub fn check_url(&self, url: &str) -> Result<Target, Refused> {
        let target = Target::parse(url).map_err(|e| Refused(format!("{} URL: {e}", self.what)))?;
        if let Some(ip) = target.ip {
            self.check_ip(&target.host, ip)?;
        } else if self.allows_host(&target.host) {
            return Ok(target);
        } else if let name = target.host.trim_end_matches('.')
            && (name == "localhost" || name.ends_with(".localhost"))
        {
            return Err(Refused(format!("{} host {} is this machine", self.what, target.host)));
        }
        Ok(target)
    }

    /// Whether a name the allow-list permits outright (its addresses are
    /// then not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
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

/// A URL as a record or a log line may show it: scheme, host, port and
/// path; never credentials, a query or a fragment, where tokens travel.
pub fn redacted(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let hidden = url.query().is_some() || url.fragment().is_some();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            if hidden { format!("{url}?…") } else { url.to_string() }
        }
        Err(_) => "(not a URL)".to_owned(),
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

/// A destination URL taken apart by the parser the HTTP client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// As the parser normalised it: lower-case, internationalised names in
    /// ASCII, an address in its canonical form (an IPv6 one in brackets).
    pub host: String,
    /// The address the client will connect to when the host is one; `None`
    /// for a name, which is resolved (and checked) when used.
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Target {
    /// Parses an absolute http(s) URL with no credentials in it.
    pub fn parse(raw: &str) -> Result<Target, String> {
        // The parser would silently drop tabs and newlines and trim spaces;
        // a URL carrying them is refused instead.
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("may not contain spaces or control characters".into());
        }
        // An IPv6 address outside brackets reads as a host and a port to
        // any parser; say what is wrong rather than "invalid port".
        let authority = raw.split_once("://").map_or("", |(_, rest)| rest);
        let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if !host_port.starts_with('[') && host_port.matches(':').count() > 1 {
            return Err(format!(
                "{host_port:?} looks like an IPv6 address: write it in brackets, as http://[{host_port}]/ \
                 (with a port: http://[ADDRESS]:PORT/)"
            ));
        }
        let url = url::Url::parse(raw).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => "must be absolute http or https".to_owned(),
            e => format!("is not a valid URL: {e}"),
        })?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err("must be absolute http or https".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("may not carry credentials; configure them separately".into());
        }
        let (host, ip) = match url.host() {
            Some(url::Host::Domain(name)) => (name.to_ascii_lowercase(), None),
            Some(url::Host::Ipv4(v4)) => (v4.to_string(), Some(IpAddr::V4(v4))),
            Some(url::Host::Ipv6(v6)) => (format!("[{v6}]"), Some(IpAddr::V6(v6))),
            None => return Err("needs a host".into()),
        };
        if host.is_empty() {
            return Err("needs a host".into());
        }
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        Ok(Target { https, host, ip, port })
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
        let t = guard.check_url("http://[2001:db8::1]/").expect("v6 without a port");
        assert_eq!((t.host.as_str(), t.port), ("[2001:db8::1]", 80));
        let bare = guard.check_url("http://2001:db8::1/").expect_err("brackets");
        assert!(bare.0.contains("in brackets"), "{bare}");
    }

    /// The spellings of 127.0.0.1 that walked around the guard when it
    /// parsed URLs its own way, each refused now with only 127.0.0.2 allowed.
    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        let guard = Egress::new(&["127.0.0.2".into()]).expect("valid");
        for host in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "017700000001",
            "0",
            "\\127.0.0.1",
            "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
            "127\u{3002}0\u{3002}0\u{3002}1",
            "127.0.0.1.",
            "0x7f.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::127.0.0.1]",
            "localhost.",
        ] {
            let url = format!("http://{host}:9/x");
            assert!(guard.check_url(&url).is_err(), "{url} must be refused");
        }
        // `\` is a path separator in http URLs: the host ends before it.
        let refused = guard.check_url("http://127.0.0.1\\.example.com/").expect_err("loopback");
        assert!(refused.0.contains("loopback"), "{refused}");
        let refused = guard.check_url("http://2852039166/latest").expect_err("metadata");
        assert!(refused.0.contains("169.254.169.254"), "{refused}");
        assert!(guard.check_url("http://127.0.0.2/").is_ok());
        assert!(guard.check_url("http://[fe80::1%25eth0]/").is_err(), "zone ids are not URLs");
    }

    /// One IPv4 address written in one of the ways the WHATWG parser
    /// accepts: split into 1 to 4 parts, each in decimal, octal or hex,
    /// with odd dots, full-width digits and a trailing dot.
    fn spelling(ip: u32, parts: usize, radix: &[u8], dots: &[char], wide: bool, trailing: bool) -> String {
        let octets = ip.to_be_bytes();
        let mut numbers: Vec<u64> = octets[..parts - 1].iter().map(|&o| u64::from(o)).collect();
        let rest = octets[parts - 1..].iter().fold(0u64, |acc, &o| acc << 8 | u64::from(o));
        numbers.push(rest);
        let mut host = String::new();
        for (i, n) in numbers.iter().enumerate() {
            if i > 0 {
                host.push(dots[i % dots.len()]);
            }
            host.push_str(&match radix[i % radix.len()] % 3 {
                0 => n.to_string(),
                1 => format!("0{n:o}"),
                _ => format!("0x{n:X}"),
            });
        }
        if trailing {
            host.push('.');
        }
        if wide {
            // Full-width forms, which the parser maps to ASCII first.
            host = host
                .chars()
                .map(|c| match c {
                    '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xff10).unwrap_or(c),
                    'x' | 'X' => '\u{ff58}',
                    c => c,
                })
                .collect();
        }
        host
    }

    proptest::proptest! {
        /// The guard and the client's parser agree on the address for every
        /// generated spelling, and the guard judges that address.
        #[test]
        fn the_guard_judges_the_address_the_client_reads(
            ip in proptest::prop_oneof![
                proptest::strategy::Just(0x7f00_0001u32),
                proptest::strategy::Just(0xa9fe_a9feu32),
                proptest::strategy::Just(0x0a00_0001u32),
                proptest::num::u32::ANY,
            ],
            parts in 1usize..=4,
            radix in proptest::collection::vec(proptest::num::u8::ANY, 4),
            dots in proptest::collection::vec(proptest::sample::select(vec!['.', '\u{3002}', '\u{ff0e}', '\u{ff61}']), 3),
            wide: bool,
            trailing: bool,
        ) {
            let url = format!("http://{}/x", spelling(ip, parts, &radix, &dots, wide, trailing));
            let client = url::Url::parse(&url).ok().and_then(|u| match u.host() {
                Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                _ => None,
            });
            let expected = IpAddr::V4(Ipv4Addr::from(ip));
            proptest::prop_assert_eq!(client, Some(expected), "{}", url);
            let guard = Egress::new(&["127.0.0.2".into()]).expect("valid");
            let judged = guard.check_url(&url);
            match forbidden(expected) {
                Some(_) => proptest::prop_assert!(judged.is_err(), "{} is {}", url, expected),
                None => proptest::prop_assert_eq!(judged.ok().and_then(|t| t.ip), Some(expected)),
            }
        }
    }

    #[test]
    fn redacted_urls_keep_where_and_drop_what_may_be_secret() {
        assert_eq!(
            redacted("https://u:p@hooks.example.com:8443/a/b?token=s3cret#f"),
            "https://hooks.example.com:8443/a/b?…"
        );
        assert_eq!(redacted("http://hooks.example.com/x"), "http://hooks.example.com/x");
        assert_eq!(redacted("no url ?token=s3cret"), "(not a URL)");
    }
}
