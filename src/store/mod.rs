//! Durable state: each service's machine state, its incidents and their timeline, and the
//! outbox of decided actions, written in one transaction (transactional outbox). A crash
//! re-runs nothing that was marked done and forgets nothing that was decided.
//!
//! Embedded SQLite by default. This room knows the incident types it stores; it sends
//! nothing and decides nothing.

mod autoresponders;
mod campaigns;
mod maintenance;
mod sqlite;
mod webhooks;

use std::time::SystemTime;

use serde::Serialize;

pub use autoresponders::AutoresponderRecord;
pub use campaigns::{
    CampaignInfo, CampaignKind, CampaignRecord, Counts, Followup, NewRecipient, RecipientJob,
    SendResult, address_key,
};
pub use maintenance::Notice;
pub use sqlite::SqliteStore;
pub use webhooks::{Delivery, HookTarget, Hooks};

use crate::incident::{Action, ServiceState};

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
}

/// One decided action waiting to be carried out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub service: String,
    /// The incident's store id, when the action belongs to one.
    pub incident: Option<i64>,
    pub action: Action,
    pub attempts: u32,
}

/// An incident as stored, with its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: i64,
    pub service: String,
    #[serde(serialize_with = "unix")]
    pub started: SystemTime,
    #[serde(serialize_with = "unix_opt")]
    pub ended: Option<SystemTime>,
    pub acked_by: Option<String>,
    #[serde(serialize_with = "unix_opt")]
    pub eta: Option<SystemTime>,
    pub customer_phase: bool,
    /// What customers were last promised: the ETA, or without one a next-update time.
    #[serde(serialize_with = "unix_opt")]
    pub promised_eta: Option<SystemTime>,
    #[serde(serialize_with = "unix_opt")]
    pub next_update: Option<SystemTime>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    #[serde(serialize_with = "unix")]
    pub at: SystemTime,
    pub kind: String,
    pub detail: String,
}

pub(crate) fn unix<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(secs(*t))
}

pub(crate) fn unix_opt<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_f64(secs(*t)),
        None => s.serialize_none(),
    }
}

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
