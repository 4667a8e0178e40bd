//! The autoresponder against a real Dovecot with Pigeonhole's managesieved on loopback:
//! during the customer phase the active script of each mailbox is tocsin's vacation
//! script (compiled by the server, replaced on an ETA change); after recovery, even across
//! a SIGKILL, it is exactly the script that was active before, and tocsin's is gone.
//! Wrong credentials, an unreachable server, a server without STARTTLS or without the
//! vacation extension, and a script the server refuses are clear errors.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tocsin::notify::sieve::{Endpoint, Script, Session, SieveError};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "autoresponder-test-token";
const FILTERS: &str = "require [\"fileinto\"];\r\nif header :contains \"subject\" \"invoice\" { fileinto \"INBOX\"; }\r\n";

fn tls(ca: &support::Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(tocsin::probe::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn endpoint(ca: &support::Ca, port: u16) -> Endpoint {
    Endpoint {
        host: "localhost".into(),
        port,
        allow_plain: false,
        tls: tls(ca),
        timeout: Duration::from_secs(5),
    }
}

/// The error opening a session at `ep` for `mailbox` with the master `password` gives.
async fn refused(ep: &Endpoint, mailbox: &str, password: &str) -> SieveError {
    match Session::open(ep, mailbox, "tocsin", password).await {
        Ok(_) => panic!("a session for {mailbox:?} opened"),
        Err(e) => e,
    }
}

async fn session(ca: &support::Ca, port: u16, mailbox: &str) -> Session {
    Session::open(&endpoint(ca, port), mailbox, "tocsin", "master-pw")
        .await
        .unwrap_or_else(|e| panic!("login for {mailbox}: {e}"))
}

async fn scripts(ca: &support::Ca, port: u16, mailbox: &str) -> Vec<Script> {
    let mut s = session(ca, port, mailbox).await;
    let mut l = s.list().await.unwrap();
    s.logout().await;
    l.sort_by(|a, b| a.name.cmp(&b.name));
    l
}

async fn active_text(ca: &support::Ca, port: u16, mailbox: &str) -> Option<(String, String)> {
    let mut s = session(ca, port, mailbox).await;
    let name = s.active().await.unwrap()?;
    let text = s.get(&name).await.unwrap();
    s.logout().await;
    Some((name, text))
}

fn start(cfg: &Path, log: &Path) -> support::Proc {
    support::run_tocsin(
        cfg,
        log,
        &[
            ("TOCSIN_API_TOKEN", TOKEN),
            ("SIEVE_USER", "tocsin"),
            ("SIEVE_PASSWORD", "master-pw"),
        ],
    )
}

async fn until<F, Fut>(what: &str, within: Duration, explain: &dyn Fn() -> String, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < within,
            "timed out waiting for {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn set_eta(port: u16, eta: &str) -> bool {
    support::api_post(
        port,
        "/api/v1/incidents/shop/eta",
        TOKEN,
        serde_json::json!({"eta": eta, "by": "test"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoresponder_is_on_during_the_outage_and_the_original_is_back_after_it() {
    let ca = support::Ca::new();
    let dovecot = support::Dovecot::start(&ca, "");
    let sp = dovecot.port;
    // sales has its own filters active; support has no active script.
    let mut s = session(&ca, sp, "sales@example.com").await;
    s.put("filters", FILTERS).await.unwrap();
    s.set_active(Some("filters")).await.unwrap();
    s.logout().await;

    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: ./var
company: {{ name: Example Shop, phone: \"+48 22 555 01 00\" }}
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 1h
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
autoresponder:
  managesieve: \"sieve://localhost:{sp}\"
  user_env: SIEVE_USER
  password_env: SIEVE_PASSWORD
  mailboxes: [support@example.com, sales@example.com]
  ca_file: {ca}
  timezone: Europe/Warsaw
",
            ca = ca.pem_file.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("tocsin.log");
    let explain = || {
        format!(
            "--- tocsin\n{}\n--- dovecot\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            dovecot.log()
        )
    };
    let mut tocsin = start(&cfg, &log);
    until("tocsin up", Duration::from_secs(20), &explain, || async {
        support::client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
    })
    .await;
    // Nothing changes while all is well: healthy runs are decided, scripts stay.
    support::runs(port, "shop", "success", 2, &explain).await;
    assert_eq!(
        scripts(&ca, sp, "sales@example.com").await,
        [Script {
            name: "filters".into(),
            active: true
        }]
    );
    assert!(scripts(&ca, sp, "support@example.com").await.is_empty());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("autoresponder: ManageSieve login works"),
        "{}",
        explain()
    );

    // The outage: an ETA beyond the threshold starts the customer phase.
    up.store(false, Ordering::SeqCst);
    until(
        "the ETA to be taken",
        Duration::from_secs(20),
        &explain,
        || async { set_eta(port, "3h").await },
    )
    .await;
    until(
        "both autoresponders on",
        Duration::from_secs(20),
        &explain,
        || async {
            let a = active_text(&ca, sp, "support@example.com").await;
            let b = active_text(&ca, sp, "sales@example.com").await;
            a.is_some_and(|a| a.0 == "tocsin-outage") && b.is_some_and(|b| b.0 == "tocsin-outage")
        },
    )
    .await;
    let (_, text) = active_text(&ca, sp, "sales@example.com").await.unwrap();
    assert!(
        text.contains(
            "vacation :days 1 :subject \"Web shop is unavailable: our replies will be slower\""
        ),
        "{text}"
    );
    assert!(text.contains("our phone lines are busy too"), "{text}");
    assert!(text.contains("We expect it back by"), "{text}");
    // sales' own filters keep working underneath.
    assert!(
        text.contains("include :personal :optional \"filters\";"),
        "{text}"
    );
    let (_, plain) = active_text(&ca, sp, "support@example.com").await.unwrap();
    assert!(!plain.contains("include"), "{plain}");
    // The server compiles it (CHECKSCRIPT of the exact text).
    let mut s = session(&ca, sp, "support@example.com").await;
    s.check(&plain).await.unwrap();
    s.logout().await;

    // A new ETA replaces the text.
    assert!(set_eta(port, "5h").await);
    until(
        "the new ETA in the script",
        Duration::from_secs(20),
        &explain,
        || {
            let before = plain.clone();
            let ca = &ca;
            async move {
                active_text(ca, sp, "support@example.com")
                    .await
                    .is_some_and(|(n, t)| n == "tocsin-outage" && t != before)
            }
        },
    )
    .await;

    // A crash during the outage, recovery while tocsin is down, then a restart: the
    // autoresponder must not be left on.
    tocsin.crash();
    up.store(true, Ordering::SeqCst);
    let _tocsin = start(&cfg, &log);
    until(
        "the originals restored",
        Duration::from_secs(30),
        &explain,
        || async {
            scripts(&ca, sp, "sales@example.com").await
                == [Script {
                    name: "filters".into(),
                    active: true,
                }]
                && scripts(&ca, sp, "support@example.com").await.is_empty()
        },
    )
    .await;
    let (_, text) = active_text(&ca, sp, "sales@example.com").await.unwrap();
    assert_eq!(text, FILTERS, "the original script, unchanged");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logs.matches("autoresponder off").count(), 2, "{logs}");
    let metrics = support::metrics(port).await;
    assert!(
        metrics.contains("tocsin_autoresponder_active 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_errors_name_the_cause() {
    let ca = support::Ca::new();
    let dovecot = support::Dovecot::start(&ca, "");
    let ep = endpoint(&ca, dovecot.port);

    let e = refused(&ep, "sales@example.com", "wrong").await;
    assert!(matches!(e, SieveError::Auth { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("the ManageSieve server refused the login for sales@example.com: "),
        "{e}"
    );

    // The script is checked by the server, and its reason comes back.
    let mut s = Session::open(&ep, "sales@example.com", "tocsin", "master-pw")
        .await
        .unwrap();
    let e = s
        .check("require [\"vacation\"];\r\nvacation :dayz 1 \"x\";\r\n")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SieveError::Rejected(_)), "{e}");
    assert!(
        e.to_string().contains("unknown tagged argument ':dayz'"),
        "{e}"
    );
    s.logout().await;

    // Unreachable.
    let closed = support::closed_port().await;
    let e = Session::open(&endpoint(&ca, closed.port()), "", "tocsin", "master-pw")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, SieveError::Connect { .. }) && e.is_transient(),
        "{e}"
    );

    // A certificate from another CA.
    let other = support::Ca::new();
    let e = refused(&endpoint(&other, dovecot.port), "", "master-pw").await;
    assert!(matches!(e, SieveError::Tls(_)), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    drop(dovecot);

    // A server without the vacation extension.
    let dovecot = support::Dovecot::start(&ca, "plugin {\n  sieve_extensions = -vacation\n}\n");
    let e = refused(
        &endpoint(&ca, dovecot.port),
        "sales@example.com",
        "master-pw",
    )
    .await;
    assert!(matches!(e, SieveError::NoVacation(_)), "{e}");
    assert!(
        e.to_string().contains("has no Sieve `vacation` extension"),
        "{e}"
    );
    drop(dovecot);

    // A server without STARTTLS: credentials are not sent in plain text.
    let dovecot = support::Dovecot::start(&ca, "ssl = no\n");
    let e = refused(
        &endpoint(&ca, dovecot.port),
        "sales@example.com",
        "master-pw",
    )
    .await;
    assert_eq!(e, SieveError::NoStartTls);
    // Unless allowed (loopback only, enforced by the config).
    let mut plain = endpoint(&ca, dovecot.port);
    plain.allow_plain = true;
    let s = Session::open(&plain, "sales@example.com", "tocsin", "master-pw")
        .await
        .unwrap();
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_at_start_and_a_missing_secret_stops_it() {
    let ca = support::Ca::new();
    let dovecot = support::Dovecot::start(&ca, "");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: ./var
services:
  - id: shop
    probes:
      - {{ name: home, interval: 5s, timeout: 1s, tcp: {{ address: \"127.0.0.1:{port}\" }} }}
autoresponder:
  managesieve: \"sieve://localhost:{sp}\"
  user_env: SIEVE_USER
  password_env: SIEVE_PASSWORD
  mailboxes: [sales@example.com]
  ca_file: {ca}
",
            sp = dovecot.port,
            ca = ca.pem_file.path().display()
        ),
    )
    .unwrap();
    // No password in the environment: refused at start-up, naming the variable.
    let out = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("SIEVE_USER", "tocsin")
        .env_remove("SIEVE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("autoresponder: set the environment variable SIEVE_PASSWORD (named by autoresponder.password_env)"),
        "{err}"
    );

    // A wrong password: tocsin runs, and says at once that the autoresponder cannot work.
    let log = dir.path().join("tocsin.log");
    let _t = support::Proc(
        Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("SIEVE_USER", "tocsin")
            .env("SIEVE_PASSWORD", "not-the-password")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    loop {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("autoresponder: ManageSieve login failed") {
            assert!(l.contains("refused the login for sales@example.com"), "{l}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = support::metrics(port).await;
    assert!(
        metrics.contains("tocsin_autoresponder_failures_total 1"),
        "{metrics}"
    );
}
