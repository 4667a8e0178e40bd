//! The monitor's own trouble is not an outage, reproduced as it was found: tocsin run
//! with 64 file descriptors, and 55 clients that connect and send nothing. Before, the
//! listener ran out of descriptors, the probes failed with `Too many open files`, an
//! incident opened and customers were about to be told, for a target that never failed.

use std::time::Duration;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_on_a_small_descriptor_limit_cause_no_incident() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "escalation: default",
            "escalation:\n  default:\n    - { after: 0m, to: [oncall@example.com] }\n",
        )
        .replace(
            "data_dir: ./var",
            &format!("data_dir: {}", dir.path().join("var").display()),
        ),
    )
    .unwrap();
    let log = dir.path().join("tocsin.log");
    let logf = std::fs::File::create(&log).unwrap();
    let _tocsin = support::Proc(
        std::process::Command::new("prlimit")
            .args(["--nofile=64:64", "--"])
            .arg(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("prlimit (util-linux)"),
    );
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    support::until("tocsin to serve", Duration::from_secs(20), &explain, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    // 55 clients that connect and send nothing, held for six probe rounds.
    let mut idle = Vec::new();
    for _ in 0..55 {
        if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            idle.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(idle);
    // The header timeout (10 s) frees the slots the idle clients held.
    let mut served = None;
    for _ in 0..40 {
        if let Some(v) = support::metric(port, "tocsin_incident_open{service=\"shop\"}").await {
            served = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        served,
        Some(0.0),
        "no incident for a target that never failed\n{}",
        explain()
    );
    let m = support::metrics(port).await;
    assert!(
        m.contains("probe_success{probe=\"home\",service=\"shop\"} 1"),
        "{m}\n{}",
        explain()
    );
    assert!(
        !explain().contains("incident decision"),
        "no decision was taken:\n{}",
        explain()
    );
    assert!(
        explain().contains("file descriptor limit raised") || explain().contains("cannot raise"),
        "{}",
        explain()
    );
}

/// The disk of `data_dir` fills up during an outage: nothing can be stored, so nothing
/// is decided or sent (and nothing panics); when space returns, the outage is decided
/// from the probes as they are then, and staff get exactly one mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_an_outage_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let var = dir.path().join("var");
    let disk = support::SmallDisk::mount(&var, "4m");
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "escalation: default",
            "escalation:\n  default:\n    - { after: 0m, to: [oncall@example.com] }\nmail:\n  from: \"Example Status <status@example.com>\"\n",
        )
        .replace("data_dir: ./var", &format!("data_dir: {}", var.display())),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[]).await;
    support::runs(port, "shop", "success", 2, &String::new).await;

    let filler = disk.fill();
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    support::runs(port, "shop", "failure", 4, &String::new).await;
    assert!(
        app.store
            .lock()
            .open_incident_of("shop")
            .ok()
            .flatten()
            .is_none(),
        "nothing could be stored, so nothing was decided"
    );
    assert!(support::spooled(dir.path()).is_empty());

    std::fs::remove_file(filler).unwrap();
    shop_incident(port, true).await;
    app.settled(&|| format!("{:?}", support::spooled(dir.path())))
        .await;
    let down: Vec<_> = support::spooled(dir.path())
        .into_iter()
        .filter(|(_, subject, _)| subject == "[tocsin] Web shop is DOWN")
        .collect();
    assert_eq!(down.len(), 1, "{down:?}");
    app.stop().await;
}

/// The system clock jumps four hours forward during an outage, then an hour back
/// (libfaketime, in tocsin's process only): no customer phase from the jump (the
/// threshold is 3 h), no escalation to the 2-hour level, the incident's start unmoved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_during_an_outage_changes_nothing() {
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(LIB).exists(),
        "libfaketime (scripts/test.sh installs Debian's faketime)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name\nana@example.com,Ana\n",
    )
    .unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "escalation: default\naudience: customers\ncustomer_threshold: 3h",
            "escalation:\n  default:\n    - { after: 0m, to: [oncall@example.com] }\n    - { after: 2h, to: [lead@example.com] }\naudiences:\n  customers: { csv: ./customers.csv }\nmail:\n  from: \"Example Status <status@example.com>\"\n",
        ),
    )
    .unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let log = dir.path().join("tocsin.log");
    let _tocsin = support::Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(&cfg)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("TOCSIN_API_TOKEN", "jump")
            .env("LD_PRELOAD", LIB)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    support::runs(port, "shop", "success", 2, &explain).await;
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    support::until_metric(
        port,
        "tocsin_incident_open{service=\"shop\"}",
        Duration::from_secs(15),
        &explain,
        |v| v == 1.0,
    )
    .await;
    let started = || async {
        let body = support::api_get(port, "/api/v1/incidents/shop", "jump").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["started"].clone()
    };
    let before = started().await;

    std::fs::write(&offset, "+4h\n").unwrap();
    support::runs(port, "shop", "failure", 4, &explain).await;
    std::fs::write(&offset, "-1h\n").unwrap();
    support::runs(port, "shop", "failure", 3, &explain).await;

    assert_eq!(started().await, before, "the incident's start did not move");
    assert_eq!(
        support::metric(port, "tocsin_incident_customer_phase{service=\"shop\"}").await,
        Some(0.0),
        "no customer phase from a jump\n{}",
        explain()
    );
    let mails = support::spooled(dir.path());
    assert!(
        mails.iter().all(|(to, _, _)| to == "oncall@example.com"),
        "only the first level was mailed: {:?}",
        mails.iter().map(|m| (&m.0, &m.1)).collect::<Vec<_>>()
    );
    assert!(
        explain().contains("the system clock jumped"),
        "{}",
        explain()
    );
}

/// The SMTP relay refuses every connection for two simulated hours of an outage (the
/// incident opens, escalates twice, reaches its customers): nothing is lost or given up,
/// and once the relay is back every mail is delivered once, staff's and each customer's in
/// the order they were decided, although their retries had come due in another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_relay_down_for_two_hours_delivers_everything_afterwards_in_order() {
    let mut smtp = support::Smtp::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("email,name,language,timezone\n");
    for i in 0..20 {
        csv.push_str(&format!("c{i}@example.com,Customer {i},en,UTC\n"));
    }
    std::fs::write(dir.path().join("customers.csv"), csv).unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "escalation: default\naudience: customers\ncustomer_threshold: 1h",
            &format!(
                "escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
    - {{ after: 30m, to: [lead@example.com] }}
    - {{ after: 90m, to: [boss@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
campaigns: {{ next_update: 4h }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{}\"
  allow_plain: true
  timeout: 2s
",
                smtp.port
            ),
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[]).await;
    support::runs(port, "shop", "success", 2, &String::new).await;

    smtp.pause();
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    shop_incident(port, true).await;
    // Two hours in five-minute steps, each long enough for the engine's tick and the
    // senders' attempts (every one refused).
    for _ in 0..24 {
        app.clock.advance(Duration::from_secs(300));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let waiting = app.store.lock().pending().unwrap().total();
    assert_eq!(
        waiting, 3,
        "three staff mails wait (DOWN and two escalations)"
    );
    let customers = app.store.lock().recipient_counts().unwrap();
    assert_eq!(
        (customers.pending, customers.sent, customers.failed),
        (20, 0, 0),
        "every customer's mail waits, none given up"
    );
    assert_eq!(smtp.count(), 0);

    // The relay is back; the longest backoff is 15 minutes.
    smtp.resume();
    for _ in 0..4 {
        app.clock.advance(Duration::from_secs(300));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    shop_incident(port, false).await;
    app.settled(&|| format!("{:?}", smtp.subjects())).await;
    let recipients_pending = |app: &support::InProcess| {
        app.store
            .lock()
            .recipient_counts()
            .map(|c| c.pending)
            .unwrap_or(1)
    };
    support::until(
        "every customer mail sent",
        Duration::from_secs(30),
        &|| format!("{:?}", smtp.subjects()),
        || recipients_pending(&app) == 0,
    )
    .await;
    let got = smtp.subjects();
    let to = |who: &str| -> Vec<String> {
        got.iter()
            .filter(|l| l.starts_with(&format!("{who} |")))
            .map(|l| l.split_once(" | ").unwrap().1.to_string())
            .collect()
    };
    let staff: Vec<&String> = got.iter().filter(|l| l.contains("[tocsin]")).collect();
    assert_eq!(
        staff,
        [
            "oncall@example.com | [tocsin] Web shop is DOWN",
            "lead@example.com | [tocsin] Web shop is DOWN, unacknowledged (escalation level 1)",
            "boss@example.com | [tocsin] Web shop is DOWN, unacknowledged (escalation level 2)",
            "oncall@example.com,lead@example.com,boss@example.com | [tocsin] Web shop is UP again after 2h20m",
        ],
        "staff mails once each, in the order decided"
    );
    for i in 0..20 {
        let c = to(&format!("c{i}@example.com"));
        assert_eq!(
            c,
            ["Web shop is unavailable", "Web shop is working again"],
            "customer {i}: each mail once, in the order decided"
        );
    }
    app.stop().await;
}

/// Waits until the shop's incident is open (or closed), as /metrics shows it.
async fn shop_incident(port: u16, open: bool) {
    support::until_metric(
        port,
        "tocsin_incident_open{service=\"shop\"}",
        Duration::from_secs(15),
        &String::new,
        |v| v == if open { 1.0 } else { 0.0 },
    )
    .await;
}

/// The resolver's DNS server, run inside the namespace on 127.0.0.1:53.
fn resolver(ns: &support::netns::Netns, mode: &str) -> support::Proc {
    let mut child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "/usr/bin/python3",
            "tests/fixtures/dns_hang.py",
            "53",
            mode,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    support::Proc(child)
}

/// tocsin runs in a network namespace whose resolv.conf names a resolver the test
/// controls. While the resolver answers, a name it never answers is that target's
/// failure (an incident opens); when it answers nothing at all, every probe by name fails
/// at once, and that is a monitor fault: no incident, staff told once, the gauge set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_answers_nothing_is_a_monitor_fault_not_an_outage() {
    let ns = support::netns::Netns::linked();
    let (_, inner) = ns.link.clone().unwrap();
    let etc = std::path::PathBuf::from(format!("/etc/netns/{}", ns.name));
    std::fs::create_dir_all(&etc).unwrap();
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _etc = Gone(etc.clone());
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "Add to cart").unwrap();
    let _web = support::Proc(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "/usr/bin/python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut dns = resolver(&ns, "hang:shop.test");
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    let probe = |id: &str, name: &str, check: &str| {
        format!(
            "  - id: {id}\n    name: {name}\n    escalation: default\n    failure_threshold: 2\n    success_threshold: 2\n    probes:\n      - {{ name: {id}-home, interval: 2s, timeout: 1s, {check} }}\n"
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "listen: {inner}:{port}\ndata_dir: ./var\nservices:\n{}{}{}escalation:\n  default:\n    - {{ after: 0m, to: [oncall@example.com] }}\nmail:\n  from: \"Example Status <status@example.com>\"\n",
            probe("shop", "Web shop", "http: { url: \"http://shop.test:8080/\" }"),
            probe("api", "API", "http: { url: \"http://api.test:8080/\" }"),
            probe("db", "Database", "tcp: { address: \"db.test:8080\" }"),
        ),
    )
    .unwrap();
    let log = dir.path().join("tocsin.log");
    let _tocsin = support::Proc(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                env!("CARGO_BIN_EXE_tocsin"),
                "run",
                "--config",
            ])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let metrics = || async {
        support::client()
            .get(format!("http://{inner}:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait = |what: &'static str, check: Box<dyn Fn(&str) -> bool>| {
        let explain = &explain;
        let metrics = &metrics;
        async move {
            let t = std::time::Instant::now();
            loop {
                if let Some(m) = metrics().await {
                    if check(&m) {
                        return m;
                    }
                }
                assert!(
                    t.elapsed() < Duration::from_secs(40),
                    "{what}\n{}",
                    explain()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };

    // The resolver answers, but never for shop.test: that is the shop's failure.
    let m = wait(
        "the shop's incident opens",
        Box::new(move |m| value(m, "tocsin_incident_open{service=\"shop\"}") == Some(1.0)),
    )
    .await;
    assert_eq!(
        value(&m, "tocsin_incident_open{service=\"api\"}"),
        Some(0.0)
    );
    assert_eq!(value(&m, "tocsin_incident_open{service=\"db\"}"), Some(0.0));
    assert!(value(&m, "tocsin_monitor_fault{cause=\"resolver\"}").is_none_or(|v| v == 0.0));

    // Now it answers nothing at all: every name fails, and that is tocsin's own trouble.
    dns.crash();
    dns = resolver(&ns, "hang-all");
    let m = wait(
        "the resolver is a monitor fault",
        Box::new(move |m| value(m, "tocsin_monitor_fault{cause=\"resolver\"}") == Some(1.0)),
    )
    .await;
    // Three probes fail in turn: nine faulted runs are about three each, more than the
    // two failed rounds that would open an incident were they counted.
    let m2 = wait(
        "faulted runs of every probe",
        Box::new(move |m| {
            value(m, "tocsin_monitor_faults_total{cause=\"resolver\"}").unwrap_or(0.0) >= 9.0
        }),
    )
    .await;
    for service in ["api", "db"] {
        assert_eq!(
            value(
                &m2,
                &format!("tocsin_incident_open{{service=\"{service}\"}}")
            ),
            Some(0.0),
            "{service}: no incident from the monitor's resolver\n{}",
            explain()
        );
    }
    assert!(value(&m, "tocsin_monitor_faults_total{cause=\"resolver\"}").unwrap_or(0.0) >= 1.0);
    let mails = support::spooled(dir.path());
    let subjects: Vec<&str> = mails.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.contains("own host is in trouble"))
            .count(),
        1,
        "{subjects:?}"
    );
    assert!(
        !subjects
            .iter()
            .any(|s| s.contains("API") || s.contains("Database")),
        "{subjects:?}"
    );
    let fault = mails
        .iter()
        .find(|(_, s, _)| s.contains("own host is in trouble"))
        .unwrap();
    assert!(
        fault.2.contains("DNS resolver answers nothing"),
        "{}",
        fault.2
    );

    // The log, written to a file, is plain text with decisions in words and RFC 3339.
    let written = explain();
    assert!(
        !written.contains('\x1b'),
        "no colour codes in a file:\n{written}"
    );
    assert!(!written.contains("SystemTime {"), "{written}");
    assert!(
        written.contains("decision=incident 1 opened, failing since 20"),
        "{written}"
    );

    // It answers again: the gauge falls.
    dns.crash();
    let _dns = resolver(&ns, "hang:shop.test");
    wait(
        "the resolver fault clears",
        Box::new(move |m| value(m, "tocsin_monitor_fault{cause=\"resolver\"}") == Some(0.0)),
    )
    .await;
}
