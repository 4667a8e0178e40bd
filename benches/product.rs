//! The whole product at scale: `tocsin check`, then `tocsin run` (the release binary) on
//! a generated config of N/10 services x 10 HTTP probes at 60 s against nginx in another
//! process, with a Prometheus-style scrape of `/metrics` every 15 s and a `/status`
//! request every 5 s. After a warm-up it prints probes/s, scheduler lag, skipped runs,
//! tocsin's CPU per 1,000 probes (with the scrapes and without them), its resident memory
//! now and at its highest, the scrapes' time and size, and the status page's time; then
//! the status page under 50 concurrent clients and pages of `/api/v1/probes`.
//!
//! `cargo bench --bench product [-- --probes N --warmup S --seconds S --customers N]`
//! (`--customers N`: one service fails and its customer phase mails N customers).
//! (scripts/bench.sh; nginx comes from scripts/test.sh's packages).

mod common;
use common::{Killed, arg, cpu, free_port, nginx};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// With `customers` > 0, service s0 fails from the start (nginx answers 503 under
/// `/down/`) and, a minute after its incident opens, its customer phase mails that many
/// customers (as `.eml` files, at the default 100 a second).
fn write_config(
    dir: &Path,
    port: u16,
    target: u16,
    probes: usize,
    customers: usize,
) -> std::path::PathBuf {
    let mut y = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: ./var\nmax_concurrency: 4096\ndefaults: {{ interval: 60s, timeout: 10s }}\nescalation:\n  default:\n    - {{ after: 0m, to: [oncall@example.com] }}\nservices:\n"
    );
    if customers > 0 {
        let mut csv = String::from("email,name\n");
        for i in 0..customers {
            csv.push_str(&format!("c{i}@example.com,Customer {i}\n"));
        }
        std::fs::write(dir.join("customers.csv"), csv).unwrap();
        y = format!(
            "allow_insecure_links: true\nmail: {{ from: \"Status <status@example.com>\" }}\naudiences:\n  customers: {{ csv: ./customers.csv }}\n{y}"
        );
    }
    for s in 0..probes.div_ceil(10) {
        let failing = customers > 0 && s == 0;
        y.push_str(&format!(
            "  - id: s{s}\n    name: Service {s}\n    escalation: default\n{}    probes:\n",
            if failing {
                "    audience: customers\n    customer_threshold: 1m\n    failure_threshold: 1\n"
                    .to_string()
            } else {
                String::new()
            }
        ));
        let path = if failing { "down" } else { "up" };
        for p in 0..10.min(probes - s * 10) {
            y.push_str(&format!(
                "      - {{ name: s{s}-p{p}, http: {{ url: \"http://127.0.0.1:{target}/{path}/s{s}/p{p}\", body_contains: \"Add to cart\" }} }}\n"
            ));
        }
    }
    let cfg = dir.join("probes.yaml");
    std::fs::write(&cfg, y).unwrap();
    cfg
}

/// What a scrape says of the probes: runs, skipped runs, and the lag histogram's buckets.
#[derive(Default, Clone)]
struct Counts {
    runs: f64,
    skipped: f64,
    lag: Vec<(f64, f64)>,
}

fn counts(text: &str) -> Counts {
    let mut c = Counts::default();
    for l in text.lines() {
        let value = || {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if l.starts_with("tocsin_probe_runs_total{") {
            c.runs += value();
        } else if l.starts_with("tocsin_probes_skipped_total{") {
            c.skipped += value();
        } else if let Some(rest) = l.strip_prefix("tocsin_scheduler_lag_seconds_bucket{le=\"") {
            let le = rest.split('"').next().unwrap_or("+Inf");
            let le = le.parse::<f64>().unwrap_or(f64::INFINITY);
            c.lag.push((le, value()));
        }
    }
    c
}

/// The bucket bound under which a share `q` of the runs between two scrapes started.
fn quantile(before: &Counts, after: &Counts, q: f64) -> f64 {
    let total = after.lag.last().map(|x| x.1).unwrap_or(0.0)
        - before.lag.last().map(|x| x.1).unwrap_or(0.0);
    for (i, (le, n)) in after.lag.iter().enumerate() {
        let was = before.lag.get(i).map(|x| x.1).unwrap_or(0.0);
        if n - was >= q * total {
            return *le;
        }
    }
    f64::INFINITY
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let probes = arg("--probes", 100_000) as usize;
    // Long enough for every probe to have run once (they are spread over the interval).
    let warmup = arg("--warmup", 70);
    let seconds = arg("--seconds", 60);
    let dir = tempfile::tempdir().unwrap();
    let target = free_port();
    let _nginx = nginx(dir.path(), target);
    let port = free_port();
    let customers = arg("--customers", 0) as usize;
    let cfg = write_config(dir.path(), port, target, probes, customers);
    let bin = env!("CARGO_BIN_EXE_tocsin");

    // `tocsin check`: wall time and peak memory, as GNU time measures them.
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", bin, "check", "--config"])
        .arg(&cfg)
        .output()
        .expect("GNU time");
    let last = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let mut f = last.split_whitespace();
    println!(
        "tocsin check, {probes} probes: {} s, {:.0} MB peak RSS",
        f.next().unwrap_or("?"),
        f.next().and_then(|k| k.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    );

    let tocsin = Killed(
        Command::new(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .env("TOCSIN_API_TOKEN", API_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = tocsin.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while c.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(120), "tocsin did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("tocsin run: serving after {:.1} s", t.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(warmup)).await;

        let scrape = || async {
            let cpu0 = cpu(pid);
            let t = Instant::now();
            let text = c
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (t.elapsed(), text, cpu(pid) - cpu0)
        };
        let (took, text, _) = scrape().await;
        let before = counts(&text);
        let (cpu0, start) = (cpu(pid), Instant::now());
        let mut scrapes = vec![(took, text.len(), text.lines().count())];
        let mut scrape_cpu = 0.0;
        let mut status = Vec::new();
        let mut next_scrape = Instant::now() + Duration::from_secs(15);
        let mut after = before.clone();
        while start.elapsed() < Duration::from_secs(seconds) {
            let t = Instant::now();
            let ok = c
                .get(format!("{base}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                status.push(t.elapsed());
            }
            if Instant::now() >= next_scrape {
                let (took, text, spent) = scrape().await;
                scrape_cpu += spent;
                scrapes.push((took, text.len(), text.lines().count()));
                after = counts(&text);
                next_scrape += Duration::from_secs(15);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let (took, text, spent) = scrape().await;
        scrape_cpu += spent;
        scrapes.push((took, text.len(), text.lines().count()));
        if !text.is_empty() {
            after = counts(&text);
        }
        let window = start.elapsed().as_secs_f64();
        let used = cpu(pid) - cpu0;
        let runs = after.runs - before.runs;
        let (now, high) = common::rss(pid);
        println!(
            "{probes} probes at 60 s over {window:.0} s: {:.0} probes/s, {} skipped, lag p50 <= {} s, p99 <= {} s",
            runs / window,
            after.skipped - before.skipped,
            quantile(&before, &after, 0.5),
            quantile(&before, &after, 0.99),
        );
        println!(
            "CPU: {used:.1} s ({:.2} of a core), {:.3} CPU-s per 1,000 probes with the scrapes, {:.3} without ({scrape_cpu:.1} s in scrapes)",
            used / window,
            used / runs.max(1.0) * 1000.0,
            (used - scrape_cpu) / runs.max(1.0) * 1000.0
        );
        println!("RSS: {now:.0} MB now, {high:.0} MB high-water");
        if customers > 0 {
            let figure = |series: &str| {
                text.lines()
                    .find(|l| l.starts_with(series))
                    .and_then(|l| l.rsplit(' ').next())
                    .unwrap_or("0")
                    .to_string()
            };
            println!(
                "incident: s0 state {} (4 = down), customer phase {}, {} of {customers} customers mailed, {} staff mails",
                figure("tocsin_service_state{service=\"s0\"}"),
                figure("tocsin_incident_customer_phase{service=\"s0\"}"),
                figure("tocsin_mail_sent_total{kind=\"campaign_outage\"}"),
                figure("tocsin_mail_sent_total{kind=\"staff_opened\"}"),
            );
        }
        for (took, bytes, lines) in &scrapes {
            println!(
                "scrape: {:.2} s, {:.1} MB, {lines} lines",
                took.as_secs_f64(),
                *bytes as f64 / 1e6
            );
        }
        status.sort_unstable();
        println!(
            "/status: {} requests, median {:.0} ms, max {:.0} ms",
            status.len(),
            status
                .get(status.len() / 2)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            status.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );

        // The status page under 50 clients asking as fast as they are answered.
        let stop = Instant::now() + Duration::from_secs(10);
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let (c, url) = (c.clone(), format!("{base}/status"));
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    while Instant::now() < stop {
                        let t = Instant::now();
                        let ok = match c.get(&url).send().await {
                            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        if ok {
                            took.push(t.elapsed());
                        }
                    }
                    took
                })
            })
            .collect();
        let mut took = Vec::new();
        for h in clients {
            took.extend(h.await.unwrap_or_default());
        }
        took.sort_unstable();
        let q = |f: f64| {
            took.get(((took.len() as f64 * f) as usize).min(took.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3
        };
        println!(
            "/status, 50 clients for 10 s: {} answered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            took.len(),
            q(0.5),
            q(0.99),
            took.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );

        // /api/v1/probes: the first page, one deep in the list, and the failing filter
        // (which reads every row to find none); the median of five of each.
        let mid = probes / 20;
        for (what, path) in [
            ("first page", "/api/v1/probes".to_string()),
            (
                "page after half the probes",
                format!("/api/v1/probes?after=s{mid}/s{mid}-p0"),
            ),
            ("?failing=true", "/api/v1/probes?failing=true".to_string()),
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let body = c
                    .get(format!("{base}{path}"))
                    .bearer_auth(API_TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                times.push(t.elapsed());
                bytes = body.len();
            }
            times.sort_unstable();
            println!(
                "/api/v1/probes, {what}: {:.1} ms, {:.0} kB",
                times[2].as_secs_f64() * 1e3,
                bytes as f64 / 1e3
            );
        }
    });
    drop(tocsin);
}

/// The API token the benchmark's tocsin is given, for `/api/v1/probes`.
const API_TOKEN: &str = "bench-token-0123456789";
