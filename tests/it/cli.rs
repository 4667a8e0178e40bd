//! The `tocsin` binary as ops use it: exit codes and messages of `check` and `probe`, and
//! `run` with a SIGHUP reload (bad file refused, good file applied), SIGTERM shutdown,
//! JSON logs, and a scrape that passes `promtool check metrics`.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

fn tocsin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    p
}

#[test]
fn check_accepts_the_root_config() {
    let out = tocsin(&["check", "--config", "probes.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "probes.yaml: valid (1 service, 3 probes)\n"
    );
}

#[test]
fn check_refuses_a_bad_config_with_every_error_and_exit_2() {
    let out = tocsin(&["check", "--config", "testdata/bad/several-errors.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(
        lines[0].starts_with(
            "testdata/bad/several-errors.yaml:2:13: `defaults.interval`: invalid duration `30x`"
        ),
        "{err}"
    );
    assert_eq!(
        lines[3],
        "testdata/bad/several-errors.yaml:10:41: unknown record type `AA`, did you mean `A`?"
    );
    assert_eq!(
        lines[4],
        "testdata/bad/several-errors.yaml: 4 errors found; nothing was started"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn config_defaults_to_probes_yaml_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("probes.yaml:1:1: cannot read the config file"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn probe_prints_the_outcome_and_exits_0_or_1() {
    let server = support::HttpServer::start(None).await;
    let closed = support::closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.yaml",
        &format!(
            "services:\n  - id: shop\n    probes:\n      - {{ name: home, http: {{ url: \"http://{}/\", body_contains: \"Add to cart\" }} }}\n      - {{ name: db, tcp: {{ address: \"{closed}\" }} }}\n",
            server.addr
        ),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let ok = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || tocsin(&["probe", "--config", &cfg, "home"])
    })
    .await
    .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let s = text(&ok.stdout);
    assert!(
        s.starts_with(&format!("shop/home (http http://{}/): ok\n", server.addr)),
        "{s}"
    );
    assert!(
        s.contains("  connect ")
            && s.contains("  processing ")
            && s.contains("  status     200 (HTTP/1.1)"),
        "{s}"
    );

    let failed = tocsin(&["probe", "--config", &cfg, "shop/db"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        text(&failed.stdout).starts_with(&format!(
            "shop/db (tcp {closed}): FAILED: connection refused\n"
        )),
        "{}",
        text(&failed.stdout)
    );

    let unknown = tocsin(&["probe", "--config", &cfg, "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no probe named `nope`")
            && text(&unknown.stderr).contains("probes: home, db")
    );
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The API token the `run` test's tocsin is given: /api/v1/probes needs it on a single
/// listener.
const TOKEN: &str = "cli-test-token";

async fn get(url: &str) -> Option<String> {
    let r = support::client()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

async fn wait_for<F: Fn(&str) -> bool>(url: &str, what: &str, f: F) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(body) = get(url).await {
            if f(&body) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config_with(port: u16, target: std::net::SocketAddr, extra_probe: bool) -> String {
    let mut y = format!(
        "listen: 127.0.0.1:{port}\nservices:\n  - id: shop\n    probes:\n      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\" }} }}\n"
    );
    if extra_probe {
        y += &format!(
            "      - {{ name: port, interval: 1s, timeout: 500ms, tcp: {{ address: \"{target}\" }} }}\n"
        );
    }
    y
}

#[tokio::test]
async fn run_reloads_on_sighup_refuses_bad_files_and_stops_on_sigterm() {
    let server = support::HttpServer::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = write(
        dir.path(),
        "probes.yaml",
        &config_with(port, server.addr, false),
    );
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--log-format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .env("TOCSIN_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    let metrics = wait_for(&format!("{base}/metrics"), "a first probe run", |m| {
        m.contains("probe_success{probe=\"home\",service=\"shop\"} 1")
    })
    .await;
    assert!(metrics.contains("tocsin_config_last_reload_successful 1"));
    assert_eq!(
        get(&format!("{base}/healthz")).await.unwrap(),
        "{\"status\":\"ok\"}"
    );

    // A scrape passes promtool's lint.
    promtool_check(&metrics);

    // The container health check: the binary asks /healthz itself.
    let health = tocsin(&["health", "--config", cfg.to_str().unwrap()]);
    assert_eq!(health.status.code(), Some(0), "{}", text(&health.stderr));
    assert_eq!(
        text(&health.stdout),
        format!("http://127.0.0.1:{port}/healthz: {{\"status\":\"ok\"}}\n")
    );

    // A bad file is refused and the old config keeps running.
    write(
        dir.path(),
        "probes.yaml",
        "listen: 127.0.0.1:1\nservices:\n  - id: shop\n    probes:\n      - { name: home, interva: 1s, tcp: { address: \"x\" } }\n",
    );
    signal(&child, "-HUP");
    wait_for(&format!("{base}/metrics"), "the refused reload", |m| {
        m.contains("tocsin_config_last_reload_successful 0")
    })
    .await;
    let runs = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("tocsin_probe_runs_total{probe=\"home\",result=\"success\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = runs(&get(&format!("{base}/metrics")).await.unwrap());
    wait_for(&format!("{base}/metrics"), "probes still running", |m| {
        runs(m) > before + 1
    })
    .await;

    // A good file with one more probe is applied.
    write(
        dir.path(),
        "probes.yaml",
        &config_with(port, server.addr, true),
    );
    signal(&child, "-HUP");
    wait_for(&format!("{base}/metrics"), "the accepted reload", |m| {
        m.contains("tocsin_config_last_reload_successful 1")
    })
    .await;
    let api = wait_for(
        &format!("{base}/api/v1/probes"),
        "the new probe's result",
        |b| b.contains("\"probe\":\"port\"") && b.matches("\"success\":true").count() == 2,
    )
    .await;
    let rows: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["service"], "shop");
    assert_eq!(rows[0]["kind"], "http");
    assert_eq!(rows[0]["last"]["details"]["http_status"], 200);
    assert!(rows[0]["last"]["phases"]["connect"].as_f64().unwrap() > 0.0);

    signal(&child, "-TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "tocsin did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let health = tocsin(&[
        "health",
        "--timeout",
        "2s",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(
        health.status.code(),
        Some(1),
        "a stopped tocsin is unhealthy"
    );
    assert!(
        text(&health.stderr).starts_with(&format!(
            "tocsin: cannot reach tocsin at http://127.0.0.1:{port}/healthz: "
        )),
        "{}",
        text(&health.stderr)
    );
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string());
    }
    assert!(
        logs.contains("probes.yaml:5:23: unknown key `interva`, did you mean `interval`?"),
        "{logs}"
    );
    assert!(logs.contains("configuration refused; the previous configuration keeps running"));
    assert!(
        logs.contains("configuration reloaded") && logs.contains("\"stopped\""),
        "{logs}"
    );
}

/// promtool comes from Debian's `prometheus` package, which scripts/test.sh installs.
fn promtool_check(metrics: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed ({e}): run scripts/test.sh, which installs Debian's prometheus package"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_port_in_use_is_a_clear_error_before_any_probe_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\nservices:\n  - id: s\n    escalation: e\n    probes:\n      - {{ name: p, tcp: {{ address: \"127.0.0.1:9\" }} }}\nescalation:\n  e:\n    - {{ after: 0m, to: [oncall@example.com] }}\n"
        ),
    );
    let out = tocsin(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "tocsin: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)\n"
        )
    );
}

#[test]
fn run_refuses_a_corrupt_or_locked_database_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = write(
        dir.path(),
        "p.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\ndata_dir: ./var\nservices:\n  - id: s\n    probes:\n      - {{ name: p, tcp: {{ address: \"127.0.0.1:9\" }} }}\n"
        ),
    );
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    let db = dir.path().join("var/tocsin.db");
    std::fs::write(&db, b"precious bytes that are not a database").unwrap();
    let out = tocsin(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "tocsin: {} is not a tocsin database",
            db.display()
        )),
        "{err}"
    );
    assert!(err.contains("it was not modified"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"precious bytes that are not a database"
    );

    // A database held by a running tocsin.
    std::fs::remove_file(&db).unwrap();
    let _held = tocsin::store::SqlStore::open_sqlite(&db).unwrap();
    let out = tocsin(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("is in use by another process (another tocsin with the same data_dir?)"),
        "{}",
        text(&out.stderr)
    );
}
