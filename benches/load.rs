//! Load during an outage: `tocsin run` (the release binary) with a service down and a
//! 10,000-recipient campaign going into Postfix's smtp-sink, while 200 clients ask for
//! `/status` and the incident API as fast as they are answered. Prints the status page's
//! and the API's latency (p50, p99, max), requests served and refused, and the campaign's
//! rate beside the same campaign without the clients.
//!
//! `cargo bench --bench load [-- --clients N --seconds S --mails M]` (scripts/bench.sh
//! installs Postfix for smtp-sink when missing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "load-bench-token";

mod common;
use common::{Killed, arg, free_port};

/// A config with `shop` down (its port closed) and `mails` customers following it; an
/// ETA beyond the 1 h threshold starts the customer phase at once.
fn write_config(dir: &Path, port: u16, smtp: u16, mails: usize) -> std::path::PathBuf {
    let mut csv = String::from("email,name,language,timezone\n");
    let langs = ["en", "pl", "sv"];
    for i in 0..mails {
        csv.push_str(&format!(
            "customer{i}@example.com,Customer {i},{},Europe/Warsaw\n",
            langs[i % 3]
        ));
    }
    std::fs::write(dir.join("customers.csv"), csv).unwrap();
    let closed = free_port();
    let cfg = dir.join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: ./var
allow_insecure_links: true
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    customer_threshold: 1h
    audience: customers
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, tcp: {{ address: \"127.0.0.1:{closed}\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp}\"
  allow_plain: true
  max_per_second: 500
  connections: 8
  max_campaign_size: 1000000
"
        ),
    )
    .unwrap();
    cfg
}

async fn get(c: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    c.get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Starts tocsin, opens the outage, sets the ETA and waits for the campaign to finish;
/// `load` runs beside it from the moment the campaign starts. The campaign's rate.
async fn outage<F, Fut>(mails: usize, smtp: u16, load: F) -> f64
where
    F: FnOnce(u16) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), port, smtp, mails);
    let _tocsin = Killed(
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("TOCSIN_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        let r = c
            .post(format!("{base}/api/v1/incidents/shop/eta"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"eta": "3h", "by": "bench"}))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no incident opened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let load = tokio::spawn(load(port));
    // The rate between the campaign's first and last accepted mail, as the store saw them.
    let rate = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(v) = get(&c, &format!("{base}/api/v1/campaigns")).await else {
            continue;
        };
        let Some(campaign) = v.as_array().and_then(|a| a.first()) else {
            continue;
        };
        let sent = campaign["counts"]["sent"].as_u64().unwrap_or(0);
        let pending = campaign["counts"]["pending"].as_u64().unwrap_or(1);
        if pending == 0 && sent > 0 {
            let time = |k: &str| {
                campaign[k]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
            };
            let took = time("last_sent")
                .duration_since(time("first_sent"))
                .unwrap_or_default();
            break sent as f64 / took.as_secs_f64().max(0.001);
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the campaign did not finish"
        );
    };
    load.await.unwrap();
    rate
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // reqwest is built on rustls without a default provider; tocsin installs ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clients = arg("--clients", 200) as usize;
    let seconds = arg("--seconds", 60);
    let mails = arg("--mails", 10_000) as usize;
    let smtp = free_port();
    let _sink = Killed(
        Command::new("smtp-sink")
            .args(["-u", "postfix", &format!("127.0.0.1:{smtp}"), "1024"])
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp-sink (Postfix; scripts/bench.sh installs it)"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let quiet = outage(mails, smtp, |_| async {}).await;
        println!("campaign without load: {mails} mails at {quiet:.0} mails/s");

        let status: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
        let api: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
        let refused = Arc::new(AtomicU64::new(0));
        let (s2, a2, r2) = (status.clone(), api.clone(), refused.clone());
        let loaded = outage(mails, smtp, move |port| async move {
            let stop = Arc::new(AtomicBool::new(false));
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(clients)
                .build()
                .unwrap();
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let (c, stop, s, a, r) =
                        (c.clone(), stop.clone(), s2.clone(), a2.clone(), r2.clone());
                    tokio::spawn(async move {
                        // Half the clients read the status page, half the API.
                        let (url, kept) = if i % 2 == 0 {
                            (format!("http://127.0.0.1:{port}/status"), s)
                        } else {
                            (format!("http://127.0.0.1:{port}/api/v1/incidents"), a)
                        };
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            let ok = c
                                .get(&url)
                                .bearer_auth(TOKEN)
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            if ok {
                                kept.lock().unwrap().push(t.elapsed());
                            } else {
                                r.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        for (what, kept) in [("/status", &status), ("/api/v1/incidents", &api)] {
            let mut l = kept.lock().unwrap().clone();
            l.sort_unstable();
            println!(
                "{what}: {} answered in {seconds} s ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.len(),
                l.len() as f64 / seconds as f64,
                percentile(&l, 0.5).as_secs_f64() * 1e3,
                percentile(&l, 0.99).as_secs_f64() * 1e3,
                l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            );
        }
        println!(
            "requests refused or failed: {}",
            refused.load(Ordering::Relaxed)
        );
        println!(
            "campaign with {clients} clients: {mails} mails at {loaded:.0} mails/s ({:.0}% of the rate without them)",
            loaded / quiet * 100.0
        );
    });
}
