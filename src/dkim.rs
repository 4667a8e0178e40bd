//! DKIM signing (RFC 6376, with Ed25519 from RFC 8463) over the exact bytes a message is
//! sent as: `relaxed/relaxed` canonicalisation, `rsa-sha256` and `ed25519-sha256`, any
//! number of keys at once. Nothing here reads files or the network; the config reads the
//! key files and the mailer calls [`sign`].
//!
//! Written here rather than taken from a crate: lettre's signer (0.11) hashes its
//! DKIM-Signature header folded one way and writes it folded another, so every message
//! failed verification under its default `simple` header canonicalisation, and it keeps
//! only one signature per message. Stalwart's `mail-auth` signs correctly but cannot be
//! built without a DNS resolver backend (a second hickory generation) and its MIME
//! parser, all for what is a hundred lines on `ring`, which tocsin already uses. The
//! suite checks every kind of message tocsin sends against an independent verifier
//! (dkimpy), so this code is held to the standard rather than to itself.

use std::time::SystemTime;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};

/// The signature algorithm a key makes (what the selector's DNS record names in `k=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// As people write it: RSA, Ed25519.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "RSA",
            Algorithm::Ed25519 => "Ed25519",
        }
    }

    /// As `a=` and `k=` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// Why a key file cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither PEM nor a bare Ed25519 seed.
    #[error(
        "holds no RSA or Ed25519 private key: expected PEM (`BEGIN PRIVATE KEY` as written by `openssl genpkey` or `opendkim-genkey`, or `BEGIN RSA PRIVATE KEY`)"
    )]
    NotAKey,
    /// A PEM private key of a kind DKIM does not use (EC, encrypted...).
    #[error("holds a {0} private key; DKIM signs with RSA or Ed25519")]
    Unsupported(&'static str),
    /// RSA, but one that ring refuses: too short, or malformed.
    #[error("holds an RSA key that cannot sign ({0}); use an RSA key of 2048 to 4096 bits")]
    BadRsa(String),
    #[error("holds an Ed25519 key that cannot be read ({0})")]
    BadEd25519(String),
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs.
pub struct Key(Inner);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.algorithm().as_str())
    }
}

impl Key {
    /// Reads a private key: RSA in PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`), Ed25519 in PKCS#8 (v1 or v2), or Ed25519 as the bare base64
    /// seed that some tools print.
    pub fn from_pem(text: &str) -> Result<Key, KeyError> {
        use rustls::pki_types::PrivateKeyDer;
        match rustls_pemfile::private_key(&mut text.as_bytes()) {
            Ok(Some(PrivateKeyDer::Pkcs1(der))) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(|k| Key(Inner::Rsa(k)))
                .map_err(|e| KeyError::BadRsa(e.to_string())),
            Ok(Some(PrivateKeyDer::Pkcs8(der))) => {
                let der = der.secret_pkcs8_der();
                if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(Key(Inner::Ed25519(k)));
                }
                RsaKeyPair::from_pkcs8(der)
                    .map(|k| Key(Inner::Rsa(k)))
                    .map_err(|e| match e.to_string().as_str() {
                        // ring names the algorithm it did not expect; the key is then
                        // neither Ed25519 nor RSA.
                        "WrongAlgorithm" => KeyError::Unsupported("non-RSA, non-Ed25519"),
                        other => KeyError::BadRsa(other.to_string()),
                    })
            }
            Ok(Some(PrivateKeyDer::Sec1(_))) => Err(KeyError::Unsupported("EC (SEC1)")),
            Ok(Some(_)) => Err(KeyError::Unsupported("unknown")),
            Ok(None) | Err(_) => {
                let seed = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| KeyError::NotAKey)?;
                if seed.len() != 32 {
                    return Err(KeyError::NotAKey);
                }
                Ed25519KeyPair::from_seed_unchecked(&seed)
                    .map(|k| Key(Inner::Ed25519(k)))
                    .map_err(|e| KeyError::BadEd25519(e.to_string()))
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Inner::Rsa(_) => Algorithm::Rsa,
            Inner::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The TXT record to publish at `selector._domainkey.domain` for this key.
    pub fn dns_record(&self) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match &self.0 {
            // RSAPublicKey DER, which RFC 6376 section 3.6.1 names for `p=`.
            Inner::Rsa(k) => format!("v=DKIM1; k=rsa; p={}", b64(k.public_key().as_ref())),
            Inner::Ed25519(k) => format!("v=DKIM1; k=ed25519; p={}", b64(k.public_key().as_ref())),
        }
    }

    /// The signature of `data`; RSA can fail only if the system's random source does
    /// (its blinding needs it).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.0 {
            Inner::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    data,
                    &mut sig,
                )?;
                Ok(sig)
            }
            // RFC 8463: Ed25519 signs the SHA-256 hash of the header data.
            Inner::Ed25519(k) => {
                let hash = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// One signature to make: a key, the domain that vouches for the message (`d=`), and the
/// selector under which the key's public half is published (`s=`).
#[derive(Debug)]
pub struct Signer {
    pub domain: String,
    pub selector: String,
    pub key: std::sync::Arc<Key>,
}

/// The header fields signed when present, in the order listed in `h=`. `From` is listed
/// once more than it occurs, so a second From cannot be added without breaking the
/// signature (RFC 6376 section 8.15).
pub const SIGNED: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "mime-version",
    "content-type",
    "auto-submitted",
    "feedback-id",
];

/// Prepends one DKIM-Signature per signer to `message` (CRLF line ends, as formatted for
/// SMTP). Each signature covers the message without the others, so verifiers check each
/// on its own and receivers that know only RSA still find one they can check. Fails only
/// when the system cannot give the randomness RSA signing needs.
pub fn sign(signers: &[Signer], message: &[u8], now: SystemTime) -> Result<Vec<u8>, String> {
    if signers.is_empty() {
        return Ok(message.to_vec());
    }
    let (head, body) = split(message);
    let fields = fields(head);
    let body_hash = base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        &relaxed_body(body),
    ));
    let t = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Which instances are signed: for each listed name, the bottom-most not yet used
    // (RFC 6376 section 5.4.2).
    let mut names = Vec::new();
    let mut data = Vec::new();
    for name in SIGNED {
        let present: Vec<&&[u8]> = fields
            .iter()
            .filter(|f| field_name(f).eq_ignore_ascii_case(name))
            .collect();
        for f in present.iter().rev() {
            names.push(*name);
            data.extend_from_slice(&relaxed_header(f));
        }
        if *name == "from" {
            names.push("from");
        }
    }
    let mut out = Vec::with_capacity(message.len() + signers.len() * 600);
    for s in signers {
        let head = format!(
            "DKIM-Signature: v=1; a={}-sha256; c=relaxed/relaxed; d={}; s={};\r\n\tt={t}; h={};\r\n\tbh={body_hash};\r\n\tb=",
            s.key.algorithm().as_str(),
            s.domain,
            s.selector,
            fold_list(&names),
        );
        let mut signed = data.clone();
        // The signature's own header, its `b=` empty and without a final CRLF.
        let own = relaxed_header(head.as_bytes());
        signed.extend_from_slice(&own[..own.len() - 2]);
        let signature = s
            .key
            .sign(&signed)
            .map_err(|_| format!("cannot sign with DKIM selector `{}`", s.selector))?;
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        out.extend_from_slice(head.as_bytes());
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n\t");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(message);
    Ok(out)
}

/// `h=` with a fold every few names, so no line of the header grows past 78 characters.
fn fold_list(names: &[&str]) -> String {
    let mut s = String::new();
    let mut line = 10;
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push(':');
            line += 1;
            if line + n.len() > 70 {
                s.push_str("\r\n\t");
                line = 1;
            }
        }
        s.push_str(n);
        line += n.len();
    }
    s
}

/// Header block (with its final CRLF) and body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// The header fields, each with its continuation lines and final CRLF.
fn fields(head: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        if head[i] == b'\n' {
            let next = head.get(i + 1);
            if !matches!(next, Some(b' ') | Some(b'\t')) {
                out.push(&head[start..=i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < head.len() {
        out.push(&head[start..]);
    }
    out
}

fn field_name(field: &[u8]) -> &str {
    let end = field.iter().position(|&c| c == b':').unwrap_or(0);
    std::str::from_utf8(&field[..end]).unwrap_or("").trim_end()
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 6376 section 3.4.2: name lower-cased, value unfolded, runs of whitespace made one
/// space, whitespace around the colon and at the end removed; ends in CRLF.
fn relaxed_header(field: &[u8]) -> Vec<u8> {
    let colon = field.iter().position(|&c| c == b':').unwrap_or(field.len());
    let mut out: Vec<u8> = field[..colon]
        .iter()
        .filter(|c| !is_wsp(**c))
        .map(u8::to_ascii_lowercase)
        .collect();
    out.push(b':');
    let value_start = out.len();
    let mut space = false;
    for &c in field.get(colon + 1..).unwrap_or(&[]) {
        match c {
            b'\r' | b'\n' => {}
            c if is_wsp(c) => space = true,
            c => {
                if space && out.len() > value_start {
                    out.push(b' ');
                }
                space = false;
                out.push(c);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 section 3.4.4: whitespace at line ends removed and runs made one space, empty
/// lines at the end removed, a non-empty body ending in CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut blank = 0;
    let lines: Vec<&[u8]> = body.split(|&c| c == b'\n').collect();
    let last = lines.len() - 1;
    for (i, raw) in lines.into_iter().enumerate() {
        if i == last && raw.is_empty() {
            break;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut l = Vec::with_capacity(line.len());
        let mut space = false;
        for &c in line {
            if is_wsp(c) {
                space = true;
            } else {
                if space {
                    l.push(b' ');
                }
                space = false;
                l.push(c);
            }
        }
        if l.is_empty() {
            blank += 1;
            continue;
        }
        for _ in 0..blank {
            out.extend_from_slice(b"\r\n");
        }
        blank = 0;
        out.extend_from_slice(&l);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_canonicalised_as_rfc_6376_shows() {
        // The example of RFC 6376 section 3.4.5.
        assert_eq!(relaxed_header(b"A: X\r\n"), b"a:X\r\n");
        // A colon inside the value is no different from any other character.
        assert_eq!(relaxed_header(b"h: a:\r\n\tb\r\n"), b"h:a: b\r\n");
        assert_eq!(
            relaxed_header(b"B : Y\t\r\n\tZ  \r\n"),
            b"b:Y Z\r\n".to_vec()
        );
        assert_eq!(
            relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"),
            b" C\r\nD E\r\n".to_vec()
        );
        assert_eq!(relaxed_body(b""), b"".to_vec());
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"".to_vec());
        assert_eq!(relaxed_body(b"x"), b"x\r\n".to_vec());
    }

    #[test]
    fn fields_keep_their_continuation_lines() {
        let head = b"From: a\r\nSubject: one\r\n two\r\nTo: b\r\n";
        let f = fields(head);
        assert_eq!(f.len(), 3);
        assert_eq!(f[1], b"Subject: one\r\n two\r\n");
        assert_eq!(field_name(f[1]), "Subject");
    }

    #[test]
    fn what_is_not_a_key_says_so() {
        assert_eq!(Key::from_pem("not a key").unwrap_err(), KeyError::NotAKey);
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(matches!(
            Key::from_pem(&ec.serialize_pem()),
            Err(KeyError::Unsupported(_))
        ));
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let key = Key::from_pem(&ed.serialize_pem()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519);
        assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
    }
}
