//! The scheduler on simulated time (tokio's paused clock): spread, jitter, intervals, the
//! concurrency bound, skipping instead of queueing, reloads and shutdown. No real sleeps.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tocsin::clock::SystemClock;
use tocsin::config::{self, Config, Probe};
use tocsin::metrics::Metrics;
use tocsin::probe::Outcome;
use tocsin::scheduler::{Changes, Runner, Scheduler};

/// Takes `delay` of simulated time per run and records when each run started.
struct FakeRunner {
    delay: Duration,
    started: Mutex<HashMap<String, Vec<Instant>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: AtomicUsize,
}

impl FakeRunner {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(FakeRunner {
            delay,
            started: Mutex::default(),
            in_flight: Arc::default(),
            max_in_flight: AtomicUsize::new(0),
        })
    }
    fn starts(&self, name: &str) -> Vec<Instant> {
        self.started
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
    fn total(&self) -> usize {
        self.started.lock().unwrap().values().map(Vec::len).sum()
    }
}

impl Runner for FakeRunner {
    fn run(&self, p: &Probe, now: SystemTime) -> BoxFuture<'static, Outcome> {
        self.started
            .lock()
            .unwrap()
            .entry(p.name.clone())
            .or_default()
            .push(Instant::now());
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let delay = self.delay;
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Outcome {
                at: now,
                duration: delay,
                success: true,
                reason: None,
                phases: vec![],
                details: Default::default(),
            }
        })
    }
}

fn config(yaml: &str) -> Config {
    config::parse(yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn probes_yaml(n: usize, interval: &str, timeout: &str, max_concurrency: usize) -> String {
    let mut y =
        format!("max_concurrency: {max_concurrency}\nservices:\n  - id: svc\n    probes:\n");
    for i in 0..n {
        y += &format!(
            "      - {{ name: p{i}, interval: {interval}, timeout: {timeout}, tcp: {{ address: \"127.0.0.1:9\" }} }}\n"
        );
    }
    y
}

struct Harness {
    sched: Scheduler,
    metrics: Arc<Metrics>,
    reports: Arc<AtomicUsize>,
}

fn harness(runner: Arc<FakeRunner>) -> Harness {
    let (tx, mut rx) = mpsc::channel(16);
    let reports = Arc::new(AtomicUsize::new(0));
    let count = reports.clone();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let metrics = Arc::new(Metrics::new());
    let sched = Scheduler::new(
        tx,
        metrics.clone(),
        Arc::new(SystemClock),
        runner,
        CancellationToken::new(),
    );
    Harness {
        sched,
        metrics,
        reports,
    }
}

fn skipped_total(m: &Metrics) -> u64 {
    m.render()
        .lines()
        .filter(|l| l.starts_with("tocsin_probes_skipped_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn first_runs_are_spread_over_the_interval_then_repeat_on_it() {
    let runner = FakeRunner::new(Duration::from_millis(10));
    let mut h = harness(runner.clone());
    let t0 = Instant::now();
    h.sched.apply(&config(&probes_yaml(200, "10s", "5s", 1000)));
    tokio::time::sleep(Duration::from_secs(35)).await;

    let mut per_second = [0usize; 10];
    for i in 0..200 {
        let starts = runner.starts(&format!("p{i}"));
        let first = starts[0] - t0;
        assert!(
            first < Duration::from_millis(10_500),
            "p{i} first at {first:?}"
        );
        per_second[(first.as_secs() as usize).min(9)] += 1;
        for w in starts.windows(2) {
            let gap = w[1] - w[0];
            // The slot advances by exactly the interval; jitter (at most 500 ms) moves
            // each run within its slot.
            assert!(
                gap >= Duration::from_millis(9_500) && gap <= Duration::from_millis(10_500),
                "p{i} gap {gap:?}"
            );
        }
        assert!(starts.len() >= 3, "p{i} ran {} times in 35 s", starts.len());
    }
    // 200 first runs over 10 one-second buckets: about 20 each, never a herd.
    assert!(
        per_second.iter().all(|n| *n <= 45),
        "first runs per second: {per_second:?}"
    );
    assert!(
        per_second.iter().all(|n| *n >= 5),
        "first runs per second: {per_second:?}"
    );
    assert_eq!(skipped_total(&h.metrics), 0);
}

#[tokio::test(start_paused = true)]
async fn a_run_slower_than_its_interval_skips_slots_and_counts_them() {
    let runner = FakeRunner::new(Duration::from_millis(2_500));
    let mut h = harness(runner.clone());
    h.sched.apply(&config(&probes_yaml(1, "1s", "900ms", 10)));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let starts = runner.starts("p0");
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(2_500),
            "runs never overlap nor queue: {:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(runner.max_in_flight.load(Ordering::SeqCst), 1);
    let skipped = skipped_total(&h.metrics);
    // About 20 slots in 20 s, of which about 7 could run.
    assert!(skipped >= 10, "skipped {skipped}");
    assert!(
        starts.len() + skipped as usize >= 18,
        "every slot is run or counted: {} + {skipped}",
        starts.len()
    );
}

#[tokio::test(start_paused = true)]
async fn global_concurrency_is_bounded() {
    let runner = FakeRunner::new(Duration::from_millis(400));
    let mut h = harness(runner.clone());
    h.sched.apply(&config(&probes_yaml(50, "1s", "500ms", 3)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runner.max_in_flight.load(Ordering::SeqCst), 3);
    assert!(
        runner.total() > 50,
        "runs go on under the bound: {}",
        runner.total()
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_probes_on_their_schedule() {
    let runner = FakeRunner::new(Duration::from_millis(10));
    let mut h = harness(runner.clone());
    let a = "max_concurrency: 10\nservices:\n  - id: s\n    probes:\n      - { name: keep, interval: 10s, timeout: 1s, tcp: { address: \"127.0.0.1:9\" } }\n      - { name: edit, interval: 10s, timeout: 1s, tcp: { address: \"127.0.0.1:9\" } }\n      - { name: drop, interval: 10s, timeout: 1s, tcp: { address: \"127.0.0.1:9\" } }\n";
    let b = "max_concurrency: 10\nservices:\n  - id: s\n    probes:\n      - { name: keep, interval: 10s, timeout: 1s, tcp: { address: \"127.0.0.1:9\" } }\n      - { name: edit, interval: 10s, timeout: 2s, tcp: { address: \"127.0.0.1:9\" } }\n      - { name: new, interval: 10s, timeout: 1s, tcp: { address: \"127.0.0.1:9\" } }\n";
    let first = h.sched.apply(&config(a));
    assert_eq!(first.added, vec!["drop", "edit", "keep"]);
    tokio::time::sleep(Duration::from_secs(25)).await;
    let before = runner.starts("keep");
    let changes = h.sched.apply(&config(b));
    assert_eq!(
        changes,
        Changes {
            added: vec!["new".into()],
            changed: vec!["edit".into()],
            removed: vec![("s".into(), "drop".into())],
            kept: 1
        }
    );
    let drop_runs = runner.starts("drop").len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = runner.starts("keep");
    assert!(after.len() >= before.len() + 2);
    for w in after.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(9_500) && gap <= Duration::from_millis(10_500),
            "the kept probe's cadence did not restart: {gap:?}"
        );
    }
    assert_eq!(
        runner.starts("drop").len(),
        drop_runs,
        "a removed probe stops"
    );
    assert!(!runner.starts("new").is_empty());
    assert!(h.reports.load(Ordering::SeqCst) > 0);
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_runs_in_flight_and_starts_no_more() {
    let runner = FakeRunner::new(Duration::from_secs(4));
    let mut h = harness(runner.clone());
    h.sched.apply(&config(&probes_yaml(50, "10s", "5s", 100)));
    // First runs land within 10.5 s (offset plus jitter); at 10.6 s every probe has
    // started and those that started in the last 4 s are still running.
    tokio::time::sleep(Duration::from_millis(10_600)).await;
    let started = runner.total();
    let in_flight = runner.in_flight.load(Ordering::SeqCst);
    assert!(started >= 50, "{started}");
    assert!(in_flight > 0, "some runs are in flight when stop is called");
    let t = Instant::now();
    h.sched.stop().await;
    assert_eq!(
        runner.in_flight.load(Ordering::SeqCst),
        0,
        "runs in flight finished"
    );
    assert!(
        Instant::now() - t <= Duration::from_secs(4),
        "and no longer than a run"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runner.total(), started, "nothing starts after stop");
}
