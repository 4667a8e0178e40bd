//! A ManageSieve client (RFC 5804): STARTTLS, SASL PLAIN (with an authorization identity,
//! so one administrative login can manage several mailboxes), and the script commands
//! the autoresponder needs. Written here because no maintained Rust crate speaks the
//! protocol (the one on crates.io parses responses and does no I/O); the subset used is
//! small: lines of quoted strings, atoms and literals ending in OK, NO or BYE.
//!
//! Knows nothing of incidents or templates: it moves scripts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest literal or line accepted from a server (a script listing or one script).
const MAX_ITEM: usize = 1 << 20;

/// What went wrong, in the terms an operator acts on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SieveError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    /// The server did not answer within the deadline.
    #[error("no answer from the ManageSieve server within {0:?}")]
    Timeout(Duration),
    /// The server offers no STARTTLS and plain text was not allowed.
    #[error(
        "the ManageSieve server does not offer STARTTLS; credentials are never sent in plain text (allow_plain is only for a server on loopback)"
    )]
    NoStartTls,
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS with the ManageSieve server failed: {0}")]
    Tls(String),
    /// The server refused the credentials (or the right to act for the mailbox).
    #[error("the ManageSieve server refused the login for {mailbox}: {reply}")]
    Auth { mailbox: String, reply: String },
    /// The server's Sieve implementation has no vacation extension (RFC 5230).
    #[error("the ManageSieve server has no Sieve `vacation` extension (it offers: {0})")]
    NoVacation(String),
    /// The server refused a script (CHECKSCRIPT or PUTSCRIPT), with its reason.
    #[error("the ManageSieve server refused the script: {0}")]
    Rejected(String),
    /// Any other NO or BYE, with the command it answered.
    #[error("the ManageSieve server answered {command} with: {reply}")]
    Refused { command: String, reply: String },
    /// The server spoke something that is not ManageSieve.
    #[error("unexpected reply from the ManageSieve server: {0}")]
    Protocol(String),
}

impl SieveError {
    /// Failures that another attempt may cure (network, deadline), as opposed to ones an
    /// operator must fix (credentials, missing extension, a refused script).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SieveError::Connect { .. } | SieveError::Timeout(_) | SieveError::Protocol(_)
        )
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Without STARTTLS on offer, go on in plain text (loopback only; config enforces it).
    pub allow_plain: bool,
    pub tls: Arc<rustls::ClientConfig>,
    /// Deadline of each exchange with the server.
    pub timeout: Duration,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom (`OK`, `ACTIVE`, `NO`).
    Atom(String),
    /// A quoted string or a literal.
    Str(String),
    LParen,
    RParen,
    Eol,
}

/// A complete response: the data lines, then the status line.
#[derive(Debug)]
struct Response {
    lines: Vec<Vec<Token>>,
    ok: bool,
    /// The status line's text (and response code), for messages.
    text: String,
}

/// The byte stream with a read buffer and a tokenizer.
struct Wire<S> {
    io: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(io: S) -> Self {
        Wire {
            io,
            buf: Vec::new(),
            pos: 0,
        }
    }

    async fn peek(&mut self) -> Result<u8, SieveError> {
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| SieveError::Protocol(format!("connection lost: {e}")))?;
            if n == 0 {
                return Err(SieveError::Protocol(
                    "the server closed the connection".into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(self.buf[self.pos])
    }

    async fn byte(&mut self) -> Result<u8, SieveError> {
        let b = self.peek().await?;
        self.pos += 1;
        Ok(b)
    }

    async fn token(&mut self) -> Result<Token, SieveError> {
        while self.peek().await? == b' ' {
            self.pos += 1;
        }
        match self.byte().await? {
            b'\r' => match self.byte().await? {
                b'\n' => Ok(Token::Eol),
                b => Err(SieveError::Protocol(format!("CR followed by {b:#04x}"))),
            },
            b'\n' => Ok(Token::Eol),
            b'(' => Ok(Token::LParen),
            b')' => Ok(Token::RParen),
            b'"' => {
                let mut s = Vec::new();
                loop {
                    match self.byte().await? {
                        b'"' => break,
                        b'\\' => s.push(self.byte().await?),
                        b'\r' | b'\n' => {
                            return Err(SieveError::Protocol(
                                "line break in a quoted string".into(),
                            ));
                        }
                        b => s.push(b),
                    }
                    if s.len() > MAX_ITEM {
                        return Err(SieveError::Protocol("quoted string too long".into()));
                    }
                }
                Ok(Token::Str(String::from_utf8_lossy(&s).into_owned()))
            }
            b'{' => {
                let mut digits = String::new();
                loop {
                    match self.byte().await? {
                        b'}' => break,
                        b'+' => {}
                        b if b.is_ascii_digit() && digits.len() < 10 => digits.push(b as char),
                        b => {
                            return Err(SieveError::Protocol(format!(
                                "bad literal length byte {b:#04x}"
                            )));
                        }
                    }
                }
                let n: usize = digits
                    .parse()
                    .map_err(|_| SieveError::Protocol("literal without a length".into()))?;
                if n > MAX_ITEM {
                    return Err(SieveError::Protocol(format!(
                        "literal of {n} bytes is too long"
                    )));
                }
                if self.byte().await? != b'\r' || self.byte().await? != b'\n' {
                    return Err(SieveError::Protocol(
                        "no line break after a literal's length".into(),
                    ));
                }
                let mut s = Vec::with_capacity(n);
                for _ in 0..n {
                    s.push(self.byte().await?);
                }
                Ok(Token::Str(String::from_utf8_lossy(&s).into_owned()))
            }
            first => {
                let mut s = vec![first];
                loop {
                    match self.peek().await? {
                        b' ' | b'\r' | b'\n' | b'(' | b')' | b'"' | b'{' => break,
                        b => {
                            s.push(b);
                            self.pos += 1;
                        }
                    }
                    if s.len() > 1024 {
                        return Err(SieveError::Protocol("atom too long".into()));
                    }
                }
                Ok(Token::Atom(String::from_utf8_lossy(&s).into_owned()))
            }
        }
    }

    async fn line(&mut self) -> Result<Vec<Token>, SieveError> {
        let mut out = Vec::new();
        loop {
            match self.token().await? {
                Token::Eol => return Ok(out),
                t => out.push(t),
            }
            if out.len() > 10_000 {
                return Err(SieveError::Protocol("line too long".into()));
            }
        }
    }

    async fn response(&mut self) -> Result<Response, SieveError> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let status = match line.first() {
                Some(Token::Atom(a)) => a.to_ascii_uppercase(),
                _ => String::new(),
            };
            if matches!(status.as_str(), "OK" | "NO" | "BYE") {
                let text = line[1..]
                    .iter()
                    .map(|t| match t {
                        Token::Atom(a) | Token::Str(a) => a.trim().to_string(),
                        Token::LParen => "(".into(),
                        Token::RParen => ")".into(),
                        Token::Eol => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("( ", "(")
                    .replace(" )", ")");
                return Ok(Response {
                    lines,
                    ok: status == "OK",
                    text: if text.is_empty() { status } else { text },
                });
            }
            lines.push(line);
            if lines.len() > 10_000 {
                return Err(SieveError::Protocol(
                    "too many lines in one response".into(),
                ));
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), SieveError> {
        self.io
            .write_all(bytes)
            .await
            .and(self.io.flush().await)
            .map_err(|e| SieveError::Protocol(format!("connection lost: {e}")))
    }
}

/// A quoted string for a command; line breaks are impossible in names and credentials
/// tocsin sends, and are refused rather than sent.
fn quoted(s: &str) -> Result<String, SieveError> {
    if s.contains(['\r', '\n', '\0']) {
        return Err(SieveError::Protocol(format!(
            "{s:?} cannot be sent as a string"
        )));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A non-synchronizing literal (`{n+}`), which every ManageSieve server accepts.
fn literal(s: &str) -> Vec<u8> {
    let mut out = format!("{{{}+}}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s.as_bytes());
    out
}

/// The server's capabilities.
#[derive(Debug, Default, Clone)]
pub struct Capabilities {
    pub sieve: Vec<String>,
    pub sasl: Vec<String>,
    pub starttls: bool,
    pub implementation: String,
}

fn capabilities(lines: &[Vec<Token>]) -> Capabilities {
    let mut c = Capabilities::default();
    for l in lines {
        let (Some(Token::Str(k)), v) = (l.first(), l.get(1)) else {
            continue;
        };
        let v = match v {
            Some(Token::Str(v)) => v.clone(),
            _ => String::new(),
        };
        match k.to_ascii_uppercase().as_str() {
            "SIEVE" => c.sieve = v.split_whitespace().map(str::to_lowercase).collect(),
            "SASL" => c.sasl = v.split_whitespace().map(str::to_uppercase).collect(),
            "STARTTLS" => c.starttls = true,
            "IMPLEMENTATION" => c.implementation = v,
            _ => {}
        }
    }
    c
}

/// A logged-in session.
pub struct Session {
    wire: Wire<Box<dyn Io>>,
    timeout: Duration,
    pub capabilities: Capabilities,
}

/// A script on the server and whether it is the active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub active: bool,
}

impl Session {
    /// Connects, secures the connection (STARTTLS unless allowed plain), and logs in as
    /// `user` acting for `mailbox` (SASL PLAIN's authorization identity; empty: the user's
    /// own). Refuses a server without the vacation extension.
    pub async fn open(
        ep: &Endpoint,
        mailbox: &str,
        user: &str,
        password: &str,
    ) -> Result<Session, SieveError> {
        let t = ep.timeout;
        let address = format!("{}:{}", ep.host, ep.port);
        let tcp = tokio::time::timeout(t, TcpStream::connect(&address))
            .await
            .map_err(|_| SieveError::Timeout(t))?
            .map_err(|e| SieveError::Connect {
                address: address.clone(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut plain = Wire::new(tcp);
        let greeting = within(t, plain.response()).await?;
        if !greeting.ok {
            return Err(SieveError::Refused {
                command: "the connection".into(),
                reply: greeting.text,
            });
        }
        let mut caps = capabilities(&greeting.lines);
        let mut wire: Wire<Box<dyn Io>> = if caps.starttls {
            plain.send(b"STARTTLS\r\n").await?;
            let r = within(t, plain.response()).await?;
            if !r.ok {
                return Err(SieveError::Tls(format!("STARTTLS refused: {}", r.text)));
            }
            let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| SieveError::Tls(format!("invalid server name {}: {e}", ep.host)))?;
            let tls = tokio_rustls::TlsConnector::from(ep.tls.clone());
            let stream = within(t, async {
                tls.connect(name, plain.io)
                    .await
                    .map_err(|e| SieveError::Tls(e.to_string()))
            })
            .await?;
            let mut w: Wire<Box<dyn Io>> = Wire::new(Box::new(stream));
            // RFC 5804 2.2: the server lists its capabilities again after TLS.
            let again = within(t, w.response()).await?;
            caps = capabilities(&again.lines);
            w
        } else if ep.allow_plain {
            Wire {
                io: Box::new(plain.io),
                buf: plain.buf,
                pos: plain.pos,
            }
        } else {
            return Err(SieveError::NoStartTls);
        };
        if !caps.sasl.iter().any(|m| m == "PLAIN") {
            return Err(SieveError::Auth {
                mailbox: mailbox.into(),
                reply: format!(
                    "the server offers no SASL PLAIN (it offers: {})",
                    caps.sasl.join(" ")
                ),
            });
        }
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{mailbox}\0{user}\0{password}"));
        wire.send(format!("AUTHENTICATE \"PLAIN\" \"{token}\"\r\n").as_bytes())
            .await?;
        let r = within(t, wire.response()).await?;
        if !r.ok {
            return Err(SieveError::Auth {
                mailbox: if mailbox.is_empty() { user } else { mailbox }.into(),
                reply: r.text,
            });
        }
        if !caps.sieve.iter().any(|e| e == "vacation") {
            return Err(SieveError::NoVacation(caps.sieve.join(" ")));
        }
        Ok(Session {
            wire,
            timeout: t,
            capabilities: caps,
        })
    }

    async fn command(&mut self, what: &str, bytes: &[u8]) -> Result<Response, SieveError> {
        self.wire.send(bytes).await?;
        let r = within(self.timeout, self.wire.response()).await?;
        if r.ok {
            Ok(r)
        } else {
            Err(SieveError::Refused {
                command: what.into(),
                reply: r.text,
            })
        }
    }

    pub async fn list(&mut self) -> Result<Vec<Script>, SieveError> {
        let r = self.command("LISTSCRIPTS", b"LISTSCRIPTS\r\n").await?;
        Ok(r.lines
            .iter()
            .filter_map(|l| match l.as_slice() {
                [Token::Str(name)] => Some(Script {
                    name: name.clone(),
                    active: false,
                }),
                [Token::Str(name), Token::Atom(a)] => Some(Script {
                    name: name.clone(),
                    active: a.eq_ignore_ascii_case("ACTIVE"),
                }),
                _ => None,
            })
            .collect())
    }

    /// The active script's name, if any.
    pub async fn active(&mut self) -> Result<Option<String>, SieveError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|s| s.active)
            .map(|s| s.name))
    }

    /// Asks the server to compile `script` without storing it.
    pub async fn check(&mut self, script: &str) -> Result<(), SieveError> {
        let mut cmd = b"CHECKSCRIPT ".to_vec();
        cmd.extend(literal(script));
        cmd.extend_from_slice(b"\r\n");
        self.command("CHECKSCRIPT", &cmd)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                SieveError::Refused { reply, .. } => SieveError::Rejected(reply),
                e => e,
            })
    }

    /// Stores `script` as `name`, replacing any script of that name.
    pub async fn put(&mut self, name: &str, script: &str) -> Result<(), SieveError> {
        let mut cmd = format!("PUTSCRIPT {} ", quoted(name)?).into_bytes();
        cmd.extend(literal(script));
        cmd.extend_from_slice(b"\r\n");
        self.command("PUTSCRIPT", &cmd)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                SieveError::Refused { reply, .. } => SieveError::Rejected(reply),
                e => e,
            })
    }

    /// Makes `name` the active script; `None` deactivates every script.
    pub async fn set_active(&mut self, name: Option<&str>) -> Result<(), SieveError> {
        let cmd = format!("SETACTIVE {}\r\n", quoted(name.unwrap_or(""))?);
        self.command("SETACTIVE", cmd.as_bytes()).await.map(|_| ())
    }

    pub async fn get(&mut self, name: &str) -> Result<String, SieveError> {
        let cmd = format!("GETSCRIPT {}\r\n", quoted(name)?);
        let r = self.command("GETSCRIPT", cmd.as_bytes()).await?;
        match r.lines.first().and_then(|l| l.first()) {
            Some(Token::Str(s)) => Ok(s.clone()),
            _ => Err(SieveError::Protocol("GETSCRIPT returned no script".into())),
        }
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), SieveError> {
        let cmd = format!("DELETESCRIPT {}\r\n", quoted(name)?);
        self.command("DELETESCRIPT", cmd.as_bytes())
            .await
            .map(|_| ())
    }

    /// Ends the session politely; failures here change nothing already done.
    pub async fn logout(mut self) {
        let _ = self.wire.send(b"LOGOUT\r\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.wire.response()).await;
    }
}

async fn within<T>(
    t: Duration,
    f: impl std::future::Future<Output = Result<T, SieveError>>,
) -> Result<T, SieveError> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| SieveError::Timeout(t))?
}

/// Reads one ManageSieve response from `bytes` (the fuzzing entry point): whether it
/// parsed. Never panics, whatever the bytes.
pub async fn parse_response(bytes: &[u8]) -> bool {
    let (mut a, b) = tokio::io::duplex(bytes.len().max(1) + 16);
    let _ = tokio::io::AsyncWriteExt::write_all(&mut a, bytes).await;
    drop(a);
    Wire::new(b).response().await.is_ok()
}

/// A Sieve quoted string (RFC 5228 2.4.2): backslash and double quote escaped; line
/// breaks are allowed inside and kept as CRLF.
pub fn sieve_string(s: &str) -> String {
    let body = s
        .replace("\r\n", "\n")
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\r\n");
    format!("\"{body}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &'static [u8]) -> Result<Response, SieveError> {
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(bytes).await.unwrap();
        drop(a);
        Wire::new(b).response().await
    }

    #[tokio::test]
    async fn responses_with_strings_literals_and_codes_parse() {
        let r = parse(b"\"IMPLEMENTATION\" \"Example\"\r\n\"SIEVE\" \"fileinto vacation\"\r\n\"STARTTLS\"\r\nOK \"ready\"\r\n")
            .await
            .unwrap();
        let c = capabilities(&r.lines);
        assert!(r.ok && c.starttls);
        assert_eq!(c.sieve, ["fileinto", "vacation"]);
        assert_eq!(c.implementation, "Example");

        let r = parse(b"\"a \\\"b\\\"\" ACTIVE\r\n{5}\r\nx\r\nyz\r\nOK\r\n")
            .await
            .unwrap();
        assert_eq!(
            r.lines[0],
            [Token::Str("a \"b\"".into()), Token::Atom("ACTIVE".into())]
        );
        assert_eq!(r.lines[1], [Token::Str("x\r\nyz".into())]);

        let r = parse(b"NO (QUOTA/MAXSIZE) {12}\r\nline 1: bad\r\n")
            .await
            .unwrap();
        assert!(!r.ok);
        assert_eq!(r.text, "(QUOTA/MAXSIZE) line 1: bad");
    }

    #[tokio::test]
    async fn hostile_replies_are_errors_not_panics_or_hangs() {
        for bytes in [
            &b"{99999999999}\r\n"[..],
            b"{2000000}\r\n",
            b"\"unterminated\r\nOK\r\n",
            b"{3x}\r\nabc\r\n",
            b"OK\rX",
            b"",
        ] {
            let (mut a, b) = tokio::io::duplex(4096);
            a.write_all(bytes).await.unwrap();
            drop(a);
            let r = Wire::new(b).response().await;
            assert!(
                matches!(r, Err(SieveError::Protocol(_))),
                "{bytes:?}: {r:?}"
            );
        }
    }

    #[test]
    fn strings_are_escaped_for_commands_and_scripts() {
        assert_eq!(quoted("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quoted("x\r\nLOGOUT").is_err());
        assert_eq!(
            sieve_string("We're \"down\"\nsorry \\o/"),
            "\"We're \\\"down\\\"\r\nsorry \\\\o/\""
        );
        assert_eq!(literal("abc"), b"{3+}\r\nabc");
    }
}
