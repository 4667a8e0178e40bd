//! The probe itself, side by side with blackbox_exporter: `/probe` of each, HTTP and TCP,
//! against one nginx, driven by wrk (32 connections, 2 threads) for the same time. All run
//! on the same cores, so the fair figure is probes per CPU-second of each prober process.
//!
//! `cargo bench --bench blackbox [-- --seconds S]` (scripts/bench.sh; it installs wrk and
//! Debian's prometheus-blackbox-exporter).

mod common;
use common::{Killed, arg, cpu, free_port, nginx};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until something accepts connections on `port`.
fn listening(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// wrk on `url` for `seconds`: requests completed, and non-2xx answers (wrk's count).
fn wrk(url: &str, seconds: u64) -> (u64, u64) {
    let out = Command::new("wrk")
        .args(["-c", "32", "-t", "2", "-d", &format!("{seconds}s"), url])
        .output()
        .expect("wrk (scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    let bad = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (requests, bad)
}

fn main() {
    let seconds = arg("--seconds", 10);
    let dir = tempfile::tempdir().unwrap();
    let target = free_port();
    let _nginx = nginx(dir.path(), target);
    listening(target);

    let bb_port = free_port();
    let bb_conf = dir.path().join("blackbox.yml");
    std::fs::write(
        &bb_conf,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n",
    )
    .unwrap();
    let blackbox = Killed(
        Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", bb_conf.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-blackbox-exporter (scripts/bench.sh installs it)"),
    );

    // tocsin with one quiet probe; /probe on its internal listener, open there.
    let (port, internal) = (free_port(), free_port());
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\ndata_dir: ./var\nservices:\n  - id: web\n    probes:\n      - {{ name: home, interval: 60s, tcp: {{ address: \"127.0.0.1:{target}\" }} }}\n"
        ),
    )
    .unwrap();
    let tocsin = Killed(
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(&cfg)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    listening(bb_port);
    listening(internal);

    let http_target = format!("http://127.0.0.1:{target}/");
    let tcp_target = format!("127.0.0.1:{target}");
    let runs = [
        (
            "HTTP",
            format!("http://127.0.0.1:{internal}/probe?module=http&target={http_target}"),
            format!("http://127.0.0.1:{bb_port}/probe?module=http_2xx&target={http_target}"),
        ),
        (
            "TCP",
            format!("http://127.0.0.1:{internal}/probe?module=tcp&target={tcp_target}"),
            format!("http://127.0.0.1:{bb_port}/probe?module=tcp_connect&target={tcp_target}"),
        ),
    ];
    println!(
        "wrk -c 32 -t 2 for {seconds} s on each /probe, one nginx target, all on the same cores"
    );
    println!("| kind | prober | probes | per second | CPU-s | probes per CPU-s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (kind, ours, theirs) in runs {
        let mut per_cpu = Vec::new();
        for (name, pid, url) in [
            ("tocsin", tocsin.0.id(), &ours),
            ("blackbox_exporter 0.23", blackbox.0.id(), &theirs),
        ] {
            // The probe succeeds (a failing probe would be cheaper and prove nothing).
            let body = Command::new("curl")
                .args(["-s", url])
                .output()
                .unwrap()
                .stdout;
            assert!(
                String::from_utf8_lossy(&body).contains("probe_success 1"),
                "{name}'s {kind} probe does not succeed: {}",
                String::from_utf8_lossy(&body)
            );
            // A short warm-up: connections, the exporter's first allocations.
            wrk(url, 1);
            let c0 = cpu(pid);
            let (n, bad) = wrk(url, seconds);
            let spent = cpu(pid) - c0;
            assert_eq!(bad, 0, "{name} answered {bad} of {n} probes with an error");
            let rate = n as f64 / spent.max(0.01);
            println!(
                "| {kind} | {name} | {n} | {:.0} | {spent:.2} | {rate:.0} |",
                n as f64 / seconds as f64
            );
            per_cpu.push(rate);
        }
        println!(
            "{kind}: tocsin does {:.1} times blackbox_exporter's probes per CPU-second",
            per_cpu[0] / per_cpu[1]
        );
    }
    drop(tocsin);
    drop(blackbox);
}
