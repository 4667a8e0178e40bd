//! The locations' votes in a cluster (`cluster.locations`): every instance probes its
//! share and writes each result, with its location, to the store; the leader tallies the
//! latest results of each probe and hands the engine one verdict per probe and interval,
//! in place of its own runs.
//!
//! A probe counts as failing only when at least its quorum of locations report it
//! failing in a result no older than its freshness window (two intervals plus the
//! timeout). A location with no fresh result is absent; one whose own canaries all fail
//! abstains: its results do not count. With fewer live locations than the quorum, a
//! failure seen by most of those left is passed on unconfirmed: it may open an incident
//! for staff, never one customers hear of (see `incident::machine`).
//!
//! The tally is pure ([`tally`]); the writer and the leader's reader around it only move
//! results between the scheduler, the store and the engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, LiveConfig, Probe, Votes};
use crate::incident::{Action, StaffMailKind};
use crate::metrics::Metrics;
use crate::probe::{Outcome, Reason};
use crate::scheduler::Report;
use crate::store::{SharedStore, SqlStore, StoreError, VoteCursor, VoteIn};

/// How often a location writes its results, and the leader reads them.
pub const EVERY: Duration = Duration::from_secs(1);

/// A location that wrote nothing for this long (or twice its shortest probe cycle, if
/// longer) is absent.
const SILENT_AFTER: Duration = Duration::from_secs(10);

/// One location's latest result of a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Ballot {
    pub ok: bool,
    pub reason: Option<Reason>,
    pub ms: u64,
    /// When it was written, on this instance's monotonic clock.
    pub at: Instant,
}

/// Whether a location's results count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "standing", content = "detail")]
pub enum Standing {
    /// It writes results and its canaries pass.
    Live,
    /// It wrote nothing lately.
    Absent,
    /// Its own canaries all fail (named): its network is down, its results mean nothing.
    Abstains(String),
}

impl Standing {
    fn word(&self) -> &'static str {
        match self {
            Standing::Live => "live",
            Standing::Absent => "absent",
            Standing::Abstains(_) => "abstains",
        }
    }
}

/// What the locations say of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not failing: fewer than the quorum see it fail, and enough count to have seen it.
    Ok,
    /// At least the quorum see it fail.
    Failing,
    /// Too few locations count to confirm anything, and most of those that do see it
    /// fail: staff may hear of it, customers not.
    Unconfirmed,
    /// No location counts: nothing is decided on it.
    NoEvidence,
}

/// The votes on one probe and what they come to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub verdict: Verdict,
    pub quorum: usize,
    /// Each location seeing it fail, with why.
    pub failing: Vec<(String, String)>,
    pub ok: Vec<String>,
    /// Locations that run it without a fresh result.
    pub absent: Vec<String>,
    pub abstaining: Vec<String>,
}

/// The tally of one probe: `ballot` gives a location's latest result with its age,
/// `standing` the location's own state. A canary probe tallies without abstentions (its
/// results are what abstention is made of): it passes where any location sees it pass.
pub fn tally<'b>(
    votes: &Votes,
    canary: bool,
    fresh: Duration,
    ballot: impl Fn(&str) -> Option<(&'b Ballot, Duration)>,
    standing: impl Fn(&str) -> Standing,
) -> Tally {
    let mut t = Tally {
        verdict: Verdict::NoEvidence,
        quorum: votes.quorum,
        failing: Vec::new(),
        ok: Vec::new(),
        absent: Vec::new(),
        abstaining: Vec::new(),
    };
    for loc in &votes.locations {
        let st = standing(loc);
        if !canary && matches!(st, Standing::Abstains(_)) {
            t.abstaining.push(loc.clone());
            continue;
        }
        match ballot(loc) {
            Some((b, age)) if age <= fresh && st != Standing::Absent => {
                if b.ok {
                    t.ok.push(loc.clone());
                } else {
                    let why = b
                        .reason
                        .as_ref()
                        .map_or_else(|| "failing".to_string(), |r| r.to_string());
                    t.failing.push((loc.clone(), why));
                }
            }
            _ => t.absent.push(loc.clone()),
        }
    }
    let live = t.failing.len() + t.ok.len();
    t.verdict = if live == 0 {
        Verdict::NoEvidence
    } else if canary {
        if t.ok.is_empty() {
            Verdict::Failing
        } else {
            Verdict::Ok
        }
    } else if t.failing.len() >= t.quorum {
        Verdict::Failing
    } else if live >= t.quorum || t.failing.len() * 2 <= live {
        Verdict::Ok
    } else {
        Verdict::Unconfirmed
    };
    t
}

impl std::fmt::Display for Tally {
    /// "failing from waw, fra: connection refused; ok from sto": locations that agree
    /// on why are named together.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for (loc, why) in &self.failing {
            match by_reason.iter_mut().find(|(w, _)| *w == why.as_str()) {
                Some((_, locs)) => locs.push(loc),
                None => by_reason.push((why, vec![loc])),
            }
        }
        for (i, (why, locs)) in by_reason.iter().enumerate() {
            let from = if i == 0 { "failing from" } else { "from" };
            parts.push(format!("{from} {}: {why}", locs.join(", ")));
        }
        if !self.ok.is_empty() {
            parts.push(format!("ok from {}", self.ok.join(", ")));
        }
        if !self.absent.is_empty() {
            parts.push(format!("no recent result from {}", self.absent.join(", ")));
        }
        if !self.abstaining.is_empty() {
            parts.push(format!(
                "{} abstaining (own canaries fail)",
                self.abstaining.join(", ")
            ));
        }
        write!(f, "{}", parts.join("; "))?;
        if self.verdict == Verdict::Unconfirmed {
            write!(
                f,
                " (unconfirmed: {} of the {} locations a quorum needs; customers are not told on this)",
                self.failing.len(),
                self.quorum
            )?;
        }
        Ok(())
    }
}

/// How old a probe's result may be and still count: two intervals plus the timeout.
pub fn freshness(probe: &Probe) -> Duration {
    probe.interval * 2 + probe.timeout
}

/// How long a location may stay silent before it is absent.
fn silent_after(config: &Config) -> Duration {
    let shortest = config
        .probes()
        .map(|p| freshness(p))
        .min()
        .unwrap_or(SILENT_AFTER);
    shortest.max(SILENT_AFTER)
}

/// A location's connections for its votes: one for writing its results, one for the
/// leader's reads, so neither waits behind the other or behind the App's store.
#[derive(Clone)]
pub struct Connections {
    pub location: String,
    pub writer: Arc<Mutex<SqlStore>>,
    pub reader: Arc<Mutex<SqlStore>>,
}

// ---------------------------------------------------------------------------------------
// Every instance: its results, written as its location's votes.

/// Writes this instance's results as its location's votes, every [`EVERY`], on a
/// connection of its own. Results that cannot be written are kept (the latest of each
/// probe) and written with the next batch.
pub struct Writer {
    pub location: String,
    pub store: Arc<Mutex<SqlStore>>,
    pub metrics: Arc<Metrics>,
    /// The canaries this location runs.
    pub canaries: usize,
    /// On the leader, the engine: results of probes no location votes on (heartbeats)
    /// go straight to it.
    pub passthrough: Option<mpsc::Sender<Report>>,
}

impl Writer {
    pub async fn run(self, rx: &mut mpsc::Receiver<Report>, cancel: CancellationToken) {
        let mut pending: HashMap<String, VoteIn> = HashMap::new();
        let mut canaries: BTreeMap<String, bool> = BTreeMap::new();
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) if r.probe.votes.is_none() => {
                        if let Some(engine) = &self.passthrough {
                            if engine.send(r).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(r) => self.take(r, &mut pending, &mut canaries),
                    None => return,
                },
                _ = every.tick() => {
                    self.flush(&mut pending, &canaries).await;
                }
                _ = cancel.cancelled() => {
                    while let Ok(r) = rx.try_recv() {
                        if r.probe.votes.is_some() {
                            self.take(r, &mut pending, &mut canaries);
                        }
                    }
                    self.flush(&mut pending, &canaries).await;
                    return;
                }
            }
        }
    }

    fn take(
        &self,
        r: Report,
        pending: &mut HashMap<String, VoteIn>,
        canaries: &mut BTreeMap<String, bool>,
    ) {
        // The host's own trouble says nothing of the target: no vote (the location goes
        // absent on that probe if it lasts).
        if matches!(r.outcome.reason, Some(Reason::MonitorFault { .. })) {
            return;
        }
        if r.probe.canary {
            canaries.insert(r.probe.name.clone(), r.outcome.success);
        }
        let reason = r
            .outcome
            .reason
            .as_ref()
            .and_then(|x| serde_json::to_string(x).ok());
        pending.insert(
            r.probe.name.clone(),
            VoteIn {
                probe: r.probe.name.clone(),
                ok: r.outcome.success,
                reason,
                ms: r.outcome.duration.as_millis() as u64,
            },
        );
    }

    async fn flush(
        &self,
        pending: &mut HashMap<String, VoteIn>,
        canaries: &BTreeMap<String, bool>,
    ) {
        let votes: Vec<VoteIn> = pending.values().cloned().collect();
        // Down only when every canary it runs has run and failed, as alone.
        let down =
            self.canaries > 0 && canaries.len() >= self.canaries && canaries.values().all(|ok| !ok);
        let failing = if down {
            canaries.keys().cloned().collect::<Vec<_>>().join(", ")
        } else {
            String::new()
        };
        let (store, location) = (self.store.clone(), self.location.clone());
        let n = votes.len();
        let written = tokio::task::spawn_blocking(move || {
            store.lock().unwrap_or_else(|e| e.into_inner()).write_votes(
                &location,
                &votes,
                (!down, &failing),
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Postgres {
                detail: format!("the vote writer failed: {e}"),
            })
        });
        match written {
            Ok(()) => {
                self.metrics.store_up(true);
                self.metrics.votes_written(n);
                pending.clear();
            }
            Err(e) => {
                self.metrics.store_up(false);
                tracing::error!(error = %e, location = %self.location, kept = n, "cannot write this location's results; they go with the next batch");
            }
        }
    }
}

/// The canaries that run at `location`.
pub fn canaries_at(config: &Config, location: &str) -> usize {
    config
        .probes()
        .filter(|p| p.canary && p.runs_at(location))
        .count()
}

// ---------------------------------------------------------------------------------------
// The leader: the tally of every probe, handed to the engine.

/// What the leader knows of the votes: each probe's ballots and latest tally, each
/// location's standing. Shared with the API.
#[derive(Default)]
pub struct Board {
    inner: RwLock<BoardInner>,
}

#[derive(Default)]
struct BoardInner {
    /// probe → location → its latest result.
    ballots: HashMap<String, BTreeMap<String, Ballot>>,
    /// location → (when it last wrote, standing by its canaries).
    locations: BTreeMap<String, (Instant, Standing)>,
    /// probe → its latest tally.
    tallies: HashMap<String, Tally>,
}

/// One location's latest result of a probe, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct BallotView {
    pub location: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub age_seconds: f64,
}

/// A probe's votes, for the API and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeVotes {
    pub tally: Option<Tally>,
    pub summary: Option<String>,
    pub ballots: Vec<BallotView>,
}

impl Board {
    /// The votes on `probe` as last tallied.
    pub fn probe(&self, probe: &str) -> ProbeVotes {
        let b = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let ballots = b
            .ballots
            .get(probe)
            .map(|m| {
                m.iter()
                    .map(|(loc, x)| BallotView {
                        location: loc.clone(),
                        ok: x.ok,
                        reason: x.reason.as_ref().map(|r| r.to_string()),
                        age_seconds: now.saturating_duration_since(x.at).as_secs_f64(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tally = b.tallies.get(probe).cloned();
        ProbeVotes {
            summary: tally.as_ref().map(|t| t.to_string()),
            tally,
            ballots,
        }
    }

    /// Each location's standing.
    pub fn locations(&self) -> BTreeMap<String, Standing> {
        let b = self.inner.read().unwrap_or_else(|e| e.into_inner());
        b.locations
            .iter()
            .map(|(l, (_, s))| (l.clone(), s.clone()))
            .collect()
    }
}

/// The leader's tallier: reads the votes every [`EVERY`] and hands the engine one tally
/// per probe and interval.
pub struct Tallier {
    pub config: LiveConfig,
    /// Its own connection, for reading the votes and the notices told.
    pub votes: Arc<Mutex<SqlStore>>,
    /// The App's (fenced) store: notices to staff are decided there.
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub engine: mpsc::Sender<Report>,
    pub board: Arc<Board>,
    pub metrics: Arc<Metrics>,
}

impl Tallier {
    pub async fn run(self, cancel: CancellationToken) {
        let mut cursor = VoteCursor::default();
        // Each probe's next verdict: once an interval, and at once when new results
        // change it (a failure is decided as soon as a quorum has reported it, not up to
        // an interval later).
        let mut due: HashMap<String, Instant> = HashMap::new();
        let mut last: HashMap<String, Verdict> = HashMap::new();
        let mut dirty: std::collections::HashSet<String> = Default::default();
        let mut told: Option<BTreeMap<String, String>> = None;
        let mut silent: Option<(Arc<Config>, Duration)> = None;
        let started = Instant::now();
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let config = self.config.get();
            let Some(cluster) = config.cluster.as_ref().filter(|c| c.votes()) else {
                continue;
            };
            let (votes, from) = (self.votes.clone(), cursor.clone());
            // What staff were told is read once, when this instance starts leading;
            // from then on it keeps it itself.
            let first = told.is_none();
            let read = tokio::task::spawn_blocking(move || {
                let s = votes.lock().unwrap_or_else(|e| e.into_inner());
                let (v, next) = s.read_votes(&from)?;
                let l = s.read_locations()?;
                let t = if first {
                    Some(s.location_notices()?)
                } else {
                    None
                };
                Ok::<_, StoreError>((v, next, l, t))
            })
            .await;
            let (votes, next, locations, notices) = match read {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    self.metrics.store_up(false);
                    tracing::error!(error = %e, "cannot read the locations' votes; nothing is decided on them until they can be read");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the vote reader failed");
                    continue;
                }
            };
            cursor = next;
            let now = Instant::now();
            // The silence window, from the probes: worked out again only for a new config.
            if !silent
                .as_ref()
                .is_some_and(|(c, _)| Arc::ptr_eq(c, &config))
            {
                silent = Some((config.clone(), silent_after(&config)));
            }
            let silent = silent.as_ref().map_or(SILENT_AFTER, |(_, d)| *d);
            {
                let mut b = self.board.inner.write().unwrap_or_else(|e| e.into_inner());
                for v in votes {
                    let at = now.checked_sub(v.age).unwrap_or(now);
                    let ballot = Ballot {
                        ok: v.ok,
                        reason: v.reason.and_then(|r| serde_json::from_str(&r).ok()),
                        ms: v.ms,
                        at,
                    };
                    let slot = b.ballots.entry(v.probe.clone()).or_default();
                    // A vote read again (the reads overlap) changes nothing.
                    let newer = slot.get(&v.location).is_none_or(|old| {
                        old.ok != ballot.ok
                            || old.reason != ballot.reason
                            || ballot.at > old.at + Duration::from_millis(500)
                    });
                    if newer {
                        slot.insert(v.location, ballot);
                        dirty.insert(v.probe);
                    }
                }
                b.locations.clear();
                for l in locations {
                    let standing = if l.age > silent {
                        Standing::Absent
                    } else if !l.canaries_ok {
                        Standing::Abstains(l.failing)
                    } else {
                        Standing::Live
                    };
                    b.locations.insert(
                        l.location,
                        (now.checked_sub(l.age).unwrap_or(now), standing),
                    );
                }
            }
            let standings: BTreeMap<String, Standing> = {
                let b = self.board.inner.read().unwrap_or_else(|e| e.into_inner());
                cluster
                    .locations
                    .iter()
                    .map(|l| {
                        let s = b
                            .locations
                            .get(l)
                            .map_or(Standing::Absent, |(_, s)| s.clone());
                        (l.clone(), s)
                    })
                    .collect()
            };
            for (l, s) in &standings {
                self.metrics.location_up(l, *s == Standing::Live);
            }
            // Locations that left or came back, told once each way. A new leader first
            // waits a silence window; a location that never wrote at all (a cluster
            // starting, its instances coming up one by one) three.
            let told_now = told.get_or_insert_with(|| notices.into_iter().flatten().collect());
            let up_for = now.duration_since(started);
            if up_for >= silent {
                let known = self
                    .board
                    .inner
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .locations
                    .keys()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>();
                let tellable: BTreeMap<String, Standing> = standings
                    .iter()
                    .filter(|(l, _)| known.contains(*l) || up_for >= silent * 3)
                    .map(|(l, s)| (l.clone(), s.clone()))
                    .collect();
                self.tell_locations(&tellable, told_now);
            }

            // The verdicts due.
            // Right after taking over, locations that have not written yet would make a
            // failure look unconfirmed: those verdicts wait for the silence window.
            let settling = now.duration_since(started) < silent;
            let tallies = self.due_tallies(
                &config,
                &standings,
                (&mut due, &mut last, &dirty),
                now,
                settling,
            );
            dirty.clear();
            for (probe, t, ms) in tallies {
                self.metrics
                    .votes_failing(&probe.service, &probe.name, t.failing.len());
                let verdict = t.verdict.clone();
                let text = t.to_string();
                self.board
                    .inner
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .tallies
                    .insert(probe.name.clone(), t);
                let (success, confirmed) = match verdict {
                    Verdict::NoEvidence => continue,
                    Verdict::Ok => (true, true),
                    Verdict::Failing => (false, true),
                    Verdict::Unconfirmed => (false, false),
                };
                let report = Report {
                    probe,
                    outcome: Outcome {
                        at: self.clock.now(),
                        duration: Duration::from_millis(ms),
                        success,
                        reason: (!success).then_some(Reason::Text { text }),
                        phases: Vec::new(),
                        details: Default::default(),
                    },
                    lag: Duration::ZERO,
                    confirmed,
                };
                if self.engine.send(report).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The tallies of the probes whose verdict is due at `now`, each with the mean time
    /// its counted runs took.
    fn due_tallies(
        &self,
        config: &Config,
        standings: &BTreeMap<String, Standing>,
        (due, last, dirty): (
            &mut HashMap<String, Instant>,
            &mut HashMap<String, Verdict>,
            &std::collections::HashSet<String>,
        ),
        now: Instant,
        settling: bool,
    ) -> Vec<(Arc<Probe>, Tally, u64)> {
        let b = self.board.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut tallies = Vec::new();
        for probe in config.probes() {
            let Some(votes) = probe.votes.as_ref() else {
                continue;
            };
            let next = due
                .entry(probe.name.clone())
                .or_insert_with(|| now + probe.interval);
            let is_due = now >= *next;
            if !is_due && !dirty.contains(&probe.name) {
                continue;
            }
            let ballots = b.ballots.get(&probe.name);
            let t = tally(
                votes,
                probe.canary,
                freshness(probe),
                |loc| {
                    ballots
                        .and_then(|m| m.get(loc))
                        .map(|x| (x, now.saturating_duration_since(x.at)))
                },
                |loc| standings.get(loc).cloned().unwrap_or(Standing::Absent),
            );
            let changed = last.get(&probe.name) != Some(&t.verdict);
            if !is_due && !changed {
                continue;
            }
            if settling && t.verdict == Verdict::Unconfirmed {
                continue;
            }
            *next = now + probe.interval;
            last.insert(probe.name.clone(), t.verdict.clone());
            // The mean time the counted runs took, for the uptime history.
            let ms = {
                let counted: Vec<u64> = ballots
                    .map(|m| {
                        m.iter()
                            .filter(|(l, _)| {
                                t.ok.contains(l) || t.failing.iter().any(|(f, _)| f == *l)
                            })
                            .map(|(_, x)| x.ms)
                            .collect()
                    })
                    .unwrap_or_default();
                counted.iter().sum::<u64>() / counted.len().max(1) as u64
            };
            tallies.push((probe.clone(), t, ms));
        }
        tallies
    }

    /// Tells staff of each location whose standing changed since they were last told:
    /// one mail for all the changes of this moment.
    fn tell_locations(
        &self,
        standings: &BTreeMap<String, Standing>,
        told: &mut BTreeMap<String, String>,
    ) {
        let mut lines = Vec::new();
        let mut changed = Vec::new();
        for (loc, s) in standings {
            let was = told.get(loc).map(String::as_str).unwrap_or("live");
            if was == s.word() {
                continue;
            }
            lines.push(match s {
                Standing::Live => format!("{loc} is back"),
                Standing::Absent => format!("{loc} is absent (no results lately)"),
                Standing::Abstains(c) => format!("{loc} abstains (its canaries fail: {c})"),
            });
            changed.push((loc.clone(), s.word().to_string()));
        }
        if lines.is_empty() {
            return;
        }
        let config = self.config.get();
        let to = config.first_responders();
        for l in &lines {
            tracing::warn!(change = %l, "cluster location");
        }
        if !to.is_empty() {
            let action = Action::MailStaff {
                id: None,
                kind: StaffMailKind::Locations,
                level: 0,
                to,
            };
            let context = crate::store::Context {
                canaries: lines,
                ..Default::default()
            };
            if let Err(e) = self
                .store
                .lock()
                .enqueue(&action, &context, self.clock.now())
            {
                tracing::error!(error = %e, "cannot tell staff of the locations; trying again");
                return;
            }
        }
        let s = self.votes.lock().unwrap_or_else(|e| e.into_inner());
        for (loc, word) in changed {
            if let Err(e) = s.set_location_notice(&loc, &word) {
                tracing::warn!(error = %e, "cannot record what staff were told of a location");
            }
            told.insert(loc, word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(locs: &[&str], quorum: usize) -> Votes {
        Votes {
            locations: locs.iter().map(|s| s.to_string()).collect(),
            quorum,
        }
    }

    fn ballot(ok: bool) -> Ballot {
        Ballot {
            ok,
            reason: (!ok).then_some(Reason::ConnectionRefused),
            ms: 5,
            at: Instant::now(),
        }
    }

    /// The tally of `results` (location, ok, age in seconds) with every location live
    /// unless named in `standing`.
    fn run(v: &Votes, results: &[(&str, bool, u64)], standing: &[(&str, Standing)]) -> Tally {
        let ballots: Vec<(String, Ballot, Duration)> = results
            .iter()
            .map(|(l, ok, age)| (l.to_string(), ballot(*ok), Duration::from_secs(*age)))
            .collect();
        tally(
            v,
            false,
            Duration::from_secs(25),
            |loc| {
                ballots
                    .iter()
                    .find(|(l, _, _)| l == loc)
                    .map(|(_, b, a)| (b, *a))
            },
            |loc| {
                standing
                    .iter()
                    .find(|(l, _)| *l == loc)
                    .map_or(Standing::Live, |(_, s)| s.clone())
            },
        )
    }

    #[test]
    fn one_location_failing_alone_is_no_failure() {
        let v = votes(&["waw", "fra", "sto"], 2);
        let t = run(
            &v,
            &[("waw", false, 1), ("fra", true, 1), ("sto", true, 1)],
            &[],
        );
        assert_eq!(t.verdict, Verdict::Ok);
        assert_eq!(
            t.to_string(),
            "failing from waw: connection refused; ok from fra, sto"
        );
    }

    #[test]
    fn a_quorum_failing_is_a_failure_that_names_them() {
        let v = votes(&["waw", "fra", "sto"], 2);
        let t = run(
            &v,
            &[("waw", false, 1), ("fra", false, 3), ("sto", true, 1)],
            &[],
        );
        assert_eq!(t.verdict, Verdict::Failing);
        assert_eq!(
            t.to_string(),
            "failing from waw, fra: connection refused; ok from sto"
        );
    }

    #[test]
    fn stale_results_are_absent_and_abstaining_locations_do_not_count() {
        let v = votes(&["waw", "fra", "sto"], 2);
        // fra's failure is too old; sto's canaries fail: waw alone cannot confirm.
        let t = run(
            &v,
            &[("waw", false, 1), ("fra", false, 26), ("sto", false, 1)],
            &[("sto", Standing::Abstains("gw".into()))],
        );
        assert_eq!(t.verdict, Verdict::Unconfirmed);
        assert_eq!(t.absent, ["fra"]);
        assert_eq!(t.abstaining, ["sto"]);
        assert!(
            t.to_string().ends_with(
                "(unconfirmed: 1 of the 2 locations a quorum needs; customers are not told on this)"
            ),
            "{t}"
        );
        // An absent location's fresh-looking result does not count either.
        let t = run(
            &v,
            &[("waw", false, 1), ("fra", false, 1)],
            &[("fra", Standing::Absent), ("sto", Standing::Absent)],
        );
        assert_eq!(t.verdict, Verdict::Unconfirmed);
    }

    #[test]
    fn too_few_live_locations_split_evenly_or_passing_is_no_failure() {
        let v = votes(&["waw", "fra", "sto"], 3);
        let t = run(&v, &[("waw", false, 1), ("fra", true, 1)], &[]);
        assert_eq!(t.verdict, Verdict::Ok);
        let t = run(&v, &[], &[]);
        assert_eq!(t.verdict, Verdict::NoEvidence);
    }

    #[test]
    fn locations_that_differ_on_why_are_named_apart() {
        let v = votes(&["waw", "fra"], 2);
        let mut other = ballot(false);
        other.reason = Some(Reason::Timeout {
            phase: crate::probe::Phase::Connect,
        });
        let ballots = [("waw", ballot(false)), ("fra", other)];
        let t = tally(
            &v,
            false,
            Duration::from_secs(25),
            |loc| {
                ballots
                    .iter()
                    .find(|(l, _)| *l == loc)
                    .map(|(_, b)| (b, Duration::ZERO))
            },
            |_| Standing::Live,
        );
        assert_eq!(t.verdict, Verdict::Failing);
        assert_eq!(
            t.to_string(),
            "failing from waw: connection refused; from fra: timed out during connect"
        );
    }

    #[test]
    fn a_canary_passes_where_any_location_sees_it_pass() {
        let v = votes(&["waw", "fra"], 2);
        let (bad, good) = (ballot(false), ballot(true));
        let t = tally(
            &v,
            true,
            Duration::from_secs(25),
            |loc| Some((if loc == "waw" { &bad } else { &good }, Duration::ZERO)),
            |loc| {
                if loc == "waw" {
                    Standing::Abstains("gw".into())
                } else {
                    Standing::Live
                }
            },
        );
        assert_eq!(t.verdict, Verdict::Ok);
        let t = tally(
            &v,
            true,
            Duration::from_secs(25),
            |_| Some((&bad, Duration::ZERO)),
            |_| Standing::Live,
        );
        assert_eq!(t.verdict, Verdict::Failing);
    }
}
