//! TLS for probes: trust roots, a verifier that records the peer's certificate chain, and
//! a session store that refuses resumption (every probe does a full handshake) and marks
//! the moment the ClientHello is built, which is where the `tls` phase begins.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
    WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Phase, Reason, Recorder};

/// TLS settings of an HTTP or TCP probe. Equality compares what the config said, not the
/// loaded roots.
#[derive(Clone)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Name to verify the certificate against instead of the target's host.
    pub server_name: Option<String>,
    /// The oldest TLS version accepted (`tls_min_version`); rustls's own floor is 1.2.
    pub min_version: MinVersion,
    /// The client certificate shown to servers that ask for one (mutual TLS).
    pub client_cert: Option<Arc<ClientCert>>,
    verifier: Arc<WebPkiServerVerifier>,
}

/// `tls_min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// A client certificate chain and its key, read from PEM files at load.
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl ClientCert {
    /// Reads the chain (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, TlsConfigError> {
        let read = |key, path: &Path| {
            std::fs::read(path).map_err(|source| TlsConfigError::Read {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let invalid = |key, path: &Path, detail: String| TlsConfigError::Invalid {
            key,
            path: path.display().to_string(),
            detail,
        };
        let pem = read("cert_file", &cert_file)?;
        let chain = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("cert_file", &cert_file, e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsConfigError::Empty {
                key: "cert_file",
                path: cert_file.display().to_string(),
            });
        }
        let pem = read("key_file", &key_file)?;
        let key = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| invalid("key_file", &key_file, e.to_string()))?
            .ok_or_else(|| invalid("key_file", &key_file, "holds no PEM private key".into()))?;
        // The key must be one the provider can sign with, and belong to the certificate.
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| invalid("key_file", &key_file, e.to_string()))?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing)
            .keys_match()
            .map_err(|_| {
                invalid(
                    "key_file",
                    &key_file,
                    format!(
                        "is not the key of the certificate in {}",
                        cert_file.display()
                    ),
                )
            })?;
        Ok(ClientCert {
            cert_file,
            key_file,
            chain,
            key,
        })
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("server_name", &self.server_name)
            .field("min_version", &self.min_version)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl PartialEq for TlsOptions {
    fn eq(&self, o: &Self) -> bool {
        self.ca_file == o.ca_file
            && self.insecure_skip_verify == o.insecure_skip_verify
            && self.server_name == o.server_name
            && self.min_version == o.min_version
            && self
                .client_cert
                .as_ref()
                .map(|c| (&c.cert_file, &c.key_file))
                == o.client_cert.as_ref().map(|c| (&c.cert_file, &c.key_file))
    }
}

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read; `key` is the setting that names it (`ca_file`, ...).
    #[error("cannot read {key} {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{key} {path} holds no PEM certificate")]
    Empty { key: &'static str, path: String },
    /// What the file holds is not usable (a bad certificate, a key that does not fit).
    #[error("{key} {path}: {detail}")]
    Invalid {
        key: &'static str,
        path: String,
        detail: String,
    },
}

impl TlsConfigError {
    /// The setting whose file is at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TlsConfigError::Read { key, .. }
            | TlsConfigError::Empty { key, .. }
            | TlsConfigError::Invalid { key, .. } => key,
        }
    }
}

impl TlsOptions {
    /// Trust from the system's roots plus Mozilla's (loaded once per process), or from
    /// `ca_file` alone when given.
    pub fn new(
        ca_file: Option<PathBuf>,
        insecure_skip_verify: bool,
        server_name: Option<String>,
    ) -> Result<Self, TlsConfigError> {
        let verifier = match &ca_file {
            Some(path) => {
                verifier_for(roots_from_file(path)?).map_err(|detail| TlsConfigError::Invalid {
                    key: "ca_file",
                    path: path.display().to_string(),
                    detail,
                })?
            }
            None => default_verifier(),
        };
        Ok(TlsOptions {
            ca_file,
            insecure_skip_verify,
            server_name,
            min_version: MinVersion::default(),
            client_cert: None,
            verifier,
        })
    }

    /// System and Mozilla roots, verification on.
    pub fn system() -> Self {
        TlsOptions {
            ca_file: None,
            insecure_skip_verify: false,
            server_name: None,
            min_version: MinVersion::default(),
            client_cert: None,
            verifier: default_verifier(),
        }
    }

    /// A client config for one probe run: fresh session store (no resumption), the
    /// recording verifier, and the given ALPN protocols.
    pub(crate) fn client_config(
        &self,
        rec: &Recorder,
        alpn: &[&[u8]],
    ) -> Result<ClientConfig, Reason> {
        let provider = provider();
        let verifier = Recording {
            inner: (!self.insecure_skip_verify).then(|| self.verifier.clone()),
            server_name: self
                .server_name
                .as_deref()
                .and_then(|n| ServerName::try_from(n.to_string()).ok()),
            rec: rec.clone(),
            provider: provider.clone(),
        };
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| Reason::Tls {
                detail: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut cfg = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .map_err(|e| Reason::Tls {
                    detail: format!("client certificate: {e}"),
                })?,
        };
        cfg.resumption = Resumption::store(Arc::new(HelloMark(rec.clone())));
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }
}

/// A plain TLS client configuration (the webpki roots, ring) for tocsin's own outgoing
/// calls such as webhooks.
pub fn client_config_with_roots() -> Result<ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The default trust store is read once per process: reading and parsing the system's
/// bundle costs milliseconds, which at a thousand probes a second would be most of the CPU.
fn default_verifier() -> Arc<WebPkiServerVerifier> {
    static V: OnceLock<Arc<WebPkiServerVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system bundle may hold certificates that are not valid trust anchors;
            // skipping them is what every TLS client does.
            let _ = roots.add(cert);
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            // Building fails only for an empty store; the compiled-in roots never are.
            .expect("the compiled-in Mozilla root store is not empty")
    })
    .clone()
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let name = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
        key: "ca_file",
        path: name.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| TlsConfigError::Invalid {
            key: "ca_file",
            path: name.clone(),
            detail: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsConfigError::Invalid {
            key: "ca_file",
            path: name.clone(),
            detail: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::Empty {
            key: "ca_file",
            path: name,
        });
    }
    Ok(roots)
}

fn verifier_for(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())
}

/// The earliest `notAfter` (Unix seconds) among the given certificates.
pub fn earliest_not_after<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'a>>,
) -> Option<i64> {
    certs
        .into_iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

struct Recording {
    inner: Option<Arc<WebPkiServerVerifier>>,
    server_name: Option<ServerName<'static>>,
    rec: Recorder,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recording")
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = earliest_not_after(std::iter::once(end_entity).chain(intermediates));
        self.rec.details(|d| d.cert_not_after = earliest);
        let verified = match &self.inner {
            Some(v) => v.verify_server_cert(
                end_entity,
                intermediates,
                self.server_name.as_ref().unwrap_or(server_name),
                ocsp,
                now,
            )?,
            None => ServerCertVerified::assertion(),
        };
        // blackbox reports the chain's expiry apart only for a chain it verified.
        if self.inner.is_some() {
            self.rec.details(|d| d.verified_chain_not_after = earliest);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only a TLS 1.2 handshake asks for this signature: the one place the HTTP stack
        // shows which version was negotiated.
        self.rec
            .details(|d| d.tls_version = Some(version_label(rustls::ProtocolVersion::TLSv1_2)));
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.rec
            .details(|d| d.tls_version = Some(version_label(rustls::ProtocolVersion::TLSv1_3)));
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A session store that stores nothing. rustls asks it for a resumable session (and a
/// key-exchange hint) while building the ClientHello, so its first call marks the start
/// of the handshake: the only hook the HTTP stack offers between TCP connect and TLS.
#[derive(Debug)]
struct HelloMark(Recorder);

impl HelloMark {
    fn mark(&self) {
        if self.0.current() != Some(Phase::Tls) {
            self.0.enter(Phase::Tls);
        }
    }
}

impl ClientSessionStore for HelloMark {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.mark();
        None
    }
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.mark();
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {}
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.mark();
        None
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

/// The TLS handshake over `stream` with `host` (SNI, and the name checked unless
/// `server_name` says another), offering `alpn`; the caller has entered the `tls` phase.
/// Notes the negotiated version.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    opts: &TlsOptions,
    rec: &Recorder,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<S>, Reason> {
    let cfg = opts.client_config(rec, alpn)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string()).map_err(|e| Reason::Tls {
        detail: e.to_string(),
    })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(t) => tls_reason(t),
                None => match super::io_reason(&e) {
                    Reason::Io { detail } => Reason::Tls { detail },
                    r => r,
                },
            },
        )?;
    let version = tls.get_ref().1.protocol_version().map(version_label);
    rec.details(|d| d.tls_version = version);
    Ok(tls)
}

/// Fails when the recorded certificate chain expires within `min_days` of `now`.
pub(crate) fn check_cert_days(
    rec: &Recorder,
    min_days: u32,
    now: SystemTime,
) -> Result<(), Reason> {
    let Some(not_after) = rec.details(|d| d.cert_not_after) else {
        return Ok(());
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let left = not_after - now;
    if left < i64::from(min_days) * 86_400 {
        return Err(Reason::CertificateExpiresSoon {
            // Rounded, so a certificate made to expire in three days reads "3 days"
            // a few seconds later, not "2 days".
            days: (left as f64 / 86_400.0).round() as i64,
            min_days,
        });
    }
    Ok(())
}

/// A TLS version as blackbox_exporter labels it: `TLS 1.3`.
pub fn version_label(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        rustls::ProtocolVersion::TLSv1_1 => "TLS 1.1".into(),
        rustls::ProtocolVersion::TLSv1_0 => "TLS 1.0".into(),
        other => format!("{other:?}"),
    }
}

/// Maps a rustls error met during a handshake to a reason.
pub(crate) fn tls_reason(e: &rustls::Error) -> Reason {
    match e {
        rustls::Error::InvalidCertificate(c) => Reason::CertificateInvalid {
            detail: cert_detail(c),
        },
        other => Reason::Tls {
            detail: other.to_string(),
        },
    }
}

fn cert_detail(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError::*;
    match e {
        Expired | ExpiredContext { .. } => "certificate has expired".into(),
        NotValidYet | NotValidYetContext { .. } => "certificate is not valid yet".into(),
        UnknownIssuer => "issuer is not trusted".into(),
        NotValidForName | NotValidForNameContext { .. } => {
            "certificate is not valid for this host name".into()
        }
        Revoked => "certificate is revoked".into(),
        BadSignature => "bad signature".into(),
        other => format!("{other:?}"),
    }
}
