//! Carrying decisions out: mail transport now; staff escalation, campaigns, pages,
//! autoresponder, hotline and webhooks build on it. Notifiers act only on what the store's
//! outbox hands them and report back whether it worked; they decide nothing.

pub mod autoreply;
pub mod dispatch;
pub mod hotline;
pub mod mail;
pub mod maintenance;
pub mod pages;
pub mod sieve;
pub mod staff;
pub mod templates;
pub mod webhook;

/// Between two passes of a follower: waits until `ready` is notified or `period` has
/// passed; false once `cancel` fires (the follower then stops).
pub async fn pause(
    cancel: &tokio_util::sync::CancellationToken,
    ready: &tokio::sync::Notify,
    period: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = ready.notified() => true,
        _ = tokio::time::sleep(period) => true,
    }
}
