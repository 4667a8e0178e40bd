//! End to end with real parts: `tocsin run` as a process, an HTTP target on loopback that
//! goes down and up, and a real SMTP server (aiosmtpd). The outage mails on-call, escalates
//! to the lead, survives a SIGKILL and restart without repeating a mail, and ends with one
//! "resolved" mail to everyone who was told.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

const TOKEN: &str = "e2e-token";

/// A config for one service probed every second, mailing on-call at once and the lead
/// after `lead_after`.
fn write_config(
    dir: &Path,
    target: std::net::SocketAddr,
    smtp_port: u16,
    lead_after: &str,
) -> (PathBuf, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("probes.yaml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(
            format!(
                "listen: 127.0.0.1:{port}
data_dir: ./var
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 3h
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
    - {{ after: {lead_after}, to: [lead@example.com] }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp_port}\"
  allow_plain: true
  timeout: 5s
"
            )
            .as_bytes(),
        )
        .unwrap();
    (cfg, port)
}

fn cli(cfg: &Path, args: &[&str], token: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("incident")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("TOCSIN_API_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn start(cfg: &Path) -> support::Proc {
    support::Proc(
        Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("TOCSIN_API_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn an_outage_mails_escalates_survives_a_kill_and_resolves_once() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), target, smtp.port, "6s");
    let mut tocsin = start(&cfg);
    // Three healthy runs decided (more than the failure threshold): nobody is mailed.
    support::runs(port, "shop", "success", 3, &String::new).await;
    assert!(smtp.subjects().is_empty(), "a healthy target mails nobody");

    // Down: two failed runs (about 2 s) open the incident and mail on-call at once.
    up.store(false, Ordering::SeqCst);
    let down_at = Instant::now();
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    let latency = down_at.elapsed();
    assert_eq!(got[0], "oncall@example.com | [tocsin] Web shop is DOWN");
    eprintln!("detection to staff mail: {latency:?} (two 1 s rounds, then the mail)");
    let first = &qp_decode(&smtp.mails()[0]);
    assert!(first.contains("home: status 503, expected 200"), "{first}");
    assert!(first.contains("level 1 (lead@example.com)"), "{first}");
    assert!(
        first.contains(&format!(
            "Acknowledge (stops escalation): http://127.0.0.1:{port}/act?i=1&a=ack&"
        )),
        "{first}"
    );
    let metrics = scrape(port).await;
    for line in [
        "tocsin_incident_open{service=\"shop\"} 1",
        "tocsin_service_state{service=\"shop\"} 4",
        "tocsin_escalation_level{service=\"shop\"} 1",
        "tocsin_incident_customer_phase{service=\"shop\"} 0",
        "tocsin_mail_sent_total{kind=\"staff_opened\"} 1",
        "tocsin_outbox_pending 0",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }

    // SIGKILL mid-incident, after the opening mail was sent and marked (the outbox is
    // empty, above); restart.
    tocsin.crash();
    let mut tocsin = start(&cfg);

    // The escalation is timed from the outage's start, kept across the restart.
    let got = smtp.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(
        got[1],
        "lead@example.com | [tocsin] Web shop is DOWN, unacknowledged (escalation level 1)"
    );
    assert!(
        down_at.elapsed() < Duration::from_secs(14),
        "escalated about 6 s after the start, not 6 s after the restart"
    );

    // Recovery: two good runs resolve it; everyone told gets one "resolved" mail.
    up.store(true, Ordering::SeqCst);
    let got = smtp.wait_for(3, Duration::from_secs(10)).await;
    assert!(
        got[2].starts_with(
            "oncall@example.com,lead@example.com | [tocsin] Web shop is UP again after "
        ),
        "{}",
        got[2]
    );
    // Everything decided carried out: what was sent is all there will be.
    support::until_metric(
        port,
        "tocsin_outbox_pending ",
        Duration::from_secs(10),
        &String::new,
        |v| v == 0.0,
    )
    .await;
    assert_eq!(
        smtp.subjects().len(),
        3,
        "nothing sent twice: {:#?}",
        smtp.subjects()
    );

    assert!(tocsin.stop(), "tocsin exits cleanly on SIGTERM");
    assert!(dir.path().join("var/tocsin.db").exists());
}

#[tokio::test]
async fn ack_stops_escalation_and_an_eta_of_4h_starts_the_customer_phase_at_once() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), target, smtp.port, "5s");
    let mut tocsin = start(&cfg);
    support::runs(port, "shop", "success", 2, &String::new).await;

    up.store(false, Ordering::SeqCst);
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0], "oncall@example.com | [tocsin] Web shop is DOWN");

    let (code, out) = cli(&cfg, &["ack", "shop", "--by", "anna"], TOKEN);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("incident 1 (shop) acknowledged by anna: escalation stops\n"),
        "{out}"
    );
    assert!(out.contains("\nID  SERVICE  STATE  PHASE  SINCE"), "{out}");
    // A second acknowledgement changes nothing, and says whose stands.
    let (code, out) = cli(&cfg, &["ack", "shop", "--by", "bo"], TOKEN);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("incident 1 (shop) was already acknowledged by anna at 20")
            && out.trim_end().ends_with("; nothing changed"),
        "{out}"
    );

    let (code, out) = cli(&cfg, &["eta", "shop", "4h", "--by", "anna"], TOKEN);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("incident 1 (shop): recovery expected by 20"),
        "{out}"
    );
    assert!(
        out.contains("customer phase  the ETA is past the customer threshold"),
        "{out}"
    );

    let (code, out) = cli(&cfg, &["eta", "shop", "1h ago"], TOKEN);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("tocsin: ETA `1h ago` is not a time tocsin reads")
            && out.contains("(HTTP 400)"),
        "{out}"
    );
    let (code, out) = cli(&cfg, &["list"], "not-the-token");
    assert_eq!((code, out.trim()), (1, "tocsin: wrong token (HTTP 401)"));

    // The lead's level falls due 5 s after the start; acknowledged, it never goes out:
    // six more failed runs (a second apart) are decided, each tick past the level's time.
    support::runs(port, "shop", "failure", 6, &String::new).await;
    assert_eq!(smtp.subjects().len(), 1, "{:#?}", smtp.subjects());

    up.store(true, Ordering::SeqCst);
    let got = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        got[1].starts_with("oncall@example.com | [tocsin] Web shop is UP again after "),
        "{}",
        got[1]
    );
    let (code, out) = cli(&cfg, &["list"], TOKEN);
    assert_eq!((code, out.trim()), (0, "no open incidents"));
    let (code, out) = cli(&cfg, &["list", "--all"], TOKEN);
    assert!(
        code == 0 && out.contains("resolved") && out.contains("customer"),
        "{out}"
    );

    assert!(tocsin.stop(), "tocsin exits cleanly on SIGTERM");
}

/// /metrics of the instance on `port`, once the engine has exported its figures.
async fn scrape(port: u16) -> String {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    support::metrics(port).await
}

/// Undoes quoted-printable (soft line breaks and =XX), as a mail client shows the text.
fn qp_decode(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGKILLs tocsin at many points of an incident's life and restarts it at once; then
/// lets a second outage recover while tocsin is down. Every mail arrives; a duplicate is
/// possible only for a message the server accepted just before a kill (sent, not yet
/// marked done). Prints the figures.
#[tokio::test]
async fn killed_at_many_points_nothing_is_lost_and_duplicates_are_bounded() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), target, smtp.port, "3s");
    let mut tocsin = start(&cfg);
    support::runs(port, "shop", "success", 2, &String::new).await;

    // Incident 1: down (opened, escalated), then up (resolved), with a kill every 1.7 to
    // 3.1 s throughout. (Each life must see two results in a row: streaks are recounted
    // after a restart, so a monitor killed every second could never open an incident.)
    let delays_ms = [2600, 1800, 2900, 2200, 3100, 1700, 2500, 2000, 2800];
    let mut kills = 0;
    up.store(false, Ordering::SeqCst);
    let t = Instant::now();
    for (n, ms) in delays_ms.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
        tocsin.crash();
        kills += 1;
        if n == 4 {
            up.store(true, Ordering::SeqCst);
        }
        tocsin = start(&cfg);
    }
    // Restarts recount the success streak, so the recovery is announced once the kills stop.
    let first = smtp
        .wait_for_text("UP again", 1, Duration::from_secs(20))
        .await;
    eprintln!(
        "incident 1 mails after {kills} kills in {:?}: {first:#?}",
        t.elapsed()
    );

    // Incident 2: opens, then tocsin is killed, the target recovers while it is down, and
    // the restarted tocsin resolves and announces it.
    let down_before = smtp
        .subjects()
        .iter()
        .filter(|s| s.contains("Web shop is DOWN"))
        .count();
    up.store(false, Ordering::SeqCst);
    smtp.wait_for_text("Web shop is DOWN", down_before + 1, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    tocsin.crash();
    kills += 1;
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut tocsin = start(&cfg);
    smtp.wait_for_text("UP again", 2, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Each (incident, subject) is one decision; a repeat is a duplicate.
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for (mail, subject) in smtp.mails().iter().zip(smtp.subjects()) {
        let body = qp_decode(mail);
        let incident = body
            .split("Timeline (incident ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or("?")
            .to_string();
        *seen.entry((incident, subject)).or_default() += 1;
    }
    let received: usize = seen.values().sum();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "kill/restart: {kills} SIGKILLs, {} distinct decisions mailed, {received} mails received, {duplicates} duplicates",
        seen.len()
    );
    eprintln!("{seen:#?}");
    let has =
        |incident: &str, text: &str| seen.keys().any(|(i, s)| i == incident && s.contains(text));
    for incident in ["1", "2"] {
        assert!(
            has(incident, "| [tocsin] Web shop is DOWN"),
            "incident {incident} opened: {seen:#?}"
        );
        assert!(
            has(incident, "Web shop is UP again"),
            "incident {incident} resolved: {seen:#?}"
        );
    }
    assert!(has("1", "unacknowledged (escalation level 1)"), "{seen:#?}");
    assert!(
        duplicates <= kills,
        "at most one duplicate per kill: {seen:#?}"
    );

    assert!(tocsin.stop(), "tocsin exits cleanly on SIGTERM");
}
