//! UDP probe: send one datagram and wait for a reply that matches a regex (a game
//! server's status query, an NTP or SIP request). A closed port answers with ICMP port
//! unreachable, which a connected socket reports as a refused connection.

use tokio::net::UdpSocket;

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
    pub ip: super::ip::IpProtocol,
}

/// A UDP socket bound to any local address of `peer`'s family and connected to it, so
/// that only its datagrams are read and ICMP port unreachable shows as refused.
pub(crate) async fn connected(peer: std::net::SocketAddr) -> Result<UdpSocket, Reason> {
    let local = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| io_reason(&e))?;
    socket.connect(peer).await.map_err(|e| io_reason(&e))?;
    Ok(socket)
}

pub(crate) async fn probe(c: &UdpCheck, rec: &Recorder) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let addr = super::ip::resolve_address(&c.address, c.ip, rec).await?;
    rec.enter(Phase::Connect);
    let socket = connected(addr).await?;
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
