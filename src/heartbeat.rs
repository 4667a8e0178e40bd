//! Heartbeats at run time: a token for each heartbeat probe, kept in the store in step
//! with the config; pings received at `/ping/TOKEN` (rate-limited per heartbeat) and
//! recorded; and each heartbeat probe's outcome decided from them when the scheduler
//! runs it ([`HeartbeatRunner`]). The rules themselves are `probe::heartbeat`'s.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;

use crate::clock::Clock;
use crate::config::{Config, Probe};
use crate::probe::heartbeat::{self, HeartbeatCheck, Signal};
use crate::probe::{Check, Details, Outcome};
use crate::scheduler::Runner;
use crate::store::{HeartbeatRecord, SharedStore, StoreError};

/// The part of a ping's body that is kept (and shown in the timeline); the rest of a
/// longer body is dropped.
pub const KEPT_BODY: usize = 10 * 1024;
/// Pings a heartbeat may receive in a burst, and per minute after it: a job that runs
/// every minute with start and end pings uses two.
const BURST: u32 = 10;
const PER_MINUTE: u32 = 30;

/// Why a ping was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("no heartbeat has this token")]
    Unknown,
    #[error("too many pings for this heartbeat: at most {BURST} at once and {PER_MINUTE} a minute")]
    RateLimited,
    #[error("cannot record the ping: {0}")]
    Store(#[from] StoreError),
}

pub struct Heartbeats {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    /// token → (service, probe), for the heartbeats of the running config.
    tokens: RwLock<HashMap<String, (String, String)>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// One heartbeat, as `tocsin heartbeat list` and `/api/v1/heartbeats` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeartbeatRow {
    pub service: String,
    pub probe: String,
    /// Where the job pings: `{public_url}/ping/TOKEN`.
    pub url: String,
    /// `up`, `late`, `failed` or `running` (started, within its grace), or `new` before
    /// the first ping.
    pub status: &'static str,
    #[serde(serialize_with = "crate::text::time::serialize_rfc3339_opt")]
    pub last_ping: Option<SystemTime>,
    pub last_signal: Option<String>,
    #[serde(serialize_with = "crate::text::time::serialize_rfc3339_opt")]
    pub due: Option<SystemTime>,
    pub reason: Option<String>,
}

impl Heartbeats {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Arc<Heartbeats> {
        let quota = Quota::per_minute(NonZeroU32::new(PER_MINUTE).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN));
        Arc::new(Heartbeats {
            store,
            clock,
            tokens: RwLock::new(HashMap::new()),
            limiter: RateLimiter::keyed(quota),
        })
    }

    /// Keeps a token for each heartbeat probe of `config` (a new one gets a fresh random
    /// token and starts its wait now) and forgets the rest. Called at start and on reload.
    pub fn sync(&self, config: &Config) -> Result<(), StoreError> {
        let wanted: Vec<(String, String)> = heartbeat_probes(config)
            .map(|(p, _)| (p.service.clone(), p.name.clone()))
            .collect();
        let records =
            self.store
                .lock()
                .heartbeat_sync(&wanted, &mut new_token, self.clock.now())?;
        let map = records
            .into_iter()
            .map(|r| (r.token, (r.service, r.probe)))
            .collect();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = map;
        self.limiter.retain_recent();
        Ok(())
    }

    /// Records a ping. The body is cut to [`KEPT_BODY`] bytes.
    pub fn ping(&self, token: &str, signal: Signal, body: &[u8]) -> Result<(), PingError> {
        let known = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(token);
        if !known {
            return Err(PingError::Unknown);
        }
        if self.limiter.check_key(&token.to_string()).is_err() {
            return Err(PingError::RateLimited);
        }
        let kept = kept_body(body);
        let recorded =
            self.store
                .lock()
                .heartbeat_ping(token, signal, kept.as_deref(), self.clock.now())?;
        match recorded {
            Some(_) => Ok(()),
            None => Err(PingError::Unknown),
        }
    }

    /// Every heartbeat of `config` with its ping URL and state at `now`.
    pub fn list(&self, config: &Config, now: SystemTime) -> Result<Vec<HeartbeatRow>, StoreError> {
        let records = self.store.lock().heartbeats()?;
        let mut rows = Vec::new();
        for (p, c) in heartbeat_probes(config) {
            let Some(r) = records
                .iter()
                .find(|r| r.service == p.service && r.probe == p.name)
            else {
                continue;
            };
            let verdict = heartbeat::evaluate(c, &r.state, now);
            let status = match (&verdict, &r.state.last) {
                (
                    Err(
                        crate::probe::Reason::HeartbeatLate { .. }
                        | crate::probe::Reason::HeartbeatRunning { .. },
                    ),
                    _,
                ) => "late",
                (Err(_), _) => "failed",
                (Ok(()), None) => "new",
                (Ok(()), Some(_)) if r.state.started.is_some() => "running",
                (Ok(()), Some(_)) => "up",
            };
            rows.push(HeartbeatRow {
                service: r.service.clone(),
                probe: r.probe.clone(),
                url: format!("{}/ping/{}", config.public_url, r.token),
                status,
                last_ping: r.state.last.as_ref().map(|(t, _, _)| *t),
                last_signal: r.state.last.as_ref().map(|(_, s, _)| s.name()),
                due: heartbeat::due(c, &r.state, now),
                reason: verdict.err().map(|e| e.to_string()),
            });
        }
        Ok(rows)
    }

    /// The outcome of heartbeat probe `p` at `now`, from its pings.
    pub fn outcome(&self, p: &Probe, c: &HeartbeatCheck, now: SystemTime) -> Outcome {
        let record = self.store.lock().heartbeat(&p.service, &p.name);
        let result = match record {
            Ok(Some(HeartbeatRecord { state, .. })) => {
                let last = state.last.as_ref().map(|(t, _, _)| *t);
                (heartbeat::evaluate(c, &state, now), last)
            }
            // Synced at every load: only a store failure leaves a heartbeat without a
            // record, and that is the monitor's trouble, reported as such.
            Ok(None) => (
                Err(crate::probe::Reason::Text {
                    text: "this heartbeat has no token yet (tocsin could not record it at load)"
                        .into(),
                }),
                None,
            ),
            Err(e) => (
                Err(crate::probe::Reason::Text {
                    text: format!("cannot read this heartbeat's pings: {e}"),
                }),
                None,
            ),
        };
        let (verdict, last_ping) = result;
        Outcome {
            at: now,
            duration: Duration::ZERO,
            success: verdict.is_ok(),
            reason: verdict.err(),
            phases: Vec::new(),
            details: Details {
                heartbeat_last_ping: Some(last_ping.map(heartbeat::unix).unwrap_or(0)),
                ..Default::default()
            },
        }
    }

    /// `inner` for every probe but heartbeats, which are decided from their pings.
    pub fn runner<R: Runner>(self: &Arc<Self>, inner: R) -> HeartbeatRunner<R> {
        HeartbeatRunner {
            book: self.clone(),
            inner,
        }
    }
}

/// The scheduler's runner with heartbeats decided from their pings.
pub struct HeartbeatRunner<R> {
    book: Arc<Heartbeats>,
    inner: R,
}

impl<R: Runner> Runner for HeartbeatRunner<R> {
    fn run(&self, p: &Probe, now: SystemTime) -> BoxFuture<'static, Outcome> {
        match &p.check {
            Check::Heartbeat(c) => {
                let o = self.book.outcome(p, c, now);
                Box::pin(async move { o })
            }
            _ => self.inner.run(p, now),
        }
    }

    fn aligned(&self) -> bool {
        self.inner.aligned()
    }
}

fn heartbeat_probes(config: &Config) -> impl Iterator<Item = (&Probe, &HeartbeatCheck)> {
    config
        .services
        .iter()
        .flat_map(|s| s.probes.iter())
        .filter_map(|p| match &p.check {
            Check::Heartbeat(c) => Some((p.as_ref(), c)),
            _ => None,
        })
}

/// 128 random bits, URL-safe: the token is the only thing that admits a ping.
fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn kept_body(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(KEPT_BODY)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > KEPT_BODY {
        text.push_str("\n[cut: the body had ");
        text.push_str(&body.len().to_string());
        text.push_str(" bytes]");
    }
    Some(text)
}
