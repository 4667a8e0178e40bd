//! Sends campaign messages: at most `mail.connections` in flight (one worker per
//! connection, each with its own SMTP session; lettre's pool size alone would not bound
//! concurrency), at most `mail.max_per_second` started per
//! second, each within `mail.timeout`. A 4xx or network failure is retried with backoff,
//! a 5xx recorded as failed with the server's reply. Results are committed as they come,
//! in small transactions, and no more than [`UNRECORDED`] messages beyond the workers'
//! are ever sent without their result written: a crash, even while the disk is full and
//! nothing can be written, re-sends at most `mail.connections + UNRECORDED` messages,
//! each with the same Message-ID as before.
//! Nothing is started while the canary guard holds.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Composer;
use crate::clock::Clock;
use crate::config::{Config, LiveConfig};
use crate::engine::Handle;
use crate::metrics::Metrics;
use crate::notify::dispatch::Backoff;
use crate::notify::mail::{MailError, Mailer, Session};
use crate::store::{CampaignInfo, CampaignKind, RecipientJob, SendResult, SharedStore};

const BATCH: usize = 512;
/// Results that may wait to be written (beyond one per worker) before sending pauses.
pub const UNRECORDED: usize = 64;
const IDLE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Sender {
    pub store: SharedStore,
    pub mailer: Arc<Mailer>,
    pub composer: Arc<Composer>,
    pub config: LiveConfig,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Woken when a campaign is created.
    pub ready: Arc<Notify>,
    /// The engine: while its canary guard holds, nothing is sent.
    pub engine: Handle,
    /// In a cluster: nothing is sent unless this instance's lease holds.
    pub leadership: Option<Arc<crate::lease::Leadership>>,
}

impl Sender {
    /// Sends until `cancel`; messages in flight are finished and recorded first.
    pub async fn run(self, cancel: CancellationToken) {
        let config = self.config.get();
        // One worker per connection: the workers bound the messages in flight, each
        // keeps its own SMTP session open between messages.
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(config.mail.connections);
        let jobs_rx = Arc::new(tokio::sync::Mutex::new(jobs_rx));
        let rate = NonZeroU32::new(config.mail.max_per_second).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_results(
            rx,
            self.store.clone(),
            self.metrics.clone(),
            in_flight.clone(),
        ));
        let workers: Vec<_> = (0..config.mail.connections)
            .map(|_| {
                tokio::spawn(work(
                    jobs_rx.clone(),
                    tx.clone(),
                    self.mailer.clone(),
                    self.composer.clone(),
                    self.clock.clone(),
                    self.metrics.clone(),
                    self.leadership.clone(),
                ))
            })
            .collect();
        let mut after = 0i64;
        let mut last_pause_log = None::<Instant>;
        'outer: while !cancel.is_cancelled() {
            if self.engine.snapshot().canary_down {
                if last_pause_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        "campaigns paused: every canary fails (the monitor's own network is down)"
                    );
                    last_pause_log = Some(Instant::now());
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(IDLE) => continue,
                }
            }
            let now = self.clock.now();
            // Read under the store lock, and leave out what is in flight under it too: the
            // writer records a result and forgets its id in one critical section, so a row
            // is never seen pending after its send was recorded (no double send).
            let fetched = {
                let store = self.store.lock();
                store.due_recipients(now, after, BATCH).map(|jobs| {
                    let last = jobs.last().map(|j| j.id);
                    let flying = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    let jobs: Vec<_> = jobs
                        .into_iter()
                        .filter(|j| !flying.contains(&j.id))
                        .collect();
                    (last, jobs)
                })
            };
            let (last, jobs) = match fetched {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "campaigns: cannot read the store");
                    (None, Vec::new())
                }
            };
            if let Some(last) = last {
                after = last;
            }
            if jobs.is_empty() && last.is_some() {
                // Everything due is in flight: wait for results rather than spin.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                continue;
            }
            if jobs.is_empty() {
                if after != 0 {
                    // From the start again: retries that came due behind the cursor.
                    after = 0;
                    continue;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.ready.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
                continue;
            }
            let config = self.config.get();
            let mut infos: HashMap<i64, Option<CampaignInfo>> = HashMap::new();
            for job in jobs {
                if self.engine.snapshot().canary_down
                    || self.leadership.as_ref().is_some_and(|l| !l.holds())
                {
                    continue 'outer;
                }
                let info = infos
                    .entry(job.campaign)
                    .or_insert_with(|| self.store.lock().campaign_info(job.campaign).ok().flatten())
                    .clone();
                // While results cannot be written (a full disk), stop sending: what a crash
                // would send again stays bounded.
                let mut waited = false;
                while in_flight.lock().unwrap_or_else(|e| e.into_inner()).len()
                    >= config.mail.connections + UNRECORDED
                {
                    if !waited {
                        tracing::warn!(
                            "campaigns paused: sends cannot be recorded yet (is the disk of data_dir full?)"
                        );
                        waited = true;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break 'outer,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    _ = limiter.until_ready() => {}
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.id);
                let sent = tokio::select! {
                    _ = cancel.cancelled() => Err(()),
                    r = jobs_tx.send((job, info, config.clone())) => r.map_err(|_| ()),
                };
                if sent.is_err() {
                    break 'outer;
                }
            }
        }
        // The workers finish what they hold, then the writer records it.
        drop(jobs_tx);
        for w in workers {
            let _ = w.await;
        }
        drop(tx);
        let _ = writer.await;
    }
}

type Job = (RecipientJob, Option<CampaignInfo>, Arc<Config>);

/// One worker: takes jobs until the queue closes, sending on its own session.
async fn work(
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    results: mpsc::UnboundedSender<SendResult>,
    mailer: Arc<Mailer>,
    composer: Arc<Composer>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    leadership: Option<Arc<crate::lease::Leadership>>,
) {
    let mut session: Session = None;
    loop {
        let next = jobs.lock().await.recv().await;
        let Some((job, info, config)) = next else {
            break;
        };
        let kind = info.as_ref().map(|i| match i.kind {
            CampaignKind::Outage => "campaign_outage",
            CampaignKind::Update => "campaign_update",
            CampaignKind::Recovery => "campaign_recovery",
            CampaignKind::Maintenance => "campaign_maintenance",
            CampaignKind::MaintenanceDone => "campaign_maintenance_done",
        });
        let result = match info
            .ok_or_else(|| "its campaign is gone from the store".to_string())
            .and_then(|i| composer.compose(&config, &i, &job))
        {
            Err(e) => {
                tracing::error!(to = %job.email, campaign = job.campaign, error = %e, "campaign mail cannot be rendered; recorded as failed");
                SendResult::Failed {
                    id: job.id,
                    error: format!("cannot render the message: {e}"),
                    at: clock.now(),
                }
            }
            // A leader paused past its lease sends nothing it took before the pause:
            // the row stays pending for the instance that leads now (this result cannot
            // be recorded: the store refuses a lapsed leader's writes).
            Ok(_) if leadership.as_ref().is_some_and(|l| !l.holds()) => SendResult::Retry {
                id: job.id,
                error: "not sent: this instance's lease lapsed".into(),
                at: clock.now(),
            },
            Ok(msg) => {
                let t = Instant::now();
                let sent = mailer.send_on(&mut session, &msg).await;
                metrics.campaign_send(t.elapsed());
                let at = clock.now();
                if let Some(kind) = kind {
                    match &sent {
                        Ok(()) => metrics.mail_sent(kind),
                        Err(_) => metrics.mail_failed(kind),
                    }
                }
                match sent {
                    Ok(()) => SendResult::Sent { id: job.id, at },
                    Err(MailError::Permanent(e)) => {
                        tracing::warn!(to = %job.email, error = %e, "campaign mail refused");
                        SendResult::Failed {
                            id: job.id,
                            error: e,
                            at,
                        }
                    }
                    Err(MailError::Transient(e)) | Err(MailError::Config(e)) => {
                        tracing::debug!(to = %job.email, error = %e, attempts = job.attempts + 1, "campaign mail deferred");
                        SendResult::Retry {
                            id: job.id,
                            error: e,
                            at: at + Backoff::MAIL.after(job.attempts),
                        }
                    }
                }
            }
        };
        if results.send(result).is_err() {
            break;
        }
    }
    if let Some(mut c) = session {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
    }
}

/// Commits results as they arrive: whatever has queued up goes in one transaction.
async fn write_results(
    mut rx: mpsc::UnboundedReceiver<SendResult>,
    store: SharedStore,
    metrics: Arc<Metrics>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
) {
    let mut last_counts = Instant::now() - Duration::from_secs(10);
    let (mut deferred, mut last_warning) = (0usize, Instant::now() - Duration::from_secs(10));
    // The gauges count every recipient row (a tenth of a second at a million): once a
    // second while results come, and once more a second after the last.
    let mut stale = false;
    loop {
        let first = if stale {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => {
                    if let Ok(c) = store.lock().recipient_counts() {
                        metrics.campaign_recipients(&c);
                    }
                    (stale, last_counts) = (false, Instant::now());
                    continue;
                }
            }
        } else {
            match rx.recv().await {
                Some(r) => r,
                None => break,
            }
        };
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
            if batch.len() >= 1000 {
                break;
            }
        }
        let retries = batch
            .iter()
            .filter(|r| matches!(r, SendResult::Retry { .. }))
            .count();
        loop {
            let recorded = {
                let mut st = store.lock();
                let r = st.record_sends(&batch);
                if r.is_ok() {
                    let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    for r in &batch {
                        let (SendResult::Sent { id, .. }
                        | SendResult::Retry { id, .. }
                        | SendResult::Failed { id, .. }) = r;
                        f.remove(id);
                    }
                }
                r
            };
            match recorded {
                Ok(()) => break,
                Err(e) => {
                    // Keep the results: recording them later is better than re-sending.
                    tracing::error!(error = %e, "campaigns: cannot record sends; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        deferred += retries;
        if deferred > 0 && last_warning.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                deferred,
                "campaign mails deferred by the mail server or network; each is retried with backoff"
            );
            deferred = 0;
            last_warning = Instant::now();
        }
        stale = true;
        if last_counts.elapsed() >= Duration::from_secs(1) {
            if let Ok(c) = store.lock().recipient_counts() {
                metrics.campaign_recipients(&c);
            }
            (stale, last_counts) = (false, Instant::now());
        }
    }
    if let Ok(c) = store.lock().recipient_counts() {
        metrics.campaign_recipients(&c);
    }
}
