//! Mail transport on lettre: SMTP (`smtp://` with STARTTLS, `smtps://` with implicit TLS,
//! plain text only when `allow_plain` names a loopback server), or, with no SMTP
//! configured, RFC 5322 `.eml` files in `data_dir/mail/`.
//!
//! Every send has a real deadline around the whole exchange (lettre's own timeout covers
//! each socket operation, not the exchange), and failures are sorted into transient
//! (retry later) and permanent (the server's 5xx reply, recorded as such).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Mail;

/// A message to send: one sender, its recipients, a subject, and text and HTML bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Extra headers (`List-Unsubscribe`, ...), by name.
    pub headers: Vec<(&'static str, String)>,
    /// A fixed Message-ID (without brackets), so a message sent again after a crash is
    /// recognisably the same one; a fresh one when None.
    pub message_id: Option<String>,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Worth trying again later: a 4xx reply, a timeout, a connection that failed.
    #[error("temporary mail failure: {0}")]
    Transient(String),
    /// Will not succeed as it is: the server's 5xx reply, or an address it cannot take.
    #[error("permanent mail failure: {0}")]
    Permanent(String),
    /// The transport could not be set up from the configuration.
    #[error("mail is misconfigured: {0}")]
    Config(String),
}

enum Transport {
    Files(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Nothing leaves: each message is built as it would be sent and kept (a drill).
    Record(std::sync::Mutex<Vec<Outgoing>>),
}

/// Where campaign sessions connect, and how (see [`Mailer::send_on`]).
#[derive(Clone)]
struct Endpoint {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// The EHLO name: the configured `helo` or the From domain, never a bare host name.
    hello: ClientId,
}

/// An SMTP session kept open between messages by one campaign worker.
pub type Session = Option<AsyncSmtpConnection>;

pub struct Mailer {
    transport: Transport,
    endpoint: Option<Endpoint>,
    from: Mailbox,
    deadline: Duration,
    spool: Option<PathBuf>,
    /// One signature per key, over the bytes sent.
    dkim: Vec<crate::dkim::Signer>,
    /// Headers every message carries: Reply-To and the auto-reply suppressors.
    reply_to: Option<Mailbox>,
}

impl Mailer {
    /// Builds the transport named by `mail`, with the credentials the config read at load:
    /// a missing secret fails loudly at start-up rather than at the first outage.
    pub fn new(mail: &Mail, data_dir: &Path) -> Result<Mailer, MailError> {
        let from = sender(mail)?;
        let Some(url) = &mail.smtp else {
            let dir = data_dir.join("mail");
            // The spool holds customers' addresses and staff's signed links: tocsin's alone.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .and_then(|_| {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| MailError::Config(format!("cannot create {}: {e}", dir.display())))?;
            return Ok(Mailer {
                transport: Transport::Files(AsyncFileTransport::new(&dir)),
                endpoint: None,
                from,
                deadline: mail.timeout,
                spool: Some(dir),
                dkim: signers(mail),
                reply_to: reply_to(mail)?,
            });
        };
        let host = url
            .host_str()
            .ok_or_else(|| MailError::Config(format!("`smtp` URL {url} has no host")))?
            .to_string();
        let implicit = url.scheme() == "smtps";
        let port = url.port().unwrap_or(if implicit { 465 } else { 587 });
        let domain = host.trim_matches(|c| c == '[' || c == ']').to_string();
        let params = match &mail.ca_pem {
            None => TlsParameters::new(domain),
            Some(pem) => {
                let ca = Certificate::from_pem(pem)
                    .map_err(|e| MailError::Config(format!("mail.ca_file: {e}")))?;
                TlsParameters::builder(domain)
                    .add_root_certificate(ca)
                    .build_rustls()
            }
        }
        .map_err(|e| MailError::Config(format!("TLS for {host}: {e}")))?;
        let tls = match (implicit, mail.allow_plain) {
            (true, _) => Tls::Wrapper(params),
            (false, false) => Tls::Required(params),
            (false, true) => Tls::Opportunistic(params),
        };
        // The pool keeps up to `connections` sessions open; the campaign sender bounds how
        // many messages are in flight (the pool alone does not).
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .hello_name(ClientId::Domain(mail.helo.clone()))
            .port(port)
            .tls(tls.clone())
            .timeout(Some(mail.timeout))
            .pool_config(
                lettre::transport::smtp::PoolConfig::new()
                    .max_size(mail.connections as u32)
                    .idle_timeout(Duration::from_secs(30)),
            );
        let mut credentials = None;
        match (&mail.username_env, &mail.password_env) {
            (Some(u), Some(p)) => {
                let user = mail.username.as_ref().ok_or_else(|| {
                    MailError::Config(format!(
                        "environment variable `{u}` (mail.username_env) is not set"
                    ))
                })?;
                let pass = mail.password.as_ref().ok_or_else(|| {
                    MailError::Config(format!(
                        "environment variable `{p}` (mail.password_env) is not set"
                    ))
                })?;
                let c = Credentials::new(user.expose().to_string(), pass.expose().to_string());
                builder = builder.credentials(c.clone());
                credentials = Some(c);
            }
            (None, None) => {}
            _ => {
                return Err(MailError::Config(
                    "set both `username_env` and `password_env`, or neither".into(),
                ));
            }
        }
        Ok(Mailer {
            transport: Transport::Smtp(builder.build()),
            endpoint: Some(Endpoint {
                host,
                port,
                tls,
                credentials,
                timeout: mail.timeout,
                hello: ClientId::Domain(mail.helo.clone()),
            }),
            from,
            deadline: mail.timeout,
            spool: None,
            dkim: signers(mail),
            reply_to: reply_to(mail)?,
        })
    }

    /// A mailer that sends nothing: each message is built exactly as `mail` would send it
    /// (so a message the server would refuse is refused here too) and kept for
    /// [`Mailer::recorded`].
    pub fn recording(mail: &Mail) -> Result<Mailer, MailError> {
        let from = sender(mail)?;
        Ok(Mailer {
            transport: Transport::Record(Default::default()),
            endpoint: None,
            from,
            deadline: mail.timeout,
            spool: None,
            dkim: signers(mail),
            reply_to: reply_to(mail)?,
        })
    }

    /// What a recording mailer was given, in order.
    pub fn recorded(&self) -> Vec<Outgoing> {
        match &self.transport {
            Transport::Record(kept) => kept.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => Vec::new(),
        }
    }

    /// Where `.eml` files go, when mail is written to files.
    pub fn spool(&self) -> Option<&Path> {
        self.spool.as_deref()
    }

    /// Sends one message on `session`, a connection its caller keeps between messages
    /// (opened here when absent or broken, dropped after any failure), within the
    /// deadline. Campaign workers each own one session, so the number of workers bounds
    /// the connections and the messages in flight.
    ///
    /// Sessions are opened here rather than through lettre's pool so that the socket has
    /// TCP_NODELAY: lettre writes a message's end and waits for the reply, and with
    /// Nagle's algorithm on, each message then waits for the server's delayed ACK (about
    /// 40 ms on Linux), which capped a session at about 25 messages a second.
    pub async fn send_on(&self, session: &mut Session, msg: &Outgoing) -> Result<(), MailError> {
        let Some(endpoint) = &self.endpoint else {
            return self.send(msg).await;
        };
        let (envelope, raw) = self.render(msg)?;
        let attempt = async {
            if session.as_ref().is_none_or(|c| c.has_broken()) {
                *session = Some(open(endpoint).await?);
            }
            match session.as_mut() {
                Some(c) => c.send(&envelope, &raw).await.map(|_| ()).map_err(classify),
                None => Err(MailError::Transient("no SMTP session".into())),
            }
        };
        let sent = match tokio::time::timeout(self.deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(MailError::Transient(format!(
                "no answer from the mail server within {}",
                humantime::format_duration(self.deadline)
            ))),
        };
        if sent.is_err() {
            // The session's state is unknown after a failure: the next message starts afresh.
            *session = None;
        }
        sent
    }

    /// Sends one message, within the deadline.
    pub async fn send(&self, msg: &Outgoing) -> Result<(), MailError> {
        let (envelope, raw) = self.render(msg)?;
        let sent = match &self.transport {
            Transport::Files(t) => tokio::time::timeout(self.deadline, t.send_raw(&envelope, &raw))
                .await
                .map(|r| {
                    let id = r.map_err(|e| {
                        MailError::Transient(format!("cannot write the message file: {e}"))
                    })?;
                    // Written under the umask; made the owner's alone.
                    if let Some(dir) = &self.spool {
                        let file = dir.join(format!("{id}.eml"));
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                            .map_err(|e| {
                                MailError::Transient(format!(
                                    "cannot make {} private: {e}",
                                    file.display()
                                ))
                            })?;
                    }
                    Ok(())
                }),
            Transport::Smtp(t) => tokio::time::timeout(self.deadline, t.send_raw(&envelope, &raw))
                .await
                .map(|r| r.map(|_| ()).map_err(classify)),
            Transport::Record(kept) => {
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(msg.clone());
                Ok(Ok(()))
            }
        };
        sent.unwrap_or_else(|_| {
            Err(MailError::Transient(format!(
                "no answer from the mail server within {}",
                humantime::format_duration(self.deadline)
            )))
        })
    }

    fn build(&self, msg: &Outgoing) -> Result<Message, MailError> {
        // Every message gets a Message-ID (RFC 5322): the caller's fixed one, or a random
        // one at the sender's domain, never the machine's name.
        let id = match &msg.message_id {
            Some(id) => format!("<{id}>"),
            None => format!("<{:032x}@{}>", rand::random::<u128>(), self.from_domain()),
        };
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.clone())
            .message_id(Some(id));
        if let Some(r) = &self.reply_to {
            b = b.reply_to(r.clone());
        }
        // Out-of-office replies and read receipts are not wanted for any of tocsin's
        // mail (RFC 3834, and Exchange's own header).
        let mut headers: Vec<(&str, &str)> = vec![
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
        ];
        headers.retain(|(n, _)| !msg.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)));
        for (name, value) in headers
            .into_iter()
            .chain(msg.headers.iter().map(|(n, v)| (*n, v.as_str())))
        {
            if value.contains(['\r', '\n']) {
                return Err(MailError::Permanent(format!(
                    "header {name} holds a line break"
                )));
            }
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value.to_string(),
            ));
        }
        if msg.to.is_empty() {
            return Err(MailError::Permanent("the message has no recipient".into()));
        }
        for to in &msg.to {
            let mb: Mailbox = to
                .parse()
                .map_err(|e| MailError::Permanent(format!("recipient {to:?}: {e}")))?;
            b = b.to(mb);
        }
        b.multipart(MultiPart::alternative_plain_html(
            msg.text.clone(),
            msg.html.clone(),
        ))
        .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))
    }

    /// The envelope and the bytes that go out: the message as formatted, with one DKIM
    /// signature per configured key over exactly those bytes.
    fn render(&self, msg: &Outgoing) -> Result<(lettre::address::Envelope, Vec<u8>), MailError> {
        let message = self.build(msg)?;
        // A signature that cannot be made now (no randomness) may be made on a retry.
        let raw = crate::dkim::sign(&self.dkim, &message.formatted(), SystemTime::now())
            .map_err(MailError::Transient)?;
        Ok((message.envelope().clone(), raw))
    }

    /// The message exactly as it would be sent (for previews and the verifier tests).
    pub fn formatted(&self, msg: &Outgoing) -> Result<Vec<u8>, MailError> {
        Ok(self.render(msg)?.1)
    }

    /// The domain of the sender's address (for Message-IDs).
    pub fn from_domain(&self) -> String {
        self.from.email.domain().to_string()
    }
}

/// The `From` of every message: `mail.from`, or tocsin at localhost.
fn sender(mail: &Mail) -> Result<Mailbox, MailError> {
    let text = mail.from.as_deref().unwrap_or("tocsin <tocsin@localhost>");
    text.parse()
        .map_err(|e| MailError::Config(format!("`from` {text:?}: {e}")))
}

/// Opens a session: TCP with TCP_NODELAY, EHLO, STARTTLS as the config requires, AUTH.
async fn open(e: &Endpoint) -> Result<AsyncSmtpConnection, MailError> {
    let hello = e.hello.clone();
    let mut conn = match &e.tls {
        Tls::Wrapper(params) => {
            // Implicit TLS: lettre owns the socket (without TCP_NODELAY).
            AsyncSmtpConnection::connect_tokio1(
                (e.host.as_str(), e.port),
                Some(e.timeout),
                &hello,
                Some(params.clone()),
                None,
            )
            .await
            .map_err(classify)?
        }
        tls => {
            let host = e.host.trim_matches(|c| c == '[' || c == ']');
            let tcp = tokio::net::TcpStream::connect((host, e.port))
                .await
                .map_err(|err| {
                    MailError::Transient(format!("cannot connect to {host}:{}: {err}", e.port))
                })?;
            tcp.set_nodelay(true)
                .map_err(|err| MailError::Transient(format!("socket: {err}")))?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                .await
                .map_err(classify)?;
            match tls {
                Tls::Required(params) => conn
                    .starttls(params.clone(), &hello)
                    .await
                    .map_err(classify)?,
                Tls::Opportunistic(params) if conn.can_starttls() => conn
                    .starttls(params.clone(), &hello)
                    .await
                    .map_err(classify)?,
                _ => {}
            }
            conn
        }
    };
    if let Some(c) = &e.credentials {
        conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
            .await
            .map_err(classify)?;
    }
    Ok(conn)
}

fn signers(mail: &Mail) -> Vec<crate::dkim::Signer> {
    mail.dkim
        .iter()
        .map(|d| crate::dkim::Signer {
            domain: d.domain.clone(),
            selector: d.selector.clone(),
            key: d.key.clone(),
        })
        .collect()
}

fn reply_to(mail: &Mail) -> Result<Option<Mailbox>, MailError> {
    mail.reply_to
        .as_deref()
        .map(|r| {
            r.parse()
                .map_err(|e| MailError::Config(format!("company.email {r:?}: {e}")))
        })
        .transpose()
}

/// 5xx replies are permanent; everything else (4xx, network, TLS, timeouts) may pass later.
fn classify(e: lettre::transport::smtp::Error) -> MailError {
    let text = e.to_string();
    if e.is_permanent() {
        MailError::Permanent(text)
    } else {
        MailError::Transient(text)
    }
}
