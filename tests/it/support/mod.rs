//! Real servers on loopback for the probe tests: HTTP(S) that can misbehave on purpose,
//! a DNS server (hickory-server) with a small zone, raw hostile UDP/TCP peers, and a
//! certificate authority made fresh for each test run.
#![allow(dead_code)]

pub mod instance;
pub mod netns;
pub mod postgres;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------- certificates

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem_file: tempfile::NamedTempFile,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "tocsin test CA");
        let cert = p.self_signed(&key).unwrap();
        let mut pem_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut pem_file, cert.pem().as_bytes()).unwrap();
        Ca {
            cert,
            key,
            pem_file,
        }
    }

    /// A server config for `localhost`/127.0.0.1 whose certificate is valid from
    /// `from_days` to `to_days` relative to now.
    pub fn server(&self, from_days: i64, to_days: i64) -> Arc<ServerConfig> {
        self.server_with(from_days, to_days, false, false)
    }

    /// A valid server that speaks TLS 1.2 only.
    pub fn server_tls12(&self) -> Arc<ServerConfig> {
        self.server_with(-1, 40, true, false)
    }

    /// A valid server that requires a client certificate signed by this CA.
    pub fn server_mutual(&self) -> Arc<ServerConfig> {
        self.server_with(-1, 40, false, true)
    }

    fn server_with(
        &self,
        from_days: i64,
        to_days: i64,
        tls12_only: bool,
        require_client: bool,
    ) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "localhost");
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::days(from_days);
        p.not_after = now + time::Duration::days(to_days);
        let leaf = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain = vec![leaf.der().clone(), self.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.cert.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut cfg = builder.with_single_cert(chain, key).unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// PEM files of a leaf for `localhost`/127.0.0.1 signed by this CA: (cert, key).
    pub fn leaf_pem_files(&self) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let mut cert = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut cert, leaf.pem().as_bytes()).unwrap();
        let mut k = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut k, key.serialize_pem().as_bytes()).unwrap();
        (cert, k)
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

// ---------------------------------------------------------------- HTTP

/// An HTTP/1.1 server written by hand so that it can break the protocol on purpose.
/// Counts accepted connections.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl HttpServer {
    pub async fn start(tls: Option<Arc<ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => respond(stream, addr).await,
                        Some(cfg) => {
                            if let Ok(s) = TlsAcceptor::from(cfg).accept(stream).await {
                                respond(s, addr).await
                            }
                        }
                    }
                });
            }
        });
        HttpServer { addr, connections }
    }

    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub fn https_url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("https://localhost:{}{path}", self.addr.port())).unwrap()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, addr: SocketAddr) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let simple = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let out = match path.as_str() {
        "/" => simple("200 OK", "<h1>Shop</h1><button>Add to cart</button>"),
        "/error-page" => simple("200 OK", "<h1>Internal error</h1>"),
        "/503" => simple("503 Service Unavailable", "down"),
        "/404" => simple("404 Not Found", "nothing here"),
        "/500" => simple("500 Internal Server Error", "oops"),
        "/health.json" => simple(
            "200 OK",
            r#"{"status":"UP","items":[1,2,3],"version":"2.4.1","checks":[{"name":"db","ok":true},{"name":"cache","ok":false}]}"#,
        ),
        "/auth" => {
            let lower = text.to_ascii_lowercase();
            let basic = lower.contains("\r\nauthorization: basic dg9jc2luonmzy3jlda==\r\n");
            let bearer = text.contains("\r\nauthorization: Bearer t0ken-42\r\n");
            if basic || bearer {
                simple("200 OK", "welcome")
            } else {
                simple("401 Unauthorized", "who are you?")
            }
        }
        "/deep.json" => simple("200 OK", &("[".repeat(100_000) + &"]".repeat(100_000))),
        "/redirect" => format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        "/loop" => "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            simple("200 OK", "Add to cart")
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        "/drip" => {
            // Headers at once, then the body one byte at a time, slower than any timeout.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
            for _ in 0..1000 {
                if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return;
        }
        "/huge-body" => {
            // 200 MB announced and streamed: the probe must stop at max_body.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\nAdd to cart").await;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..3200 {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            return;
        }
        "/huge-headers" => {
            let big = "x".repeat(2 * 1024 * 1024);
            format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 0\r\n\r\n")
        }
        "/garbage" => "\u{0}\u{1}SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n".to_string(),
        "/close" => return,
        _ => simple("404 Not Found", ""),
    };
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A TCP server that accepts and then does nothing at all.
pub async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A TCP server that answers every connection with `reply` after reading `expect_first`
/// bytes (0: at once), then closes.
pub async fn line_server(expect_first: usize, reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = vec![0u8; expect_first];
                if expect_first > 0 && s.read_exact(&mut got).await.is_err() {
                    return;
                }
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// An address on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

// ---------------------------------------------------------------- DNS

/// Serves a small zone: `shop.test.` A/AAAA/MX/TXT (MX with the zone's NS in the
/// authority section and the mail host's address as additional glue), `signed.test.` A
/// with the AD flag (as a validating resolver sets it when asked), `gone.test.` NXDOMAIN,
/// `broken.test.` SERVFAIL, `slow.test.` never answered.
struct Zone(Arc<AtomicUsize>);

fn zone_records(name: &Name, t: RecordType) -> Option<Vec<Record>> {
    let shop = Name::from_str("shop.test.").unwrap();
    if name.to_ascii() == "signed.test." && t == RecordType::A {
        return Some(vec![Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(203, 0, 113, 20)),
        )]);
    }
    if *name != shop {
        return None;
    }
    let rdata: Vec<RData> = match t {
        RecordType::A => vec![
            RData::A(A::new(203, 0, 113, 10)),
            RData::A(A::new(203, 0, 113, 11)),
        ],
        RecordType::AAAA => vec![RData::AAAA(AAAA::from_str("2001:db8::10").unwrap())],
        RecordType::MX => vec![RData::MX(MX::new(
            10,
            Name::from_str("mail.shop.test.").unwrap(),
        ))],
        RecordType::TXT => vec![RData::TXT(TXT::new(vec!["v=spf1 -all".to_string()]))],
        _ => vec![],
    };
    Some(
        rdata
            .into_iter()
            .map(|d| Record::from_rdata(shop.clone(), 300, d))
            .collect(),
    )
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.0.fetch_add(1, Ordering::SeqCst);
        let q = &request.queries()[0];
        let name: Name = q.name().into();
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        let label = name.to_ascii();
        if label == "slow.test." {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let result = if label == "broken.test." {
            response
                .send_response(builder.error_msg(request.header(), ResponseCode::ServFail))
                .await
        } else {
            match zone_records(&name, q.query_type()) {
                Some(records) => {
                    let (mut authority, mut glue) = (Vec::new(), Vec::new());
                    if q.query_type() == RecordType::MX {
                        let ns = Name::from_str("ns1.shop.test.").unwrap();
                        authority.push(Record::from_rdata(
                            name.clone(),
                            300,
                            RData::NS(hickory_server::proto::rr::rdata::NS(ns)),
                        ));
                        glue.push(Record::from_rdata(
                            Name::from_str("mail.shop.test.").unwrap(),
                            300,
                            RData::A(A::new(203, 0, 113, 25)),
                        ));
                    }
                    let validated = request.header().authentic_data()
                        || request.edns().is_some_and(|e| e.flags().dnssec_ok);
                    if label == "signed.test." && validated {
                        header.set_authentic_data(true);
                    }
                    response
                        .send_response(builder.build(
                            header,
                            records.iter(),
                            authority.iter(),
                            [],
                            glue.iter(),
                        ))
                        .await
                }
                None => {
                    response
                        .send_response(builder.error_msg(request.header(), ResponseCode::NXDomain))
                        .await
                }
            }
        };
        result.unwrap_or_else(|_| {
            let mut h = Header::new();
            h.set_response_code(ResponseCode::ServFail);
            h.into()
        })
    }
}

/// Starts the zone on UDP and TCP on the same loopback port.
pub async fn dns_server() -> SocketAddr {
    dns_server_counted().await.0
}

/// The zone server and the number of queries it has received.
pub async fn dns_server_counted() -> (SocketAddr, Arc<AtomicUsize>) {
    // The UDP port's number may be taken for TCP by a test running beside this one:
    // then another pair is tried.
    let mut tries = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(_) if tries < 50 => tries += 1,
            Err(e) => panic!("no loopback port free for both UDP and TCP: {e}"),
        }
    };
    let queries = Arc::new(AtomicUsize::new(0));
    let mut server = ServerFuture::new(Zone(queries.clone()));
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    (addr, queries)
}

/// A UDP "DNS server" that answers every query with `reply(query)`.
pub async fn raw_dns(reply: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let out = reply(&buf[..n]);
            let _ = sock.send_to(&out, from).await;
        }
    });
    addr
}

/// A plain reqwest client for talking to tocsin's own endpoints in tests.
pub fn client() -> reqwest::Client {
    // tocsin's probes bring their own TLS config; this client needs the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An outcome's reason as the user reads it, or "ok".
pub fn reason(o: &tocsin::probe::Outcome) -> String {
    o.reason
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "ok".into())
}

// ---------------------------------------------------------------- SMTP

/// aiosmtpd (Debian's python3-aiosmtpd) in a child process, saving what it accepts;
/// stops when dropped.
pub struct Smtp {
    child: std::process::Child,
    pub port: u16,
    pub out: tempfile::TempDir,
    options: Vec<String>,
}

impl Smtp {
    /// Stops the server (connections are refused until [`Smtp::resume`]).
    pub fn pause(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, keeping what it received. The port lies below
    /// the kernel's ephemeral range, so no outgoing connection can hold it meanwhile; a
    /// failed start is still tried again for a few seconds.
    pub fn resume(&mut self) {
        let options: Vec<&str> = self.options.iter().map(String::as_str).collect();
        let t = std::time::Instant::now();
        self.child = loop {
            match Smtp::spawn(self.port, self.out.path(), &options) {
                Ok(child) => break child,
                Err(e) if t.elapsed() < Duration::from_secs(10) => {
                    eprintln!("aiosmtpd restart on {}: {e}; trying again", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{e}"),
            }
        };
    }

    /// How many messages it has received (cheap: counts files).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.out.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .count()
    }

    /// Waits until it has received `n` messages; the count when it gave up otherwise.
    pub async fn wait_count(&self, n: usize, within: Duration) -> usize {
        let t = std::time::Instant::now();
        loop {
            let c = self.count();
            if c >= n || t.elapsed() > within {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn start(creds: Option<(&str, &str)>) -> Smtp {
        match creds {
            Some((u, p)) => Smtp::start_with(&["--auth", u, p]),
            None => Smtp::start_with(&[]),
        }
    }

    /// With the fixture's options (`--starttls CERT KEY`, `--implicit CERT KEY`, ...).
    pub fn start_with(options: &[&str]) -> Smtp {
        // A port the server can take again after a pause (see `resume`).
        let port = free_port();
        let out = tempfile::tempdir().unwrap();
        let child = Smtp::spawn(port, out.path(), options).unwrap_or_else(|e| panic!("{e}"));
        Smtp {
            child,
            port,
            out,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn spawn(
        port: u16,
        out: &std::path::Path,
        options: &[&str],
    ) -> Result<std::process::Child, String> {
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg("tests/fixtures/smtp_server.py")
            .arg(port.to_string())
            .arg(out);
        cmd.args(options);
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            // aiosmtpd warns that AUTH without TLS is allowed, which tests rely on.
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs python3-aiosmtpd)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "aiosmtpd did not start on port {port} (is python3-aiosmtpd installed? is the port taken?)"
            ));
        }
        Ok(child)
    }

    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .unwrap()
                .to_string_lossy()
                .parse::<u32>()
                .unwrap_or(0)
        });
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// "envelope recipients | subject" of each message, in arrival order.
    pub fn subjects(&self) -> Vec<String> {
        self.mails()
            .iter()
            .map(|m| {
                let to = m
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Envelope-To: "))
                    .unwrap_or_default()
                    .to_string();
                let subject = m
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_string();
                format!("{to} | {subject}")
            })
            .collect()
    }

    /// Waits until `n` received subjects contain `text`.
    pub async fn wait_for_text(&self, text: &str, n: usize, within: Duration) -> Vec<String> {
        let t = std::time::Instant::now();
        loop {
            let s = self.subjects();
            if s.iter().filter(|x| x.contains(text)).count() >= n {
                return s;
            }
            assert!(
                t.elapsed() < within,
                "expected {n} mails with {text:?} within {within:?}, got {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let t = std::time::Instant::now();
        loop {
            let s = self.subjects();
            if s.len() >= n {
                return s;
            }
            assert!(
                t.elapsed() < within,
                "expected {n} mails within {within:?}, got {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// SIGKILL, as a crash.
    pub fn crash(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and whether it then exited successfully.
    pub fn stop(&mut self) -> bool {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP target whose health the test switches: 200 "Add to cart" while up, 503 while
/// down.
pub async fn switchable_target() -> (SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = up.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let healthy = flag.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let reply: &[u8] = if healthy {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nAdd to cart"
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown"
                };
                let _ = s.write_all(reply).await;
            });
        }
    });
    (addr, up)
}

/// A port below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default) that is free now: a server stopped and started again on it cannot find it
/// taken by some outgoing connection's local port, nor by a connection to itself.
/// Servers tests stop and start again (SMTP, tocsin itself) all take their port here.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_001));
    loop {
        let port = rand::random_range(from..to);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------- Dovecot (ManageSieve)

/// Whether the port greets as ManageSieve does (`"IMPLEMENTATION" "Dovecot ..."`).
/// Whether `port` greets as Dovecot's `protocol` does.
fn answers_as_dovecot(port: u16, greeting: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(greeting)
}

/// A real Dovecot with Pigeonhole's managesieved on loopback (Debian's packages, which
/// scripts/test.sh installs): users `support@example.com` and `sales@example.com`, and a
/// master user `tocsin` (password `master-pw`) who may act for either through SASL
/// PLAIN's authorization identity. STARTTLS with a certificate from `ca`.
pub struct Dovecot {
    /// ManageSieve (with `start`), IMAP (with `start_mail`).
    pub port: u16,
    /// POP3 (with `start_mail`).
    pub pop3_port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Dovecot {
    /// ManageSieve. `extra` is appended to the configuration (e.g. to drop the vacation
    /// extension).
    pub fn start(ca: &Ca, extra: &str) -> Dovecot {
        Dovecot::launch(ca, false, extra)
    }

    /// IMAP (`port`) and POP3 (`pop3_port`), both offering STARTTLS.
    pub fn start_mail(ca: &Ca) -> Dovecot {
        Dovecot::launch(ca, true, "")
    }

    fn launch(ca: &Ca, mail: bool, extra: &str) -> Dovecot {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // Mail processes run as nobody; their homes must be theirs.
        std::os::unix::fs::chown(d.join("home"), Some(65534), Some(65534)).unwrap();
        let (cert, key) = ca.leaf_pem_files();
        std::fs::copy(cert.path(), d.join("cert.pem")).unwrap();
        std::fs::copy(key.path(), d.join("key.pem")).unwrap();
        std::fs::write(
            d.join("passwd"),
            "support@example.com:{PLAIN}support-pw\nsales@example.com:{PLAIN}sales-pw\n",
        )
        .unwrap();
        std::fs::write(d.join("masters"), "tocsin:{PLAIN}master-pw\n").unwrap();
        for _ in 0..5 {
            let (port, pop3_port) = (free_port(), free_port());
            let p = d.display();
            let services = if mail {
                format!(
                    "protocols = imap pop3
    service imap-login {{
      chroot =
      inet_listener imap {{
        address = 127.0.0.1
        port = {port}
      }}
      inet_listener imaps {{
        port = 0
      }}
    }}
    service pop3-login {{
      chroot =
      inet_listener pop3 {{
        address = 127.0.0.1
        port = {pop3_port}
      }}
      inet_listener pop3s {{
        port = 0
      }}
    }}"
                )
            } else {
                format!(
                    "protocols = sieve
    service managesieve-login {{
      chroot =
      inet_listener sieve {{
        address = 127.0.0.1
        port = {port}
      }}
    }}"
                )
            };
            std::fs::write(
                d.join("dovecot.conf"),
                format!(
                    "base_dir = {p}/run
    state_dir = {p}/state
    log_path = {p}/dovecot.log
    listen = 127.0.0.1
    ssl = yes
    ssl_cert = <{p}/cert.pem
    ssl_key = <{p}/key.pem
    disable_plaintext_auth = no
    auth_mechanisms = plain
    first_valid_uid = 1
    mail_location = maildir:~/Maildir
    passdb {{
      driver = passwd-file
      master = yes
      args = scheme=PLAIN {p}/masters
      pass = yes
    }}
    passdb {{
      driver = passwd-file
      args = scheme=PLAIN {p}/passwd
    }}
    userdb {{
      driver = static
      args = uid=65534 gid=65534 home={p}/home/%u
    }}
    service anvil {{
      chroot =
    }}
    {services}
    plugin {{
      sieve = file:~/sieve;active=~/.dovecot.sieve
    }}
    {extra}
    "
                ),
            )
            .unwrap();
            let mut child = std::process::Command::new("dovecot")
                .args(["-F", "-c"])
                .arg(d.join("dovecot.conf"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dovecot (scripts/test.sh installs dovecot-managesieved)");
            let t = std::time::Instant::now();
            loop {
                let up = if mail {
                    answers_as_dovecot(port, b"* OK") && answers_as_dovecot(pop3_port, b"+OK")
                } else {
                    answers_as_dovecot(port, b"\"IMPLEMENTATION\"")
                };
                if up {
                    return Dovecot {
                        port,
                        pop3_port,
                        dir,
                        child,
                    };
                }
                // The port, free a moment ago, was taken by a parallel test before Dovecot
                // bound it: Dovecot gave up, or the port answers as something else. Try
                // another port.
                if child.try_wait().ok().flatten().is_some()
                    || t.elapsed() > Duration::from_secs(20)
                {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "dovecot did not start: {}",
            std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- tocsin as a process

/// `tocsin run --config cfg` with RUST_LOG=info, its log appended to `log`, and `env`
/// added to its environment.
pub fn run_tocsin(cfg: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// Polls `f` every 100 ms until it holds; after `within` fails, naming `what` and showing
/// `explain()` (a log, usually).
pub async fn until(
    what: &str,
    within: Duration,
    explain: &dyn Fn() -> String,
    f: impl Fn() -> bool,
) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < within,
            "timed out waiting for {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`until`] for a condition that must ask over the network.
pub async fn until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    explain: &dyn Fn() -> String,
    f: impl Fn() -> F,
) {
    let t = std::time::Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < within,
            "timed out waiting for {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mails tocsin wrote to `<dir>/var/mail` (no SMTP configured): (To, Subject, text).
pub fn spooled(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("var/mail"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let raw = std::fs::read(e.path()).unwrap();
        let Some(m) = mail_parser::MessageParser::default().parse(&raw) else {
            continue;
        };
        out.push((
            m.to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_string(),
            m.subject().unwrap_or_default().to_string(),
            m.body_text(0).unwrap_or_default().to_string(),
        ));
    }
    out
}

/// POSTs `body` to tocsin's `path` with the bearer `token`: whether it answered 2xx.
pub async fn api_post(port: u16, path: &str, token: &str, body: serde_json::Value) -> bool {
    client()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// GETs tocsin's `path` with the bearer `token`: the body.
pub async fn api_get(port: u16, path: &str, token: &str) -> String {
    client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A probes.yaml watching the switchable `target` as service `shop` ("Web shop", probed
/// every second, two failed rounds open an incident and two good ones close it), with
/// `shop_keys` (lines such as `audience: customers`) added to the service and `rest`
/// after it: more services (`  - id: api ...`) or top-level keys.
pub fn shop_config(port: u16, target: SocketAddr, shop_keys: &str, rest: &str) -> String {
    let keys: String = shop_keys
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("    {}\n", l.trim()))
        .collect();
    format!(
        "listen: 127.0.0.1:{port}
data_dir: ./var
allow_insecure_links: true
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
{keys}    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
{rest}"
    )
}

/// tocsin's `/metrics` as text.
pub async fn metrics(port: u16) -> String {
    client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ---------------------------------------------------------------- the App in-process

/// Where an in-process App's manual clock starts (2027-01-15).
pub fn epoch() -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// tocsin's App in this process, on a manual clock: the tasks `tocsin run` starts, mail
/// as the config says (`.eml` files or SMTP), live probes. Hours pass with
/// `clock.advance`, while probes, mail and the store stay real.
pub struct InProcess {
    pub clock: Arc<tocsin::clock::ManualClock>,
    pub store: tocsin::store::SharedStore,
    pub engine: tocsin::engine::Handle,
    /// Where it serves HTTP (the config's `listen`, or the port given for port 0).
    pub port: u16,
    cancel: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<Result<(), tocsin::app::AppError>>,
}

impl InProcess {
    /// Loads `cfg` with `env` as the environment and starts the App at [`epoch`].
    pub async fn start(cfg: &std::path::Path, env: &[(&str, &str)]) -> InProcess {
        use tocsin::notify::mail::Mailer;
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let config = tocsin::config::load_with(cfg, &lookup).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(tocsin::clock::ManualClock::new(epoch()));
        let store = tocsin::store::SharedStore::new(
            tocsin::app::open_store(&config).unwrap_or_else(|e| panic!("{e}")),
        );
        let heartbeats = tocsin::heartbeat::Heartbeats::new(store.clone(), clock.clone());
        let deps = tocsin::app::Deps {
            clock: clock.clone(),
            store: store.clone(),
            staff_mail: Arc::new(Mailer::new(&config.mail, &config.data_dir).unwrap()),
            campaign_mail: Arc::new(Mailer::new(&config.mail, &config.data_dir).unwrap()),
            webhooks_kept: None,
            channels_kept: None,
            runner: Arc::new(heartbeats.runner(tocsin::scheduler::LiveRunner::default())),
            heartbeats,
            leadership: None,
            votes: None,
        };
        let app = tocsin::app::App::build(config, cfg, deps).await.unwrap();
        let port = app.local_addr().unwrap().port();
        let engine = app.engine();
        let cancel = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(app.run(cancel.clone()));
        InProcess {
            clock,
            store,
            engine,
            port,
            cancel,
            running,
        }
    }

    /// Stops it as SIGTERM would, and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.running.await.unwrap().unwrap();
    }

    /// Waits until everything decided has been carried out.
    pub async fn settled(&self, explain: &dyn Fn() -> String) {
        until(
            "everything decided carried out",
            Duration::from_secs(15),
            explain,
            || self.store.lock().pending().unwrap().total() == 0,
        )
        .await;
    }
}

/// tocsin's `/metrics` as text; None while it does not answer.
async fn metrics_text(port: u16) -> Option<String> {
    let r = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// The value of the first sample on tocsin's `/metrics` (at `port`) whose line starts
/// with `series` (a name, or a name with the start of its labels); None while tocsin does
/// not answer or has no such sample.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    metrics_text(port)
        .await?
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until `series` on tocsin's `/metrics` satisfies `ok`: the positive signal that
/// proves a negative (after "everything decided is carried out", nothing more is sent).
pub async fn until_metric(
    port: u16,
    series: &str,
    within: Duration,
    explain: &dyn Fn() -> String,
    ok: impl Fn(f64) -> bool,
) {
    let t = std::time::Instant::now();
    loop {
        if metric(port, series).await.is_some_and(&ok) {
            return;
        }
        assert!(
            t.elapsed() < within,
            "timed out waiting for {series}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `more` further runs of `service`'s probes have ended with `result`
/// (`success`, `failure`). Runs are decided as they are counted, so once the last is
/// counted the ones before it have been decided on.
pub async fn runs(port: u16, service: &str, result: &str, more: u64, explain: &dyn Fn() -> String) {
    let series = |m: &str| -> u64 {
        m.lines()
            .filter(|l| {
                l.starts_with("tocsin_probe_runs_total{")
                    && l.contains(&format!("service=\"{service}\""))
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let read = || async { series(&metrics_text(port).await.unwrap_or_default()) };
    let before = read().await;
    let t = std::time::Instant::now();
    while read().await < before + more {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- HTTP proxy

/// A forward proxy: answers plain requests (absolute-form) itself with `200 via proxy`,
/// tunnels `CONNECT` to `tunnel_to`, and, with `login`, refuses requests without that
/// `Proxy-Authorization` with 407. Keeps each request head it saw.
pub struct Proxy {
    pub addr: SocketAddr,
    pub heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(tunnel_to: Option<SocketAddr>, login: Option<&'static str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut s).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head.clone());
                    if let Some(l) = login {
                        use base64::Engine as _;
                        let want = format!(
                            "proxy-authorization: basic {}",
                            base64::engine::general_purpose::STANDARD.encode(l)
                        );
                        if !head
                            .to_ascii_lowercase()
                            .contains(&want.to_ascii_lowercase())
                        {
                            let _ = s
                                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    if head.starts_with("CONNECT ") {
                        let Some(to) = tunnel_to else { return };
                        let Ok(mut up) = tokio::net::TcpStream::connect(to).await else {
                            return;
                        };
                        let _ = s
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                    } else {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy")
                            .await;
                    }
                });
            }
        });
        Proxy { addr, heads }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A TCP server that sends `greeting`, then answers each line it receives (CRLF
/// stripped) with `reply(line)`; an empty reply closes the connection.
pub async fn dialogue(greeting: &'static [u8], reply: fn(&str) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if s.write_all(greeting).await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read(&mut b).await.unwrap_or(0) == 1 {
                    if b[0] != b'\n' {
                        line.push(b[0]);
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    line.clear();
                    let out = reply(&text);
                    if out.is_empty() || s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- gRPC

/// A gRPC health server (tonic-health's service, HTTP/2 by hyper) on loopback, over TLS
/// with `tls` or plaintext. Its reporter sets each service's status.
pub async fn grpc_health(
    tls: Option<Arc<ServerConfig>>,
) -> (SocketAddr, tonic_health::server::HealthReporter) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                let http2 =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
                let _ = match tls {
                    None => http2.serve_connection(TokioIo::new(tcp), service).await,
                    Some(cfg) => {
                        let Ok(s) = TlsAcceptor::from(cfg).accept(tcp).await else {
                            return;
                        };
                        http2.serve_connection(TokioIo::new(s), service).await
                    }
                };
            });
        }
    });
    (addr, reporter)
}

/// An HTTP request head, read a byte at a time (so nothing after it is taken), at most
/// 16 KiB; `None` when the peer closes first.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An HTTP/1.1 server that keeps each request head it receives and answers every request
/// with `reply(head)` (a whole response).
pub async fn recording_http(
    reply: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (seen, reply) = (seen.clone(), reply.clone());
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                seen.lock().unwrap().push(head.clone());
                let _ = s.write_all(reply(&head).as_bytes()).await;
            });
        }
    });
    (addr, heads)
}

// ---------------------------------------------------------------- full disk

/// A tmpfs of its own for `data_dir`, unmounted on drop (the suite runs as root).
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tocsin-test"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }

    /// Writes until the disk is full; the file is removed to give the space back.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        // Down to the last byte: a page's worth left free would let small writes through.
        for size in [64 * 1024, 4096, 512, 1] {
            let block = vec![0u8; size];
            while f.write_all(&block).is_ok() {}
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

// ---------------------------------------------------------------- a real browser

/// Loads `url` in headless Chromium on a phone-sized screen, saves a screenshot to
/// `shot`, and returns the console messages it logged (a page that breaks its content
/// policy logs there) and the DOM as the browser built it.
pub fn browse(url: &str, shot: &std::path::Path) -> (Vec<String>, String) {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=390,844",
            "--dump-dom",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium (scripts/test.sh installs it)");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 1000),
        "no screenshot of {url}: {log}"
    );
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (console, String::from_utf8_lossy(&out.stdout).into_owned())
}
