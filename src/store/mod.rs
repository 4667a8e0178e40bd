//! Durable state: each service's machine state, its incidents and their timeline, and the
//! outbox of decided actions, written in one transaction (transactional outbox). A crash
//! re-runs nothing that was marked done and forgets nothing that was decided.
//!
//! Embedded SQLite by default. This room knows the incident types it stores; it sends
//! nothing and decides nothing.

mod autoresponders;
mod campaigns;
mod db;
mod heartbeats;
mod history;
mod maintenance;
mod oncall;
mod outbox;
mod postgres;
mod rows;
mod sqlite;
mod subscribers;
mod votes;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

pub use autoresponders::AutoresponderRecord;
pub use campaigns::{
    Batch, CampaignInfo, CampaignKind, CampaignRecord, Counts, Expanded, Followup, GROUP, Merge,
    NewRecipient, Opened, RecipientJob, SendResult, address_key,
};
pub use heartbeats::HeartbeatRecord;
pub use history::{Hour, Hours, hour_of};
pub use maintenance::Notice;
pub use postgres::{Copied, Leader, PgOptions, SCHEMA_VERSION, Sharing, migrate_to_postgres};
pub use sqlite::SqlStore;
pub use subscribers::Subscription;
pub use votes::{LocationOut, VoteCursor, VoteIn, VoteOut};

use crate::config::Maintenance;
pub use crate::incident::Context;
use crate::incident::{Action, ServiceState, TimelineEvent};
use crate::probe::heartbeat::Signal;

/// Why the store could not do its work, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not an SQLite database; it was left untouched.
    #[error(
        "{path} is not a tocsin database ({detail}); it was not modified: move it aside or point data_dir elsewhere"
    )]
    NotADatabase { path: String, detail: String },
    /// Another process holds the database (most likely another tocsin).
    #[error(
        "{path} is in use by another process (another tocsin with the same data_dir?); stop it first"
    )]
    Locked { path: String },
    /// The schema was written by a newer tocsin.
    #[error(
        "{path} has schema version {found}, newer than this tocsin understands ({known}); upgrade tocsin"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    /// The directory or file could not be created or opened.
    #[error("cannot open {path}: {detail}")]
    Open { path: String, detail: String },
    /// A stored row could not be read back.
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
    /// Any other database error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A query that had to find a row found none.
    #[error("a row the store looked for is missing")]
    NoRows,
    /// PostgreSQL could not be reached or refused a statement.
    #[error("PostgreSQL: {detail}")]
    Postgres { detail: String },
    /// `tocsin store migrate` copies into an empty database only.
    #[error(
        "{target} is not empty: {tables}; migrate into a new, empty database (CREATE DATABASE) so nothing is mixed or overwritten"
    )]
    NotEmpty { target: String, tables: String },
    /// This instance no longer leads the cluster: another took the lease (or its own
    /// lapsed), so what it would write is refused.
    #[error(
        "this instance no longer leads (its lease, token {token}, lapsed or was taken over): it records and sends nothing more"
    )]
    Fenced { token: i64 },
    /// Another running instance has the same `location`.
    #[error(
        "location `{location}` is already in use by another running tocsin ({other}); give each instance its own `location`"
    )]
    LocationTaken { location: String, other: String },
    /// PostgreSQL refused the connection: who, where, and why.
    #[error("cannot connect to PostgreSQL at {target}: {detail}")]
    Connect { target: String, detail: String },
}

/// One decided action, waiting to be fanned out into deliveries (and, once fanned out,
/// the decision each delivery carries out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub service: String,
    /// The incident's store id, when the action belongs to one.
    pub incident: Option<i64>,
    pub action: Action,
    /// What the notifiers need, fixed when the action was decided; None for an action
    /// decided by a tocsin older than schema 9.
    pub context: Option<Context>,
    pub attempts: u32,
    /// When it was decided.
    pub decided: SystemTime,
}

/// Who carries out a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    StaffMail,
    Campaign,
    Webhook,
    /// Chat and paging channels (`slack:ops`, `pagerduty:main`), one lane per channel.
    Chat,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::StaffMail => "staff_mail",
            Channel::Campaign => "campaign",
            Channel::Webhook => "webhook",
            Channel::Chat => "chat",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [
            Channel::StaffMail,
            Channel::Campaign,
            Channel::Webhook,
            Channel::Chat,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One delivery a decision needs: a channel and its target (a webhook receiver's URL;
/// empty for the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: Channel,
    pub target: String,
    /// Not tried before this long after the fan-out (a staff mail waiting for others to
    /// group with).
    pub after: std::time::Duration,
}

/// A delivery due to be carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Stable across retries: webhook receivers see it as `X-Tocsin-Delivery`.
    pub id: i64,
    pub channel: Channel,
    pub target: String,
    pub incident: Option<i64>,
    pub attempts: u32,
    /// The decision it carries out; None only for a webhook delivery queued by a tocsin
    /// older than schema 9, which carries its body instead.
    pub decision: Option<OutboxItem>,
    pub queued: Option<QueuedWebhook>,
}

/// A webhook delivery written, body and all, before deliveries were fanned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWebhook {
    pub event: String,
    pub body: String,
}

/// What waits to be carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Decisions not yet fanned out.
    pub decisions: u64,
    pub deliveries: std::collections::BTreeMap<Channel, u64>,
}

impl Pending {
    /// Pending deliveries of `channel`.
    pub fn of(&self, channel: Channel) -> u64 {
        self.deliveries.get(&channel).copied().unwrap_or(0)
    }

    /// Everything pending: decisions and deliveries.
    pub fn total(&self) -> u64 {
        self.decisions + self.deliveries.values().sum::<u64>()
    }
}

/// An incident as stored, with its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: i64,
    pub service: String,
    #[serde(serialize_with = "serialize_rfc3339")]
    pub started: SystemTime,
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub ended: Option<SystemTime>,
    pub acked_by: Option<String>,
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub eta: Option<SystemTime>,
    pub customer_phase: bool,
    /// What customers were last promised: the ETA, or without one a next-update time.
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub promised_eta: Option<SystemTime>,
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub next_update: Option<SystemTime>,
    pub timeline: Vec<TimelineEntry>,
}

/// An incident as the uptime history sees it: service, start, end (none while open), and
/// whether its customers were told.
pub type Span = (String, SystemTime, Option<SystemTime>, bool);

impl IncidentRecord {
    /// The services attached to this incident now (they depend on its service and fail
    /// with it), each with the line its timeline gives ("api fails too (home: ...)").
    pub fn also_affected(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in &self.timeline {
            if let crate::incident::TimelineEvent::AlsoAffected {
                service, affected, ..
            } = &e.event
            {
                out.retain(|(s, _)| s != service);
                if *affected {
                    out.push((service.clone(), e.event.detail()));
                }
            }
        }
        out
    }

    /// What customers may read of this incident, oldest first: its opening, staff's
    /// updates, each new expected time once (staff's ETA and the promise to customers are
    /// the same news), the services that fail with it, and the recovery. Never staff
    /// bookkeeping (who was paged or acknowledged, that customers were mailed).
    pub fn public_entries(&self) -> Vec<PublicEntry<'_>> {
        use crate::incident::TimelineEvent as E;
        let mut out = Vec::new();
        let mut said: Option<SystemTime> = None;
        for e in &self.timeline {
            let what = match &e.event {
                E::Opened { .. } => Said::Opened,
                E::Update { update, .. } => Said::Update(update),
                E::Eta { .. } | E::CustomerPhase { .. } | E::CustomerUpdate { .. } => {
                    let Some(eta) = e.event.eta().filter(|t| Some(*t) != said) else {
                        continue;
                    };
                    said = Some(eta);
                    Said::Eta(eta)
                }
                E::AlsoAffected {
                    service,
                    affected: true,
                    ..
                } => Said::AlsoAffected(service),
                E::Recorded { name, .. } if name == "opened" => Said::Opened,
                _ => continue,
            };
            out.push(PublicEntry { at: e.at, what });
        }
        if !out.iter().any(|e| matches!(e.what, Said::Opened)) {
            out.insert(
                0,
                PublicEntry {
                    at: self.started,
                    what: Said::Opened,
                },
            );
        }
        if let Some(ended) = self.ended {
            out.push(PublicEntry {
                at: ended,
                what: Said::Recovered,
            });
        }
        out
    }

    /// The latest update staff wrote for customers.
    pub fn latest_update(&self) -> Option<&crate::incident::PublicUpdate> {
        self.timeline.iter().rev().find_map(|e| e.event.update())
    }
}

/// One entry of an incident's public timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicEntry<'a> {
    pub at: SystemTime,
    pub what: Said<'a>,
}

/// What customers were told.
#[derive(Debug, Clone, PartialEq)]
pub enum Said<'a> {
    Opened,
    Update(&'a crate::incident::PublicUpdate),
    /// A new expected recovery time.
    Eta(SystemTime),
    /// Another service (its id) fails with this one.
    AlsoAffected(&'a str),
    Recovered,
}

/// One entry of an incident's timeline: when, and what (typed).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub at: SystemTime,
    pub event: TimelineEvent,
}

impl TimelineEntry {
    /// The entry's name (`opened`, `staff_mail`, ...).
    pub fn kind(&self) -> &str {
        self.event.kind()
    }

    /// The line staff read.
    pub fn detail(&self) -> String {
        self.event.detail()
    }
}

impl Serialize for TimelineEntry {
    /// `{at, kind, detail}`, the shape the timeline always had in JSON.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TimelineEntry", 3)?;
        st.serialize_field("at", &secs(self.at))?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("detail", &self.detail())?;
        st.end()
    }
}

// Every time the API shows is RFC 3339 (README, "HTTP endpoints").
pub(crate) use crate::text::time::{serialize_rfc3339, serialize_rfc3339_opt};

pub(crate) fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn from_secs(s: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.max(0.0))
}

/// The state of every service, for the engine to resume from.
pub type States = std::collections::BTreeMap<String, ServiceState>;

/// Everything tocsin keeps. Each part is a trait of its own, one per concern, so that a
/// reader finds what the campaigns need in one place; a backend implements all of them.
/// The methods are synchronous: a backend does short transactions, and callers hold the
/// store only for the call (through [`SharedStore`]), never across an `.await`.
pub trait Store:
    IncidentStore
    + HistoryStore
    + SubscriberStore
    + CampaignStore
    + MaintenanceStore
    + OutboxStore
    + AutoresponderStore
    + HeartbeatStore
    + OncallStore
    + Send
{
}

impl<T> Store for T where
    T: IncidentStore
        + HistoryStore
        + SubscriberStore
        + CampaignStore
        + MaintenanceStore
        + OutboxStore
        + AutoresponderStore
        + HeartbeatStore
        + OncallStore
        + Send
{
}

/// What probes found, an hour at a time (see [`history`]).
pub trait HistoryStore {
    /// Adds `rows` (service, hour, sums) to what is recorded, and forgets hours older than
    /// [`history::KEPT`].
    fn add_probe_hours(
        &mut self,
        rows: &[(String, i64, Hour)],
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// The hours of `service` recorded from `since` on, by hour (Unix seconds).
    fn probe_hours(
        &self,
        service: &str,
        since: SystemTime,
    ) -> Result<std::collections::BTreeMap<i64, Hour>, StoreError>;

    /// Incidents that overlap `[from, to]`, newest first, with their timelines.
    fn incidents_between(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<IncidentRecord>, StoreError>;
}

/// Self-service subscriptions (see [`subscribers`]).
pub trait SubscriberStore {
    /// Keeps a request for `wants`, to be confirmed with `nonce`; a confirmed subscriber
    /// keeps their subscription meanwhile.
    fn request_subscription(
        &mut self,
        wants: &Subscription,
        nonce: &str,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Applies the request of `email` whose nonce is `nonce` (and takes back earlier
    /// opt-outs): what it subscribed to; None when there is no such request.
    fn confirm_subscription(
        &mut self,
        email: &str,
        nonce: &str,
        now: SystemTime,
    ) -> Result<Option<Subscription>, StoreError>;

    /// The confirmed subscription of `email`.
    fn subscription(&self, email: &str) -> Result<Option<Subscription>, StoreError>;

    /// Changes a confirmed subscription; false when there is none.
    fn change_subscription(&mut self, s: &Subscription) -> Result<bool, StoreError>;

    /// Removes `email`'s subscription, confirmed or not.
    fn remove_subscription(&mut self, email: &str) -> Result<bool, StoreError>;

    /// The confirmed subscribers of `service`, as campaign recipients.
    fn subscribers_of(&self, service: &str) -> Result<Vec<NewRecipient>, StoreError>;

    /// Counts a request under `key` and says how many were made within `within`.
    fn count_request(
        &mut self,
        key: &str,
        within: std::time::Duration,
        now: SystemTime,
    ) -> Result<u64, StoreError>;

    /// `email` wants no more notices about `service`; pending ones are cancelled.
    fn stop_service(
        &mut self,
        email: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
}

/// On-call overrides set through the API (rotations themselves live in probes.yaml).
pub trait OncallStore {
    /// Adds an override; its id.
    fn add_override(
        &mut self,
        o: &crate::oncall::Override,
        now: SystemTime,
    ) -> Result<i64, StoreError>;

    /// Cancels an override; whether it existed and was not cancelled already.
    fn cancel_override(&mut self, id: i64, now: SystemTime) -> Result<bool, StoreError>;

    /// The overrides in force or ahead at `now` (not cancelled, not ended), by id.
    fn overrides(&self, now: SystemTime) -> Result<Vec<crate::oncall::Override>, StoreError>;
}

/// Heartbeats: the token each is pinged at, and the pings it received.
pub trait HeartbeatStore {
    /// Keeps one record for each `(service, probe)` in `wanted`, making a token (and
    /// starting the wait for pings) for a new one, and forgets the others: a heartbeat
    /// removed from the config stops answering to its token. Returns every record kept.
    fn heartbeat_sync(
        &mut self,
        wanted: &[(String, String)],
        new_token: &mut dyn FnMut() -> String,
        now: SystemTime,
    ) -> Result<Vec<HeartbeatRecord>, StoreError>;

    fn heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError>;

    fn heartbeat(&self, service: &str, probe: &str) -> Result<Option<HeartbeatRecord>, StoreError>;

    /// Records a ping at `token` (`None` when no heartbeat has it), and adds it to the
    /// timeline of the service's open incident, if there is one, in the same transaction.
    fn heartbeat_ping(
        &mut self,
        token: &str,
        signal: Signal,
        body: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<HeartbeatRecord>, StoreError>;
}

/// The store, shared by the tasks of one process. Each call takes it for the length of
/// one transaction; the guard must not be held across an `.await` (clippy's
/// `await_holding_lock` says so where it is).
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Box<dyn Store>>>);

impl SharedStore {
    pub fn new(store: impl Store + 'static) -> SharedStore {
        SharedStore::from_box(Box::new(store))
    }

    pub fn from_box(store: Box<dyn Store>) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// The store, for one call or one short sequence of calls. A task that panicked while
    /// holding it leaves no half-done transaction behind (SQLite rolls an open one back
    /// when it is dropped), so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Box<dyn Store>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStore")
    }
}

/// Services' states, incidents with their timeline, the outbox of decided actions, and settings.
pub trait IncidentStore {
    /// The key that signs links in mails: made on first use, kept so that links sent
    /// before a restart still work after it.
    fn link_key(&mut self) -> Result<Vec<u8>, StoreError>;

    /// A stored setting.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Every service's saved state.
    fn load(&self) -> Result<States, StoreError>;

    /// Saves `state` and records `actions` (incident rows, timeline, one outbox decision
    /// each, with `context`) in one transaction: all of it or none.
    fn commit(
        &mut self,
        service: &str,
        state: &ServiceState,
        actions: &[Action],
        context: &Context,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Decides an action that belongs to no service's state (a notice about the monitor).
    fn enqueue(
        &mut self,
        action: &Action,
        context: &Context,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Incidents, newest first, with their timelines; only open ones when `open_only`.
    fn incidents(&self, open_only: bool) -> Result<Vec<IncidentRecord>, StoreError>;

    /// One incident by its id.
    fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError>;

    /// The `limit` newest incidents, open or not, newest first.
    fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError>;

    /// The open incident of `service`, if any.
    fn open_incident_of(&self, service: &str) -> Result<Option<IncidentRecord>, StoreError>;
}

/// Customer campaigns: one row per recipient, sends, opt-outs and compensation codes.
pub trait CampaignStore {
    /// Creates the campaign decided by outbox item `outbox_id`, with its recipients, in one
    /// transaction; opted-out addresses are left out and counted. Returns the campaign's
    /// id, the existing one when this decision was carried out before.
    #[allow(clippy::too_many_arguments)]
    /// The outage campaign decided by outbox item `outbox_id`, made now (empty, to be
    /// expanded) if it does not exist yet. Idempotent: the same item opened twice gives
    /// the same campaign, with how far its expansion got.
    fn open_campaign(
        &mut self,
        outbox_id: i64,
        incident: i64,
        service: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Opened, StoreError>;

    /// The outage campaigns of `incident` (its own, and those telling the customers of
    /// services attached to it), each with whether it is fully expanded and the service
    /// it is about.
    fn outage_campaigns(&self, incident: i64) -> Result<Vec<(i64, bool, String)>, StoreError>;

    /// Whether the outage campaign `incident`'s customer phase decided was given up
    /// (refused: its audience over `mail.max_campaign_size`).
    fn outage_refused(&self, incident: i64) -> Result<bool, StoreError>;

    /// Calls `each` with the address of every recipient a campaign has so far, in order.
    fn campaign_addresses(
        &self,
        campaign: i64,
        each: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError>;

    /// Adds one batch to a campaign being expanded, with where reading stopped, in one
    /// transaction; the batch whose `expansion` is `None` completes it, and only then are
    /// its mails sent. Opted-out addresses are left out (and counted). If the incident
    /// recovered meanwhile, the expansion stops there and what it holds is cancelled.
    fn expand_campaign(&mut self, campaign: i64, batch: &Batch) -> Result<Expanded, StoreError>;

    /// Empties a campaign being expanded, to read its audience again from the start (the
    /// file was replaced while it was read).
    fn restart_expansion(&mut self, campaign: i64) -> Result<(), StoreError>;

    /// Removes a campaign being expanded and its rows: it was refused as a whole.
    fn drop_campaign(&mut self, campaign: i64) -> Result<(), StoreError>;

    /// Creates an update or recovery campaign of `incident` for everyone its outage mail
    /// reached (and who has not opted out since). A recovery also cancels every outage and
    /// update mail not yet sent: after recovery, "we are down" would be false. The
    /// customers of a service attached to the incident, told by an outage campaign of
    /// their own, get a follow-up of their own (about that service) in the same
    /// transaction.
    ///
    /// With `codes` (a pool's name), each recipient of the new campaign is given the
    /// pool's next unused code in the same transaction: never the same code twice, and a
    /// restart gives everyone the code they were given before.
    fn create_followup(
        &mut self,
        outbox_id: i64,
        incident: i64,
        kind: CampaignKind,
        codes: Option<&str>,
        recovery_last: bool,
        now: SystemTime,
    ) -> Result<Option<Followup>, StoreError>;

    /// Adds `codes` to `pool`; codes already known (in any pool) are left as they are.
    /// Returns how many are unused in the pool now.
    fn load_codes(&mut self, pool: &str, codes: &[String]) -> Result<u64, StoreError>;

    /// Pending recipients due at `now` with an id above `after`, in id order.
    fn due_recipients(
        &self,
        now: SystemTime,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecipientJob>, StoreError>;

    /// The earliest time a pending recipient is due, if any.
    fn next_recipient_due(&self) -> Result<Option<SystemTime>, StoreError>;

    /// Records how sends went, in one transaction. A recipient of an outage mail accepted
    /// after its incident's recovery campaign was made joins that campaign, so everyone
    /// told of the outage hears of the recovery.
    fn record_sends(&mut self, results: &[SendResult]) -> Result<(), StoreError>;

    /// A campaign's kind and the promise its messages carry now.
    fn campaign_info(&self, id: i64) -> Result<Option<CampaignInfo>, StoreError>;

    /// Campaigns, newest first; those of one incident when given.
    fn campaigns(
        &self,
        incident: Option<i64>,
        now: SystemTime,
    ) -> Result<Vec<CampaignRecord>, StoreError>;

    /// Failed recipients of a campaign with the server's reply, at most `limit`.
    fn failures(&self, campaign: i64, limit: usize) -> Result<Vec<(String, String)>, StoreError>;

    /// Recipients of a recovery campaign with compensation whom the pool left without a
    /// code, in order (empty for a campaign without codes).
    fn without_code(&self, campaign: i64) -> Result<Vec<String>, StoreError>;

    /// Recipients of every campaign by state.
    fn recipient_counts(&self) -> Result<Counts, StoreError>;

    /// Records that `email` wants no more mail; pending mail to it is cancelled. Returns
    /// false when it had opted out already.
    fn opt_out(&mut self, email: &str, now: SystemTime) -> Result<bool, StoreError>;

    fn opted_out(&self, email: &str) -> Result<bool, StoreError>;

    /// Open incidents whose customers were told: their placeholder pages stand.
    fn customer_phase_open(&self) -> Result<Vec<IncidentRecord>, StoreError>;

    /// Incidents that overlap `[since, now]`, for uptime history: service, start, end,
    /// and whether customers were told.
    fn incidents_since(&self, since: SystemTime) -> Result<Vec<Span>, StoreError>;
}

/// Planned maintenance windows added through the API, and the notices sent for each window.
pub trait MaintenanceStore {
    /// Adds a window; its id.
    fn add_window(&mut self, m: &Maintenance, by: &str, now: SystemTime)
    -> Result<i64, StoreError>;

    /// Cancels an API window; whether it existed and was not cancelled already.
    fn cancel_window(&mut self, id: i64, now: SystemTime) -> Result<bool, StoreError>;

    /// The API windows in force: not cancelled, not ended more than a day before `now`.
    fn windows(&self, now: SystemTime) -> Result<Vec<Maintenance>, StoreError>;

    /// The notices recorded for the window `key`.
    fn notices(&self, key: &str) -> Result<Vec<(String, Option<i64>)>, StoreError>;

    /// Records `notice` for window `m` and creates its campaign in one transaction.
    /// `skipped` are earlier notices that fell due at the same time and are recorded as
    /// superseded (a window added 30 minutes ahead gets one notice, not two). For the
    /// completion notice the recipients are those who got a notice of this window;
    /// otherwise `recipients`. Returns the campaign, or `None` when it was recorded
    /// before or there is nobody to tell.
    #[allow(clippy::too_many_arguments)]
    fn maintenance_campaign(
        &mut self,
        m: &Maintenance,
        notice: &Notice,
        skipped: &[Notice],
        audience: &str,
        recipients: &[NewRecipient],
        invalid: u64,
        now: SystemTime,
    ) -> Result<Option<i64>, StoreError>;

    /// Records `notices` of window `m` as not sent (their campaign was refused).
    fn maintenance_not_sent(
        &mut self,
        m: &Maintenance,
        notices: &[Notice],
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Records that a window's completion notice will not be sent (the service was still
    /// failing when it ended: the incident takes over).
    fn maintenance_superseded(
        &mut self,
        m: &Maintenance,
        now: SystemTime,
    ) -> Result<(), StoreError>;
}

/// The outbox: decisions fanned out into deliveries, each carried out on its own.
pub trait OutboxStore {
    /// Decisions not yet fanned out, oldest first. A decision that cannot be read back
    /// (written by a newer tocsin, or damaged) is closed as failed, with the reason, and
    /// left out, so one bad row never stops the others.
    fn due(&mut self, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// Every decision, carried out or not, oldest first (what a drill reports).
    fn decisions(&self) -> Result<Vec<OutboxItem>, StoreError>;

    /// Adds `decision`'s deliveries and closes it, in one transaction; a decision fanned
    /// out before gets nothing more.
    fn fan_out(
        &mut self,
        decision: i64,
        deliveries: &[NewDelivery],
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Deliveries of `channel` (every channel when None) due at `now`, oldest first. For
    /// each webhook receiver only its oldest pending delivery: a receiver hears of
    /// transitions in the order they were decided, and one that is down holds up only
    /// its own queue. A delivery whose decision cannot be read back is closed as failed.
    fn due_deliveries(
        &mut self,
        now: SystemTime,
        channel: Option<Channel>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    fn pending(&self) -> Result<Pending, StoreError>;

    /// Whether delivery `id` still waits (another may have carried it out meanwhile: a
    /// grouped staff mail closes the mails it holds).
    fn delivery_pending(&self, id: i64) -> Result<bool, StoreError>;

    fn delivered(&mut self, id: i64, now: SystemTime) -> Result<(), StoreError>;

    /// A transient failure: tried again at `at`.
    fn retry_delivery(&mut self, id: i64, error: &str, at: SystemTime) -> Result<(), StoreError>;

    /// A permanent failure: closed, never tried again, and noted in the incident's
    /// timeline, where the API shows it.
    fn delivery_failed(&mut self, id: i64, error: &str, now: SystemTime) -> Result<(), StoreError>;
}

/// What is installed on each mailbox, and one-time notes.
pub trait AutoresponderStore {
    fn autoresponders(&self) -> Result<Vec<AutoresponderRecord>, StoreError>;

    fn autoresponder(&self, mailbox: &str) -> Result<Option<AutoresponderRecord>, StoreError>;

    /// Remembers the mailbox's active script before tocsin replaces it; a record that
    /// exists is kept (its `previous` is the one to restore).
    fn autoresponder_previous(
        &mut self,
        mailbox: &str,
        previous: Option<&str>,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    fn autoresponder_installed(
        &mut self,
        mailbox: &str,
        hash: &str,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// The mailbox is as it was before tocsin: forget it.
    fn autoresponder_removed(&mut self, mailbox: &str) -> Result<(), StoreError>;

    /// Adds `kind` to the incident's timeline unless it is there already; whether it
    /// was added.
    fn note_once(
        &mut self,
        incident: i64,
        event: &TimelineEvent,
        now: SystemTime,
    ) -> Result<bool, StoreError>;

    /// Adds a line to the timeline of every open incident in its customer phase (what
    /// the customer side could not do, for staff to see).
    fn note_customer_phase(
        &mut self,
        event: &TimelineEvent,
        now: SystemTime,
    ) -> Result<(), StoreError>;
}
