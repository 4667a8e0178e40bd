//! Wall-clock time, injected. Schedules run on tokio's monotonic clock (pausable in
//! tests); what is persisted or compared with certificates uses this clock.

use std::time::SystemTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The wall clock as it was at start, carried forward by the monotonic clock: a step of
/// the system clock (a bad NTP server, an operator's `date -s`, a VM restored from a
/// snapshot) moves neither an incident's start nor its escalation nor the customer
/// threshold; a four-hour jump forward would otherwise tell every customer of a
/// four-hour outage. Slewing (NTP's gradual correction) is followed, as the monotonic
/// clock follows it. A difference from the system clock of more than a minute is logged
/// (once an hour while it lasts); tocsin takes the system's time again at its next start.
#[derive(Debug)]
pub struct SteadyClock {
    start: SystemTime,
    base: std::time::Instant,
    warned: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for SteadyClock {
    fn default() -> Self {
        SteadyClock::new()
    }
}

impl SteadyClock {
    pub fn new() -> SteadyClock {
        SteadyClock {
            start: SystemTime::now(),
            base: std::time::Instant::now(),
            warned: std::sync::Mutex::new(None),
        }
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> SystemTime {
        let steady = self.start + self.base.elapsed();
        let system = SystemTime::now();
        let off = match system.duration_since(steady) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        };
        if off.abs() > 60.0 {
            let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if w.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600)) {
                *w = Some(std::time::Instant::now());
                tracing::warn!(
                    offset_seconds = off.round(),
                    "the system clock jumped; tocsin keeps its own steady time until it restarts"
                );
            }
        }
        steady
    }
}

/// A wall clock that moves only when told: a test jumps hours in an instant while tokio's
/// own (monotonic) time runs as usual, so probes, SMTP and HTTP stay real.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<SystemTime>);

impl ManualClock {
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock(std::sync::Mutex::new(start))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += d;
    }

    /// Sets the clock to `t` (backwards too: a wall clock can jump back).
    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A wall clock that follows tokio's clock from `start`: on a runtime with paused time
/// (a drill) hours pass in an instant, and everything timed by tokio (probe schedules,
/// the engine's tick, the followers' waits) agrees with what this clock says.
#[derive(Debug)]
pub struct TokioClock {
    start: SystemTime,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `start` now; must be made inside a runtime.
    pub fn new(start: SystemTime) -> TokioClock {
        TokioClock {
            start,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.base.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = TokioClock::new(start);
        assert_eq!(clock.now(), start);
        tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(5 * 3600));
    }
}
