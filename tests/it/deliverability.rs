//! Mail that receivers trust: every kind of message tocsin sends, customers' in every
//! shipped language, signed at once with an RSA key in PKCS#1, one in PKCS#8 and an
//! Ed25519 key, each signature verified by dkimpy and every message scored by
//! SpamAssassin (offline): both independent of tocsin, installed by scripts/test.sh.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tocsin::campaign::Composer;
use tocsin::config::Config;
use tocsin::incident::StaffMailKind;
use tocsin::links::Signer;
use tocsin::notify::mail::{Mailer, Outgoing};
use tocsin::notify::staff::{self, ActionLinks, StaffNotice};
use tocsin::notify::templates::Templates;
use tocsin::store::{CampaignInfo, CampaignKind, IncidentRecord, RecipientJob};

use crate::support;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The three keys, written by openssl as operators make them, and the DNS records that
/// publish their public halves (derived by openssl, not by tocsin).
struct Keys {
    yaml: String,
    records: serde_json::Value,
}

fn keys(dir: &Path) -> Keys {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pkcs1 = dir.join("rsa-pkcs1.pem");
    let pkcs8 = dir.join("rsa-pkcs8.pem");
    let ed = dir.join("ed25519.pem");
    std::fs::write(&pkcs1, openssl(&["genrsa", "-traditional", "2048"])).unwrap();
    std::fs::write(
        &pkcs8,
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]),
    )
    .unwrap();
    std::fs::write(&ed, openssl(&["genpkey", "-algorithm", "ed25519"])).unwrap();
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(&pkcs8)
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    let public = |f: &Path| {
        openssl(&[
            "pkey",
            "-in",
            f.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
    };
    let ed_spki = public(&ed);
    let records = serde_json::json!({
        "rsa1._domainkey.example.com.": format!("v=DKIM1; k=rsa; p={}", b64(&public(&pkcs1))),
        "rsa8._domainkey.example.com.": format!("v=DKIM1; k=rsa; p={}", b64(&public(&pkcs8))),
        // An Ed25519 SubjectPublicKeyInfo ends with the 32-byte key (RFC 8410).
        "ed._domainkey.example.com.": format!("v=DKIM1; k=ed25519; p={}", b64(&ed_spki[ed_spki.len() - 32..])),
    });
    let yaml = format!(
        "  dkim:\n    - {{ selector: rsa1, key_file: {}, algorithm: rsa }}\n    - {{ selector: rsa8, key_file: {} }}\n    - {{ selector: ed, key_file: {}, algorithm: ed25519 }}\n",
        pkcs1.display(),
        pkcs8.display(),
        ed.display()
    );
    Keys { yaml, records }
}

fn config(dir: &Path, dkim: &str) -> Config {
    std::fs::write(
        dir.join("customers.csv"),
        "email,name,language,timezone,services\nanna@example.net,Anna Nowak,pl,Europe/Warsaw,shop\n",
    )
    .unwrap();
    let yaml = format!(
        "public_url: https://status.example.com
data_dir: ./var
company: {{ name: Example Shop, email: help@example.com, phone: \"+46 8 123 45 67\" }}
services:
  - id: shop
    name: Web shop
    audience: customers
    escalation: oncall
    probes:
      - {{ name: home, tcp: {{ address: \"127.0.0.1:1\" }} }}
escalation:
  oncall:
    - {{ after: 0s, to: [oncall@example.com] }}
    - {{ after: 15m, to: [lead@example.com] }}
audiences:
  customers: {{ csv: customers.csv }}
mail:
  from: \"Example Shop Status <status@example.com>\"
{dkim}"
    );
    let file = dir.join("probes.yaml");
    std::fs::write(&file, yaml).unwrap();
    tocsin::config::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

fn at(h: u64) -> SystemTime {
    support::epoch() + Duration::from_secs(h * 3600)
}

/// Every kind of mail, labelled: staff mails (in English, as staff read them) and
/// customers' in each shipped language.
fn every_message(config: &Config) -> Vec<(String, Outgoing)> {
    let mut out = Vec::new();
    let context = config.context(config.services.first());
    let incident = IncidentRecord {
        id: 7,
        service: "shop".into(),
        started: at(0),
        ended: None,
        acked_by: None,
        eta: Some(at(5)),
        customer_phase: true,
        promised_eta: Some(at(5)),
        next_update: None,
        timeline: Vec::new(),
    };
    let links = ActionLinks {
        ack: "https://status.example.com/act?i=7&a=ack&e=1&r=x&s=00".into(),
        eta: "https://status.example.com/act?i=7&a=eta&e=1&r=x&s=00".into(),
        update: "https://status.example.com/act?i=7&a=update&e=1&r=x&s=00".into(),
    };
    let staff_to = vec!["oncall@example.com".to_string()];
    for (label, notice) in [
        (
            "staff opened",
            StaffNotice::Level {
                kind: StaffMailKind::Opened,
                level: 0,
            },
        ),
        (
            "staff escalated",
            StaffNotice::Level {
                kind: StaffMailKind::Escalated,
                level: 1,
            },
        ),
    ] {
        out.push((
            label.to_string(),
            staff::render(
                &context,
                &incident,
                &notice,
                staff_to.clone(),
                Some(&links),
                at(1),
            ),
        ));
    }
    let resolved = IncidentRecord {
        ended: Some(at(4)),
        acked_by: Some("alice".into()),
        ..incident.clone()
    };
    out.push((
        "staff resolved".into(),
        staff::render(
            &context,
            &resolved,
            &StaffNotice::Resolved {
                ended: at(4),
                by: Some("alice"),
            },
            staff_to.clone(),
            None,
            at(4),
        ),
    ));
    for (label, kind) in [
        ("staff flapping", StaffMailKind::Flapping),
        ("staff monitor down", StaffMailKind::MonitorDown),
        ("staff monitor fault", StaffMailKind::MonitorFault),
        ("staff task restarted", StaffMailKind::TaskRestarted),
    ] {
        out.push((
            label.into(),
            staff::render_notice(
                kind,
                Some("Web shop"),
                &["canary/gateway".to_string()],
                staff_to.clone(),
                at(1),
            ),
        ));
    }
    out.push((
        "staff compensation".into(),
        staff::compensation_short(
            "Web shop",
            "3 of 40 customers got no code: the pool codes.csv ran out",
            12,
            staff_to,
        ),
    ));

    let composer = Composer {
        templates: Arc::new(Templates::load(None).unwrap_or_else(|e| panic!("{e:?}"))),
        signer: Arc::new(Signer::new(b"a link key of thirty-two bytes!!")),
        domain: "example.com".into(),
    };
    for lang in ["en", "pl", "sv"] {
        for (kind, ended, code) in [
            (CampaignKind::Outage, None, None),
            (CampaignKind::Update, None, None),
            (CampaignKind::Recovery, Some(at(4)), None),
            (CampaignKind::Recovery, Some(at(4)), Some("SORRY-4711")),
            (CampaignKind::Maintenance, Some(at(2)), None),
            (CampaignKind::MaintenanceDone, Some(at(2)), None),
        ] {
            let info = CampaignInfo {
                id: 3,
                kind,
                service: "shop".into(),
                incident: 7,
                started: at(0),
                ended,
                eta: Some(at(5)),
                next_update: Some(at(2)),
                window_note: Some("We move the shop to new servers.".into()),
                update: None,
            };
            let job = RecipientJob {
                id: 41,
                campaign: 3,
                email: "anna@example.net".into(),
                name: "Anna Nowak-Żółć".into(),
                language: lang.into(),
                timezone: "Europe/Warsaw".into(),
                vars: Default::default(),
                attempts: 0,
                compensation: code.map(str::to_string),
            };
            let label = format!(
                "customer {}{} {lang}",
                kind.as_str(),
                if code.is_some() { " with code" } else { "" }
            );
            let m = composer
                .compose(config, &info, &job)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            out.push((label, m));
        }
    }
    out
}

/// Writes each message as sent (signed) into `dir`, one `.eml` each; returns the files
/// with their labels.
fn write_all(config: &Config, dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mailer = Mailer::recording(&config.mail).unwrap();
    every_message(config)
        .into_iter()
        .enumerate()
        .map(|(i, (label, m))| {
            let bytes = mailer
                .formatted(&m)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let file = dir.join(format!("{i:02}.eml"));
            std::fs::write(&file, bytes).unwrap();
            (label, file)
        })
        .collect()
}

/// The values of header `name` in `eml`, each unfolded.
fn header(eml: &str, name: &str) -> Vec<String> {
    let head = eml
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

#[test]
fn every_message_verifies_with_every_key_in_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let config = config(
        dir.path(),
        &format!("{}  helo: mx1.example.com\n", keys.yaml),
    );
    let files = write_all(&config, dir.path());
    assert_eq!(files.len(), 8 + 18, "every kind of mail is rendered");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("tests/fixtures/dkim_verify.py")
        .args(files.iter().map(|(_, f)| f))
        .env("DKIM_RECORDS", keys.records.to_string())
        .output()
        .expect("python3 with dkimpy (scripts/test.sh installs python3-dkim)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), files.len() * 3, "three signatures on each");
    let label_of = |file: &str| {
        files
            .iter()
            .find(|(_, f)| f.to_str() == Some(file))
            .map(|(l, _)| l.clone())
            .unwrap_or_default()
    };
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| {
            format!(
                "{} ({}): {r}",
                label_of(r["file"].as_str().unwrap()),
                r["s"]
            )
        })
        .collect();
    assert!(failed.is_empty(), "dkimpy refused:\n{}", failed.join("\n"));
    let mut algorithms: Vec<&str> = results.iter().filter_map(|r| r["a"].as_str()).collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    assert_eq!(algorithms, ["ed25519-sha256", "rsa-sha256"]);
    for r in &results {
        assert_eq!(r["c"], "relaxed/relaxed");
        assert_eq!(r["d"], "example.com");
        let h: Vec<String> = r["h"]
            .as_str()
            .unwrap()
            .split(':')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        let label = label_of(r["file"].as_str().unwrap());
        let mut want = vec![
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "reply-to",
            "mime-version",
            "content-type",
            "auto-submitted",
        ];
        if label.starts_with("customer") {
            want.extend([
                "list-unsubscribe",
                "list-unsubscribe-post",
                "list-id",
                "feedback-id",
            ]);
        }
        for w in want {
            assert!(
                h.iter().any(|x| x == w),
                "{label}: {w} is not signed: {h:?}"
            );
        }
        // From is signed once more than it occurs: a second From breaks the signature.
        assert_eq!(h.iter().filter(|x| *x == "from").count(), 2, "{label}");
    }
    println!(
        "dkimpy verified {} signatures on {} messages",
        results.len(),
        files.len()
    );

    // What bulk senders are judged on, in every message.
    for (label, f) in &files {
        let eml = std::fs::read_to_string(f).unwrap();
        let one = |name: &str| {
            let v = header(&eml, name);
            assert_eq!(v.len(), 1, "{label}: {name}: {v:?}");
            v[0].clone()
        };
        assert_eq!(one("Auto-Submitted"), "auto-generated", "{label}");
        assert_eq!(one("X-Auto-Response-Suppress"), "All", "{label}");
        assert_eq!(one("Reply-To"), "help@example.com", "{label}");
        let id = one("Message-ID");
        assert!(id.ends_with("@example.com>"), "{label}: {id}");
        if label.starts_with("customer") {
            assert_eq!(one("List-Id"), "\"Web shop\" <shop.example.com>", "{label}");
            let unsub = one("List-Unsubscribe");
            assert!(
                unsub.starts_with("<https://status.example.com/unsubscribe?")
                    && unsub.ends_with(", <mailto:help@example.com?subject=unsubscribe>"),
                "{label}: {unsub}"
            );
            assert_eq!(one("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
            assert!(one("Feedback-ID").ends_with(":shop:tocsin"), "{label}");
            // The name is known, so it is shown (encoded: it is not ASCII).
            assert!(one("To").ends_with("<anna@example.net>"), "{label}");
            assert!(one("To").starts_with("=?utf-8?"), "{label}");
        }
    }
    // Both parts of customers' mails say why it came and how to stop it, after a
    // signature separator that mail readers recognise.
    let why = [
        "You receive this because you use Web shop",
        "Otrzymujesz tę wiadomość, ponieważ korzystasz z usługi Web shop",
        "Du får detta eftersom du använder Web shop",
    ];
    for (label, m) in every_message(&config) {
        if !label.starts_with("customer") {
            assert!(
                m.html.contains("<html lang=\"en\">") && m.html.contains("<title>"),
                "{label}"
            );
            assert!(
                !m.html.contains("><"),
                "{label}: elements without whitespace between them"
            );
            continue;
        }
        assert!(m.text.contains("\n-- \n"), "{label}: signature separator");
        if label.starts_with("customer outage") {
            // A subject's ETA names its day and zone, not a bare clock time.
            let (_, by) = m.subject.split_once("; ").unwrap_or_default();
            assert!(
                by.chars().filter(char::is_ascii_digit).count() >= 5 && by.contains(" CE"),
                "{label}: {}",
                m.subject
            );
        }
        if label.starts_with("customer maintenance ") {
            // The window's note says what is done; no claim about the time chosen.
            assert!(
                m.text.contains("We move the shop to new servers."),
                "{label}: {}",
                m.text
            );
            assert!(
                m.html.contains("We move the shop to new servers."),
                "{label}"
            );
        }
        assert!(
            !m.text.contains("quiet time")
                && !m.text.contains("spokojn")
                && !m.text.contains("lugn tid"),
            "{label}"
        );
        for part in [&m.text, &m.html] {
            assert!(
                why.iter().any(|w| part.contains(w)),
                "{label}: no reason line in\n{part}"
            );
            // (minijinja writes `/` as `&#x2f;` in HTML attributes.)
            assert!(part.contains("unsubscribe?e=anna%40example.net"), "{label}");
        }
    }
}

#[tokio::test]
async fn the_mail_server_is_greeted_with_the_configured_name_never_the_machine_s() {
    let server = support::Smtp::start(None);
    let dir = tempfile::tempdir().unwrap();
    let smtp = format!(
        "  smtp: smtp://127.0.0.1:{}\n  allow_plain: true\n",
        server.port
    );
    let mut config = config(dir.path(), &smtp);
    let send = |config: &Config| {
        let mailer = Mailer::new(&config.mail, dir.path()).unwrap();
        async move {
            let m = Outgoing {
                to: vec!["oncall@example.com".into()],
                subject: "[tocsin] test".into(),
                text: "text".into(),
                html: "<p>html</p>".into(),
                ..Outgoing::default()
            };
            mailer.send(&m).await.unwrap();
            mailer.send_on(&mut None, &m).await.unwrap();
        }
    };
    send(&config).await;
    config.mail.helo = "mx1.example.com".into();
    send(&config).await;
    let helos: Vec<String> = server
        .mails()
        .iter()
        .map(|m| header(&m.replace("\r\n", "\n").replace('\n', "\r\n"), "X-Helo")[0].clone())
        .collect();
    assert_eq!(
        helos,
        [
            "example.com",
            "example.com",
            "mx1.example.com",
            "mx1.example.com"
        ]
    );
}

/// SpamAssassin 4 with its shipped rules, no network tests: every message scores under
/// 1.0, and the rules that hit are printed.
#[test]
fn spamassassin_scores_every_message_under_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let config = config(dir.path(), &keys.yaml);
    let files = write_all(&config, dir.path());
    // One mbox, one run: SpamAssassin's start-up costs seconds, a message milliseconds.
    let mut mbox = Vec::new();
    for (_, f) in &files {
        mbox.extend_from_slice(b"From tocsin@example.com Sun Nov 29 08:00:00 2026\n");
        let eml = std::fs::read_to_string(f).unwrap().replace("\r\n", "\n");
        for line in eml.lines() {
            if line.starts_with("From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(line.as_bytes());
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
    }
    let home = dir.path().join("sa-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = std::process::Command::new("spamassassin")
        .args(["--local", "--mbox", "--test-mode", "--cf=use_bayes 0"])
        .env("HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spamassassin (scripts/test.sh installs it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&mbox).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let statuses: Vec<String> = text
        .split("\nFrom tocsin@example.com ")
        .filter_map(|m| {
            let head = m.split("\n\n").next()?;
            let mut status = String::new();
            let mut inside = false;
            for l in head.lines() {
                if l.starts_with("X-Spam-Status:") {
                    inside = true;
                    status.push_str(l);
                } else if inside && l.starts_with(char::is_whitespace) {
                    status.push_str(l.trim_start());
                    status.push(' ');
                } else {
                    inside = false;
                }
            }
            (!status.is_empty()).then_some(status)
        })
        .collect();
    assert_eq!(
        statuses.len(),
        files.len(),
        "one verdict per message:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut high = Vec::new();
    for ((label, _), status) in files.iter().zip(&statuses) {
        let score: f64 = status
            .split("score=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{label}: no score in {status}"));
        let tests = status
            .split("tests=")
            .nth(1)
            .and_then(|s| s.split(" autolearn").next())
            .unwrap_or("")
            .to_string();
        println!("{label:34} {score:5.1}  {tests}");
        if score >= 1.0 {
            high.push(format!("{label}: {score} ({tests})"));
        }
    }
    assert!(high.is_empty(), "scored 1.0 or more:\n{}", high.join("\n"));
}

/// Two fresh stores number their campaigns alike; their messages must still never share
/// a Message-ID. Within one store the ID of a message survives a restart, so a message
/// sent again after a crash is recognisably the same one.
#[test]
fn campaign_message_ids_are_unique_across_stores_and_stable_across_a_restart() {
    use tocsin::store::{IncidentStore, SqlStore};
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let templates = Arc::new(Templates::load(None).unwrap_or_else(|e| panic!("{e:?}")));
    let id_from = |db: &Path| {
        let mut store = SqlStore::open_sqlite(db).unwrap();
        let composer = Composer {
            templates: templates.clone(),
            signer: Arc::new(Signer::new(&store.link_key().unwrap())),
            domain: "example.com".into(),
        };
        let info = CampaignInfo {
            id: 1,
            kind: CampaignKind::Outage,
            service: "shop".into(),
            incident: 1,
            started: at(0),
            ended: None,
            eta: Some(at(5)),
            next_update: None,
            window_note: None,
            update: None,
        };
        let job = RecipientJob {
            id: 1,
            campaign: 1,
            email: "anna@example.net".into(),
            name: String::new(),
            language: "en".into(),
            timezone: "UTC".into(),
            vars: Default::default(),
            attempts: 0,
            compensation: None,
        };
        composer
            .compose(&config, &info, &job)
            .unwrap()
            .message_id
            .unwrap()
    };
    let a = id_from(&dir.path().join("a.db"));
    let b = id_from(&dir.path().join("b.db"));
    assert_ne!(a, b, "two fresh stores");
    assert_eq!(id_from(&dir.path().join("a.db")), a, "after a restart");
    assert!(
        a.starts_with("tocsin.1.1.") && a.ends_with("@example.com"),
        "{a}"
    );

    // Staff mails carry a fresh random one each, at the From domain.
    let mailer = Mailer::recording(&config.mail).unwrap();
    let m = Outgoing {
        to: vec!["oncall@example.com".into()],
        subject: "s".into(),
        text: "t".into(),
        html: "<p>h</p>".into(),
        ..Outgoing::default()
    };
    let ids: std::collections::BTreeSet<String> = (0..50)
        .map(|_| {
            let eml = String::from_utf8(mailer.formatted(&m).unwrap()).unwrap();
            header(&eml, "Message-ID")[0].clone()
        })
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|i| i.ends_with("@example.com>")));
}
