//! The mail transport against a real SMTP server on loopback (aiosmtpd, installed by
//! scripts/test.sh) and as `.eml` files: delivery, 4xx/5xx sorting, AUTH with credentials
//! from the environment, TLS required unless allowed, and the deadline.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use tocsin::config::Mail;
use tocsin::notify::mail::{MailError, Mailer, Outgoing};
use tocsin::secret::Secret;

fn mail(smtp: Option<String>, allow_plain: bool) -> Mail {
    Mail {
        from: Some("Example Status <status@example.com>".into()),
        smtp: smtp.map(|s| s.parse().unwrap()),
        username_env: None,
        password_env: None,
        username: None,
        password: None,
        max_per_second: 100,
        timeout: Duration::from_secs(5),
        allow_plain,
        ca_pem: None,
        max_campaign_size: 50_000,
        connections: 4,
        dkim: Vec::new(),
        helo: "example.com".into(),
        reply_to: None,
        unsubscribe_address: None,
    }
}

fn msg(to: &[&str]) -> Outgoing {
    Outgoing {
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: "[tocsin] Web shop is down".into(),
        text: "Web shop is down since 10:00: status 503, expected 200.".into(),
        html: "<p>Web shop is <b>down</b> since 10:00.</p>".into(),
        ..Outgoing::default()
    }
}

/// Builds a mailer for an SMTP config (no spool directory is used) and sends one message.
async fn send(
    m: &Mail,
    env: &dyn Fn(&str) -> Option<String>,
    to: &[&str],
) -> Result<(), MailError> {
    Mailer::new(&with_env(m, env), Path::new("/nonexistent"))
        .expect("the mailer builds")
        .send(&msg(to))
        .await
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// `m` with its credentials read from `env`, as loading the config reads them.
fn with_env(m: &Mail, env: &dyn Fn(&str) -> Option<String>) -> Mail {
    let read = |name: &Option<String>| name.as_deref().and_then(|n| Secret::from_env(env, n));
    Mail {
        username: read(&m.username_env),
        password: read(&m.password_env),
        ..m.clone()
    }
}

#[tokio::test]
async fn without_smtp_each_message_is_an_eml_file_in_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = Mailer::new(&with_env(&mail(None, false), &no_env), dir.path()).unwrap();
    mailer
        .send(&msg(&["oncall@example.com", "Lead <lead@example.com>"]))
        .await
        .unwrap();
    let spool = dir.path().join("mail");
    assert_eq!(mailer.spool(), Some(spool.as_path()));
    let files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    for header in [
        "From: \"Example Status\" <status@example.com>",
        "To: oncall@example.com, Lead <lead@example.com>",
        "Subject: [tocsin] Web shop is down",
        "Date: ",
        "Message-ID: <",
        "Content-Type: multipart/alternative",
    ] {
        assert!(eml.contains(header), "missing {header:?} in\n{eml}");
    }
    assert!(eml.contains("Content-Type: text/plain") && eml.contains("Content-Type: text/html"));
    // Customers' addresses and signed links: the owner's alone, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
}

#[tokio::test]
async fn smtp_delivers_to_a_real_server() {
    let server = support::Smtp::start(None);
    let m = mail(Some(format!("smtp://127.0.0.1:{}", server.port)), true);
    send(&m, &no_env, &["oncall@example.com", "lead@example.com"])
        .await
        .unwrap();
    let got = server.mails();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("X-Envelope-To: oncall@example.com,lead@example.com"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Subject: [tocsin] Web shop is down"));
    assert!(got[0].contains("Web shop is down since 10:00: status 503, expected 200."));
}

#[tokio::test]
async fn replies_are_sorted_into_permanent_and_transient() {
    let server = support::Smtp::start(None);
    let mailer = Mailer::new(
        &with_env(
            &mail(Some(format!("smtp://127.0.0.1:{}", server.port)), true),
            &no_env,
        ),
        Path::new("/nonexistent"),
    )
    .unwrap();
    match mailer.send(&msg(&["reject@example.com"])).await {
        Err(MailError::Permanent(m)) => {
            assert!(m.contains("550") || m.contains("no such user"), "{m}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    match mailer.send(&msg(&["later@example.com"])).await {
        Err(MailError::Transient(m)) => {
            assert!(m.contains("451") || m.contains("try again later"), "{m}")
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert!(server.mails().is_empty());
}

#[tokio::test]
async fn credentials_come_from_the_environment() {
    let server = support::Smtp::start(Some(("tocsin", "s3cret")));
    let mut m = mail(Some(format!("smtp://127.0.0.1:{}", server.port)), true);
    m.username_env = Some("SMTP_USER".into());
    m.password_env = Some("SMTP_PASSWORD".into());
    let env = |k: &str| match k {
        "SMTP_USER" => Some("tocsin".to_string()),
        "SMTP_PASSWORD" => Some("s3cret".to_string()),
        _ => None,
    };
    send(&m, &env, &["oncall@example.com"]).await.unwrap();
    assert_eq!(server.mails().len(), 1);

    let wrong = |k: &str| Some(if k == "SMTP_USER" { "tocsin" } else { "guess" }.to_string());
    let err = send(&m, &wrong, &["oncall@example.com"]).await.unwrap_err();
    assert!(
        matches!(err, MailError::Permanent(_)),
        "bad credentials are not worth retrying: {err}"
    );

    let err = Mailer::new(&with_env(&m, &no_env), Path::new("/nonexistent"))
        .err()
        .unwrap();
    assert_eq!(
        err,
        MailError::Config("environment variable `SMTP_USER` (mail.username_env) is not set".into())
    );
}

#[tokio::test]
async fn smtp_without_allow_plain_requires_tls() {
    let server = support::Smtp::start(None);
    let m = mail(Some(format!("smtp://127.0.0.1:{}", server.port)), false);
    let err = send(&m, &no_env, &["oncall@example.com"])
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(server.mails().is_empty(), "nothing went out in plain text");
}

#[tokio::test]
async fn a_silent_server_hits_the_deadline_and_a_closed_port_is_transient() {
    let silent = support::silent_server().await;
    let mut m = mail(Some(format!("smtp://{silent}")), true);
    m.timeout = Duration::from_millis(500);
    let t = Instant::now();
    let err = send(&m, &no_env, &["oncall@example.com"])
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let closed = support::closed_port().await;
    let m = mail(Some(format!("smtp://{closed}")), true);
    let err = send(&m, &no_env, &["oncall@example.com"])
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
}

#[tokio::test]
async fn a_message_without_a_valid_recipient_is_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = Mailer::new(&with_env(&mail(None, false), &no_env), dir.path()).unwrap();
    assert!(matches!(
        mailer.send(&msg(&[])).await,
        Err(MailError::Permanent(_))
    ));
    assert!(matches!(
        mailer.send(&msg(&["not an address"])).await,
        Err(MailError::Permanent(_))
    ));
}

fn tls_mail(url: String, ca: Option<&support::Ca>) -> Mail {
    let mut m = mail(Some(url), false);
    m.ca_pem = ca.map(|c| std::fs::read(c.pem_file.path()).unwrap());
    m
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_to_a_server_signed_by_the_configured_ca() {
    let ca = support::Ca::new();
    let (cert, key) = ca.leaf_pem_files();
    let (cert, key) = (
        cert.path().to_str().unwrap().to_string(),
        key.path().to_str().unwrap().to_string(),
    );

    let starttls = support::Smtp::start_with(&["--starttls", &cert, &key]);
    let url = format!("smtp://localhost:{}", starttls.port);
    send(
        &tls_mail(url.clone(), Some(&ca)),
        &no_env,
        &["oncall@example.com"],
    )
    .await
    .unwrap();
    let got = starttls.mails();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("X-TLS: yes"), "{}", got[0]);
    // Without the CA the certificate is not trusted, and nothing goes out.
    let err = send(&tls_mail(url, None), &no_env, &["oncall@example.com"])
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err}");
    assert_eq!(starttls.mails().len(), 1);

    let implicit = support::Smtp::start_with(&["--implicit", &cert, &key]);
    let url = format!("smtps://localhost:{}", implicit.port);
    send(&tls_mail(url, Some(&ca)), &no_env, &["oncall@example.com"])
        .await
        .unwrap();
    let got = implicit.mails();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("X-TLS: yes"), "{}", got[0]);
}

#[tokio::test]
async fn campaign_sessions_use_starttls_auth_and_stay_open_between_messages() {
    let ca = support::Ca::new();
    let (cert, key) = ca.leaf_pem_files();
    let (cert, key) = (
        cert.path().to_str().unwrap().to_string(),
        key.path().to_str().unwrap().to_string(),
    );
    let server =
        support::Smtp::start_with(&["--starttls", &cert, &key, "--auth", "tocsin", "s3cret"]);
    let mut m = tls_mail(format!("smtp://localhost:{}", server.port), Some(&ca));
    m.username_env = Some("SMTP_USER".into());
    m.password_env = Some("SMTP_PASSWORD".into());
    let env = |k: &str| match k {
        "SMTP_USER" => Some("tocsin".to_string()),
        "SMTP_PASSWORD" => Some("s3cret".to_string()),
        _ => None,
    };
    let mailer = Mailer::new(&with_env(&m, &env), Path::new("/nonexistent")).unwrap();
    let mut session = None;
    for to in ["a@example.com", "b@example.com", "c@example.com"] {
        mailer.send_on(&mut session, &msg(&[to])).await.unwrap();
        assert!(
            session.is_some(),
            "the session is kept for the next message"
        );
    }
    // A refused recipient is permanent, and the session starts afresh after it.
    let err = mailer
        .send_on(&mut session, &msg(&["reject@example.com"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MailError::Permanent(ref e) if e.contains("550")),
        "{err}"
    );
    assert!(session.is_none());
    mailer
        .send_on(&mut session, &msg(&["d@example.com"]))
        .await
        .unwrap();
    let got = server.mails();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|m| m.contains("X-TLS: yes")));

    // Wrong credentials never send anything.
    let bad = |k: &str| match k {
        "SMTP_USER" => Some("tocsin".to_string()),
        "SMTP_PASSWORD" => Some("wrong".to_string()),
        _ => None,
    };
    let mailer = Mailer::new(&with_env(&m, &bad), Path::new("/nonexistent")).unwrap();
    let mut session = None;
    assert!(
        mailer
            .send_on(&mut session, &msg(&["e@example.com"]))
            .await
            .is_err()
    );
    assert_eq!(server.mails().len(), 4);
}

#[tokio::test]
async fn with_dkim_every_message_is_signed_with_the_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key_file = dir.path().join("dkim.pem");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("probes.yaml"), format!(
        "services:\n  - id: shop\n    probes:\n      - {{ name: home, tcp: {{ address: \"127.0.0.1:1\" }} }}\nmail:\n  from: \"Status <status@example.com>\"\n  dkim: {{ domain: example.com, selector: tocsin2026, key_file: {} }}\n",
        key_file.display()
    )).unwrap();
    let cfg =
        tocsin::config::load(&dir.path().join("probes.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let mailer = Mailer::new(&with_env(&cfg.mail, &no_env), dir.path()).unwrap();
    mailer.send(&msg(&["a@example.com"])).await.unwrap();
    let eml = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains("a@example.com"))
        .unwrap();
    let sig = eml
        .lines()
        .find(|l| l.starts_with("DKIM-Signature:"))
        .unwrap_or_else(|| panic!("no signature: {eml}"));
    assert!(
        sig.contains("a=ed25519-sha256")
            && sig.contains("d=example.com")
            && sig.contains("s=tocsin2026"),
        "{sig}"
    );

    // A file that holds no key is refused by the config check, with its place.
    std::fs::write(&key_file, "not a key").unwrap();
    let err = tocsin::config::load(&dir.path().join("probes.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no RSA or Ed25519 private key"), "{err}");
}

/// The drill's transport: each message is built as it would be sent, and kept; one the
/// server would refuse is refused here too.
#[tokio::test]
async fn a_recording_mailer_keeps_what_it_would_send() {
    let mailer = Mailer::recording(&mail(Some("smtp://127.0.0.1:9".into()), true)).unwrap();
    mailer.send(&msg(&["oncall@example.com"])).await.unwrap();
    mailer
        .send_on(&mut None, &msg(&["lead@example.com"]))
        .await
        .unwrap();
    let err = mailer.send(&msg(&["not an address"])).await.unwrap_err();
    assert!(matches!(err, MailError::Permanent(_)), "{err}");
    let kept: Vec<Vec<String>> = mailer.recorded().into_iter().map(|m| m.to).collect();
    assert_eq!(
        kept,
        [
            vec!["oncall@example.com".to_string()],
            vec!["lead@example.com".to_string()]
        ]
    );
}
