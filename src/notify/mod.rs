//! Carrying decisions out; nothing here decides.
//!
//! - [`dispatch`]: the one loop from the outbox to the notifiers. Each decision is fanned
//!   out into deliveries, one per [`dispatch::Notifier`] and target; each notifier
//!   carries one delivery out and answers done, retry (after [`dispatch::Backoff`]) or
//!   failed. The notifiers: [`staff::StaffMail`], [`webhook::Webhooks`],
//!   [`channels::Channels`] (chat and paging tools) and `campaign::planner::Campaigns`.
//! - Level-triggered reconcilers, woken by the engine's snapshot: [`pages`] (placeholder,
//!   status file), [`autoreply`] (Sieve over [`sieve`]), [`hotline`] and [`maintenance`]
//!   (advance and completion notices).
//! - Shared parts: [`mail`] (the SMTP or `.eml` transport), [`templates`], and [`http`]
//!   (signing, reading a receiver's answer and its `Retry-After`).

pub mod autoreply;
pub mod channels;
pub mod dispatch;
pub mod hotline;
pub mod http;
pub mod mail;
pub mod maintenance;
pub mod pages;
pub mod public;
pub mod sieve;
pub mod staff;
pub mod templates;
pub mod webhook;

/// What every level-triggered follower of the engine reads: the store, the running
/// config, the templates, the clock, the metrics, and the engine's snapshot, whose every
/// change may change what the follower is to put in place.
#[derive(Clone)]
pub struct Follow {
    pub store: crate::store::SharedStore,
    pub templates: std::sync::Arc<templates::Templates>,
    pub config: crate::config::LiveConfig,
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub changes: tokio::sync::watch::Receiver<std::sync::Arc<crate::engine::Snapshot>>,
}

/// Open incidents whose customers were told: what the placeholder pages, the hotline
/// and the autoresponder stand for.
pub fn told(
    store: &crate::store::SharedStore,
) -> Result<Vec<crate::store::IncidentRecord>, String> {
    store
        .lock()
        .customer_phase_open()
        .map_err(|e| e.to_string())
}

/// Between two passes of a follower: waits until the engine publishes a new snapshot
/// (a decision, a status change), `nudge` is notified (work that another follower made,
/// such as a campaign the dispatcher planned), or `period` has passed; false once
/// `cancel` fires (the follower then stops).
pub async fn pause(
    cancel: &tokio_util::sync::CancellationToken,
    engine: &mut tokio::sync::watch::Receiver<std::sync::Arc<crate::engine::Snapshot>>,
    nudge: Option<&tokio::sync::Notify>,
    period: std::time::Duration,
) -> bool {
    let decided = async {
        // An engine that has stopped publishes nothing more: only the period is left.
        if engine.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let nudged = async {
        match nudge {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = decided => true,
        _ = nudged => true,
        _ = tokio::time::sleep(period) => true,
    }
}
