//! TCP probes with STARTTLS against real servers on loopback (aiosmtpd for SMTP, Dovecot
//! for IMAP and POP3), and scripted servers that refuse the upgrade, do not offer it,
//! greet with garbage or fall silent.

use std::time::{Duration, SystemTime};

use tocsin::probe::{self, Check, Outcome, Pattern, StartTls, TcpCheck, TlsOptions};

use crate::support::{self, Ca, Dovecot, Smtp, reason};

const T: Duration = Duration::from_secs(5);

fn starttls(address: String, protocol: StartTls, ca: Option<&Ca>) -> TcpCheck {
    TcpCheck {
        address,
        tls: Some(match ca {
            Some(ca) => TlsOptions::new(Some(ca.pem_file.path().into()), false, None).unwrap(),
            None => TlsOptions::system(),
        }),
        send: None,
        expect: None,
        cert_min_days: None,
        ip: Default::default(),
        starttls: Some(protocol),
    }
}

async fn run(c: TcpCheck, timeout: Duration) -> Outcome {
    probe::run(&Check::Tcp(c), timeout, SystemTime::now()).await
}

fn smtp_with_starttls(ca: &Ca) -> (Smtp, tempfile::NamedTempFile, tempfile::NamedTempFile) {
    let (cert, key) = ca.leaf_pem_files();
    let smtp = Smtp::start_with(&[
        "--starttls",
        cert.path().to_str().unwrap(),
        key.path().to_str().unwrap(),
    ]);
    (smtp, cert, key)
}

/// The upgrade, then the certificate checked and a dialogue over TLS: EHLO again, as a
/// client must after STARTTLS.
#[tokio::test]
async fn smtp_upgrades_and_talks_over_tls() {
    let ca = Ca::new();
    let (smtp, _cert, _key) = smtp_with_starttls(&ca);
    let mut c = starttls(
        format!("127.0.0.1:{}", smtp.port),
        StartTls::Smtp,
        Some(&ca),
    );
    c.send = Some("EHLO tocsin\r\n".into());
    c.expect = Some(Pattern(regex::Regex::new("(?m)^250[ -]").unwrap()));
    c.cert_min_days = Some(7);
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(o.details.cert_not_after.is_some());
    assert_eq!(o.details.tls_version.as_deref(), Some("TLS 1.3"));

    // Trust matters after an upgrade as it does anywhere: the system roots do not know
    // the test CA.
    let o = run(
        starttls(format!("127.0.0.1:{}", smtp.port), StartTls::Smtp, None),
        T,
    )
    .await;
    assert_eq!(reason(&o), "certificate rejected: issuer is not trusted");
}

#[tokio::test]
async fn imap_and_pop3_upgrade_on_dovecot() {
    let ca = Ca::new();
    let dovecot = Dovecot::start_mail(&ca);
    let imap = format!("127.0.0.1:{}", dovecot.port);
    let mut c = starttls(imap, StartTls::Imap, Some(&ca));
    c.send = Some("t2 CAPABILITY\r\n".into());
    c.expect = Some(Pattern(regex::Regex::new("t2 OK").unwrap()));
    let o = run(c, T).await;
    assert!(o.success, "IMAP: {}\n{}", reason(&o), dovecot.log());
    let pop3 = format!("127.0.0.1:{}", dovecot.pop3_port);
    let mut c = starttls(pop3, StartTls::Pop3, Some(&ca));
    c.send = Some("CAPA\r\n".into());
    c.expect = Some(Pattern(regex::Regex::new("(?m)^\\.\r?$").unwrap()));
    let o = run(c, T).await;
    assert!(o.success, "POP3: {}\n{}", reason(&o), dovecot.log());
    assert!(o.details.cert_not_after.is_some());
}

/// An SMTP server that does not offer STARTTLS (aiosmtpd without a certificate).
#[tokio::test]
async fn a_server_without_starttls_is_named() {
    let plain = Smtp::start(None);
    let o = run(
        starttls(format!("127.0.0.1:{}", plain.port), StartTls::Smtp, None),
        T,
    )
    .await;
    let r = reason(&o);
    assert!(
        r.starts_with("STARTTLS failed: the server does not offer STARTTLS (EHLO: 250-")
            && r.ends_with("250 HELP)"),
        "{r}"
    );
}

#[tokio::test]
async fn refusals_garbage_and_silence_fail_with_what_was_said() {
    // SMTP: offered, then refused.
    let refuses = support::dialogue(b"220 mx.test ESMTP\r\n", |line| {
        if line.starts_with("EHLO") {
            b"250-mx.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n".to_vec()
        } else {
            b"454 4.7.0 TLS not available due to local problem\r\n".to_vec()
        }
    })
    .await;
    let o = run(starttls(refuses.to_string(), StartTls::Smtp, None), T).await;
    assert_eq!(
        reason(&o),
        "STARTTLS failed: the server refused the upgrade: \"454 4.7.0 TLS not available due to local problem\""
    );

    // IMAP: refused with NO.
    let imap_no = support::dialogue(b"* OK ready\r\n", |_| {
        b"t1 NO [UNAVAILABLE] TLS is off\r\n".to_vec()
    })
    .await;
    let o = run(starttls(imap_no.to_string(), StartTls::Imap, None), T).await;
    assert_eq!(
        reason(&o),
        "STARTTLS failed: the server refused the upgrade: \"t1 NO [UNAVAILABLE] TLS is off\""
    );

    // POP3: garbage for a greeting.
    let garbage = support::dialogue(b"\x16\x03\x01 not pop3\r\n", |_| Vec::new()).await;
    let o = run(starttls(garbage.to_string(), StartTls::Pop3, None), T).await;
    assert_eq!(
        reason(&o),
        "STARTTLS failed: unexpected greeting \"not pop3\""
    );

    // An endless greeting: cut at 16 KiB, not read forever.
    let endless = support::dialogue(&[b'2'; 40_000], |_| Vec::new()).await;
    let o = run(starttls(endless.to_string(), StartTls::Smtp, None), T).await;
    assert!(
        reason(&o)
            .starts_with("STARTTLS failed: more than 16384 bytes without the expected answer"),
        "{}",
        reason(&o)
    );

    // Closed after the greeting.
    let closes = support::dialogue(b"+OK hello\r\n", |_| Vec::new()).await;
    let o = run(starttls(closes.to_string(), StartTls::Pop3, None), T).await;
    assert_eq!(
        reason(&o),
        "STARTTLS failed: the server closed the connection during the upgrade (got \"\")"
    );

    // Silent: the deadline names the TLS phase, where the upgrade belongs.
    let silent = support::silent_server().await;
    let o = run(
        starttls(silent.to_string(), StartTls::Smtp, None),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reason(&o), "timed out during tls");
}
