//! Campaign throughput: 10,000 personalised mails (four languages, four time zones, a
//! name and a plan each) rendered and sent by tocsin's campaign sender into Postfix's
//! smtp-sink on loopback, then smtp-source sending the same number of messages of the
//! same size to the same sink, for the ratio. Prints both times, the rate, CPU seconds
//! and resident memory.
//!
//! The audience is expanded first in a child process (this benchmark run again with
//! `--expand DIR`): once whole, for its time and memory, and once SIGKILLed after
//! `--kill-after` seconds and then finished here, where the killed one stopped.
//!
//! `cargo bench --bench campaign [-- --mails N --connections C --kill-after S --source 0|1]`
//! (scripts/bench.sh installs Postfix for smtp-sink and smtp-source when missing).

use std::io::Write;
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
use tocsin::store::{
    CampaignStore, IncidentStore, OutboxItem, OutboxStore, SharedStore, SqlStore, Store,
};

mod common;
use common::arg;

/// This process's user+system CPU time.
fn cpu_seconds() -> f64 {
    common::cpu(std::process::id())
}

fn rss_hwm_mb() -> f64 {
    common::rss(std::process::id()).1
}

/// The configuration the benchmark runs, written into `dir` (and the audience with it
/// unless it is there).
fn setup(dir: &std::path::Path, mails: usize, port: u16, connections: u64) -> config::Config {
    let audience = dir.join("customers.csv");
    if !audience.exists() {
        // Written a row at a time: the benchmark's own memory stays out of the figures.
        let mut csv = std::io::BufWriter::new(std::fs::File::create(&audience).unwrap());
        writeln!(csv, "email,name,language,timezone,services,plan").unwrap();
        let langs = ["en", "pl", "sv", "de"];
        let zones = [
            "Europe/Warsaw",
            "Europe/Stockholm",
            "America/New_York",
            "Asia/Tokyo",
        ];
        for i in 0..mails {
            writeln!(
                csv,
                "customer{i}@example.com,Customer {i},{},{},,plan-{}",
                langs[i % 4],
                zones[i / 4 % 4],
                i % 3
            )
            .unwrap();
        }
        csv.flush().unwrap();
    }
    // `--dkim 1`: every message signed with an RSA-2048 and an Ed25519 key, made by openssl.
    let dkim = if arg("--dkim", 0) == 1 {
        let key = |name: &str, args: &[&str]| {
            let path = dir.join(name);
            if !path.exists() {
                let out = Command::new("openssl")
                    .args(args)
                    .output()
                    .expect("openssl");
                assert!(out.status.success());
                std::fs::write(&path, out.stdout).unwrap();
            }
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
  max_campaign_size: 10000000
{dkim}"
    );
    std::fs::write(dir.join("probes.yaml"), &yaml).unwrap();
    config::parse(&yaml, &dir.join("probes.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

/// Opens the incident whose customer phase the campaign carries out; returns that
/// decision. Idempotent.
fn decide(cfg: &config::Config, now: std::time::SystemTime) -> OutboxItem {
    let mut store = SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap();
    if let Some(item) = store.due(10).unwrap().pop() {
        return item;
    }
    store
        .commit(
            "shop",
            &ServiceState::new(),
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
    store.due(10).unwrap().pop().unwrap()
}

/// The child: expands the campaign in `dir` (made by the parent), says when it starts and
/// how it ended.
fn expand_in(dir: &std::path::Path) {
    let cfg = config::load(&dir.join("probes.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let now = SystemClock.now();
    let item = decide(&cfg, now);
    let store = SharedStore::new(SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap());
    println!("expanding");
    let t = Instant::now();
    plan(&store, &cfg, &item, now).unwrap();
    println!(
        "expanded in {:.2} s, RSS high-water {:.1} MB",
        t.elapsed().as_secs_f64(),
        rss_hwm_mb()
    );
}

/// Expands the campaign in `dir` in a child process; with `kill_after`, SIGKILLs it that
/// long after it started. Returns what it printed, or what it had reached when killed.
fn expand_child(dir: &std::path::Path, kill_after: Option<Duration>) -> String {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--expand", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "expanding", "the child started");
    let Some(after) = kill_after else {
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(child.wait().unwrap().success());
        return line.trim().to_string();
    };
    std::thread::sleep(after);
    let hwm = common::rss(child.id()).1;
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    format!(
        "SIGKILLed after {:.1} s ({status}), RSS high-water until then {hwm:.1} MB",
        after.as_secs_f64()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--expand") {
        expand_in(std::path::Path::new(&args[i + 1]));
        return;
    }
    let mails = arg("--mails", 10_000) as usize;
    let connections = arg("--connections", 8);
    let kill_after = arg("--kill-after", 0);
    let port = common::free_port();
    let sink = common::Killed(
        Command::new("smtp-sink")
            .args(["-u", "postfix", &format!("127.0.0.1:{port}"), "1024"])
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp-sink (Postfix; scripts/bench.sh installs it)"),
    );
    std::thread::sleep(Duration::from_millis(300));

    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), mails, port, connections);
    let now = SystemClock.now();
    decide(&cfg, now);
    // Whole, in a scratch copy of the same files.
    let whole = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("customers.csv"),
        whole.path().join("customers.csv"),
    )
    .unwrap();
    setup(whole.path(), mails, port, connections);
    println!(
        "expansion of {mails} recipients, uninterrupted: {}",
        expand_child(whole.path(), None)
    );
    drop(whole);
    let planned = if kill_after > 0 {
        let killed = expand_child(dir.path(), Some(Duration::from_secs(kill_after)));
        let store = SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap();
        let so_far = store
            .campaigns(None, now)
            .unwrap()
            .first()
            .map_or(0, |c| c.counts.total());
        drop(store);
        println!("expansion interrupted: {killed}; {so_far} recipients committed by then");
        let item = decide(&cfg, now);
        let store =
            SharedStore::new(SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap());
        let t = Instant::now();
        plan(&store, &cfg, &item, now).unwrap();
        let took = t.elapsed();
        let c = &store.lock().campaigns(None, now).unwrap()[0];
        println!(
            "expansion resumed here: {:.2} s more, {} recipients in all, expanding: {}",
            took.as_secs_f64(),
            c.counts.total(),
            c.expanding
        );
        took
    } else {
        let item = decide(&cfg, now);
        let store =
            SharedStore::new(SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap());
        let t = Instant::now();
        plan(&store, &cfg, &item, now).unwrap();
        t.elapsed()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut store: Box<dyn Store> =
            Box::new(SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).unwrap());
        let signer = Arc::new(Signer::new(&store.link_key().unwrap()));
        let mailer = Arc::new(Mailer::new(&cfg.mail, &cfg.data_dir).unwrap());
        let composer = Arc::new(Composer {
            templates: Arc::new(Templates::load(None).unwrap()),
            signer,
            domain: mailer.from_domain(),
        });
        // The size of a typical message, for smtp-source.
        let sample = {
            let info = store.campaign_info(1).unwrap().unwrap();
            let job = store.due_recipients(SystemClock.now(), 0, 1).unwrap().pop().unwrap();
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
            leadership: None,
        };
        let cancel = CancellationToken::new();
        let cpu0 = cpu_seconds();
        let t = Instant::now();
        let task = tokio::spawn(sender.run(cancel.clone()));
        // Counting a million rows takes the store for a while: less often then.
        let poll = Duration::from_millis(if mails > 100_000 { 1000 } else { 20 });
        loop {
            tokio::time::sleep(poll).await;
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
                if arg("--source", 1) == 0 {
                    break;
                }
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
    drop(sink);
}
