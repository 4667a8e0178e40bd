//! UDP probe: send one datagram and wait for a reply that matches a regex (a game
//! server's status query, an NTP or SIP request). A closed port answers with ICMP port
//! unreachable, which a connected socket reports as a refused connection.

use tokio::net::UdpSocket;

use super::tcp::split_host_port;
use super::{Pattern, Phase, Reason, Recorder, excerpt, io_reason};

/// Datagrams read while looking for a match: a peer that floods the probe is reported
/// as a mismatch, not waited out.
const MAX_DATAGRAMS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct UdpCheck {
    /// `host:port`.
    pub address: String,
    pub send: String,
    pub expect: Pattern,
}

pub(crate) async fn probe(c: &UdpCheck, rec: &Recorder) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let (host, _) = split_host_port(&c.address);
    let addr = tokio::net::lookup_host(c.address.as_str())
        .await
        .map_err(|e| Reason::Resolve {
            host: host.to_string(),
            detail: e.to_string(),
        })?
        .next()
        .ok_or_else(|| Reason::Resolve {
            host: host.to_string(),
            detail: "no addresses".into(),
        })?;
    rec.enter(Phase::Connect);
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| io_reason(&e))?;
    socket.connect(addr).await.map_err(|e| io_reason(&e))?;
    rec.enter(Phase::Processing);
    socket
        .send(c.send.as_bytes())
        .await
        .map_err(|e| io_reason(&e))?;
    let mut buf = vec![0u8; 65_536];
    let mut last = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let n = socket.recv(&mut buf).await.map_err(|e| io_reason(&e))?;
        let reply = &buf[..n];
        if c.expect.0.is_match(&String::from_utf8_lossy(reply)) {
            return Ok(());
        }
        last = reply.to_vec();
    }
    Err(Reason::ReplyMismatch {
        pattern: c.expect.0.as_str().to_string(),
        got: excerpt(&last, 120),
    })
}
