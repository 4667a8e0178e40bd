//! Campaign throughput: 10,000 personalised mails (four languages, four time zones, a
//! name and a plan each) rendered and sent by tocsin's campaign sender into Postfix's
//! smtp-sink on loopback, then smtp-source sending the same number of messages of the
//! same size to the same sink, for the ratio. Prints both times, the rate, CPU seconds
//! and resident memory.
//!
//! `cargo bench --bench campaign [-- --mails N --connections C]` (scripts/bench.sh
//! installs Postfix for smtp-sink and smtp-source when missing).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tocsin::campaign::sender::Sender;
use tocsin::campaign::{Composer, plan};
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{self, LiveConfig};
use tocsin::incident::{Action, ServiceState};
use tocsin::links::Signer;
use tocsin::metrics::Metrics;
use tocsin::notify::mail::Mailer;
use tocsin::notify::templates::Templates;
use tocsin::store::{SharedStore, SqliteStore, Store};

mod common;
use common::arg;

/// This process's user+system CPU time.
fn cpu_seconds() -> f64 {
    common::cpu(std::process::id())
}

fn rss_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let mails = arg("--mails", 10_000) as usize;
    let connections = arg("--connections", 8);
    let port = common::free_port();
    let mut sink = Command::new("smtp-sink")
        .args(["-u", "postfix", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::null())
        .spawn()
        .expect("smtp-sink (Postfix; scripts/bench.sh installs it)");
    std::thread::sleep(Duration::from_millis(300));

    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("email,name,language,timezone,services,plan\n");
    let langs = ["en", "pl", "sv", "de"];
    let zones = [
        "Europe/Warsaw",
        "Europe/Stockholm",
        "America/New_York",
        "Asia/Tokyo",
    ];
    for i in 0..mails {
        csv.push_str(&format!(
            "customer{i}@example.com,Customer {i},{},{},,plan-{}\n",
            langs[i % 4],
            zones[i / 4 % 4],
            i % 3
        ));
    }
    std::fs::write(dir.path().join("customers.csv"), csv).unwrap();
    // `--dkim 1`: every message signed with an RSA-2048 and an Ed25519 key, made by openssl.
    let dkim = if arg("--dkim", 0) == 1 {
        let key = |name: &str, args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(out.status.success());
            let path = dir.path().join(name);
            std::fs::write(&path, out.stdout).unwrap();
            path.display().to_string()
        };
        let rsa = key(
            "rsa.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        );
        let ed = key("ed.pem", &["genpkey", "-algorithm", "ed25519"]);
        format!(
            "  dkim:\n    - {{ selector: rsa, key_file: {rsa} }}\n    - {{ selector: ed, key_file: {ed} }}\n"
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "data_dir: ./var
allow_insecure_links: true
services:
  - id: shop
    name: Web shop
    audience: customers
    probes:
      - {{ name: home, tcp: {{ address: \"127.0.0.1:1\" }} }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{port}\"
  allow_plain: true
  max_per_second: 1000000
  connections: {connections}
  max_campaign_size: 1000000
{dkim}"
    );
    let cfg =
        config::parse(&yaml, &dir.path().join("probes.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let now = clock.now();
        let mut store: Box<dyn Store> =
            Box::new(SqliteStore::open(&cfg.data_dir.join("tocsin.db")).unwrap());
        let signer = Arc::new(Signer::new(&store.link_key().unwrap()));
        let state = ServiceState::new();
        store
            .commit(
                "shop",
                &state,
                &[
                    Action::Open {
                        id: 1,
                        started: now - Duration::from_secs(3 * 3600),
                        reasons: Default::default(),
                    },
                    Action::CustomerPhase {
                        id: 1,
                        eta: Some(now + Duration::from_secs(2 * 3600)),
                        next_update: None,
                        because_of_eta: false,
                    },
                ],
                &cfg.context(cfg.services.first()),
                now,
            )
            .unwrap();
        let item = store.due(10).unwrap().pop().unwrap();
        let t = Instant::now();
        plan(&mut *store, &cfg, &item, now).unwrap();
        let planned = t.elapsed();
        let mailer = Arc::new(Mailer::new(&cfg.mail, &cfg.data_dir).unwrap());
        let composer = Arc::new(Composer {
            templates: Arc::new(Templates::load(None).unwrap()),
            signer,
            domain: mailer.from_domain(),
        });
        // The size of a typical message, for smtp-source.
        let sample = {
            let info = store.campaign_info(1).unwrap().unwrap();
            let job = store.due_recipients(now, 0, 1).unwrap().pop().unwrap();
            mailer.formatted(&composer.compose(&cfg, &info, &job).unwrap()).unwrap().len()
        };
        let store = SharedStore::from_box(store);
        let sender = Sender {
            store: store.clone(),
            mailer,
            composer,
            config: LiveConfig::new(cfg.clone()),
            metrics: Arc::new(Metrics::new()),
            clock: clock.clone(),
            ready: Arc::default(),
            // No engine runs here: its canary guard never holds.
            engine: tocsin::engine::Link::new().handle(),
        };
        let cancel = CancellationToken::new();
        let cpu0 = cpu_seconds();
        let t = Instant::now();
        let task = tokio::spawn(sender.run(cancel.clone()));
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let c = store.lock().recipient_counts().unwrap();
            if c.pending == 0 {
                let took = t.elapsed();
                let cpu = cpu_seconds() - cpu0;
                cancel.cancel();
                let _ = task.await;
                println!(
                    "tocsin: {} mails sent ({} failed) in {:.2} s = {:.0} mails/s, {connections} connections, {} DKIM signatures each; expansion {:.0} ms; {:.2} CPU-s; message ~{} bytes; RSS high-water {:.1} MB",
                    c.sent,
                    c.failed,
                    took.as_secs_f64(),
                    c.sent as f64 / took.as_secs_f64(),
                    cfg.mail.dkim.len(),
                    planned.as_secs_f64() * 1e3,
                    cpu,
                    sample,
                    rss_hwm_mb()
                );
                // The same count and size from Postfix's own load generator.
                let t = Instant::now();
                let ok = Command::new("smtp-source")
                    .args([
                        "-s",
                        &connections.to_string(),
                        "-m",
                        &mails.to_string(),
                        "-l",
                        &sample.to_string(),
                        "-f",
                        "status@example.com",
                        "-t",
                        "customer@example.com",
                        &format!("127.0.0.1:{port}"),
                    ])
                    .status()
                    .expect("smtp-source (Postfix)")
                    .success();
                let source = t.elapsed();
                println!(
                    "smtp-source: {mails} messages of {sample} bytes in {:.2} s = {:.0} mails/s (exit ok: {ok})",
                    source.as_secs_f64(),
                    mails as f64 / source.as_secs_f64()
                );
                println!(
                    "ratio tocsin / smtp-source: {:.2}",
                    took.as_secs_f64() / source.as_secs_f64()
                );
                break;
            }
        }
    });
    let _ = sink.kill();
    let _ = sink.wait();
}
