//! Customer campaigns end to end, with real parts: `tocsin run` as a process, an HTTP
//! target that goes down and up, and a real SMTP server (aiosmtpd) on loopback.
//!
//! 5,000 customers are told of an outage, each in their language and time zone, while
//! tocsin is SIGKILLed and restarted and the mail server goes away for a while; every
//! customer gets the outage mail (duplicates bounded and counted), the placeholder stands
//! while customers are told, and recovery mails go to exactly those told, minus the one
//! who unsubscribed in between.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::atomic::Ordering;
use std::time::Duration;

use tocsin::notify::templates::local_time;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "campaign-token";

const LANGS: [&str; 4] = ["en", "pl", "sv", "de"];
const ZONES: [&str; 4] = [
    "Europe/Warsaw",
    "Europe/Stockholm",
    "America/New_York",
    "Asia/Tokyo",
];

/// Customer `i`: who they are and what they follow.
fn customer(i: usize) -> (String, String, &'static str, &'static str, &'static str) {
    (
        format!("c{i}@example.com"),
        format!("Customer {i}"),
        LANGS[i % 4],
        ZONES[i / 4 % 4],
        // Every 7th follows only the API, so must not hear about the shop.
        if i % 7 == 3 {
            "api"
        } else if i % 2 == 0 {
            "shop"
        } else {
            ""
        },
    )
}

fn write_files(
    dir: &Path,
    target: std::net::SocketAddr,
    smtp: u16,
    n: usize,
    max: u64,
) -> (PathBuf, u16) {
    let port = support::free_port();
    let mut csv = String::from("email,name,language,timezone,services,plan\n");
    for i in 0..n {
        let (e, name, l, z, s) = customer(i);
        csv.push_str(&format!("{e},{name},{l},{z},{s},plan-{i}\n"));
    }
    // A bad row is reported and left out, never sent to.
    csv.push_str("bad@example.com,\"Eve\r\nBcc: all@example.com\",en,UTC,,x\n");
    std::fs::write(dir.join("customers.csv"), csv).unwrap();
    let cfg = dir.join("probes.yaml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(
            format!(
                "listen: 127.0.0.1:{port}
data_dir: ./var
allow_insecure_links: true
company: {{ name: Example Shop, phone: \"+48 22 555 01 00\" }}
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 1h
    audience: customers
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: api
    name: API
    probes:
      - {{ name: api, interval: 5s, timeout: 1s, tcp: {{ address: \"127.0.0.1:{port}\" }} }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp}\"
  allow_plain: true
  timeout: 5s
  max_per_second: 5000
  connections: 8
  max_campaign_size: {max}
"
            )
            .as_bytes(),
        )
        .unwrap();
    (cfg, port)
}

fn start(cfg: &Path) -> support::Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.with_file_name("tocsin.log"))
        .unwrap();
    support::Proc(
        Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "info,tocsin::campaign=trace")
            .env("TOCSIN_API_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The newest campaign as the API gives it (`campaign status --json`).
fn status_json(cfg: &Path) -> serde_json::Value {
    let (code, out) = cli(cfg, &["campaign", "status", "--json"]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn cli(cfg: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("TOCSIN_API_TOKEN", TOKEN)
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

async fn api(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let c = support::client();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = if method == "POST" {
        c.post(url)
    } else {
        c.get(url)
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.bearer_auth(TOKEN).send().await.unwrap();
    r.json().await.unwrap()
}

/// Once the shop's incident is open (two failed rounds), an ETA of 3 h, beyond the 1 h
/// threshold, starts the customer phase at once. The ETA taken.
async fn customers_told(port: u16) -> std::time::SystemTime {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = api(
            port,
            "POST",
            "/api/v1/incidents/shop/eta",
            Some(serde_json::json!({"eta": "3h", "by": "test"})),
        )
        .await;
        if let Some(e) = r["eta"]
            .as_str()
            .and_then(|s| humantime::parse_rfc3339(s).ok())
        {
            return e;
        }
    }
    panic!("the ETA was not accepted");
}

async fn wait_up(port: u16) {
    for _ in 0..100 {
        if support::client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tocsin did not come up on {port}");
}

/// On a failure: the recipients still pending (read from the stopped instance's database
/// with Python's sqlite3) and the end of tocsin's campaign log.
fn explain(dir: &Path) {
    let db = dir.join("var/tocsin.db");
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect('{}'); print(list(c.execute(\"select id, email, attempts, next_attempt_at, last_error from recipients where status = 'pending'\")))",
            db.display()
        ))
        .output()
        .unwrap();
    eprintln!("pending: {}", String::from_utf8_lossy(&out.stdout));
    let log = std::fs::read_to_string(dir.join("tocsin.log")).unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| l.contains("campaign"))
        .rev()
        .take(30)
    {
        eprintln!("log: {l}");
    }
}

/// (envelope recipient, subject, text body) of every message received.
fn received(smtp: &support::Smtp) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(smtp.out.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let raw = std::fs::read(&p).unwrap();
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let to = m
            .header_raw("X-Envelope-To")
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push((
            to,
            m.subject().unwrap_or_default().to_string(),
            m.body_text(0).unwrap_or_default().to_string(),
        ));
    }
    out
}

fn count_by_address(
    mails: &[(String, String, String)],
    pick: impl Fn(&str) -> bool,
) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (to, subject, _) in mails {
        if pick(subject) {
            *m.entry(to.clone()).or_insert(0) += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_customers_are_told_once_through_a_crash_and_a_mail_outage() {
    const N: usize = 5_000;
    let mut smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_files(dir.path(), target, smtp.port, N, N as u64 * 2);
    // The row whose name tries a header injection is mailed with the name cleaned (to
    // its own address only: no Bcc reaches anyone).
    let expected: BTreeSet<String> = (0..N)
        .map(customer)
        .filter(|c| c.4 != "api")
        .map(|c| c.0)
        .chain(["bad@example.com".to_string()])
        .collect();

    let (code, out) = cli(&cfg, &["check"]);
    assert_eq!(code, 0, "a bad row is a warning: {out}");
    assert!(
        out.contains(&format!(
            "customers.csv:{}:1: `name` held a line break or control character: taken out",
            N + 2
        )),
        "{out}"
    );

    let mut tocsin = start(&cfg);
    wait_up(port).await;
    up.store(false, Ordering::SeqCst);
    let eta = customers_told(port).await;
    assert!(
        dir.path().join("var/www/shop/index.html").exists() || {
            tokio::time::sleep(Duration::from_secs(2)).await;
            dir.path().join("var/www/shop/index.html").exists()
        },
        "the placeholder stands while customers are told"
    );

    // A crash in the middle of the campaign.
    let at = smtp.wait_count(1_000, Duration::from_secs(60)).await;
    assert!(at >= 1_000, "sending started: {at}");
    tocsin.crash();
    let after_crash = smtp.count();
    let mut tocsin = start(&cfg);
    wait_up(port).await;

    // The mail server goes away for a while.
    let at = smtp
        .wait_count(after_crash + 1_500, Duration::from_secs(60))
        .await;
    assert!(at > after_crash, "sending resumed after the restart");
    smtp.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    smtp.resume();

    // Everyone, eventually (sends that failed come back after their 30 s backoff).
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let (mails, outage) = loop {
        let mails = received(&smtp);
        let outage = count_by_address(&mails, |s| !s.contains("Update"));
        if outage.len() >= expected.len() || std::time::Instant::now() > deadline {
            break (mails, outage);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let got: BTreeSet<String> = outage.keys().cloned().collect();
    if got != expected {
        tocsin.stop();
        explain(dir.path());
    }
    assert!(
        got == expected,
        "{}\nmissing: {:?}; extra: {:?}",
        cli(&cfg, &["campaign", "status", "--once"]).1,
        expected.difference(&got).take(5).collect::<Vec<_>>(),
        got.difference(&expected).take(5).collect::<Vec<_>>()
    );
    let duplicates: usize = outage.values().map(|n| n - 1).sum();
    eprintln!(
        "5000-customer campaign: {} mails for {} customers; {duplicates} duplicates after one SIGKILL",
        mails.len(),
        expected.len()
    );
    assert!(
        duplicates <= 8 + 64,
        "duplicates bounded by messages in flight plus one commit: {duplicates}"
    );

    // Personalised: name, language and the ETA in the customer's own zone.
    for (to, subject, text) in &mails {
        if to == "bad@example.com" {
            assert!(text.contains("Eve"), "the cleaned name greets: {text}");
            continue;
        }
        let i: usize = to
            .trim_start_matches('c')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (_, name, lang, zone, _) = customer(i);
        let lang = if lang == "de" { "en" } else { lang };
        assert!(text.contains(&name), "{to}: {text}");
        // After the Polish `do` the weekday is in the genitive.
        let local = tocsin::notify::templates::genitive(local_time(eta, zone, lang));
        assert!(
            text.contains(&local),
            "{to} ({lang}, {zone}) lacks its local ETA {local}: {text}"
        );
        let greeting = match lang {
            "pl" => "Dzień dobry",
            "sv" => "Hej",
            _ => "Hello",
        };
        assert!(text.starts_with(greeting), "{to}: {text}");
        assert!(!subject.is_empty());
    }

    // Progress and previews from the CLI.
    let (code, status) = cli(&cfg, &["campaign", "status", "--once"]);
    assert_eq!(code, 0, "{status}");
    let counts = status_json(&cfg)["counts"].clone();
    assert_eq!(counts["sent"], expected.len() as u64, "{status}");
    assert_eq!(counts["pending"], 0, "{status}");
    // The table a person reads: one header, one aligned row, progress in words.
    let lines: Vec<&str> = status.lines().collect();
    assert!(
        lines[0].starts_with(
            "ID  KIND    SERVICE  INCIDENT  SENT  PENDING  FAILED  OPTED OUT  PROGRESS"
        ),
        "{status}"
    );
    assert!(lines[1].ends_with("  done"), "{status}");
    let (code, preview) = cli(
        &cfg,
        &[
            "campaign",
            "preview",
            "--service",
            "shop",
            "--to",
            "c2@example.com",
        ],
    );
    assert_eq!(code, 0, "{preview}");
    assert!(
        preview.contains("To: Customer 2 <c2@example.com>"),
        "{preview}"
    );
    let (code, raw) = cli(
        &cfg,
        &[
            "campaign",
            "preview",
            "--service",
            "shop",
            "--to",
            "c2@example.com",
            "--raw",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{raw}"
    );
    let (code, refused) = cli(
        &cfg,
        &[
            "campaign",
            "preview",
            "--service",
            "shop",
            "--to",
            "c3@example.com",
        ],
    );
    assert_eq!(code, 1, "c3 follows only the API: {refused}");

    // One customer unsubscribes (RFC 8058 one-click): GET only asks, POST acts.
    let m = std::fs::read_dir(smtp.out.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .find(|m| m.contains("X-Envelope-To: c0@example.com"))
        .unwrap();
    let link = m
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .unwrap()
        .trim_end_matches('>')
        .to_string();
    let c = support::client();
    let page = c.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    let tampered = c
        .post(link.replace("c0%40", "c1%40"))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 400);
    let r = c
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Recovery: the placeholder comes down, and exactly those told hear of it.
    let before = smtp.count();
    up.store(true, Ordering::SeqCst);
    let want = before + expected.len() - 1;
    let now = smtp.wait_count(want, Duration::from_secs(90)).await;
    if now < want {
        eprintln!("{}", cli(&cfg, &["campaign", "list"]).1);
        tocsin.stop();
        explain(dir.path());
    }
    assert!(
        now >= want,
        "recovery mails: {} of {}",
        now - before,
        expected.len() - 1
    );
    // The one who unsubscribed in between is left out of the recovery, and counted.
    let (_, list) = cli(&cfg, &["campaign", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let recovery = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "recovery")
        .unwrap();
    assert_eq!(recovery["opted_out"], 1, "{recovery}");
    // Everything decided carried out and no recipient left: nothing more will be sent.
    let quiet = || String::new();
    support::until_metric(
        port,
        "tocsin_outbox_pending ",
        Duration::from_secs(30),
        &quiet,
        |v| v == 0.0,
    )
    .await;
    support::until_metric(
        port,
        "tocsin_campaign_recipients{state=\"pending\"}",
        Duration::from_secs(30),
        &quiet,
        |v| v == 0.0,
    )
    .await;
    let mails = received(&smtp);
    let recovery = count_by_address(&mails, |s| {
        s.contains("working again") || s.contains("znów działa") || s.contains("fungerar igen")
    });
    let mut told = expected.clone();
    told.remove("c0@example.com");
    assert_eq!(
        recovery.keys().cloned().collect::<BTreeSet<_>>(),
        told,
        "recovery goes to those told, minus the opt-out"
    );
    assert!(
        !dir.path().join("var/www/shop/index.html").exists(),
        "placeholder withdrawn on recovery"
    );
    assert!(tocsin.stop());
}

#[tokio::test]
async fn a_campaign_larger_than_max_campaign_size_is_refused_whole() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_files(dir.path(), target, smtp.port, 40, 10);
    let (code, out) = cli(&cfg, &["check"]);
    assert!(
        out.contains("more than mail.max_campaign_size (10)"),
        "warned ahead: {code} {out}"
    );
    let mut tocsin = start(&cfg);
    wait_up(port).await;
    up.store(false, Ordering::SeqCst);
    let mut refused = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = api(
            port,
            "POST",
            "/api/v1/incidents/shop/eta",
            Some(serde_json::json!({"eta": "3h", "by": "test"})),
        )
        .await;
        let i = api(port, "GET", "/api/v1/incidents/shop", None).await;
        if let Some(e) = i["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "delivery_failed")
        {
            refused = e["detail"].as_str().unwrap_or_default().to_string();
            break;
        }
    }
    assert!(
        refused.contains("more than mail.max_campaign_size (10): no customer was mailed"),
        "{refused:?}"
    );
    // Everything decided carried out: nobody was mailed, and nobody will be.
    support::until_metric(
        port,
        "tocsin_outbox_pending ",
        Duration::from_secs(30),
        &String::new,
        |v| v == 0.0,
    )
    .await;
    assert_eq!(smtp.count(), 0, "nobody was mailed");
    assert!(tocsin.stop());
}

#[tokio::test]
async fn refusals_are_recorded_with_the_server_reply_and_deferrals_retried() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_files(dir.path(), target, smtp.port, 1, 100);
    // aiosmtpd refuses reject*@ with 550 and defers later*@ with 451.
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name\nok@example.com,Ok\nreject@example.com,Rejected\nlater@example.com,Later\n",
    )
    .unwrap();
    let mut tocsin = start(&cfg);
    wait_up(port).await;
    up.store(false, Ordering::SeqCst);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = api(
            port,
            "POST",
            "/api/v1/incidents/shop/eta",
            Some(serde_json::json!({"eta": "3h", "by": "test"})),
        )
        .await;
        if r["eta"].is_string() {
            break;
        }
    }
    assert!(smtp.wait_count(1, Duration::from_secs(20)).await >= 1);
    let mut status = String::new();
    for _ in 0..50 {
        status = cli(&cfg, &["campaign", "status", "--once"]).1;
        if status.contains("failed reject@example.com") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        status.contains("failed reject@example.com: ") && status.contains("550"),
        "{status}"
    );
    let counts = status_json(&cfg)["counts"].clone();
    assert_eq!(
        (&counts["sent"], &counts["pending"], &counts["failed"]),
        (&1.into(), &1.into(), &1.into()),
        "{status}"
    );
    // The recipient gauges follow within a second of the last result.
    support::until_metric(
        port,
        "tocsin_campaign_recipients{state=\"failed\"}",
        Duration::from_secs(10),
        &String::new,
        |v| v == 1.0,
    )
    .await;
    let metrics = support::metrics(port).await;
    assert!(
        metrics.contains("tocsin_campaign_send_seconds_count"),
        "{metrics}"
    );
    assert_eq!(smtp.count(), 1, "only the accepted message arrived");
    assert!(tocsin.stop());
}

/// The disk of `data_dir` fills up while 5,000 customers are being mailed, then space
/// returns: sending goes on (the results wait in memory until they can be recorded), no
/// customer gets the mail twice or not at all, nothing else is told, and every send is
/// recorded in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_customers_are_told_once_through_a_full_disk() {
    const N: usize = 5_000;
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = support::SmallDisk::mount(&dir.path().join("var"), "64m");
    let (cfg, port) = write_files(dir.path(), target, smtp.port, N, N as u64 * 2);
    let expected: BTreeSet<String> = (0..N)
        .map(customer)
        .filter(|c| c.4 != "api")
        .map(|c| c.0)
        .chain(["bad@example.com".to_string()])
        .collect();
    let mut tocsin = start(&cfg);
    wait_up(port).await;
    up.store(false, Ordering::SeqCst);
    customers_told(port).await;

    let at = smtp.wait_count(500, Duration::from_secs(60)).await;
    assert!(at >= 500, "sending started: {at}");
    let filler = disk.fill();
    // While nothing can be written, the mails sent but not recorded (what a crash would
    // send again) stay within the workers' messages (8 connections) and the results
    // allowed to wait.
    // Full for at least 3 s, and until tocsin has met it: writes that fit in space the
    // database already holds (its write-ahead log reused) go through, so on a slow
    // machine the first refused write may come later.
    let log_path = dir.path().join("tocsin.log");
    let met = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("cannot record sends")
    };
    let mut most_unrecorded = 0;
    for i in 0..150 {
        if i >= 15 && met() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let recorded: u64 = api(port, "GET", "/api/v1/campaigns", None)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["counts"]["sent"].as_u64().unwrap())
            .sum();
        let received = smtp.count() as u64;
        most_unrecorded = most_unrecorded.max(received.saturating_sub(recorded));
    }
    assert!(
        most_unrecorded <= 8 + tocsin::campaign::sender::UNRECORDED as u64,
        "sent and not recorded: {most_unrecorded}"
    );
    std::fs::remove_file(filler).unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mails = loop {
        let mails = received(&smtp);
        if mails.len() >= expected.len() || std::time::Instant::now() > deadline {
            break mails;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let by_address = count_by_address(&mails, |_| true);
    let got: BTreeSet<String> = by_address.keys().cloned().collect();
    if got != expected {
        tocsin.stop();
        explain(dir.path());
    }
    assert_eq!(got.len(), expected.len(), "every customer told");
    assert!(got == expected, "only the service's customers told");
    let twice: Vec<_> = by_address.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "told twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert!(
        mails
            .iter()
            .all(|(_, s, _)| !s.contains("Update") && !s.contains("again")),
        "no update or recovery from the full disk"
    );

    // Every send is recorded once space is back (the log says the writes waited).
    let recorded = || {
        let c = &status_json(&cfg)["counts"];
        c["sent"] == expected.len() as u64 && c["pending"] == 0
    };
    for _ in 0..60 {
        if recorded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = cli(&cfg, &["campaign", "status", "--once"]).1;
    assert!(recorded(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("tocsin.log")).unwrap_or_default();
    assert!(
        log.contains("cannot record sends"),
        "the disk was full: {}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        log.contains("sends cannot be recorded yet"),
        "sending paused: {}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "full disk during a {}-recipient campaign: at most {most_unrecorded} mails sent and not yet recorded, none twice",
        expected.len()
    );
    assert!(tocsin.stop(), "tocsin stops cleanly afterwards");
}
