//! ICMP probe: echo requests to a host, as `ping` sends them.
//!
//! The socket is an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range`
//! admits tocsin's group, and a raw socket otherwise, which needs `CAP_NET_RAW` (the
//! systemd unit and the container grant that capability, not root). `surge-ping` opens
//! whichever the kernel allows and matches replies to requests.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};

use super::ip::{self, IpProtocol};
use super::{Phase, Reason, Recorder};

/// The echo payload, ping's default size.
const PAYLOAD: [u8; 56] = [0; 56];

#[derive(Debug, Clone, PartialEq)]
pub struct IcmpCheck {
    /// A host name or an IP address.
    pub host: String,
    /// Echo requests sent per run; the probe succeeds when at least one is answered.
    pub count: u16,
    pub ip: IpProtocol,
}

pub(crate) async fn probe(c: &IcmpCheck, rec: &Recorder, timeout: Duration) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let addr: IpAddr = ip::resolve(&c.host, 0, c.ip, rec).await?.ip();
    rec.enter(Phase::Setup);
    let kind = if addr.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    let client =
        Client::new(&Config::builder().kind(kind).build()).map_err(|e| setup_reason(&e))?;
    let mut pinger = client.pinger(addr, PingIdentifier(rand::random())).await;
    rec.enter(Phase::Rtt);
    let count = c.count.max(1);
    // Each echo may wait its share of the timeout, so a lost first reply still leaves time
    // for the others.
    pinger.timeout(timeout.mul_f64(0.9) / u32::from(count));
    let (mut received, mut rtt_sum) = (0u32, Duration::ZERO);
    for seq in 0..count {
        match pinger.ping(PingSequence(seq), &PAYLOAD).await {
            Ok((packet, rtt)) => {
                received += 1;
                rtt_sum += rtt;
                let hops = match packet {
                    IcmpPacket::V4(p) => p.get_ttl(),
                    // A raw IPv6 socket does not show the header: 0 means unknown.
                    IcmpPacket::V6(p) => Some(p.get_max_hop_limit()).filter(|h| *h > 0),
                };
                rec.details(|d| {
                    if hops.is_some() {
                        d.icmp_hop_limit = hops;
                    }
                });
            }
            Err(SurgeError::Timeout { .. }) => {}
            Err(SurgeError::IOError(e)) => return Err(send_reason(&e)),
            Err(e) => {
                return Err(Reason::Io {
                    detail: e.to_string(),
                });
            }
        }
        rec.details(|d| {
            d.icmp_sent = Some(u32::from(seq) + 1);
            d.icmp_received = Some(received);
            if received > 0 {
                d.icmp_rtt = Some(rtt_sum / received);
            }
        });
    }
    if received == 0 {
        return Err(Reason::Timeout { phase: Phase::Rtt });
    }
    Ok(())
}

/// Why the ICMP socket could not be opened, with the fix when it is a permission.
fn setup_reason(e: &std::io::Error) -> Reason {
    if super::monitor_fault(e).is_some() {
        return super::io_reason(e);
    }
    if e.kind() == ErrorKind::PermissionDenied {
        Reason::IcmpPermission {
            detail: "the kernel refused both an ICMP datagram socket and a raw socket".into(),
        }
    } else {
        Reason::Io {
            detail: format!("cannot open an ICMP socket: {e}"),
        }
    }
}

/// Why an echo request could not be sent.
fn send_reason(e: &std::io::Error) -> Reason {
    if super::monitor_fault(e).is_some() {
        return super::io_reason(e);
    }
    match e.kind() {
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => Reason::Unreachable {
            detail: e.to_string(),
        },
        ErrorKind::PermissionDenied => Reason::IcmpPermission {
            detail: e.to_string(),
        },
        _ => Reason::Io {
            detail: e.to_string(),
        },
    }
}
