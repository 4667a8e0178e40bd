//! When probes run. Each probe has its own task: its first run lands at a random point of
//! its interval (no thundering herd at start-up or reload), each later run at the next
//! multiple of the interval plus a little jitter. A global semaphore bounds how many
//! probes run at once. A run that starts too late for one or more slots skips them and
//! counts them; runs are never queued.
//!
//! Outcomes go out on a channel; this room knows nothing of what consumes them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use rand::Rng;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{Config, Probe};
use crate::metrics::Metrics;
use crate::probe::{self, Outcome};

/// Runs one probe; the scheduler's only side effect, passed in so that tests can drive the
/// schedule on simulated time.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, probe: &Probe, now: SystemTime) -> BoxFuture<'static, Outcome>;

    /// Whether runs land on exact multiples of the interval from the start, without the
    /// random spread and jitter that keep live probes from hitting a target together (a
    /// rehearsal on simulated time wants the times an operator would read off the plan).
    fn aligned(&self) -> bool {
        false
    }
}

/// Runs the probe for real, and tells a name that would not resolve from a resolver that
/// answers nothing (see [`probe::dns::ResolverCheck`]).
#[derive(Clone, Default)]
pub struct LiveRunner {
    resolver: Arc<probe::dns::ResolverCheck>,
}

impl Runner for LiveRunner {
    fn run(&self, p: &Probe, now: SystemTime) -> BoxFuture<'static, Outcome> {
        let check = p.check.clone();
        let timeout = p.timeout;
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut outcome = probe::run(&check, timeout, now).await;
            // A name that would not resolve: the target's domain, unless the resolver
            // answers nothing at all (then it is the monitor's own trouble).
            if resolving_failed(&check, &outcome) {
                if let Some(detail) = resolver.trouble(started).await {
                    outcome.reason = Some(probe::Reason::MonitorFault {
                        cause: "resolver".into(),
                        detail,
                    });
                }
            }
            outcome
        })
    }
}

/// Whether `outcome` failed while the system's resolver was looking a name up for it.
fn resolving_failed(check: &probe::Check, outcome: &Outcome) -> bool {
    let system_resolver = match check {
        probe::Check::Dns(c) => c.server.is_none(),
        probe::Check::Heartbeat(_) => false,
        _ => true,
    };
    system_resolver
        && match &outcome.reason {
            Some(probe::Reason::Timeout { phase }) => *phase == probe::Phase::Resolve,
            Some(probe::Reason::Resolve { .. }) => true,
            _ => false,
        }
}

/// One probe run, as sent to consumers.
#[derive(Debug, Clone)]
pub struct Report {
    pub probe: Arc<Probe>,
    pub outcome: Outcome,
    /// How late the run started compared with its schedule.
    pub lag: Duration,
    /// A failure that a quorum of locations saw; always true for a run of this instance
    /// alone. In a cluster that votes, the engine gets the locations' tally instead of
    /// the runs, and this says whether the tally confirmed a failure.
    pub confirmed: bool,
}

/// The largest random delay added to a run, as a share of the interval (capped).
const JITTER_SHARE: u32 = 20;
const JITTER_MAX: Duration = Duration::from_millis(500);

struct Running {
    probe: Arc<Probe>,
    cancel: CancellationToken,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<(String, String)>,
    pub kept: usize,
}

/// Which probes of the config a scheduler runs.
type Pick = dyn Fn(&Probe) -> bool + Send + Sync;

pub struct Scheduler {
    running: HashMap<(String, String), Running>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    semaphore: Arc<RwLock<(usize, Arc<Semaphore>)>>,
    tx: mpsc::Sender<Report>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn Runner>,
    /// Which probes of the config this instance runs (all, alone).
    only: Option<Arc<Pick>>,
}

impl Scheduler {
    pub fn new(
        tx: mpsc::Sender<Report>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        runner: Arc<dyn Runner>,
        shutdown: CancellationToken,
    ) -> Self {
        Scheduler {
            running: HashMap::new(),
            tracker: TaskTracker::new(),
            shutdown,
            semaphore: Arc::new(RwLock::new((0, Arc::new(Semaphore::new(0))))),
            tx,
            metrics,
            clock,
            runner,
            only: None,
        }
    }

    /// Runs only the probes `which` picks (a cluster's location runs its share).
    pub fn only(mut self, which: impl Fn(&Probe) -> bool + Send + Sync + 'static) -> Self {
        self.only = Some(Arc::new(which));
        self
    }

    /// Starts, restarts or stops probe tasks to match `config`. A probe whose definition
    /// is unchanged keeps its task and so its schedule.
    pub fn apply(&mut self, config: &Config) -> Changes {
        {
            let mut sem = self.semaphore.write().unwrap_or_else(|e| e.into_inner());
            if sem.0 != config.max_concurrency {
                // Runs holding a permit of the old semaphore finish under the old bound.
                *sem = (
                    config.max_concurrency,
                    Arc::new(Semaphore::new(config.max_concurrency)),
                );
            }
        }
        let mut changes = Changes::default();
        let mut wanted: HashMap<(String, String), Arc<Probe>> = HashMap::new();
        for p in config.probes() {
            if self.only.as_ref().is_some_and(|only| !only(p)) {
                continue;
            }
            wanted.insert((p.service.clone(), p.name.clone()), p.clone());
        }
        let gone: Vec<(String, String)> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(r) = self.running.remove(&key) {
                r.cancel.cancel();
            }
            changes.removed.push(key);
        }
        for (key, probe) in wanted {
            match self.running.get(&key) {
                Some(r) if *r.probe == *probe => {
                    changes.kept += 1;
                    continue;
                }
                Some(r) => {
                    r.cancel.cancel();
                    changes.changed.push(probe.name.clone());
                }
                None => changes.added.push(probe.name.clone()),
            }
            let cancel = self.shutdown.child_token();
            self.metrics.register_probe(&probe);
            self.tracker.spawn(probe_loop(
                probe.clone(),
                Shared {
                    semaphore: self.semaphore.clone(),
                    tx: self.tx.clone(),
                    metrics: self.metrics.clone(),
                    clock: self.clock.clone(),
                    runner: self.runner.clone(),
                },
                cancel.clone(),
            ));
            self.running.insert(key, Running { probe, cancel });
        }
        changes.added.sort();
        changes.changed.sort();
        changes.removed.sort();
        changes
    }

    /// Stops scheduling new runs and waits for runs in flight (each bounded by its
    /// timeout).
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

struct Shared {
    semaphore: Arc<RwLock<(usize, Arc<Semaphore>)>>,
    tx: mpsc::Sender<Report>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn Runner>,
}

async fn probe_loop(probe: Arc<Probe>, sh: Shared, cancel: CancellationToken) {
    let interval = probe.interval;
    let max_jitter = if sh.runner.aligned() {
        Duration::ZERO
    } else {
        (interval / JITTER_SHARE).min(JITTER_MAX)
    };
    let spread = if sh.runner.aligned() {
        Duration::ZERO
    } else {
        interval
    };
    let mut slot = Instant::now() + random_up_to(spread);
    loop {
        let due = slot + random_up_to(max_jitter);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let semaphore = sh
            .semaphore
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        // The futures of a run's steps are boxed: a probe's task spends nearly all its
        // life asleep, and its size is that of its largest step, held for all of it.
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = Box::pin(semaphore.acquire_owned()) => p,
        };
        let Ok(permit) = permit else { return };
        let lag = Instant::now().saturating_duration_since(due);
        sh.metrics.scheduler_lag(lag);
        // A run in flight is finished even during shutdown: it ends within its timeout.
        let outcome = sh.runner.run(&probe, sh.clock.now()).await;
        drop(permit);
        if Box::pin(sh.tx.send(Report {
            probe: probe.clone(),
            outcome,
            lag,
            confirmed: true,
        }))
        .await
        .is_err()
        {
            return;
        }
        slot += interval;
        let now = Instant::now();
        if slot < now {
            let behind = now - slot;
            let missed = (behind.as_nanos() / interval.as_nanos()) as u32 + 1;
            slot += interval * missed;
            sh.metrics.skipped(&probe, u64::from(missed));
            tracing::warn!(service = %probe.service, probe = %probe.name, missed, "probe runs skipped: the previous run finished too late");
        }
    }
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..max.as_nanos() as u64))
}

/// The in-memory table of the latest outcome of each probe: service → probe → report,
/// nested so that a lookup by `&str` allocates nothing.
#[derive(Default)]
pub struct Latest(RwLock<HashMap<String, HashMap<String, Report>>>);

/// One row of the latest-result table, as served by `/api/v1/probes`.
#[derive(Debug, Serialize)]
pub struct LatestRow {
    pub service: String,
    pub probe: String,
    pub kind: &'static str,
    pub target: String,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub canary: bool,
    pub last: Option<Outcome>,
}

/// Which rows a page of the table holds.
#[derive(Debug, Default)]
pub struct RowFilter {
    /// Only this service's probes.
    pub service: Option<String>,
    /// Only probes whose latest run failed.
    pub failing: bool,
    /// Rows after this (service, probe), in config order.
    pub after: Option<(String, String)>,
}

impl Latest {
    /// Stores the report; returns whether the previous run of the same probe succeeded
    /// (None for its first run).
    pub fn record(&self, report: Report) -> Option<bool> {
        let mut t = self.0.write().unwrap_or_else(|e| e.into_inner());
        let of_service = match t.get_mut(report.probe.service.as_str()) {
            Some(m) => m,
            None => t.entry(report.probe.service.clone()).or_default(),
        };
        match of_service.get_mut(report.probe.name.as_str()) {
            Some(slot) => Some(std::mem::replace(slot, report).outcome.success),
            None => {
                of_service.insert(report.probe.name.clone(), report);
                None
            }
        }
    }

    pub fn forget(&self, service: &str, probe: &str) {
        let mut t = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = t.get_mut(service) {
            m.remove(probe);
            if m.is_empty() {
                t.remove(service);
            }
        }
    }

    /// The configured probes with their latest outcome, in config order.
    pub fn rows(&self, config: &Config) -> Vec<LatestRow> {
        self.page(config, &RowFilter::default(), usize::MAX).0
    }

    /// Up to `limit` rows that pass `filter`, in config order, and whether more follow.
    /// Only the rows returned are copied: a page of 100,000 probes costs its own size.
    pub fn page(
        &self,
        config: &Config,
        filter: &RowFilter,
        limit: usize,
    ) -> (Vec<LatestRow>, bool) {
        let t = self.0.read().unwrap_or_else(|e| e.into_inner());
        let last = |p: &Probe| {
            t.get(p.service.as_str())
                .and_then(|m| m.get(p.name.as_str()))
                // A report of the probe's previous definition says nothing of this one.
                .filter(|r| *r.probe == *p)
        };
        let mut probes: Box<dyn Iterator<Item = &Arc<Probe>>> = match &filter.service {
            Some(id) => Box::new(
                config
                    .services
                    .iter()
                    .filter(move |s| s.id == *id)
                    .flat_map(|s| s.probes.iter()),
            ),
            None => Box::new(config.probes()),
        };
        if let Some((service, probe)) = &filter.after {
            // Past the cursor; a cursor naming a probe gone since gives an empty page.
            let mut found = false;
            for p in probes.by_ref() {
                if p.service == *service && p.name == *probe {
                    found = true;
                    break;
                }
            }
            if !found {
                return (Vec::new(), false);
            }
        }
        let mut rows = Vec::new();
        for p in probes {
            let report = last(p);
            if filter.failing && report.is_none_or(|r| r.outcome.success) {
                continue;
            }
            if rows.len() == limit {
                return (rows, true);
            }
            rows.push(LatestRow {
                service: p.service.clone(),
                probe: p.name.clone(),
                kind: p.check.kind(),
                target: p.check.target(),
                interval_seconds: p.interval.as_secs_f64(),
                timeout_seconds: p.timeout.as_secs_f64(),
                canary: p.canary,
                last: report.map(|r| r.outcome.clone()),
            });
        }
        (rows, false)
    }
}

/// Feeds metrics and the latest-result table from the outcome channel until it closes,
/// logs when a probe starts or stops failing (not on every run), and passes each report on
/// to `forward` (the incident engine) when given.
pub async fn record(
    rx: &mut mpsc::Receiver<Report>,
    metrics: Arc<Metrics>,
    latest: Arc<Latest>,
    forward: Option<mpsc::Sender<Report>>,
) {
    while let Some(report) = rx.recv().await {
        metrics.observe(&report.probe, &report.outcome);
        let (probe, outcome) = (report.probe.clone(), report.outcome.clone());
        let was_ok = latest.record(report.clone());
        match (&outcome.reason, was_ok) {
            (Some(reason), None | Some(true)) => {
                tracing::warn!(service = %probe.service, probe = %probe.name, target = %probe.check.target(), %reason, "probe failing")
            }
            (None, Some(false)) => {
                tracing::info!(service = %probe.service, probe = %probe.name, "probe succeeding again")
            }
            _ => {}
        }
        if let Some(tx) = &forward {
            if tx.send(report).await.is_err() {
                tracing::error!("the incident engine stopped; probe results no longer reach it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's task is alive for as long as the probe is configured, mostly asleep:
    /// its size is paid 100,000 times on a large installation. (It was 1,280 bytes
    /// before the steps of a run were boxed.)
    #[test]
    fn an_idle_probe_task_stays_small() {
        let probe = crate::config::parse(
            "services:\n  - id: s\n    probes:\n      - { name: p, tcp: { address: \"127.0.0.1:9\" } }\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap()
        .services[0]
            .probes[0]
            .clone();
        let (tx, _rx) = mpsc::channel(1);
        let task = probe_loop(
            probe,
            Shared {
                semaphore: Arc::new(RwLock::new((1, Arc::new(Semaphore::new(1))))),
                tx,
                metrics: Arc::new(Metrics::new()),
                clock: Arc::new(crate::clock::SystemClock),
                runner: Arc::new(LiveRunner::default()),
            },
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&task);
        println!("a probe's task holds {size} bytes");
        assert!(size <= 512, "a probe's task holds {size} bytes");
    }
}
