//! TCP probe: connect, optionally wrap in TLS, optionally send a line and match the reply
//! against a regex (an SMTP `220` banner, Redis `PING` / `+PONG`).

use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Pattern, Phase, Reason, Recorder, TlsOptions, excerpt, io_reason};

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
    /// Upgrade the plain connection to TLS with this protocol's command first (`tls`
    /// then holds the TLS options).
    pub starttls: Option<StartTls>,
}

/// The protocols whose STARTTLS upgrade a TCP probe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
}

impl StartTls {
    pub const NAMES: &[&str] = &["smtp", "imap", "pop3"];

    pub fn parse(s: &str) -> Option<StartTls> {
        match s {
            "smtp" => Some(StartTls::Smtp),
            "imap" => Some(StartTls::Imap),
            "pop3" => Some(StartTls::Pop3),
            _ => None,
        }
    }
}

pub(crate) async fn probe(c: &TcpCheck, rec: &Recorder, now: SystemTime) -> Result<(), Reason> {
    let mut stream = connect(&c.address, c.ip, rec).await?;
    match &c.tls {
        None => exchange(stream, c, rec).await,
        Some(opts) => {
            rec.enter(Phase::Tls);
            if let Some(protocol) = c.starttls {
                upgrade(&mut stream, protocol).await?;
            }
            let (host, _) = super::ip::split_host_port(&c.address);
            let tls = super::tls::handshake(stream, host, opts, rec, &[]).await?;
            if let Some(min_days) = c.cert_min_days {
                super::tls::check_cert_days(rec, min_days, now)?;
            }
            exchange(tls, c, rec).await
        }
    }
}

/// Resolves `host:port` and connects, timing `resolve` and `connect`.
pub(crate) async fn connect(
    address: &str,
    ip: super::ip::IpProtocol,
    rec: &Recorder,
) -> Result<TcpStream, Reason> {
    rec.enter(Phase::Resolve);
    let addr = super::ip::resolve_address(address, ip, rec).await?;
    rec.enter(Phase::Connect);
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| match io_reason(&e) {
            Reason::Io { detail } => Reason::Connect { detail },
            r => r,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
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

/// The longest reply read during the STARTTLS dialogue: a peer that sends more is not
/// the server it should be.
const MAX_DIALOGUE: usize = 16 * 1024;

/// Asks for the upgrade in `protocol`'s terms and returns when the server agreed: the
/// next bytes on the connection are the TLS handshake.
async fn upgrade(s: &mut TcpStream, protocol: StartTls) -> Result<(), Reason> {
    let mut d = Dialogue { s, buf: Vec::new() };
    match protocol {
        StartTls::Smtp => {
            let greeting = d.reply(smtp_last).await?;
            expect_start(&greeting, "220", "greeting")?;
            d.send(b"EHLO tocsin\r\n").await?;
            let ehlo = d.reply(smtp_last).await?;
            expect_start(&ehlo, "250", "EHLO answer")?;
            if !ehlo.lines().any(|l| {
                l.get(4..)
                    .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
            }) {
                return Err(start_tls(format!(
                    "the server does not offer STARTTLS (EHLO: {})",
                    one_line(&ehlo)
                )));
            }
            d.send(b"STARTTLS\r\n").await?;
            let answer = d.reply(smtp_last).await?;
            refused_unless(&answer, "220")?;
        }
        StartTls::Imap => {
            let greeting = d.reply(|_| true).await?;
            if !(greeting.starts_with("* OK") || greeting.starts_with("* PREAUTH")) {
                return Err(unexpected("greeting", &greeting));
            }
            d.send(b"t1 STARTTLS\r\n").await?;
            let answer = d.reply(|l| l.starts_with("t1 ")).await?;
            let last = answer.lines().last().unwrap_or_default();
            refused_unless(last, "t1 OK")?;
        }
        StartTls::Pop3 => {
            let greeting = d.reply(|_| true).await?;
            expect_start(&greeting, "+OK", "greeting")?;
            d.send(b"STLS\r\n").await?;
            let answer = d.reply(|_| true).await?;
            refused_unless(&answer, "+OK")?;
        }
    }
    if !d.buf.is_empty() {
        return Err(start_tls(format!(
            "the server sent {:?} after agreeing to the upgrade, before the handshake",
            super::excerpt(&d.buf, 60)
        )));
    }
    Ok(())
}

/// The line-based dialogue before the upgrade.
struct Dialogue<'a> {
    s: &'a mut TcpStream,
    /// Bytes read past the last complete line.
    buf: Vec<u8>,
}

impl Dialogue<'_> {
    async fn send(&mut self, line: &[u8]) -> Result<(), Reason> {
        self.s.write_all(line).await.map_err(|e| io_reason(&e))
    }

    /// Reads lines until one for which `last` holds; returns them all, CRLF-joined.
    async fn reply(&mut self, last: impl Fn(&str) -> bool) -> Result<String, Reason> {
        let mut lines: Vec<String> = Vec::new();
        let mut total = 0;
        loop {
            while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                let done = last(&line);
                lines.push(line);
                if done {
                    return Ok(lines.join("\r\n"));
                }
            }
            if total > MAX_DIALOGUE {
                return Err(start_tls(format!(
                    "more than {MAX_DIALOGUE} bytes without the expected answer: {:?}",
                    super::excerpt(lines.join(" ").as_bytes(), 60)
                )));
            }
            let mut chunk = [0u8; 1024];
            let n = self.s.read(&mut chunk).await.map_err(|e| io_reason(&e))?;
            if n == 0 {
                let got = lines.join(" ") + &String::from_utf8_lossy(&self.buf);
                return Err(start_tls(format!(
                    "the server closed the connection during the upgrade (got {:?})",
                    super::excerpt(got.as_bytes(), 60)
                )));
            }
            total += n;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The last line of an SMTP reply: the code followed by a space (or nothing).
fn smtp_last(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && b.get(3).is_none_or(|c| *c == b' ')
}

fn start_tls(detail: String) -> Reason {
    Reason::StartTls { detail }
}

fn one_line(reply: &str) -> String {
    super::excerpt(reply.replace("\r\n", " | ").as_bytes(), 120)
}

fn unexpected(what: &str, got: &str) -> Reason {
    start_tls(format!("unexpected {what} {:?}", one_line(got)))
}

fn expect_start(reply: &str, want: &str, what: &str) -> Result<(), Reason> {
    if reply.starts_with(want) {
        Ok(())
    } else {
        Err(unexpected(what, reply))
    }
}

fn refused_unless(answer: &str, want: &str) -> Result<(), Reason> {
    if answer.starts_with(want) {
        Ok(())
    } else {
        Err(start_tls(format!(
            "the server refused the upgrade: {:?}",
            one_line(answer)
        )))
    }
}
