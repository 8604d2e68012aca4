//! Client address resolution behind reverse proxies.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare
/// address for a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses match
    /// IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| crate::Error::Invalid {
            field: "trusted proxy",
            reason: format!("{s:?}: {reason}"),
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(IpAddr::from_str(a.trim()).map_err(|_| bad("not an address"))?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad("bad prefix"))?,
        };
        if prefix > max {
            return Err(bad("prefix too long"));
        }
        Ok(IpNet { addr, prefix })
    }
}

/// The reverse proxies whose `X-Forwarded-For` header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Parses a list like `["127.0.0.1", "10.0.0.0/8"]`.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> crate::Result<Self> {
        list.iter()
            .map(|s| s.as_ref().parse())
            .collect::<crate::Result<Vec<_>>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request from `peer` carrying the
    /// `X-Forwarded-For` values `xff` (all header lines, in order).
    ///
    /// The header is only read when `peer` is trusted; then the list is
    /// walked from the right (the hop nearest to us), skipping trusted
    /// proxies, and the first untrusted address is the client. A malformed
    /// entry stops the walk at the last good hop, so a client cannot forge
    /// its way past a proxy that appends.
    pub fn client_ip<'a>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'a str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = xff.into_iter().flat_map(|h| h.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.is_trusted(ip) {
                return ip;
            }
        }
        client
    }
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // `[v6]:port` or `v4:port`
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0u8; 4]))
    }

    #[test]
    fn xff_only_from_trusted_peers() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).expect("parse");
        // untrusted peer: header ignored
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), ["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // trusted peer: rightmost untrusted hop
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["6.6.6.6, 1.2.3.4, 10.0.0.2"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            t.client_ip(ip("::1"), ["5.5.5.5", "1.2.3.4"]),
            ip("1.2.3.4")
        );
        // no header: the peer
        assert_eq!(t.client_ip(ip("10.0.0.1"), []), ip("10.0.0.1"));
        // garbage stops the walk
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["1.2.3.4, junk"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert!(t.is_trusted(ip("::ffff:10.1.1.1")));
        assert!(!t.is_trusted(ip("11.0.0.1")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .expect("any")
                .contains(ip("8.8.8.8"))
        );
    }
}
