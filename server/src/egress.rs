//! Where a webhook may point. A webhook URL is a request the server makes on
//! a stranger's behalf: aimed at loopback, a private network, a cloud's
//! metadata address or a multicast group, it would turn the server into a
//! scanner of its own network. So every address a webhook's host stands
//! for is judged, at registration and again at every connection, and the
//! connection goes only to addresses that were judged (the resolution is
//! pinned: a name that resolves elsewhere between the check and the
//! connection gains nothing). Operators who do run receivers inside their
//! network list them in `webhooks.allowed_targets`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A network in CIDR form, `10.0.0.0/8` or `::1/128` (a bare address is
/// one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or CIDR network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Why an address is no place for a webhook, if it is not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address written as IPv6 (::ffff:a.b.c.d, ::a.b.c.d,
            // the NAT64 prefix 64:ff9b::/96) is judged as the IPv4 address
            // it reaches.
            let [a, b, c, d, e, f, _, _] = v6.segments();
            let embedded =
                (a == 0 && b == 0 && c == 0 && d == 0 && e == 0 && (f == 0xffff || f == 0))
                    || (a == 0x64 && b == 0xff9b && c == 0 && d == 0 && e == 0 && f == 0);
            if embedded && !v6.is_loopback() && !v6.is_unspecified() {
                let [.., g, h] = v6.segments();
                let v4 = Ipv4Addr::new((g >> 8) as u8, g as u8, (h >> 8) as u8, h as u8);
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives at 169.254.169.254)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else if (a == 198) && (b == 18 || b == 19) {
        Some("benchmarking (198.18.0.0/15)")
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
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local (fec0::/10)")
    } else if first & 0xff00 == 0xff00 {
        Some("multicast")
    } else if first == 0x2002 {
        // 6to4 carries an IPv4 address in its next 32 bits.
        let [_, b, c, ..] = ip.segments();
        let v4 = Ipv4Addr::new((b >> 8) as u8, b as u8, (c >> 8) as u8, c as u8);
        forbidden_v4(v4).map(|_| "6to4 of a forbidden IPv4 address")
    } else {
        None
    }
}

/// The rule every webhook connection follows: public addresses, or those
/// the operator listed.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<Cidr>,
}

impl TargetPolicy {
    /// From `webhooks.allowed_targets`.
    pub fn from_config(allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|e| format!("webhooks.allowed_targets: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Why the address may not be reached, if it may not.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return None;
        }
        forbidden(ip)
    }

    /// Resolves `host` and judges every address it stands for: the addresses
    /// a connection may use, or why there are none. A name with one
    /// forbidden address is refused whole, so that which address a
    /// resolver hands out first cannot matter.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| TargetError::Unresolved(host.to_owned()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(TargetError::Unresolved(host.to_owned()));
        }
        for addr in &addrs {
            if let Some(why) = self.refuses(addr.ip()) {
                return Err(TargetError::Forbidden {
                    host: host.to_owned(),
                    ip: addr.ip(),
                    why,
                });
            }
        }
        Ok(addrs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0} does not resolve")]
    Unresolved(String),
    #[error(
        "{host} is {ip}, a {why} address; webhooks may not reach loopback, private, link-local, \
         carrier-grade NAT, multicast or reserved addresses (unless webhooks.allowed_targets lists them)"
    )]
    Forbidden {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
}

/// reqwest's resolver for webhook deliveries: the policy's resolution, so a
/// connection goes only to addresses the policy judged a moment ago.
#[derive(Debug, Clone)]
pub struct PinnedResolver(pub Arc<TargetPolicy>);

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            // The port is the URL's; reqwest sets it on each address after.
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn inner_addresses_are_refused_in_every_spelling() {
        for inner in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(ip(inner)).is_some(), "{inner} is reachable");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for public in [
            "93.184.215.14",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:93.184.215.14",
        ] {
            assert_eq!(forbidden(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_what_it_names() {
        let policy =
            TargetPolicy::from_config(&["127.0.0.1".into(), "10.20.0.0/16".into()]).unwrap();
        assert_eq!(policy.refuses(ip("127.0.0.1")), None);
        assert!(policy.refuses(ip("127.0.0.2")).is_some());
        assert_eq!(policy.refuses(ip("10.20.3.4")), None);
        assert!(policy.refuses(ip("10.21.0.1")).is_some());
        assert!(
            policy.refuses(ip("::1")).is_some(),
            "v4 networks say nothing of v6"
        );
        assert!(TargetPolicy::from_config(&["10.0.0.0/33".into()]).is_err());
        assert!(TargetPolicy::from_config(&["intranet".into()]).is_err());
        let all = TargetPolicy::from_config(&["0.0.0.0/0".into()]).unwrap();
        assert_eq!(all.refuses(ip("192.168.0.1")), None);
    }

    #[tokio::test]
    async fn a_name_is_judged_by_every_address_it_resolves_to() {
        let policy = TargetPolicy::default();
        match policy.resolve("localhost", 80).await {
            Err(TargetError::Forbidden { why, .. }) => assert_eq!(why, "loopback"),
            other => panic!("localhost got through: {other:?}"),
        }
        assert!(matches!(
            policy.resolve("[::1]", 80).await,
            Err(TargetError::Forbidden { .. })
        ));
        let open = TargetPolicy::from_config(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(open.resolve("localhost", 80).await.is_ok());
    }
}
