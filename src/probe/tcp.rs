//! TCP probe: connect, optionally wrap in TLS, optionally send a line and match the reply
//! against a regex (an SMTP `220` banner, Redis `PING` / `+PONG`).

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Pattern, Phase, Reason, Recorder, TlsOptions, excerpt, io_reason, tls::tls_reason};

/// How much of the reply is read while looking for `expect`.
const MAX_REPLY: usize = 64 * 1024;
/// How long to wait for more lines after a complete line that did not match.
const LINE_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Debug, Clone, PartialEq)]
pub struct TcpCheck {
    /// `host:port`.
    pub address: String,
    pub tls: Option<TlsOptions>,
    pub send: Option<String>,
    pub expect: Option<Pattern>,
    pub cert_min_days: Option<u32>,
    pub ip: super::ip::IpProtocol,
}

pub(crate) async fn probe(c: &TcpCheck, rec: &Recorder, now: SystemTime) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let (host, _) = split_host_port(&c.address);
    let addr = super::ip::resolve_address(&c.address, c.ip, rec).await?;
    rec.enter(Phase::Connect);
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| match io_reason(&e) {
            Reason::Io { detail } => Reason::Connect { detail },
            r => r,
        })?;
    let _ = stream.set_nodelay(true);

    match &c.tls {
        None => exchange(stream, c, rec).await,
        Some(opts) => {
            rec.enter(Phase::Tls);
            let cfg = opts.client_config(rec, &[])?;
            let name = ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            )
            .map_err(|e| Reason::Tls {
                detail: e.to_string(),
            })?;
            let tls = TlsConnector::from(Arc::new(cfg))
                .connect(name, stream)
                .await
                .map_err(
                    |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(t) => tls_reason(t),
                        None => match io_reason(&e) {
                            Reason::Io { detail } => Reason::Tls { detail },
                            r => r,
                        },
                    },
                )?;
            let version = tls
                .get_ref()
                .1
                .protocol_version()
                .map(super::tls::version_label);
            rec.details(|d| d.tls_version = version);
            if let Some(min_days) = c.cert_min_days {
                super::http::check_cert_days(rec, min_days, now)?;
            }
            exchange(tls, c, rec).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    c: &TcpCheck,
    rec: &Recorder,
) -> Result<(), Reason> {
    rec.enter(Phase::Processing);
    if let Some(data) = &c.send {
        s.write_all(data.as_bytes())
            .await
            .map_err(|e| io_reason(&e))?;
        s.flush().await.map_err(|e| io_reason(&e))?;
    }
    let Some(pattern) = &c.expect else {
        let _ = s.shutdown().await;
        return Ok(());
    };
    let mut reply: Vec<u8> = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        // Once a whole line has come without a match, more lines may still follow (a
        // multi-line banner); wait a moment for them rather than the whole timeout, so a
        // wrong reply is reported as such, not as a timeout.
        let read = if reply.ends_with(b"\n") {
            match tokio::time::timeout(LINE_GRACE, s.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Reason::ReplyMismatch {
                        pattern: pattern.0.as_str().to_string(),
                        got: excerpt(&reply, 200),
                    });
                }
            }
        } else {
            s.read(&mut buf).await
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                return Err(match io_reason(&e) {
                    Reason::ConnectionReset => Reason::ClosedBeforeReply {
                        pattern: pattern.0.as_str().to_string(),
                        got: excerpt(&reply, 200),
                    },
                    r => r,
                });
            }
        };
        if n == 0 {
            return Err(Reason::ClosedBeforeReply {
                pattern: pattern.0.as_str().to_string(),
                got: excerpt(&reply, 200),
            });
        }
        reply.extend_from_slice(&buf[..n]);
        if pattern.0.is_match(&String::from_utf8_lossy(&reply)) {
            let _ = s.shutdown().await;
            return Ok(());
        }
        if reply.len() >= MAX_REPLY {
            return Err(Reason::ReplyMismatch {
                pattern: pattern.0.as_str().to_string(),
                got: excerpt(&reply, 200),
            });
        }
    }
}

/// Splits `host:port`, keeping `[v6]` brackets on the host.
pub fn split_host_port(address: &str) -> (&str, Option<&str>) {
    match address.rfind(':') {
        Some(i) if !address[i..].contains(']') => (&address[..i], Some(&address[i + 1..])),
        _ => (address, None),
    }
}
