//! `tocsin drill` on the design's example config, asserted step by step, and on a config
//! with every customer-side part (autoresponder, hotline hook, webhooks, compensation):
//! the real state machine's decisions in order with their times and reach, a sample of
//! each message and page, nothing sent and no file published.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

fn drill(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["drill", "--config"])
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The plan's lines (time and decision), without the details under them.
fn plan(report: &str) -> Vec<String> {
    report
        .lines()
        .take_while(|l| !l.starts_with("---- sample"))
        .filter(|l| l.trim_start().starts_with('+'))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn the_design_example_drill_with_an_eta_step_by_step() {
    let cfg = Path::new("testdata/design/probes.yaml");
    let (code, out, err) = drill(
        cfg,
        &[
            "--service",
            "shop",
            "--eta",
            "5h",
            "--start",
            "2026-11-27T21:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let steps = plan(&out);
    let want = [
        "+0:01:00  incident opened after 3 failed rounds (shop-db: simulated failure (drill); shop-dns: simulated failure (drill); shop-home: simulated failure (drill))",
        "+0:01:00  staff mail, level 0 (incident opened) to oncall@example.com (1 recipient)",
        "+0:11:00  ETA set by on-call: recovery expected at 2026-11-28T02:00:00Z",
        "+0:11:00  customer phase: the ETA is past the customer threshold; customers are promised recovery by 2026-11-28T02:00:00Z",
        "+0:15:00  staff mail, level 1 (escalated: not acknowledged) to ops-lead@example.com (1 recipient)",
        "+1:00:00  staff mail, level 2 (escalated: not acknowledged) to staff@example.com (1 recipient)",
        "+4:45:00  staff mail, level 0 (customers are owed an update soon) to oncall@example.com, ops-lead@example.com, staff@example.com (3 recipients)",
        "+4:59:30  recovered: 2 good rounds; the outage lasted 5 h",
    ];
    assert_eq!(steps, want, "{out}");
    for detail in [
        "- outage mail to 1 customer of audience `customers` (1 valid row, 0 not following shop; opt-outs are left out too)",
        "- placeholder page published: testdata/design/var/www/shop/index.html",
        "- hotline announcement published in testdata/design/var/hotline: en.txt, pl.txt, sv.txt",
        "- staff mail \"resolved\" to oncall@example.com, ops-lead@example.com, staff@example.com (3 recipients)",
        "- recovery mail to the 1 customer told of the outage",
        "- placeholder withdrawn: testdata/design/var/www/shop/index.html",
        "- hotline announcement withdrawn from testdata/design/var/hotline",
    ] {
        assert!(out.contains(detail), "missing {detail:?} in\n{out}");
    }
    assert!(out.contains("The plan ends at +4:59:30 with everything taken down."));
    // One sample of each message and page, rendered as the customer would get it.
    for sample in [
        "---- sample: staff mail, level 0 (incident opened)",
        "---- sample: staff mail, level 1 (escalated: not acknowledged)",
        "---- sample: customer mail: outage",
        "---- sample: placeholder page",
        "---- sample: hotline announcement (en)",
        "---- sample: staff mail: resolved",
        "---- sample: customer mail: recovery",
    ] {
        assert_eq!(out.matches(sample).count(), 1, "{sample} in\n{out}");
    }
    // The customer's mail in her language and time zone (Anna: sv, Europe/Stockholm).
    assert!(
        out.contains(
            "| Vi räknar med att tjänsten är tillbaka senast lördag 28 november 2026 kl. 03:00 CET."
        ),
        "{out}"
    );
    // Nothing was published next to the example.
    assert!(!Path::new("testdata/design/var").exists());
}

#[test]
fn without_an_eta_customers_are_told_at_the_threshold_and_updated_as_promised() {
    let cfg = Path::new("testdata/design/probes.yaml");
    let (code, out, err) = drill(
        cfg,
        &[
            "--service",
            "shop",
            "--ack-after",
            "5m",
            "--duration",
            "4h50m",
            "--start",
            "2026-11-27T21:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        plan(&out),
        [
            "+0:01:00  incident opened after 3 failed rounds (shop-db: simulated failure (drill); shop-dns: simulated failure (drill); shop-home: simulated failure (drill))",
            "+0:01:00  staff mail, level 0 (incident opened) to oncall@example.com (1 recipient)",
            "+0:06:00  acknowledged by on-call: escalation stops",
            "+3:00:00  customer phase: the outage reached the customer threshold; customers are promised the next update by 2026-11-28T01:00:00Z",
            "+3:45:00  staff mail, level 0 (customers are owed an update soon) to oncall@example.com (1 recipient)",
            "+4:00:00  update to customers: now promised the next update by 2026-11-28T02:00:00Z",
            "+4:45:00  staff mail, level 0 (customers are owed an update soon) to oncall@example.com (1 recipient)",
            "+4:50:30  recovered: 2 good rounds; the outage lasted 4 h 51 min",
        ],
        "{out}"
    );
    assert!(out.contains("- update mail to 1 customer of"), "{out}");
    assert!(out.contains("---- sample: customer mail: update"), "{out}");
}

#[test]
fn every_customer_side_part_is_in_the_rehearsal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,timezone,services\nana@example.com,Ana,pl,Europe/Warsaw,shop\nbo@example.com,Bo,en,UTC,api\ncy@example.com,Cy,en,America/New_York,\n",
    )
    .unwrap();
    std::fs::write(d.join("codes.csv"), "code\nC-1\n").unwrap();
    std::fs::write(d.join("hook.sh"), "#!/bin/sh\ncat > /dev/null\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("hook.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        "data_dir: ./var
allow_insecure_links: true
services:
  - id: shop
    name: Web shop
    customer_threshold: 1h
    audience: customers
    compensation: { after: 2h, codes_csv: ./codes.csv }
    probes:
      - { name: home, interval: 1m, timeout: 5s, tcp: { address: \"127.0.0.1:1\" } }
  - id: api
    probes:
      - { name: api, tcp: { address: \"127.0.0.1:1\" } }
audiences:
  customers: { csv: ./customers.csv }
autoresponder:
  managesieve: \"sieve://mail.example.com\"
  user_env: SIEVE_USER
  password_env: SIEVE_PASSWORD
  mailboxes: [support@example.com, sales@example.com]
hotline:
  hook: [./hook.sh]
webhooks:
  - { url: \"https://chat.example.com/hook\", secret_env: HOOK_SECRET }
  - { url: \"https://pager.example.com/hook\", secret_env: HOOK_SECRET, events: [opened, resolved] }
",
    )
    .unwrap();
    let out_dir = d.join("samples");
    let (code, out, err) = drill(
        &cfg,
        &[
            "--service",
            "shop",
            "--eta",
            "3h",
            "--start",
            "2026-11-27T21:00:00Z",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "- outage mail to 2 customers of audience `customers` (3 valid rows, 1 not following shop; opt-outs are left out too)",
        "- autoresponder on in 2 mailboxes over mail.example.com:4190: support@example.com, sales@example.com",
        "hook ",
        "- webhook `opened` to 2 receivers",
        "- webhook `customer_phase` to 1 receiver",
        "- webhook `resolved` to 2 receivers",
        // What a receiver gets, built by the real notifier and kept, not POSTed.
        "---- sample: webhook `opened` (JSON body, signed in X-Tocsin-Signature)",
        "\"event\":\"opened\"",
        "- recovery mail to the 2 customers told of the outage",
        "- each with a compensation code (outage 2 h 59 min >= 2 h): 1 code in",
        ", 1 short: staff would be told",
        "- autoresponder off: the previously active script restored in 2 mailboxes",
        "---- sample: autoresponder (Sieve script)",
        "| require [\"vacation\"];",
        "| Dziękujemy",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Samples in full on request; the published directories stay untouched.
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("placeholder-page.html")),
        "{files:?}"
    );
    assert!(!d.join("var").exists(), "a drill publishes nothing");

    // Bad input: an unknown service, an output directory customers can see.
    let (code, _, err) = drill(&cfg, &["--service", "shp"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "tocsin: no service `shp` (services: shop, api)");
    let www = d.join("var/www/drill");
    let (code, _, err) = drill(&cfg, &["--service", "shop", "--out", www.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is inside a directory tocsin publishes"),
        "{err}"
    );
    assert!(!d.join("var").exists());
    // The same directory reached through a path that does not exist yet, and through a
    // link to it.
    std::fs::create_dir_all(d.join("var/www")).unwrap();
    let around = d.join("not-yet/../var/www/drill");
    std::os::unix::fs::symlink(d.join("var/www"), d.join("shortcut")).unwrap();
    let linked = d.join("shortcut/drill");
    for sneaky in [&around, &linked] {
        let (code, _, err) = drill(
            &cfg,
            &["--service", "shop", "--out", sneaky.to_str().unwrap()],
        );
        assert_eq!(code, 2, "{}: {err}", sneaky.display());
        assert!(
            err.contains("is inside a directory tocsin publishes"),
            "{err}"
        );
    }
    assert!(!d.join("var/www/drill").exists());
}

/// On-call's ETA set after it has passed is refused by the engine, as it would be in a
/// real outage: the drill says so in the plan and carries on.
#[test]
fn an_eta_already_past_is_reported_as_refused() {
    let cfg = Path::new("testdata/design/probes.yaml");
    let (code, out, err) = drill(
        cfg,
        &[
            "--service",
            "shop",
            "--eta",
            "5m",
            "--eta-after",
            "10m",
            "--duration",
            "40m",
            "--start",
            "2026-11-27T21:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let refused: Vec<String> = plan(&out)
        .into_iter()
        .filter(|l| l.contains("refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{out}");
    assert!(
        refused[0].starts_with("+0:11:00  on-call's ETA refused: "),
        "{out}"
    );
    assert!(out.contains("recovered: 2 good rounds"), "{out}");
}

/// A database that a shop depends on, paged through a rotation and two channels, with a
/// reminder at the last level.
#[test]
fn the_drill_shows_who_is_paged_through_which_channels_and_who_hears_of_what() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name,language,services\nana@example.com,Ana,en,db\nbo@example.com,Bo,en,shop\ncy@example.com,Cy,en,db shop\n",
    )
    .unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:0
allow_insecure_links: true
services:
  - id: db
    name: Database
    escalation: default
    audience: customers
    probes:
      - { name: pg, tcp: { address: \"127.0.0.1:9\" } }
  - id: shop
    name: Web shop
    escalation: default
    audience: customers
    depends_on: [db]
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:9\" } }
rotations:
  primary: { members: [anna@ops.example, piotr@ops.example], every: 1w, start: \"2026-12-07T09:00:00+01:00\", timezone: Europe/Warsaw }
channels:
  ops: { slack: { url_env: SLACK_URL } }
  main: { pagerduty: { routing_key_env: PD_KEY } }
escalation:
  default:
    - { after: 0m, to: [rotation:primary, slack:ops, pagerduty:main] }
    - { after: 1h, to: [lead@example.com], repeat_every: 2h }
audiences:
  customers: { csv: ./customers.csv }
mail:
  from: \"Example Status <status@example.com>\"
",
    )
    .unwrap();
    // No channel secret is set: a drill sends nothing and needs none.
    let (code, out, err) = drill(
        &cfg,
        &["--service", "db", "--start", "2026-12-15T10:00:00+01:00"],
    );
    assert_eq!(code, 0, "{err}");
    let steps = plan(&out);
    assert_eq!(
        steps[1],
        "+0:01:00  staff mail, level 0 (incident opened) to piotr@ops.example, slack:ops, pagerduty:main (1 recipient and 2 channels)",
        "{out}"
    );
    assert!(
        steps.iter().any(|s| s == "+3:00:00  staff mail, level 1 (reminder: still not acknowledged) to lead@example.com (1 recipient)"),
        "{out}"
    );
    for line in [
        "- channels: pagerduty:main, slack:ops",
        "- on call: piotr@ops.example (rotation primary: turn of member 2 of 2, until 2026-12-21 09:00 CET)",
        "- outage mail to 2 customers of audience `customers`",
        "- if Web shop fails with it: attached to this incident; 1 more customer about Web shop (those following it whom no earlier mail reached)",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
}
