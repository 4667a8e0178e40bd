//! Heartbeats (push monitors): a cron job or batch run calls tocsin when it ends, and
//! the probe fails when the call is late or says the job failed (Healthchecks.io's
//! model). Nothing is sent to the target: the outcome is decided here from the pings
//! kept in the store, by a pure function of the state and the time, so every rule is
//! tested on simulated time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Reason;

/// When pings are expected.
#[derive(Clone)]
pub enum Expect {
    /// At least once per period (`period: 1h`).
    Every(Duration),
    /// At each time of a cron schedule (`schedule: "0 3 * * *"`) in a time zone.
    Cron {
        cron: Arc<croner::Cron>,
        source: String,
        tz: Tz,
    },
}

impl fmt::Debug for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Every(d) => write!(f, "Every({d:?})"),
            Expect::Cron { source, tz, .. } => write!(f, "Cron({source:?} {tz})"),
        }
    }
}

impl PartialEq for Expect {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (Expect::Every(a), Expect::Every(b)) => a == b,
            (
                Expect::Cron {
                    source: a, tz: x, ..
                },
                Expect::Cron {
                    source: b, tz: y, ..
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatCheck {
    pub expect: Expect,
    /// How late a ping may be, and how long a started job may run, before the probe fails.
    pub grace: Duration,
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The job ran and succeeded (`/ping/TOKEN`, or exit code 0).
    Success,
    /// The job started (`/ping/TOKEN/start`).
    Start,
    /// The job failed (`/ping/TOKEN/fail`, or a non-zero exit code).
    Fail { exit: Option<u8> },
}

impl Signal {
    /// `success`, `start`, `fail`, or `exit N`, as stored and shown.
    pub fn name(&self) -> String {
        match self {
            Signal::Success => "success".into(),
            Signal::Start => "start".into(),
            Signal::Fail { exit: None } => "fail".into(),
            Signal::Fail { exit: Some(n) } => format!("exit {n}"),
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "success" => Some(Signal::Success),
            "start" => Some(Signal::Start),
            "fail" => Some(Signal::Fail { exit: None }),
            _ => s
                .strip_prefix("exit ")
                .and_then(|n| n.parse().ok())
                .map(|n| Signal::Fail { exit: Some(n) }),
        }
    }
}

/// A heartbeat's pings as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct PingState {
    /// When tocsin began expecting pings (the first load with this heartbeat): the
    /// deadline of a heartbeat never pinged counts from here.
    pub since: SystemTime,
    /// The last success.
    pub last_ok: Option<SystemTime>,
    /// The latest ping of any kind, with its body.
    pub last: Option<(SystemTime, Signal, Option<String>)>,
    /// A start not yet followed by a success or failure.
    pub started: Option<SystemTime>,
}

/// Whether the heartbeat is healthy at `now`, and why not.
pub fn evaluate(c: &HeartbeatCheck, s: &PingState, now: SystemTime) -> Result<(), Reason> {
    if let Some((_, Signal::Fail { exit }, body)) = &s.last {
        return Err(Reason::HeartbeatFailed {
            exit: *exit,
            output: body.as_deref().map(|b| super::excerpt(b.as_bytes(), 200)),
        });
    }
    if let Some(started) = s.started {
        if now > started + c.grace {
            return Err(Reason::HeartbeatRunning {
                started: unix(started),
                grace_secs: c.grace.as_secs(),
            });
        }
    }
    if let Some(due) = overdue(c, s, now) {
        return Err(Reason::HeartbeatLate {
            last: s.last_ok.map(unix),
            due: unix(due),
        });
    }
    Ok(())
}

/// The next time by which a ping is due (grace included), as `tocsin heartbeat list`
/// shows it; `None` for a schedule with no next run.
pub fn due(c: &HeartbeatCheck, s: &PingState, now: SystemTime) -> Option<SystemTime> {
    match &c.expect {
        Expect::Every(period) => Some(s.last_ok.unwrap_or(s.since) + *period + c.grace),
        Expect::Cron { .. } => {
            // The run this ping answers: the last one at or before now that is not yet
            // answered, else the next one.
            let last_run = previous_run(c, now).filter(|r| *r > s.last_ok.unwrap_or(s.since));
            let run = match last_run {
                Some(r) => Some(r),
                None => next_run(c, now),
            };
            run.map(|r| r + c.grace)
        }
    }
}

/// The deadline that has passed, if one has.
fn overdue(c: &HeartbeatCheck, s: &PingState, now: SystemTime) -> Option<SystemTime> {
    match &c.expect {
        Expect::Every(_) => due(c, s, now).filter(|d| now > *d),
        Expect::Cron { .. } => {
            let answered = s.last_ok.unwrap_or(s.since);
            // Runs scheduled before tocsin began expecting pings do not count.
            let run = previous_run(c, now)?;
            (run > answered && now > run + c.grace).then_some(run + c.grace)
        }
    }
}

/// The last scheduled run at or before `now`.
fn previous_run(c: &HeartbeatCheck, now: SystemTime) -> Option<SystemTime> {
    scheduled(c, now, false)
}

/// The first scheduled run after `now`.
fn next_run(c: &HeartbeatCheck, now: SystemTime) -> Option<SystemTime> {
    scheduled(c, now, true)
}

fn scheduled(c: &HeartbeatCheck, now: SystemTime, forward: bool) -> Option<SystemTime> {
    let Expect::Cron { cron, tz, .. } = &c.expect else {
        return None;
    };
    let local = DateTime::<Utc>::from(now).with_timezone(tz);
    let found = if forward {
        cron.find_next_occurrence(&local, false)
    } else {
        cron.find_previous_occurrence(&local, true)
    };
    found.ok().map(|t| SystemTime::from(t.with_timezone(&Utc)))
}

/// Unix seconds (0 before 1970), as reasons and metrics keep times.
pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    /// 2026-11-29T00:00:00Z.
    fn midnight() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400)
    }

    fn hourly() -> HeartbeatCheck {
        HeartbeatCheck {
            expect: Expect::Every(HOUR),
            grace: 10 * MIN,
        }
    }

    fn state(since: SystemTime) -> PingState {
        PingState {
            since,
            last_ok: None,
            last: None,
            started: None,
        }
    }

    fn why(c: &HeartbeatCheck, s: &PingState, now: SystemTime) -> String {
        evaluate(c, s, now)
            .err()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn a_period_counts_from_the_last_success_or_from_the_start() {
        let t0 = midnight();
        let mut s = state(t0);
        assert_eq!(why(&hourly(), &s, t0 + 70 * MIN), "ok");
        assert_eq!(
            why(&hourly(), &s, t0 + 71 * MIN),
            "no ping yet (due by 2026-11-29T01:10:00Z)"
        );
        s.last_ok = Some(t0 + 30 * MIN);
        s.last = Some((t0 + 30 * MIN, Signal::Success, None));
        assert_eq!(why(&hourly(), &s, t0 + 100 * MIN), "ok");
        assert_eq!(
            why(&hourly(), &s, t0 + 101 * MIN),
            "no ping since 2026-11-29T00:30:00Z (due by 2026-11-29T01:40:00Z)"
        );
        assert_eq!(due(&hourly(), &s, t0), Some(t0 + 100 * MIN));
    }

    #[test]
    fn a_reported_failure_fails_until_the_next_success() {
        let t0 = midnight();
        let mut s = state(t0);
        s.last = Some((
            t0,
            Signal::Fail { exit: Some(3) },
            Some("disk full\n".into()),
        ));
        assert_eq!(
            why(&hourly(), &s, t0 + MIN),
            "job reported failure: exit 3 (output: \"disk full\")"
        );
        s.last = Some((t0, Signal::Fail { exit: None }, None));
        assert_eq!(why(&hourly(), &s, t0 + MIN), "job reported failure");
        s.last = Some((t0 + 2 * MIN, Signal::Success, None));
        s.last_ok = Some(t0 + 2 * MIN);
        assert_eq!(why(&hourly(), &s, t0 + 3 * MIN), "ok");
    }

    #[test]
    fn a_started_job_must_finish_within_the_grace() {
        let t0 = midnight();
        let mut s = state(t0);
        s.started = Some(t0 + 5 * MIN);
        s.last = Some((t0 + 5 * MIN, Signal::Start, None));
        assert_eq!(why(&hourly(), &s, t0 + 15 * MIN), "ok");
        assert_eq!(
            why(&hourly(), &s, t0 + 16 * MIN),
            "job started at 2026-11-29T00:05:00Z and has not finished within its grace of 10m"
        );
    }

    /// A nightly job at 03:00 Berlin time (02:00 UTC in winter), 30 minutes of grace.
    #[test]
    fn a_schedule_expects_a_ping_after_each_run_in_its_time_zone() {
        let c = HeartbeatCheck {
            expect: Expect::Cron {
                cron: Arc::new(croner::Cron::from_str("0 3 * * *").unwrap()),
                source: "0 3 * * *".into(),
                tz: chrono_tz::Europe::Berlin,
            },
            grace: 30 * MIN,
        };
        let t0 = midnight();
        let mut s = state(t0 - 24 * HOUR);
        // Before today's run is due: yesterday's 03:00 run came before tocsin expected
        // pings, so it does not count.
        assert_eq!(why(&c, &s, t0 + 2 * HOUR + 30 * MIN), "ok");
        assert_eq!(
            why(&c, &s, t0 + 2 * HOUR + 31 * MIN),
            "no ping yet (due by 2026-11-29T02:30:00Z)"
        );
        s.last_ok = Some(t0 + 2 * HOUR + 5 * MIN);
        s.last = Some((t0 + 2 * HOUR + 5 * MIN, Signal::Success, None));
        assert_eq!(why(&c, &s, t0 + 20 * HOUR), "ok");
        assert_eq!(
            due(&c, &s, t0 + 20 * HOUR),
            Some(t0 + 26 * HOUR + 30 * MIN),
            "tomorrow 03:00 Berlin plus the grace"
        );
        assert_eq!(
            why(&c, &s, t0 + 26 * HOUR + 31 * MIN),
            "no ping since 2026-11-29T02:05:00Z (due by 2026-11-30T02:30:00Z)"
        );
    }

    #[test]
    fn signals_round_trip_through_their_names() {
        for s in [
            Signal::Success,
            Signal::Start,
            Signal::Fail { exit: None },
            Signal::Fail { exit: Some(3) },
        ] {
            assert_eq!(Signal::parse(&s.name()), Some(s));
        }
        assert_eq!(Signal::parse("exit 300"), None);
    }
}
