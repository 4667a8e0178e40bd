//! The dispatcher: the one loop between the outbox and the notifiers.
//!
//! 1. Each decision the engine wrote is fanned out: every [`Notifier`] names the
//!    deliveries it needs for it (staff mail, a campaign to plan, one per webhook
//!    receiver), and they are written in the transaction that closes the decision.
//! 2. Each due delivery is handed to its notifier, which answers done, retry (a
//!    transient failure: tried again after [`Backoff`]) or failed (permanent: closed and
//!    noted in the incident's timeline).
//!
//! Each channel has a worker of its own, and within a channel each target is a lane of
//! its own: a hanging mail server holds up staff mail only, a slow webhook receiver only
//! its own deliveries, and new decisions are fanned out meanwhile. A crash between
//! sending and marking can repeat one message; nothing is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::Snapshot;
use crate::metrics::Metrics;
use crate::store::{Channel, Delivery, NewDelivery, OutboxItem, SharedStore, StoreError};

const BATCH: usize = 50;
const IDLE: Duration = Duration::from_secs(1);

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A transient failure: tried again later.
    Retry(String),
    /// A transient failure whose receiver said when to come back (a `429` with
    /// `Retry-After`): tried again after that wait instead of the backoff.
    RetryAfter(String, Duration),
    /// A permanent failure: never tried again.
    Failed(String),
}

/// The one retry policy: the wait doubles from `first` after each transient failure, up
/// to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Mail servers: 30 s, 1 min, 2 min, ... up to 15 min.
    pub const MAIL: Backoff = Backoff {
        first: Duration::from_secs(30),
        cap: Duration::from_secs(900),
    };

    /// Webhook receivers (chat and paging tools) and the hotline's local program
    /// recover quickly: 5 s, doubling to 150 s.
    pub const QUICK: Backoff = Backoff {
        first: Duration::from_secs(5),
        cap: Duration::from_secs(150),
    };

    /// The autoresponder's mail server after a transient failure: as mail, but never
    /// more than 5 min apart (a login that failed once usually works again soon).
    pub const MAILBOX: Backoff = Backoff {
        first: Duration::from_secs(30),
        cap: Duration::from_secs(300),
    };

    /// The wait after `attempts` failed attempts (the first retry waits `first`).
    pub fn after(&self, attempts: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << attempts.min(16))
            .min(self.cap)
    }
}

/// One kind of work that carries decisions out.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The deliveries this notifier owns.
    fn channel(&self) -> Channel;

    /// Whether `decision` is this notifier's business (one delivery, without a target).
    fn wants(&self, decision: &OutboxItem) -> bool {
        let _ = decision;
        false
    }

    /// The targets `decision` needs a delivery to (`""` for a notifier without targets;
    /// nothing when the decision is none of its business). By default one delivery when
    /// the notifier [`wants`](Notifier::wants) it.
    fn targets(&self, decision: &OutboxItem) -> Vec<String> {
        if self.wants(decision) {
            vec![String::new()]
        } else {
            Vec::new()
        }
    }

    fn backoff(&self) -> Backoff;

    /// How long after the fan-out `decision`'s delivery is first tried (by default at
    /// once).
    fn delay(&self, decision: &OutboxItem) -> Duration {
        let _ = decision;
        Duration::ZERO
    }

    /// Carries out one delivery.
    async fn deliver(&self, delivery: &Delivery) -> Outcome;
}

#[derive(Clone)]
pub struct Dispatcher {
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The engine's snapshot: a new decision wakes the dispatcher.
    pub engine: watch::Receiver<Arc<Snapshot>>,
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// In a cluster: nothing is delivered unless this instance's lease holds.
    pub leadership: Option<Arc<crate::lease::Leadership>>,
}

impl Dispatcher {
    /// Runs until `cancel`. One loop fans out new decisions (and keeps the gauges); each
    /// notifier's channel has a worker of its own, so a mail server that hangs holds up
    /// staff mail only, never a webhook receiver or the fan-out of the next decision.
    /// Deliveries in hand are finished first. A worker that panics takes the dispatcher
    /// down with it, and the App's supervisor starts it again.
    pub async fn run(self, cancel: CancellationToken) {
        let mut channels: Vec<Channel> = self.notifiers.iter().map(|n| n.channel()).collect();
        channels.sort();
        channels.dedup();
        let nudges: Vec<(Channel, Arc<Notify>)> = channels
            .into_iter()
            .map(|c| (c, Arc::new(Notify::new())))
            .collect();
        let mut workers = tokio::task::JoinSet::new();
        for (channel, nudge) in &nudges {
            let worker = self.clone();
            let (channel, nudge, cancel) = (*channel, nudge.clone(), cancel.clone());
            workers.spawn(async move { worker.delivering(channel, &nudge, cancel).await });
        }
        let fanning = self.clone();
        let nudges: Vec<Arc<Notify>> = nudges.into_iter().map(|(_, n)| n).collect();
        workers.spawn(async move { fanning.fanning(&nudges, cancel).await });
        while let Some(done) = workers.join_next().await {
            if let Err(e) = done {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }

    /// Fans out each new decision, then wakes the channel workers.
    async fn fanning(mut self, nudges: &[Arc<Notify>], cancel: CancellationToken) {
        loop {
            if let Err(e) = self.fan_out_all() {
                tracing::error!(error = %e, "outbox: cannot fan out decisions");
            }
            for n in nudges {
                n.notify_one();
            }
            self.export();
            if !super::pause(&cancel, &mut self.engine, None, IDLE).await {
                return;
            }
        }
    }

    /// Carries out `channel`'s deliveries as they fall due.
    async fn delivering(mut self, channel: Channel, nudge: &Notify, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.deliver_due(Some(channel)).await {
                tracing::error!(channel = channel.as_str(), error = %e, "outbox: cannot read the store");
            }
            if !super::pause(&cancel, &mut self.engine, Some(nudge), IDLE).await {
                return;
            }
        }
    }

    /// Fans out every decision and carries out every delivery due now, once.
    pub async fn drain(&self) -> Result<(), StoreError> {
        let fanned = self.fan_out_all();
        let delivered = self.deliver_due(None).await;
        self.export();
        fanned.and(delivered)
    }

    fn fan_out_all(&self) -> Result<(), StoreError> {
        loop {
            let decisions = self.store.lock().due(BATCH)?;
            if decisions.is_empty() {
                return Ok(());
            }
            for d in decisions {
                self.fan_out(&d)?;
            }
        }
    }

    /// Carries out the due deliveries of `channel` (every channel when None), each
    /// target's in order and the targets side by side.
    async fn deliver_due(&self, channel: Option<Channel>) -> Result<(), StoreError> {
        loop {
            let due = self
                .store
                .lock()
                .due_deliveries(self.clock.now(), channel, BATCH)?;
            if due.is_empty() {
                return Ok(());
            }
            let mut lanes: BTreeMap<(Channel, String), Vec<Delivery>> = BTreeMap::new();
            for d in due {
                lanes
                    .entry((d.channel, d.target.clone()))
                    .or_default()
                    .push(d);
            }
            let runs = lanes.into_values().map(|lane| async move {
                for d in lane {
                    self.carry_out(d).await?;
                }
                Ok::<(), StoreError>(())
            });
            for r in futures::future::join_all(runs).await {
                r?;
            }
        }
    }

    /// The gauges of what waits.
    fn export(&self) {
        match self.store.lock().pending() {
            Ok(pending) => {
                self.metrics.store_up(true);
                self.metrics
                    .outbox_pending(pending.total() - pending.of(Channel::Webhook));
                self.metrics.webhook_pending(pending.of(Channel::Webhook));
            }
            Err(e) => {
                self.metrics.store_up(false);
                tracing::error!(error = %e, "outbox: cannot count what waits");
            }
        }
    }

    fn fan_out(&self, decision: &OutboxItem) -> Result<(), StoreError> {
        let deliveries: Vec<NewDelivery> = self
            .notifiers
            .iter()
            .flat_map(|n| {
                let after = n.delay(decision);
                n.targets(decision)
                    .into_iter()
                    .map(move |target| NewDelivery {
                        channel: n.channel(),
                        target,
                        after,
                    })
            })
            .collect();
        self.store
            .lock()
            .fan_out(decision.id, &deliveries, self.clock.now())
    }

    async fn carry_out(&self, d: Delivery) -> Result<(), StoreError> {
        let Some(notifier) = self.notifiers.iter().find(|n| n.channel() == d.channel) else {
            let e = format!("no {} notifier runs here", d.channel.as_str());
            return self
                .store
                .lock()
                .delivery_failed(d.id, &e, self.clock.now());
        };
        // A leader that was paused past its lease sends nothing: another leads now, and
        // the delivery waits for it.
        if self.leadership.as_ref().is_some_and(|l| !l.holds()) {
            tracing::warn!(
                delivery = d.id,
                "not delivered: this instance's lease lapsed"
            );
            return Ok(());
        }
        // Each notifier logs its outcome in its own terms; this records it.
        let outcome = notifier.deliver(&d).await;
        let now = self.clock.now();
        tracing::debug!(channel = d.channel.as_str(), target = %d.target, delivery = d.id, ?outcome, "delivery carried out");
        match outcome {
            Outcome::Done => self.store.lock().delivered(d.id, now),
            Outcome::Retry(e) => {
                let wait = notifier.backoff().after(d.attempts);
                self.store.lock().retry_delivery(d.id, &e, now + wait)
            }
            Outcome::RetryAfter(e, wait) => {
                // At least a second: a receiver asking for "0" is not hammered.
                let wait = wait.max(Duration::from_secs(1));
                self.store.lock().retry_delivery(d.id, &e, now + wait)
            }
            Outcome::Failed(e) => self.store.lock().delivery_failed(d.id, &e, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::incident::{Action, Context, StaffMailKind};
    use crate::store::SqlStore;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// Answers from a script, one outcome per call, and records what it was handed.
    struct Scripted {
        channel: Channel,
        targets: Vec<String>,
        answers: Mutex<Vec<Outcome>>,
        seen: Mutex<Vec<(i64, String, u32)>>,
    }

    #[async_trait::async_trait]
    impl Notifier for Scripted {
        fn channel(&self) -> Channel {
            self.channel
        }
        fn targets(&self, decision: &OutboxItem) -> Vec<String> {
            match decision.action {
                Action::MailStaff { .. } => self.targets.clone(),
                _ => Vec::new(),
            }
        }
        fn backoff(&self) -> Backoff {
            Backoff::QUICK
        }
        async fn deliver(&self, d: &Delivery) -> Outcome {
            self.seen.lock().unwrap().push((
                d.decision.as_ref().unwrap().id,
                d.target.clone(),
                d.attempts,
            ));
            self.answers.lock().unwrap().remove(0)
        }
    }

    /// A store in `dir`, the start of time, a manual clock there, and a staff mail that
    /// belongs to no incident.
    fn bench(dir: &std::path::Path) -> (SharedStore, SystemTime, Arc<ManualClock>, Action) {
        let store = SharedStore::new(SqlStore::open_sqlite(&dir.join("t.db")).unwrap());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mail = Action::MailStaff {
            id: None,
            kind: StaffMailKind::MonitorDown,
            level: 0,
            to: vec!["oncall@example.com".into()],
        };
        (store, t0, Arc::new(ManualClock::new(t0)), mail)
    }

    #[tokio::test]
    async fn each_delivery_is_retried_after_the_backoff_and_closed_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, t0, clock, mail) = bench(dir.path());
        store
            .lock()
            .enqueue(&mail, &Context::default(), t0)
            .unwrap();
        let hooks = Arc::new(Scripted {
            channel: Channel::Webhook,
            targets: vec!["https://a.test/".into(), "https://b.test/".into()],
            answers: Mutex::new(vec![
                Outcome::Retry("503".into()),
                Outcome::Failed("410".into()),
                Outcome::Done,
            ]),
            seen: Mutex::default(),
        });
        let (_engine, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let dispatcher = Dispatcher {
            store: store.clone(),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::new()),
            engine: snapshots,
            notifiers: vec![hooks.clone()],
            leadership: None,
        };
        dispatcher.drain().await.unwrap();
        // a.test asked to be retried, b.test refused for good.
        assert_eq!(hooks.seen.lock().unwrap().len(), 2);
        assert_eq!(store.lock().pending().unwrap().of(Channel::Webhook), 1);
        clock.advance(Duration::from_secs(4));
        dispatcher.drain().await.unwrap();
        assert_eq!(hooks.seen.lock().unwrap().len(), 2, "not before 5 s");
        clock.advance(Duration::from_secs(1));
        dispatcher.drain().await.unwrap();
        let seen = hooks.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].1, "https://a.test/");
        assert_eq!(seen[2].2, 1, "the second attempt");
        assert_eq!(store.lock().pending().unwrap().total(), 0);
        clock.advance(Duration::from_secs(3600));
        dispatcher.drain().await.unwrap();
        assert_eq!(hooks.seen.lock().unwrap().len(), 3, "nothing twice");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mail: Vec<u64> = (0..7).map(|n| Backoff::MAIL.after(n).as_secs()).collect();
        assert_eq!(mail, [30, 60, 120, 240, 480, 900, 900]);
        let hooks: Vec<u64> = (0..7).map(|n| Backoff::QUICK.after(n).as_secs()).collect();
        assert_eq!(hooks, [5, 10, 20, 40, 80, 150, 150]);
        assert_eq!(Backoff::MAIL.after(u32::MAX), Duration::from_secs(900));
    }

    /// Stands for a mail server that never answers.
    struct Hanging;

    #[async_trait::async_trait]
    impl Notifier for Hanging {
        fn channel(&self) -> Channel {
            Channel::StaffMail
        }
        fn wants(&self, _: &OutboxItem) -> bool {
            true
        }
        fn backoff(&self) -> Backoff {
            Backoff::MAIL
        }
        async fn deliver(&self, _: &Delivery) -> Outcome {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_that_hangs_holds_up_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (store, t0, clock, mail) = bench(dir.path());
        let hooks = Arc::new(Scripted {
            channel: Channel::Webhook,
            targets: vec!["https://a.test/".into()],
            answers: Mutex::new(vec![Outcome::Done, Outcome::Done]),
            seen: Mutex::default(),
        });
        let (engine, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let dispatcher = Dispatcher {
            store: store.clone(),
            clock,
            metrics: Arc::new(Metrics::new()),
            engine: snapshots,
            notifiers: vec![Arc::new(Hanging), hooks.clone()],
            leadership: None,
        };
        let running = tokio::spawn(dispatcher.run(CancellationToken::new()));
        // Two decisions, the second made while the first's staff mail hangs: both reach
        // the webhook receiver.
        for n in 0..2u64 {
            store
                .lock()
                .enqueue(&mail, &Context::default(), t0 + Duration::from_secs(n))
                .unwrap();
            engine.send_modify(|s| Arc::make_mut(s).decisions += 1);
            for _ in 0..50 {
                if hooks.seen.lock().unwrap().len() > n as usize {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(hooks.seen.lock().unwrap().len(), n as usize + 1);
        }
        let pending = store.lock().pending().unwrap();
        assert_eq!(pending.of(Channel::StaffMail), 2, "the hanging mails wait");
        assert_eq!(pending.of(Channel::Webhook), 0);
        running.abort();
    }
}
