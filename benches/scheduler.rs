//! The scheduler under load: 10,000 HTTP probes at a 10 s interval (1,000 probes a second,
//! each a fresh TCP connection) against a local HTTP server running in a separate process,
//! so the figures are tocsin's own. Prints probes/s, scheduler lag p50/p99/max, skipped
//! runs, failures, CPU seconds per 1,000 probes and resident memory.
//!
//! With `--engine`, every report also goes through the incident engine (state machine and
//! SQLite store), as in `tocsin run`.
//!
//! `cargo bench --bench scheduler [-- --probes N --interval S --seconds S --engine]`

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tocsin::clock::SystemClock;
use tocsin::config;
use tocsin::engine::Engine;
use tocsin::metrics::Metrics;
use tocsin::scheduler::{LiveRunner, Scheduler};
use tocsin::store::{SharedStore, SqlStore};

mod common;
use common::arg;

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
        return;
    }
    let probes = arg("--probes", 10_000);
    let interval = arg("--interval", 10);
    let seconds = arg("--seconds", 30);

    // The target server: this same program in `--serve` mode, in its own process.
    let mut server = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the target server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_string();

    // Ten probes a service, as a real config would have them.
    let mut yaml = String::from("max_concurrency: 512\nservices:\n");
    for i in 0..probes {
        if i % 10 == 0 {
            yaml += &format!("  - id: s{}\n    probes:\n", i / 10);
        }
        yaml += &format!(
            "      - {{ name: p{i}, interval: {interval}s, timeout: 5s, http: {{ url: \"http://{addr}/p/{i}\", body_contains: \"ok\" }} }}\n"
        );
    }
    let with_engine = std::env::args().any(|a| a == "--engine");
    let db_dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(&yaml, Path::new("bench.yaml")).expect("bench config");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (tx, mut rx) = mpsc::channel(4096);
        let metrics = Arc::new(Metrics::new());
        let mut sched = Scheduler::new(tx, metrics.clone(), Arc::new(SystemClock), Arc::new(LiveRunner::default()), CancellationToken::new());
        let mut engine = with_engine.then(|| {
            let store = SharedStore::new(SqlStore::open_sqlite(&db_dir.path().join("tocsin.db")).unwrap());
            Engine::new(&cfg, store, Arc::new(SystemClock)).unwrap()
        });
        let start = Instant::now();
        sched.apply(&cfg);
        // The first interval spreads the first runs; measure the steady state after it.
        let warmup = Duration::from_secs(interval);
        let measure = Duration::from_secs(seconds);
        let mut lags: Vec<Duration> = Vec::new();
        let mut failures = 0u64;
        let mut first_failure = None;
        let mut cpu0 = None;
        let mut rss_peak_kb = 0;
        let mut next_sample = Instant::now();
        while let Some(r) = rx.recv().await {
            if let Some(e) = engine.as_mut() {
                e.report(&r).expect("engine step");
            }
            let t = start.elapsed();
            if t < warmup {
                continue;
            }
            if cpu0.is_none() {
                cpu0 = Some((cpu_seconds(), Instant::now()));
            }
            if t > warmup + measure {
                break;
            }
            lags.push(r.lag);
            if !r.outcome.success {
                failures += 1;
                first_failure.get_or_insert_with(|| r.outcome.reason.clone());
            }
            if Instant::now() >= next_sample {
                rss_peak_kb = rss_peak_kb.max(status_kb("VmRSS"));
                next_sample += Duration::from_millis(500);
            }
        }
        let (cpu_start, wall_start) = cpu0.expect("reports arrived");
        let cpu = cpu_seconds() - cpu_start;
        let wall = wall_start.elapsed().as_secs_f64();
        let rss_now = status_kb("VmRSS");
        let skipped: u64 = metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("tocsin_probes_skipped_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        sched.stop().await;

        lags.sort();
        let pct = |p: f64| lags[((lags.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
        let n = lags.len() as f64;
        let what = if with_engine { " through the incident engine" } else { "" };
        println!("tocsin scheduler benchmark: {probes} HTTP probes every {interval}s{what}, measured over {wall:.1}s after a {interval}s warm-up");
        println!("  probes run         {n}");
        println!("  probes/s           {:.0}", n / wall);
        println!("  failures           {failures}{}", first_failure.flatten().map(|r| format!(" (first: {r})")).unwrap_or_default());
        println!("  skipped runs       {skipped}");
        println!("  lag p50            {:.2} ms", pct(0.50));
        println!("  lag p99            {:.2} ms", pct(0.99));
        println!("  lag max            {:.2} ms", pct(1.0));
        println!("  CPU                {:.2} s user+system, {:.3} CPU-s per 1,000 probes, {:.0}% of one core", cpu, cpu / n * 1000.0, cpu / wall * 100.0);
        println!("  RSS                {:.1} MB now, {:.1} MB peak sampled, {:.1} MB high-water mark", rss_now as f64 / 1024.0, rss_peak_kb.max(rss_now) as f64 / 1024.0, status_kb("VmHWM") as f64 / 1024.0);
    });
    let _ = server.kill();
    let _ = server.wait();
}

/// This process's user+system CPU time.
fn cpu_seconds() -> f64 {
    common::cpu(std::process::id())
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|| async { "ok" });
        axum::serve(listener, app).await.unwrap();
    });
}
