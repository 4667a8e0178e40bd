//! `tocsin check` on campaign templates and audiences: syntax errors, messages that could
//! be vague, incomplete languages, bad audience rows, all with file and line.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

fn check(dir: &Path, extra: &str) -> (i32, String) {
    let cfg = dir.join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "services:
  - id: shop
    audience: customers
    probes:
      - {{ name: home, tcp: {{ address: \"127.0.0.1:1\" }} }}
audiences:
  customers: {{ csv: ./customers.csv }}
{extra}
allow_insecure_links: true
"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn template_mistakes_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name,language\nana@example.com,Ana,pl\nbo@example.com,Bo,de\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "customers.csv:3:1: language `de` has no templates: 1 recipient will get English"
        ),
        "{out}"
    );

    let t = dir.path().join("tpl");
    std::fs::create_dir_all(t.join("en")).unwrap();
    std::fs::create_dir_all(t.join("pl")).unwrap();
    // A syntax error, on line 3.
    std::fs::write(
        t.join("en/recovery.txt"),
        "Hello,\n\n{% if customer.name %}back{% endfor %}\n",
    )
    .unwrap();
    // Vague: says nothing about when, with or without an ETA.
    std::fs::write(
        t.join("pl/outage.txt"),
        "Mamy awarię {{ service.name }}. Nie wiemy, kiedy wróci.\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 2, "{out}");
    let tpl = t.display().to_string();
    assert!(
        out.contains(&format!("{tpl}/en/recovery.txt:3:1: syntax error")),
        "{out}"
    );

    std::fs::write(
        t.join("en/recovery.txt"),
        "Hello {{ customer.name }}, back since {{ ended }}.\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "{tpl}/pl/outage.txt:1:1: with an ETA set, this message does not state it"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{tpl}/pl/outage.txt:1:1: without an ETA, this message does not commit to a next-update time")),
        "{out}"
    );

    // A new language must bring every file.
    std::fs::remove_file(t.join("pl/outage.txt")).unwrap();
    std::fs::create_dir_all(t.join("de")).unwrap();
    std::fs::write(t.join("de/outage.txt"), "{{ eta }}{{ next_update }}").unwrap();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "{tpl}/de/outage.subject:1:1: language `de` lacks `outage.subject`"
        )),
        "{out}"
    );
}

/// A template that loops without end (here 10^10 times) is stopped and named with its
/// place, rather than hanging `tocsin check`.
#[test]
fn a_template_that_would_run_forever_is_stopped_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "email\nana@example.com\n").unwrap();
    let t = dir.path().join("tpl/en");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("outage.txt"),
        "{{ eta }}{{ next_update }}\n{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "{}/outage.txt:2:1: engine ran out of fuel",
            t.display()
        )),
        "{out}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// One bad customer row must not keep tocsin from starting (the systemd unit runs
/// `tocsin check` before it): rows are warnings with their lines, left out only when no
/// usable address or service remains, mended otherwise; `--strict` makes them errors.
#[test]
fn bad_audience_rows_are_warnings_with_their_lines_and_errors_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name,language,timezone,services\n\
         ana@example.com,Ana,pl,Europe/Warsaw,shop\n\
         \"bob@example.com\r\nBcc: x@example.com\",Bob,en,UTC,\n\
         eve@example.com,Eve,xx-!!,UTC,\n\
         ann@example.com,Ann,en,Moon/Base,\n\
         zed@example.com,Zed,en,UTC,warehouse\n\
         short@example.com\n\
         ANA@example.com,Ana again,pl,Europe/Warsaw,\n\
         nia@example.com,\"Nia\u{7}\tB.\",en,UTC,\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "");
    assert_eq!(code, 0, "{out}");
    let csv = dir.path().join("customers.csv").display().to_string();
    for want in [
        format!("warning: {csv}:3:1: `email` holds a line break or control character (a header injection attempt?): the row is left out"),
        format!("warning: {csv}:5:1: language `xx-!!` is not a language code such as en, pl or sv: English is used"),
        format!("warning: {csv}:6:1: time zone `Moon/Base` is unknown (use an IANA name such as Europe/Warsaw): UTC is used"),
        format!("warning: {csv}:7:1: service `warehouse` is not in the config (services: shop): the row is left out"),
        format!("warning: {csv}:8:1: this row has 1 field, the header has 5"),
        format!("warning: {csv}:9:1: ANA@example.com is also on line 2: merged into one recipient"),
        format!("warning: {csv}:10:1: `name` held a line break or control character: taken out"),
        "warning: 3 audience rows left out (everyone else is mailed; `check --strict` makes them errors)".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(out.contains(": valid (1 service, 1 probe)"), "{out}");

    let cfg = dir.path().join("probes.yaml");
    let strict = Command::new(BIN)
        .args(["check", "--strict", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "{csv}:7:1: service `warehouse` is not in the config"
        )),
        "{text}"
    );
    assert!(
        text.contains("3 errors found in templates or audiences"),
        "{text}"
    );
}

#[test]
fn vague_autoreply_and_hotline_texts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "email\nana@example.com\n").unwrap();
    let t = dir.path().join("tpl");
    std::fs::create_dir_all(t.join("sv")).unwrap();
    std::fs::write(
        t.join("sv/hotline.txt"),
        "{% for o in outages %}{{ o.service }} fungerar inte.{% endfor %}\n",
    )
    .unwrap();
    std::fs::write(
        t.join("sv/autoreply.txt"),
        "{% for o in outages %}{{ o.eta }}{% endfor %}\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 2, "{out}");
    let tpl = t.display().to_string();
    let msg = "this notice does not state each outage's ETA (`o.eta`) or, without one, its next-update time (`o.next_update`)";
    assert!(
        out.contains(&format!("{tpl}/sv/hotline.txt:1:1: {msg}")),
        "{out}"
    );
    // It states the ETA, but says nothing when there is none.
    assert!(
        out.contains(&format!("{tpl}/sv/autoreply.txt:1:1: {msg}")),
        "{out}"
    );
}

#[test]
fn autoresponder_and_hotline_mistakes_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "email\nana@example.com\n").unwrap();
    let (code, out) = check(
        dir.path(),
        "autoresponder:
  managesieve: \"imap://mail.example.com\"
  user_env: \"SIEVE USER\"
  password_env: SIEVE_PASSWORD
  mailboxes: [support@example.com, Support@example.com]
  allow_plain: true
  days: 0
hotline:
  hook: [./no-such-program]
  hook_timeout: 0s
  timezone: Mars/Olympus
",
    );
    assert_eq!(code, 2, "{out}");
    let cfg = dir.path().join("probes.yaml").display().to_string();
    for want in [
        ":9:16: `managesieve` must be a URL such as sieve://mail.example.com:4190, not `imap://mail.example.com`",
        ":10:13: `user_env` names an environment variable (such as SIEVE_PASSWORD), not `SIEVE USER`",
        ":12:36: mailbox `Support@example.com` is listed twice",
        ":13:16: `allow_plain` is only for a ManageSieve server on loopback",
        ":14:9: `days` (at most one reply per sender in this many days) must be between 1 and 30",
        "no-such-program does not exist or is not executable",
        ":17:17: `hook_timeout` must be longer than zero",
        ":18:13: `timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `Mars/Olympus`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(out.lines().all(|l| l.starts_with(&cfg)), "{out}");

    // Credentials in the URL are refused too, and a server elsewhere needs TLS.
    let (code, out) = check(
        dir.path(),
        "autoresponder: { managesieve: \"sieve://admin:pw@mail.example.com\", user_env: U, password_env: P }\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("credentials do not belong in the file"),
        "{out}"
    );
}

/// What works but customers would miss is a warning, with its place: a customer mail that
/// never shows staff's update, a compensation pool smaller than the audience it serves.
#[test]
fn a_template_without_the_update_and_a_pool_too_small_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email\nana@example.com\nbo@example.com\ncy@example.com\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("codes.csv"), "code\nK1\nK2\n").unwrap();
    let t = dir.path().join("tpl/en");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("update.txt"),
        "{{ service.name }}: expected back by {{ eta }}; next update by {{ next_update }}.\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), "campaigns: { templates: ./tpl }\n");
    assert_eq!(code, 0, "warnings only: {out}");
    let tpl = dir.path().join("tpl").display().to_string();
    assert!(
        out.contains(&format!("warning: {tpl}/en/update.txt:1:1: this customer mail never shows staff's update ({{{{ update.text }}}})")),
        "{out}"
    );
    assert!(
        !out.contains("outage.txt:1:1: this customer mail never shows"),
        "{out}"
    );
    // The pool: 2 codes for 3 customers.
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        "services:
  - id: shop
    audience: customers
    compensation: { after: 4h, codes_csv: ./codes.csv }
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:1\" } }
audiences:
  customers: { csv: ./customers.csv }
allow_insecure_links: true
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("codes.csv:1:1: holds 2 codes, fewer than the 3 customers of `shop`: after a long outage 1 of them would get no code; add codes to the file"),
        "{text}"
    );
    assert!(
        text.contains(
            "service `shop` names no `escalation` policy: its incidents open and mail nobody"
        ),
        "{text}"
    );
}
