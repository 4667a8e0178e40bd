//! Which address a probe connects to: `ip_protocol: ip4 | ip6` with a fallback to the
//! other family (blackbox_exporter's `preferred_ip_protocol` and `ip_protocol_fallback`),
//! and what it reports of the address it chose (`probe_ip_protocol`, `probe_ip_addr_hash`).

use std::net::{IpAddr, SocketAddr};

use super::{Reason, Recorder};

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip4,
    Ip6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::Ip4
        } else {
            Family::Ip6
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip4 => "ip4",
            Family::Ip6 => "ip6",
        }
    }

    /// 4 or 6, as `probe_ip_protocol` reports it.
    pub fn number(self) -> u8 {
        match self {
            Family::Ip4 => 4,
            Family::Ip6 => 6,
        }
    }
}

/// The family a probe prefers, and whether it may use the other one when the name has no
/// address of the preferred family. Without a preference the resolver's first address is
/// used (getaddrinfo orders them by RFC 6724).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpProtocol {
    pub prefer: Option<Family>,
    pub fallback: bool,
}

impl Default for IpProtocol {
    fn default() -> Self {
        IpProtocol {
            prefer: None,
            fallback: true,
        }
    }
}

impl IpProtocol {
    /// The address to use among those a name resolved to, or why none will do.
    pub fn choose(&self, host: &str, addrs: &[SocketAddr]) -> Result<SocketAddr, Reason> {
        let Some(first) = addrs.first() else {
            return Err(Reason::Resolve {
                host: host.to_string(),
                detail: "no addresses".into(),
            });
        };
        let Some(want) = self.prefer else {
            return Ok(*first);
        };
        if let Some(a) = addrs.iter().find(|a| Family::of(&a.ip()) == want) {
            return Ok(*a);
        }
        if self.fallback {
            return Ok(*first);
        }
        Err(Reason::Resolve {
            host: host.to_string(),
            detail: format!(
                "no {} address, and `ip_protocol_fallback` is false",
                want.as_str()
            ),
        })
    }

    /// Filters (and orders) addresses for a connector that tries them in turn: the
    /// preferred family first, the other one only when falling back is allowed.
    pub fn order(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Reason> {
        let chosen = self.choose(host, &addrs)?;
        let family = Family::of(&chosen.ip());
        let (mut same, other): (Vec<_>, Vec<_>) = addrs
            .into_iter()
            .partition(|a| Family::of(&a.ip()) == family);
        if self.prefer.is_none() || self.fallback {
            same.extend(other);
        }
        Ok(same)
    }
}

/// Resolves `host` (an IP literal resolves to itself) and chooses the address, noting
/// its family and hash in the details.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    ip: IpProtocol,
    rec: &Recorder,
) -> Result<SocketAddr, Reason> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| match super::monitor_fault(&e) {
            Some(_) => super::io_reason(&e),
            None => Reason::Resolve {
                host: host.to_string(),
                detail: e.to_string(),
            },
        })?
        .collect();
    let addr = ip.choose(host, &addrs)?;
    note(rec, &addr.ip());
    Ok(addr)
}

/// Resolves a `host:port` address (see [`resolve`]).
pub(crate) async fn resolve_address(
    address: &str,
    ip: IpProtocol,
    rec: &Recorder,
) -> Result<SocketAddr, Reason> {
    let (host, port) = split_host_port(address);
    let port = port
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| Reason::Resolve {
            host: host.to_string(),
            detail: format!("`{address}` has no valid port"),
        })?;
    resolve(host, port, ip, rec).await
}

/// Splits `host:port`, keeping `[v6]` brackets on the host.
pub fn split_host_port(address: &str) -> (&str, Option<&str>) {
    match address.rfind(':') {
        Some(i) if !address[i..].contains(']') => (&address[..i], Some(&address[i + 1..])),
        _ => (address, None),
    }
}

/// Records the family and the hash of the address a probe talks to.
pub(crate) fn note(rec: &Recorder, ip: &IpAddr) {
    let (family, hash) = (Family::of(ip).number(), addr_hash(ip));
    rec.details(|d| {
        d.ip_protocol = Some(family);
        d.ip_addr_hash = Some(hash);
    });
}

/// blackbox_exporter's `probe_ip_addr_hash`: 32-bit FNV-1a of the address's bytes (4 for
/// IPv4, 16 for IPv6), so a change of address shows as a change of value without the
/// address becoming a label. Written here because it is a few lines and the `fnv` crate
/// offers only the 64-bit hash.
pub fn addr_hash(ip: &IpAddr) -> u32 {
    let bytes = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<SocketAddr> {
        vec!["[::1]:80".parse().unwrap(), "127.0.0.1:80".parse().unwrap()]
    }

    #[test]
    fn the_preferred_family_wins_and_falls_back_only_when_allowed() {
        let any = IpProtocol::default();
        assert_eq!(any.choose("h", &addrs()).unwrap(), addrs()[0]);
        let v4 = IpProtocol {
            prefer: Some(Family::Ip4),
            fallback: false,
        };
        assert_eq!(v4.choose("h", &addrs()).unwrap(), addrs()[1]);
        let only6 = vec![addrs()[0]];
        let err = v4.choose("h", &only6).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve h: no ip4 address, and `ip_protocol_fallback` is false"
        );
        let v4_or_any = IpProtocol {
            fallback: true,
            ..v4
        };
        assert_eq!(v4_or_any.choose("h", &only6).unwrap(), only6[0]);
        assert_eq!(v4.order("h", addrs()).unwrap(), vec![addrs()[1]]);
        assert_eq!(
            v4_or_any.order("h", addrs()).unwrap(),
            vec![addrs()[1], addrs()[0]]
        );
    }

    /// The figure blackbox_exporter reports for 127.0.0.1 (the conformance test compares
    /// every address it probes).
    #[test]
    fn the_address_hash_is_fnv1a_of_the_bytes() {
        assert_eq!(addr_hash(&"127.0.0.1".parse().unwrap()), 3_668_918_509);
    }
}
