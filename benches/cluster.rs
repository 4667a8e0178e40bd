//! Three locations voting on one PostgreSQL: three `tocsin run` processes (the release
//! binary) with 10,000 HTTP probes each at 10 s against nginx, on one machine. Prints the
//! results written per second, each instance's CPU and PostgreSQL's per 1,000 probes,
//! resident memory, the failure-to-decision latency (p50, p99) of `--fail` services
//! failing at once as every location sees it, and the failover time: the leader SIGKILLed
//! as services fail, to the new leader's first decision.
//!
//! `cargo bench --bench cluster [-- --probes N --services S --fail F --seconds T]`
//! (scripts/test.sh installs PostgreSQL and nginx when missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{Killed, arg, cpu, free_port, nginx, rss};

#[allow(dead_code)] // the tests' PostgreSQL, of which this uses a part
#[path = "../tests/it/support/postgres.rs"]
mod postgres;

const LOCATIONS: [&str; 3] = ["waw", "fra", "sto"];

struct Node {
    location: &'static str,
    port: u16,
    log: PathBuf,
    proc: Option<Killed>,
}

impl Node {
    fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, |p| p.0.id())
    }

    fn leads(&self) -> bool {
        metric(self.port, "tocsin_leader") == Some(1.0)
    }
}

fn metric(port: u16, series: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    location: &str,
    port: u16,
    store: &str,
    target: u16,
    probes: usize,
    services: usize,
    fail: usize,
) -> PathBuf {
    let mut y = format!(
        "listen: 127.0.0.1:{port}
data_dir: ./var-{location}
location: {location}
store: {store}
cluster:
  lease: 15s
  locations: [waw, fra, sto]
max_concurrency: 4096
defaults: {{ interval: 10s, timeout: 5s, failure_threshold: 1, success_threshold: 1 }}
mail: {{ from: \"Status <status@example.com>\" }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
services:
"
    );
    let per = probes / services;
    for s in 0..services {
        y.push_str(&format!(
            "  - id: s{s}\n    escalation: default\n    probes:\n"
        ));
        for p in 0..per {
            // The first probe of each of the first `fail` services flips with the file.
            let path = if s < fail && p == 0 { "flip" } else { "ok" };
            y.push_str(&format!(
                "      - {{ name: s{s}-p{p}, http: {{ url: \"http://127.0.0.1:{target}/{path}/s{s}/p{p}\", body_contains: \"Add to cart\" }} }}\n"
            ));
        }
    }
    let cfg = dir.join(format!("{location}.yaml"));
    std::fs::write(&cfg, y).unwrap();
    cfg
}

fn start(dir: &Path, location: &'static str, cfg: &Path, port: u16) -> Node {
    let log = dir.join(format!("{location}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "--config"])
        .arg(cfg)
        .current_dir(dir)
        .env("PGPASSWORD", postgres::PASSWORD)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    Node {
        location,
        port,
        log,
        proc: Some(Killed(child)),
    }
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The "incident decision ... opened" lines of `log`: (when, service).
fn openings(log: &Path) -> Vec<(SystemTime, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("incident decision") && l.contains(" opened"))
        .filter_map(|l| {
            let at = chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok()?;
            let service = l
                .split("service=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string();
            Some((SystemTime::from(at), service))
        })
        .collect()
}

/// utime + stime of `pid` and every process under it, in seconds.
fn tree_cpu(pid: u32) -> f64 {
    let mut total = cpu(pid);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += cpu(child);
        }
    }
    total
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let probes = arg("--probes", 10_000) as usize;
    let services = arg("--services", 100) as usize;
    let fail = arg("--fail", 100) as usize;
    let seconds = arg("--seconds", 60);
    let dir = tempfile::tempdir().unwrap();
    let target = free_port();
    let _nginx = nginx(dir.path(), target);
    let pg = postgres::Postgres::start();
    let store = pg.database("bench");
    let pg_pid = pg_pid(&pg);

    let mut nodes: Vec<Node> = Vec::new();
    for (i, loc) in LOCATIONS.into_iter().enumerate() {
        let port = free_port();
        let cfg = write_config(
            dir.path(),
            loc,
            port,
            &store,
            target,
            probes,
            services,
            fail,
        );
        nodes.push(start(dir.path(), loc, &cfg, port));
        if i == 0 {
            wait("waw to lead", Duration::from_secs(60), || nodes[0].leads());
        }
    }
    let leader = 0;
    for loc in LOCATIONS {
        let series = format!("tocsin_location_up{{location=\"{loc}\"}}");
        wait(&format!("{loc} to vote"), Duration::from_secs(120), || {
            metric(nodes[leader].port, &series) == Some(1.0)
        });
    }
    // Two full rounds before measuring: every probe has run and been written.
    std::thread::sleep(Duration::from_secs(20));

    let written = |n: &Node| metric(n.port, "tocsin_votes_written_total").unwrap_or(0.0);
    let w0: Vec<f64> = nodes.iter().map(written).collect();
    let c0: Vec<f64> = nodes.iter().map(|n| cpu(n.pid())).collect();
    let p0 = tree_cpu(pg_pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let span = t0.elapsed().as_secs_f64();
    let w1: Vec<f64> = nodes.iter().map(written).collect();
    let c1: Vec<f64> = nodes.iter().map(|n| cpu(n.pid())).collect();
    let p1 = tree_cpu(pg_pid);
    let per_k = probes as f64 / 1000.0;
    println!(
        "{} locations x {probes} HTTP probes at 10 s ({services} services), PostgreSQL 15 and nginx on this machine, {span:.0} s measured",
        LOCATIONS.len()
    );
    let total_w: f64 = w1.iter().zip(&w0).map(|(a, b)| a - b).sum();
    println!(
        "results written: {:.0}/s in all ({} expected at 10 s)",
        total_w / span,
        probes * LOCATIONS.len() / 10
    );
    for (i, n) in nodes.iter().enumerate() {
        let (now, peak) = rss(n.pid());
        println!(
            "  {}{}: {:.0} results/s written, CPU {:.3} s per 1,000 probes per minute ({:.1}% of a core), RSS {now:.0} MB (peak {peak:.0} MB)",
            n.location,
            if i == leader { " (leader)" } else { "" },
            (w1[i] - w0[i]) / span,
            (c1[i] - c0[i]) / span * 60.0 / per_k,
            (c1[i] - c0[i]) / span * 100.0,
        );
    }
    println!(
        "  PostgreSQL: CPU {:.3} s per 1,000 probes per minute, all locations together ({:.1}% of a core)",
        (p1 - p0) / span * 60.0 / (per_k * LOCATIONS.len() as f64),
        (p1 - p0) / span * 100.0
    );

    // Failure to decision: `fail` services fail at once, as every location sees them.
    let flip = dir.path().join("flip");
    let before = openings(&nodes[leader].log).len();
    let failed_at = SystemTime::now();
    std::fs::write(&flip, "").unwrap();
    wait("the incidents to open", Duration::from_secs(120), || {
        openings(&nodes[leader].log).len() >= before + fail
    });
    let mut lat: Vec<f64> = openings(&nodes[leader].log)[before..]
        .iter()
        .map(|(at, _)| {
            at.duration_since(failed_at)
                .unwrap_or_default()
                .as_secs_f64()
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "failure to decision ({} services, failure_threshold 1, interval 10 s): p50 {:.1} s, p99 {:.1} s, max {:.1} s",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    // Recovery, then the failover: the leader SIGKILLed as the services fail again.
    std::fs::remove_file(&flip).unwrap();
    std::thread::sleep(Duration::from_secs(40));
    let mut old = nodes.remove(leader);
    let killed_at = SystemTime::now();
    let _ = Command::new("kill")
        .args(["-KILL", &old.pid().to_string()])
        .status();
    old.proc = None;
    std::fs::write(&flip, "").unwrap();
    let starts: Vec<usize> = nodes.iter().map(|n| openings(&n.log).len()).collect();
    let mut first: Option<(SystemTime, &str)> = None;
    wait(
        "a new leader's first decision",
        Duration::from_secs(180),
        || {
            for (n, s) in nodes.iter().zip(&starts) {
                if let Some((at, _)) = openings(&n.log).get(*s) {
                    first = Some((*at, n.location));
                    return true;
                }
            }
            false
        },
    );
    let (at, by) = first.unwrap();
    println!(
        "failover: leader SIGKILLed, {by} decided first {:.1} s later (lease 15 s; the services failed as it was killed)",
        at.duration_since(killed_at)
            .unwrap_or_default()
            .as_secs_f64()
    );
}

/// The postmaster's pid: the process listening on the server's port.
fn pg_pid(pg: &postgres::Postgres) -> u32 {
    let out = Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{}", pg.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("the postmaster's pid")
}
